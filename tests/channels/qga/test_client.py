"""The guest-agent client against a real qemu-ga (on the host, confined) and the demo guest."""

from __future__ import annotations

import os
import signal
from pathlib import Path

import pytest
import trio
import trio.testing

from tests.peers.qemu import BootedGuest
from tests.peers.qga import HostAgent
from virtrio.channels import open_listeners, open_stream
from virtrio.channels.qga import QgaCommandError, open_qga
from virtrio.errors import ConnectError, ConnectionLostError, VirtrioTimeoutError


async def test_ping_info_osinfo(host_qga: HostAgent) -> None:
    async with open_qga(host_qga.address) as qga:
        await qga.ping()
        info = await qga.info()
        assert info.version.startswith("7.")
        assert "guest-exec" in info.enabled
        assert "guest-shutdown" in info.disabled  # blocked by the fixture
        assert (await qga.osinfo())["kernel-release"] == os.uname().release


async def test_exec_and_wait_decodes_output_and_exit_code(host_qga: HostAgent) -> None:
    async with open_qga(host_qga.address) as qga:
        result = await qga.shell("echo hello; id -u; echo err >&2; exit 3", timeout=10)
        assert result.exited
        assert result.exit_code == 3
        assert not result.ok
        assert result.stdout == b"hello\n65534\n"  # runs as nobody
        assert result.stderr_text == "err\n"
        assert result.signal is None


async def test_exec_reports_the_terminating_signal(host_qga: HostAgent) -> None:
    async with open_qga(host_qga.address) as qga:
        result = await qga.shell("kill -9 $$", timeout=10)
        assert result.signal == 9
        assert result.exit_code is None


async def test_exec_with_stdin_and_env(host_qga: HostAgent) -> None:
    async with open_qga(host_qga.address) as qga:
        result = await qga.exec_and_wait(
            "/bin/sh",
            ["-c", 'tr a-z A-Z; echo "$GREETING"'],
            input_data=b"abc\n",
            env={"GREETING": "hi"},
        )
        assert result.stdout == b"ABC\nhi\n"
        pid = await qga.exec("/bin/sleep", ["5"])
        status = await qga.exec_status(pid)
        assert not status.exited


async def test_exec_and_wait_timeout_names_the_pid(host_qga: HostAgent) -> None:
    async with open_qga(host_qga.address) as qga:
        with pytest.raises(
            VirtrioTimeoutError, match=r"'/bin/sleep' still running after 0.3 s \(pid \d+\)"
        ):
            await qga.exec_and_wait("/bin/sleep", ["10"], timeout=0.3)


async def test_file_round_trip(host_qga: HostAgent) -> None:
    data = os.urandom(2_500_000)  # several read and write chunks
    path = str(host_qga.scratch / "data.bin")
    async with open_qga(host_qga.address) as qga:
        await qga.file_write(path, data)
        assert await qga.file_read(path) == data
        with pytest.raises(QgaCommandError, match="guest-file-open") as info:
            await qga.file_read("/etc/shadow")
        assert "Permission denied" in info.value.desc


async def test_blocked_command_error(host_qga: HostAgent) -> None:
    async with open_qga(host_qga.address) as qga:
        with pytest.raises(QgaCommandError) as info:
            await qga.execute("guest-shutdown")
        assert info.value.error_class == "CommandNotFound"
        assert "disabled" in info.value.desc


async def test_concurrent_calls(host_qga: HostAgent) -> None:
    async with open_qga(host_qga.address) as qga:
        outputs: list[bytes] = []

        async def run(i: int) -> None:
            outputs.append((await qga.shell(f"echo {i}", timeout=20)).stdout)

        async with trio.open_nursery() as nursery:
            for i in range(20):
                nursery.start_soon(run, i)
        assert sorted(outputs) == sorted(f"{i}\n".encode() for i in range(20))


async def test_timeout_then_resync(host_qga: HostAgent) -> None:
    async with open_qga(host_qga.address) as qga:
        os.kill(host_qga.process.pid, signal.SIGSTOP)
        try:
            with pytest.raises(VirtrioTimeoutError, match="'guest-info'"):
                await qga.execute("guest-info", timeout=0.2)
        finally:
            os.kill(host_qga.process.pid, signal.SIGCONT)
        # the next call resynchronises first, so guest-info's late reply is never taken for it
        assert await qga.execute("guest-ping") == {}


async def test_pending_calls_fail_when_the_agent_dies(host_qga: HostAgent) -> None:
    async with open_qga(host_qga.address) as qga:
        os.kill(host_qga.process.pid, signal.SIGSTOP)  # calls now stay pending
        failures: list[ConnectionLostError] = []

        async def call() -> None:
            try:
                await qga.ping(timeout=30)
            except ConnectionLostError as exc:
                failures.append(exc)

        with trio.fail_after(5):
            async with trio.open_nursery() as nursery:
                for _ in range(3):
                    nursery.start_soon(call)
                await trio.testing.wait_all_tasks_blocked()
                assert qga.in_flight == 3  # all three were written and wait for their reply
                os.kill(host_qga.process.pid, signal.SIGKILL)
        assert len(failures) == 3
        assert all("guest agent connection" in str(f) for f in failures)


@pytest.mark.slow
async def test_the_demo_guest(demo_guest: BootedGuest) -> None:
    async with open_qga(demo_guest.qga_address, connect_timeout=90) as qga:
        assert (await qga.osinfo())["id"] == "virtrio"
        result = await qga.shell("uname -sr; cat /proc/cpuinfo | grep -c processor", timeout=30)
        assert result.stdout_text.startswith("Linux 6.")
        await qga.file_write("/tmp/hello", b"from the host")
        assert await qga.file_read("/tmp/hello") == b"from the host"
    # the agent's port accepts a new client once the previous one left
    async with open_qga(demo_guest.qga_address, connect_timeout=30) as qga:
        await qga.ping()


@pytest.mark.slow
async def test_demo_guest_echo_port(demo_guest: BootedGuest) -> None:
    async with open_qga(demo_guest.qga_address, connect_timeout=90) as qga:
        await qga.ping()  # the guest is up
    async with await open_stream(demo_guest.echo_address) as stream:
        payload = os.urandom(100_000)
        async with trio.open_nursery() as nursery:
            nursery.start_soon(stream.send_all, payload)
            received = bytearray()
            with trio.fail_after(30):
                while len(received) < len(payload):
                    received += await stream.receive_some()
        assert bytes(received) == payload


async def _never_answer(stream: trio.SocketStream) -> None:
    await trio.sleep_forever()


async def test_an_agent_that_does_not_answer(tmp_path: Path) -> None:
    # like a guest whose agent has not started yet: the socket accepts, nothing answers
    address = f"unix:{tmp_path / 'silent.sock'}"
    listeners = await open_listeners(address)
    async with trio.open_nursery() as nursery:
        nursery.start_soon(trio.serve_listeners, _never_answer, listeners)
        with pytest.raises(ConnectError, match="did not answer guest-sync-delimited") as info:
            async with open_qga(address, connect_timeout=0.3):
                pass
        assert info.value.address == address
        nursery.cancel_scope.cancel()
