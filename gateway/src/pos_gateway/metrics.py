"""Prometheus metrics: requests, latency and status per route template (never per raw path,
whose ids would explode the series)."""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable

from fastapi import Request, Response
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Counter, Histogram
from prometheus_client import generate_latest as _generate

REGISTRY = CollectorRegistry()
REQUESTS = Counter(
    "omnitill_http_requests",
    "HTTP requests answered by the gateway",
    ["method", "route", "status"],
    registry=REGISTRY,
)
LATENCY = Histogram(
    "omnitill_http_request_duration_seconds",
    "Time to answer an HTTP request",
    ["method", "route"],
    buckets=(0.002, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0),
    registry=REGISTRY,
)


async def measure(
    request: Request, call_next: Callable[[Request], Awaitable[Response]]
) -> Response:
    start = time.perf_counter()
    response = await call_next(request)
    route = request.scope.get("route")
    template = getattr(route, "path", "unmatched")
    LATENCY.labels(request.method, template).observe(time.perf_counter() - start)
    REQUESTS.labels(request.method, template, str(response.status_code)).inc()
    return response


def exposition() -> Response:
    return Response(_generate(REGISTRY), media_type=CONTENT_TYPE_LATEST)
