"""The server's Prometheus metrics (feature S8), in a registry of its own per app."""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator

__all__ = ["Metrics"]


class Metrics:
    """Active sessions, request latency, errors, sessions created/destroyed, programs run,
    snapshot sizes."""

    def __init__(self) -> None:
        from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

        self.registry = CollectorRegistry()
        r = self.registry
        self.active = Gauge("virtrio_sessions_active", "sessions with a live instance", registry=r)
        self.created = Counter("virtrio_sessions_created", "sessions created", registry=r)
        self.destroyed = Counter("virtrio_sessions_destroyed", "sessions destroyed", registry=r)
        self.programs = Counter("virtrio_programs_started", "programs started", registry=r)
        self.snapshot_bytes = Histogram(
            "virtrio_snapshot_bytes",
            "size of the snapshot image after a snapshot",
            buckets=(1e5, 1e6, 1e7, 1e8, 1e9),
            registry=r,
        )
        self.latency = Histogram(
            "virtrio_request_seconds",
            "request latency",
            ["method", "route"],
            registry=r,
            buckets=(0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.5, 1, 5),
        )
        self.websockets = Gauge(
            "virtrio_websockets_open",
            "open WebSocket streams: served here, or forwarded to the session's server",
            ["stream", "role"],
            registry=r,
        )
        self.errors = Counter(
            "virtrio_request_errors",
            "4xx and 5xx answers",
            ["method", "route", "status"],
            registry=r,
        )

    def observe(self, method: str, route: str, status: int, seconds: float) -> None:
        """Record one request."""
        self.observer(method, route)(status, seconds)

    def observer(self, method: str, route: str) -> Callable[[int, float], None]:
        """What records one request of ``method route``: ``observer(status, seconds)`` (the
        latency histogram's child looked up once, not on every request)."""
        latency = self.latency.labels(method, route)
        errors = self.errors

        def observe(status: int, seconds: float) -> None:
            latency.observe(seconds)
            if status >= 400:
                errors.labels(method, route, str(status)).inc()

        return observe

    @contextlib.contextmanager
    def websocket_open(self, stream: str, role: str) -> Iterator[None]:
        """Count one ``stream`` (``console`` or ``events``) WebSocket as open, in ``role``
        (``served`` or ``forwarded``), for the duration of the block."""
        gauge = self.websockets.labels(stream, role)
        gauge.inc()
        try:
            yield
        finally:
            gauge.dec()

    def render(self) -> tuple[bytes, str]:
        """The exposition text and its content type."""
        from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

        return generate_latest(self.registry), CONTENT_TYPE_LATEST
