"""Builds the inventory service process. Nothing happens at import time."""

from __future__ import annotations

from pathlib import Path

import grpc

from pos.inventory.v1 import inventory_pb2_grpc
from pos_inventory.adapters.repository import InventoryUow
from pos_inventory.adapters.tables import kit
from pos_inventory.entrypoints import consumers
from pos_inventory.entrypoints.grpc_api import SERVICE_NAME, InventoryApi
from pos_kit import migrate as kit_migrate
from pos_kit.grpc_server import GrpcService
from pos_kit.runtime import ConsumerSpec, ServiceRuntime
from pos_kit.settings import GrpcServiceSettings
from pos_kit.telemetry import instrument_grpc_and_db, setup_logging, setup_tracing

NAME = "inventory"
MIGRATIONS = Path(__file__).parent / "migrations"


class Settings(GrpcServiceSettings):
    pass


def build(settings: Settings) -> tuple[ServiceRuntime[InventoryUow], GrpcService]:
    runtime = ServiceRuntime(
        NAME,
        settings,
        kit,
        InventoryUow,
        consumers=[
            ConsumerSpec(
                "inventory-sales",
                "order",
                ["pos.order.v1.order_confirmed"],
                consumers.on_order_confirmed,
            )
        ],
    )
    api = InventoryApi(runtime.uow)

    def register(server: grpc.aio.Server) -> None:
        inventory_pb2_grpc.add_InventoryServiceServicer_to_server(api, server)

    service = GrpcService(
        NAME,
        [register],
        [SERVICE_NAME],
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
