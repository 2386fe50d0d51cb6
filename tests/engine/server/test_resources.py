"""The resource limits a server enforces on its sessions' QEMU (S10), against real QEMU: the
caps refuse larger requests with 422 naming the field and are the default; the limits are
applied to the process (/proc/PID/limits, the cgroup files); a session whose CPU time runs out
is failed with code ``resource_limit`` in GET and on the events WebSocket, never running; the
console history a session keeps (and sends a late viewer) is capped (``--console-history-kb``)."""

from __future__ import annotations

import contextlib
import json
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
import trio
from trio_websocket import (
    ConnectionClosed,
    WebSocketConnection,
    open_websocket_url,
)

from tests.peers.programs import BareMetalProgram, build_program
from virtrio.engine.backends import cgroup_support

from .conftest import Served, binary_until, create_key, owned_websocket, start_server, stop_server


@pytest.fixture(scope="module")
def program() -> BareMetalProgram:
    return build_program("cortex-m3")  # its main loop spins: QEMU uses a whole core


@pytest.fixture(scope="module")
def capped(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Served]:
    data_dir = tmp_path_factory.mktemp("capped")
    key = create_key(data_dir, "developer")
    server = start_server(
        data_dir,
        *("--max-memory-mb", "512", "--max-cpu-time-s", "600", "--max-cpus", "2"),
        *("--console-history-kb", "1"),
    )
    server.keys["developer"] = key
    try:
        yield server
    finally:
        server.close()
        assert stop_server(server) == 0


def _qemu_of(session_id: str) -> int:
    """The pid of the QEMU running the session (its program lives in the session's work dir)."""
    for proc in Path("/proc").iterdir():
        if proc.name.isdigit():
            try:
                cmdline = (proc / "cmdline").read_bytes().split(b"\0")
            except OSError:
                continue
            if cmdline[0].endswith(b"qemu-system-arm") and session_id.encode() in b" ".join(
                cmdline
            ):
                return int(proc.name)
    raise AssertionError(f"no QEMU runs session {session_id}")


def _server_closed(
    served: Served, session_id: str
) -> contextlib.AbstractAsyncContextManager[WebSocketConnection]:
    """The session's events WebSocket, which the server will close."""
    key = served.keys["developer"]
    return owned_websocket(served, f"/api/v1/sessions/{session_id}/events?api_key={key}")


def _start(client: httpx.Client, session_id: str, program: BareMetalProgram) -> None:
    s = f"/api/v1/sessions/{session_id}"
    upload = client.post(f"{s}/programs", content=program.elf.read_bytes())
    assert upload.status_code == 201, upload.text
    started = client.post(f"{s}/programs/{upload.json()['program_id']}/start", json={})
    assert started.status_code == 200, started.text


@pytest.mark.parametrize(
    ("resources", "field", "code"),
    [
        ({"memory_mb": 1024}, "resources.memory_mb", "over_cap"),
        ({"cpu_time_s": 601}, "resources.cpu_time_s", "over_cap"),
        ({"cpus": 4}, "resources.cpus", "over_cap"),
        ({"memory_mb": 0}, "resources.memory_mb", "invalid_request"),
        ({"memory_mb": 64.5}, "resources.memory_mb", "invalid_request"),
        ({"disk_mb": 1}, "resources.disk_mb", "invalid_request"),
    ],
)
def test_requests_beyond_the_caps_are_422_naming_the_field(
    capped: Served, resources: dict[str, object], field: str, code: str
) -> None:
    with capped.client("developer") as client:
        answer = client.post(
            "/api/v1/sessions", json={"board": "lm3s6965evb", "resources": resources}
        )
    assert answer.status_code == 422, answer.text
    body = answer.json()
    assert (body["code"], body["details"]["field"]) == (code, field)
    assert field in body["error"]


@pytest.mark.skipif(
    None in cgroup_support().values(), reason="no writable memory and cpu cgroup here"
)
def test_the_limits_are_applied_to_the_session_qemu(
    capped: Served, program: BareMetalProgram
) -> None:
    with capped.client("developer") as client:
        made = client.post(
            "/api/v1/sessions",
            json={"board": "lm3s6965evb", "resources": {"memory_mb": 256, "cpus": 0.5}},
        )
        assert made.status_code == 201, made.text
        session = made.json()
        # the caps are the limits of what the request left out
        assert session["resources"] == {"memory_mb": 256, "cpus": 0.5, "cpu_time_s": 600}
        try:
            _start(client, session["id"], program)
            pid = _qemu_of(session["id"])
            limits = Path(f"/proc/{pid}/limits").read_text().splitlines()
            cpu = next(line for line in limits if line.startswith("Max cpu time"))
            assert cpu.split()[3:5] == ["600", "601"]
            groups = dict(
                line.split(":", 2)[1:] for line in Path(f"/proc/{pid}/cgroup").read_text().split()
            )
            if "memory" in groups:  # cgroup v1: one hierarchy per controller
                memory = Path("/sys/fs/cgroup/memory" + groups["memory"])
                assert int((memory / "memory.limit_in_bytes").read_text()) == 256 << 20
                cpu_dir = Path("/sys/fs/cgroup/cpu" + groups["cpu"])
                assert int((cpu_dir / "cpu.cfs_quota_us").read_text()) == 50_000
            else:
                unified = Path("/sys/fs/cgroup" + groups[""])
                assert int((unified / "memory.max").read_text()) == 256 << 20
                assert (unified / "cpu.max").read_text().split() == ["50000", "100000"]
            assert session["id"] in str(memory if "memory" in groups else unified)
        finally:
            client.delete(f"/api/v1/sessions/{session['id']}")


