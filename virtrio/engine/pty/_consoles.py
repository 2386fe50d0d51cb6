"""Where a console session's stream comes from: a socket address, or a libvirt domain's
console (``libvirt:URI#DOMAIN[/DEVICE]``) over one shared connection per host."""

from __future__ import annotations

from typing import TYPE_CHECKING

import trio

from virtrio.channels import open_stream
from virtrio.errors import ConfigError

if TYPE_CHECKING:
    from virtrio.nurseries.host import HostPool

__all__ = ["LIBVIRT_CONSOLE_PREFIX", "ConsoleOpener", "parse_libvirt_console"]

#: How a console address names a libvirt domain's console.
LIBVIRT_CONSOLE_PREFIX = "libvirt:"


def parse_libvirt_console(console: str) -> tuple[str, str, str | None]:
    """Split ``libvirt:URI#DOMAIN[/DEVICE]`` into (URI, domain, device or None).

    Raises:
        ConfigError: the form is not that (the message shows the expected one).
    """
    body = console.removeprefix(LIBVIRT_CONSOLE_PREFIX)
    uri, hash_, target = body.rpartition("#")
    domain, _, device = target.partition("/")
    if not hash_ or not uri or not domain:
        raise ConfigError(
            f"invalid libvirt console {console!r}: expected libvirt:URI#DOMAIN[/DEVICE], "
            "e.g. libvirt:qemu:///system#web1/serial0"
        )
    return uri, domain, device or None


async def _serve_host_pool(*, task_status: trio.TaskStatus[HostPool]) -> None:
    # imported here: the libvirt extra is needed only once a libvirt console is asked for
    from virtrio.nurseries.host import open_host_pool

    async with open_host_pool() as pool:
        task_status.started(pool)
        await trio.sleep_forever()


class ConsoleOpener:
    """Opens console streams; the libvirt host pool is started in ``nursery`` on first use."""

    def __init__(self, nursery: trio.Nursery) -> None:
        self._nursery = nursery
        self._host_pool: HostPool | None = None
        self._host_pool_lock = trio.Lock()

    async def __call__(self, console: str) -> trio.abc.Stream:
        """A console session's stream for ``console``.

        Raises:
            ConfigError: a malformed libvirt console address.
            VirtrioError: the console cannot be opened.
        """
        if not console.startswith(LIBVIRT_CONSOLE_PREFIX):
            return await open_stream(console, connect_timeout=5)
        uri, domain, device = parse_libvirt_console(console)
        async with self._host_pool_lock:
            if self._host_pool is None:
                self._host_pool = await self._nursery.start(_serve_host_pool)
        host = await self._host_pool.host(uri)
        return await host.domain(domain).open_console(device, timeout=10)
