"""The messaging example in docs/ runs as documented (it is the API's tour)."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest

EXAMPLE = Path(__file__).parents[3] / "docs" / "examples" / "messaging_link.py"


@pytest.mark.parametrize("listen", ["tcp://127.0.0.1:0", "unix"])
async def test_the_messaging_example(listen: str, tmp_path: Path) -> None:
    spec = importlib.util.spec_from_file_location("messaging_link", EXAMPLE)
    assert spec is not None
    assert spec.loader is not None
    example = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(example)
    where = f"unix:{tmp_path}/link.sock" if listen == "unix" else listen
    replies = await example.main(where)
    assert replies[:2] == [b"HELLO", b"STILL THERE?"]
    assert sorted(replies[2:]) == sorted([b"ONE", b"TWO", b"THREE", b"FOUR", b"FIVE", b"SIX"])
