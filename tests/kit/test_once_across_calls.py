"""once_across_calls against real PostgreSQL: no connection held while the other services
answer, one effect per request id, an in-progress answer for a duplicate, expired claims re-run."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator

import psycopg
import pytest
import pytest_asyncio
from sqlalchemy import func, select, text, update
from sqlalchemy.ext.asyncio import AsyncEngine

from pos.order.v1 import order_pb2
from pos_customer.adapters.tables import kit
from pos_devstack.testing import Infra
from pos_kit.db import make_engine
from pos_kit.errors import RequestIdReused, RequestInProgress, Unavailable
from pos_kit.idempotency import Claim, once_across_calls
from pos_kit.uow import UnitOfWork

pytestmark = pytest.mark.asyncio(loop_scope="session")
MERCHANT = "mer_calls"


@pytest.fixture
def database(infra: Infra) -> str:
    return infra.service_database("customer")


@pytest_asyncio.fixture(loop_scope="session")
async def engine(database: str) -> AsyncIterator[AsyncEngine]:
    # One connection, no overflow: an operation holding it across its calls starves the rest.
    engine = make_engine(database, pool_size=1, max_overflow=0)
    try:
        yield engine
    finally:
        await engine.dispose()


class Operation:
    """A stand-in operation: `call` waits for the test's go, `record` counts the effects."""

    def __init__(self, engine: AsyncEngine, lease_seconds: float = 60.0) -> None:
        self.engine = engine
        self.lease = lease_seconds
        self.go = asyncio.Event()
        self.calling = 0
        self.changed = asyncio.Condition()
        self.claims: list[Claim] = []
        self.recorded: list[str] = []
        self.fail: Exception | None = None

    def uow(self) -> UnitOfWork:
        return UnitOfWork(self.engine, kit).bind(MERCHANT)

    async def read(self, uow: UnitOfWork) -> int:
        return int((await uow.conn.execute(select(func.count()).select_from(kit.inbox))).scalar())

    async def call(self, claim: Claim, _: int) -> str:
        self.claims.append(claim)
        await self._count(+1)
        try:
            await self.go.wait()
        finally:
            await self._count(-1)
        if self.fail is not None:
            raise self.fail
        return claim.derived_id("ord")

    async def _count(self, step: int) -> None:
        async with self.changed:
            self.calling += step
            self.changed.notify_all()

    async def until_calling(self, n: int) -> None:
        async with asyncio.timeout(20), self.changed:
            await self.changed.wait_for(lambda: self.calling == n)

    async def record(self, uow: UnitOfWork, order_id: str) -> order_pb2.CheckoutResponse:
        self.recorded.append(order_id)
        return order_pb2.CheckoutResponse(order=order_pb2.Order(id=order_id))

    async def run(self, request_id: str, sku: str = "TEE") -> order_pb2.CheckoutResponse:
        request = order_pb2.CheckoutRequest(
            request_id=request_id, lines=[order_pb2.CheckoutLine(sku=sku, quantity=1)]
        )
        return await once_across_calls(
            self.uow,
            "Checkout",
            request,
            order_pb2.CheckoutResponse,
            self.read,
            self.call,
            self.record,
            lease_seconds=self.lease,
        )


async def test_operations_waiting_on_their_calls_hold_no_connection(engine: AsyncEngine) -> None:
    op = Operation(engine)
    runs = [asyncio.create_task(op.run(uuid.uuid4().hex)) for _ in range(4)]
    # All four are inside their calls at once, on a pool of one connection: none holds it.
    await op.until_calling(4)
    op.go.set()
    answers = await asyncio.gather(*runs)
    assert sorted(a.order.id for a in answers) == sorted(op.recorded)
    assert len(set(op.recorded)) == 4


async def test_a_duplicate_in_flight_is_told_to_retry_then_replays(engine: AsyncEngine) -> None:
    op = Operation(engine)
    request_id = uuid.uuid4().hex
    first = asyncio.create_task(op.run(request_id))
    await op.until_calling(1)

    with pytest.raises(RequestInProgress) as err:
        await op.run(request_id)
    assert err.value.code == "request_in_progress"

    op.go.set()
    answer = await first
    replay = await op.run(request_id)
    assert replay == answer
    assert len(op.claims) == 1 and op.recorded == [answer.order.id]


async def test_another_request_under_the_same_id_is_refused(engine: AsyncEngine) -> None:
    op = Operation(engine)
    op.go.set()
    request_id = uuid.uuid4().hex
    await op.run(request_id)
    with pytest.raises(RequestIdReused):
        await op.run(request_id, sku="MUG")
    assert len(op.recorded) == 1


async def test_a_failed_call_drops_its_claim_so_a_retry_runs_at_once(engine: AsyncEngine) -> None:
    op = Operation(engine)
    op.go.set()
    op.fail = Unavailable("payment is down")
    request_id = uuid.uuid4().hex
    with pytest.raises(Unavailable):
        await op.run(request_id)
    assert op.recorded == []

    op.fail = None
    answer = await op.run(request_id)
    assert op.recorded == [answer.order.id] and len(op.claims) == 2


