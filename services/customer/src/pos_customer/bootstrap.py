"""Builds the customer service process. Nothing happens at import time."""

from __future__ import annotations

from pathlib import Path

from pos.order.v1 import events_pb2 as order_events
from pos_customer.adapters import events
from pos_customer.adapters.repository import CustomerUow
from pos_customer.adapters.tables import kit, metadata
from pos_customer.domain import model
from pos_customer.entrypoints import consumers, expiry, grpc_api, retier
from pos_customer.entrypoints.stream_erasure import stream_erasure
from pos_kit import migrate as kit_migrate
from pos_kit import service as kit_service
from pos_kit.grpc_server import GrpcService
from pos_kit.runtime import ConsumerSpec, ServiceRuntime
from pos_kit.settings import GrpcServiceSettings

NAME = "customer"
MIGRATIONS = Path(__file__).parent / "migrations"


class Settings(GrpcServiceSettings):
    # How often points due to expire are expired (POINTS_EXPIRY_SECONDS).
    points_expiry_seconds: float = 3600.0
    # How often erased customers' profile messages are looked for in the stream and deleted
    # (STREAM_ERASURE_SECONDS).
    stream_erasure_seconds: float = 5.0
    # How often a tier change's re-tiering left past its first batch is looked for
    # (RETIER_SECONDS).
    retier_seconds: float = 2.0


def build(settings: Settings) -> tuple[ServiceRuntime[CustomerUow], GrpcService]:
    events.REGISTRY.check(model.EVENTS)
    runtime = ServiceRuntime(
        NAME,
        settings,
        kit,
        CustomerUow,
        consumers=[
            ConsumerSpec.typed(
                "customer-loyalty",
                "order",
                {
                    order_events.OrderConfirmed: consumers.on_order_confirmed,
                    order_events.OrderCancelled: consumers.on_order_cancelled,
                    order_events.OrderReturned: consumers.on_order_returned,
                    order_events.OrderFulfillmentUpdated: consumers.on_fulfillment_updated,
                },
                relevant=consumers.names_a_customer,
            )
        ],
    )
    runtime.background.append(expiry.points_expiry(runtime.uow, settings.points_expiry_seconds))
    runtime.background.append(stream_erasure(runtime, settings.stream_erasure_seconds))
    runtime.background.append(retier.retiering(runtime.uow, settings.retier_seconds))
    service = kit_service.grpc_service(
        NAME, settings, grpc_api.registrar(runtime.uow), grpc_api.SERVICE_NAME
    )
    return runtime, service


async def serve() -> None:
    await kit_service.serve(NAME, Settings(), build)  # type: ignore[call-arg]


def migrate() -> None:
    kit_migrate.upgrade_from_env(MIGRATIONS)


__all__ = ["metadata", "migrate", "serve"]
