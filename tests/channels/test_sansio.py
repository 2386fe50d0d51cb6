"""The sans-I/O contract shared by every protocol core (virtrio/channels/_sansio.py)."""

from __future__ import annotations

import doctest
import importlib
import subprocess
import sys
from pathlib import Path

import pytest

from virtrio.channels._sansio import NEED_DATA, ConnectionClosed, ErrorState

ROOT = Path(__file__).resolve().parents[2]

#: Every sans-I/O core of virtrio.
CORES = [
    "virtrio.channels._sansio",
    "virtrio.channels._jsonstream",
    "virtrio.channels.qmp._protocol",
    "virtrio.channels.qga._protocol",
    "virtrio.channels.pty._codec",
    "virtrio.channels.pty._schema",
    "virtrio.channels.yamux._session",
    "virtrio.channels.spice._link",
    "virtrio.channels.xtransfer._config",
    "virtrio.channels.xtransfer._protocol",
]

# The packages' __init__ modules re-export the Trio shells too, so the check imports a core
# with its parent packages stubbed as bare namespaces: what is measured is the core's own
# import closure, which is what must not reach Trio.
_PROBE = """
import importlib, sys, types
root, name = sys.argv[1], sys.argv[2]
parts = name.split(".")
for depth in range(1, len(parts)):
    package = ".".join(parts[:depth])
    module = types.ModuleType(package)
    module.__path__ = [root + "/" + package.replace(".", "/")]
    sys.modules[package] = module
importlib.import_module(name)
loaded = sorted(m for m in sys.modules if m == "trio" or m.startswith(("trio.", "sniffio")))
print(" ".join(loaded))
"""


@pytest.mark.parametrize("name", CORES)
def test_core_imports_no_trio(name: str) -> None:
    result = subprocess.run(
        [sys.executable, "-c", _PROBE, str(ROOT), name],
        capture_output=True,
        text=True,
        check=False,
        timeout=60,
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.split() == [], f"{name} imports {result.stdout.strip()}"


def test_the_probe_sees_trio_where_it_is() -> None:
    # the check above can fail: a Trio shell is caught
    result = subprocess.run(
        [sys.executable, "-c", _PROBE, str(ROOT), "virtrio.channels._rpc"],
        capture_output=True,
        text=True,
        check=True,
        timeout=60,
    )
    assert "trio" in result.stdout.split()


def test_need_data_is_a_singleton_with_a_name() -> None:
    assert repr(NEED_DATA) == "NEED_DATA"
    assert ConnectionClosed() == ConnectionClosed()


def test_error_state_keeps_the_first_error() -> None:
    state = ErrorState()
    state.check()
    assert not state.failed
    first = ValueError("first")
    with pytest.raises(ValueError, match="first"):
        state.fail(first)
    with pytest.raises(ValueError, match="first") as caught:
        state.fail(ValueError("second"))
    assert caught.value is first
    for _ in range(3):
        with pytest.raises(ValueError, match="first") as caught:
            state.check()
    # raised many times, its traceback does not pile up
    assert caught.value.__traceback__ is not None
    depth = 0
    tb = caught.value.__traceback__
    while tb is not None:
        depth += 1
        tb = tb.tb_next
    assert depth <= 2
    assert state.failed


@pytest.mark.parametrize(
    "name",
    [
        "virtrio.channels._sansio",
        "virtrio.channels._jsonstream",
        "virtrio.channels.qmp._protocol",
        "virtrio.channels.pty._codec",
        "virtrio.channels.pty._schema",
    ],
)
def test_the_docstring_examples_run(name: str) -> None:
    module = importlib.import_module(name)
    failed, tried = doctest.testmod(module, optionflags=doctest.ELLIPSIS)
    assert tried
    assert not failed
