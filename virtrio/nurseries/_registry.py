"""The registry of channel kinds (feature A1): a builder per name, built-in or installed.

A channel kind says how to supervise one channel of a VM: its name (``qmp``, ``serial-console``,
``mux``, ...), the attrs class its options are structured into, and a ``build`` function that
turns options and a :class:`ChannelContext` into a :class:`BuiltChannel` (a handle plus the task
that keeps it connected). The VM nursery asks the registry for every channel it opens; it keeps
no list of its own. Third parties add kinds through the entry-point group ``virtrio.channels``::

    # pyproject.toml of a distribution "virtrio-echo"
    [project.entry-points."virtrio.channels"]
    echo = "virtrio_echo:KIND"            # a ChannelKind named "echo"

Two kinds with one name fail loudly (:class:`DuplicateKindError`, naming both distributions).
"""

from __future__ import annotations

import importlib.metadata
from collections.abc import Awaitable, Callable, Iterable, Iterator, Mapping
from typing import TYPE_CHECKING, Any

import attrs

from virtrio.errors import ConfigError
from virtrio.primitives import Backoff, ChannelState, Fanout, StateChange

if TYPE_CHECKING:
    from virtrio.channels import Address
    from virtrio.nurseries.host import HostNursery

__all__ = [
    "ENTRY_POINT_GROUP",
    "KNOWN_DISTRIBUTIONS",
    "BuiltChannel",
    "ChannelContext",
    "ChannelKind",
    "DuplicateKindError",
    "KindRegistry",
    "UnknownKindError",
    "default_registry",
]

#: The entry-point group third-party channel kinds register under.
ENTRY_POINT_GROUP = "virtrio.channels"


#: Channel kinds virtrio does not provide itself, by the distribution that registers them (under
#: :data:`ENTRY_POINT_GROUP`). A fleet naming one that is not installed gets "pip install DIST"
#: instead of "unknown". Add a row when a distribution publishes a kind; a registry may be given
#: more with ``KindRegistry(known={...})``.
KNOWN_DISTRIBUTIONS: Mapping[str, str] = {}


class DuplicateKindError(ConfigError):
    """Two channel kinds were registered under one name."""


class UnknownKindError(ConfigError):
    """A channel kind that is not registered (the message lists the known ones)."""


@attrs.frozen
class ChannelContext:
    """What a kind's builder may use: the VM, its fan-outs, defaults and where its peers are.

    ``ports`` maps names of a launched QEMU's sockets (``qmp``, ``console``, ``spice`` and every
    virtio-serial port name) to addresses; ``host`` is the libvirt host of a domain VM.
    """

    vm: str
    channel: str
    states: Fanout[StateChange]
    #: The VM's QMP events (a qmp channel publishes into it).
    events: Fanout[Any]
    connect_timeout: float = 10.0
    call_timeout: float = 30.0
    backoff: Callable[[], Backoff] = Backoff
    ports: Mapping[str, Address] = attrs.field(factory=dict)
    host: HostNursery | None = None
    #: The libvirt domain name (default: the VM's name).
    domain: str | None = None

    def port(self, name: str, *, what: str) -> Address:
        """The address of the launched QEMU's socket ``name``.

        Raises:
            ConfigError: there is none (the message says which option to give instead).
        """
        try:
            return self.ports[name]
        except KeyError:
            raise ConfigError(
                f"VM {self.vm}: channel {self.channel} needs {what}: give its address "
                f"(the VM has no socket {name!r}; known: {', '.join(sorted(self.ports)) or '-'})"
            ) from None


@attrs.define
class BuiltChannel:
    """A built channel: the handle ``vm.channel(name)`` returns and the task that keeps it up.

    ``run`` is started with ``nursery.start`` in the VM nursery and runs until cancelled;
    ``state`` says the channel's state now.
    """

    handle: Any
    run: Callable[..., Awaitable[Any]]
    state: Callable[[], ChannelState]
    kind: str = ""


