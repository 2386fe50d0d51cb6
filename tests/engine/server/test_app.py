"""hypercorn's configuration of the server: no Server header, a Date made once a second,
connections kept alive without a request limit, no access log."""

from __future__ import annotations

from email.utils import parsedate_to_datetime

import pytest

from virtrio.engine.server._app import hypercorn_config


def test_the_response_headers_are_a_date_only() -> None:
    config = hypercorn_config("127.0.0.1:0")
    headers = config.response_headers("h11")
    assert [name for name, _ in headers] == [b"date"]
    assert parsedate_to_datetime(headers[0][1].decode()).tzname() == "UTC"
    assert config.bind == ["127.0.0.1:0"]
    assert config.accesslog is None
    assert config.keep_alive_max_requests >= 2**31


def test_the_date_follows_the_clock(monkeypatch: pytest.MonkeyPatch) -> None:
    config = hypercorn_config("127.0.0.1:0")
    now = [1_800_000_000.25]
    monkeypatch.setattr("virtrio.engine.server._app.time.time", lambda: now[0])
    first = config.response_headers("h11")
    now[0] += 0.5
    assert config.response_headers("h11") == first  # the same second: the same Date
    first.append((b"x", b"y"))  # a caller's list is its own
    assert config.response_headers("h11") == [(b"date", b"Fri, 15 Jan 2027 08:00:00 GMT")]
    now[0] += 1
    assert config.response_headers("h11") == [(b"date", b"Fri, 15 Jan 2027 08:00:01 GMT")]
