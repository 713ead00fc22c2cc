"""Builds the customer service process. Nothing happens at import time."""

from __future__ import annotations

from pathlib import Path

from pos_customer.adapters.repository import CustomerUow
from pos_customer.adapters.tables import kit, metadata
from pos_customer.entrypoints import consumers, grpc_api
from pos_kit import migrate as kit_migrate
from pos_kit.grpc_server import GrpcService
from pos_kit.runtime import ConsumerSpec, ServiceRuntime
from pos_kit.settings import GrpcServiceSettings
from pos_kit.telemetry import instrument_grpc_and_db, setup_logging, setup_tracing

NAME = "customer"
MIGRATIONS = Path(__file__).parent / "migrations"


class Settings(GrpcServiceSettings):
    pass


def build(settings: Settings) -> tuple[ServiceRuntime[CustomerUow], GrpcService]:
    runtime = ServiceRuntime(
        NAME,
        settings,
        kit,
        CustomerUow,
        consumers=[
            ConsumerSpec(
                "customer-loyalty",
                "order",
                ["pos.order.v1.order_confirmed"],
                consumers.on_order_confirmed,
            )
        ],
    )
    service = GrpcService(
        NAME,
        [grpc_api.registrar(runtime.uow)],
        [grpc_api.SERVICE_NAME],
        settings.grpc_host,
        settings.grpc_port,
        settings.shutdown_grace_seconds,
    )
    return runtime, service


async def serve() -> None:
    settings = Settings()  # type: ignore[call-arg]
    setup_logging(NAME, settings.log_level)
    setup_tracing(f"pos-{NAME}", settings.otel_exporter_otlp_endpoint)
    instrument_grpc_and_db()
    runtime, service = build(settings)
    try:
        await service.run_until_signalled([runtime.messaging])
    finally:
        await runtime.close()


def migrate() -> None:
    kit_migrate.upgrade_from_env(MIGRATIONS)


__all__ = ["metadata", "migrate", "serve"]
