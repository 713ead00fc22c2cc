"""Builds the payment service process. Nothing happens at import time."""

from __future__ import annotations

from pathlib import Path

from pydantic import Field

from pos_kit import migrate as kit_migrate
from pos_kit import service as kit_service
from pos_kit.grpc_server import GrpcService
from pos_kit.runtime import ServiceRuntime
from pos_kit.settings import GrpcServiceSettings
from pos_payment.adapters.repository import PaymentUow
from pos_payment.adapters.sandbox import SandboxProcessor
from pos_payment.adapters.tables import kit, metadata
from pos_payment.entrypoints import grpc_api

NAME = "payment"
MIGRATIONS = Path(__file__).parent / "migrations"


class Settings(GrpcServiceSettings):
    # Tests only: how long the sandbox processor takes to answer a card (default: no wait).
    sandbox_delay_seconds: float = Field(0.0, ge=0)


def build(settings: Settings) -> tuple[ServiceRuntime[PaymentUow], GrpcService]:
    # No consumers: payment reacts to no one's events, it only announces its own.
    runtime = ServiceRuntime(NAME, settings, kit, PaymentUow)
    # The sandbox is the only processor so far; a real acquirer is another CardProcessor.
    processor = SandboxProcessor(settings.sandbox_delay_seconds)
    service = kit_service.grpc_service(
        NAME, settings, grpc_api.registrar(runtime.uow, processor), grpc_api.SERVICE_NAME
    )
    return runtime, service


async def serve() -> None:
    await kit_service.serve(NAME, Settings(), build)  # type: ignore[call-arg]


def migrate() -> None:
    kit_migrate.upgrade_from_env(MIGRATIONS)


__all__ = ["metadata", "migrate", "serve"]
