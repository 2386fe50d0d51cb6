"""Compression of each message (zstd, or zlib from the standard library), bounded on the way
in: :class:`Compression` and its sans-I/O core :class:`MessageCompressor`."""

from __future__ import annotations

import zlib
from typing import Any

import attrs

from virtrio.errors import ConfigError

from .._transports import MessageChannel
from ._base import LayerChannel, Middleware, MiddlewareError

__all__ = ["Compression", "MessageCompressor"]


_STORED = 0
_ZLIB = 1
_ZSTD = 2
#: The algorithms :class:`Compression` offers, with their default and allowed levels.
_ALGORITHMS: dict[str, tuple[int, range]] = {"zstd": (3, range(-7, 23)), "zlib": (6, range(10))}


def _algorithm(instance: object, attribute: attrs.Attribute[Any], value: str) -> None:
    if value not in _ALGORITHMS:
        raise ConfigError(f"{attribute.name} must be 'zstd' or 'zlib', got {value!r}")


def _level(instance: Any, attribute: attrs.Attribute[Any], value: int | None) -> None:
    if value is None:
        return
    levels = _ALGORITHMS[instance.algorithm][1]
    if isinstance(value, bool) or not isinstance(value, int) or value not in levels:
        raise ConfigError(
            f"{attribute.name} must be a {instance.algorithm} level in"
            f" {levels.start}..{levels.stop - 1}, got {value!r}"
        )


def _non_negative_int(instance: object, attribute: attrs.Attribute[Any], value: int) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise ConfigError(f"{attribute.name} must be a non-negative integer, got {value!r}")


def _zstandard() -> Any:
    try:
        import zstandard
    except ImportError as exc:
        raise ConfigError(
            "zstd compression needs the zstandard package: pip install 'virtrio[compression]'"
            " (or use Compression(algorithm='zlib'))"
        ) from exc
    return zstandard


@attrs.frozen
class MessageCompressor:
    """The sans-I/O core of :class:`Compression`: one flag byte, then the message as is
    (``0``), as a zlib stream (``1``) or as one zstd frame with its size (``2``). A message
    shorter than ``min_size``, or that compressing would not shrink, is stored. Decoding reads
    the flag, so it takes either algorithm whichever this end sends with.

    >>> compressor = MessageCompressor()
    >>> compressor.encode(b"hi")
    b'\\x00hi'
    >>> compressor.decode(compressor.encode(bytes(1000)), max_size=1000) == bytes(1000)
    True
    """

    #: ``"zstd"`` (the default: several times faster than zlib at a better ratio) or
    #: ``"zlib"`` (the standard library's, where zstandard is not installed).
    algorithm: str = attrs.field(default="zstd", validator=_algorithm)
    #: The algorithm's level (zstd -7..22, default 3; zlib 0..9, default 6).
    level: int | None = attrs.field(default=None, validator=_level)
    #: Messages shorter than this are never compressed.
    min_size: int = attrs.field(default=256, validator=_non_negative_int)
    _zstd: Any = attrs.field(init=False, default=None, repr=False, eq=False)

    def __attrs_post_init__(self) -> None:
        if self.algorithm == "zstd":
            object.__setattr__(self, "_zstd", _zstandard())

    def encode(self, message: bytes) -> bytes:
        """``message`` with its flag byte, compressed if that makes it smaller."""
        if len(message) >= self.min_size:
            level = self.level if self.level is not None else _ALGORITHMS[self.algorithm][0]
            if self._zstd is not None:
                packed: bytes = self._zstd.ZstdCompressor(level=level).compress(message)
                flag = _ZSTD
            else:
                packed = zlib.compress(message, level)
                flag = _ZLIB
            if len(packed) < len(message):
                return bytes((flag,)) + packed
        return bytes((_STORED,)) + message

    def decode(self, data: bytes, max_size: int) -> bytes:
        """The message ``data`` carries, at most ``max_size`` bytes.

        The decompressed size is bounded before or while decompressing, so a small message
        that would expand to gigabytes (a zip bomb) costs at most ``max_size`` bytes of memory.

        Raises:
            MiddlewareError: no flag, an unknown flag, corrupt or truncated data, bytes after
                a zlib stream, a zstd frame that does not give its size, a message over
                ``max_size``, or a zstd message where zstandard is not installed.
        """
        if not data:
            raise MiddlewareError("compressed message is empty (no flag byte)")
        flag, payload = data[0], memoryview(data)[1:]
        if flag == _STORED:
            if len(payload) > max_size:
                raise MiddlewareError(
                    f"stored message is {len(payload)} bytes; the limit is {max_size}"
                )
            return bytes(payload)
        if flag == _ZLIB:
            return _inflate(payload, max_size)
        if flag == _ZSTD:
            return _unzstd(payload, max_size)
        raise MiddlewareError(f"compressed message has unknown flag {flag}")