async def test_a_session_out_of_cpu_time_is_failed_and_says_why(
    capped: Served, program: BareMetalProgram
) -> None:
    with capped.client("developer") as client:
        made = client.post(
            "/api/v1/sessions", json={"board": "lm3s6965evb", "resources": {"cpu_time_s": 1}}
        )
        assert made.status_code == 201, made.text
        session_id = made.json()["id"]
    seen: list[dict[str, object]] = []
    async with trio.open_nursery() as nursery:
        await nursery.start(_failed_event, capped, session_id, seen)
        await trio.to_thread.run_sync(_start, client, session_id, program)
    states = seen
    assert states[-1]["state"] == "failed", states
    failure = states[-1]["failure"]
    assert isinstance(failure, dict)
    assert failure["code"] == "resource_limit"
    assert failure["details"] == {"resource": "cpu_time", "limit": 1, "unit": "s"}
    answer = await trio.to_thread.run_sync(
        lambda: client.get(f"/api/v1/sessions/{session_id}").json()
    )
    assert answer["state"] == "failed"
    assert answer["failure"] == failure
    assert "CPU time limit of 1 s" in answer["detail"]
    listed = await trio.to_thread.run_sync(
        lambda: client.get("/api/v1/sessions", params={"state": "running"}).json()
    )
    assert session_id not in [s["id"] for s in listed["items"]]


async def _failed_event(
    capped: Served,
    session_id: str,
    seen: list[dict[str, object]],
    *,
    task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED,
) -> None:
    """Append the session's last state event to ``seen`` once it is not running (its stream
    then ends); started once the events WebSocket is open."""
    states: list[dict[str, object]] = []
    async with _server_closed(capped, session_id) as events:
        task_status.started()
        with trio.fail_after(60):
            try:
                while not states or states[-1]["state"] == "running":
                    event = json.loads(await events.get_message())
                    if event["type"] == "state":
                        states.append(event)
            except ConnectionClosed:  # the server ends the stream with the session
                pass
    seen.append(states[-1])


@pytest.mark.skipif(cgroup_support()["memory"] is None, reason="no writable memory cgroup here")
async def test_a_session_over_its_memory_limit_is_failed_and_says_why(
    capped: Served, program: BareMetalProgram
) -> None:
    with capped.client("developer") as client:
        made = client.post(  # below what QEMU needs to start
            "/api/v1/sessions", json={"board": "lm3s6965evb", "resources": {"memory_mb": 8}}
        )
        assert made.status_code == 201, made.text
    session_id = made.json()["id"]
    s = f"/api/v1/sessions/{session_id}"

    def start() -> httpx.Response:
        upload = client.post(f"{s}/programs", content=program.elf.read_bytes())
        return client.post(f"{s}/programs/{upload.json()['program_id']}/start", json={})

    seen: list[dict[str, object]] = []
    async with trio.open_nursery() as nursery:
        await nursery.start(_failed_event, capped, session_id, seen)
        started = await trio.to_thread.run_sync(start)
    assert started.status_code == 409, started.text
    assert started.json()["code"] == "resource_limit"
    assert started.json()["details"] == {"resource": "memory", "limit": 8}
    memory = {"resource": "memory", "limit": 8, "unit": "MiB"}
    failure = seen[0]["failure"]
    assert isinstance(failure, dict)
    assert (seen[0]["state"], failure["details"]) == ("failed", memory)
    answer = await trio.to_thread.run_sync(lambda: client.get(s).json())
    assert (answer["state"], answer["failure"]["details"]) == ("failed", memory)


async def test_the_console_history_kept_per_session_is_capped(
    capped: Served, program: BareMetalProgram
) -> None:
    with capped.client("developer") as client:
        made = client.post("/api/v1/sessions", json={"board": "lm3s6965evb"})
        assert made.status_code == 201, made.text
    session_id = made.json()["id"]
    base = capped.url.replace("http://", "ws://")
    url = f"{base}/api/v1/sessions/{session_id}/console?api_key={capped.keys['developer']}"
    try:
        async with open_websocket_url(url) as owner:
            await trio.to_thread.run_sync(_start, client, session_id, program)
            assert program.banner in await binary_until(owner, program.banner)
            typed = b"0123456789abcdef" * 192 + b"END"  # 3 KiB the program echoes back
            await owner.send_message(typed)
            assert typed in await binary_until(owner, b"END")
        # a viewer arriving later gets only the last KiB: the banner is no longer kept
        async with open_websocket_url(url) as late:
            history = await binary_until(late, b"END")
        assert len(history) <= 1024
        assert history.endswith(typed[-1024:])
        assert program.banner not in history
        log = await trio.Path(capped.data_dir, "sessions", session_id, "console.log").read_bytes()
        assert program.banner in log
        assert typed in log  # the log file has every byte
    finally:
        await trio.to_thread.run_sync(lambda: client.delete(f"/api/v1/sessions/{session_id}"))
