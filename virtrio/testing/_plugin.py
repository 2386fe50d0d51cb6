"""The pytest plugin's fixtures and hooks (re-exported by :mod:`virtrio.testing.pytest_plugin`)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from ._remote import EngineThread, Remote

__all__ = [
    "fresh_vm",
    "pytest_addoption",
    "pytest_configure",
    "pytest_generate_tests",
    "pytest_runtest_makereport",
    "pytest_unconfigure",
    "virtrio_engine",
    "vm",
    "vms",
]

_THREAD_KEY = pytest.StashKey[EngineThread]()
_FLEET_KEY = pytest.StashKey[Any]()
#: The engine threads and VM ids a test used (for the evidence of a failure).
_USED = pytest.StashKey[list[tuple[EngineThread, str]]]()
#: Console output attached to a failing test's report.
CONSOLE_TAIL = 3000


def pytest_addoption(parser: pytest.Parser) -> None:
    """``--virtrio-fleet`` and ``--virtrio-select``."""
    group = parser.getgroup("virtrio", "virtrio: a fleet of VMs for tests")
    group.addoption("--virtrio-fleet", metavar="FILE", help="fleet file (default: one demo guest)")
    group.addoption(
        "--virtrio-select",
        metavar="tag=NAME",
        action="append",
        default=[],
        help="run vm tests only on VMs with this tag (tag=NAME) or id (id=NAME)",
    )


def pytest_configure(config: pytest.Config) -> None:
    """Register the ``virtrio`` marker."""
    config.addinivalue_line(
        "markers", "virtrio(tags=None, count=None): VMs a test runs on (tags) or needs (count)"
    )


def _fleet(config: pytest.Config) -> Any:
    if _FLEET_KEY not in config.stash:
        from virtrio.engine import default_fleet, load_fleet

        path = config.getoption("--virtrio-fleet")
        config.stash[_FLEET_KEY] = load_fleet(path) if path else default_fleet(vms=1)
    return config.stash[_FLEET_KEY]


def _selected(config: pytest.Config, marker: pytest.Mark | None) -> list[str]:
    fleet = _fleet(config)
    chosen = list(fleet.vms)
    for selection in config.getoption("--virtrio-select"):
        key, _, value = selection.partition("=")
        if key == "tag":
            chosen = [v for v in chosen if value in v.tags]
        elif key == "id":
            chosen = [v for v in chosen if v.id == value]
        else:
            raise pytest.UsageError(f"--virtrio-select {selection}: expected tag=NAME or id=NAME")
    tags = (marker.kwargs.get("tags") if marker is not None else None) or ()
    chosen = [v for v in chosen if all(t in v.tags for t in tags)]
    return [v.id for v in chosen]


def _ours(metafunc: pytest.Metafunc, name: str) -> bool:
    definitions = metafunc.definition._fixtureinfo.name2fixturedefs.get(name, ())
    return bool(definitions) and getattr(definitions[-1].func, "__module__", "") == __name__


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    """Parametrize a test that uses this plugin's ``vm`` over the selected VMs."""
    if "vm" not in metafunc.fixturenames or not _ours(metafunc, "vm"):
        return
    ids = _selected(metafunc.config, metafunc.definition.get_closest_marker("virtrio"))
    metafunc.parametrize("vm", ids, indirect=True, ids=ids)


def _engine_thread(config: pytest.Config) -> EngineThread:
    if _THREAD_KEY not in config.stash:
        config.stash[_THREAD_KEY] = EngineThread(_fleet(config)).start()
    return config.stash[_THREAD_KEY]


def pytest_unconfigure(config: pytest.Config) -> None:
    """Stop the session's engine, if one was started."""
    thread = config.stash.get(_THREAD_KEY, None)
    if thread is not None:
        thread.close()


def _remote_vm(thread: EngineThread, vm_id: str) -> Remote:
    return Remote(thread, lambda: thread.engine.vm(vm_id), vm_id)


@pytest.fixture(scope="session")
def virtrio_engine(request: pytest.FixtureRequest) -> Remote:
    """The session's engine (a proxy): ``.vm(id)``, ``.vms(tag=)``, ``await .wait_event(...)``,
    ``.mark()``, ``.statistics()``."""
    thread = _engine_thread(request.config)
    return Remote(thread, lambda: thread.engine, "engine")


