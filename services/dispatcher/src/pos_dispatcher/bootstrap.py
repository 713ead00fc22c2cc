"""Builds the dispatcher process. Nothing happens at import time."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable
from datetime import datetime, timedelta
from pathlib import Path
from typing import Annotated, Any, Literal

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
from pos_kit.grpc_server import BackgroundTask, GrpcService
from pos_kit.runtime import ServiceRuntime
from pos_kit.settings import GrpcServiceSettings, refuse_placeholder

NAME = "dispatcher"
MIGRATIONS = Path(__file__).parent / "migrations"
# The feed keeps at least this much; older events are dropped hourly (a cursor below them: 410).
RETENTION = timedelta(days=30)
# Core NATS (no stream keeps it): "deliveries were enqueued", from whichever process committed
# them to every process that delivers, so a new delivery goes out at once, not at the next poll.
WAKE_SUBJECT = "dispatcher.deliveries_enqueued"

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
    # How often an idle delivery worker looks for due deliveries (retries come due with no
    # wake-up; new deliveries wake it at once, `WAKE_SUBJECT`).
    webhook_poll_seconds: float = Field(1.0, gt=0, le=60)
    # What this process does: `all`; `ingest` (the streams into the feed, and the API); or
    # `deliver` (webhooks, and the API). Ingest and delivery each keep a core busy at a high
    # rate: run them as separate processes (the devstack does), each scaled on its own.
    dispatcher_role: Literal["all", "ingest", "deliver"] = "all"

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
        self.role = settings.dispatcher_role
        self._enqueued = asyncio.Event()
        uow_class = bound_uow_class(self.box, self.network, clock, self._wake)
        background: list[BackgroundTask] = [self._announce]
        if self.role in ("all", "deliver"):
            background.append(self._deliver)
        if self.role in ("all", "ingest"):
            background += [self._ingest, self._purge]
        self.runtime: ServiceRuntime[DispatcherUow] = ServiceRuntime(
            NAME, settings, kit, uow_class, background=background
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
            poll_interval=settings.webhook_poll_seconds,
        )
        self.ingest = Ingest(self.runtime, self.runtime.engine, self.runtime.uow)

    def _wake(self) -> None:
        """After a commit that enqueued deliveries: this process's worker starts at once, and
        the others hear of it (`_announce`)."""
        if self.role != "ingest":
            self.worker.wake()
        self._enqueued.set()

    async def _announce(self, stop: asyncio.Event) -> None:
        """Tell every delivering process (`WAKE_SUBJECT`), once for all the commits since the
        last time; a lost message costs only a poll interval."""
        if not await self._connected(stop):
            return
        nc = self.runtime.nats
        assert nc is not None
        while not stop.is_set():
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._enqueued.wait(), 1.0)
            if self._enqueued.is_set():
                self._enqueued.clear()
                with contextlib.suppress(Exception):
                    await nc.publish(WAKE_SUBJECT, b"")

    async def _connected(self, stop: asyncio.Event) -> bool:
        ready = asyncio.create_task(self.runtime.ready.wait())
        stopped = asyncio.create_task(stop.wait())
        await asyncio.wait([ready, stopped], return_when=asyncio.FIRST_COMPLETED)
        ready.cancel()
        stopped.cancel()
        return self.runtime.ready.is_set() and self.runtime.nats is not None

    async def _deliver(self, stop: asyncio.Event) -> None:
        listening = asyncio.create_task(self._listen(stop))
        try:
            await self.worker.run(stop)
        finally:
            listening.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await listening

    async def _listen(self, stop: asyncio.Event) -> None:
        if not await self._connected(stop):
            return
        nc = self.runtime.nats
        assert nc is not None

        async def heard(_: Any) -> None:
            self.worker.wake()

        # The client subscribes again by itself after a reconnection.
        subscription = await nc.subscribe(WAKE_SUBJECT, cb=heard)
        try:
            await stop.wait()
        finally:
            with contextlib.suppress(Exception):
                await subscription.unsubscribe()

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
