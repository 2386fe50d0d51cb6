"""The REST API of a real ``virtrio serve`` process: sessions, pagination/filter/sort, the one
error body, boards, backends, keys and tokens, the audit log, OpenAPI, metrics, health."""

from __future__ import annotations

import time

import jwt
import pytest

from .conftest import Served

ERROR_KEYS = {"error", "code", "details"}


def _session(
    served: Served, role: str = "developer", board: str = "lm3s6965evb"
) -> dict[str, object]:
    with served.client(role) as client:
        answer = client.post("/api/v1/sessions", json={"backend": "qemu", "board": board})
    assert answer.status_code == 201, answer.text
    return dict(answer.json())


def test_health_docs_and_openapi(served: Served) -> None:
    with served.client(None) as client:
        health = client.get("/healthz")
        assert health.status_code == 200
        assert health.json()["status"] == "ok"
        document = client.get("/api/v1/openapi.json").json()
        assert document["openapi"].startswith("3.1")
        assert "/api/v1/sessions/{id}/debug/registers" in document["paths"]
        assert "/api/v1/openapi.json" in client.get("/api/v1/docs").text


def test_session_create_get_list_delete(served: Served) -> None:
    created = _session(served)
    assert created["state"] == "running"
    assert created["backend"] == "qemu"
    with served.client("viewer") as client:
        got = client.get(f"/api/v1/sessions/{created['id']}")
        assert got.status_code == 200
        assert got.json()["id"] == created["id"]
    with served.client("developer") as client:
        assert client.delete(f"/api/v1/sessions/{created['id']}").status_code == 204
        gone = client.get(f"/api/v1/sessions/{created['id']}")
        assert gone.status_code == 404
        assert set(gone.json()) == ERROR_KEYS


def test_pagination_filter_and_sort(served: Served) -> None:
    ids = [str(_session(served, "developer2")["id"]) for _ in range(5)]
    with served.client("viewer") as client:
        seen: list[str] = []
        cursor = None
        while True:
            params = {"limit": 2, "sort": "-created_at", "owner": _owner(served, "developer2")}
            if cursor:
                params["cursor"] = cursor
            page = client.get("/api/v1/sessions", params=params).json()
            seen += [s["id"] for s in page["items"]]
            cursor = page["next_cursor"]
            if cursor is None:
                break
        assert seen == list(reversed(ids))
        running = client.get("/api/v1/sessions", params={"state": "running", "limit": 1000}).json()
        assert set(ids) <= {s["id"] for s in running["items"]}
        assert client.get("/api/v1/sessions", params={"backend": "renode"}).json()["items"] == []
        bad = client.get("/api/v1/sessions", params={"sort": "owner"})
        assert bad.status_code == 422
        assert bad.json()["code"] == "invalid_request"
    with served.client("developer2") as client:
        for session_id in ids:
            assert client.delete(f"/api/v1/sessions/{session_id}").status_code == 204


def _owner(served: Served, role: str) -> str:
    return served.keys[role].split("_")[1]


@pytest.mark.parametrize(
    ("body", "code"),
    [
        ({"board": "no-such-board"}, "unknown_board"),
        ({"board": 42}, "invalid_request"),
        ({"board": {"system_id": "x"}}, "invalid_board"),
        ({"board": "pc", "resources": {"memory_mb": -1}}, "invalid_request"),
        ({"board": "pc", "colour": "red"}, "invalid_request"),
        ({"backend": "bochs", "board": "pc"}, "invalid_request"),
    ],
)
def test_bad_session_requests_are_422_with_the_error_body(
    served: Served, body: dict[str, object], code: str
) -> None:
    with served.client("developer") as client:
        answer = client.post("/api/v1/sessions", json=body)
    assert answer.status_code == 422, answer.text
    assert set(answer.json()) == ERROR_KEYS
    assert answer.json()["code"] == code


def test_not_json_unknown_route_and_wrong_method(served: Served) -> None:
    with served.client("developer") as client:
        garbage = client.post("/api/v1/sessions", content=b"{not json")
        assert garbage.status_code == 422
        assert garbage.json()["code"] == "invalid_json"
        missing = client.get("/api/v1/nothing-here")
        assert missing.status_code == 404
        assert set(missing.json()) == ERROR_KEYS
        wrong = client.put("/api/v1/sessions")
        assert wrong.status_code == 405
        assert wrong.json()["code"] == "method_not_allowed"


