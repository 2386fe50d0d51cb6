"""The sans-I/O Spice link handshake (:class:`SpiceLink`) against an in-memory server: any
split, the end of input at every point, garbage, sticky errors, forbidden input."""

from __future__ import annotations

import contextlib
import struct

import pytest
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding, rsa
from hypothesis import given, strategies as st

from tests.strategies import splits
from virtrio.channels._sansio import NEED_DATA, ConnectionClosed
from virtrio.channels.spice import (
    SpiceLinkError,
    SpiceLocalProtocolError,
    SpicePermissionError,
    SpiceProtocolError,
)
from virtrio.channels.spice._link import (
    CAP_AUTH_SELECTION,
    CAP_AUTH_SPICE,
    CAP_MINI_HEADER,
    LINK_MAGIC,
    ChannelType,
    Linked,
    LinkState,
    SpiceLink,
    build_link_message,
    caps_words,
)

KEY = rsa.generate_private_key(public_exponent=65537, key_size=1024)
PUBLIC = KEY.public_key().public_bytes(
    serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
)
assert len(PUBLIC) == 162


def server_reply(common: tuple[int, ...], channel: tuple[int, ...] = (7,), error: int = 0) -> bytes:
    """What a Spice server answers a link: header, then reply (error, key, caps)."""
    words, chan = caps_words(common), list(channel)
    body = struct.pack("<I", error) + PUBLIC + struct.pack("<III", len(words), len(chan), 178)
    body += struct.pack(f"<{len(words) + len(chan)}I", *words, *chan)
    return struct.pack("<IIII", LINK_MAGIC, 2, 2, len(body)) + body


COMMON = (CAP_AUTH_SELECTION, CAP_AUTH_SPICE, CAP_MINI_HEADER)
REPLY = server_reply(COMMON)
OK = struct.pack("<I", 0)


def link(password: str = "pw") -> SpiceLink:
    return SpiceLink(channel_type=ChannelType.INPUTS, channel_id=1, password=password)


def ticket_of(sent: bytes) -> str:
    return KEY.decrypt(
        sent,
        padding.OAEP(mgf=padding.MGF1(hashes.SHA1()), algorithm=hashes.SHA1(), label=None),
    ).decode()


@given(st.binary(max_size=40), st.data())
def test_link_at_any_split(trailing: bytes, data: st.DataObject) -> None:
    core = link()
    sent = core.data_to_send()
    assert sent == build_link_message(0, ChannelType.INPUTS, 1, COMMON, ())
    event: object = NEED_DATA
    later = b""  # what comes after the link is the channel's, read by the channel
    for chunk in data.draw(splits(REPLY + OK + trailing)):
        if event is not NEED_DATA:
            later += chunk
            continue
        core.receive_data(chunk)
        event = core.next_event()
        sent += core.data_to_send()
    assert event == Linked(True, tuple(caps_words(COMMON)), (7,))
    assert core.trailing_data + later == trailing  # the channel's bytes are handed on
    assert core.state is LinkState.LINKED
    after_link = sent[len(build_link_message(0, ChannelType.INPUTS, 1, COMMON, ())) :]
    assert after_link[:4] == struct.pack("<I", CAP_AUTH_SPICE)  # the server offered a choice
    assert ticket_of(after_link[4:]) == "pw\0"
    with pytest.raises(SpiceLocalProtocolError, match="belong to the channel"):
        core.receive_data(b"more")


def test_reading_bytes_wanted_never_takes_the_channels_bytes() -> None:
    core = link("")
    wire = REPLY + OK + b"channel"
    while not isinstance(core.next_event(), Linked):
        wanted = core.bytes_wanted
        core.receive_data(wire[:wanted])
        wire = wire[wanted:]
    assert wire == b"channel"
    assert core.trailing_data == b""
    assert core.bytes_wanted == 0


def test_no_auth_selection_without_the_cap() -> None:
    core = link()
    start = len(core.data_to_send())
    core.receive_data(server_reply((CAP_AUTH_SPICE,)) + OK)
    assert core.next_event() == Linked(False, tuple(caps_words((CAP_AUTH_SPICE,))), (7,))
    assert ticket_of(core.data_to_send()) == "pw\0"
    assert start


@given(st.integers(0, len(REPLY) + 4))
def test_end_of_input_at_every_point(cut: int) -> None:
    core = link()
    core.receive_data((REPLY + OK)[:cut])
    core.receive_data(b"")
    if cut == len(REPLY) + 4:
        assert isinstance(core.next_event(), Linked)
    elif cut in (0, 16, len(REPLY)):  # between two steps: a clean end
        assert core.next_event() == ConnectionClosed()
        assert core.state is LinkState.CLOSED
        with pytest.raises(SpiceLocalProtocolError, match="after the end"):
            core.receive_data(b"x")
    else:
        with pytest.raises(SpiceProtocolError, match="closed the connection inside the link"):
            core.next_event()
        assert core.state is LinkState.ERROR


def test_a_refusal_is_sticky() -> None:
    core = link("wrong")
    core.receive_data(REPLY + struct.pack("<I", 7))
    with pytest.raises(SpicePermissionError, match="password") as first:
        core.next_event()
    core.receive_data(OK)  # ignored: the link has failed
    for _ in range(2):
        with pytest.raises(SpicePermissionError) as again:
            core.next_event()
        assert again.value is first.value
    assert core.state is LinkState.ERROR


def test_a_refused_reply_raises_the_mapped_error() -> None:
    core = link()
    core.receive_data(struct.pack("<IIII", LINK_MAGIC, 2, 2, 4) + struct.pack("<I", 5))
    with pytest.raises(SpiceLinkError, match="TLS") as info:
        core.next_event()
    assert info.value.code == 5
    assert core.data_to_send()  # the link message only: no ticket for a refused link


@given(st.binary(max_size=300), st.data())
def test_garbage_gives_a_clear_error(garbage: bytes, data: st.DataObject) -> None:
    core = link()
    with contextlib.suppress(SpiceProtocolError, SpiceLinkError):
        for chunk in data.draw(splits(garbage)):
            core.receive_data(chunk)
            core.next_event()
        core.receive_data(b"")
        assert core.next_event() == ConnectionClosed()  # garbage that links: impossible
