"""Against a transcription of xtransfer's own blocking send/recv (the Rust algorithm, half-duplex
stop-and-wait included) running in a thread over a real socket.

No Rust xtransfer can run here (unpackaged crate, crates.io unreachable), so this model, written
line by line from the crate's ``send_message``/``recv_message`` as the lab notes describe them, is
the closest peer: it checks that our packets satisfy its strict expectations (an Ack, with the
right seq, straight after every packet it sends) and that we accept what it produces.
"""

from __future__ import annotations

import socket
import struct
import zlib

import pytest
import trio

from virtrio.channels.xtransfer import XtransferConfig, open_xtransfer

HEADER = struct.Struct("<IBBIHI")


class InvalidPacket(Exception):
    pass


class RustModel:
    """xtransport::XTransport<std socket>, blocking, as in kylin-x-kernel/xtransfer e6d1ffe."""

    def __init__(self, sock: socket.socket, max_frame_size: int, ack: bool) -> None:
        self.sock, self.max_payload, self.ack = sock, max_frame_size - 16, ack
        self.seq, self.message_id = 0, 1

    def read_exact(self, n: int) -> bytes:
        out = b""
        while len(out) < n:
            chunk = self.sock.recv(n - len(out))
            if not chunk:
                raise EOFError
            out += chunk
        return out

    def write_packet(self, kind: int, payload: bytes) -> int:
        seq = self.seq
        self.sock.sendall(
            HEADER.pack(0x58545250, 1, kind, seq, len(payload), zlib.crc32(payload)) + payload
        )
        self.seq = (self.seq + 1) & 0xFFFFFFFF
        return seq

    def send_packet(self, kind: int, payload: bytes) -> None:
        seq = self.write_packet(kind, payload)
        if self.ack:
            ack_kind, ack_payload = self.read_packet()
            if ack_kind != 3 or ack_payload != seq.to_bytes(4, "little"):
                raise InvalidPacket(f"expected Ack for {seq}, got type {ack_kind}")

    def read_packet(self) -> tuple[int, bytes]:
        magic, version, kind, seq, length, crc = HEADER.unpack(self.read_exact(16))
        if magic != 0x58545250 or version != 1:
            raise InvalidPacket("magic/version")
        payload = self.read_exact(length)
        if zlib.crc32(payload) != crc:
            raise InvalidPacket("crc")
        if self.ack and kind != 3:
            self.write_packet(3, seq.to_bytes(4, "little"))
        return kind, payload

    def send_message(self, data: bytes) -> None:
        if len(data) <= self.max_payload:
            self.send_packet(0, data)
            return
        count = -(-len(data) // self.max_payload)
        self.send_packet(1, struct.pack("<QQII8x", len(data), self.message_id, count, 0))
        self.message_id += 1
        for i in range(count):
            self.send_packet(2, data[i * self.max_payload : (i + 1) * self.max_payload])

    def recv_message(self) -> bytes:
        kind, payload = self.read_packet()
        if kind == 0:
            return payload
        if kind != 1:
            raise InvalidPacket(f"type {kind} where a message starts")
        total, _, count, _ = struct.unpack("<QQII8x", payload)
        buffer = bytearray(total)
        offset = 0
        for _ in range(count):
            kind, piece = self.read_packet()
            if kind != 2:
                raise InvalidPacket(f"type {kind} inside a message")
            piece = piece[: max(0, total - offset)]
            buffer[offset : offset + len(piece)] = piece
            offset += len(piece)
        return bytes(buffer)


SIZES = [0, 5, 1008, 1009, 2032, 2033, 10000, 200_000]


@pytest.mark.parametrize("ack", [False, True])
@pytest.mark.parametrize("family", ["unix", "tcp"])
async def test_request_reply_with_the_reference_model(ack: bool, family: str) -> None:
    if family == "unix":
        ours, theirs = socket.socketpair()
    else:
        with socket.create_server(("127.0.0.1", 0)) as server:
            theirs = socket.create_connection(server.getsockname())
            ours, _ = server.accept()
    model = RustModel(theirs, max_frame_size=2048, ack=ack)

    def model_echoes() -> list[bytes]:
        got = []
        with theirs:
            for _ in SIZES:
                message = model.recv_message()
                got.append(message)
                model.send_message(message[::-1])
        return got

    stream = trio.SocketStream(trio.socket.from_stdlib_socket(ours))
    config = XtransferConfig(max_frame_size=1024, ack=ack)
    messages = [bytes((i * 7 + n) & 0xFF for i in range(n)) for n in SIZES]
    async with trio.open_nursery() as nursery, open_xtransfer(stream, config) as channel:
        result: list[list[bytes]] = []

        async def run_model() -> None:
            result.append(await trio.to_thread.run_sync(model_echoes))

        nursery.start_soon(run_model)
        for message in messages:
            await channel.send(message)
            assert await channel.receive() == message[::-1]
    assert result == [messages]
