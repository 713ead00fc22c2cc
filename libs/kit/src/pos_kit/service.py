"""The one way a service process is assembled and run, so five services stay alike."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Protocol

import grpc

from pos_kit import heap
from pos_kit.grpc_server import GrpcService
from pos_kit.runtime import ServiceRuntime
from pos_kit.settings import GrpcServiceSettings
from pos_kit.telemetry import instrument_grpc_and_db, setup_logging, setup_tracing


def grpc_service(
    name: str,
    settings: GrpcServiceSettings,
    register: Callable[[grpc.aio.Server], None],
    service_name: str,
    more: list[tuple[Callable[[grpc.aio.Server], None], str]] | None = None,
) -> GrpcService:
    """`more`: further (register, full service name) pairs served by the same process."""
    extra = more or []
    return GrpcService(
        name,
        [register, *(r for r, _ in extra)],
        [service_name, *(n for _, n in extra)],
        settings.grpc_host,
        settings.grpc_port,
        settings.shutdown_grace_seconds,
        tls=settings.grpc_tls,
        health_port=settings.grpc_health_port,
    )


class Builder(Protocol):
    def __call__(self, settings: Any) -> tuple[ServiceRuntime[Any], GrpcService]: ...


async def serve(name: str, settings: GrpcServiceSettings, build: Builder) -> None:
    """Logging and tracing first (gRPC instrumentation must precede the server), then run until
    SIGTERM/SIGINT, drain, and close the database pool."""
    setup_logging(name, settings.log_level)
    setup_tracing(f"pos-{name}", settings.otel_exporter_otlp_endpoint)
    instrument_grpc_and_db()
    runtime, service = build(settings)
    heap.settle()
    try:
        await service.run_until_signalled(runtime.tasks())
    finally:
        await runtime.close()
