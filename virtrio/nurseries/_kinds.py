"""The built-in channel kinds: qmp, qga, spice, virtio-serial, serial-console, mux.

Each is a :class:`~._registry.ChannelKind`: an attrs options class (what a fleet file may say
under the channel) and a builder. An address left out is taken from the VM: a QEMU the engine
launched serves every socket (``ctx.ports``), and a libvirt domain is reached through its host
connection and its XML (QMP, QGA, virtio-serial, the console and Spice, C5).
"""

from __future__ import annotations

from typing import Any, Literal

import attrs
import trio

from virtrio.channels import parse_address
from virtrio.errors import ConfigError
from virtrio.primitives import Supervisor

from ._line import LineChannel, StreamConnection, open_recorded_stream
from ._recorder import Recorder
from ._registry import BuiltChannel, ChannelContext, ChannelKind

__all__ = [
    "BUILTIN_KINDS",
    "MuxOptions",
    "QgaOptions",
    "QmpOptions",
    "SerialConsoleOptions",
    "SpiceOptions",
    "VirtioSerialOptions",
]

_DEFAULT_RETENTION = 1024 * 1024


def _check_address(_: Any, attribute: attrs.Attribute[Any], value: str | None) -> None:
    if value is not None:
        if not isinstance(value, str):
            raise ConfigError(f"expected an address string, got {value!r}")
        parse_address(value)  # raises ConfigError naming what is wrong


@attrs.frozen
class QmpOptions:
    """``qmp``: the QMP monitor (socket, or the libvirt domain's monitor)."""

    #: ``unix:/path`` or ``tcp://host:port``; default: the launched QEMU's, or libvirt's.
    address: str | None = attrs.field(default=None, validator=_check_address)


@attrs.frozen
class QgaOptions:
    """``qga``: the guest agent (its host socket, or through libvirt)."""

    address: str | None = attrs.field(default=None, validator=_check_address)
    #: ``socket`` or ``libvirt`` (default: libvirt for a domain VM, else the socket).
    via: Literal["socket", "libvirt"] | None = None


@attrs.frozen
class SpiceOptions:
    """``spice``: the Spice session (default address: the domain XML's, C5)."""

    address: str | None = attrs.field(default=None, validator=_check_address)
    password: str = ""
    tls_address: str | None = attrs.field(default=None, validator=_check_address)


@attrs.frozen
class VirtioSerialOptions:
    """``virtio-serial``: a virtio-serial port as a recorded line channel."""

    #: The port name in the guest (default: the channel's name).
    port: str | None = None
    #: The host socket (default: the launched QEMU's socket for the port, or libvirt's).
    address: str | None = attrs.field(default=None, validator=_check_address)
    #: Bytes of output kept for ``expect(after=mark)``.
    retention: int = attrs.field(default=_DEFAULT_RETENTION, validator=attrs.validators.ge(1))


@attrs.frozen
class SerialConsoleOptions:
    """``serial-console``: the VM's serial console as a recorded line channel."""

    address: str | None = attrs.field(default=None, validator=_check_address)
    #: The libvirt console device alias (default: the first console).
    device: str | None = None
    retention: int = attrs.field(default=_DEFAULT_RETENTION, validator=attrs.validators.ge(1))


def _check_frame_size(_: Any, attribute: attrs.Attribute[Any], value: int | None) -> None:
    from virtrio.channels.xtransfer import MAX_FRAME_SIZE

    # an integer's range; what is no integer at all the loader's types report
    if isinstance(value, int) and not isinstance(value, bool) and not 16 < value <= MAX_FRAME_SIZE:
        raise ConfigError(
            f"frame_size {value} is out of range: 17..{MAX_FRAME_SIZE} (the 16-byte packet"
            " header included)"
        )


@attrs.frozen
class MuxOptions:
    """``mux``: streams over any address or a VM's virtio-serial port: yamux, or xtransport (a
    connection per stream; over a port, one stream at a time)."""

    address: str | None = attrs.field(default=None, validator=_check_address)
    #: A virtio-serial port of the VM to run it over (instead of ``address``).
    port: str | None = None
    #: ``yamux``: streams multiplexed on one connection; ``xtransport``: each stream a
    #: connection of its own (xtransport frames messages, it does not multiplex), or over a
    #: port, one stream at a time on the port's one connection.
    protocol: Literal["yamux", "xtransport"] = "yamux"
    #: yamux: True, this side is the client (opens odd stream ids); xtransport always dials.
    client: bool = True
    #: xtransport: the largest packet sent, header included (17..65551; default 4096).
    frame_size: int | None = attrs.field(default=None, validator=_check_frame_size)
    #: xtransport: stop-and-wait acks; the peer must agree (default false).
    ack: bool | None = None

    def __attrs_post_init__(self) -> None:
        if self.protocol == "yamux":
            given = [n for n in ("frame_size", "ack") if getattr(self, n) is not None]
            if given:
                raise ConfigError(
                    f"{' and '.join(given)}: an xtransport option (set protocol: xtransport)"
                )
        elif not self.client:
            raise ConfigError("client: false is for yamux: over xtransport this side dials")


