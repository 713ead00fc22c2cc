"""Prometheus metrics: requests, latency and status per route template (never per raw path,
whose ids would explode the series)."""

from __future__ import annotations

from fastapi import Response
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Counter, Histogram
from prometheus_client import generate_latest as _generate
from starlette.types import Scope

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


def observe(scope: Scope, status: int, seconds: float) -> None:
    route = scope.get("route")
    template = getattr(route, "path", "unmatched")
    LATENCY.labels(scope["method"], template).observe(seconds)
    REQUESTS.labels(scope["method"], template, str(status)).inc()


def exposition() -> Response:
    return Response(_generate(REGISTRY), media_type=CONTENT_TYPE_LATEST)
