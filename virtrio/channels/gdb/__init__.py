"""GDB's remote serial protocol: a client for gdbstubs (QEMU's ``-gdb``, gdbserver, ...).

::

    async with open_gdb("unix:/run/vm/gdb.sock") as gdb:
        print(gdb.target.architecture)                      # 'i386:x86-64'
        await gdb.set_breakpoint(0x100000)
        await gdb.continue_()
        stop = await gdb.wait_stop(timeout=5)               # Stopped(signal=5, ...)
        regs = await gdb.read_registers()                   # {'rax': 0, ..., 'rip': 1048576}
        data = await gdb.read_memory(0x7C00, 512)
        await gdb.write_memory(0x7C00, b"\\x90")
        await gdb.step()
        with gdb.events() as sub:                            # stop replies and console output
            await gdb.continue_()
            await gdb.interrupt()                            # Stopped(signal=2, ...)

Requests go one at a time (the protocol has no request ids); while the target runs only
``interrupt`` and ``wait_stop`` are allowed. ``E NN`` replies raise :class:`GdbCommandError`
(carrying the code); a request the stub does not know raises :class:`GdbUnsupportedError`.
The sans-I/O core (:class:`GdbProtocol`, :class:`PacketReader`,
:class:`TargetDescriptionReader`) can drive any other transport.
"""

from ._client import GdbClient as GdbClient, open_gdb as open_gdb
from ._errors import (
    GdbCommandError as GdbCommandError,
    GdbError as GdbError,
    GdbLocalProtocolError as GdbLocalProtocolError,
    GdbProtocolError as GdbProtocolError,
    GdbUnsupportedError as GdbUnsupportedError,
)
from ._framing import (
    Ack as Ack,
    Nak as Nak,
    Notification as Notification,
    Packet as Packet,
    PacketReader as PacketReader,
    checksum as checksum,
    decode_payload as decode_payload,
    encode_packet as encode_packet,
    escape as escape,
)
from ._protocol import (
    GdbProtocol as GdbProtocol,
    ProtocolState as ProtocolState,
    Reply as Reply,
    ResumeRefused as ResumeRefused,
)
from ._replies import (
    ConsoleOutput as ConsoleOutput,
    Exited as Exited,
    GdbEvent as GdbEvent,
    Stopped as Stopped,
    StopReply as StopReply,
    StubFeatures as StubFeatures,
    Terminated as Terminated,
    ThreadId as ThreadId,
    parse_stop_reply as parse_stop_reply,
    parse_supported as parse_supported,
)
from ._target import (
    Register as Register,
    TargetDescription as TargetDescription,
    TargetDescriptionReader as TargetDescriptionReader,
)

__all__ = [
    "Ack",
    "ConsoleOutput",
    "Exited",
    "GdbClient",
    "GdbCommandError",
    "GdbError",
    "GdbEvent",
    "GdbLocalProtocolError",
    "GdbProtocol",
    "GdbProtocolError",
    "GdbUnsupportedError",
    "Nak",
    "Notification",
    "Packet",
    "PacketReader",
    "ProtocolState",
    "Register",
    "Reply",
    "ResumeRefused",
    "StopReply",
    "Stopped",
    "StubFeatures",
    "TargetDescription",
    "TargetDescriptionReader",
    "Terminated",
    "ThreadId",
    "checksum",
    "decode_payload",
    "encode_packet",
    "escape",
    "open_gdb",
    "parse_stop_reply",
    "parse_supported",
]
