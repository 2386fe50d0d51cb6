"""yamux against a hostile raw-socket peer that floods frames demanding an answer (pings, opens
refused by the backlog) and never reads (issue 17: +116 MiB after 10 M pings). The answers owed
stay bounded: the session stops reading while they cannot leave, and answers all of them, none
dropped, once the peer reads."""

from __future__ import annotations

import pytest
import trio
import trio.testing

from virtrio.channels.yamux import open_mux
from virtrio.channels.yamux._frames import HEADER, HEADER_SIZE, VERSION, Flag, FrameType

TOTAL = 8 * 1024 * 1024  # bytes of frames the peer tries to send (~700 k frames)
#: What may wait unsent for a peer that does not read: a few reads' worth of answers.
BOUND = 2 * 1024 * 1024

FLOODS = {
    "pings": lambda i: HEADER.pack(VERSION, FrameType.PING, Flag.SYN, 0, i),
    # opens beyond the accept backlog (0 here): each one is refused with an RST
    "refused opens": lambda i: HEADER.pack(VERSION, FrameType.WINDOW_UPDATE, Flag.SYN, 2, 0),
}


@pytest.mark.parametrize("flood", FLOODS)
async def test_a_peer_that_floods_and_never_reads_cannot_grow_the_answer_queue(
    flood: str,
) -> None:
    ours, theirs = trio.socket.socketpair()  # we are the client: the peer opens even ids
    frame = FLOODS[flood]
    batch = b"".join(frame(i) for i in range(5000))
    sent = 0

    async def hostile() -> None:
        nonlocal sent
        while sent < TOTAL:
            sent += await theirs.send(batch[sent % len(batch) :])

    with theirs:
        async with open_mux(trio.SocketStream(ours), client=True, accept_backlog=0) as mux:
            async with trio.open_nursery() as nursery:
                nursery.start_soon(hostile)
                with trio.fail_after(120):
                    await trio.testing.wait_all_tasks_blocked()
                # everyone is stuck: the peer's sends because we stopped reading
                assert sent < TOTAL, "the session read the whole flood without answering it"
                assert mux._unsent < BOUND
                nursery.cancel_scope.cancel()
            # once the peer reads, every frame it sent whole gets its answer, in order
            owed = (sent // HEADER_SIZE) * HEADER_SIZE
            answers = bytearray()
            with trio.fail_after(120):
                while len(answers) < owed:
                    answers += await theirs.recv(1 << 20)
            assert len(answers) == owed
            kinds = {HEADER.unpack_from(answers, off)[1:3] for off in range(0, owed, HEADER_SIZE)}
            expected = (FrameType.PING, Flag.ACK) if flood == "pings" else (1, Flag.RST)
            assert kinds == {expected}
