"""Builds the promotion service process. Nothing happens at import time."""

from __future__ import annotations

from pathlib import Path

from pydantic import Field

from pos_kit import migrate as kit_migrate
from pos_kit import service as kit_service
from pos_kit.grpc_server import GrpcService
from pos_kit.runtime import ServiceRuntime
from pos_kit.settings import GrpcServiceSettings
from pos_promotion.adapters import events
from pos_promotion.adapters.cache import ActiveOffers, invalidator
from pos_promotion.adapters.codes import CodeHasher
from pos_promotion.adapters.repository import PromotionUow, SqlActivePromotions
from pos_promotion.adapters.tables import kit, metadata
from pos_promotion.domain import model
from pos_promotion.entrypoints import grpc_api

NAME = "promotion"
MIGRATIONS = Path(__file__).parent / "migrations"
DEVELOPMENT_CODE_KEY = "development-only-coupon-code-key-not-for-production"


class Settings(GrpcServiceSettings):
    # Keys the coupon codes' hashes (HMAC-SHA256). Changing it loses every coupon's code.
    coupon_code_key: str = DEVELOPMENT_CODE_KEY
    # The longest a replica keeps a merchant's active offers without hearing of a change.
    offer_cache_seconds: float = Field(60.0, gt=0)


class PromotionRuntime(ServiceRuntime[PromotionUow]):
    offers: ActiveOffers  # the cache of active offers, reachable by tests and the benchmark


def build(settings: Settings) -> tuple[PromotionRuntime, GrpcService]:
    events.REGISTRY.check(model.EVENTS)
    runtime = PromotionRuntime(NAME, settings, kit, PromotionUow)
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
