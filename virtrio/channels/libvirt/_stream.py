"""libvirt streams (``virDomainOpenChannel``, ``virDomainOpenConsole``) as Trio streams.

The stream is opened non-blocking; readiness comes from libvirt's stream event callback, which
our Trio event loop runs on the Trio thread. Writability is only asked for while a sender waits
(a libvirt stream is almost always writable, and asking all the time would spin the loop).
"""

from __future__ import annotations

import contextlib
from typing import TYPE_CHECKING, Any

import trio

from virtrio.errors import ConnectionLostError
from virtrio.primitives import run_in_worker

from ._blocking import _libvirt, run_blocking
from ._errors import translate_error

if TYPE_CHECKING:
    from ._connection import LibvirtConnection

__all__ = ["LibvirtStream", "open_channel_stream", "open_console_stream"]

_READABLE, _WRITABLE, _ERROR, _HANGUP = 1, 2, 4, 8
_CHUNK = 65536


class _OneAtATime:
    """Raises trio.BusyResourceError when a second task enters (Trio's stream contract)."""

    def __init__(self, message: str) -> None:
        self._message = message
        self._held = False

    def __enter__(self) -> None:
        if self._held:
            raise trio.BusyResourceError(self._message)
        self._held = True

    def __exit__(self, *_exc: object) -> None:
        self._held = False


class LibvirtStream(trio.abc.Stream):
    """A byte stream to a domain's channel or console through libvirt.

    One task may receive while another sends; :meth:`aclose` finishes the libvirt stream.
    """

    def __init__(self, connection: LibvirtConnection, raw: Any, what: str) -> None:
        self._connection = connection
        self._raw: Any = raw
        self._what = what
        self._readable = trio.Event()
        self._writable = trio.Event()
        self._send_conflict = _OneAtATime(f"another task is sending on {what}")
        self._receive_conflict = _OneAtATime(f"another task is receiving on {what}")
        self._mask = _READABLE | _ERROR | _HANGUP
        raw.eventAddCallback(self._mask, self._on_event, None)

    def _on_event(self, _stream: Any, events: int, _opaque: Any) -> None:
        if events & (_READABLE | _ERROR | _HANGUP):
            self._readable.set()
        if events & (_WRITABLE | _ERROR | _HANGUP):
            self._writable.set()

    def _set_mask(self, mask: int) -> None:
        if mask != self._mask and self._raw is not None:
            self._mask = mask
            self._raw.eventUpdateCallback(mask)

    def _check_open(self) -> Any:
        if self._raw is None:
            raise trio.ClosedResourceError(f"{self._what} is closed")
        return self._raw

    def _error(self, exc: Any) -> BaseException:
        error = translate_error(exc, self._what, uri=self._connection.uri)
        if isinstance(error, ConnectionLostError):
            return trio.BrokenResourceError(str(error))
        return error

    async def receive_some(self, max_bytes: int | None = None) -> bytes:
        """Bytes from the guest side; ``b""`` once the stream has ended."""
        size = _CHUNK if max_bytes is None else max_bytes
        if size < 1:
            raise ValueError("max_bytes must be >= 1")
        libvirt = _libvirt()
        with self._receive_conflict:
            await trio.lowlevel.checkpoint_if_cancelled()
            while True:
                raw = self._check_open()
                try:
                    data = raw.recv(size)
                except libvirt.libvirtError as exc:
                    raise self._error(exc) from None
                if isinstance(data, bytes):
                    await trio.lowlevel.cancel_shielded_checkpoint()
                    return data
                self._readable = trio.Event()  # -2: would block
                await self._readable.wait()

    async def send_all(self, data: bytes | bytearray | memoryview) -> None:
        """Send every byte of ``data`` to the guest side."""
        libvirt = _libvirt()
        view = memoryview(data).cast("B")
        with self._send_conflict:
            await trio.lowlevel.checkpoint_if_cancelled()
            while view:
                raw = self._check_open()
                try:
                    sent = raw.send(bytes(view[:_CHUNK]))
                except libvirt.libvirtError as exc:
                    raise self._error(exc) from None
                if sent >= 0:
                    view = view[sent:]
                    continue
                self._writable = trio.Event()  # -2: would block
                self._set_mask(self._mask | _WRITABLE)
                try:
                    await self._writable.wait()
                finally:
                    self._set_mask(self._mask & ~_WRITABLE)
            await trio.lowlevel.cancel_shielded_checkpoint()

    async def wait_send_all_might_not_block(self) -> None:
        """Return at once: libvirt buffers what it cannot send yet."""
        with self._send_conflict:
            self._check_open()
            await trio.lowlevel.checkpoint()

    async def aclose(self) -> None:
        """Stop watching the stream and finish it (abort if finishing fails)."""
        raw, self._raw = self._raw, None
        self._readable.set()
        self._writable.set()
        if raw is None:
            await trio.lowlevel.checkpoint()
            return
        libvirt = _libvirt()
        with contextlib.suppress(libvirt.libvirtError):
            raw.eventRemoveCallback()

        def finish() -> None:
            try:
                raw.finish()
            except libvirt.libvirtError:
                with contextlib.suppress(libvirt.libvirtError):
                    raw.abort()

        with trio.CancelScope(shield=True), trio.move_on_after(5):
            await run_in_worker(finish, abandon_on_cancel=True)
        _free_now(raw)


def _free_now(raw: Any) -> None:
    """Free the C stream now, releasing its hold on the connection.

    libvirt-python keeps the callback's data (which refers back to the stream object) alive
    on the C side after ``eventRemoveCallback``, so the wrapper is never collected and the
    stream would keep its connection open; the wrapper is left inert instead.
    """
    handle, raw._o = raw._o, None
    if hasattr(raw, "cb"):
        del raw.cb
    if handle is not None:
        _libvirt().libvirtmod.virStreamFree(handle)


async def _open(
    connection: LibvirtConnection, domain: Any, what: str, opener: str, *args: Any
) -> LibvirtStream:
    libvirt = _libvirt()
    raw = connection.raw.newStream(libvirt.VIR_STREAM_NONBLOCK)
    try:
        await run_blocking(
            getattr(domain, opener),
            *args,
            raw,
            0,
            what=f"open {what}",
            uri=connection.uri,
            timeout=connection.call_timeout,
            limiter=connection.limiter,
        )
    except BaseException:
        with contextlib.suppress(libvirt.libvirtError):
            raw.abort()
        raise
    return LibvirtStream(connection, raw, what)


async def open_channel_stream(
    connection: LibvirtConnection, domain: Any, name: str
) -> LibvirtStream:
    """Open the domain's channel ``name`` (a virtio-serial port name or alias) through libvirt."""
    return await _open(connection, domain, f"channel {name}", "openChannel", name)


async def open_console_stream(
    connection: LibvirtConnection, domain: Any, device: str | None = None
) -> LibvirtStream:
    """Open the domain's console (``device`` = an alias such as ``serial0``; None: the first)."""
    return await _open(connection, domain, f"console {device or '0'}", "openConsole", device)
