"""A return takes back the points its units earned, not its share of the sale's value: a line
excluded from the program earned nothing and takes nothing back, and the lines that earned
take back all they earned. The order events as the order service publishes them, each
handler in its own transaction, on real PostgreSQL."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pytest
import sqlalchemy as sa

from pos.common.v1 import money_pb2
from pos.customer.v1 import loyalty_pb2
from pos.order.v1 import events_pb2 as order_events
from pos.order.v1 import order_pb2
from pos_customer.entrypoints.consumers import (
    on_fulfillment_updated,
    on_order_cancelled,
    on_order_confirmed,
    on_order_returned,
)

from .conftest import Caller, Service

pytestmark = pytest.mark.asyncio(loop_scope="session")


def _usd(amount: int) -> money_pb2.Money:
    return money_pb2.Money(amount=amount, currency="USD")


async def _program(merchant: Caller, excluded: list[str], multiplier_bps: int = 0) -> None:
    tiers = []
    if multiplier_bps:
        tiers = [loyalty_pb2.Tier(name="all", threshold_points=0, multiplier_bps=multiplier_bps)]
    program = loyalty_pb2.LoyaltyProgram(
        enabled=True, points_per_unit=1, point_value_minor=10, excluded_skus=excluded, tiers=tiers
    )
    await merchant("SetLoyaltyProgram", loyalty_pb2.SetLoyaltyProgramRequest(program=program))


class Order:
    """A register sale of SKU X (excluded: 90.00) and SKU Y (10.00, `y_units` units), 8% tax
    on top, each line in its own fulfilment; and its events, each with the figures the order
    service puts on them (the goods, what the returns took back so far)."""

    def __init__(self, service: Service, merchant: Caller, customer_id: str, order_id: str,
                 y_units: int = 1) -> None:  # fmt: skip
        self.service, self.merchant = service, merchant
        self.customer_id, self.id = customer_id, order_id
        self.lines = {"L1": ("X", 1, 9000), "L2": ("Y", y_units, 1000)}
        self.given_back = 0
        self.returns = 0

    def order(self) -> order_pb2.Order:
        lines = [
            order_pb2.OrderLine(
                id=line_id,
                sku=sku,
                quantity=units,
                line_total=_usd(total),
                discount_total=_usd(0),
                tax_total=_usd(total * 8 // 100),
                fulfillment_id=f"{self.id}-{n}",
            )
            for n, (line_id, (sku, units, total)) in enumerate(self.lines.items(), start=1)
        ]
        tax = sum(ln.tax_total.amount for ln in lines)
        return order_pb2.Order(
            id=self.id, customer_id=self.customer_id, location_id="loc_1", lines=lines,
            subtotal=_usd(10_000), discount_total=_usd(0), tax_total=_usd(tax),
            total=_usd(10_000 + tax), tender_types=["card"], tender_amounts=[10_000 + tax],
        )  # fmt: skip

    def _worth(self, line_id: str, units: int) -> int:
        _, quantity, total = self.lines[line_id]
        return (total + total * 8 // 100) * units // quantity

    async def deliver(self, handler: Any, message: Any) -> None:
        async with self.service.runtime.uow().bind(self.merchant.merchant) as uow:
            await handler(uow, message)
            await uow.commit()

    async def confirmed(self, at: datetime | None = None) -> None:
        """The order_confirmed event; `at` the time it says the order was confirmed."""
        message = order_events.OrderConfirmed(order=self.order())
        if at is not None:
            message.meta.occurred_at.FromDatetime(at)
        await self.deliver(on_order_confirmed, message)

    def returned(self, **units: int) -> order_events.OrderReturned:
        self.returns += 1
        lines = [order_pb2.ReturnLine(line_id=line_id, sku=self.lines[line_id][0],
                                      quantity=n, amount=_usd(self._worth(line_id, n)))
                 for line_id, n in units.items()]  # fmt: skip
        self.given_back += sum(ln.amount.amount for ln in lines)
        order = self.order()
        return order_events.OrderReturned(
            order=order,
            order_return=order_pb2.Return(id=f"ret_{self.id}_{self.returns}", lines=lines),
            goods_total=order.total,
            goods_returned=_usd(self.given_back),
        )

    def fulfillment_cancelled(self, line_id: str) -> order_events.OrderFulfillmentUpdated:
        self.given_back += self._worth(line_id, self.lines[line_id][1])
        order = self.order()
        (line,) = [ln for ln in order.lines if ln.id == line_id]
        return order_events.OrderFulfillmentUpdated(
            order=order,
            fulfillment_id=line.fulfillment_id,
            goods_total=order.total,
            goods_given_back=_usd(self.given_back),
        )

    async def entries(self) -> list[tuple[str, int]]:
        rows = await self.service.sql(
            "SELECT kind, points FROM points_ledger WHERE merchant_id = :m AND order_id = :o"
            " ORDER BY seq",
            m=self.merchant.merchant,
            o=self.id,
        )
        return [(kind, int(pts)) for kind, pts in rows]


async def _balance(service: Service, merchant: Caller, customer_id: str) -> int:
    rows = await service.sql(
        "SELECT loyalty_points FROM customers WHERE merchant_id = :m AND id = :i",
        m=merchant.merchant,
        i=customer_id,
    )
    return int(rows[0][0])


async def test_returning_an_excluded_line_takes_back_nothing_and_the_other_line_all(
    merchant: Caller, service: Service
) -> None:
    await _program(merchant, ["X"])
    c = await merchant.create(given_name="Excluded")
    sale = Order(service, merchant, c.id, "ord_x1")
    await sale.confirmed()
    assert await sale.entries() == [("earned", 10)]  # Y's 10.00 before tax; X nothing

    await sale.deliver(on_order_returned, sale.returned(L1=1))  # X back: it earned nothing
    assert await sale.entries() == [("earned", 10)]
    assert await _balance(service, merchant, c.id) == 10
    await sale.deliver(on_order_returned, sale.returned(L2=1))  # Y back: all it earned
    assert await sale.entries() == [("earned", 10), ("reversed", -10)]
    assert await _balance(service, merchant, c.id) == 0


async def test_returning_the_line_that_earned_takes_back_all_it_earned(
    merchant: Caller, service: Service
) -> None:
    await _program(merchant, ["X"])
    c = await merchant.create(given_name="Mirror")
    sale = Order(service, merchant, c.id, "ord_y1")
    await sale.confirmed()
    await sale.deliver(on_order_returned, sale.returned(L2=1))
    assert await sale.entries() == [("earned", 10), ("reversed", -10)]
    assert await _balance(service, merchant, c.id) == 0
    await sale.deliver(on_order_returned, sale.returned(L1=1))  # then X: nothing more
    assert await _balance(service, merchant, c.id) == 0


async def test_partial_returns_take_each_units_share_and_never_more_than_was_earned(
    merchant: Caller, service: Service
) -> None:
    """Y is three units for 10.00 with the customer's tier doubling (20 points): each unit
    back takes a third of them, rounded down on the running figure, so the three together
    take exactly 20 and never more; X back between them takes nothing."""
    await _program(merchant, ["X"], multiplier_bps=20_000)
    c = await merchant.create(given_name="Partial")
    await Order(service, merchant, c.id, "ord_p0").confirmed()  # 20: the tier is every customer's
    sale = Order(service, merchant, c.id, "ord_p1", y_units=3)
    await sale.confirmed()
    assert await sale.entries() == [("earned", 20)]
    await sale.deliver(on_order_returned, sale.returned(L2=1))  # 20 * 1/3 = 6
    await sale.deliver(on_order_returned, sale.returned(L1=1))  # X: nothing
    await sale.deliver(on_order_returned, sale.returned(L2=1))  # 20 * 2/3 = 13 in all
    assert await _balance(service, merchant, c.id) == 20 + 20 - 13
    await sale.deliver(on_order_returned, sale.returned(L2=1))  # the last: all 20
    assert await sale.entries() == [("earned", 20), ("reversed", -6), ("reversed", -7),
                                    ("reversed", -7)]  # fmt: skip
    assert await _balance(service, merchant, c.id) == 20


async def test_what_a_line_earned_is_fixed_at_the_sale_and_in_any_arrival_order(
    merchant: Caller, service: Service
) -> None:
    """The program changes after the sale (X earns now): X's return still takes nothing. A
    return heard before the earn: the earn takes back what its units earned, no more."""
    await _program(merchant, ["X"])
    c = await merchant.create(given_name="Fixed")
    sale = Order(service, merchant, c.id, "ord_f1")
    await sale.confirmed()
    await _program(merchant, [])
    await sale.deliver(on_order_returned, sale.returned(L1=1))
    assert await _balance(service, merchant, c.id) == 10

    await _program(merchant, ["X"])
    early = Order(service, merchant, c.id, "ord_f2")
    await early.deliver(on_order_returned, early.returned(L1=1))
    await early.confirmed()
    assert await early.entries() == [("earned", 10)]
    later = Order(service, merchant, c.id, "ord_f3")
    await later.deliver(on_order_returned, later.returned(L1=1))
    await later.deliver(on_order_returned, later.returned(L2=1))
    await later.confirmed()
    assert await later.entries() == [("earned", 10), ("reversed", -10)]
    assert await _balance(service, merchant, c.id) == 20


async def test_a_cancelled_fulfilment_takes_back_what_its_lines_earned(
    merchant: Caller, service: Service
) -> None:
    await _program(merchant, ["X"])
    c = await merchant.create(given_name="Fulfilment")
    sale = Order(service, merchant, c.id, "ord_c1")
    await sale.confirmed()
    await sale.deliver(on_fulfillment_updated, sale.fulfillment_cancelled("L1"))  # X's
    assert await sale.entries() == [("earned", 10)]
    await sale.deliver(on_fulfillment_updated, sale.fulfillment_cancelled("L2"))  # Y's
    assert await sale.entries() == [("earned", 10), ("reversed", -10)]
    assert await _balance(service, merchant, c.id) == 0


async def test_an_earn_recorded_before_lines_were_kept_takes_the_share_of_value(
    merchant: Caller, service: Service
) -> None:
    """A purchase from before migration 0009 has no lines: its returns take the share of the
    goods' value, as they did then."""
    await _program(merchant, ["X"])
    c = await merchant.create(given_name="Old")
    sale = Order(service, merchant, c.id, "ord_o1")
    await sale.confirmed()
    async with service.runtime.engine.begin() as conn:
        await conn.execute(
            sa.text(
                "UPDATE purchases SET earning_lines = NULL WHERE merchant_id = :m AND order_id = :o"
            ),
            {"m": merchant.merchant, "o": sale.id},
        )
    await sale.deliver(on_order_returned, sale.returned(L1=1))  # 90% of the goods' value
    assert await sale.entries() == [("earned", 10), ("reversed", -9)]


