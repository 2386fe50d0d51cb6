"""Sans-I/O Spice message framing (after the link): mini or full data headers, sub-message lists.

:class:`MessageReader` takes bytes in any split and yields :class:`Message` objects; sub-messages
(full-header ``sub_list`` or a mini-header ``SPICE_MSG_LIST``) come out before their container.
:class:`MessageWriter` numbers and frames outgoing messages.
"""

from __future__ import annotations

import struct
from collections.abc import Callable, Iterator

import attrs

from virtrio.channels.spice._errors import SpiceProtocolError

__all__ = ["MAX_MESSAGE", "Message", "MessageReader", "MessageWriter", "Placer"]

#: Largest body accepted (a full 4K xRGB bitmap is ~33 MB).
MAX_MESSAGE = 64 * 1024 * 1024

MSG_MIGRATE = 1
MSG_MIGRATE_DATA = 2
MSG_SET_ACK = 3
MSG_PING = 4
MSG_WAIT_FOR_CHANNELS = 5
MSG_DISCONNECTING = 6
MSG_NOTIFY = 7
MSG_LIST = 8

MSGC_ACK_SYNC = 1
MSGC_ACK = 2
MSGC_PONG = 3
MSGC_DISCONNECTING = 6


#: A message body: ``bytes``, or a ``bytearray`` for one read in place (see MessageReader).
Body = bytes | bytearray


@attrs.frozen
class Message:
    """One server message: its type, body, and (for acking) whether it was a sub-message.

    ``placed``: the body's tail went where the reader's :data:`Placer` said (the framebuffer),
    and ``body`` holds only the bytes before it.
    """

    type: int
    body: Body
    sub: bool = False
    placed: bool = False


#: Where the tail of a large body goes instead of a buffer of its own. Called with the message
#: type, the body's first bytes (at least 512 with a reader's buffer of 1 KiB or more; a body
#: shorter than that is never placed) and the body's size; it
#: returns ``(offset, target)`` to have the body's bytes from ``offset`` on written into
#: ``target`` (exactly ``size - offset`` bytes long, ``offset`` > 0), or None to read the body
#: as usual. It must not keep or change ``head``. It is called only once every earlier message
#: has been taken from the reader's (lazy) iterators, so it may count on their being handled.
Placer = Callable[[int, memoryview, int], "tuple[int, memoryview] | None"]


def _sub_messages(body: Body, list_offset: int) -> list[Message]:
    try:
        (count,) = struct.unpack_from("<H", body, list_offset)
        offsets = struct.unpack_from(f"<{count}I", body, list_offset + 2)
        subs = []
        for off in offsets:
            mtype, size = struct.unpack_from("<HI", body, off)
            if off + 6 + size > len(body):
                raise SpiceProtocolError("sub-message runs past its container")
            subs.append(Message(mtype, body[off + 6 : off + 6 + size], sub=True))
    except struct.error:
        raise SpiceProtocolError("malformed sub-message list") from None
    return subs


