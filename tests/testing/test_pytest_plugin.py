"""The pytest plugin, through pytester in a subprocess against real demo guests: a user's test
file using the fixtures passes; a failing test reports its last virtrio call and the console."""

from __future__ import annotations

import pytest

pytest_plugins = ["pytester"]

USER_TESTS = """
import pytest

async def test_guest_agent(vm):
    result = await vm.qga.shell("echo agent-on-$(hostname)")
    assert result.exit_code == 0
    assert result.stdout_text.strip() == "agent-on-virtrio-guest"

async def test_console_and_events(vm, virtrio_engine):
    console = vm.line("console")
    mark = console.mark()
    await console.send("echo con$((40 + 2))sole\\n")
    found = await console.expect("con42sole", after=mark, timeout=30)
    assert found.text == "con42sole"
    seq = virtrio_engine.mark()
    await vm.qmp.execute("stop")
    await vm.qmp.execute("cont")
    event = await virtrio_engine.wait_event("RESUME", vm=vm.name, after=seq, timeout=30)
    assert event.name == "RESUME"

async def test_context_managers_and_iterators_across_loops(vm):
    with vm.events("STOP", "RESUME") as events:          # sync with, in the engine's loop
        await vm.qmp.execute("stop")
        await vm.qmp.execute("cont")
        first = await events.receive()
        assert first.name == "STOP"
        async for event in events:                        # async iteration
            assert event.name == "RESUME"
            break
    stream = await vm.mux("mux0").open_stream()
    async with stream as echo:                            # async with
        await echo.send_all(b"across loops")
        received = b""
        while len(received) < 12:
            received += await echo.receive_some()
    assert received == b"across loops"

@pytest.mark.virtrio(count=1)
async def test_vms(vms):
    assert [v.name for v in vms] == ["demo1"]

async def test_a_failure_shows_the_console(vm):
    console = vm.line("console")
    await console.send("echo evidence-for-the-report\\n")
    await console.expect("evidence-for-the-report", timeout=30)
    result = await vm.qga.shell("exit 7")
    assert result.exit_code == 0, "the guest said no"

async def test_a_fresh_vm_of_its_own(fresh_vm, vm):
    await fresh_vm.qmp.execute("stop")               # breaks it: nobody else sees that
    assert (await fresh_vm.qmp.query_status()).status == "paused"
    assert (await vm.qmp.query_status()).status == "running"

@pytest.mark.virtrio(count=3)
async def test_too_few(vms):
    pass
"""


def test_the_plugin_against_a_demo_guest(pytester: pytest.Pytester) -> None:
    pytester.makeini("[pytest]\ntrio_mode = true\n")
    pytester.makepyfile(test_user=USER_TESTS)
    result = pytester.runpytest_subprocess("-p", "no:cacheprovider", "-rfE", timeout=600)
    result.assert_outcomes(passed=5, failed=1, errors=1)
    output = result.stdout.str()
    assert "the guest said no" in output
    # the report carries the last call through virtrio and the console's tail
    assert "virtrio demo1: last call" in output
    assert "demo1 qga.shell('exit 7')" in output
    assert "virtrio demo1: console (last" in output
    assert "evidence-for-the-report" in output
    assert "needs 3 VMs, the fleet selection has 1" in output


def test_the_plugin_is_inert_without_its_fixtures(pytester: pytest.Pytester) -> None:
    pytester.makeini("[pytest]\ntrio_mode = true\n")
    pytester.makepyfile(
        test_plain="""
import pytest

@pytest.fixture
def vm():
    return "someone else's vm"

def test_own_vm_fixture(vm):
    assert vm == "someone else's vm"

async def test_nothing():
    pass
"""
    )
    result = pytester.runpytest_subprocess("-p", "no:cacheprovider", "--virtrio-select", "tag=x")
    result.assert_outcomes(passed=2)
    assert "virtrio-0.1.0" in result.stdout.str()  # loaded through its entry point, inert


SPICE_FLEET = """\
vms:
  - id: spicy
    qemu: {template: demo, spice: true}
  - id: plain
    qemu: {template: demo}
"""

FAILING_ON_BOTH = """
async def test_fails_with_evidence(vm):
    console = vm.line("console")
    await console.send("echo console-of-$(( 6 * 7 ))\\n")
    await console.expect("console-of-42", timeout=60)
    assert vm.name == "nobody", "wrong VM on purpose"
"""


def test_a_failure_carries_a_screenshot_with_spice(pytester: pytest.Pytester) -> None:
    import xml.etree.ElementTree as ET

    from virtrio.engine.scenario._image import decode_png

    pytester.makeini("[pytest]\ntrio_mode = true\n")
    fleet = pytester.makefile(".yaml", fleet=SPICE_FLEET)
    pytester.makepyfile(test_user=FAILING_ON_BOTH)
    junit = pytester.path / "junit.xml"
    result = pytester.runpytest_subprocess(
        "-p", "no:cacheprovider", "-rf", "--virtrio-fleet", str(fleet), f"--junitxml={junit}",
        timeout=600,
    )  # fmt: skip
    result.assert_outcomes(failed=2)
    output = result.stdout.str()
    assert output.count("wrong VM on purpose") >= 2
    for vm in ("spicy", "plain"):
        assert f"virtrio {vm}: console (last" in output
    assert "console-of-42" in output
    # the Spice VM: a PNG of its screen (SeaBIOS's 720x400 text mode), its path in the report
    shot = pytester.path / ".virtrio" / "test_fails_with_evidence[spicy]" / "spicy.png"
    assert "virtrio spicy: screenshot" in output
    assert str(shot) in output
    image = decode_png(shot.read_bytes())
    assert (image.width, image.height) == (720, 400)
    # the VM without Spice: no crash, a line saying why there is none
    assert "(none: plain has no Spice display)" in output
    assert not (pytester.path / ".virtrio" / "test_fails_with_evidence[plain]").exists()
    # junit.xml: the screenshot as a property of the Spice VM's testcase only
    cases = {c.get("name"): c for c in ET.parse(junit).getroot().iter("testcase")}
    properties = {
        name: [(p.get("name"), p.get("value")) for p in case.iter("property")]
        for name, case in cases.items()
    }
    assert properties["test_fails_with_evidence[spicy]"] == [("virtrio_screenshot", str(shot))]
    assert properties["test_fails_with_evidence[plain]"] == []