@pytest.fixture
def vm(request: pytest.FixtureRequest, virtrio_engine: Remote) -> Remote:
    """One selected VM of the session's fleet (the test runs once per VM)."""
    vm_id = getattr(request, "param", None)
    if vm_id is None:
        raise pytest.UsageError("the vm fixture is parametrized by the virtrio plugin only")
    request.node.stash.setdefault(_USED, []).append((_engine_thread(request.config), vm_id))
    return _remote_vm(_engine_thread(request.config), vm_id)


@pytest.fixture
def vms(request: pytest.FixtureRequest, virtrio_engine: Remote) -> list[Remote]:
    """Every selected VM (``@pytest.mark.virtrio(count=N)``: at least N, the first N)."""
    marker = request.node.get_closest_marker("virtrio")
    ids = _selected(request.config, marker)
    count = marker.kwargs.get("count") if marker is not None else None
    if count is not None:
        if len(ids) < count:
            pytest.fail(f"needs {count} VMs, the fleet selection has {len(ids)}: {ids}")
        ids = ids[:count]
    thread = _engine_thread(request.config)
    request.node.stash.setdefault(_USED, []).extend((thread, i) for i in ids)
    return [_remote_vm(thread, i) for i in ids]


@pytest.fixture
def fresh_vm(request: pytest.FixtureRequest) -> Iterator[Remote]:
    """A demo guest of its own, booted for this test and stopped after it."""
    from virtrio.engine import default_fleet

    thread = EngineThread(default_fleet(vms=1)).start()
    request.node.stash.setdefault(_USED, []).append((thread, "demo1"))
    try:
        yield _remote_vm(thread, "demo1")
    finally:
        thread.close()  # after the report: its evidence is already collected


def _evidence(thread: EngineThread, vm_id: str, folder: Path) -> list[tuple[str, str]]:
    sections = []
    call = thread.last_call.get(vm_id)
    if call is not None:
        sections.append((f"virtrio {vm_id}: last call", call))

    def console() -> str:
        vm = thread.engine.vm(vm_id)
        if "console" not in vm.channel_kinds():
            return ""
        return bytes(vm.line("console").output()[-CONSOLE_TAIL:]).decode("utf-8", "replace")

    try:
        text = thread.call_sync(console)
    except Exception as exc:
        text = f"(console unavailable: {exc})"
    if text:
        sections.append((f"virtrio {vm_id}: console (last {len(text)} chars)", text))

    async def screenshot() -> bytes | None:
        vm = thread.engine.vm(vm_id)
        if "spice" not in vm.channel_kinds().values():
            return None
        data: bytes = await vm.spice.screenshot(timeout=10)
        return data

    title = f"virtrio {vm_id}: screenshot"
    try:
        png = trio_run_in(thread, screenshot)
    except Exception as exc:
        sections.append((title, f"(none: the screenshot failed: {type(exc).__name__}: {exc})"))
    else:
        if png is None:
            sections.append((title, f"(none: {vm_id} has no Spice display)"))
        else:
            folder.mkdir(parents=True, exist_ok=True)
            path = folder / f"{vm_id}.png"
            path.write_bytes(png)
            sections.append((title, str(path)))
    return sections


def trio_run_in(thread: EngineThread, function: Any) -> Any:
    """Await ``function()`` in the engine's loop from a thread outside any Trio loop."""
    import trio

    return trio.from_thread.run(function, trio_token=thread.token)


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Any:
    """Attach a failing test's VM evidence: last call, console tail, screenshot (a section
    each; the screenshot's PNG under ``ROOT/.virtrio/TEST/VM.png``, its path also a
    ``virtrio_screenshot`` user property, so it reaches junit.xml)."""
    result = yield
    report = result.get_result()
    if call.when != "call" or not report.failed or _USED not in item.stash:
        return
    folder = Path(item.config.rootpath) / ".virtrio" / item.name
    for thread, vm_id in item.stash[_USED]:
        if thread.engine is None:
            continue
        for title, text in _evidence(thread, vm_id, folder):
            report.sections.append((title, text))
            if title.endswith(": screenshot") and not text.startswith("("):
                # the item's: junitxml writes the properties of the teardown report
                item.user_properties.append(("virtrio_screenshot", text))