async def test_a_sale_earns_under_the_program_in_force_when_it_was_made(
    merchant: Caller, service: Service
) -> None:
    """The sale is made under a program excluding X and doubling every customer's points; its
    event comes after the merchant changed to ten points a unit, X included, no tiers (a
    backlog, a consumer down): it earns under the program of its time, 10.00 of Y doubled,
    20, not 1,000; its returns take back what it earned, X's nothing. A sale made after the
    change earns under the new program, one made before the merchant set any program under
    the one every merchant starts with (one point a unit)."""
    await _program(merchant, ["X"], multiplier_bps=20_000)
    made = datetime.now(UTC)
    newer = loyalty_pb2.LoyaltyProgram(enabled=True, points_per_unit=10, point_value_minor=10)
    await merchant("SetLoyaltyProgram", loyalty_pb2.SetLoyaltyProgramRequest(program=newer))
    c = await merchant.create(given_name="Backlog")

    sale = Order(service, merchant, c.id, "ord_h1")
    await sale.confirmed(at=made)
    assert await sale.entries() == [("earned", 20)]
    await sale.deliver(on_order_returned, sale.returned(L1=1))  # X: it earned nothing
    assert await _balance(service, merchant, c.id) == 20
    await sale.deliver(on_order_returned, sale.returned(L2=1))
    assert await sale.entries() == [("earned", 20), ("reversed", -20)]
    assert await _balance(service, merchant, c.id) == 0

    now = Order(service, merchant, c.id, "ord_h2")
    await now.confirmed(at=datetime.now(UTC))
    assert await now.entries() == [("earned", 1_000)]
    old = Order(service, merchant, c.id, "ord_h3")
    await old.confirmed(at=datetime(2020, 1, 1, tzinfo=UTC))
    assert await old.entries() == [("earned", 100)]
    # Its cancellation takes back what it earned, not what today's program would have.
    cancelled = order_events.OrderCancelled(order=old.order())
    await old.deliver(on_order_cancelled, cancelled)
    assert await old.entries() == [("earned", 100), ("reversed", -100)]
    # An event that does not say when (from before events did) earns under today's program.
    undated = Order(service, merchant, c.id, "ord_h4")
    await undated.confirmed()
    assert await undated.entries() == [("earned", 1_000)]
