"""The pytest plugin (entry point ``pytest11: virtrio``): a fleet for your tests.

::

    # test_guest.py: pytest --virtrio-fleet fleet.yaml --virtrio-select tag=web
    import pytest

    async def test_kernel(vm):                      # runs once per selected VM
        result = await vm.qga.shell("uname -r")
        assert result.exit_code == 0

    async def test_console(vm):
        console = vm.line("console")
        mark = console.mark()
        await console.send("echo hi\\n")
        await console.expect("hi", after=mark, timeout=10)

    @pytest.mark.virtrio(count=2)
    async def test_two(vms): ...                     # all selected VMs (at least count)

    async def test_breaks_it(fresh_vm): ...          # a demo guest of its own

Fixtures: ``virtrio_engine`` (session: the fleet comes up once), ``vm`` (parametrized over the
selected VMs), ``vms``, ``fresh_vm``. Options: ``--virtrio-fleet FILE`` (default: one demo
guest), ``--virtrio-select tag=NAME`` (or ``id=NAME``). Marker: ``virtrio(tags=[...],
count=N)``. A failing test's report gets each of its VMs' last console output, the last call
it made through virtrio, and a screenshot if the VM has Spice (a PNG under
``ROOTDIR/.virtrio/TEST/VM.png``, its path in the report and in the ``virtrio_screenshot``
user property of junit.xml; a VM without Spice gets a line saying there is none).

Under pytest-trio every test runs in a new ``trio.run``, and pytest-trio's fixtures cannot be
session-scoped. So the engine runs in a Trio loop of its own in a background thread, for the
whole session, and the fixtures hand out proxies (:class:`~virtrio.testing._remote.Remote`):
``await vm.qga.shell(...)`` runs in the engine's loop while the test's loop waits in a worker
thread; plain values (marks, results) come back as values. Context managers and iterators
cross the loops too: ``with vm.events("STOP") as sub``, ``async for event in sub``, ``async with
stream`` (an ``async with`` is held by one task of the engine's loop, so a manager that opens a
nursery works, and the block's exception is thrown into it).

The plugin is inert until a test asks for one of its fixtures: loading it adds options and a
marker, nothing boots.
"""

from ._plugin import (
    fresh_vm as fresh_vm,
    pytest_addoption as pytest_addoption,
    pytest_configure as pytest_configure,
    pytest_generate_tests as pytest_generate_tests,
    pytest_runtest_makereport as pytest_runtest_makereport,
    pytest_unconfigure as pytest_unconfigure,
    virtrio_engine as virtrio_engine,
    vm as vm,
    vms as vms,
)

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