class MessageReader:
    """Turn the received byte stream into messages.

    Two ways to give it bytes: :meth:`feed` (bytes from anywhere), or :meth:`buffer` then
    :meth:`filled` (the caller reads straight into the reader's memory, e.g. with
    ``socket.recv_into``). Received bytes land in one reusable buffer; a message body of
    ``in_place`` bytes or more (a bitmap) gets a ``bytearray`` of its own that :meth:`buffer`
    then hands out, so the socket writes such a body where its handler reads it: no copy in
    user space. Smaller bodies are copied out as ``bytes``.

    With a :attr:`placer`, a large top-level body can skip that buffer: the part before the
    placer's offset is read into a small one (the message's ``body``), the rest straight into
    the placer's target, and the message comes out with ``placed`` set.
    """

    def __init__(
        self, *, mini_header: bool, buffer_size: int = 256 * 1024, in_place: int = 16 * 1024
    ) -> None:
        if not 0 < in_place <= buffer_size // 2:
            raise ValueError("in_place must be positive and at most half the buffer")
        self._mini = mini_header
        self._header = 6 if mini_header else 18
        self._in_place = in_place
        # with a placer, this much of a large body is read before asking it (its headers)
        self._peek = min(512, buffer_size // 2 - self._header)
        self._staging = bytearray(buffer_size)
        self._start = 0  # first byte not yet parsed
        self._end = 0  # first byte not yet received
        #: a body being read in place: serial, type, sub-list offset, body; and bytes in it
        self._body: tuple[int, int, int, bytearray] | None = None
        self._got = 0
        #: a placed body being read: its serial, type, size, first part and target
        self._placing: tuple[int, int, int, bytearray, memoryview] | None = None
        #: see :data:`Placer`; None reads every body into memory of its own
        self.placer: Placer | None = None
        #: count of received (top-level) messages = the implicit serial with mini headers
        self.last_serial = 0

    def buffer(self) -> memoryview:
        """Writable memory for the next received bytes (not empty); report them to
        :meth:`filled`, and take all its messages, before asking again."""
        if self._body is not None:
            return memoryview(self._body[3])[self._got :]
        if self._placing is not None:
            head, target = self._placing[3], self._placing[4]
            if self._got < len(head):
                return memoryview(head)[self._got :]
            return target[self._got - len(head) :]
        if len(self._staging) - self._end < self._in_place + self._header:
            # what is left is under one small message: move it to the front
            left = self._end - self._start
            self._staging[:left] = self._staging[self._start : self._end]
            self._start, self._end = 0, left
        return memoryview(self._staging)[self._end :]

    def filled(self, n: int) -> Iterator[Message]:
        """``n`` bytes were written at the start of :meth:`buffer`; yield every message they
        complete (sub-messages first)."""
        if self._body is not None:
            self._got += n
            serial, mtype, sub_list, body = self._body
            if self._got < len(body):
                return
            self._body = None
            self.last_serial = serial
            yield from _unpack(mtype, body, sub_list)
            return
        if self._placing is not None:
            self._got += n
            serial, mtype, size, head, target = self._placing
            if self._got < size:
                return
            self._placing = None
            target.release()
            self.last_serial = serial
            yield Message(mtype, head, placed=True)
            return
        self._end += n
        staging, header = self._staging, self._header
        while self._end - self._start >= header:
            if self._mini:
                mtype, size = struct.unpack_from("<HI", staging, self._start)
                sub_list = 0
                serial = self.last_serial + 1
            else:
                serial, mtype, size, sub_list = struct.unpack_from("<QHII", staging, self._start)
            if size > MAX_MESSAGE:
                raise SpiceProtocolError(f"message of {size} bytes exceeds the limit")
            begin = self._start + header
            have = self._end - begin
            if have < size:
                if size < self._in_place:
                    return
                if self.placer is not None and have < self._peek:
                    return  # the placer decides on the body's first bytes: wait for them
                if self._place(serial, mtype, size, sub_list, begin):
                    return
                # a large body: its own buffer, the part already here copied in once
                body = bytearray(size)
                body[:have] = memoryview(staging)[begin : self._end]
                self._start = self._end = 0
                self._body, self._got = (serial, mtype, sub_list, body), have
                return
            with memoryview(staging) as view:
                chunk = view[begin : begin + size]
                out: Body = bytearray(chunk) if size >= self._in_place else bytes(chunk)
                chunk.release()
            self._start = begin + size
            if self._start == self._end:
                self._start = self._end = 0
            self.last_serial = serial
            yield from _unpack(mtype, out, sub_list)

    def _place(self, serial: int, mtype: int, size: int, sub_list: int, begin: int) -> bool:
        """Start reading a large body through the placer, if it takes it."""
        if self.placer is None or sub_list or mtype == MSG_LIST:
            return False
        got = self._end - begin
        with memoryview(self._staging) as view:
            have = view[begin : self._end]
            with have:
                where = self.placer(mtype, have, size)
                if where is None:
                    return False
                offset, target = where
                if not 0 < offset <= size or len(target) != size - offset:
                    target.release()
                    raise ValueError("the placer's target does not fit the body")
                head = bytearray(offset)
                head[: min(got, offset)] = have[:offset]
                if got > offset:
                    target[: got - offset] = have[offset:]
        self._start = self._end = 0
        self._placing, self._got = (serial, mtype, size, head, target), got
        return True

    def feed(self, data: bytes | bytearray | memoryview) -> Iterator[Message]:
        """Add ``data``; yield every message it completes (sub-messages first)."""
        with memoryview(data) as view:
            while view:
                with self.buffer() as target:
                    n = min(len(target), len(view))
                    target[:n] = view[:n]
                view = view[n:]
                yield from self.filled(n)

    @property
    def pending(self) -> int:
        """Bytes received but not yet forming a whole message."""
        if self._body is not None or self._placing is not None:
            return self._header + self._got
        return self._end - self._start


def _unpack(mtype: int, body: Body, sub_list: int) -> Iterator[Message]:
    """A received message, after the sub-messages it carries."""
    if sub_list:
        yield from _sub_messages(body, sub_list)
        yield Message(mtype, body[:sub_list])
    elif mtype == MSG_LIST:
        yield from _sub_messages(body, 0)
        yield Message(mtype, b"")
    else:
        yield Message(mtype, body)


class MessageWriter:
    """Frame outgoing client messages."""

    def __init__(self, *, mini_header: bool) -> None:
        self._mini = mini_header
        self._serial = 0

    def frame(self, mtype: int, body: bytes = b"") -> bytes:
        """Header + body for one message."""
        if self._mini:
            return struct.pack("<HI", mtype, len(body)) + body
        self._serial += 1
        return struct.pack("<QHII", self._serial, mtype, len(body), 0) + body


class AckWindow:
    """Client side of SET_ACK/ACK flow control: feed each message, get what to send back."""

    def __init__(self) -> None:
        self._window = 0
        self._count = 0

    def on_message(self, msg: Message) -> list[tuple[int, bytes]]:
        """Replies due for ``msg`` (ACK_SYNC on SET_ACK, ACK each window)."""
        if msg.type == MSG_SET_ACK and not msg.sub:
            if len(msg.body) < 8:
                raise SpiceProtocolError("SET_ACK body too short")
            generation, window = struct.unpack_from("<II", msg.body)
            self._window = self._count = window
            return [(MSGC_ACK_SYNC, struct.pack("<I", generation))]
        if msg.sub or not self._window:
            return []
        self._count -= 1
        if self._count <= 0:
            self._count = self._window
            return [(MSGC_ACK, b"")]
        return []


def pong_for(body: Body) -> bytes:
    """PONG body for a PING body: id + timestamp only."""
    if len(body) < 12:
        raise SpiceProtocolError("PING body too short")
    return bytes(body[:12])


@attrs.frozen
class Notify:
    """A NOTIFY message."""

    severity: int
    visibility: int
    what: int
    text: str


def parse_notify(body: Body) -> Notify:
    """Parse NOTIFY."""
    try:
        _ts, severity, visibility, what, length = struct.unpack_from("<QIIII", body)
    except struct.error:
        raise SpiceProtocolError("NOTIFY body too short") from None
    text = body[24 : 24 + length].rstrip(b"\0").decode(errors="replace")
    return Notify(severity, visibility, what, text)
