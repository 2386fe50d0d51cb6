"""The state of one yamux stream, and every transition it may make, in one table.

A stream is opened by one side's SYN and acknowledged by the other's ACK; each side then
half-closes it with a FIN, and either may abort it with an RST::

    we open:        SYN_SENT --ACK received--> ESTABLISHED
    the peer opens: SYN_RECEIVED --ACK sent--> ESTABLISHED
    ESTABLISHED --FIN sent--> LOCAL_CLOSED --FIN received--> CLOSED
    ESTABLISHED --FIN received--> REMOTE_CLOSED --FIN sent--> CLOSED
    (any state) --RST sent or received--> CLOSED

A FIN may come before the acknowledgement, hence the SYN_* half-closed states. Each state
says what it allows (:attr:`StreamState.sending`, :attr:`StreamState.receiving`), so the hot
path asks one attribute, never the table; the table is consulted only when a flag changes
the state.
"""

from __future__ import annotations

import enum
from typing import Final

__all__ = ["TRANSITIONS", "StreamInput", "StreamState", "next_state"]


class StreamState(enum.Enum):
    """Where one stream is. Each state knows whether we may still send and whether the peer
    may, and whether an acknowledgement is owed (by us) or awaited (from the peer)."""

    #: We opened it; the peer has not acknowledged it yet.
    SYN_SENT = ("SYN sent", True, True, False, True)
    #: We opened it and half-closed it before the peer acknowledged it.
    SYN_SENT_LOCAL_CLOSED = ("SYN sent, FIN sent", False, True, False, True)
    #: The peer opened it; our first frame on it carries the ACK.
    SYN_RECEIVED = ("SYN received", True, True, True, False)
    #: The peer opened and half-closed it before we acknowledged it.
    SYN_RECEIVED_REMOTE_CLOSED = ("SYN received, FIN received", True, False, True, False)
    #: Open both ways.
    ESTABLISHED = ("established", True, True, False, False)
    #: We sent FIN: the peer may still send.
    LOCAL_CLOSED = ("FIN sent", False, True, False, False)
    #: The peer sent FIN: we may still send.
    REMOTE_CLOSED = ("FIN received", True, False, False, False)
    #: Both FINs, or a reset: the stream is forgotten.
    CLOSED = ("closed", False, False, False, False)

    def __init__(
        self, label: str, sending: bool, receiving: bool, ack_owed: bool, ack_awaited: bool
    ) -> None:
        self.label = label
        #: We may send data (and FIN).
        self.sending = sending
        #: The peer may send data (and FIN).
        self.receiving = receiving
        #: Our next frame on the stream must carry ACK.
        self.ack_owed = ack_owed
        #: The peer has not acknowledged our open yet (it holds one of the 256 open slots).
        self.ack_awaited = ack_awaited


class StreamInput(enum.Enum):
    """What can happen to a stream."""

    SEND_ACK = "ACK sent"
    RECEIVE_ACK = "ACK received"
    SEND_FIN = "FIN sent"
    RECEIVE_FIN = "FIN received"
    SEND_RST = "RST sent"
    RECEIVE_RST = "RST received"


_S, _I = StreamState, StreamInput
_RESETS: Final = {_I.SEND_RST: _S.CLOSED, _I.RECEIVE_RST: _S.CLOSED}

#: Every state and the inputs it accepts, with the state each leads to. An input a state does
#: not list is forbidden there (our own: a local protocol error; the peer's: a protocol error;
#: an ACK once acknowledged is the one exception, ignored as every implementation does).
TRANSITIONS: Final[dict[StreamState, dict[StreamInput, StreamState]]] = {
    _S.SYN_SENT: {
        _I.RECEIVE_ACK: _S.ESTABLISHED,
        _I.SEND_FIN: _S.SYN_SENT_LOCAL_CLOSED,
        _I.RECEIVE_FIN: _S.REMOTE_CLOSED,  # a FIN shows the peer knows the stream: acknowledged
        **_RESETS,
    },
    _S.SYN_SENT_LOCAL_CLOSED: {
        _I.RECEIVE_ACK: _S.LOCAL_CLOSED,
        _I.RECEIVE_FIN: _S.CLOSED,
        **_RESETS,
    },
    _S.SYN_RECEIVED: {
        _I.SEND_ACK: _S.ESTABLISHED,
        _I.RECEIVE_FIN: _S.SYN_RECEIVED_REMOTE_CLOSED,
        **_RESETS,
    },
    _S.SYN_RECEIVED_REMOTE_CLOSED: {_I.SEND_ACK: _S.REMOTE_CLOSED, **_RESETS},
    _S.ESTABLISHED: {_I.SEND_FIN: _S.LOCAL_CLOSED, _I.RECEIVE_FIN: _S.REMOTE_CLOSED, **_RESETS},
    _S.LOCAL_CLOSED: {_I.RECEIVE_FIN: _S.CLOSED, **_RESETS},
    _S.REMOTE_CLOSED: {_I.SEND_FIN: _S.CLOSED, **_RESETS},
    _S.CLOSED: {},
}


def next_state(state: StreamState, what: StreamInput) -> StreamState | None:
    """The state ``what`` leads to from ``state``, or None if ``state`` forbids it."""
    return TRANSITIONS[state].get(what)
