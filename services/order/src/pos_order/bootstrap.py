"""Builds the order service process. Nothing happens at import time."""

from __future__ import annotations

from pathlib import Path

from pos.customer.v1 import events_pb2 as customer_events
from pos_kit import migrate as kit_migrate
from pos_kit import service as kit_service
from pos_kit.grpc_client import channel
from pos_kit.grpc_server import GrpcService
from pos_kit.runtime import ConsumerSpec, ServiceRuntime
from pos_kit.settings import GrpcServiceSettings
from pos_order.adapters import events
from pos_order.adapters.remote import (
    CustomerDirectory,
    InventoryCatalog,
    PaymentService,
    PromotionDiscounts,
)
from pos_order.adapters.repository import OrderUow
from pos_order.adapters.tables import kit, metadata
from pos_order.domain import model
from pos_order.entrypoints import consumers, grpc_api
from pos_order.service.ports import CheckoutPorts

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
    events.REGISTRY.check(model.EVENTS)
    runtime = ServiceRuntime(
        NAME,
        settings,
        kit,
        OrderUow,
        consumers=[
            ConsumerSpec.typed(
                "order-customers",
                "customer",
                {
                    customer_events.CustomerCreated: consumers.on_customer_changed,
                    customer_events.CustomerUpdated: consumers.on_customer_changed,
                },
            )
        ],
    )
    tls = settings.grpc_tls
    ports = CheckoutPorts(
        catalog=InventoryCatalog(channel(settings.inventory_addr, tls=tls)),
        discounts=PromotionDiscounts(
            channel(settings.promotion_addr, tls=tls), settings.promotion_timeout_seconds
        ),
        payments=PaymentService(channel(settings.payment_addr, tls=tls)),
        customers=CustomerDirectory(
            channel(settings.customer_addr, tls=tls), settings.customer_timeout_seconds
        ),
    )
    service = kit_service.grpc_service(
        NAME, settings, grpc_api.registrar(runtime.uow, ports), grpc_api.SERVICE_NAME
    )
    return runtime, service


async def serve() -> None:
    await kit_service.serve(NAME, Settings(), build)  # type: ignore[call-arg]


def migrate() -> None:
    kit_migrate.upgrade_from_env(MIGRATIONS)


__all__ = ["metadata", "migrate", "serve"]
