"""A hypothesis state machine: stock operations in any sequence against a simple model.

After every step: on_hand equals the ledger sum and the model, reserved equals the sum of the
active holds, available is never negative.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable
from dataclasses import dataclass
from typing import Any, TypeVar

import pytest
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import Bundle, RuleBasedStateMachine, initialize, invariant, rule
from inventory_db import Db, unique
from sqlalchemy import func, select, text

from pos_inventory.adapters.repository import InventoryUow
from pos_inventory.adapters.tables import kit, stock_ledger
from pos_inventory.domain.model import Adjustment, Location, Reason
from pos_inventory.domain.reservations import OutOfStock, validate_hold
from pos_inventory.service import catalog, handlers, reservations, stock
from pos_kit.db import make_engine
from pos_kit.errors import Conflict
from pos_kit.money import Money

T = TypeVar("T")
MERCHANT = "mer_machine"


@dataclass
class Held:
    id: str
    location: int
    quantity: int
    status: str = "active"


class StockMachine(RuleBasedStateMachine):
    url = ""
    holds = Bundle("holds")

    def __init__(self) -> None:
        super().__init__()
        self.loop = asyncio.new_event_loop()
        self.engine = make_engine(self.url, pool_size=2)
        self.sku = unique("sm")
        self.locations: list[str] = []
        self.on_hand = [0, 0]
        self.all_holds: list[Held] = []
        self.counter = 0

    def run(self, work: Awaitable[T]) -> T:
        return self.loop.run_until_complete(work)

    def tx(self, body: Any) -> Any:
        async def go() -> Any:
            async with InventoryUow(self.engine, kit).bind(MERCHANT) as uow:
                result = await body(uow)
                await uow.commit()
                return result

        return self.run(go())

    def rid(self) -> str:
        self.counter += 1
        return f"{self.sku}-{self.counter}"

    def reserved(self, loc: int) -> int:
        return sum(h.quantity for h in self.all_holds if h.status == "active" and h.location == loc)

    def available(self, loc: int) -> int:
        return max(0, self.on_hand[loc] - self.reserved(loc))

    @initialize()
    def shop(self) -> None:
        async def body(uow: InventoryUow) -> None:
            for name in ("A", "B"):
                made = await handlers.create_location(uow, Location("", name, "USD", 0))
                self.locations.append(made.id)
            await catalog.create_product(uow, self.sku, "thing", Money(100, "USD"))

        self.tx(body)

    @rule(loc=st.integers(0, 1), delta=st.integers(-8, 20).filter(bool))
    def adjust(self, loc: int, delta: int) -> None:
        adjustment = Adjustment(self.sku, self.locations[loc], delta, Reason.CORRECTION)
        # A decrease takes only units on hand that no hold has promised.
        if delta < 0 and self.on_hand[loc] + delta < max(0, self.reserved(loc)):
            with pytest.raises(Conflict):
                self.tx(lambda uow: handlers.adjust_stock(uow, adjustment))
            return
        self.tx(lambda uow: handlers.adjust_stock(uow, adjustment))
        self.on_hand[loc] += delta

    @rule(loc=st.integers(0, 1), quantity=st.integers(0, 25), stale=st.booleans())
    def count(self, loc: int, quantity: int, stale: bool) -> None:
        expected = self.on_hand[loc] + (1 if stale else 0)
        key = self.rid()

        def body(uow: InventoryUow) -> Awaitable[object]:
            return stock.count_stock(
                uow, key, self.sku, self.locations[loc], quantity, expected, None
            )

        if stale:
            with pytest.raises(Conflict):
                self.tx(body)
            return
        self.tx(body)
        self.on_hand[loc] = quantity

    @rule(target=holds, loc=st.integers(0, 1), quantity=st.integers(1, 6))
    def reserve(self, loc: int, quantity: int) -> Held:
        hold = validate_hold(self.locations[loc], [(self.sku, quantity)], 600, "")
        if self.available(loc) < quantity:
            with pytest.raises(OutOfStock):
                self.tx(lambda uow: reservations.create_reservation(uow, hold))
            held = Held("", loc, quantity, "refused")
        else:
            made, _ = self.tx(lambda uow: reservations.create_reservation(uow, hold))
            held = Held(made.id, loc, quantity)
        self.all_holds.append(held)
        return held

    @rule(held=holds)
    def commit(self, held: Held) -> None:
        if held.status == "refused":
            return
        call = lambda uow: reservations.commit_reservation(uow, held.id)  # noqa: E731
        if held.status in ("released", "expired"):
            with pytest.raises(Conflict):
                self.tx(call)
            return
        self.tx(call)
        if held.status == "active":
            self.on_hand[held.location] -= held.quantity
            held.status = "committed"

    @rule(held=holds)
    def release(self, held: Held) -> None:
        if held.status == "refused":
            return
        call = lambda uow: reservations.release_reservation(uow, held.id)  # noqa: E731
        if held.status == "committed":
            with pytest.raises(Conflict):
                self.tx(call)
            return
        # Expired, its units are already let go: a release is the no-op a second one is.
        released, _ = self.tx(call)
        if held.status == "active":
            held.status = "released"
        assert released.status.value == held.status

    @rule(held=holds)
    def expire(self, held: Held) -> None:
        if held.status != "active":
            return

        async def body(uow: InventoryUow) -> int:
            await uow.conn.execute(
                text(
                    "UPDATE reservations SET expires_at = now() - interval '1 second'"
                    " WHERE merchant_id = :m AND id = :id"
                ),
                {"m": MERCHANT, "id": held.id},
            )
            return await reservations.expire_due(uow, 100)

        assert self.tx(body) >= 1
        held.status = "expired"

    @rule(source=st.integers(0, 1), quantity=st.integers(1, 8))
    def transfer(self, source: int, quantity: int) -> None:
        to = 1 - source
        lines = [(self.sku, quantity)]

        def body(uow: InventoryUow) -> Awaitable[object]:
            return stock.transfer_stock(
                uow, self.locations[source], self.locations[to], lines, None
            )

        if self.on_hand[source] - self.reserved(source) < quantity:
            with pytest.raises(OutOfStock):
                self.tx(body)
            return
        self.tx(body)
        self.on_hand[source] -= quantity
        self.on_hand[to] += quantity

    @invariant()
    def matches_the_model(self) -> None:
        if not self.locations:
            return

        async def body(uow: InventoryUow) -> tuple[list[Any], list[int]]:
            levels = await handlers.stock_levels(uow, [self.sku], None)
            sums = []
            for loc in self.locations:
                total = await uow.conn.scalar(
                    select(func.coalesce(func.sum(stock_ledger.c.delta), 0)).where(
                        stock_ledger.c.merchant_id == MERCHANT,
                        stock_ledger.c.sku == self.sku,
                        stock_ledger.c.location_id == loc,
                    )
                )
                sums.append(int(total or 0))
            return levels, sums

        levels, sums = self.tx(body)
        by_location = {lv.location_id: lv for lv in levels}
        for i, loc in enumerate(self.locations):
            level = by_location.get(loc)
            on_hand = level.on_hand if level else 0
            reserved = level.reserved if level else 0
            assert on_hand == self.on_hand[i] == sums[i]
            assert reserved == self.reserved(i)
            assert (level.available if level else 0) == self.available(i) >= 0

    def teardown(self) -> None:
        self.run(self.engine.dispose())
        self.loop.close()


def test_stock_state_machine(db: Db) -> None:
    StockMachine.url = db.url
    machine = StockMachine.TestCase
    machine.settings = settings(
        max_examples=20,
        stateful_step_count=25,
        deadline=None,
        suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
    )
    machine().runTest()
