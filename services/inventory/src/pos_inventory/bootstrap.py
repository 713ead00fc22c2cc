"""Builds the inventory service process. Nothing happens at import time."""

from __future__ import annotations

from pathlib import Path

from pos.order.v1 import events_pb2 as order_events
from pos_inventory.adapters import events
from pos_inventory.adapters.repository import InventoryUow
from pos_inventory.adapters.tables import kit
from pos_inventory.domain import model
from pos_inventory.entrypoints import consumers, grpc_api, stock_api
from pos_inventory.entrypoints.sweeper import expiry_sweep
from pos_kit import migrate as kit_migrate
from pos_kit import service as kit_service
from pos_kit.grpc_server import GrpcService
from pos_kit.runtime import ConsumerSpec, ServiceRuntime
from pos_kit.settings import GrpcServiceSettings

NAME = "inventory"
MIGRATIONS = Path(__file__).parent / "migrations"


class Settings(GrpcServiceSettings):
    # How often due reservations are expired: a hold ends within this long of its time.
    reservation_sweep_seconds: float = 10.0


def build(settings: Settings) -> tuple[ServiceRuntime[InventoryUow], GrpcService]:
    events.REGISTRY.check(model.EVENTS)
    runtime = ServiceRuntime(
        NAME,
        settings,
        kit,
        InventoryUow,
        consumers=[
            ConsumerSpec.typed(
                "inventory-sales",
                "order",
                {order_events.OrderConfirmed: consumers.on_order_confirmed},
            )
        ],
    )
    runtime.background.append(expiry_sweep(runtime.uow, settings.reservation_sweep_seconds))
    service = kit_service.grpc_service(
        NAME,
        settings,
        grpc_api.registrar(runtime.uow),
        grpc_api.SERVICE_NAME,
        [(stock_api.registrar(runtime.uow), stock_api.SERVICE_NAME)],
    )
    return runtime, service


async def serve() -> None:
    await kit_service.serve(NAME, Settings(), build)  # type: ignore[call-arg]


def migrate() -> None:
    kit_migrate.upgrade_from_env(MIGRATIONS)
