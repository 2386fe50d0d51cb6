"""A real QEMU session debugged through the API: upload the cortex-m3 test program,
breakpoint on ``tick``, run, registers, memory, step, continue; the console WebSocket with
two viewers (trio-websocket), the owner's input echoed by the program, its history in bounded
frames; the events WebSocket; tasks for coverage and a snapshot the board cannot take; the
artefact served under its digest. One session for the module."""

from __future__ import annotations

import base64
import contextlib
import hashlib
import json
import struct
from collections.abc import AsyncIterator, Iterator
from typing import Any

import httpx
import pytest
import trio
from trio_websocket import (
    ConnectionClosed,
    WebSocketConnection,
    open_websocket_url,
)

from tests.peers.programs import BareMetalProgram, build_program

from .conftest import Served, binary_until, owned_websocket


@pytest.fixture(scope="module")
def program() -> BareMetalProgram:
    return build_program("cortex-m3")


@pytest.fixture(scope="module")
def session(served: Served) -> Iterator[str]:
    with served.client("developer") as client:
        answer = client.post(
            "/api/v1/sessions",
            json={"board": "lm3s6965evb", "resources": {"trace": True, "timeout_s": 600}},
        )
        assert answer.status_code == 201, answer.text
        session_id = str(answer.json()["id"])
        yield session_id
        client.delete(f"/api/v1/sessions/{session_id}")


def _ws_url(served: Served, session_id: str, stream: str, role: str) -> str:
    base = served.url.replace("http://", "ws://")
    return f"{base}/api/v1/sessions/{session_id}/{stream}?api_key={served.keys[role]}"


async def _next_event(ws: WebSocketConnection, kind: str, **match: Any) -> dict[str, Any]:
    with trio.fail_after(60):
        while True:
            event = json.loads(await ws.get_message())
            if event["type"] == kind and all(event.get(k) == v for k, v in match.items()):
                return dict(event)


@pytest.fixture
async def api(served: Served) -> AsyncIterator[httpx.AsyncClient]:
    headers = {"X-API-Key": served.keys["developer"]}
    async with httpx.AsyncClient(base_url=served.url, headers=headers, timeout=60) as client:
        yield client