def _inflate(payload: memoryview, max_size: int) -> bytes:
    inflater = zlib.decompressobj()
    try:
        # max_length 0 would mean unbounded; max_size + 1 is at least 1 and tells "over"
        # apart from "exactly at the limit"
        message = inflater.decompress(payload, max_size + 1)
    except zlib.error as exc:
        raise MiddlewareError(f"compressed message is corrupt: {exc}") from None
    if len(message) > max_size or inflater.unconsumed_tail:
        raise MiddlewareError(f"compressed message decompresses to more than {max_size} bytes")
    if not inflater.eof:
        raise MiddlewareError("compressed message ends inside its zlib stream")
    if inflater.unused_data:
        raise MiddlewareError(
            f"compressed message has {len(inflater.unused_data)} bytes after its zlib stream"
        )
    return message


def _unzstd(payload: memoryview, max_size: int) -> bytes:
    try:
        zstandard = _zstandard()
    except ConfigError as exc:
        raise MiddlewareError(f"the peer sent a zstd message: {exc}") from None
    try:
        size = zstandard.frame_content_size(payload)
    except zstandard.ZstdError as exc:
        raise MiddlewareError(f"compressed message is corrupt: {exc}") from None
    if size < 0:  # every frame we write says its size: decoding is then bounded by it
        raise MiddlewareError("compressed message is a zstd frame that does not give its size")
    if size > max_size:
        raise MiddlewareError(f"compressed message decompresses to more than {max_size} bytes")
    try:
        # one shot into a buffer of the size the frame gives: it cannot write past it
        message = zstandard.ZstdDecompressor().decompress(payload)
    except zstandard.ZstdError as exc:
        raise MiddlewareError(f"compressed message is corrupt: {exc}") from None
    return bytes(message)


@attrs.frozen
class Compression(Middleware):
    """Compression of each message (``overhead`` 1: the flag byte): zstd by default (the
    ``compression`` extra), or zlib from the standard library.

    Compressing runs in the sending task: zstd takes well under 0.1 ms per 64 KiB, zlib up to
    1 ms. The receiver decodes either algorithm and never expands past its
    ``max_message_size``.
    """

    #: ``"zstd"`` or ``"zlib"``.
    algorithm: str = attrs.field(default="zstd", validator=_algorithm)
    #: The algorithm's level (zstd -7..22, default 3; zlib 0..9, default 6).
    level: int | None = attrs.field(default=None, validator=_level)
    #: Messages shorter than this are sent as they are.
    min_size: int = attrs.field(default=256, validator=_non_negative_int)
    overhead = 1

    def __attrs_post_init__(self) -> None:
        if self.algorithm == "zstd":
            _zstandard()  # a missing extra is a ConfigError now, not at the first message

    async def wrap(
        self, channel: MessageChannel, *, client: bool, max_message_size: int
    ) -> MessageChannel:
        """``channel`` with each message compressed on send and decompressed on receive."""
        return _CompressedChannel(
            channel, MessageCompressor(self.algorithm, self.level, self.min_size), max_message_size
        )


class _CompressedChannel(LayerChannel):
    def __init__(
        self, inner: MessageChannel, compressor: MessageCompressor, max_message_size: int
    ) -> None:
        super().__init__(inner)
        self._compressor = compressor
        self._max_message_size = max_message_size

    def _encode(self, message: bytes) -> bytes:
        return self._compressor.encode(message)

    def _decode(self, data: bytes) -> bytes:
        return self._compressor.decode(data, self._max_message_size)
