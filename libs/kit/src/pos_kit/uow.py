"""Unit of work: one transaction holding the state change and the events it raised.

Events go into the outbox in the same transaction as the change, so a crash after commit loses
nothing: the relay publishes whatever is committed and unpublished.

Round trips are what a unit of work costs most (docs/performance.md): each statement is a
wait on PostgreSQL and a turn of the client's protocol code. So the kit's own statements that
need no answer (the stored answer of a request, the outbox rows) go out with the COMMIT, in one
psycopg pipeline: one round trip where there were three. The kit's statements run on the driver's
connection, compiled once, without SQLAlchemy's per-statement work; the services' are untouched.
"""

from __future__ import annotations

import contextlib
import hashlib
from collections.abc import Callable, Iterator, Mapping, Sequence
from types import TracebackType
from typing import Any, Self

import psycopg
from opentelemetry.propagate import inject
from psycopg import AsyncConnection as DriverConnection
from psycopg.pq import TransactionStatus
from sqlalchemy import Table, bindparam, select, update
from sqlalchemy.dialects import postgresql
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.exc import DBAPIError
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine, AsyncTransaction
from sqlalchemy.sql.expression import ClauseElement

from pos_kit.direct import DirectConnection
from pos_kit.errors import AnswerWithdrawn, FieldViolation, InvalidArgument, RequestIdReused
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
        self._driver: DriverConnection[Any] | None = None
        # The kit's statements that need no answer: sent with the COMMIT.
        self._with_commit: list[tuple[str, Mapping[str, Any]]] = []
        self._read_only = False
        # This transaction's BEGIN was sent by the kit, not by psycopg (see `first_row`).
        self._explicit_begin = False
        self.merchant_id = ""

    def bind(self, merchant_id: str) -> Self:
        """Scope this unit of work to one merchant; every repository query filters by it."""
        self.merchant_id = merchant_id
        return self

    def reading(self) -> Self:
        """Only reads: the transaction begins READ ONLY (PostgreSQL refuses a write in it) and,
        when nothing failed, ends with COMMIT rather than ROLLBACK. psycopg answers every
        ROLLBACK by dropping all of the connection's prepared statements (DEALLOCATE ALL), so
        the next units of work on it would parse and plan each statement again."""
        self._read_only = True
        return self

    @property
    def conn(self) -> AsyncConnection:
        if self._conn is None:
            raise RuntimeError("unit of work used outside `async with`")
        return self._conn

    async def __aenter__(self) -> Self:
        self._conn = await self._engine.connect()
        if isinstance(self._conn, DirectConnection):
            self._conn.opener = self._open_with
        self._tx = await self._conn.begin()
        self._events = []
        self._with_commit = []
        self._driver = None
        self._explicit_begin = False
        if self._read_only:
            # No round trip: it changes the BEGIN psycopg sends with the first statement.
            await (await self.driver()).set_read_only(True)
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        try:
            if self._tx is not None and self._tx.is_active:
                if self._read_only and exc_type is None:
                    await self._tx.commit()
                else:
                    await self._tx.rollback()
        finally:
            if self._conn is not None:
                if isinstance(self._conn, DirectConnection):
                    self._conn.opener = None
                try:
                    if self._read_only or self._explicit_begin:
                        await self._as_it_came(self._conn)
                finally:
                    await self._conn.close()
            self._conn = None
            self._tx = None
            self._driver = None

    async def _as_it_came(self, conn: AsyncConnection) -> None:
        """The pooled connection goes back as it came; one that cannot be reset is discarded
        rather than handed, read-only or without its own BEGIN, to the next unit of work."""
        try:
            await restore(await self.driver())
        except Exception:
            await conn.invalidate()  # the error that ended the unit of work is the one to see
        except BaseException:
            await conn.invalidate()  # cancelled half-way: not a connection to hand out again
            raise

    def emit(self, event: OutgoingEvent) -> None:
        self._events.append(event)

    def publish(self, event: object) -> None:
        """Record a domain event; its integration event commits with this transaction."""
        if self.events is None:
            raise RuntimeError(f"{type(self).__name__} has no event registry")
        self.emit(self.events.to_outgoing(event, self.merchant_id))

    async def commit(self) -> None:
        """Write the outbox rows (and the kit's pending statements) and commit, in one round
        trip: an error in any of them fails the commit and the transaction rolls back."""
        statements = self._with_commit
        if self._events:
            carrier: dict[str, str] = {}
            inject(carrier)
            traceparent = carrier.get("traceparent")
            sql = compiled_sql(self.tables.outbox, "outbox", _insert_outbox)
            statements += [
                (
                    sql,
                    {
                        "event_id": e.event_id,
                        "subject": e.subject,
                        "event_type": e.event_type,
                        "merchant_id": e.merchant_id,
                        "payload": e.payload,
                        "traceparent": traceparent,
                    },
                )
                for e in self._events
            ]
        assert self._tx is not None
        if statements:
            driver = await self.driver()
            with _as_sqlalchemy_error(statements[0][0]):
                # COMMIT as one more statement of the pipeline, not `driver.commit()`, which
                # would wait for everything before it and then again for the pipeline's end.
                async with driver.pipeline():
                    for sql, params in statements:
                        await driver.execute(sql, params)
                    await driver.execute("COMMIT")
        # The transaction has ended (or, with nothing pending, ends here): SQLAlchemy's own
        # bookkeeping, and the COMMIT when there was nothing to send with it.
        await self._tx.commit()
        self._with_commit = []
        had_events = bool(self._events)
        self._events = []
        if had_events and self._on_commit is not None:
            self._on_commit()

    # --- the kit's statements, pipelined -----------------------------------------------------

    async def driver(self) -> DriverConnection[Any]:
        """The psycopg connection under this unit of work's, in the same transaction."""
        if self._driver is None:
            raw = await self.conn.get_raw_connection()
            driver = raw.driver_connection
            assert isinstance(driver, DriverConnection)
            self._driver = driver
        return self._driver

    async def first_row(self, sql: str, params: Mapping[str, Any]) -> Sequence[Any] | None:
        """Run one of the kit's statements on the driver's connection (none of SQLAlchemy's
        per-statement work) and return its first row. As the transaction's first statement
        (a claim, an inbox entry) it travels with the BEGIN: one round trip, not two."""
        rows = await self._kit_statement(sql, params, every=False)
        return rows[0] if rows else None

    async def all_rows(self, sql: str, params: Mapping[str, Any]) -> list[Sequence[Any]]:
        """As `first_row`, every row (a batch's inbox entries)."""
        return await self._kit_statement(sql, params, every=True)

    async def _kit_statement(
        self, sql: str, params: Mapping[str, Any], *, every: bool
    ) -> list[Sequence[Any]]:
        driver = await self.driver()
        with _as_sqlalchemy_error(sql):
            if driver.info.transaction_status == TransactionStatus.IDLE:
                cursor = await self._open_with(driver, sql, params)
            else:
                cursor = await driver.execute(sql, params)
            if every:
                return list(await cursor.fetchall())
            first = await cursor.fetchone()
            return [] if first is None else [first]

    async def _open_with(
        self, driver: DriverConnection[Any], sql: str, params: Mapping[str, Any]
    ) -> psycopg.AsyncCursor[Any]:
        """The transaction's first statement, sent with its BEGIN in one round trip (psycopg
        would send its own BEGIN and wait for the answer first); the connection goes back to
        psycopg's own BEGIN when the unit of work ends (`_as_it_came`)."""
        self._explicit_begin = True
        await driver.set_autocommit(True)  # idle: no round trip; see `restore`
        async with driver.pipeline():
            await driver.execute(begin_statement(self._read_only))
            return await driver.execute(sql, params)

    def execute_with_commit(self, sql: str, params: Mapping[str, Any]) -> None:
        """Run a statement whose outcome nobody reads before the commit, with the COMMIT."""
        self._with_commit.append((sql, params))

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
        fingerprint = request_fingerprint(operation, request_bytes)
        table = self.tables.requests
        claimed = await self.first_row(
            compiled_sql(table, "claim", claim_statement),
            {
                "merchant_id": merchant_id,
                "request_id": request_id,
                "operation": operation,
                "fingerprint": fingerprint,
            },
        )
        if claimed is not None:
            return None
        row = (
            await self.conn.execute(
                select(table.c.fingerprint, table.c.response).where(
                    table.c.merchant_id == merchant_id, table.c.request_id == request_id
                )
            )
        ).one()
        # A withdrawn answer (erased personal data) answers any request under its id: its
        # fingerprint is gone with it.
        AnswerWithdrawn.raise_if_stored(row.response)
        if row.fingerprint != fingerprint or row.response is None:
            raise RequestIdReused()
        return bytes(row.response)

    async def store_response(self, merchant_id: str, request_id: str, response: bytes) -> None:
        """Keep the answer beside the effect: written with the COMMIT, so it is there exactly
        when the effect is."""
        self.execute_with_commit(
            compiled_sql(self.tables.requests, "store", _store_response),
            {"merchant_id": merchant_id, "request_id": request_id, "response": response},
        )