async def test_debug_a_program_through_the_api(
    served: Served, session: str, program: BareMetalProgram, api: httpx.AsyncClient
) -> None:
    s = f"/api/v1/sessions/{session}"
    async with (
        open_websocket_url(_ws_url(served, session, "console", "viewer")) as viewer,
        open_websocket_url(_ws_url(served, session, "console", "developer")) as owner,
        open_websocket_url(_ws_url(served, session, "events", "viewer")) as events,
    ):
        assert (await _next_event(events, "state"))["state"] == "running"
        upload = await api.post(
            f"{s}/programs", content=program.elf.read_bytes(), params={"name": "cm3"}
        )
        assert upload.status_code == 201, upload.text
        pid = upload.json()["program_id"]
        assert upload.json()["digest"] == hashlib.sha256(program.elf.read_bytes()).hexdigest()
        bp = await api.post(f"{s}/debug/breakpoints", json={"symbol": "tick"})
        assert bp.status_code == 201, bp.text
        start = await api.post(f"{s}/programs/{pid}/start", json={"halted": True})
        assert start.status_code == 200, start.text
        stop = await api.post(f"{s}/debug/continue", json={"wait": True, "timeout": 60})
        assert stop.json() == {"state": "stopped", "pc": program.symbols["tick"]}
        assert (await _next_event(events, "stopped"))["pc"] == program.symbols["tick"]
        registers = (await api.get(f"{s}/debug/registers", params={"names": "pc,sp"})).json()
        assert registers["registers"]["pc"] == program.symbols["tick"]
        memory = await api.get(
            f"{s}/debug/memory", params={"address": hex(program.symbols["pattern"]), "size": 4}
        )
        assert memory.json()["data"] == bytes([1, 8, 15, 22]).hex()
        stepped = (await api.post(f"{s}/debug/step")).json()
        assert stepped["pc"] != program.symbols["tick"]
        again = await api.post(f"{s}/debug/continue", json={"wait": True, "timeout": 60})
        assert again.json()["pc"] == program.symbols["tick"]
        counter = await api.get(
            f"{s}/debug/memory", params={"address": program.symbols["counter"], "size": 4}
        )
        assert struct.unpack("<I", bytes.fromhex(counter.json()["data"]))[0] == 1
        listed = (await api.get(f"{s}/debug/breakpoints")).json()["items"]
        assert [b["symbol"] for b in listed] == ["tick"]
        assert (await api.delete(f"{s}/debug/breakpoints/{listed[0]['id']}")).status_code == 204
        await api.post(f"{s}/debug/continue")
        # the banner reaches both viewers; a viewer's keystrokes are refused
        assert program.banner in await binary_until(viewer, program.banner)
        assert program.banner in await binary_until(owner, program.banner)
        await viewer.send_message(b"x")
        with trio.fail_after(60):
            while isinstance(reply := await viewer.get_message(), bytes):
                pass
        assert json.loads(reply)["code"] == "forbidden"
        # the owner's keystrokes go to the UART: the program echoes them to every viewer
        await owner.send_message(b"typed-by-owner")
        assert b"typed-by-owner" in await binary_until(viewer, b"typed-by-owner")
        assert b"typed-by-owner" in await binary_until(owner, b"typed-by-owner")
        interrupted = await api.post(f"{s}/debug/interrupt")
        assert interrupted.json() == {"state": "stopped"}

        # coverage is a task: 202, its events, then GET /tasks/{id}; the artefact by digest
        accepted = await api.post(f"{s}/coverage")
        assert accepted.status_code == 202
        task_id = accepted.json()["id"]
        assert accepted.headers["location"] == f"/api/v1/tasks/{task_id}"
        await _next_event_task(events, task_id)
        task = (await api.get(f"/api/v1/tasks/{task_id}")).json()
        assert task["state"] == "succeeded", task
        artefact = task["result"]
        download = await api.get(artefact["url"])
        assert download.status_code == 200
        digest = hashlib.sha256(download.content).hexdigest()
        assert digest == artefact["digest"]
        b64 = base64.b64encode(bytes.fromhex(digest)).decode()
        assert download.headers["digest"] == f"sha-256={b64}"
        assert b"FN:" in download.content
        assert b"tick" in download.content

        # lm3s6965evb cannot snapshot: the task fails naming the capability
        snap = (await api.post(f"{s}/snapshots")).json()
        await _next_event_task(events, snap["id"])
        failed = (await api.get(f"/api/v1/tasks/{snap['id']}")).json()
        assert failed["state"] == "failed"
        assert failed["error"]["code"] == "UnsupportedCapabilityError"


async def _next_event_task(events: WebSocketConnection, task_id: str) -> None:
    with trio.fail_after(60):
        while True:
            event = json.loads(await events.get_message())
            task = event.get("task") or {}
            if task.get("id") == task_id and task["state"] in ("succeeded", "failed"):
                return


def _server_closed(
    served: Served, url: str
) -> contextlib.AbstractAsyncContextManager[WebSocketConnection]:
    """A WebSocket at ``url`` the server will close."""
    return owned_websocket(served, url.split(served.url.replace("http://", "ws://"), 1)[1])


async def test_console_refusals_and_end_of_session(served: Served) -> None:
    with served.client("developer") as client:
        made = client.post("/api/v1/sessions", json={"board": "lm3s6965evb"}).json()
    url = _ws_url(served, made["id"], "console", "viewer")
    async with _server_closed(served, url.replace(served.keys["viewer"], "vk_bad_key")) as ws:
        with pytest.raises(ConnectionClosed) as refused:
            await ws.get_message()
    assert refused.value.reason.code == 4401
    async with _server_closed(served, url.replace(made["id"], "s-none")) as ws:
        with pytest.raises(ConnectionClosed) as missing:
            await ws.get_message()
    assert missing.value.reason.code == 4404
    async with _server_closed(served, url) as ws:
        hello = json.loads(await ws.get_message())
        assert hello == {"type": "console", "session_id": made["id"], "read_only": True}
        await trio.to_thread.run_sync(
            lambda: served.clients["developer"].delete(f"/api/v1/sessions/{made['id']}")
        )
        with trio.fail_after(60), pytest.raises(ConnectionClosed) as ended:  # noqa: PT012
            while True:
                await ws.get_message()
    assert ended.value.reason.code == 1000


