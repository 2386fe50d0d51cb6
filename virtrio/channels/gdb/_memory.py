"""The memory calls of :class:`~virtrio.channels.gdb.GdbClient`: reads in PacketSize pieces,
one per round trip or, with ``open_gdb(pipeline=True)``, several on the wire at once, and writes
(binary ``x``/``X`` where the stub has them, hex ``m``/``M`` otherwise)."""

from __future__ import annotations

from ._errors import GdbCommandError, GdbProtocolError, GdbUnsupportedError
from ._framing import escape
from ._replies import StubFeatures, decode_hex

__all__ = ["PIPELINE_DEPTH", "GdbMemory", "check_reply", "expect_ok"]

#: With ``open_gdb(pipeline=True)``, the most memory-read packets on the wire at once (16 of
#: QEMU's 2 KiB pieces: 64 KiB of hex in the socket buffer, well under what it holds).
PIPELINE_DEPTH = 16


def check_reply(reply: bytes, command: bytes) -> bytes:
    """``reply``, unless it is an error or the empty (unsupported) reply."""
    if not reply:
        raise GdbUnsupportedError(command[:64].decode("ascii", "replace"))
    if reply[:1] == b"E" and (len(reply) == 3 or reply[1:2] == b"."):
        raise GdbCommandError.from_reply(reply, command[:64].decode("ascii", "replace"))
    return reply


def expect_ok(reply: bytes, command: bytes) -> None:
    """Nothing, if ``reply`` is ``OK``; the stub's error, or a protocol error for anything else."""
    if check_reply(reply, command) != b"OK":
        raise GdbProtocolError(f"{command[:32]!r}: expected OK, got {reply[:64]!r}")


def _piece(data: bytes, address: int, n: int) -> bytes:
    """A memory reply's bytes, at most the ``n`` asked for; none is an error."""
    if not data:
        raise GdbCommandError(
            "short",
            f"the stub returned no bytes at {address:#x}",
            command=f"m{address:x},{n:x}",
            code=None,
        )
    return data[:n] if len(data) > n else data


class GdbMemory:
    """The memory calls, mixed into the typed calls (the client supplies the exchanges)."""

    features: StubFeatures
    _pipeline: bool
    _binary_read: bool | None
    _binary_write: bool | None

    async def request(self, packet: bytes | str, *, timeout: float | None = None) -> bytes:
        raise NotImplementedError

    async def _exchange(self, payload: bytes, timeout: float | None) -> bytes:
        raise NotImplementedError

    async def _exchange_all(self, payloads: list[bytes], timeout: float | None) -> list[bytes]:
        raise NotImplementedError

    def _read_chunk(self) -> int:
        # a reply's hex doubles the bytes; QEMU refuses m above PacketSize/2 (E22)
        return max(1, self.features.packet_size // 2)

    async def read_memory(
        self, address: int, length: int, *, timeout: float | None = None
    ) -> bytes:
        """``length`` bytes at ``address`` (in PacketSize pieces; binary ``x`` where the stub
        has it, hex ``m`` otherwise; with ``open_gdb(pipeline=True)``, up to
        :data:`PIPELINE_DEPTH` pieces on the wire at once).

        Raises:
            GdbCommandError: the stub refused (unmapped memory: ``E14`` or ``E22`` on QEMU).
            ValueError: a negative address or length.
        """
        if address < 0 or length < 0:
            raise ValueError(f"address and length must be >= 0, got {address:#x}, {length}")
        pieces: list[bytes] = []
        done = 0
        chunk = self._read_chunk()
        while done < length:  # (a stub may answer with fewer bytes than asked)
            at = address + done
            if self._pipeline and self._binary_read is not None and length - done > chunk:
                done += await self._read_pieces_together(at, length - done, timeout, pieces)
                continue
            n = min(chunk, length - done)
            data = _piece(await self._read_memory_once(at, n, timeout), at, n)
            pieces.append(data)
            done += len(data)
        return pieces[0] if len(pieces) == 1 else b"".join(pieces)

    async def _read_pieces_together(
        self, address: int, length: int, timeout: float | None, pieces: list[bytes]
    ) -> int:
        """Read up to :data:`PIPELINE_DEPTH` pieces from ``address`` in one exchange, the
        stub's choice of ``x`` or ``m`` known, appending them to ``pieces``: how many bytes
        they hold (up to the first short one: those after it, past a hole, are dropped)."""
        chunk = self._read_chunk()
        code = b"x%x,%x" if self._binary_read else b"m%x,%x"
        spans = [
            (at, min(chunk, address + length - at))
            for at in range(address, address + min(length, chunk * PIPELINE_DEPTH), chunk)
        ]
        commands = [code % span for span in spans]
        replies = await self._exchange_all(commands, timeout)
        done = 0
        for (at, n), command, reply in zip(spans, commands, replies, strict=True):
            data = _piece(self._read_reply(reply, command), at, n)
            pieces.append(data)
            done += len(data)
            if len(data) < n:
                break
        return done

    def _read_reply(self, reply: bytes, command: bytes) -> bytes:
        """The bytes of an ``x`` or ``m`` reply."""
        if command[:1] == b"x":
            if reply[:1] == b"E" and len(reply) == 3:
                raise GdbCommandError.from_reply(reply, command.decode())
            # GDB 14's x replies start with 'b' (binary); older drafts sent bare data
            return reply[1:] if reply[:1] == b"b" else reply
        return decode_hex(check_reply(reply, command), "m reply")

    async def _read_memory_once(self, address: int, n: int, timeout: float | None) -> bytes:
        if self._binary_read is not False:
            command = b"x%x,%x" % (address, n)
            reply = await self.request(command, timeout=timeout)
            if reply:
                self._binary_read = True
                return self._read_reply(reply, command)
            self._binary_read = False
        command = b"m%x,%x" % (address, n)
        return self._read_reply(await self._exchange(command, timeout), command)

    async def write_memory(
        self, address: int, data: bytes, *, timeout: float | None = None
    ) -> None:
        """Write ``data`` at ``address`` (binary ``X`` where the stub has it, hex ``M``).

        Raises:
            GdbCommandError: the stub refused.
        """
        if address < 0:
            raise ValueError(f"address must be >= 0, got {address:#x}")
        # room for "X<addr>,<len>:" and framing; binary data escapes to at most twice its size
        chunk = max(1, (self.features.packet_size - 64) // 2)
        view = memoryview(bytes(data))
        for done in range(0, len(view), chunk):  # nothing to send for no bytes
            piece = view[done : done + chunk]
            at = address + done
            if self._binary_write is not False:
                command = b"X%x,%x:" % (at, len(piece)) + escape(piece)
                reply = await self.request(command, timeout=timeout)
                if reply:
                    self._binary_write = True
                    expect_ok(reply, command[:24])
                    continue
                self._binary_write = False  # the empty reply: X is unsupported, M from now on
            command = b"M%x,%x:" % (at, len(piece)) + piece.hex().encode()
            expect_ok(await self.request(command, timeout=timeout), command[:24])