def request_fingerprint(operation: str, request_bytes: bytes) -> bytes:
    """What tells a retry from another request under the same request id: the operation and
    the request's deterministic bytes (a bearer code in them replaced by its keyed hash by the
    caller first). A service that keeps a request's start beyond a failed attempt (whose claim
    is dropped) keeps this with it, so the same id with another body is still told apart."""
    return hashlib.sha256(operation.encode() + b"\0" + request_bytes).digest()


# --- BEGIN with the first statement ----------------------------------------------------------
#
# psycopg sends a transaction's BEGIN itself, before the first statement, and waits for its
# answer even in a pipeline. A connection switched to autocommit leaves BEGIN to us, so it can
# travel with the first statement; from then on psycopg sees the transaction the server reports
# and COMMIT, ROLLBACK and the services' statements work as before. Switched back (`restore`)
# before the connection returns to the pool.


def begin_statement(read_only: bool) -> str:
    return "BEGIN READ ONLY" if read_only else "BEGIN"


async def restore(driver: DriverConnection[Any]) -> None:
    """psycopg's own BEGIN again, read-write; the connection must be idle (else this raises)."""
    if driver.autocommit:
        await driver.set_autocommit(False)
    if driver.read_only is not None:
        await driver.set_read_only(None)


@contextlib.contextmanager
def _as_sqlalchemy_error(sql: str) -> Iterator[None]:
    """A failure of a statement sent on the driver's connection raises what it would have
    through SQLAlchemy (IntegrityError, OperationalError, ...), so callers see one kind of
    error. Parameters are left out of it: they may hold a stored answer."""
    try:
        yield
    except psycopg.Error as exc:
        raise DBAPIError.instance(sql, None, exc, psycopg.Error, hide_parameters=True) from exc


