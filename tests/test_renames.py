"""The renames of issue 11 that the README or docs/ had documented keep their old name for a
release, with a DeprecationWarning (the README's Changelog lists them)."""

from __future__ import annotations

from pathlib import Path

import pytest
import trio

from virtrio.channels.pty import open_pty_client
from virtrio.errors import ConfigError, ConnectError
from virtrio.nurseries import open_vm


async def test_open_vm_spice_password_is_password(tmp_path: Path) -> None:
    with pytest.warns(DeprecationWarning, match="'spice_password' is deprecated, use 'password'"):
        async with open_vm("v", spice=f"unix:{tmp_path}/none.sock", spice_password="pw") as vm:
            assert vm.spice is not None
    with pytest.raises(TypeError):
        async with open_vm("v", spice_passwordx="pw"):  # type: ignore[call-arg]
            pass  # pragma: no cover


async def test_open_pty_client_max_events_is_max_queue(tmp_path: Path) -> None:
    missing = tmp_path / "no-daemon.sock"
    with (
        pytest.warns(DeprecationWarning, match="'max_events' is deprecated, use 'max_queue'"),
        pytest.raises(ConnectError, match=r"no-daemon\.sock"),
    ):
        async with open_pty_client(missing, max_events=4):
            pass  # pragma: no cover


@pytest.mark.parametrize("form", ["unix:{}", "{}"])
async def test_open_pty_client_takes_an_address_or_a_path(tmp_path: Path, form: str) -> None:
    path = tmp_path / "pty.sock"
    listener = trio.socket.socket(trio.socket.AF_UNIX)
    await listener.bind(str(path))
    listener.listen()
    try:
        with trio.fail_after(10):
            async with open_pty_client(form.format(path)) as client:
                assert client.address == f"unix:{path}"
                assert client.is_connected
    finally:
        listener.close()


async def test_open_pty_client_refuses_a_non_unix_address() -> None:
    with pytest.raises(ConfigError, match="unix: socket"):
        async with open_pty_client("tcp://127.0.0.1:1"):
            pass  # pragma: no cover
