"""Builds the dispatcher process. Nothing happens at import time."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable
from datetime import datetime, timedelta
from pathlib import Path
from typing import Annotated, Any

from pydantic import Field, field_validator
from pydantic_settings import NoDecode, SettingsConfigDict
from sqlalchemy import text

from pos_dispatcher.adapters.network import NetworkRules
from pos_dispatcher.adapters.repository import DispatcherUow, bound_uow_class, utc_now
from pos_dispatcher.adapters.secrets import SecretBox
from pos_dispatcher.adapters.tables import kit, metadata
from pos_dispatcher.entrypoints import grpc_api
from pos_dispatcher.entrypoints.consumers import Ingest
from pos_dispatcher.service.delivery import DeliveryWorker
from pos_kit import migrate as kit_migrate
from pos_kit import service as kit_service
from pos_kit.grpc_server import GrpcService
from pos_kit.runtime import ServiceRuntime
from pos_kit.settings import GrpcServiceSettings, refuse_placeholder

NAME = "dispatcher"
MIGRATIONS = Path(__file__).parent / "migrations"
# The feed keeps at least this much; older events are dropped hourly (a cursor below them: 410).
RETENTION = timedelta(days=30)

log = logging.getLogger(__name__)


class Settings(GrpcServiceSettings):
    # A settings error must not print a secret it was given.
    model_config = SettingsConfigDict(
        extra="ignore", case_sensitive=False, hide_input_in_errors=True
    )

    # Seal webhook secrets at rest (AES-GCM), comma-separated, newest first: the first seals,
    # every one opens, so the key can be rotated (adapters/secrets.py).
    dispatcher_secret_keys: Annotated[list[str], NoDecode] = Field(min_length=1)
    # Deliveries to loopback and private addresses (the local sandbox: a developer's laptop).
    # Link-local and cloud metadata addresses stay refused whatever this says.
    webhook_allow_private_networks: bool = False
    # A 2xx within this many seconds is a success; anything else is retried.
    webhook_timeout_seconds: float = Field(5.0, gt=0, le=30)
    webhook_concurrency: int = Field(64, ge=1)
    webhook_per_endpoint: int = Field(8, ge=1)

    @field_validator("dispatcher_secret_keys", mode="before")
    @classmethod
    def _comma_separated(cls, value: Any) -> Any:
        if isinstance(value, str):
            return [part.strip() for part in value.split(",") if part.strip()]
        return value

    def _check_secrets(self) -> None:
        for key in self.dispatcher_secret_keys:
            refuse_placeholder("DISPATCHER_SECRET_KEYS", key)
        if self.webhook_allow_private_networks:
            raise ValueError("WEBHOOK_ALLOW_PRIVATE_NETWORKS is for development only")


class Dispatcher:
    """The process's parts, built from its settings (tests build one with a fake clock)."""

    def __init__(self, settings: Settings, clock: Callable[[], datetime] = utc_now) -> None:
        self.box = SecretBox(settings.dispatcher_secret_keys)
        self.network = NetworkRules(allow_private=settings.webhook_allow_private_networks)
        self.clock = clock
        self._worker: DeliveryWorker | None = None
        uow_class = bound_uow_class(self.box, self.network, clock, self._wake)
        self.runtime: ServiceRuntime[DispatcherUow] = ServiceRuntime(
            NAME, settings, kit, uow_class, background=[self._deliver, self._ingest, self._purge]
        )
        self.worker = DeliveryWorker(
            self.runtime.engine,
            self.runtime.uow,
            self.box,
            self.network,
            clock,
            timeout=settings.webhook_timeout_seconds,
            concurrency=settings.webhook_concurrency,
            per_endpoint=settings.webhook_per_endpoint,
        )
        self._worker = self.worker
        self.ingest = Ingest(self.runtime, self.runtime.engine, self.runtime.uow)

    def _wake(self) -> None:
        if self._worker is not None:
            self._worker.wake()

    async def _deliver(self, stop: asyncio.Event) -> None:
        await self.worker.run(stop)

    async def _ingest(self, stop: asyncio.Event) -> None:
        await self.ingest.run(stop)

    async def _purge(self, stop: asyncio.Event) -> None:
        while not stop.is_set():
            try:
                await self.purge()
            except Exception as exc:
                log.warning("retention purge: %s", exc.__class__.__name__)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), 3600)

    async def purge(self) -> None:
        """Drop events and finished deliveries past retention, noting per merchant up to which
        sequence the feed is gone (so an older cursor is told, not silently skipped)."""
        cutoff = self.clock() - RETENTION
        async with self.runtime.engine.begin() as conn:
            await conn.execute(
                text(
                    "WITH gone AS (DELETE FROM events WHERE recorded_at < :cutoff "
                    "RETURNING merchant_id, sequence), "
                    "top AS (SELECT merchant_id, max(sequence) AS s FROM gone GROUP BY 1) "
                    "UPDATE merchant_sequences m SET purged_through = top.s FROM top "
                    "WHERE m.merchant_id = top.merchant_id AND m.purged_through < top.s"
                ),
                {"cutoff": cutoff},
            )
            await conn.execute(
                text("DELETE FROM deliveries WHERE status <> 'pending' AND created_at < :cutoff"),
                {"cutoff": cutoff},
            )


def build(settings: Settings) -> tuple[ServiceRuntime[DispatcherUow], GrpcService]:
    parts = Dispatcher(settings)
    service = kit_service.grpc_service(
        NAME, settings, grpc_api.registrar(parts.runtime.uow), grpc_api.SERVICE_NAME
    )
    return parts.runtime, service


async def serve() -> None:
    await kit_service.serve(NAME, Settings(), build)  # type: ignore[call-arg]


def migrate() -> None:
    kit_migrate.upgrade_from_env(MIGRATIONS)


__all__ = ["metadata", "migrate", "serve"]
