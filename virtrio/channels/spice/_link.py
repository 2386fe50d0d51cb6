"""Sans-I/O Spice link stage: the link packet, the server's reply, auth and the link result.

One link per connection (= per channel). Layouts: spice.proto / /work/shared/lab/spice-notes.md §1.
:class:`SpiceLink` is the handshake as a sans-I/O core; its states, in order, are
:class:`LinkState`'s, and each waits for a fixed number of bytes::

    link = SpiceLink(channel_type=ChannelType.MAIN, password="secret")
    while not isinstance(event := link.next_event(), Linked):
        sock.sendall(link.data_to_send())          # the link message, then the ticket
        if event is NEED_DATA:
            link.receive_data(sock.recv(link.bytes_wanted))
        else:                                      # ConnectionClosed: the server hung up
            raise ...
    channel_bytes = link.trailing_data             # what the server sent after the link

The server's refusal raises :class:`SpiceLinkError` (:class:`SpicePermissionError` for a wrong
password), anything malformed :class:`SpiceProtocolError`; either is raised again by every
later call (the contract of :mod:`virtrio.channels._sansio`), as is input that ends inside a
step. A clean end between steps is :class:`ConnectionClosed`.
"""

from __future__ import annotations

import enum
import struct
from typing import Final

import attrs

from virtrio.channels._sansio import NEED_DATA, ConnectionClosed, ErrorState, NeedData
from virtrio.channels.spice._errors import (
    SpiceLinkError,
    SpiceLocalProtocolError,
    SpicePermissionError,
    SpiceProtocolError,
    SpiceVersionError,
)

__all__ = [
    "LINK_MAGIC",
    "ChannelType",
    "LinkErr",
    "LinkReply",
    "LinkState",
    "Linked",
    "SpiceLink",
    "build_link_message",
    "check_link_result",
    "encrypt_ticket",
    "parse_link_header",
    "parse_link_reply",
]

LINK_MAGIC = 0x51444552  # "REDQ"
_MAJOR = 2
_MINOR = 2
LINK_HEADER_SIZE = 16
_REPLY_FIXED = 178
_PUBKEY_BYTES = 162
MAX_PASSWORD_BYTES = 60

CAP_AUTH_SELECTION = 0
CAP_AUTH_SPICE = 1
CAP_AUTH_SASL = 2
CAP_MINI_HEADER = 3


class ChannelType(enum.IntEnum):
    """Spice channel types (SPICE_CHANNEL_*)."""

    MAIN = 1
    DISPLAY = 2
    INPUTS = 3
    CURSOR = 4
    PLAYBACK = 5
    RECORD = 6
    TUNNEL = 7
    SMARTCARD = 8
    USBREDIR = 9
    PORT = 10
    WEBDAV = 11


class LinkErr(enum.IntEnum):
    """SpiceLinkErr: the server's verdict on a link."""

    OK = 0
    ERROR = 1
    INVALID_MAGIC = 2
    INVALID_DATA = 3
    VERSION_MISMATCH = 4
    NEED_SECURED = 5
    NEED_UNSECURED = 6
    PERMISSION_DENIED = 7
    BAD_CONNECTION_ID = 8
    CHANNEL_NOT_AVAILABLE = 9


_ERR_TEXT = {
    LinkErr.ERROR: "generic server error",
    LinkErr.INVALID_MAGIC: "server rejected the link magic",
    LinkErr.INVALID_DATA: "server rejected the link data (e.g. SASL required)",
    LinkErr.VERSION_MISMATCH: "protocol version mismatch",
    LinkErr.NEED_SECURED: "channel requires TLS (use the TLS port)",
    LinkErr.NEED_UNSECURED: "channel requires a plain (non-TLS) connection",
    LinkErr.PERMISSION_DENIED: "permission denied: wrong or missing Spice password",
    LinkErr.BAD_CONNECTION_ID: "unknown session id (main channel gone?)",
    LinkErr.CHANNEL_NOT_AVAILABLE: "no such channel on this server",
}


