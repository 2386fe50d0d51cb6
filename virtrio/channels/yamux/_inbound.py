"""Who reads a socket session's input: :class:`ReadTurn`.

On a socket (:class:`~._wire.SocketWire`) the session's reader task is not the only task that
may read. A stream's reader that finds nothing buffered reads the socket itself, and
dispatches every frame it finds (to every stream: data, credit, pings, opens, GoAway) until
its own stream has something. A message then costs two task steps, the sender's and the
receiver's, as on a bare socket, instead of three: the reader task's wake-up and the hand-over
of the data to the receiver's task are gone.

The turn to read:

* one task holds it at a time: the reader task, a stream's reader, or nobody;
* a stream's reader takes it when nobody holds it, or when the reader task only waits for the
  socket (it holds nothing read then) and no other stream's reader waits for it to read: that
  wait is stopped, and the reader task, seeing it holds the turn no more, naps. With other
  readers parked (many busy streams), the reader task goes on reading for everybody, and a
  reader about to park first reads what the socket holds already, without waiting
  (:meth:`ReadTurn.poll`): its data is usually there, and nobody's task step is spent;
* the reader task takes the turn back :data:`LEND` seconds after a stream's reader gave it
  back, unless one took it again meanwhile (a receiver iterating messages comes back at
  once: waking the reader task in between would cost a task step per message), or at once if
  a task waits for what only input brings (:meth:`ReadTurn.want`: a stream's reader that
  could not take the turn, a writer waiting for credit, an accept, an open waiting for a
  slot, a ping), so input nobody waits for (a ping, a GoAway) waits :data:`LEND` at most;
* a stream's reader holding the turn waits for the socket only after a read that brought
  nothing for it, so the tasks its reads woke run before it reads again.

On any other transport the reader task reads alone (no turn).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Final

import trio

from virtrio.errors import ConnectionLostError

from ._errors import YamuxProtocolError
from ._wire import SocketWire

__all__ = ["LEND", "ReadTurn"]

#: How long after a stream's reader gave the turn back the reader task takes it (seconds).
LEND: Final = 0.005

_READER: Final = "reader"
_STREAM: Final = "stream"


class ReadTurn:
    """The turn to read ``wire``, for one session (see the module).

    ``dispatch(data)`` handles bytes read (``b""``: the end of the connection) and raises
    what ends the session; ``fail(error)`` ends it from a stream's reader; ``may_read()``
    says whether input may be read now (the session is up, and the answers owed to the peer
    are not piling up).

    Waits for the socket are bare (a cancel scope around each would cost as much as the wait
    itself): a wait that must stop early (the reader task's, when a stream's reader takes the
    turn; a stream reader's, when its stream is closed by another task) is stopped by
    :meth:`SocketWire.interrupt`, which wakes every wait for the socket with
    :class:`trio.ClosedResourceError`; a waiter that finds the socket still open looks again
    at why it waited.
    """

    __slots__ = (
        "_dispatch",
        "_fail",
        "_holder_waits",
        "_may_read",
        "_nap",
        "_owner",
        "_reader_waits",
        "_wanted",
        "_wire",
        "holder",
        "parked",
    )

    def __init__(
        self,
        wire: SocketWire,
        *,
        dispatch: Callable[[bytes], None],
        fail: Callable[[Exception], None],
        may_read: Callable[[], bool],
    ) -> None:
        self._wire = wire
        self._dispatch = dispatch
        self._fail = fail
        self._may_read = may_read
        #: Who reads now: ``"reader"`` (the reader task), ``"stream"`` (a stream's reader) or
        #: None.
        self.holder: str | None = None
        self._owner: object = None  # the stream whose reader holds the turn
        self._reader_waits = False  # the reader task waits for the socket
        self._holder_waits = False  # a stream's reader holding the turn waits for the socket
        self._nap: trio.CancelScope | None = None  # the reader task's nap, if it naps
        self._wanted = False  # a task waits for input the reader task has not read for yet
        #: Streams' readers waiting for another task to read for them.
        self.parked = 0

    # --- the reader task ---------------------------------------------------------------------

    async def next_input(self) -> bytes:
        """The reader task's next read (``b""`` at the end of the connection): it waits for
        its turn and for the socket, and reads once it holds the turn and the socket is
        readable.

        Raises:
            OSError: the connection broke.
            trio.ClosedResourceError: the socket was closed.
        """
        wire = self._wire
        while True:
            if self.holder is not None:
                await self._take_a_nap()
                continue
            self.holder = _READER
            self._wanted = False  # (whoever wanted input: it reads for them now)
            self._reader_waits = True
            try:
                await wire.wait_readable()
            except trio.ClosedResourceError:
                if wire.closed:
                    raise
            finally:
                self._reader_waits = False
            if self.holder is not _READER:
                # a stream's reader took the turn (even if the socket was readable); it may
                # have given it back already, and will take it again soon: nap
                await self._take_a_nap()
                continue
            try:
                return wire.read_now()
            except BlockingIOError:
                continue
            finally:
                if self.holder is _READER:
                    self.holder = None

    async def _take_a_nap(self) -> None:
        """Until a stream's reader gave the turn back :data:`LEND` ago, or somebody wants
        input read (see the module)."""
        with trio.CancelScope() as self._nap:
            if self.holder is None:  # given back already
                self._nap.deadline = trio.current_time() + LEND
            await trio.sleep_forever()
        self._nap = None

    # --- a stream's reader -------------------------------------------------------------------

    def take(self, owner: object) -> bool:
        """Take the turn for the reader of ``owner`` (a stream), if it may be taken now: when
        nobody holds it, or when the reader task only waits for the socket and no other
        stream's reader waits for it to read (then it goes on reading for everybody; see
        :meth:`poll`)."""
        holder = self.holder
        if holder is None:
            if not self._may_read():
                return False
        elif holder is _READER and self._reader_waits and not self.parked and self._may_read():
            # the reader task holds nothing read: stop its wait (it checks the holder before
            # reading, so even a wake-up already on its way reads nothing)
            self._reader_waits = False
            self._wire.interrupt()
        else:
            return False
        self.holder = _STREAM
        self._owner = owner
        return True

    async def read_until(self, done: Callable[[], bool]) -> bool:
        """As the turn's holder (see :meth:`take`), read and dispatch until ``done()``, the
        session ends, or input may not be read any more; then give the turn back. True if it
        waited for the socket (a schedule point)."""
        wire = self._wire
        waited = fresh = False
        try:
            while not done() and self._may_read():
                if fresh and not wire.drained:
                    # the last read brought nothing for us but filled its buffer: more is
                    # there already; let the tasks it woke run first, then read without
                    # asking the kernel (a wait for the socket costs an epoll_ctl and its
                    # event each time)
                    await trio.lowlevel.checkpoint()
                    waited = True
                elif fresh:  # the last read brought nothing for us: let others run first
                    self._holder_waits = True
                    try:
                        await wire.wait_readable()
                    except trio.ClosedResourceError:
                        if wire.closed:
                            raise
                        continue  # interrupted (see wake): look again
                    finally:
                        self._holder_waits = False
                        waited = True
                fresh = True
                try:
                    data = wire.read_now()
                except BlockingIOError:
                    continue
                self._dispatch(data)
        except (YamuxProtocolError, ConnectionLostError, trio.ClosedResourceError, OSError) as exc:
            self._fail(exc)  # the socket broke, or dispatching found the end or a fault
        finally:
            self.give_back()
        return waited

    def poll(self) -> None:
        """While the reader task waits for the socket (so holds nothing read), read what the
        socket holds already and dispatch it, without waiting: a stream's reader about to
        park goes on at once when its data is there, and the reader task need not run."""
        if self.holder is not _READER or not self._reader_waits or not self._may_read():
            return
        try:
            data = self._wire.read_now()
        except BlockingIOError:
            return
        except OSError:  # broken: the reader task reports it
            return
        if not data:
            return  # the end of the connection stays readable: the reader task ends it
        try:
            self._dispatch(data)
        except (YamuxProtocolError, ConnectionLostError) as exc:
            self._fail(exc)

    def give_back(self) -> None:
        """A stream's reader is done with the turn (see the module)."""
        self.holder = None
        self._owner = None
        if (nap := self._nap) is not None:
            if self._wanted or self.parked:
                nap.cancel()
            elif nap.deadline == math.inf:
                nap.deadline = trio.current_time() + LEND

    # --- everybody ---------------------------------------------------------------------------

    def want(self) -> None:
        """A task is about to wait for what only input brings: make sure input is read, by
        the reader task if nobody holds the turn (now, not after :data:`LEND`)."""
        if self.holder is not _READER:
            self._wanted = True  # (until the reader task reads: see give_back)
            if self.holder is None and (nap := self._nap) is not None:
                nap.cancel()

    def wake(self, owner: object) -> None:
        """Something happened to ``owner`` that its reader must see (it was closed or reset
        by another task): stop its wait for the socket, if it holds the turn."""
        if self._owner is owner and self._holder_waits:
            self._holder_waits = False
            self._wire.interrupt()

    def stop(self) -> None:
        """The session ended: wake whoever waits for the socket or for the turn."""
        if self._holder_waits or self._reader_waits:
            self._wire.interrupt()
        if self._nap is not None:
            self._nap.cancel()
