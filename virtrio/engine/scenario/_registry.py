"""Step kinds: a registry by name, extended through the entry-point group ``virtrio.steps``.

A step kind says which fields it takes (so a scenario with a misspelt field fails before anything
runs) and how to run one step on one VM::

    @attrs.frozen
    class Beep(StepKind):
        name = "beep"
        fields = frozenset({"volume"})

        async def run(self, step, vm, ctx):
            await vm.qmp.send_key("f1")
            return StepOutcome(output="beeped")

A distribution registers it with ``[project.entry-points."virtrio.steps"] beep = "pkg:Beep"``
(a class or an instance).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from importlib import metadata
from typing import TYPE_CHECKING, Any, ClassVar

import attrs

from virtrio.errors import ConfigError

if TYPE_CHECKING:
    from ._context import ScenarioContext

__all__ = ["ENTRY_POINT_GROUP", "StepKind", "StepOutcome", "StepRegistry", "default_steps"]

#: The entry-point group third parties register step kinds under.
ENTRY_POINT_GROUP = "virtrio.steps"


@attrs.frozen
class StepOutcome:
    """What a step produced: text for the results (and ``set:``), and a value for ``set:``."""

    output: str = ""
    #: What ``set:`` captures (default: ``output`` stripped).
    value: Any = None
    #: ``skipped`` when the step did not apply (a screenshot without Spice, say).
    status: str = "passed"


class StepKind:
    """One kind of scenario step. Subclasses set :attr:`name`, :attr:`fields` and
    :meth:`run`, and may override :meth:`check`."""

    #: The key that names the step in YAML (``shell:``).
    name: ClassVar[str] = ""
    #: Fields the step takes besides its own key and the common ``name``/``timeout``/``set``.
    fields: ClassVar[frozenset[str]] = frozenset()
    #: Whether the step's own key needs a value (``sleep: 1``) or may be empty.
    needs_value: ClassVar[bool] = True

    def check(self, value: Any, fields: Mapping[str, Any]) -> list[str]:
        """Problems with a step's value and fields (before anything runs); default: none."""
        return []

    async def run(self, step: Any, vm: Any, ctx: ScenarioContext) -> StepOutcome:
        """Run ``step`` (its value and fields already ``${var}``-expanded) on ``vm``."""
        raise NotImplementedError


class StepRegistry:
    """Step kinds by name. A duplicate name fails loudly."""

    def __init__(self, kinds: Iterable[StepKind] = ()) -> None:
        self._kinds: dict[str, StepKind] = {}
        self._origin: dict[str, str] = {}
        for kind in kinds:
            self.register(kind)

    def register(self, kind: StepKind | type[StepKind], *, origin: str = "virtrio") -> None:
        """Add a kind (an instance, or a class made with no arguments).

        Raises:
            ConfigError: the name is taken or empty.
        """
        instance = kind() if isinstance(kind, type) else kind
        name = instance.name
        if not name:
            raise ConfigError(f"step kind {instance!r} has no name")
        if name in self._kinds:
            raise ConfigError(
                f"step kind {name!r} registered twice (by {self._origin[name]} and {origin})"
            )
        self._kinds[name] = instance
        self._origin[name] = origin

    def get(self, name: str) -> StepKind | None:
        """The kind called ``name``, or None."""
        return self._kinds.get(name)

    def names(self) -> list[str]:
        """Every registered name, sorted."""
        return sorted(self._kinds)

    def __contains__(self, name: object) -> bool:
        return name in self._kinds

    def load_entry_points(self, group: str = ENTRY_POINT_GROUP) -> None:
        """Register every installed distribution's step kinds.

        Raises:
            ConfigError: an entry point does not load (naming its distribution) or a name is
                taken.
        """
        for point in metadata.entry_points(group=group):
            dist = point.dist.name if point.dist is not None else "an unknown distribution"
            try:
                loaded = point.load()
            except Exception as exc:
                raise ConfigError(
                    f"step kind {point.name!r} from {dist} does not load ({point.value}): {exc}"
                ) from exc
            if not (isinstance(loaded, StepKind) or _is_kind_class(loaded)):
                raise ConfigError(
                    f"step kind {point.name!r} from {dist} is not a StepKind ({point.value})"
                )
            self.register(loaded, origin=dist)


def _is_kind_class(obj: Any) -> bool:
    return isinstance(obj, type) and issubclass(obj, StepKind)


def default_steps() -> StepRegistry:
    """The built-in step kinds plus every installed ``virtrio.steps`` entry point."""
    from ._builtin import BUILTIN_STEPS

    registry = StepRegistry(kind() for kind in BUILTIN_STEPS)
    registry.load_entry_points()
    return registry
