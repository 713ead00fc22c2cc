"""Builds the payment service process. Nothing happens at import time."""

from __future__ import annotations

from collections.abc import Callable
from datetime import timedelta
from pathlib import Path

from pydantic import Field
from sqlalchemy.ext.asyncio import AsyncEngine

from pos.customer.v1 import events_pb2 as customer_events
from pos.gateway.v1 import events_pb2 as gateway_events
from pos.order.v1 import events_pb2 as order_events
from pos_kit import migrate as kit_migrate
from pos_kit import service as kit_service
from pos_kit.grpc_server import GrpcService
from pos_kit.runtime import ConsumerSpec, ServiceRuntime
from pos_kit.settings import GrpcServiceSettings, refuse_placeholder
from pos_payment.adapters import events, gift_card_messages, shift_messages
from pos_payment.adapters.gift_cards import (
    CodeHasher,
    GiftCardTender,
    GiftCardUow,
    WithSandboxCodes,
)
from pos_payment.adapters.repository import PaymentUow
from pos_payment.adapters.sandbox import (
    RecordedTender,
    SandboxProcessor,
    SandboxReader,
    gift_card_script,
)
from pos_payment.adapters.shifts import ShiftUow
from pos_payment.adapters.tables import kit, metadata
from pos_payment.domain import gift_cards, model, shifts
from pos_payment.domain.model import TenderType
from pos_payment.entrypoints import (
    customer_merges,
    gift_cards_api,
    grpc_api,
    settlement_api,
    shift_activity,
    shifts_api,
)
from pos_payment.entrypoints.sweeper import Sweeper
from pos_payment.service.handlers import Policy
from pos_payment.service.ports import Processors, TenderProcessor, TerminalReader

GiftCardUowFactory = Callable[[], GiftCardUow]

NAME = "payment"
MIGRATIONS = Path(__file__).parent / "migrations"


DEVELOPMENT_CODE_KEY = "development-only-gift-card-code-key-not-for-production"


class Settings(GrpcServiceSettings):
    # Tests only: how long the sandbox processor takes to answer (default: no wait).
    sandbox_delay_seconds: float = Field(0.0, ge=0)
    # A processor answer slower than this counts as lost: the payment stays pending.
    processor_timeout_seconds: float = Field(10.0, gt=0)
    # Authorisations not captured within this are voided (7 days, as card networks allow).
    authorization_window_seconds: float = Field(7 * 24 * 3600, gt=0)
    # A card reader that has not answered within this is cancelled: the checkout times out.
    terminal_timeout_seconds: float = Field(300.0, gt=0)
    # How long a sandbox reader's "customer" takes to present a card (or decline, or cancel).
    sandbox_reader_delay_seconds: float = Field(2.0, ge=0)
    # How often the reconciler, the expiry sweep and the readers' poll run, and how long a
    # pending call is left to its own request before the reconciler looks it up.
    sweep_interval_seconds: float = Field(2.0, gt=0)
    reconcile_after_seconds: float = Field(60.0, ge=0)
    # Keys the gift card codes' hashes (HMAC-SHA256). Changing it loses every card's code:
    # production must set its own (refused below), and keep it.
    gift_card_code_key: str = DEVELOPMENT_CODE_KEY
    # Codes no card has that start `gc_` answer as sandbox gift cards (see adapters/sandbox.py).
    sandbox_gift_cards: bool = True

    def _check_secrets(self) -> None:
        if self.gift_card_code_key == DEVELOPMENT_CODE_KEY:
            raise ValueError("GIFT_CARD_CODE_KEY must be set in production")
        refuse_placeholder("GIFT_CARD_CODE_KEY", self.gift_card_code_key)


def gift_card_uow(runtime: ServiceRuntime[PaymentUow], settings: Settings) -> GiftCardUowFactory:
    """Units of work of the gift cards: the runtime's engine and relay, their own events."""
    hasher = CodeHasher(settings.gift_card_code_key)

    def new() -> GiftCardUow:
        uow = GiftCardUow(runtime.engine, runtime.tables, on_commit=runtime.wake_relay)
        uow.hasher = hasher
        return uow

    return new


