"""A line protocol over a virtio-serial channel, through libvirt.

The demo guest echoes every byte on its ``org.virtrio.echo*`` ports; a real guest would run its
own service on ``/dev/virtio-ports/<name>``. Run it against any libvirt host::

    python docs/examples/virtio_serial_echo.py qemu:///system DOMAIN org.virtrio.echo0
"""

from __future__ import annotations

import re
import sys

import trio

from virtrio.channels.virtio_serial import discover_channels
from virtrio.nurseries import open_vm
from virtrio.nurseries.host import open_host

PROMPT = re.compile(rb"[$#] $")


async def main(uri: str, domain: str, port: str) -> None:
    async with open_host(uri) as host, open_vm(domain, libvirt=host) as vm:
        for channel in await discover_channels(vm.domain):
            print(f"{channel.name:<28} {channel.type:<6} {channel.state or '-'}")
        # the VM nursery owns the channel: it is closed when the block exits
        port_stream = await vm.open_virtio_serial(port)
        await port_stream.send_all(b"PING 1\nPING 2\nready$ ")
        print(await port_stream.read_line(timeout=5))  # b'PING 1'
        print(await port_stream.read_line(timeout=5))  # b'PING 2'
        print(await port_stream.read_until(PROMPT, timeout=5))  # b'ready$ '


if __name__ == "__main__":
    trio.run(main, *sys.argv[1:4])
