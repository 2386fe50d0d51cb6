"""The screen steps (through Spice): ``screenshot`` and ``wait_screen``.

``wait_screen`` waits for the screen (or a region of it) to change, or to match a reference
PNG::

    - wait_screen: {change: true}                        # anything on the screen changes
    - wait_screen: {change: true, region: [0, 0, 720, 16]}
    - wait_screen:
        region: [90, 160, 36, 16]                        # x, y, width, height in pixels
        reference: login-prompt.png                      # relative to the scenario file
        tolerance: 0.01                                  # fraction of pixels that may differ
        threshold: 16                                    # per-pixel channel difference ignored
      timeout: 20

The reference is either the region's size or the whole screen's (the region is cut from it).
A pixel differs when any of its R, G, B values differs from the reference's by more than
``threshold`` (default 0: exact); the region matches when at most ``tolerance`` (default 0.0)
of its pixels differ. At the step's deadline it fails with how many pixels differed, and saves
the last screen (``wait_screen<N>-screen.png``) and a diff of the region (the screen greyed,
differing pixels red: ``wait_screen<N>-diff.png``) into the VM's artefacts.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import trio

from virtrio.channels.spice import Rect
from virtrio.errors import ConfigError, ConnectionLostError, VirtrioTimeoutError

from ._context import ScenarioContext
from ._image import Comparison, RgbImage, compare, decode_png
from ._registry import StepKind, StepOutcome

__all__ = ["Screenshot", "WaitScreen"]

_KEYS = frozenset({"change", "region", "reference", "tolerance", "threshold"})


def _has(vm: Any, kind: str) -> bool:
    return kind in vm.channel_kinds().values()


def _number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def _region_problems(region: Any) -> list[str]:
    if "${" in str(region):
        return []
    ok = (
        isinstance(region, list)
        and len(region) == 4
        and all(isinstance(v, int) and not isinstance(v, bool) for v in region)
        and region[0] >= 0
        and region[1] >= 0
        and region[2] > 0
        and region[3] > 0
    )
    return [] if ok else ["region: [x, y, width, height] in pixels (width and height > 0)"]


class WaitScreen(StepKind):
    """``wait_screen: {change: true}`` or ``{region: [x, y, w, h], reference: FILE.png,
    tolerance: 0.0, threshold: 0}`` (Spice): the screen (region) changes, or matches the
    reference PNG, before the step's deadline."""

    name = "wait_screen"

    def check(self, value: Any, fields: Mapping[str, Any]) -> list[str]:
        if not isinstance(value, Mapping):
            return ["{change: true} or {region: [x, y, w, h], reference: FILE.png, ...}"]
        extra = set(value) - _KEYS
        if extra:
            return [f"unknown field {sorted(extra)[0]!r} (known: {', '.join(sorted(_KEYS))})"]
        problems = []
        change = value.get("change", False)
        if change not in (True, False):
            problems.append("change: true or false")
        if bool(change) == ("reference" in value):
            problems.append("give change: true or a reference: PNG (one of them)")
        if "region" in value:
            problems += _region_problems(value["region"])
        if change and ({"tolerance", "threshold"} & set(value)):
            problems.append("tolerance: and threshold: go with a reference:, not change:")
        tolerance = value.get("tolerance", 0.0)
        if "${" not in str(tolerance) and not (_number(tolerance) and 0 <= tolerance <= 1):
            problems.append("tolerance: a fraction of the region's pixels, 0.0 to 1.0")
        threshold = value.get("threshold", 0)
        if "${" not in str(threshold) and not (
            isinstance(threshold, int) and not isinstance(threshold, bool) and threshold >= 0
        ):
            problems.append("threshold: a per-channel difference, 0 to 255")
        if "reference" in value and not isinstance(value["reference"], str):
            problems.append("reference: a PNG file's path")
        return problems

    async def run(self, step: Any, vm: Any, ctx: ScenarioContext) -> StepOutcome:
        spec = step.value
        region = [int(v) for v in spec["region"]] if "region" in spec else None
        rect = None
        if region is not None:
            x, y, w, h = region
            rect = Rect(x, y, x + w, y + h)
        if spec.get("change"):
            await vm.spice.wait_screen_change(region=rect, timeout=ctx.remaining())
            return StepOutcome("screen changed")
        path = ctx.path(str(spec["reference"]))
        try:
            data = await trio.Path(path).read_bytes()
        except OSError as exc:
            raise ConfigError(f"reference {path}: {exc.strerror}") from None
        reference = decode_png(data)
        matcher = _Matcher(
            reference,
            region,
            tolerance=float(spec.get("tolerance", 0.0)),
            threshold=int(spec.get("threshold", 0)),
        )
        while True:
            try:
                return await _wait_match(vm, rect, matcher, ctx)
            except ConnectionLostError:
                continue  # the display channel came back (a reset): look again
            except VirtrioTimeoutError:
                raise _timed_out(step, matcher, path, ctx) from None


