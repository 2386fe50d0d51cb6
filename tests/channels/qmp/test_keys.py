"""Key names, combos and text for send-key."""

from __future__ import annotations

import pytest
from hypothesis import given, strategies as st

from virtrio.channels.qmp import QCODES, parse_combo, text_to_combos
from virtrio.errors import ConfigError


@pytest.mark.parametrize(
    ("combo", "codes"),
    [
        ("ctrl-alt-delete", ("ctrl", "alt", "delete")),
        ("Ctrl+Alt+Del", ("ctrl", "alt", "delete")),
        ("esc", ("esc",)),
        ("shift-a", ("shift", "a")),
        ("enter", ("ret",)),
        ("win-l", ("meta_l", "l")),
        ("f12", ("f12",)),
    ],
)
def test_combos(combo: str, codes: tuple[str, ...]) -> None:
    assert parse_combo(combo) == codes


@pytest.mark.parametrize(
    ("combo", "match"),
    [("", "invalid key combo"), ("ctrl--x", "invalid"), ("ctrl-nokey", "unknown key 'nokey'")],
)
def test_bad_combos(combo: str, match: str) -> None:
    with pytest.raises(ConfigError, match=match):
        parse_combo(combo)


def test_text() -> None:
    assert text_to_combos("aZ 1!\n") == [
        ("a",),
        ("shift", "z"),
        ("spc",),
        ("1",),
        ("shift", "1"),
        ("ret",),
    ]


@given(st.text(alphabet=st.characters(min_codepoint=32, max_codepoint=126)))
def test_every_printable_ascii_character_types_with_known_qcodes(text: str) -> None:
    for combo in text_to_combos(text):
        assert set(combo) <= QCODES


def test_untypeable_character_is_named() -> None:
    with pytest.raises(ConfigError, match=r"cannot type 'é' \(position 2\)"):
        text_to_combos("caé")
