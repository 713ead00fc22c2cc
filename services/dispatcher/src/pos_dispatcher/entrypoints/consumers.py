"""The dispatcher reads every service's stream: each integration event it knows becomes public
events in the merchant's feed (service/handlers.record).

One ingesting replica at a time: the consumers run only in the replica that holds a
PostgreSQL advisory lock, so events of one resource, which one stream carries in commit order,
are applied one after another in that order and get increasing sequences. The other replicas
deliver webhooks and answer the API, and take over within seconds when the holder goes.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable
from typing import Any

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from pos_dispatcher.adapters.repository import DispatcherUow
from pos_dispatcher.adapters.snapshots import SOURCES
from pos_dispatcher.service import handlers
from pos_kit.consumer import CommitGroup, Consumer, IncomingEvent
from pos_kit.runtime import ConsumerSpec, ServiceRuntime

log = logging.getLogger(__name__)

# Any fixed number, the same in every replica: the lock's name.
INGEST_LOCK = 0x0D15_0A7C
# Retried for hours, a minute apart at most: the dispatcher must outlast an outage of its own
# database rather than dead-letter what partners are waiting for.
MAX_DELIVER = 500
# At most one ingest transaction this often, holding what all five streams brought meanwhile
# (`CommitGroup`). The feed is read by partners polling or receiving webhooks, seconds apart; a
# few tens of milliseconds more before an event is in it under load cost them nothing and save
# the dispatcher most of its commits. Idle, an event goes in at once.
COMMIT_INTERVAL = 0.05


async def on_event(uow: DispatcherUow, message: Any) -> None:
    await handlers.record(uow, [message])


async def on_events(uow: Any, events: list[IncomingEvent]) -> None:
    """A fetched batch of one merchant's events in one transaction (the usual path)."""
    await handlers.record(uow, [e.message for e in events])


def specs() -> list[ConsumerSpec]:
    return [
        ConsumerSpec.typed(f"dispatcher-{service}", service, dict.fromkeys(kinds, on_event))
        for service, kinds in sorted(SOURCES.items())
    ]


class Ingest:
    """Background task: wait for NATS, take the ingest lock, run the consumers."""

    def __init__(
        self,
        runtime: ServiceRuntime[DispatcherUow],
        engine: AsyncEngine,
        uow: Callable[[], DispatcherUow],
        retry_seconds: float = 2.0,
    ) -> None:
        self._runtime = runtime
        self._engine = engine
        self._uow = uow
        self._retry = retry_seconds
        self.consumers: list[Consumer] = []
        self.group: CommitGroup | None = None
        self.leading = asyncio.Event()

    async def run(self, stop: asyncio.Event) -> None:
        while not stop.is_set():
            try:
                await self._lead(stop)
            except Exception as exc:
                log.warning("ingest: %s; trying again", exc.__class__.__name__)
            self.leading.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), self._retry)

    async def _lead(self, stop: asyncio.Event) -> None:
        await self._runtime.ready.wait()
        js = self._runtime.js
        assert js is not None
        async with self._engine.connect() as conn:
            got = (
                await conn.execute(text("SELECT pg_try_advisory_lock(:k)"), {"k": INGEST_LOCK})
            ).scalar()
            await conn.commit()
            if not got:
                return
            log.info("ingest: this replica reads the streams")
            self.group = CommitGroup(self._uow, COMMIT_INTERVAL)
            self.consumers = [
                Consumer(
                    js,
                    self._uow,
                    name=spec.name,
                    source_service=spec.source_service,
                    subjects=spec.subjects,
                    handler=spec.handler,
                    message_types=spec.message_types,
                    max_deliver=MAX_DELIVER,
                    ordered=True,
                    batch_handler=on_events,
                    group=self.group,
                )
                for spec in specs()
            ]
            lost = asyncio.Event()
            tasks = [asyncio.create_task(c.run(stop)) for c in self.consumers]
            tasks.append(asyncio.create_task(self._hold(conn, stop, lost)))
            self.leading.set()
            try:
                await asyncio.wait(
                    [asyncio.create_task(stop.wait()), asyncio.create_task(lost.wait())],
                    return_when=asyncio.FIRST_COMPLETED,
                )
            finally:
                for task in tasks:
                    task.cancel()
                await asyncio.gather(*tasks, return_exceptions=True)

    async def _hold(self, conn: Any, stop: asyncio.Event, lost: asyncio.Event) -> None:
        """The lock lives as long as its connection: check the connection now and then, and
        stop ingesting as soon as it is gone (another replica may hold the lock by then)."""
        while not stop.is_set():
            await asyncio.sleep(self._retry)
            try:
                await conn.execute(text("SELECT 1"))
                await conn.commit()
            except Exception:
                lost.set()
                return
