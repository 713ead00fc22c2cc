"""What every service process shares: engine, unit of work, NATS, relay and consumers."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable
from typing import Any, Generic, TypeVar

from google.protobuf.message import Message
from nats.aio.client import Client as NATS
from nats.js import JetStreamContext

from pos_kit.consumer import (
    CommitGroup,
    Consumer,
    Handler,
    IncomingEvent,
    Relevance,
    TypedHandler,
    handlers_by_type,
)
from pos_kit.db import make_engine
from pos_kit.grpc_server import BackgroundTask
from pos_kit.relay import OutboxRelay
from pos_kit.settings import BaseServiceSettings
from pos_kit.streams import connect, ensure_service_streams
from pos_kit.tables import KitTables
from pos_kit.telemetry import instrument_engine
from pos_kit.tls import client_context
from pos_kit.uow import UnitOfWork

log = logging.getLogger(__name__)

U = TypeVar("U", bound=UnitOfWork)
# A service's consumers commit at most this often under load (`CommitGroup`); idle, at once.
CONSUMER_COMMIT_INTERVAL = 0.05
# How long a stopping process's relay and consumers get to end their turn before they are
# cancelled (`ServiceRuntime.messaging`).
STOP_MOMENT = 1.0


class ConsumerSpec:
    def __init__(
        self,
        name: str,
        source_service: str,
        subjects: list[str],
        handler: Handler,
        relevant: Relevance | None = None,
        message_types: dict[str, type[Message]] | None = None,
    ) -> None:
        self.name = name
        self.source_service = source_service
        self.subjects = subjects
        self.handler = handler
        self.relevant = relevant
        self.message_types = message_types

    @classmethod
    def typed(
        cls,
        name: str,
        source_service: str,
        handlers: dict[type[Message], TypedHandler],
        relevant: Callable[[Any], bool] | None = None,
    ) -> ConsumerSpec:
        """The way services declare a consumer: `{EventType: handler(uow, message)}`, and
        optionally which decoded messages need the consumer at all."""
        subjects, types, dispatch = handlers_by_type(handlers)
        relevance: Relevance | None = None
        if relevant is not None:
            check = relevant

            def relevance(event: IncomingEvent) -> bool:
                return check(event.message)

        return cls(name, source_service, subjects, dispatch, relevance, types)


class ServiceRuntime(Generic[U]):
    def __init__(
        self,
        service: str,
        settings: BaseServiceSettings,
        tables: KitTables,
        uow_class: type[U],
        consumers: list[ConsumerSpec] | None = None,
        pool_size: int | None = None,
        background: list[BackgroundTask] | None = None,
    ) -> None:
        self.service = service
        self.settings = settings
        self.tables = tables
        self._uow_class = uow_class
        self.engine = make_engine(
            settings.database_url,
            pool_size=pool_size or settings.database_pool_size,
            max_overflow=settings.database_pool_overflow,
            pool_timeout=settings.database_pool_timeout_seconds,
        )
        instrument_engine(self.engine.sync_engine)
        self.consumer_specs = consumers or []
        # Service-specific loops (e.g. an expiry sweep), run beside messaging until stop.
        self.background = background or []
        self.relay: OutboxRelay | None = None
        self.consumers: list[Consumer] = []
        self.nats: NATS | None = None
        self.js: JetStreamContext | None = None
        self.ready = asyncio.Event()

    def uow(self) -> U:
        return self._uow_class(self.engine, self.tables, on_commit=self.wake_relay)

    def tasks(self) -> list[BackgroundTask]:
        """Everything the process runs in the background: messaging, then the service's own."""
        return [self.messaging, *self.background]

    def wake_relay(self) -> None:
        if self.relay is not None:
            self.relay.wake()

    async def messaging(self, stop: asyncio.Event) -> None:
        """Background task: connect to NATS (waiting for it if need be), then relay and consume."""
        try:
            tls = client_context(self.settings.nats_tls_ca) if self.settings.nats_tls else None
            self.nats = await connect(
                self.settings.nats_servers, f"pos-{self.service}", stop, tls=tls
            )
        except Exception:
            return
        self.js = self.nats.jetstream()
        while not stop.is_set():
            try:
                await ensure_service_streams(
                    self.js, self.service, replicas=self.settings.stream_replicas
                )
                break
            except Exception as exc:
                log.warning("could not set up streams (%s); retrying", exc.__class__.__name__)
                await asyncio.sleep(0.5)
        self.relay = OutboxRelay(self.engine, self.tables, self.js)
        # The service's consumers commit together, at most one transaction every interval
        # under load (`CommitGroup`): events are not on any request's path, and a sale's
        # events then cost a share of a commit instead of one each.
        group = CommitGroup(self.uow, CONSUMER_COMMIT_INTERVAL)
        self.consumers = [
            Consumer(
                self.js,
                self.uow,
                name=spec.name,
                source_service=spec.source_service,
                subjects=spec.subjects,
                handler=spec.handler,
                relevant=spec.relevant,
                message_types=spec.message_types,
                group=group,
            )
            for spec in self.consumer_specs
        ]
        tasks = [asyncio.create_task(self.relay.run(stop))]
        tasks += [asyncio.create_task(c.run(stop)) for c in self.consumers]
        self.ready.set()
        running: asyncio.Future[list[None]] = asyncio.gather(*tasks)
        stopping: asyncio.Future[object] = asyncio.ensure_future(stop.wait())
        try:
            watched: set[asyncio.Future[Any]] = {running, stopping}
            await asyncio.wait(watched, return_when=asyncio.FIRST_COMPLETED)
            if not running.done():
                # Stopping: each loop ends at its next turn. One waiting on a server that went
                # away (a JetStream request times out after 5 s) is cancelled after a moment:
                # nothing is lost (a message is acked after its commit, an outbox row marked
                # after its publish, so either is simply sent again, deduplicated).
                await asyncio.wait({running}, timeout=STOP_MOMENT)
            if running.done():
                running.result()
        finally:
            stopping.cancel()
            for task in tasks:
                task.cancel()
            # Close, not drain: every message is acked explicitly after its commit, so anything
            # in flight is simply redelivered, and a drain can wait on pull subscriptions.
            # If the server went first there is nothing left to close cleanly.
            with contextlib.suppress(ConnectionError):
                await self.nats.close()

    async def close(self) -> None:
        await self.engine.dispose()
