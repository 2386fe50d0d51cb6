"""Virtio-serial channels of a domain (feature A4): discover, open by name, read and write.

::

    vm = host.domain("demo")                       # or LibvirtDomain(connection, "demo")
    for channel in await discover_channels(vm):
        print(channel.name, channel.type, channel.state)
    async with await open_virtio_serial(vm, "org.virtrio.echo0") as port:
        await port.send_all(b"PING\\n")
        print(await port.read_line(timeout=5))              # b"PING"
        print(await port.read_until(re.compile(rb"\\$ $"), timeout=5))

See docs/virtio-serial.md for the developer guide.
"""

from ._buffer import ReadBuffer as ReadBuffer, ReadLimitError as ReadLimitError
from ._errors import VirtioSerialError as VirtioSerialError
from ._open import discover_channels as discover_channels, open_virtio_serial as open_virtio_serial
from ._reader import IncompleteReadError as IncompleteReadError, StreamReader as StreamReader

__all__ = [
    "IncompleteReadError",
    "ReadBuffer",
    "ReadLimitError",
    "StreamReader",
    "VirtioSerialError",
    "discover_channels",
    "open_virtio_serial",
]
