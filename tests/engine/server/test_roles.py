"""The whole role x route matrix: every route of the server (from its own route table, so a
new route is in the matrix by itself) called with no credentials and as each role, on a
session a developer owns. Allowed calls may fail for other reasons (404, 409, 422) but never
401/403 and never 5xx; refused ones are exactly 401 or 403 with the error body."""

from __future__ import annotations

import re

import pytest

from virtrio.engine.server import ROUTES
from virtrio.engine.server._http import RouteSpec

from .conftest import Served

#: who calls: a role's key; "developer" owns the session, "developer2" does not
CALLERS = (None, "viewer", "developer", "developer2", "admin")


def expected(spec: RouteSpec, caller: str | None) -> int | None:
    """401 or 403 for a refused call; None for an allowed one."""
    if spec.perm == "public":
        return None
    if caller is None:
        return 401
    if caller == "admin":
        return None
    if spec.perm == "admin":
        return 403
    if spec.perm == "read":
        return None
    if caller == "viewer":
        return 403
    # a developer writes only its own sessions
    if "{id}" in spec.path and caller == "developer2":
        return 403
    return None


def _path(spec: RouteSpec, session_id: str) -> str:
    values = {"id": session_id, "pid": "p-none", "bid": "b-none", "sid": "snap-none",
              "tid": "t-none", "digest": "0" * 64, "kid": "nokey"}  # fmt: skip
    return re.sub(r"\{(\w+)\}", lambda m: values[m.group(1)], spec.path)


def _new_session(served: Served) -> str:
    with served.client("developer") as client:
        answer = client.post("/api/v1/sessions", json={"board": "lm3s6965evb"})
    assert answer.status_code == 201, answer.text
    return str(answer.json()["id"])


def test_the_matrix_covers_every_route() -> None:
    assert len(ROUTES) >= 30
    assert len({(s.method, s.path) for s in ROUTES}) == len(ROUTES)


@pytest.fixture(scope="module")
def owned(served: Served) -> str:
    """The developer's session every row but the deleting one works on."""
    return _new_session(served)


@pytest.mark.parametrize("spec", ROUTES, ids=lambda s: f"{s.method} {s.path}")
def test_role_route_matrix(served: Served, owned: str, spec: RouteSpec) -> None:
    deletes = spec.method == "DELETE" and spec.path.endswith("{id}")
    for caller in CALLERS:
        # deleting must not spoil the next caller's call: a fresh session for each
        session_id = _new_session(served) if deletes else owned
        with served.client(caller) as client:
            answer = client.request(spec.method, _path(spec, session_id))
        want = expected(spec, caller)
        where = f"{spec.method} {spec.path} as {caller}: {answer.status_code} {answer.text[:200]}"
        assert answer.status_code < 500, where
        if want is None:
            assert answer.status_code not in (401, 403), where
        else:
            assert answer.status_code == want, where
            assert set(answer.json()) == {"error", "code", "details"}, where
