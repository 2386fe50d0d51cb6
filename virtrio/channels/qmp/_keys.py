"""Key names for QMP's ``send-key``: QEMU's qcodes, friendly aliases, combos and text.

>>> parse_combo("ctrl-alt-del")
('ctrl', 'alt', 'delete')
>>> text_to_combos("Hi!")
[('shift', 'h'), ('i',), ('shift', '1')]
"""

from __future__ import annotations

from virtrio.errors import ConfigError

__all__ = ["QCODES", "parse_combo", "text_to_combos"]

#: QEMU's QKeyCode enumeration (qapi/ui.json, QEMU 7.2).
QCODES: frozenset[str] = frozenset(
    """
    unmapped shift shift_r alt alt_r ctrl ctrl_r menu esc 1 2 3 4 5 6 7 8 9 0 minus equal
    backspace tab q w e r t y u i o p bracket_left bracket_right ret a s d f g h j k l semicolon
    apostrophe grave_accent backslash z x c v b n m comma dot slash asterisk spc caps_lock f1 f2
    f3 f4 f5 f6 f7 f8 f9 f10 f11 f12 num_lock scroll_lock kp_divide kp_multiply kp_subtract
    kp_add kp_enter kp_decimal sysrq kp_0 kp_1 kp_2 kp_3 kp_4 kp_5 kp_6 kp_7 kp_8 kp_9 less home
    pgup pgdn end left up down right insert delete stop again props undo front copy open paste
    find cut lf help meta_l meta_r compose pause ro hiragana henkan yen muhenkan
    katakanahiragana kp_comma kp_equals power sleep wake audionext audioprev audiostop audioplay
    audiomute volumeup volumedown mediaselect mail calculator computer ac_home ac_back
    ac_forward ac_refresh ac_bookmarks lang1 lang2
    """.split()
)

_ALIASES = {
    "del": "delete",
    "enter": "ret",
    "return": "ret",
    "space": "spc",
    "escape": "esc",
    "control": "ctrl",
    "lctrl": "ctrl",
    "rctrl": "ctrl_r",
    "lalt": "alt",
    "ralt": "alt_r",
    "altgr": "alt_r",
    "lshift": "shift",
    "rshift": "shift_r",
    "win": "meta_l",
    "super": "meta_l",
    "meta": "meta_l",
    "pageup": "pgup",
    "pagedown": "pgdn",
    "bksp": "backspace",
    "capslock": "caps_lock",
    "ins": "insert",
    "prtsc": "sysrq",
    "printscreen": "sysrq",
}

# US layout: character -> (qcode, needs shift)
_PLAIN = {
    " ": "spc",
    "\n": "ret",
    "\t": "tab",
    "-": "minus",
    "=": "equal",
    "[": "bracket_left",
    "]": "bracket_right",
    "\\": "backslash",
    ";": "semicolon",
    "'": "apostrophe",
    "`": "grave_accent",
    ",": "comma",
    ".": "dot",
    "/": "slash",
}
_SHIFTED = {
    "_": "minus",
    "+": "equal",
    "{": "bracket_left",
    "}": "bracket_right",
    "|": "backslash",
    ":": "semicolon",
    '"': "apostrophe",
    "~": "grave_accent",
    "<": "comma",
    ">": "dot",
    "?": "slash",
    "!": "1",
    "@": "2",
    "#": "3",
    "$": "4",
    "%": "5",
    "^": "6",
    "&": "7",
    "*": "8",
    "(": "9",
    ")": "0",
}


def qcode(name: str) -> str:
    """The qcode for a key name or alias (case-insensitive).

    Raises:
        ConfigError: not a key QEMU knows.
    """
    key = name.strip().lower()
    key = _ALIASES.get(key, key)
    if key not in QCODES:
        raise ConfigError(f"unknown key {name!r}: not a QEMU qcode or a known alias")
    return key


def parse_combo(combo: str) -> tuple[str, ...]:
    """Split ``"ctrl-alt-delete"`` (or ``"ctrl+alt+delete"``) into qcodes, pressed in order.

    Raises:
        ConfigError: empty, or a part is not a key.
    """
    parts = [p for p in combo.replace("+", "-").split("-")]
    if not combo or any(not p for p in parts):
        raise ConfigError(f"invalid key combo {combo!r}: expected names joined by '-'")
    return tuple(qcode(p) for p in parts)


def text_to_combos(text: str) -> list[tuple[str, ...]]:
    """The key presses that type ``text`` on a US keyboard, one combo per character.

    Raises:
        ConfigError: a character has no key on a US keyboard (the message names it).
    """
    combos: list[tuple[str, ...]] = []
    for index, char in enumerate(text):
        if "a" <= char <= "z" or "0" <= char <= "9":
            combos.append((char,))
        elif "A" <= char <= "Z":
            combos.append(("shift", char.lower()))
        elif char in _PLAIN:
            combos.append((_PLAIN[char],))
        elif char in _SHIFTED:
            combos.append(("shift", _SHIFTED[char]))
        else:
            raise ConfigError(
                f"cannot type {char!r} (position {index}): no key on a US keyboard produces it"
            )
    return combos
