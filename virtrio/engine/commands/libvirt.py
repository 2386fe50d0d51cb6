"""``virtrio libvirt URI domains|events|channels|qmp|qga``: a libvirt host from the shell.

Examples::

    virtrio libvirt qemu:///system domains
    virtrio libvirt qemu:///system events [DOMAIN]          # until Ctrl-C
    virtrio libvirt qemu:///system qmp demo query-status
    virtrio libvirt qemu:///system qmp demo human-monitor-command '{"command-line": "info cpus"}'
    virtrio libvirt qemu:///system qga demo guest-get-osinfo
    virtrio libvirt qemu:///system qga demo --shell 'uname -a'
"""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add ``virtrio libvirt``."""
    parser = sub.add_parser(
        "libvirt",
        help="talk to a libvirt host: list domains, stream events, QMP and QGA through libvirt",
    )
    parser.add_argument("uri", metavar="URI", help="libvirt URI, e.g. qemu:///system")
    parser.add_argument("--timeout", type=float, default=30.0, help="seconds per call (default 30)")
    actions = parser.add_subparsers(dest="action", required=True)
    actions.add_parser("domains", help="list domains").set_defaults(run=_domains)
    events = actions.add_parser("events", help="print domain events until Ctrl-C")
    events.add_argument("domain", nargs="?", help="only this domain")
    events.set_defaults(run=_events)
    channels = actions.add_parser("channels", help="list a domain's virtio-serial channels")
    channels.add_argument("domain")
    channels.set_defaults(run=_channels)
    for name, what in (
        ("qmp", "a QMP command (through qemuMonitorCommand)"),
        ("qga", "a guest-agent command (through qemuAgentCommand)"),
    ):
        command = actions.add_parser(name, help=f"run {what}")
        command.add_argument("domain")
        command.add_argument("command", nargs="?", help="the command name")
        command.add_argument("arguments", nargs="?", help="its arguments as a JSON object")
        if name == "qga":
            command.add_argument("--shell", metavar="CMD", help="run CMD with /bin/sh -c")
        command.set_defaults(run=_qmp if name == "qmp" else _qga)


def _arguments(args: argparse.Namespace) -> dict[str, Any] | None:
    from virtrio.errors import ConfigError

    if args.arguments is None:
        return None
    try:
        value = json.loads(args.arguments)
    except ValueError as exc:
        raise ConfigError(f"arguments are not JSON: {exc}") from None
    if not isinstance(value, dict):
        raise ConfigError("arguments must be a JSON object")
    return value


def _uri(args: argparse.Namespace) -> str:
    """The validated, canonical URI (clear errors before libvirt is ever called)."""
    from virtrio.nurseries.host import parse_libvirt_uri

    return str(parse_libvirt_uri(args.uri))


def _print(value: Any) -> None:
    print(json.dumps(value, indent=2, sort_keys=True))


async def _domains(args: argparse.Namespace) -> int:
    from virtrio.channels.libvirt import open_connection

    async with open_connection(_uri(args), call_timeout=args.timeout) as connection:
        domains = await connection.list_domains()
    width = max((len(d.name) for d in domains), default=4)
    print(f"{'ID':>4}  {'NAME':<{width}}  STATE")
    for d in domains:
        print(f"{d.id if d.id >= 0 else '-':>4}  {d.name:<{width}}  {d.state}")
    return 0


async def _events(args: argparse.Namespace) -> int:
    from virtrio.nurseries.host import open_host

    async with open_host(_uri(args), call_timeout=args.timeout) as host:
        with host.state_changes() as states, host.events(domain=args.domain) as events:
            import trio

            async def show_states() -> None:
                print(f"# host {host.state.value}", file=sys.stderr, flush=True)
                async for change in states:
                    print(f"# host {change.state.value}", file=sys.stderr, flush=True)

            async with trio.open_nursery() as nursery:
                nursery.start_soon(show_states)
                async for event in events:
                    detail = f" {event.detail}" if event.detail else ""
                    print(f"{event.domain} {event.kind.value} {event.event}{detail}", flush=True)
    return 0


async def _channels(args: argparse.Namespace) -> int:
    from virtrio.channels.libvirt import LibvirtDomain, open_connection
    from virtrio.channels.virtio_serial import discover_channels

    async with open_connection(_uri(args), call_timeout=args.timeout) as connection:
        for channel in await discover_channels(LibvirtDomain(connection, args.domain)):
            print(f"{channel.name}\t{channel.type}\t{channel.state or '-'}\t{channel.path or '-'}")
    return 0


async def _qmp(args: argparse.Namespace) -> int:
    from virtrio.channels.libvirt import LibvirtDomain, LibvirtQmp, open_connection
    from virtrio.errors import ConfigError

    if args.command is None:
        raise ConfigError("qmp needs a COMMAND (e.g. query-status)")
    async with open_connection(_uri(args), call_timeout=args.timeout) as connection:
        qmp = LibvirtQmp(LibvirtDomain(connection, args.domain))
        _print(await qmp.execute(args.command, _arguments(args)))
    return 0


async def _qga(args: argparse.Namespace) -> int:
    from virtrio.channels.libvirt import LibvirtDomain, LibvirtQga, open_connection
    from virtrio.errors import ConfigError

    if (args.command is None) == (args.shell is None):
        raise ConfigError("qga needs a COMMAND (e.g. guest-ping) or --shell CMD")
    async with open_connection(_uri(args), call_timeout=args.timeout) as connection:
        qga = LibvirtQga(LibvirtDomain(connection, args.domain))
        if args.shell is not None:
            result = await qga.shell(args.shell, timeout=args.timeout)
            sys.stdout.write(result.stdout_text)
            sys.stderr.write(result.stderr_text)
            return result.exit_code if result.exit_code is not None else 128 + (result.signal or 0)
        _print(await qga.execute(args.command, _arguments(args)))
    return 0