def test_boards_templates_store_and_validate(served: Served) -> None:
    with served.client("developer") as client:
        names = {b["name"] for b in client.get("/api/v1/boards").json()["items"]}
        assert {"lm3s6965evb", "mps2-an385", "pc"} <= names
        config = next(
            b["config"]
            for b in client.get("/api/v1/boards").json()["items"]
            if b["name"] == "mps2-an385"
        )
        stored = client.post("/api/v1/boards", json={"name": "my-an385", "config": config})
        assert stored.status_code == 201
        again = client.post("/api/v1/boards", json={"name": "my-an385", "config": config})
        assert again.status_code == 409
        assert again.json()["code"] == "conflict"
        ok = client.post("/api/v1/boards/validate", json={"config": config}).json()
        assert ok == {"valid": True, "errors": []}
        bad = client.post("/api/v1/boards/validate", json={"config": {"nodes": "x"}}).json()
        assert bad["valid"] is False
        assert "board config" in bad["errors"][0]
    session = _session(served, board="my-an385")
    assert session["board"] == {"name": "my-an385"}
    with served.client("developer") as client:
        assert client.delete(f"/api/v1/sessions/{session['id']}").status_code == 204


def test_backends_name_their_capabilities(served: Served) -> None:
    with served.client("viewer") as client:
        backends = {
            b["name"]: b["capabilities"] for b in client.get("/api/v1/backends").json()["items"]
        }
    assert {"qemu", "renode", "skyeye"} <= set(backends)
    assert backends["qemu"]["tested"] is True
    assert "debug.breakpoints" in backends["qemu"]["supported"]
    assert backends["renode"]["tested"] is False


def test_bearer_tokens_expire_and_keys_revoke(served: Served) -> None:
    with served.client("admin") as admin:
        made = admin.post("/api/v1/keys", json={"role": "viewer", "name": "short"}).json()
    key = made["key"]
    with served.client(None) as client:
        minted = client.post("/api/v1/auth/tokens", headers={"X-API-Key": key}, json={"ttl_s": 60})
        assert minted.status_code == 201
        token = minted.json()["token"]
        assert jwt.decode(token, options={"verify_signature": False})["role"] == "viewer"
        bearer = {"Authorization": f"Bearer {token}"}
        assert client.get("/api/v1/sessions", headers=bearer).status_code == 200
        expired_token = client.post(
            "/api/v1/auth/tokens", headers={"X-API-Key": key}, json={"ttl_s": 1}
        ).json()["token"]
        claims = jwt.decode(expired_token, options={"verify_signature": False})
        while time.time() < claims["exp"] + 1:  # the token's own expiry, not a guess
            time.sleep(0.2)
        expired = client.get(
            "/api/v1/sessions", headers={"Authorization": f"Bearer {expired_token}"}
        )
        assert expired.status_code == 401
        assert "expired" in expired.json()["error"]
        forged = jwt.encode(
            {"sub": made["id"], "role": "admin", "exp": claims["exp"] + 999}, "x" * 32
        )
        assert (
            client.get("/api/v1/audit", headers={"Authorization": f"Bearer {forged}"}).status_code
            == 401
        )
        wrong = key[:-2] + ("aa" if not key.endswith("aa") else "bb")
        assert client.get("/api/v1/sessions", headers={"X-API-Key": wrong}).status_code == 401
    with served.client("admin") as admin:
        keys = admin.get("/api/v1/keys").json()["items"]
        assert all("hash" not in k and "key" not in k for k in keys)
        assert admin.delete(f"/api/v1/keys/{made['id']}").status_code == 204
    with served.client(None) as client:
        assert client.get("/api/v1/sessions", headers=bearer).status_code == 401
        assert client.get("/api/v1/sessions", headers={"X-API-Key": key}).status_code == 401


def test_audit_log_records_who_what_and_outcome(served: Served) -> None:
    with served.client("viewer") as viewer:
        assert viewer.post("/api/v1/sessions", json={"board": "pc"}).status_code == 403
    with served.client("admin") as admin:
        entries = admin.get("/api/v1/audit", params={"limit": 20}).json()["items"]
    denied = [e for e in entries if e["action"] == "POST /api/v1/sessions" and e["outcome"] == 403]
    assert denied
    assert denied[0]["resource"] == "/api/v1/sessions"
    created = [e for e in entries if e["outcome"] == 201]
    assert any(e["actor"] == _owner(served, "admin") for e in created)  # the keys it made


def test_metrics_count_requests_and_sessions(served: Served) -> None:
    _session(served)
    with served.client(None) as client:
        text = client.get("/metrics").text
    assert "virtrio_sessions_created_total" in text
    assert 'virtrio_request_seconds_count{method="POST",route="/api/v1/sessions"}' in text
    assert (
        'virtrio_request_errors_total{method="POST",route="/api/v1/sessions",status="422"}' in text
    )
    assert "virtrio_sessions_active" in text
