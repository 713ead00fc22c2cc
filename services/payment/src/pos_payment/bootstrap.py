"""Builds the payment service process. Nothing happens at import time."""

from __future__ import annotations

from pathlib import Path

import grpc

from pos.payment.v1 import payment_pb2_grpc
from pos_kit import migrate as kit_migrate
from pos_kit import service as kit_service
from pos_kit.grpc_server import GrpcService
from pos_kit.runtime import ServiceRuntime
from pos_kit.settings import GrpcServiceSettings
from pos_payment.adapters.repository import PaymentUow
from pos_payment.adapters.sandbox import SandboxProcessor
from pos_payment.adapters.tables import kit
from pos_payment.entrypoints.grpc_api import SERVICE_NAME, PaymentApi

NAME = "payment"
MIGRATIONS = Path(__file__).parent / "migrations"


class Settings(GrpcServiceSettings):
    pass


def build(settings: Settings) -> tuple[ServiceRuntime[PaymentUow], GrpcService]:
    runtime = ServiceRuntime(NAME, settings, kit, PaymentUow)
    api = PaymentApi(runtime.uow, SandboxProcessor())

    def register(server: grpc.aio.Server) -> None:
        payment_pb2_grpc.add_PaymentServiceServicer_to_server(api, server)

    service = kit_service.grpc_service(NAME, settings, register, SERVICE_NAME)
    return runtime, service


async def serve() -> None:
    await kit_service.serve(NAME, Settings(), build)  # type: ignore[call-arg]


def migrate() -> None:
    kit_migrate.upgrade_from_env(MIGRATIONS)
