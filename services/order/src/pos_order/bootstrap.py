"""Builds the order service process. Nothing happens at import time."""

from __future__ import annotations

from pathlib import Path

import grpc

from pos.order.v1 import order_pb2_grpc
from pos_kit import migrate as kit_migrate
from pos_kit import service as kit_service
from pos_kit.grpc_client import channel
from pos_kit.grpc_server import GrpcService
from pos_kit.runtime import ConsumerSpec, ServiceRuntime
from pos_kit.settings import GrpcServiceSettings
from pos_order.adapters.remote import (
    CustomerDirectory,
    InventoryCatalog,
    PaymentService,
    PromotionDiscounts,
)
from pos_order.adapters.repository import OrderUow
from pos_order.adapters.tables import kit
from pos_order.entrypoints import consumers
from pos_order.entrypoints.grpc_api import SERVICE_NAME, OrderApi

NAME = "order"
MIGRATIONS = Path(__file__).parent / "migrations"


class Settings(GrpcServiceSettings):
    inventory_addr: str
    promotion_addr: str
    payment_addr: str
    # Asked only about a customer id the customer events have not brought yet.
    customer_addr: str
    customer_timeout_seconds: float = 1.0
    # Promotion is optional on the hot path: past this, the sale goes on at list price.
    promotion_timeout_seconds: float = 0.3


def build(settings: Settings) -> tuple[ServiceRuntime[OrderUow], GrpcService]:
    runtime = ServiceRuntime(
        NAME,
        settings,
        kit,
        OrderUow,
        consumers=[
            ConsumerSpec(
                "order-customers",
                "customer",
                list(consumers.CUSTOMER_SUBJECTS),
                consumers.on_customer_changed,
            )
        ],
    )
    tls = settings.grpc_tls
    api = OrderApi(
        runtime.uow,
        InventoryCatalog(channel(settings.inventory_addr, tls=tls)),
        PromotionDiscounts(
            channel(settings.promotion_addr, tls=tls), settings.promotion_timeout_seconds
        ),
        PaymentService(channel(settings.payment_addr, tls=tls)),
        CustomerDirectory(
            channel(settings.customer_addr, tls=tls), settings.customer_timeout_seconds
        ),
    )

    def register(server: grpc.aio.Server) -> None:
        order_pb2_grpc.add_OrderServiceServicer_to_server(api, server)

    service = kit_service.grpc_service(NAME, settings, register, SERVICE_NAME)
    return runtime, service


async def serve() -> None:
    await kit_service.serve(NAME, Settings(), build)  # type: ignore[call-arg]


def migrate() -> None:
    kit_migrate.upgrade_from_env(MIGRATIONS)