def _supervisor(ctx: ChannelContext, connect: Any) -> Supervisor[Any]:
    return Supervisor(f"{ctx.vm}/{ctx.channel}", connect, backoff=ctx.backoff(), events=ctx.states)


def _built(handle: Any, supervisor: Supervisor[Any], kind: str) -> BuiltChannel:
    return BuiltChannel(handle, supervisor.run, lambda: supervisor.state, kind)


def _build_qmp(ctx: ChannelContext, options: QmpOptions) -> BuiltChannel:
    from virtrio.channels.qmp import open_qmp

    from ._vm import SupervisedQmp, forward_qmp_events

    if options.address is None and ctx.host is not None:
        from .host import HostQmp
        from .host._domainstate import DomainChannelState

        host, domain = ctx.host, ctx.domain or ctx.vm
        tracker = DomainChannelState(host, domain, "qmp", f"{ctx.vm}/{ctx.channel}", ctx.states)
        handle = HostQmp(host, domain, tracker)

        async def run(*, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
            async with trio.open_nursery() as nursery:
                await nursery.start(tracker.run)
                await nursery.start(forward_qmp_events, host, domain, ctx.events)
                task_status.started()

        return BuiltChannel(handle, run, lambda: handle.state, "qmp")
    address = (
        parse_address(options.address) if options.address else ctx.port("qmp", what="a QMP address")
    )
    supervisor = _supervisor(
        ctx,
        lambda: open_qmp(
            address,
            connect_timeout=ctx.connect_timeout,
            call_timeout=ctx.call_timeout,
            event_fanout=ctx.events,
        ),
    )
    return _built(SupervisedQmp(supervisor, ctx.call_timeout), supervisor, "qmp")


def _build_qga(ctx: ChannelContext, options: QgaOptions) -> BuiltChannel:
    from virtrio.channels.qga import open_qga

    from ._vm import SupervisedQga

    via = options.via or ("libvirt" if ctx.host is not None and not options.address else "socket")
    if via == "libvirt":
        if ctx.host is None:
            raise ConfigError(f"VM {ctx.vm}: channel {ctx.channel}: via libvirt needs a host")
        from .host import HostQga
        from .host._domainstate import DomainChannelState

        domain = ctx.domain or ctx.vm
        channel = f"{ctx.vm}/{ctx.channel}"
        tracker = DomainChannelState(ctx.host, domain, "qga", channel, ctx.states)
        handle = HostQga(ctx.host, domain, tracker)
        return BuiltChannel(handle, tracker.run, lambda: handle.state, "qga")
    address = (
        parse_address(options.address)
        if options.address
        else ctx.port("org.qemu.guest_agent.0", what="a guest-agent address")
    )
    supervisor = _supervisor(
        ctx,
        lambda: open_qga(
            address, connect_timeout=ctx.connect_timeout, call_timeout=ctx.call_timeout
        ),
    )
    return _built(SupervisedQga(supervisor, ctx.call_timeout), supervisor, "qga")


def _build_spice(ctx: ChannelContext, options: SpiceOptions) -> BuiltChannel:
    from virtrio.channels.spice import open_domain_spice, open_spice_session

    from .spice import SupervisedSpice

    if options.address is None and ctx.host is not None:
        domain = ctx.host.domain(ctx.domain or ctx.vm)

        def connect() -> Any:
            return open_domain_spice(
                domain,
                password=options.password,
                connect_timeout=ctx.connect_timeout,
                call_timeout=ctx.call_timeout,
            )
    else:
        address = (
            parse_address(options.address)
            if options.address
            else ctx.port("spice", what="a Spice address")
        )

        def connect() -> Any:
            return open_spice_session(
                address,
                password=options.password,
                tls_address=options.tls_address,
                connect_timeout=ctx.connect_timeout,
                call_timeout=ctx.call_timeout,
            )

    supervisor = _supervisor(ctx, connect)
    return _built(SupervisedSpice(supervisor, ctx.call_timeout), supervisor, "spice")


def _line(ctx: ChannelContext, retention: int, dial: Any, kind: str) -> BuiltChannel:
    recorder = Recorder(retention, name=f"{ctx.vm}/{ctx.channel}")
    holder: list[LineChannel] = []

    def connect() -> Any:
        return open_recorded_stream(dial, recorder, holder[0]._notify, recorder.name)

    supervisor: Supervisor[StreamConnection] = _supervisor(ctx, connect)
    handle = LineChannel(supervisor, recorder, ctx.call_timeout)
    holder.append(handle)
    return _built(handle, supervisor, kind)


def _dial(ctx: ChannelContext, address: str | None, port: str, what: str) -> Any:
    from virtrio.channels import open_stream

    target = parse_address(address) if address else ctx.port(port, what=what)

    async def dial() -> trio.abc.Stream:
        return await open_stream(target, connect_timeout=ctx.connect_timeout)

    return dial


def _build_virtio_serial(ctx: ChannelContext, options: VirtioSerialOptions) -> BuiltChannel:
    port = options.port or ctx.channel
    if options.address is None and ctx.host is not None:
        from virtrio.channels.virtio_serial import open_virtio_serial

        domain = ctx.host.domain(ctx.domain or ctx.vm)

        async def dial() -> trio.abc.Stream:
            return await open_virtio_serial(domain, port, connect_timeout=ctx.connect_timeout)
    else:
        dial = _dial(ctx, options.address, port, f"the address of port {port!r}")
    return _line(ctx, options.retention, dial, "virtio-serial")


def _build_console(ctx: ChannelContext, options: SerialConsoleOptions) -> BuiltChannel:
    if options.address is None and ctx.host is not None:
        domain = ctx.host.domain(ctx.domain or ctx.vm)

        async def dial() -> trio.abc.Stream:
            return await domain.open_console(options.device, timeout=ctx.connect_timeout)
    else:
        dial = _dial(ctx, options.address, "console", "a console address")
    return _line(ctx, options.retention, dial, "serial-console")


def _build_mux(ctx: ChannelContext, options: MuxOptions) -> BuiltChannel:
    from ._mux import SupervisedMux, open_mux_session

    if options.address is not None and options.port is not None:
        raise ConfigError(f"VM {ctx.vm}: channel {ctx.channel}: give address or port, not both")
    if options.protocol == "xtransport":
        return _build_xtransport_mux(ctx, options)
    if options.address is not None:
        address = parse_address(options.address)
    else:
        port = options.port or f"org.virtrio.{ctx.channel}"
        address = ctx.port(port, what=f"an address (or the port {port!r})")
    name = f"{ctx.vm}/{ctx.channel}"
    supervisor = _supervisor(
        ctx,
        lambda: open_mux_session(
            address, client=options.client, connect_timeout=ctx.connect_timeout, name=name
        ),
    )
    return _built(SupervisedMux(supervisor, ctx.call_timeout), supervisor, "mux")


def _build_xtransport_mux(ctx: ChannelContext, options: MuxOptions) -> BuiltChannel:
    from virtrio.channels.xtransfer import XtransferConfig

    from ._xmux import XtransportMux, open_xtransport_probe

    # over a port (one connection at a time) the streams take turns on the supervised one
    one_lane = options.address is None
    if options.address is not None:
        address = parse_address(options.address)
    else:
        port = options.port or f"org.virtrio.{ctx.channel}"
        address = ctx.port(port, what=f"an address (or the port {port!r})")
    config = XtransferConfig(max_frame_size=options.frame_size or 4096, ack=bool(options.ack))
    supervisor = _supervisor(
        ctx,
        lambda: open_xtransport_probe(
            address, config, connect_timeout=ctx.connect_timeout, carries_lanes=one_lane
        ),
    )
    handle = XtransportMux(
        supervisor,
        address,
        config,
        ctx.call_timeout,
        connect_timeout=ctx.connect_timeout,
        one_lane=one_lane,
    )
    return BuiltChannel(handle, handle.run, lambda: supervisor.state, "mux")


#: Every kind virtio itself provides.
BUILTIN_KINDS: tuple[ChannelKind, ...] = (
    ChannelKind("qmp", QmpOptions, _build_qmp, "the QEMU monitor (QMP)"),
    ChannelKind("qga", QgaOptions, _build_qga, "the QEMU guest agent (socket or libvirt)"),
    ChannelKind(
        "spice",
        SpiceOptions,
        _build_spice,
        "a Spice session (screen, keys, mouse, ports)",
        requires=("cryptography",),
        extra="spice",
    ),
    ChannelKind(
        "virtio-serial", VirtioSerialOptions, _build_virtio_serial, "a recorded virtio-serial port"
    ),
    ChannelKind("serial-console", SerialConsoleOptions, _build_console, "the serial console"),
    ChannelKind(
        "mux", MuxOptions, _build_mux, "streams over an address or a port (yamux or xtransport)"
    ),
)