def shift_uow(runtime: ServiceRuntime[PaymentUow]) -> Callable[[], ShiftUow]:
    """Units of work of the shifts: the runtime's engine and relay, their own events."""

    def new() -> ShiftUow:
        return ShiftUow(runtime.engine, runtime.tables, on_commit=runtime.wake_relay)

    return new


def processors_for(
    engine: AsyncEngine, settings: Settings, cards: GiftCardUowFactory | None = None
) -> Processors:
    # The card sandbox is the only card processor so far; a real acquirer is another
    # TenderProcessor. Gift cards are real (the gift card ledger), the sandbox's `gc_` codes
    # kept beside them unless switched off.
    delay = settings.sandbox_delay_seconds
    recorded = RecordedTender()
    sandbox_cards = SandboxProcessor(engine, gift_card_script, delay)
    gift: TenderProcessor = sandbox_cards
    if cards is not None:
        real = GiftCardTender(cards)
        gift = WithSandboxCodes(real, sandbox_cards) if settings.sandbox_gift_cards else real
    return {
        TenderType.CARD: SandboxProcessor(engine, delay_seconds=delay),
        TenderType.GIFT_CARD: gift,
        TenderType.CASH: recorded,
        TenderType.EXTERNAL: recorded,
    }


def policy_for(settings: Settings) -> Policy:
    return Policy(
        processor_timeout=settings.processor_timeout_seconds,
        authorization_window=timedelta(seconds=settings.authorization_window_seconds),
        terminal_timeout=timedelta(seconds=settings.terminal_timeout_seconds),
    )


def reader_for(engine: AsyncEngine, settings: Settings) -> TerminalReader:
    # Sandbox readers only, until registers and their devices arrive (registers issue).
    return SandboxReader(engine, settings.sandbox_reader_delay_seconds)


def sweeper_for(runtime: ServiceRuntime[PaymentUow], settings: Settings) -> Sweeper:
    return Sweeper(
        runtime.engine,
        runtime.uow,
        processors_for(runtime.engine, settings, gift_card_uow(runtime, settings)),
        reader_for(runtime.engine, settings),
        policy_for(settings),
        settings.sweep_interval_seconds,
        timedelta(seconds=settings.reconcile_after_seconds),
    )


def build(settings: Settings) -> tuple[ServiceRuntime[PaymentUow], GrpcService]:
    events.REGISTRY.check(model.EVENTS)
    gift_card_messages.REGISTRY.check(gift_cards.EVENTS)
    shift_messages.REGISTRY.check(shifts.EVENTS)
    runtime = ServiceRuntime(
        NAME,
        settings,
        kit,
        PaymentUow,
        consumers=[
            ConsumerSpec.typed(
                "payment-shift-discounts",
                "order",
                {order_events.OrderConfirmed: shift_activity.on_order_confirmed},
                relevant=shift_activity.discounted_at_a_register,
            ),
            ConsumerSpec.typed(
                "payment-shift-overrides",
                "gateway",
                {gateway_events.OverrideGranted: shift_activity.on_override_granted},
            ),
            ConsumerSpec.typed(
                "payment-customer-merges",
                "customer",
                {customer_events.CustomerMerged: customer_merges.on_customer_merged},
            ),
        ],
    )
    runtime.background.append(sweeper_for(runtime, settings).run)
    cards = gift_card_uow(runtime, settings)
    processors = processors_for(runtime.engine, settings, cards)
    policy = policy_for(settings)
    service = kit_service.grpc_service(
        NAME,
        settings,
        grpc_api.registrar(
            runtime.uow,
            processors,
            reader_for(runtime.engine, settings),
            policy,
            CodeHasher(settings.gift_card_code_key),
        ),
        grpc_api.SERVICE_NAME,
        more=[
            (
                gift_cards_api.registrar(cards, CodeHasher(settings.gift_card_code_key)),
                gift_cards_api.SERVICE_NAME,
            ),
            (settlement_api.registrar(runtime.uow), settlement_api.SERVICE_NAME),
            (shifts_api.registrar(shift_uow(runtime)), shifts_api.SERVICE_NAME),
        ],
    )
    return runtime, service


async def serve() -> None:
    await kit_service.serve(NAME, Settings(), build)  # type: ignore[call-arg]


def migrate() -> None:
    kit_migrate.upgrade_from_env(MIGRATIONS)


__all__ = ["metadata", "migrate", "serve"]
