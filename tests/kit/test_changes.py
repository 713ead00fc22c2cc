"""Change feeds never skip: a poller that resumes from the last `updated_at` it saw misses no
row, however slow and fast transactions interleave (pos_kit/changes.py)."""

from __future__ import annotations

import asyncio
import random
from datetime import UTC, datetime

import pytest
from sqlalchemy import insert, select, update
from sqlalchemy.ext.asyncio import AsyncEngine

from pos_customer.adapters.tables import customers
from pos_devstack.testing import Infra
from pos_kit.changes import list_changed
from pos_kit.db import make_engine

pytestmark = pytest.mark.asyncio(loop_scope="session")
EPOCH = datetime(2026, 1, 1, tzinfo=UTC)


class Poller:
    """A partner: polls with updated_since = the last updated_at seen (inclusive)."""

    def __init__(self, engine: AsyncEngine, merchant: str) -> None:
        self.engine = engine
        self.merchant = merchant
        self.since = EPOCH
        self.seen: dict[str, datetime] = {}

    async def poll(self) -> list[str]:
        async with self.engine.connect() as conn:
            rows = await list_changed(
                conn,
                select(customers).where(customers.c.merchant_id == self.merchant),
                customers.c.updated_at,
                customers.c.id,
                self.since,
                None,
                1000,
            )
        for row in rows:
            self.seen[row.id] = row.updated_at
            self.since = max(self.since, row.updated_at)
        return [row.id for row in rows]


def _row(merchant: str, cid: str) -> dict[str, str]:
    return {
        "merchant_id": merchant,
        "id": cid,
        "email": f"{cid}@example.com",
        "given_name": cid,
        "family_name": "",
    }


async def test_a_slow_transaction_holds_the_feed_back_instead_of_being_skipped(
    infra: Infra,
) -> None:
    engine = make_engine(infra.service_database("customer"), pool_size=4)
    poller = Poller(engine, "mer_slow")
    try:
        async with engine.connect() as slow:
            await slow.begin()
            await slow.execute(insert(customers).values(_row("mer_slow", "cus_slow")))
            async with engine.begin() as fast:
                await fast.execute(insert(customers).values(_row("mer_slow", "cus_fast")))
            # The fast change is committed, but it may not be shown yet: the slow change,
            # still open, could commit with an earlier stamp behind the poller's back.
            assert await poller.poll() == []
            await slow.commit()
        assert await poller.poll() == ["cus_slow", "cus_fast"]
        # An update moves a row to the end of the feed.
        async with engine.begin() as conn:
            await conn.execute(
                update(customers).where(customers.c.id == "cus_slow").values(given_name="Changed")
            )
        assert "cus_slow" in await poller.poll()
        assert poller.seen["cus_slow"] > poller.seen["cus_fast"]
    finally:
        await engine.dispose()


async def test_a_poller_misses_nothing_while_writers_interleave(infra: Infra) -> None:
    engine = make_engine(infra.service_database("customer"), pool_size=8)
    poller = Poller(engine, "mer_busy")
    chance = random.Random(20261201)  # fixed: the same interleavings every run
    committed: list[str] = []

    async def writer(w: int) -> None:
        for i in range(12):
            async with engine.begin() as conn:
                # Some transactions start long before they write, others write at once.
                await asyncio.sleep(chance.choice((0, 0, 0.001, 0.02)))
                cid = f"cus_{w}_{i}"
                await conn.execute(insert(customers).values(_row("mer_busy", cid)))
                await asyncio.sleep(chance.choice((0, 0.001, 0.03)))
            committed.append(cid)

    done = asyncio.Event()

    async def poll_until_done() -> None:
        while not done.is_set():
            await poller.poll()
            await asyncio.sleep(0.002)

    try:
        polling = asyncio.create_task(poll_until_done())
        await asyncio.gather(*(writer(w) for w in range(5)))
        done.set()
        await polling
        await poller.poll()  # the writers are done: nothing holds the feed back now
        assert sorted(poller.seen) == sorted(committed)
    finally:
        await engine.dispose()
