"""Unit of work: one transaction holding the state change and the events it raised.

Events go into the outbox in the same transaction as the change, so a crash after commit loses
nothing: the relay publishes whatever is committed and unpublished.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from types import TracebackType
from typing import Self

from opentelemetry.propagate import inject
from sqlalchemy import select, update
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine, AsyncTransaction

from pos_kit.errors import FieldViolation, InvalidArgument, RequestIdReused
from pos_kit.events import EventRegistry, OutgoingEvent
from pos_kit.tables import KitTables


class UnitOfWork:
    # The service's domain -> integration event mapping (`publish`); set by each service's UoW.
    events: EventRegistry | None = None

    def __init__(
        self,
        engine: AsyncEngine,
        tables: KitTables,
        on_commit: Callable[[], None] | None = None,
    ) -> None:
        self._engine = engine
        self.tables = tables
        self._on_commit = on_commit
        self._events: list[OutgoingEvent] = []
        self._conn: AsyncConnection | None = None
        self._tx: AsyncTransaction | None = None
        self.merchant_id = ""

    def bind(self, merchant_id: str) -> Self:
        """Scope this unit of work to one merchant; every repository query filters by it."""
        self.merchant_id = merchant_id
        return self

    @property
    def conn(self) -> AsyncConnection:
        if self._conn is None:
            raise RuntimeError("unit of work used outside `async with`")
        return self._conn

    async def __aenter__(self) -> Self:
        self._conn = await self._engine.connect()
        self._tx = await self._conn.begin()
        self._events = []
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        try:
            if self._tx is not None and self._tx.is_active:
                await self._tx.rollback()
        finally:
            if self._conn is not None:
                await self._conn.close()
            self._conn = None
            self._tx = None

    def emit(self, event: OutgoingEvent) -> None:
        self._events.append(event)

    def publish(self, event: object) -> None:
        """Record a domain event; its integration event commits with this transaction."""
        if self.events is None:
            raise RuntimeError(f"{type(self).__name__} has no event registry")
        self.emit(self.events.to_outgoing(event, self.merchant_id))

    async def commit(self) -> None:
        if self._events:
            carrier: dict[str, str] = {}
            inject(carrier)
            traceparent = carrier.get("traceparent")
            await self.conn.execute(
                self.tables.outbox.insert(),
                [
                    {
                        "event_id": e.event_id,
                        "subject": e.subject,
                        "event_type": e.event_type,
                        "merchant_id": e.merchant_id,
                        "payload": e.payload,
                        "traceparent": traceparent,
                    }
                    for e in self._events
                ],
            )
        assert self._tx is not None
        await self._tx.commit()
        had_events = bool(self._events)
        self._events = []
        if had_events and self._on_commit is not None:
            self._on_commit()

    # --- request_id idempotency -------------------------------------------------------------

    async def claim_request(
        self, merchant_id: str, request_id: str, operation: str, request_bytes: bytes
    ) -> bytes | None:
        """Claim a request id inside this transaction.

        Returns None when this is the first time (the caller does the work and then calls
        `store_response`), or the stored response of the earlier identical request. A concurrent
        duplicate blocks on the primary key until the first commits or rolls back, so the effect
        is applied exactly once.
        """
        if not request_id:
            raise InvalidArgument(
                "request_id is required on every mutation",
                [FieldViolation("request_id", "is required")],
            )
        fingerprint = hashlib.sha256(operation.encode() + b"\0" + request_bytes).digest()
        table = self.tables.requests
        claimed = await self.conn.execute(
            pg_insert(table)
            .values(
                merchant_id=merchant_id,
                request_id=request_id,
                operation=operation,
                fingerprint=fingerprint,
            )
            .on_conflict_do_nothing()
            .returning(table.c.request_id)
        )
        if claimed.first() is not None:
            return None
        row = (
            await self.conn.execute(
                select(table.c.fingerprint, table.c.response).where(
                    table.c.merchant_id == merchant_id, table.c.request_id == request_id
                )
            )
        ).one()
        if row.fingerprint != fingerprint or row.response is None:
            raise RequestIdReused()
        return bytes(row.response)

    async def store_response(self, merchant_id: str, request_id: str, response: bytes) -> None:
        table = self.tables.requests
        await self.conn.execute(
            update(table)
            .where(table.c.merchant_id == merchant_id, table.c.request_id == request_id)
            .values(response=response)
        )