# --- the kit's statements, compiled once per table ----------------------------------------------

_DIALECT = postgresql.psycopg.dialect()  # type: ignore[no-untyped-call]
_COMPILED: dict[tuple[str, str], str] = {}


def compiled_sql(table: Table, name: str, build: Callable[[Table], ClauseElement]) -> str:
    """The statement `build(table)` as psycopg SQL with named parameters, compiled once. The
    kit's tables have the same columns in every service (`add_kit_tables`) and other tables one
    definition each: the table's name is enough of a key. Every value is a named parameter
    (`bindparam`), literals included: the caller passes them all."""
    key = (table.fullname, name)
    found = _COMPILED.get(key)
    if found is None:
        found = _COMPILED[key] = str(build(table).compile(dialect=_DIALECT))
    return found


def _insert_outbox(outbox: Table) -> ClauseElement:
    names = ("event_id", "subject", "event_type", "merchant_id", "payload", "traceparent")
    # inline: no RETURNING of the new key, which nobody reads.
    return outbox.insert().inline().values({name: bindparam(name) for name in names})


def claim_statement(requests: Table) -> ClauseElement:
    """Claim a request id (no answer yet); returns its claim time, or no row if it was taken."""
    return (
        pg_insert(requests)
        .values(
            merchant_id=bindparam("merchant_id"),
            request_id=bindparam("request_id"),
            operation=bindparam("operation"),
            fingerprint=bindparam("fingerprint"),
        )
        .on_conflict_do_nothing()
        .returning(requests.c.created_at)
    )


def _store_response(requests: Table) -> ClauseElement:
    return (
        update(requests)
        .where(
            requests.c.merchant_id == bindparam("merchant_id"),
            requests.c.request_id == bindparam("request_id"),
        )
        .values(response=bindparam("response"))
    )
