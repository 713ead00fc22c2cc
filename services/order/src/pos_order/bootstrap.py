"""Builds the order service process. Nothing happens at import time."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

from pydantic import Field, model_validator

from pos.customer.v1 import events_pb2 as customer_events
from pos.inventory.v1 import events_pb2 as inventory_events
from pos.payment.v1 import events_pb2 as payment_events
from pos_kit import migrate as kit_migrate
from pos_kit import service as kit_service
from pos_kit.grpc_client import channel
from pos_kit.grpc_server import GrpcService
from pos_kit.runtime import ConsumerSpec, ServiceRuntime
from pos_kit.settings import GrpcServiceSettings, refuse_placeholder
from pos_order.adapters import events
from pos_order.adapters.remote import (
    CustomerDirectory,
    GiftCardIssuer,
    InventoryCatalog,
    PaymentService,
    PromotionCoupons,
    PromotionDiscounts,
    StockService,
)
from pos_order.adapters.repository import OrderUow
from pos_order.adapters.tables import kit, metadata
from pos_order.domain import model
from pos_order.domain.returns import OrderReturned
from pos_order.entrypoints import consumers, grpc_api
from pos_order.entrypoints.resumer import Resumer
from pos_order.service.ports import CheckoutPorts, OrderSettings
from pos_order.service.returns import ReturnPorts
from pos_order.service.saga import BOUNDARIES, Policy

NAME = "order"
MIGRATIONS = Path(__file__).parent / "migrations"
DEVELOPMENT_CODE_KEY = "development-only-code-fingerprint-key-not-for-production"


class Settings(GrpcServiceSettings):
    inventory_addr: str
    promotion_addr: str
    payment_addr: str
    # Asked only about a customer id the customer events have not brought yet.
    customer_addr: str
    customer_timeout_seconds: float = 1.0
    # Promotion is optional on the hot path: past its deadline the sale goes on at list price.
    # The normal deadline is long enough for a loaded promotion service; after a call given it
    # fails, sales wait only the short one for the cool-off, so a hung service does not cost
    # every sale the normal deadline (adapters/remote.py DiscountDeadline).
    promotion_timeout_seconds: float = Field(2.0, gt=0)
    promotion_short_timeout_seconds: float = Field(0.3, gt=0)
    promotion_cool_off_seconds: float = Field(10.0, ge=0)
    # Every call to the payment service is bounded by this; it must stay well under
    # SAGA_ABANDON_SECONDS, so the resumer never takes over a saga whose call is still running.
    payment_timeout_seconds: float = Field(10.0, gt=0)
    # An unfinished saga idle this long is the resumer's (its driver crashed or gave up); the
    # resumer looks every SAGA_SWEEP_SECONDS.
    saga_abandon_seconds: float = Field(30.0, gt=0)
    saga_sweep_seconds: float = Field(5.0, gt=0)
    # The merchant defaults (GET/PATCH /v1/order-settings overrides them per merchant).
    hold_seconds: int = Field(15 * 60, ge=1)
    pickup_expiry_seconds: int = Field(7 * 86400, ge=1)
    capture_pickup_at_order: bool = False
    return_window_days: int = Field(30, ge=0)
    # Tests only: comma-separated saga step boundaries where this process stops as if it had
    # died there (service/saga.py BOUNDARIES).
    saga_pause_at: str = ""
    # Keys the hashes of gift card and coupon codes in stored request fingerprints
    # (HMAC-SHA256, entrypoints/fingerprints.py). Changing it only makes a retry of a request
    # made before the change a mismatch (409); production must set its own (refused below).
    code_fingerprint_key: str = DEVELOPMENT_CODE_KEY

    def _check_secrets(self) -> None:
        if self.code_fingerprint_key == DEVELOPMENT_CODE_KEY:
            raise ValueError("CODE_FINGERPRINT_KEY must be set in production")
        refuse_placeholder("CODE_FINGERPRINT_KEY", self.code_fingerprint_key)

    @model_validator(mode="after")
    def _calls_end_before_the_resumer_takes_over(self) -> Settings:
        if self.payment_timeout_seconds >= self.saga_abandon_seconds:
            raise ValueError("PAYMENT_TIMEOUT_SECONDS must be less than SAGA_ABANDON_SECONDS")
        unknown = set(self.pause_points) - set(BOUNDARIES)
        if unknown:
            raise ValueError(f"SAGA_PAUSE_AT names no boundary: {sorted(unknown)}")
        return self

    @model_validator(mode="after")
    def _short_promotion_deadline_is_the_shorter(self) -> Settings:
        if self.promotion_short_timeout_seconds > self.promotion_timeout_seconds:
            raise ValueError(
                "PROMOTION_SHORT_TIMEOUT_SECONDS must not exceed PROMOTION_TIMEOUT_SECONDS"
            )
        return self

    @property
    def pause_points(self) -> list[str]:
        return [p.strip() for p in self.saga_pause_at.split(",") if p.strip()]

    def policy(self) -> Policy:
        return Policy(
            defaults=OrderSettings(
                capture_pickup_at_order=self.capture_pickup_at_order,
                pickup_expiry_seconds=self.pickup_expiry_seconds,
                hold_seconds=self.hold_seconds,
                return_window_days=self.return_window_days,
            ),
            abandon_after=timedelta(seconds=self.saga_abandon_seconds),
            pause_at=frozenset(self.pause_points),
        )


def build(settings: Settings) -> tuple[ServiceRuntime[OrderUow], GrpcService]:
    events.REGISTRY.check((*model.EVENTS, OrderReturned))
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
            ),
            # Its own durable consumer (not one more subject of order-customers): a durable's
            # subjects are fixed when it is first made.
            ConsumerSpec.typed(
                "order-erasures",
                "customer",
                {customer_events.CustomerErased: consumers.on_customer_erased},
            ),
            # Its own durable too, for the same reason: which duplicate went to which survivor.
            ConsumerSpec.typed(
                "order-merges",
                "customer",
                {customer_events.CustomerMerged: consumers.on_customer_merged},
            ),
            ConsumerSpec.typed(
                "order-prices",
                "inventory",
                {
                    inventory_events.ProductCreated: consumers.on_product_changed,
                    inventory_events.ProductUpdated: consumers.on_product_changed,
                    inventory_events.ProductArchived: consumers.on_product_archived,
                },
            ),
            ConsumerSpec.typed(
                "order-payments",
                "payment",
                {
                    payment_events.RefundSucceeded: consumers.on_refund_succeeded,
                    payment_events.PaymentVoided: consumers.on_payment_voided,
                },
            ),
        ],
    )
    tls = settings.grpc_tls
    promotion = channel(settings.promotion_addr, tls=tls)
    customers = CustomerDirectory(
        channel(settings.customer_addr, tls=tls), settings.customer_timeout_seconds
    )
    ports = CheckoutPorts(
        catalog=InventoryCatalog(channel(settings.inventory_addr, tls=tls)),
        discounts=PromotionDiscounts(
            promotion,
            settings.promotion_timeout_seconds,
            settings.promotion_short_timeout_seconds,
            settings.promotion_cool_off_seconds,
        ),
        payments=PaymentService(
            channel(settings.payment_addr, tls=tls), settings.payment_timeout_seconds
        ),
        customers=customers,
        stock=StockService(channel(settings.inventory_addr, tls=tls)),
        coupons=PromotionCoupons(promotion),
        loyalty=customers,
        gift_cards=GiftCardIssuer(
            channel(settings.payment_addr, tls=tls), settings.payment_timeout_seconds
        ),
    )
    policy = settings.policy()
    return_ports = ReturnPorts(ports.payments, ports.stock, ports.gift_cards)  # type: ignore[arg-type]
    resumer = Resumer(
        runtime.engine, runtime.uow, ports, policy, settings.saga_sweep_seconds, return_ports
    )
    runtime.background.append(resumer.run)
    service = kit_service.grpc_service(
        NAME,
        settings,
        grpc_api.registrar(
            runtime.uow, ports, policy, return_ports, code_key=settings.code_fingerprint_key
        ),
        grpc_api.SERVICE_NAME,
    )
    return runtime, service


async def serve() -> None:
    await kit_service.serve(NAME, Settings(), build)  # type: ignore[call-arg]


def migrate() -> None:
    kit_migrate.upgrade_from_env(MIGRATIONS)


__all__ = ["metadata", "migrate", "serve"]