async def test_a_session_past_its_timeout_is_stopped_and_marked_expired(served: Served) -> None:
    with served.client("developer") as client:
        made = client.post(
            "/api/v1/sessions", json={"board": "lm3s6965evb", "resources": {"timeout_s": 1}}
        ).json()
    # under load the second may pass before the socket opens: then it is refused as expired
    async with _server_closed(served, _ws_url(served, made["id"], "events", "viewer")) as events:
        refused = None
        try:
            await _next_event(events, "state", state="expired")
        except ConnectionClosed as exc:
            refused = exc.reason
        if refused is not None:
            assert refused.code == 4409
            assert "is expired" in str(refused.reason)
    answer = await trio.to_thread.run_sync(
        lambda: served.clients["developer"].get(f"/api/v1/sessions/{made['id']}")
    )
    assert answer.json()["state"] == "expired"


async def test_console_history_goes_out_in_bounded_frames(
    served: Served, program: BareMetalProgram, api: httpx.AsyncClient
) -> None:
    from virtrio.engine.server._ws import MAX_FRAME

    made = (await api.post("/api/v1/sessions", json={"board": "lm3s6965evb"})).json()
    s = f"/api/v1/sessions/{made['id']}"
    try:
        pid = (await api.post(f"{s}/programs", content=program.elf.read_bytes())).json()
        await api.post(f"{s}/programs/{pid['program_id']}/start", json={})
        typed = b"0123456789abcdef" * (MAX_FRAME // 16 + 1) + b"END"  # the UART echoes ~8 KB/s
        async with open_websocket_url(_ws_url(served, made["id"], "console", "developer")) as ws:
            await ws.send_message(typed)
            await binary_until(ws, b"END")
        # a viewer arriving later gets the history (> 1 frame's worth) in frames <= MAX_FRAME
        async with open_websocket_url(_ws_url(served, made["id"], "console", "viewer")) as ws:
            frames: list[bytes] = []
            with trio.fail_after(60):
                while b"END" not in b"".join(frames):
                    message = await ws.get_message()
                    if isinstance(message, bytes):
                        frames.append(message)
        assert typed in b"".join(frames)
        assert len(frames) >= 2
        assert max(len(f) for f in frames) <= MAX_FRAME
    finally:
        await api.delete(s)


async def test_a_viewer_reads_the_screenshot_of_a_board_with_a_display(
    served: Served, program: BareMetalProgram, api: httpx.AsyncClient
) -> None:
    from tests.engine.backends.test_display import png_size

    made = (await api.post("/api/v1/sessions", json={"board": "lm3s6965evb"})).json()
    plain = (await api.post("/api/v1/sessions", json={"board": "mps2-an385"})).json()
    s = f"/api/v1/sessions/{made['id']}"
    viewer = {"X-API-Key": served.keys["viewer"]}
    try:
        off = await api.get(f"{s}/screenshot", headers=viewer)
        assert off.status_code == 409  # powered off: nothing to take a picture of
        assert set(off.json()) == {"error", "code", "details"}
        pid = (await api.post(f"{s}/programs", content=program.elf.read_bytes())).json()
        await api.post(f"{s}/programs/{pid['program_id']}/start", json={})
        shot = await api.get(f"{s}/screenshot", headers=viewer)
        assert shot.status_code == 200, shot.text
        assert shot.headers["content-type"] == "image/png"
        width, height = png_size(shot.content)
        assert (width, height) != (0, 0)
        none = await api.get(f"/api/v1/sessions/{plain['id']}/screenshot", headers=viewer)
        assert none.status_code == 409
        body = none.json()
        assert (body["code"], body["details"]["capability"]) == (
            "unsupported_capability",
            "display",
        )
        assert "has no display" in body["error"]
    finally:
        await api.delete(s)
        await api.delete(f"/api/v1/sessions/{plain['id']}")
