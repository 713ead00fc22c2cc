"""The outbox relay: publishes committed events to JetStream, marking them sent only once acked.

It claims a batch of unpublished rows with FOR UPDATE SKIP LOCKED (so several replicas share the
work without publishing a row twice at the same time), publishes them pipelined, and marks them
published in the same transaction once every acknowledgement is in. JetStream deduplicates on
Nats-Msg-Id = event id, so a row re-published after a crash between ack and commit is dropped by
the stream. While NATS is down it keeps the rows and retries with backoff.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from typing import Any

from nats.js import JetStreamContext
from psycopg import AsyncConnection as DriverConnection
from sqlalchemy import ARRAY, BigInteger, Table, any_, bindparam, func, select, update
from sqlalchemy.ext.asyncio import AsyncEngine
from sqlalchemy.sql.expression import ClauseElement

from pos_kit.events import (
    EVENT_ID_HEADER,
    EVENT_TYPE_HEADER,
    MERCHANT_HEADER,
    TRACEPARENT_HEADER,
)
from pos_kit.tables import KitTables
from pos_kit.uow import begin_statement, compiled_sql, restore

log = logging.getLogger(__name__)


class OutboxRelay:
    def __init__(
        self,
        engine: AsyncEngine,
        tables: KitTables | Table,
        js: JetStreamContext,
        batch_size: int = 500,
        idle_poll_seconds: float = 1.0,
        publish_timeout: float = 5.0,
        interval: float = 0.05,
    ) -> None:
        self._engine = engine
        self._outbox = tables if isinstance(tables, Table) else tables.outbox
        self._js = js
        self._batch_size = batch_size
        self._idle_poll = idle_poll_seconds
        self._publish_timeout = publish_timeout
        # Under load (a batch of several rows), at least this long before the next batch, so
        # that it holds what many requests committed meanwhile (one claim and one commit for
        # them all, not one a request); quiet, an event goes out as soon as it is committed.
        self._interval = interval
        self._wake = asyncio.Event()
        self.published = 0

    def wake(self) -> None:
        """Called after a commit that wrote events, so they go out without waiting for a poll."""
        self._wake.set()

    async def run(self, stop: asyncio.Event) -> None:
        backoff = 0.1
        while not stop.is_set():
            # Cleared before the claim: a commit while this batch is out wakes the next one.
            self._wake.clear()
            try:
                sent = await self.publish_batch()
                backoff = 0.1
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # NATS or the database is away: keep the rows, retry later
                log.warning("outbox relay could not publish: %s", exc.__class__.__name__)
                await _wait(stop, backoff)
                backoff = min(backoff * 2, 5.0)
                continue
            if sent >= self._batch_size:
                continue
            if sent > 1:
                # Several rows at once: requests are committing events faster than one batch
                # each; let the next batch gather them. A lone event (a quiet moment) waits
                # for nothing: the next one goes out as soon as it is committed.
                await _wait(stop, self._interval)
            if self._wake.is_set():
                continue
            waiter = asyncio.ensure_future(self._wake.wait())
            stopper = asyncio.ensure_future(stop.wait())
            await asyncio.wait(
                {waiter, stopper}, timeout=self._idle_poll, return_when="FIRST_COMPLETED"
            )
            waiter.cancel()
            stopper.cancel()

    async def publish_batch(self) -> int:
        """Publish one batch; returns how many rows were published.

        Two round trips to PostgreSQL a batch: the claim travels with its BEGIN, the marking
        with its COMMIT (a psycopg pipeline each); the statements run on the driver's
        connection, compiled once."""
        async with self._engine.connect() as conn:
            raw = await conn.get_raw_connection()
            driver = raw.driver_connection
            assert isinstance(driver, DriverConnection)
            await driver.set_autocommit(True)  # BEGIN travels with the claim (pos_kit.uow)
            try:
                rows = await self._publish_claimed(driver)
            finally:
                try:
                    await driver.rollback()  # only after a failure is a transaction still open
                    await restore(driver)
                except Exception:
                    await conn.invalidate()
        self.published += rows
        return rows

    async def _publish_claimed(self, driver: DriverConnection[Any]) -> int:
        async with driver.pipeline():
            await driver.execute(begin_statement(read_only=False))
            cursor = await driver.execute(
                compiled_sql(self._outbox, "relay-claim", _claim_unpublished),
                {"limit": self._batch_size},
            )
        rows = await cursor.fetchall()
        if not rows:
            await driver.execute("COMMIT")  # nothing claimed; a ROLLBACK would cost psycopg
            return 0  # its prepared statements
        futures = []
        for _, event_id, subject, event_type, merchant_id, payload, traceparent in rows:
            headers = {
                "Nats-Msg-Id": event_id,
                EVENT_ID_HEADER: event_id,
                EVENT_TYPE_HEADER: event_type,
                MERCHANT_HEADER: merchant_id,
            }
            if traceparent:
                headers[TRACEPARENT_HEADER] = traceparent
            futures.append(
                self._js.publish(
                    subject, bytes(payload), timeout=self._publish_timeout, headers=headers
                )
            )
        # Pipelined: every publish is on the wire before the first ack is awaited. A failed
        # publish leaves the transaction open: the caller rolls it back.
        await asyncio.gather(*futures)
        async with driver.pipeline():
            await driver.execute(
                compiled_sql(self._outbox, "relay-mark", _mark_published),
                {"seqs": [row[0] for row in rows]},
            )
            await driver.execute("COMMIT")  # with the UPDATE: one round trip for both
        return len(rows)


def _claim_unpublished(outbox: Table) -> ClauseElement:
    return (
        select(
            outbox.c.seq,
            outbox.c.event_id,
            outbox.c.subject,
            outbox.c.event_type,
            outbox.c.merchant_id,
            outbox.c.payload,
            outbox.c.traceparent,
        )
        .where(outbox.c.published_at.is_(None))
        .order_by(outbox.c.seq)
        .limit(bindparam("limit"))
        .with_for_update(skip_locked=True)
    )


def _mark_published(outbox: Table) -> ClauseElement:
    seqs = bindparam("seqs", type_=ARRAY(BigInteger))
    return update(outbox).where(outbox.c.seq == any_(seqs)).values(published_at=func.now())


async def _wait(stop: asyncio.Event, seconds: float) -> None:
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(stop.wait(), timeout=seconds)