@attrs.frozen
class ChannelKind:
    """A channel kind: a name, an options class and a builder."""

    name: str
    #: The attrs class a channel's options (the YAML map minus ``kind``) are structured into.
    options: type
    build: Callable[[ChannelContext, Any], BuiltChannel]
    #: One line for ``virtrio fleet schema`` and error messages.
    description: str = ""
    #: The distribution that provides the kind.
    distribution: str = "virtrio"
    #: Modules the builder needs and the extra that installs them (checked at validation).
    requires: tuple[str, ...] = ()
    extra: str | None = None

    def missing(self) -> str | None:
        """A message naming what to install, if a module the kind needs is absent."""
        import importlib.util

        for module in self.requires:
            if importlib.util.find_spec(module) is None:
                install = f"virtrio[{self.extra}]" if self.extra else self.distribution
                return (
                    f"channel kind {self.name!r} needs the module {module!r}: "
                    f"pip install '{install}'"
                )
        return None


class KindRegistry:
    """Channel kinds by name."""

    def __init__(
        self, kinds: Iterable[ChannelKind] = (), *, known: Mapping[str, str] | None = None
    ) -> None:
        self._kinds: dict[str, ChannelKind] = {}
        #: kind name -> the distribution that provides it (for the not-installed message)
        self.known: dict[str, str] = dict(KNOWN_DISTRIBUTIONS if known is None else known)
        for kind in kinds:
            self.register(kind)

    def register(self, kind: ChannelKind) -> None:
        """Add ``kind``.

        Raises:
            DuplicateKindError: a kind with that name is registered already.
        """
        if not isinstance(kind, ChannelKind):
            raise ConfigError(f"not a ChannelKind: {kind!r}")
        other = self._kinds.get(kind.name)
        if other is not None:
            raise DuplicateKindError(
                f"channel kind {kind.name!r} registered twice: by {other.distribution} "
                f"and by {kind.distribution}"
            )
        self._kinds[kind.name] = kind

    def names(self) -> list[str]:
        """Every registered name, sorted."""
        return sorted(self._kinds)

    def __contains__(self, name: object) -> bool:
        return name in self._kinds

    def __iter__(self) -> Iterator[ChannelKind]:
        return iter(sorted(self._kinds.values(), key=lambda k: k.name))

    def get(self, name: str) -> ChannelKind:
        """The kind ``name``.

        Raises:
            UnknownKindError: none is registered (the message lists the known ones).
        """
        try:
            return self._kinds[name]
        except KeyError:
            raise UnknownKindError(self.unknown_message(name)) from None

    def unknown_message(self, name: object) -> str:
        """Why ``name`` is no kind: the distribution to install when it is a known third-party
        kind, else the registered names and how third-party kinds are installed."""
        if isinstance(name, str) and name in self.known:
            dist = self.known[name]
            return (
                f"channel kind {name!r} is not installed: it is provided by the distribution "
                f"{dist!r} (pip install '{dist}')"
            )
        return (
            f"unknown channel kind {name!r} (known: {', '.join(self.names())}; a third-party "
            f"kind is installed as a distribution registering it under the entry-point group "
            f"{ENTRY_POINT_GROUP!r})"
        )

    def load_entry_points(self, group: str = ENTRY_POINT_GROUP) -> None:
        """Register every kind installed under the entry-point group ``group``.

        Raises:
            DuplicateKindError: an installed kind reuses a registered name.
            ConfigError: an entry point does not load or is not a ChannelKind.
        """
        for entry in importlib.metadata.entry_points(group=group):
            dist = entry.dist.name if entry.dist is not None else "?"
            try:
                kind = entry.load()
            except Exception as exc:
                raise ConfigError(
                    f"channel kind {entry.name!r} of {dist} does not load: {exc}"
                ) from exc
            if callable(kind) and not isinstance(kind, ChannelKind):
                kind = kind()
            if not isinstance(kind, ChannelKind):
                raise ConfigError(
                    f"entry point {entry.name!r} of {dist} is not a ChannelKind: {kind!r}"
                )
            if kind.name != entry.name:
                raise ConfigError(
                    f"entry point {entry.name!r} of {dist} names the kind {kind.name!r}"
                )
            self.register(attrs.evolve(kind, distribution=dist))


_default: KindRegistry | None = None


def default_registry(*, reload: bool = False) -> KindRegistry:
    """The built-in kinds plus every installed one (loaded once; ``reload=True`` again)."""
    global _default
    if _default is None or reload:
        from ._kinds import BUILTIN_KINDS

        registry = KindRegistry(list(BUILTIN_KINDS))
        registry.load_entry_points()
        _default = registry
    return _default