async def test_a_claim_left_by_a_crash_expires_and_runs_again_with_the_same_ids(
    engine: AsyncEngine,
) -> None:
    op = Operation(engine, lease_seconds=30)
    request_id = uuid.uuid4().hex
    crashed = asyncio.create_task(op.run(request_id))
    await op.until_calling(1)
    crashed.cancel()  # the process dies mid-call: its claim stays behind
    with pytest.raises(asyncio.CancelledError):
        await crashed
    with pytest.raises(RequestInProgress):
        await op.run(request_id)

    # The lease runs out (its start moved into the past rather than waited for).
    requests = kit.requests
    async with engine.begin() as conn:
        await conn.execute(
            update(requests)
            .where(requests.c.merchant_id == MERCHANT, requests.c.request_id == request_id)
            .values(created_at=requests.c.created_at - func.make_interval(0, 0, 0, 0, 0, 1))
        )
    op.go.set()
    answer = await op.run(request_id)

    assert [c.request_id for c in op.claims] == [request_id, request_id]
    # Moved by the test, so compare what a run derives from the claim it was handed.
    assert op.claims[1].derived_id("ord") == answer.order.id
    assert op.recorded == [answer.order.id]


async def test_a_re_run_derives_the_same_ids_as_the_run_it_replaces(engine: AsyncEngine) -> None:
    op = Operation(engine, lease_seconds=0)  # every claim is already expired
    request_id = uuid.uuid4().hex
    first = asyncio.create_task(op.run(request_id))
    await op.until_calling(1)
    second = asyncio.create_task(op.run(request_id))  # re-runs: the first looks crashed
    await op.until_calling(2)
    op.go.set()
    answers = await asyncio.gather(first, second)

    assert op.claims[0].derived_id("ord") == op.claims[1].derived_id("ord")
    assert answers[0] == answers[1]
    assert op.recorded == [answers[0].order.id]


async def test_a_record_that_loses_a_deadlock_runs_again(
    engine: AsyncEngine, database: str
) -> None:
    """The recording transaction and another one lock two rows in opposite orders; PostgreSQL
    breaks the deadlock by aborting one of them. When it aborts the recording, nothing of it
    was applied, so it runs again at once: the caller gets its answer, not an error and a claim
    held until its lease ends. Which one PostgreSQL aborts depends on whose deadlock check
    runs first (the recording's, a second after it began to wait, unless a loaded machine
    delays the other's wait past that): rounds go on until the recording was the one."""
    url = database
    async with await psycopg.AsyncConnection.connect(url, autocommit=True) as admin:
        await admin.execute("CREATE TABLE deadlock_rows (id int PRIMARY KEY)")
        await admin.execute("INSERT INTO deadlock_rows VALUES (1), (2)")

    async def round() -> bool:
        """One deadlock (or more); True when the recording lost one (and ran again)."""
        op = Operation(engine)
        op.go.set()
        attempts: list[str] = []
        pids: list[int] = []
        first_locked, other_locked = asyncio.Event(), asyncio.Event()
        counted = op.record

        async def record(uow: UnitOfWork, order_id: str) -> order_pb2.CheckoutResponse:
            attempts.append(order_id)
            pids.append(int((await uow.conn.execute(text("SELECT pg_backend_pid()"))).scalar()))
            await uow.conn.execute(text("SELECT id FROM deadlock_rows WHERE id = 1 FOR UPDATE"))
            if len(attempts) == 1:
                first_locked.set()
                await other_locked.wait()
            await uow.conn.execute(text("SELECT id FROM deadlock_rows WHERE id = 2 FOR UPDATE"))
            return await counted(uow, order_id)

        op.record = record  # type: ignore[method-assign]

        async def other() -> bool:
            async with await psycopg.AsyncConnection.connect(url) as conn:
                await first_locked.wait()
                await conn.execute("SELECT id FROM deadlock_rows WHERE id = 2 FOR UPDATE")
                other_locked.set()
                for _ in range(2000):  # until the recording waits for row 2 (20 s at most)
                    waiting = await conn.execute(
                        "SELECT wait_event_type FROM pg_stat_activity WHERE pid = %s",
                        (pids[0],),
                    )
                    if (await waiting.fetchone()) == ("Lock",):
                        break
                    await asyncio.sleep(0.01)
                else:
                    raise AssertionError("the recording never waited for row 2")
                try:
                    await conn.execute("SELECT id FROM deadlock_rows WHERE id = 1 FOR UPDATE")
                except psycopg.errors.DeadlockDetected:
                    await conn.rollback()
                    return False  # this one was aborted: the recording went on
                await conn.commit()
                return True

        request_id = uuid.uuid4().hex
        answer, other_won = await asyncio.gather(op.run(request_id), other())
        assert op.recorded == [answer.order.id]
        # Every attempt is the same sale. A run again can meet the other transaction once
        # more (it may take row 1 before the other does) and lose again: it runs until done.
        assert set(attempts) == {answer.order.id}
        if other_won:
            assert len(attempts) >= 2
        assert await op.run(request_id) == answer  # stored once, replayed
        return len(attempts) >= 2

    for _ in range(5):
        if await round():
            return
    raise AssertionError("PostgreSQL never aborted the recording in five deadlocks")
