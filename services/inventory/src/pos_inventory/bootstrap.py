"""Builds the inventory service process. Nothing happens at import time."""

from __future__ import annotations

from pathlib import Path

import grpc

from pos.inventory.v1 import inventory_pb2_grpc, stock_pb2_grpc
from pos_inventory.adapters.repository import InventoryUow
from pos_inventory.adapters.tables import kit
from pos_inventory.entrypoints import consumers
from pos_inventory.entrypoints.grpc_api import SERVICE_NAME, InventoryApi
from pos_inventory.entrypoints.stock_api import SERVICE_NAME as STOCK_SERVICE_NAME
from pos_inventory.entrypoints.stock_api import StockApi
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
    runtime.background.append(expiry_sweep(runtime.uow, settings.reservation_sweep_seconds))
    api = InventoryApi(runtime.uow)
    stock_api = StockApi(runtime.uow)

    def register(server: grpc.aio.Server) -> None:
        inventory_pb2_grpc.add_InventoryServiceServicer_to_server(api, server)

    def register_stock(server: grpc.aio.Server) -> None:
        stock_pb2_grpc.add_StockServiceServicer_to_server(stock_api, server)

    service = kit_service.grpc_service(
        NAME, settings, register, SERVICE_NAME, [(register_stock, STOCK_SERVICE_NAME)]
    )
    return runtime, service


async def serve() -> None:
    await kit_service.serve(NAME, Settings(), build)  # type: ignore[call-arg]


def migrate() -> None:
    kit_migrate.upgrade_from_env(MIGRATIONS)
