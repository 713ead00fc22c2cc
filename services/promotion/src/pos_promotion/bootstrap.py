"""Builds the promotion service process. Nothing happens at import time."""

from __future__ import annotations

import functools
from pathlib import Path

from pos_kit import migrate as kit_migrate
from pos_kit import service as kit_service
from pos_kit.grpc_server import GrpcService
from pos_kit.runtime import ServiceRuntime
from pos_kit.settings import GrpcServiceSettings
from pos_promotion.adapters import events
from pos_promotion.adapters.repository import PromotionUow, SqlActivePromotions
from pos_promotion.adapters.tables import kit, metadata
from pos_promotion.domain import model
from pos_promotion.entrypoints import grpc_api

NAME = "promotion"
MIGRATIONS = Path(__file__).parent / "migrations"


class Settings(GrpcServiceSettings):
    pass


def build(settings: Settings) -> tuple[ServiceRuntime[PromotionUow], GrpcService]:
    events.REGISTRY.check(model.EVENTS)
    # No consumers yet: nothing this service owns changes in response to other services.
    runtime = ServiceRuntime(NAME, settings, kit, PromotionUow)
    service = kit_service.grpc_service(
        NAME,
        settings,
        grpc_api.registrar(runtime.uow, functools.partial(SqlActivePromotions, runtime.engine)),
        grpc_api.SERVICE_NAME,
    )
    return runtime, service


async def serve() -> None:
    await kit_service.serve(NAME, Settings(), build)  # type: ignore[call-arg]


def migrate() -> None:
    kit_migrate.upgrade_from_env(MIGRATIONS)


__all__ = ["metadata", "migrate", "serve"]