class _Matcher:
    def __init__(
        self, reference: RgbImage, region: list[int] | None, *, tolerance: float, threshold: int
    ) -> None:
        self.reference = reference
        self.region = region
        self.tolerance = tolerance
        self.threshold = threshold
        self.screen: RgbImage | None = None
        self.last: Comparison | None = None

    def matches(self, screen: RgbImage) -> bool:
        self.screen = screen
        seen = screen if self.region is None else screen.crop(*self.region)
        wanted = self.reference
        if (wanted.width, wanted.height) == (screen.width, screen.height) and self.region:
            wanted = wanted.crop(*self.region)
        if (wanted.width, wanted.height) != (seen.width, seen.height):
            where = f"region {self.region}" if self.region else "screen"
            raise ConfigError(
                f"the reference is {wanted.width}x{wanted.height}: neither the {where}'s "
                f"{seen.width}x{seen.height} nor the screen's {screen.width}x{screen.height}"
            )
        self.last = compare(seen, wanted, threshold=self.threshold)
        return self.last.fraction <= self.tolerance


async def _wait_match(
    vm: Any, rect: Rect | None, matcher: _Matcher, ctx: ScenarioContext
) -> StepOutcome:
    session = await vm.spice.session(timeout=ctx.remaining())
    display = await session.display(timeout=ctx.remaining())
    await display.wait_ready(timeout=ctx.remaining())
    while True:
        primary = display.state.primary
        if primary is None:
            await display.wait_ready(timeout=ctx.remaining())
            continue
        screen = RgbImage.from_bgrx(primary.width, primary.height, primary.pixels)
        if matcher.matches(screen):
            last = matcher.last
            assert last is not None
            return StepOutcome(f"matched: {last.differing} of {last.pixels} pixels differ")
        # no checkpoint between the comparison and wait_change's own snapshot: a change in
        # between cannot be missed
        await display.wait_change(region=rect, timeout=ctx.remaining())


def _timed_out(
    step: Any, matcher: _Matcher, reference: Path, ctx: ScenarioContext
) -> VirtrioTimeoutError:
    where = f"region {matcher.region}" if matcher.region else "the screen"
    last = matcher.last
    if last is None or matcher.screen is None:
        return VirtrioTimeoutError(f"{where}: no screen from Spice before the deadline")
    ctx.artefacts.mkdir(parents=True, exist_ok=True)
    stem = f"wait_screen{step.index}"
    screen_file = ctx.artefacts / f"{stem}-screen.png"
    diff_file = ctx.artefacts / f"{stem}-diff.png"
    # written at once (no checkpoint): the step's scope is cut shortly after its deadline
    screen_file.write_bytes(matcher.screen.to_png())
    diff_file.write_bytes(last.diff.to_png())
    return VirtrioTimeoutError(
        f"{where} did not match {reference.name} before the deadline: {last.differing} of "
        f"{last.pixels} pixels ({last.fraction:.1%}) differ by more than {matcher.threshold} "
        f"(tolerance {matcher.tolerance:.1%}); last screen: {screen_file}, diff: {diff_file}"
    )


class Screenshot(StepKind):
    """``screenshot: NAME`` into the artefacts (``NAME.png``), through Spice; with
    ``required: false`` a VM without Spice skips it."""

    name = "screenshot"
    fields = frozenset({"required"})

    def check(self, value: Any, fields: Mapping[str, Any]) -> list[str]:
        ok = isinstance(value, str) and re.fullmatch(r"[\w.${}-]+", value) is not None
        return [] if ok else ["a file name (letters, digits, . _ -)"]

    async def run(self, step: Any, vm: Any, ctx: ScenarioContext) -> StepOutcome:
        if not _has(vm, "spice") and not step.fields.get("required", True):
            return StepOutcome("no Spice channel: skipped", status="skipped")
        png = await vm.spice.screenshot(timeout=ctx.remaining())
        path = ctx.artefacts / f"{step.value}.png"
        path.parent.mkdir(parents=True, exist_ok=True)
        await trio.Path(path).write_bytes(png)
        return StepOutcome(str(path), str(path))