def caps_words(bits: tuple[int, ...]) -> list[int]:
    """Capability bit numbers → list of u32 words (empty when no bits)."""
    if not bits:
        return []
    words = [0] * (max(bits) // 32 + 1)
    for bit in bits:
        words[bit // 32] |= 1 << (bit % 32)
    return words


def has_cap(words: tuple[int, ...], bit: int) -> bool:
    """Whether capability ``bit`` is set in ``words``."""
    index = bit // 32
    return index < len(words) and bool(words[index] >> (bit % 32) & 1)


def build_link_message(
    connection_id: int,
    channel_type: int,
    channel_id: int,
    common_caps: tuple[int, ...],
    channel_caps: tuple[int, ...],
) -> bytes:
    """The client's SpiceLinkHeader + SpiceLinkMess + caps (caps given as bit numbers)."""
    common = caps_words(common_caps)
    channel = caps_words(channel_caps)
    words = common + channel
    mess = struct.pack(
        "<IBBIII", connection_id, channel_type, channel_id, len(common), len(channel), 18
    ) + struct.pack(f"<{len(words)}I", *words)
    return struct.pack("<IIII", LINK_MAGIC, _MAJOR, _MINOR, len(mess)) + mess


def parse_link_header(data: bytes) -> int:
    """Check a 16-byte server link header; return the size of the reply that follows."""
    if len(data) != LINK_HEADER_SIZE:
        raise SpiceProtocolError(f"link header must be 16 bytes, got {len(data)}")
    magic, major, _minor, size = (int(v) for v in struct.unpack("<IIII", data))
    if magic != LINK_MAGIC:
        raise SpiceProtocolError(f"not a Spice server: bad link magic {magic:#010x}")
    if major != _MAJOR:
        raise SpiceVersionError(
            f"unsupported Spice protocol major version {major}", LinkErr.VERSION_MISMATCH
        )
    if not 4 <= size <= 65536:
        raise SpiceProtocolError(f"link reply size {size} out of range")
    return size


@attrs.frozen
class LinkReply:
    """The server's SpiceLinkReply."""

    error: int
    pub_key: bytes
    common_caps: tuple[int, ...]
    channel_caps: tuple[int, ...]


def parse_link_reply(data: bytes) -> LinkReply:
    """Parse a SpiceLinkReply body; a non-OK error raises :class:`SpiceLinkError`."""
    if len(data) >= 4:
        (error,) = struct.unpack_from("<I", data)
        if error != LinkErr.OK:
            raise link_error(error)
    if len(data) < _REPLY_FIXED:
        raise SpiceProtocolError(f"link reply too short ({len(data)} bytes)")
    pub_key = bytes(data[4 : 4 + _PUBKEY_BYTES])
    n_common, n_channel, offset = struct.unpack_from("<III", data, 166)
    end = offset + 4 * (n_common + n_channel)
    if offset < _REPLY_FIXED or end > len(data):
        raise SpiceProtocolError("link reply capabilities lie outside the reply")
    words = struct.unpack_from(f"<{n_common + n_channel}I", data, offset)
    return LinkReply(0, pub_key, tuple(words[:n_common]), tuple(words[n_common:]))


def link_error(code: int) -> SpiceLinkError:
    """The exception for link error ``code`` (PERMISSION_DENIED → :class:`SpicePermissionError`)."""
    try:
        err = LinkErr(code)
    except ValueError:
        return SpiceLinkError(f"Spice link failed with unknown error {code}", code)
    text = f"Spice link failed: {_ERR_TEXT.get(err, err.name)} ({err.name})"
    if err is LinkErr.PERMISSION_DENIED:
        return SpicePermissionError(text, code)
    if err is LinkErr.VERSION_MISMATCH:
        return SpiceVersionError(text, code)
    return SpiceLinkError(text, code)


def check_link_result(data: bytes) -> None:
    """Check the 4-byte link result; raise the mapped error unless OK."""
    if len(data) != 4:
        raise SpiceProtocolError(f"link result must be 4 bytes, got {len(data)}")
    (code,) = struct.unpack("<I", data)
    if code != LinkErr.OK:
        raise link_error(code)


def encrypt_ticket(pub_key_der: bytes, password: str) -> bytes:
    """RSA-OAEP(SHA-1) of ``password`` + NUL with the server key (always sent, even without a
    password: the server decrypts before checking whether ticketing is on)."""
    from cryptography.hazmat.primitives import hashes
    from cryptography.hazmat.primitives.asymmetric import padding, rsa
    from cryptography.hazmat.primitives.serialization import load_der_public_key

    raw = password.encode() + b"\0"
    if len(raw) > MAX_PASSWORD_BYTES + 1:
        raise SpiceLinkError(
            f"Spice password longer than {MAX_PASSWORD_BYTES} bytes", LinkErr.ERROR
        )
    try:
        key = load_der_public_key(pub_key_der)
    except ValueError as exc:
        raise SpiceProtocolError(f"server sent an invalid RSA public key: {exc}") from None
    if not isinstance(key, rsa.RSAPublicKey):
        raise SpiceProtocolError("server public key is not RSA")
    return key.encrypt(
        raw,
        padding.OAEP(mgf=padding.MGF1(hashes.SHA1()), algorithm=hashes.SHA1(), label=None),
    )


# --- the handshake as a core ----------------------------------------------------------------

#: The common capabilities a client announces: auth selection, Spice ticket auth, mini headers.
CLIENT_COMMON_CAPS: Final = (CAP_AUTH_SELECTION, CAP_AUTH_SPICE, CAP_MINI_HEADER)
_RESULT_SIZE = 4


class LinkState(enum.Enum):
    """Where a link is; the waiting states in the order the server answers."""

    AWAITING_HEADER = "the link header"
    AWAITING_REPLY = "the link reply"
    AWAITING_RESULT = "the link result"
    LINKED = "linked"
    CLOSED = "closed"
    ERROR = "error"


#: Each waiting state, and the one its bytes lead to.
TRANSITIONS: Final = {
    LinkState.AWAITING_HEADER: LinkState.AWAITING_REPLY,
    LinkState.AWAITING_REPLY: LinkState.AWAITING_RESULT,
    LinkState.AWAITING_RESULT: LinkState.LINKED,
}


@attrs.frozen
class Linked:
    """The server accepted the link; the channel's messages follow."""

    #: Both sides use the 6-byte mini message header.
    mini_header: bool
    #: The server's common and channel capability words.
    common_caps: tuple[int, ...]
    channel_caps: tuple[int, ...]


class SpiceLink:
    """One channel's link handshake without I/O (see the module docstring).

    Args:
        channel_type, channel_id: the channel to link (``ChannelType.MAIN`` first).
        connection_id: the session id from the main channel's init (0 for the main channel).
        password: the Spice ticket ("" when the server has none).
        channel_caps: channel capability bits to announce.
    """

    def __init__(
        self,
        *,
        channel_type: int,
        channel_id: int = 0,
        connection_id: int = 0,
        password: str = "",
        channel_caps: tuple[int, ...] = (),
    ) -> None:
        self._password = password
        self._out = bytearray(
            build_link_message(
                connection_id, channel_type, channel_id, CLIENT_COMMON_CAPS, channel_caps
            )
        )
        self._buffer = bytearray()
        self._state = LinkState.AWAITING_HEADER
        self._wanted = LINK_HEADER_SIZE
        self._reply: LinkReply | None = None
        self._eof = False
        self._error = ErrorState()
        #: Bytes received after the link result: the channel's first messages.
        self.trailing_data = b""

    @property
    def state(self) -> LinkState:
        """Where the handshake is."""
        return self._state

    @property
    def bytes_wanted(self) -> int:
        """How many more bytes the current step needs (read no more, and the link never
        holds the channel's bytes); 0 once linked."""
        if self._state not in TRANSITIONS:
            return 0
        return max(1, self._wanted - len(self._buffer))

    def data_to_send(self) -> bytes:
        """Take what is to be sent now: the link message first, the ticket after the reply."""
        out, self._out = bytes(self._out), bytearray()
        return out

    def receive_data(self, data: bytes | bytearray) -> None:
        """Feed bytes from the server; ``b""`` means it closed the connection.

        Raises:
            SpiceLocalProtocolError: bytes after the link is done (they belong to the
                channel), or after the end of input.
        """
        if self._error.failed:
            return
        if not data:
            self._eof = True
        elif self._eof or self._state is LinkState.LINKED:
            raise SpiceLocalProtocolError(
                f"Spice link data received while {self._state.value}: after the link, the"
                " bytes belong to the channel"
                if self._state is LinkState.LINKED
                else "Spice link data received after the end of input"
            )
        else:
            self._buffer += data

    def next_event(self) -> Linked | ConnectionClosed | NeedData:
        """:class:`Linked` once the server accepted, :class:`ConnectionClosed` if it closed
        the connection between steps, else ``NEED_DATA`` (then send :meth:`data_to_send`).

        Raises:
            SpiceLinkError: the server refused the link (``code`` says why).
            SpiceProtocolError: the server's bytes are not a Spice link, or the connection
                ended inside a step. Either is raised again by every later call.
        """
        self._error.check()
        try:
            while self._state in TRANSITIONS and len(self._buffer) >= self._wanted:
                step = bytes(self._buffer[: self._wanted])
                del self._buffer[: self._wanted]
                event = self._step(step)
                self._state = TRANSITIONS[self._state]
                if event is not None:
                    self.trailing_data, self._buffer = bytes(self._buffer), bytearray()
                    return event
            if self._state in TRANSITIONS and self._eof:
                if self._buffer:
                    raise SpiceProtocolError(
                        f"the server closed the connection inside {self._state.value}"
                        f" ({len(self._buffer)} of {self._wanted} bytes)"
                    )
                self._state = LinkState.CLOSED
                return ConnectionClosed()
            return NEED_DATA
        except (SpiceLinkError, SpiceProtocolError) as exc:
            self._state = LinkState.ERROR
            self._buffer.clear()
            self._error.fail(exc)

    def _step(self, data: bytes) -> Linked | None:
        if self._state is LinkState.AWAITING_HEADER:
            self._wanted = parse_link_header(data)
            return None
        if self._state is LinkState.AWAITING_REPLY:
            self._reply = reply = parse_link_reply(data)
            if has_cap(reply.common_caps, CAP_AUTH_SELECTION):
                self._out += struct.pack("<I", CAP_AUTH_SPICE)
            self._out += encrypt_ticket(reply.pub_key, self._password)
            self._wanted = _RESULT_SIZE
            return None
        check_link_result(data)
        accepted = self._reply
        assert accepted is not None
        return Linked(
            has_cap(accepted.common_caps, CAP_MINI_HEADER),
            accepted.common_caps,
            accepted.channel_caps,
        )
