"""Builds the promotion service process. Nothing happens at import time."""

from __future__ import annotations

from pathlib import Path

from pydantic import Field

from pos.customer.v1 import events_pb2 as customer_events
from pos_kit import migrate as kit_migrate
from pos_kit import service as kit_service
from pos_kit.grpc_server import GrpcService
from pos_kit.runtime import ConsumerSpec, ServiceRuntime
from pos_kit.settings import GrpcServiceSettings, refuse_placeholder
from pos_promotion.adapters import events
from pos_promotion.adapters.cache import ActiveOffers, invalidator
from pos_promotion.adapters.codes import CodeHasher
from pos_promotion.adapters.repository import PromotionUow, SqlActivePromotions
from pos_promotion.adapters.tables import kit, metadata
from pos_promotion.domain import model
from pos_promotion.entrypoints import consumers, grpc_api

NAME = "promotion"
MIGRATIONS = Path(__file__).parent / "migrations"
DEVELOPMENT_CODE_KEY = "development-only-coupon-code-key-not-for-production"


class Settings(GrpcServiceSettings):
    # Keys the coupon codes' hashes (HMAC-SHA256). Changing it loses every coupon's code.
    coupon_code_key: str = DEVELOPMENT_CODE_KEY

    def _check_secrets(self) -> None:
        if self.coupon_code_key == DEVELOPMENT_CODE_KEY:
            raise ValueError("COUPON_CODE_KEY must be set in production")
        refuse_placeholder("COUPON_CODE_KEY", self.coupon_code_key)

    # The longest a replica keeps a merchant's active offers without hearing of a change.
    offer_cache_seconds: float = Field(60.0, gt=0)


class PromotionRuntime(ServiceRuntime[PromotionUow]):
    offers: ActiveOffers  # the cache of active offers, reachable by tests and the benchmark


def build(settings: Settings) -> tuple[PromotionRuntime, GrpcService]:
    events.REGISTRY.check(model.EVENTS)
    runtime = PromotionRuntime(
        NAME,
        settings,
        kit,
        PromotionUow,
        consumers=[
            # A duplicate merged into a customer is the same person: their uses of a coupon
            # limited per customer count together.
            ConsumerSpec.typed(
                "promotion-customer-merges",
                "customer",
                {customer_events.CustomerMerged: consumers.on_customer_merged},
            ),
        ],
    )
    reader = SqlActivePromotions(runtime.engine)
    cache = ActiveOffers(reader.active, settings.offer_cache_seconds)
    runtime.offers = cache
    runtime.background.append(invalidator(runtime, cache))
    service = kit_service.grpc_service(
        NAME,
        settings,
        grpc_api.registrar(runtime.uow, cache, reader, CodeHasher(settings.coupon_code_key)),
        grpc_api.SERVICE_NAME,
    )
    return runtime, service


async def serve() -> None:
    await kit_service.serve(NAME, Settings(), build)  # type: ignore[call-arg]


def migrate() -> None:
    kit_migrate.upgrade_from_env(MIGRATIONS)


__all__ = ["metadata", "migrate", "serve"]
