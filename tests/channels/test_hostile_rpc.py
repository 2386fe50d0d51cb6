"""QMP and the guest agent against hostile peers: malformed ids, stale garbage before the
resynchronisation sentinel (issue 17). Every failure is a VirtrioError, never a TypeError."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import trio

from tests.channels.hostile import LineStream, serve_hostile
from virtrio.channels.qga import open_qga
from virtrio.channels.qmp import open_qmp
from virtrio.errors import ConnectionLostError

GREETING = {"QMP": {"version": {"qemu": {"major": 8, "minor": 2, "micro": 0}}, "capabilities": []}}
#: Ids no request of ours has, made from the pending request's id: unhashable (they raised
#: TypeError in the slot lookup), or equal to it in Python though not an integer.
MALFORMED_IDS: dict[str, Callable[[int], Any]] = {
    "object": lambda i: {"x": i},
    "array": lambda i: [i],
    "float": float,
    "string": str,
    "true": lambda i: True,
}


async def _qga_sync(peer: LineStream, *, stale: bytes = b"") -> None:
    """Answer the client's guest-sync-delimited as qemu-ga does, after ``stale`` bytes."""
    if stale:
        await peer.send(stale)
    request = await peer.read_request()
    assert request["execute"] == "guest-sync-delimited"
    await peer.reply(request["arguments"]["id"], request["id"], prefix=b"\xff")


@pytest.mark.parametrize("bad_id", MALFORMED_IDS)
async def test_qmp_reply_with_a_malformed_id_is_a_protocol_error(
    tmp_path: Path, bad_id: str
) -> None:
    async def script(peer: LineStream) -> None:
        await peer.send(json.dumps(GREETING).encode() + b"\r\n")
        request = await peer.read_request()
        await peer.reply({}, request["id"])  # qmp_capabilities
        request = await peer.read_request()
        await peer.reply({}, MALFORMED_IDS[bad_id](request["id"]))

    async with serve_hostile(tmp_path, script) as address:
        with trio.fail_after(10):
            async with open_qmp(address) as qmp:
                with pytest.raises(ConnectionLostError, match="malformed id") as info:
                    await qmp.execute("query-status")
                assert not qmp.is_connected
                assert "QMP" in str(info.value)


@pytest.mark.parametrize("bad_id", MALFORMED_IDS)
async def test_qga_reply_with_a_malformed_id_is_a_protocol_error(
    tmp_path: Path, bad_id: str
) -> None:
    async def script(peer: LineStream) -> None:
        await _qga_sync(peer)
        request = await peer.read_request()
        await peer.reply({}, MALFORMED_IDS[bad_id](request["id"]))

    async with serve_hostile(tmp_path, script) as address:
        with trio.fail_after(10):
            async with open_qga(address) as qga:
                with pytest.raises(ConnectionLostError, match="malformed id"):
                    await qga.ping()
                assert not qga.is_connected


STALE = [
    b"not json at all\n",
    b'{"return": 99, "id": 2}\n',  # a previous client's reply, with an id we are about to use
    b'[1, 2]\n\x00\x01\r\n{"half": ',
    b"\n\n{}\n" + b"x" * 100_000 + b"\n",
]


@pytest.mark.parametrize("stale", STALE)
async def test_qga_stale_lines_before_the_sentinel_are_discarded(
    tmp_path: Path, stale: bytes
) -> None:
    async def script(peer: LineStream) -> None:
        await _qga_sync(peer, stale=stale)
        request = await peer.read_request()
        assert request["execute"] == "guest-ping"
        await peer.reply({}, request["id"])

    async with serve_hostile(tmp_path, script) as address:
        with trio.fail_after(10):
            async with open_qga(address) as qga:
                await qga.ping()
                assert qga.is_connected
