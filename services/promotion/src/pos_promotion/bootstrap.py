"""Builds the promotion service process. Nothing happens at import time."""

from __future__ import annotations

from pathlib import Path

import grpc

from pos.promotion.v1 import promotion_pb2_grpc
from pos_kit import migrate as kit_migrate
from pos_kit import service as kit_service
from pos_kit.grpc_server import GrpcService
from pos_kit.runtime import ServiceRuntime
from pos_kit.settings import GrpcServiceSettings
from pos_promotion.adapters.repository import PromotionUow
from pos_promotion.adapters.tables import kit
from pos_promotion.entrypoints.grpc_api import SERVICE_NAME, PromotionApi

NAME = "promotion"
MIGRATIONS = Path(__file__).parent / "migrations"


class Settings(GrpcServiceSettings):
    pass


def build(settings: Settings) -> tuple[ServiceRuntime[PromotionUow], GrpcService]:
    runtime = ServiceRuntime(NAME, settings, kit, PromotionUow)
    api = PromotionApi(runtime.uow)

    def register(server: grpc.aio.Server) -> None:
        promotion_pb2_grpc.add_PromotionServiceServicer_to_server(api, server)

    service = kit_service.grpc_service(NAME, settings, register, SERVICE_NAME)
    return runtime, service


async def serve() -> None:
    await kit_service.serve(NAME, Settings(), build)  # type: ignore[call-arg]


def migrate() -> None:
    kit_migrate.upgrade_from_env(MIGRATIONS)
