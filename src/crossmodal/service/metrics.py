"""Prometheus metrics of the service: requests, latency, and the size of the index.

``GET /metrics`` serves them in Prometheus' text format (prometheus_client). Each app has its
own registry, so two apps in one process (tests) do not share counters. Requests are labelled
by route *template* (``/api/thumb/{token}``), never by the raw path, so ids do not become
label values.
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable
from typing import Any

__all__ = ["Metrics"]

LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)  # seconds


class Metrics:
    """The registry and the instruments of one app."""

    def __init__(self, files: Callable[[], int]) -> None:
        from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

        self.registry = CollectorRegistry()
        self.requests = Counter(
            "crossmodal_requests",
            "HTTP requests by route and status code",
            ["method", "route", "status"],
            registry=self.registry,
        )
        self.latency = Histogram(
            "crossmodal_request_seconds",
            "HTTP request latency by route",
            ["method", "route"],
            buckets=LATENCY_BUCKETS,
            registry=self.registry,
        )
        self.files = Gauge("crossmodal_index_files", "Files in the index", registry=self.registry)
        self.files.set_function(lambda: float(files()))

    def render(self) -> tuple[bytes, str]:
        """The text exposition and its content type."""
        from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

        return generate_latest(self.registry), CONTENT_TYPE_LATEST

    async def middleware(self, request: Any, call_next: Callable[[Any], Awaitable[Any]]) -> Any:
        """Count and time a request under its route template."""
        started = time.perf_counter()
        response = await call_next(request)
        route = request.scope.get("route")
        template = getattr(route, "path", "unmatched")
        self.latency.labels(request.method, template).observe(time.perf_counter() - started)
        self.requests.labels(request.method, template, str(response.status_code)).inc()
        return response
