"""The contract every sans-I/O protocol core of virtrio keeps (h11 is the model).

A core has no sockets, no Trio and no clock. The I/O layer feeds it what it reads and asks it
for what it understood::

    core.receive_data(data)                   # b"" means the peer closed its end
    while (event := core.next_event()) is not NEED_DATA:
        if isinstance(event, ConnectionClosed):
            break                             # the peer is done; nothing more will come
        handle(event)

(yamux, like h2, returns the events from ``receive_data`` itself: a list per read is
cheaper than a call per frame.) Three promises hold for all of them:

* **End of input is an event.** After ``receive_data(b"")`` the core reports
  :class:`ConnectionClosed` once, after every event still buffered, when the peer stopped
  between messages; a stream that ends inside a message raises the protocol's error instead.
* **Errors are sticky.** Once the peer broke the protocol, the core keeps raising that same
  error (h11's ``ERROR`` state): nothing after it is parsed, because nothing after it can be
  trusted. Events completed before the fault are still delivered first (yamux, which returns
  a read's events at once, loses those of the read that failed: its session ends anyway).
* **The state decides what may be sent.** Asking a core for something its state forbids (a
  command before the greeting, data on a half-closed stream) raises the protocol's local
  error (a subclass of :class:`~virtrio.errors.LocalProtocolError`) and changes nothing.

This module imports nothing but the standard library and attrs, and no core imports Trio, even
indirectly (a test imports each core in a fresh interpreter to prove it).
"""

from __future__ import annotations

from typing import Final, NoReturn, final

import attrs

__all__ = ["NEED_DATA", "ConnectionClosed", "ErrorState", "NeedData"]


@final
class NeedData:
    """Sentinel type: no complete event is buffered yet."""

    def __repr__(self) -> str:
        return "NEED_DATA"


#: Returned by a core's ``next_event`` when it needs more bytes.
NEED_DATA: Final = NeedData()


@attrs.frozen
class ConnectionClosed:
    """The peer closed the byte stream cleanly, between messages."""


class ErrorState:
    """A core's error state: empty until the first failure, which it then keeps.

    >>> state = ErrorState()
    >>> state.check()                 # no failure yet: nothing happens
    >>> state.fail(ValueError("bad byte"))
    Traceback (most recent call last):
    ...
    ValueError: bad byte
    >>> state.check()
    Traceback (most recent call last):
    ...
    ValueError: bad byte
    """

    __slots__ = ("error",)

    def __init__(self) -> None:
        #: The first error, once there is one.
        self.error: BaseException | None = None

    @property
    def failed(self) -> bool:
        """Whether the core has failed."""
        return self.error is not None

    def keep(self, error: BaseException) -> None:
        """Keep ``error`` (unless an earlier one is kept) without raising it: for a core that
        raises it from ``next_event`` once the events before it have been taken."""
        if self.error is None:
            self.error = error

    def fail(self, error: BaseException) -> NoReturn:
        """Keep ``error`` (unless an earlier one is kept) and raise the kept one."""
        self.keep(error)
        self.check()
        raise AssertionError("unreachable")  # pragma: no cover

    def check(self) -> None:
        """Raise the kept error again, if there is one (with a fresh traceback, so raising it
        many times never grows it)."""
        if self.error is not None:
            raise self.error.with_traceback(None)
