"""A hypothesis state machine: earn, redeem, reverse, adjust, expire and merge in any order.

After every step, for every customer: the balance equals the ledger sum and the model, and
covers what is held unless a reversal took back points already spent (a debt, below zero,
that only earnings pay off).
"""

from __future__ import annotations

import asyncio
import itertools
from collections.abc import Awaitable
from datetime import UTC, datetime, timedelta
from typing import Any, TypeVar

from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, initialize, invariant, precondition, rule
from sqlalchemy import text

from pos_customer.adapters.repository import CustomerUow
from pos_customer.adapters.tables import kit
from pos_customer.domain import loyalty
from pos_customer.domain.model import Profile
from pos_customer.service import handlers, points
from pos_devstack.testing import Infra
from pos_kit.db import make_engine
from pos_kit.errors import Conflict

T = TypeVar("T")
_run = itertools.count(1)


class PointsMachine(RuleBasedStateMachine):
    url = ""

    def __init__(self) -> None:
        super().__init__()
        self.loop = asyncio.new_event_loop()
        self.engine = make_engine(self.url, pool_size=2)
        self.merchant = f"mer_pm{next(_run)}"
        self.n = itertools.count(1)
        self.balance: dict[str, int] = {}
        # What expiry may take: credits (earned or by hand, less the earns taken back; a merged
        # duplicate's with them) less every other debit.
        self.credits: dict[str, int] = {}
        self.debits: dict[str, int] = {}
        self.earned: dict[str, tuple[str, int]] = {}  # order -> (customer, points)
        self.redeemed: dict[str, tuple[str, int]] = {}
        self.reversed: set[str] = set()
        self.active: list[str] = []
        self.merged_into: dict[str, str] = {}

    def run(self, work: Awaitable[T]) -> T:
        return self.loop.run_until_complete(work)

    def tx(self, body: Any) -> Any:
        async def go() -> Any:
            async with CustomerUow(self.engine, kit).bind(self.merchant) as uow:
                result = await body(uow)
                await uow.commit()
                return result

        return self.run(go())

    def now_of(self, customer: str) -> str:
        while customer in self.merged_into:
            customer = self.merged_into[customer]
        return customer

    def _credit(self, c: str, pts: int) -> None:
        self.balance[c] += pts
        self.credits[c] += pts

    def _debit(self, c: str, pts: int) -> None:
        self.balance[c] -= pts
        self.debits[c] += pts

    def _new_customer(self) -> str:
        c = self.tx(lambda uow: handlers.create_customer(uow, Profile(given_name="M"))).id
        self.active.append(c)
        self.balance[c] = self.credits[c] = self.debits[c] = 0
        return str(c)

    @initialize()
    def start(self) -> None:
        self._new_customer()
        self._new_customer()

    @rule(who=st.integers(0, 9), total=st.integers(0, 50_000))
    def earn(self, who: int, total: int) -> None:
        c = self.active[who % len(self.active)]
        order = f"ord_{next(self.n)}"
        sale = loyalty.Sale(order, c, "loc", "USD", total, 0, ())
        got = self.tx(lambda uow: points.credit_sale(uow, sale))
        assert got == total // 100
        # A second delivery of the same order earns nothing.
        assert self.tx(lambda uow: points.credit_sale(uow, sale)) == 0
        if got:
            self._credit(c, got)
            self.earned[order] = (c, got)

    @rule(who=st.integers(0, 9), pts=st.integers(1, 300))
    def redeem(self, who: int, pts: int) -> None:
        c = self.active[who % len(self.active)]
        order = f"ord_{next(self.n)}"
        try:
            self.tx(lambda uow: points.hold(uow, order, c, pts, "USD"))
        except Conflict as refused:
            assert refused.code == "insufficient_points"
            assert pts > self.balance[c]
            return
        assert pts <= self.balance[c]
        self.tx(lambda uow: points.finalize(uow, order))
        self._debit(c, pts)
        self.redeemed[order] = (c, pts)

    @rule(pick=st.integers(0, 1_000))
    def reverse(self, pick: int) -> None:
        open_orders = sorted(set(self.earned) | set(self.redeemed))
        open_orders = [o for o in open_orders if o not in self.reversed]
        if not open_orders:
            return
        order = open_orders[pick % len(open_orders)]
        owner = self.now_of((self.earned.get(order) or self.redeemed[order])[0])
        net = -self.earned.get(order, ("", 0))[1] + self.redeemed.get(order, ("", 0))[1]
        self.tx(lambda uow: points.reverse_order(uow, order, "test"))
        self.tx(lambda uow: points.reverse_order(uow, order, "again"))  # once only
        self.reversed.add(order)
        # The reversal takes back its own order's earn (every earn is older than expiry's
        # cutoff here): off the credits that expire, not a debit of the oldest ones.
        self.balance[owner] += net
        self.credits[owner] -= self.earned.get(order, ("", 0))[1]

    @rule(who=st.integers(0, 9), pts=st.integers(-300, 300).filter(bool))
    def adjust(self, who: int, pts: int) -> None:
        c = self.active[who % len(self.active)]
        try:
            self.tx(lambda uow: points.adjust(uow, c, pts, "by hand"))
        except Conflict:
            assert -pts > self.balance[c]
            return
        if pts > 0:
            self._credit(c, pts)
        else:
            self._debit(c, -pts)

    @rule()
    def expire(self) -> None:
        program = loyalty.Program(expiry_days=1)
        self.tx(lambda uow: points.set_program(uow, program, 0))
        later = datetime.now(UTC) + timedelta(days=2)
        self.tx(lambda uow: points.expire(uow, later))
        for c in self.active:
            amount = max(0, min(self.credits[c] - self.debits[c], self.balance[c]))
            if amount:
                self._debit(c, amount)

    @precondition(lambda self: len(self.active) >= 2)
    @rule(a=st.integers(0, 9), b=st.integers(0, 9))
    def merge(self, a: int, b: int) -> None:
        winner = self.active[a % len(self.active)]
        loser = self.active[b % len(self.active)]
        if winner == loser:
            return
        self.tx(lambda uow: handlers.merge_customers(uow, winner, loser))
        moved = self.balance[loser]
        self.balance[loser] -= moved
        self.balance[winner] += moved
        # Expiry counts the duplicate's own credits and debits, at their own time.
        self.credits[winner] += self.credits[loser]
        self.debits[winner] += self.debits[loser]
        self.active.remove(loser)
        self.merged_into[loser] = winner

    @rule()
    def another_customer(self) -> None:
        if len(self.active) < 4:
            self._new_customer()

    @invariant()
    def balances_equal_the_ledger_and_the_model(self) -> None:
        async def read() -> list[Any]:
            async with self.engine.connect() as conn:
                rows = await conn.execute(
                    text(
                        "SELECT c.id, c.loyalty_points, c.points_held, coalesce((SELECT"
                        " sum(points) FROM points_ledger l WHERE l.merchant_id = c.merchant_id"
                        " AND l.customer_id = c.id), 0) FROM customers c"
                        " WHERE c.merchant_id = :m"
                    ),
                    {"m": self.merchant},
                )
                return list(rows)

        for customer, balance, held, ledger in self.run(read()):
            assert balance == ledger, customer
            assert held >= 0, customer
            if balance < held:
                assert self.reversed, customer  # only a reversal makes a debt
            assert balance == self.balance[customer], customer

    def teardown(self) -> None:
        self.run(self.engine.dispose())
        self.loop.close()


def test_points_state_machine(infra: Infra) -> None:
    PointsMachine.url = infra.service_database("customer")
    machine = PointsMachine.TestCase
    machine.settings = settings(
        max_examples=15,
        stateful_step_count=25,
        deadline=None,
        suppress_health_check=[HealthCheck.too_slow],
    )
    machine().runTest()
