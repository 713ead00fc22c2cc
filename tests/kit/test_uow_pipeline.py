"""The unit of work's own statements ride with BEGIN and COMMIT (psycopg pipelines), against real
PostgreSQL: all of it commits or none of it does, the pooled connection comes back usable, and a
read-only unit of work keeps the connection's prepared statements."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator

import pytest
import pytest_asyncio
from sqlalchemy import func, select, text
from sqlalchemy.exc import DBAPIError, IntegrityError
from sqlalchemy.ext.asyncio import AsyncEngine

from pos_customer.adapters.tables import kit
from pos_devstack.testing import Infra
from pos_kit.db import make_engine, reads
from pos_kit.errors import RequestIdReused
from pos_kit.events import OutgoingEvent
from pos_kit.uow import UnitOfWork

pytestmark = pytest.mark.asyncio(loop_scope="session")
MERCHANT = "mer_pipeline"


@pytest_asyncio.fixture(loop_scope="session")
async def engine(infra: Infra) -> AsyncIterator[AsyncEngine]:
    # One connection: every unit of work below gets the one the previous one gave back.
    engine = make_engine(infra.service_database("customer"), pool_size=1, max_overflow=0)
    try:
        yield engine
    finally:
        await engine.dispose()


def uow(engine: AsyncEngine) -> UnitOfWork:
    return UnitOfWork(engine, kit).bind(MERCHANT)


def event(event_id: str) -> OutgoingEvent:
    return OutgoingEvent(event_id, "pos.test.happened", "Happened", MERCHANT, b"\x01\x02")


async def count(engine: AsyncEngine, table: object, where: object) -> int:
    async with engine.connect() as conn:
        found = await conn.scalar(select(func.count()).select_from(table).where(where))  # type: ignore[arg-type]
    return int(found or 0)


async def test_the_claim_the_effect_the_answer_and_the_events_commit_together(
    engine: AsyncEngine,
) -> None:
    request_id = str(uuid.uuid4())
    event_id = str(uuid.uuid4())
    async with uow(engine) as work:
        assert await work.claim_request(MERCHANT, request_id, "Op", b"body") is None
        await work.conn.execute(kit.inbox.insert().values(consumer="effect", event_id=event_id))
        await work.store_response(MERCHANT, request_id, b"answer")
        work.emit(event(event_id))
        await work.commit()
    assert await count(engine, kit.outbox, kit.outbox.c.event_id == event_id) == 1
    async with uow(engine) as again:
        # The stored answer is replayed; another body under the same id is refused.
        assert await again.claim_request(MERCHANT, request_id, "Op", b"body") == b"answer"
    async with uow(engine) as other:
        with pytest.raises(RequestIdReused):
            await other.claim_request(MERCHANT, request_id, "Op", b"another body")
    await pooled_connection_is_as_psycopg_makes_it(engine)


async def pooled_connection_is_as_psycopg_makes_it(engine: AsyncEngine) -> None:
    """The kit sends BEGIN itself (autocommit on) and may begin READ ONLY: neither may stay on
    the connection handed to the next unit of work."""
    async with engine.connect() as conn:
        driver = (await conn.get_raw_connection()).driver_connection
        assert driver is not None
        assert (driver.autocommit, driver.read_only) == (False, None)


async def test_a_statement_sent_with_the_commit_that_fails_leaves_nothing_behind(
    engine: AsyncEngine,
) -> None:
    taken = str(uuid.uuid4())
    async with uow(engine) as first:
        first.emit(event(taken))
        await first.commit()

    request_id = str(uuid.uuid4())
    effect = str(uuid.uuid4())
    with pytest.raises(IntegrityError, match="duplicate key"):
        async with uow(engine) as work:
            assert await work.claim_request(MERCHANT, request_id, "Op", b"body") is None
            await work.conn.execute(kit.inbox.insert().values(consumer="effect", event_id=effect))
            await work.store_response(MERCHANT, request_id, b"answer")
            work.emit(event(str(uuid.uuid4())))
            work.emit(event(taken))  # the outbox's unique event id refuses it, at the COMMIT
            await work.commit()

    assert await count(engine, kit.inbox, kit.inbox.c.event_id == effect) == 0
    assert await count(engine, kit.requests, kit.requests.c.request_id == request_id) == 0
    # The one pooled connection came back usable, and the request may be retried.
    async with uow(engine) as retry:
        assert await retry.claim_request(MERCHANT, request_id, "Op", b"body") is None
        await retry.store_response(MERCHANT, request_id, b"answer")
        await retry.commit()
    assert await count(engine, kit.requests, kit.requests.c.request_id == request_id) == 1
    await pooled_connection_is_as_psycopg_makes_it(engine)


async def test_a_reading_unit_of_work_refuses_writes_and_keeps_prepared_statements(
    engine: AsyncEngine,
) -> None:
    probe = select(func.count()).select_from(kit.outbox).where(kit.outbox.c.merchant_id == "p")
    # psycopg prepares a statement on its fifth run on a connection, and forgets every one at a
    # ROLLBACK: ended that way, these units of work would never see it prepared.
    for _ in range(6):
        async with uow(engine).reading() as reader:
            await reader.conn.execute(probe)
    async with uow(engine).reading() as reader:
        prepared = await reader.conn.scalar(text("SELECT count(*) FROM pg_prepared_statements"))
    assert prepared and prepared > 0

    with pytest.raises(DBAPIError, match="read-only transaction"):
        async with uow(engine).reading() as reader:
            await reader.conn.execute(kit.inbox.insert().values(consumer="x", event_id="y"))

    # The one pooled connection went back writable.
    async with uow(engine) as writer:
        await writer.conn.execute(
            kit.inbox.insert().values(consumer="w", event_id=str(uuid.uuid4()))
        )
        await writer.commit()
    await pooled_connection_is_as_psycopg_makes_it(engine)


async def test_reads_outside_a_unit_of_work_keep_prepared_statements(engine: AsyncEngine) -> None:
    """`pos_kit.db.reads` (a background pass's or a route's lookups): each statement its own
    transaction, so nothing is rolled back at the end, and the statement psycopg prepared on its
    fifth run is still there for the units of work that take the connection next. Through a
    plain `engine.connect()` the ROLLBACK at its end dropped it (DEALLOCATE ALL)."""
    probe = select(func.count()).select_from(kit.outbox).where(kit.outbox.c.merchant_id == "r")
    for _ in range(6):
        async with reads(engine) as conn:
            assert await conn.scalar(probe) == 0
    async with reads(engine) as conn:
        prepared = await conn.scalar(text("SELECT count(*) FROM pg_prepared_statements"))
        # Nothing holds a transaction open between statements.
        assert await conn.scalar(text("SELECT now() = statement_timestamp()")) is True
    assert prepared and prepared > 0
    await pooled_connection_is_as_psycopg_makes_it(engine)


async def test_a_first_statement_of_the_services_begins_the_transaction_with_it(
    engine: AsyncEngine,
) -> None:
    """A service's statement that opens a unit of work travels with the BEGIN the kit sends
    (the connection in autocommit meanwhile): still one transaction, all or nothing, and the
    connection goes back to the pool as psycopg makes it."""
    kept, dropped = str(uuid.uuid4()), str(uuid.uuid4())
    async with uow(engine) as work:
        await work.conn.execute(kit.inbox.insert().values(consumer="first", event_id=kept))
        driver = await work.driver()
        assert driver.autocommit  # the kit sent the BEGIN, with the statement
        first = await work.conn.scalar(select(func.txid_current()))
        assert await work.conn.scalar(select(func.txid_current())) == first
        await work.commit()
    await pooled_connection_is_as_psycopg_makes_it(engine)
    with pytest.raises(RuntimeError):
        async with uow(engine) as work:
            await work.conn.execute(kit.inbox.insert().values(consumer="first", event_id=dropped))
            raise RuntimeError("the unit of work fails after its first statement")
    assert await count(engine, kit.inbox, kit.inbox.c.event_id == kept) == 1
    assert await count(engine, kit.inbox, kit.inbox.c.event_id == dropped) == 0
    await pooled_connection_is_as_psycopg_makes_it(engine)
