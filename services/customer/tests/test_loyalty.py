"""Points are never lost or double-counted: the ledger, holds, reversal, expiry, through the
real service on real PostgreSQL."""

from __future__ import annotations

import asyncio
import itertools
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import grpc
import pytest
import sqlalchemy as sa

from pos.common.v1 import money_pb2
from pos.customer.v1 import customer_pb2, loyalty_pb2
from pos_customer.domain.loyalty import Sale
from pos_customer.service import points
from pos_devstack.testing import polled
from pos_kit.grpc_client import read_error

from .conftest import Caller, Service

pytestmark = pytest.mark.asyncio(loop_scope="session")


async def _balance(service: Service, caller: Caller, customer_id: str) -> tuple[int, int, int]:
    """(balance on the customer, sum of the ledger, points held)."""
    rows = await service.sql(
        "SELECT c.loyalty_points, coalesce((SELECT sum(points) FROM points_ledger l"
        " WHERE l.merchant_id = c.merchant_id AND l.customer_id = c.id), 0), c.points_held"
        " FROM customers c WHERE c.merchant_id = :m AND c.id = :i",
        m=caller.merchant,
        i=customer_id,
    )
    return tuple(int(v) for v in rows[0])  # type: ignore[return-value]


async def _sale(
    service: Service, merchant: str, order_id: str, customer_id: str, total: int
) -> int:
    """What the order_confirmed consumer does, in its own transaction."""
    sale = Sale(order_id, customer_id, "loc_1", "USD", total, 0, ())
    async with service.runtime.uow().bind(merchant) as uow:
        earned = await points.credit_sale(uow, sale)
        await uow.commit()
    return earned


def _usd(amount: int) -> money_pb2.Money:
    return money_pb2.Money(amount=amount, currency="USD")


async def _adjust(caller: Caller, customer_id: str, pts: int) -> loyalty_pb2.AdjustPointsResponse:
    return await caller(  # type: ignore[no-any-return]
        "AdjustPoints",
        loyalty_pb2.AdjustPointsRequest(customer_id=customer_id, points=pts, reason="test"),
    )


async def test_the_same_order_earns_once(merchant: Caller, service: Service) -> None:
    c = await merchant.create(given_name="A")
    assert await _sale(service, merchant.merchant, "ord_a1", c.id, 6040) == 60
    assert await _sale(service, merchant.merchant, "ord_a1", c.id, 6040) == 0
    assert await _balance(service, merchant, c.id) == (60, 60, 0)
    orders = await merchant(
        "ListCustomerOrders", customer_pb2.ListCustomerOrdersRequest(customer_id=c.id)
    )
    assert [o.order_id for o in orders.orders] == ["ord_a1"]
    assert orders.summary.visit_count == 1
    assert orders.summary.lifetime_spend.amount == 6040
    assert orders.summary.favourite_location_id == "loc_1"


async def test_lifetime_spend_is_net_of_returns_and_per_currency(
    merchant: Caller, service: Service
) -> None:
    """A return takes its goods out of the lifetime spend (each return records the running
    total of what the order's returns took back), a cancelled order counts for nothing, and
    every currency bought in is summed apart."""
    c = await merchant.create(given_name="Spender")
    await _sale(service, merchant.merchant, "ord_s1", c.id, 10_000)
    await _sale(service, merchant.merchant, "ord_s2", c.id, 3_000)
    eur = Sale("ord_s3", c.id, "loc_2", "EUR", 5_000, 0, ())
    async with service.runtime.uow().bind(merchant.merchant) as uow:
        await points.credit_sale(uow, eur)
        await points.reverse_returned(uow, "ord_s1", "ret_1", 10_000, 2_500)
        await points.reverse_returned(uow, "ord_s1", "ret_2", 10_000, 4_000)
        await points.reverse_cancelled(uow, "ord_s2")
        await uow.commit()
    orders = await merchant(
        "ListCustomerOrders", customer_pb2.ListCustomerOrdersRequest(customer_id=c.id)
    )
    summary = orders.summary
    assert [(m.currency, m.amount) for m in summary.lifetime_spend_by_currency] == [
        ("EUR", 5_000),
        ("USD", 6_000),
    ]
    assert (summary.lifetime_spend.currency, summary.lifetime_spend.amount) == ("USD", 6_000)
    returned = {o.order_id: (o.returned.amount, o.returned.currency) for o in orders.orders}
    assert returned == {"ord_s1": (4_000, "USD"), "ord_s2": (0, "USD"), "ord_s3": (0, "EUR")}


async def test_200_concurrent_redemptions_never_go_negative(
    merchant: Caller, service: Service
) -> None:
    c = await merchant.create(given_name="Rich")
    await _adjust(merchant, c.id, 1000)

    async def retried(method: str, request: object) -> object:
        """As a client does: an overloaded service (no pooled connection free in time, which
        200 calls at once on a busy machine can cause) is retried with the same request_id."""
        request.request_id = str(uuid.uuid4())  # type: ignore[attr-defined]
        while True:
            try:
                return await merchant(method, request)
            except grpc.aio.AioRpcError as err:
                if read_error(err).reason != "overloaded":
                    raise

    async def redeem(n: int) -> bool:
        try:
            await retried(
                "HoldPoints",
                loyalty_pb2.HoldPointsRequest(
                    order_id=f"ord_r{n}", customer_id=c.id, points=10, currency="USD"
                ),
            )
        except grpc.aio.AioRpcError as err:
            assert read_error(err).reason == "insufficient_points"
            return False
        await retried("FinalizePoints", loyalty_pb2.FinalizePointsRequest(order_id=f"ord_r{n}"))
        return True

    results = await asyncio.gather(*(redeem(n) for n in range(200)))
    assert sum(results) == 100
    assert await _balance(service, merchant, c.id) == (0, 0, 0)
    err = await asyncio.gather(
        merchant(
            "HoldPoints",
            loyalty_pb2.HoldPointsRequest(order_id="ord_more", customer_id=c.id, points=1),
        ),
        return_exceptions=True,
    )
    assert isinstance(err[0], grpc.aio.AioRpcError)
    assert err[0].code() == grpc.StatusCode.FAILED_PRECONDITION


async def test_a_hold_finalizes_or_releases_once(merchant: Caller, service: Service) -> None:
    c = await merchant.create(given_name="H")
    await _adjust(merchant, c.id, 100)
    held = await merchant(
        "HoldPoints",
        loyalty_pb2.HoldPointsRequest(order_id="ord_h1", customer_id=c.id, points=40,
                                      currency="USD"),
    )  # fmt: skip
    assert held.hold.status == "held" and held.hold.discount.amount == 40
    assert await _balance(service, merchant, c.id) == (100, 100, 40)
    # A second order cannot take the held points.
    err = await asyncio.gather(
        merchant(
            "HoldPoints",
            loyalty_pb2.HoldPointsRequest(order_id="ord_h2", customer_id=c.id, points=61),
        ),
        return_exceptions=True,
    )
    assert read_error(err[0]).reason == "insufficient_points"  # type: ignore[arg-type]
    await merchant("ReleasePoints", loyalty_pb2.ReleasePointsRequest(order_id="ord_h1"))
    await merchant("ReleasePoints", loyalty_pb2.ReleasePointsRequest(order_id="ord_h1"))
    assert await _balance(service, merchant, c.id) == (100, 100, 0)
    await merchant(
        "HoldPoints",
        loyalty_pb2.HoldPointsRequest(order_id="ord_h3", customer_id=c.id, points=30),
    )
    for _ in range(2):
        await merchant("FinalizePoints", loyalty_pb2.FinalizePointsRequest(order_id="ord_h3"))
    assert await _balance(service, merchant, c.id) == (70, 70, 0)
    # A cancellation after confirmation gives the redeemed points back, once.
    for _ in range(2):
        await merchant(
            "ReverseOrderPoints", loyalty_pb2.ReverseOrderPointsRequest(order_id="ord_h3")
        )
    assert await _balance(service, merchant, c.id) == (100, 100, 0)


async def test_reversal_takes_back_what_an_order_earned(merchant: Caller, service: Service) -> None:
    c = await merchant.create(given_name="R")
    await _sale(service, merchant.merchant, "ord_rv", c.id, 5000)
    answer = await merchant(
        "ReverseOrderPoints",
        loyalty_pb2.ReverseOrderPointsRequest(order_id="ord_rv", reason="returned"),
    )
    assert [e.points for e in answer.entries] == [-50]
    assert await _balance(service, merchant, c.id) == (0, 0, 0)
    orders = await merchant(
        "ListCustomerOrders", customer_pb2.ListCustomerOrdersRequest(customer_id=c.id)
    )
    assert orders.orders[0].status == "reversed" and orders.summary.visit_count == 0


async def test_adjustments_need_a_reason_and_never_overdraw(merchant: Caller) -> None:
    c = await merchant.create(given_name="J")
    err = await asyncio.gather(_adjust(merchant, c.id, -1), return_exceptions=True)
    assert read_error(err[0]).reason == "insufficient_points"  # type: ignore[arg-type]
    # The debit asked is the field at fault, named with what it may be at most.
    assert [(v.field, v.description) for v in read_error(err[0]).violations] == [  # type: ignore[arg-type]
        ("points", "must take at most 0 points, what the customer has available")
    ]
    err = await asyncio.gather(
        merchant("AdjustPoints", loyalty_pb2.AdjustPointsRequest(customer_id=c.id, points=5)),
        return_exceptions=True,
    )
    assert [v.field for v in read_error(err[0]).violations] == ["reason"]  # type: ignore[arg-type]
    done = await _adjust(merchant, c.id, 25)
    assert (done.balance, done.entry.kind) == (25, "adjusted")
    history = await merchant(
        "ListPointsHistory", loyalty_pb2.ListPointsHistoryRequest(customer_id=c.id)
    )
    assert [(e.kind, e.points, e.balance_after) for e in history.entries] == [("adjusted", 25, 25)]


async def test_program_tiers_and_expiry(merchant: Caller, service: Service) -> None:
    program = loyalty_pb2.LoyaltyProgram(
        enabled=True,
        points_per_unit=1,
        tiers=[loyalty_pb2.Tier(name="gold", threshold_points=100, multiplier_bps=20_000)],
        expiry_days=30,
        point_value_minor=1,
    )
    saved = await merchant(
        "SetLoyaltyProgram", loyalty_pb2.SetLoyaltyProgramRequest(program=program)
    )
    assert saved.program.version == 2  # the program every merchant starts with is 1
    c = await merchant.create(given_name="T")
    await _sale(service, merchant.merchant, "ord_t1", c.id, 10_000)  # 100 points: gold
    got = await merchant("GetCustomer", customer_pb2.GetCustomerRequest(id=c.id))
    assert got.customer.tier == "gold"
    assert await _sale(service, merchant.merchant, "ord_t2", c.id, 1_000) == 20  # x2
    await merchant(
        "HoldPoints", loyalty_pb2.HoldPointsRequest(order_id="ord_t3", customer_id=c.id, points=5)
    )
    later = loyalty_pb2.ExpirePointsRequest()
    later.as_of.FromDatetime(datetime.now(UTC) + timedelta(days=31))
    expired = await merchant("ExpirePoints", later)
    # Everything is older than 30 days by then, but the 5 held points stay.
    assert expired.points == 115
    assert await _balance(service, merchant, c.id) == (5, 5, 5)
    again = loyalty_pb2.ExpirePointsRequest()
    again.as_of.FromDatetime(datetime.now(UTC) + timedelta(days=31))
    assert (await merchant("ExpirePoints", again)).points == 0
    err = await asyncio.gather(
        merchant(
            "SetLoyaltyProgram",
            loyalty_pb2.SetLoyaltyProgramRequest(program=program, expected_version=7),
        ),
        return_exceptions=True,
    )
    assert read_error(err[0]).reason == "version_mismatch"  # type: ignore[arg-type]


async def test_cancelling_an_order_that_redeemed_points_never_raises_the_tier(
    merchant: Caller, service: Service
) -> None:
    """The cancellation's one reversed entry gives back the redeemed 500 and takes back the
    10 earned (+490 in all), but only the earn counts towards the tier: it falls to none."""
    program = loyalty_pb2.LoyaltyProgram(
        enabled=True,
        points_per_unit=1,
        tiers=[loyalty_pb2.Tier(name="gold", threshold_points=100, multiplier_bps=20_000)],
        point_value_minor=1,
    )
    await merchant("SetLoyaltyProgram", loyalty_pb2.SetLoyaltyProgramRequest(program=program))
    c = await merchant.create(given_name="Tiered")
    await _adjust(merchant, c.id, 600)  # adjustments count for no tier
    await merchant(
        "HoldPoints",
        loyalty_pb2.HoldPointsRequest(order_id="ord_tc", customer_id=c.id, points=500,
                                      currency="USD"),
    )  # fmt: skip
    await merchant("FinalizePoints", loyalty_pb2.FinalizePointsRequest(order_id="ord_tc"))
    assert await _sale(service, merchant.merchant, "ord_tc", c.id, 1_000) == 10
    got = await merchant("GetCustomer", customer_pb2.GetCustomerRequest(id=c.id))
    assert got.customer.tier == ""

    answer = await merchant(
        "ReverseOrderPoints", loyalty_pb2.ReverseOrderPointsRequest(order_id="ord_tc")
    )

    assert [(e.kind, e.points) for e in answer.entries] == [("reversed", 490)]
    assert await _balance(service, merchant, c.id) == (600, 600, 0)
    got = await merchant("GetCustomer", customer_pb2.GetCustomerRequest(id=c.id))
    assert got.customer.tier == ""
    # The next 100 earned reach gold, and no sooner.
    assert await _sale(service, merchant.merchant, "ord_tc2", c.id, 9_900) == 99
    got = await merchant("GetCustomer", customer_pb2.GetCustomerRequest(id=c.id))
    assert got.customer.tier == ""
    await _sale(service, merchant.merchant, "ord_tc3", c.id, 100)
    got = await merchant("GetCustomer", customer_pb2.GetCustomerRequest(id=c.id))
    assert got.customer.tier == "gold"


async def test_the_background_sweep_expires_what_is_due(merchant: Caller, service: Service) -> None:
    from pos_customer.entrypoints.expiry import expire_all

    program = loyalty_pb2.LoyaltyProgram(enabled=True, points_per_unit=1, expiry_days=10)
    await merchant("SetLoyaltyProgram", loyalty_pb2.SetLoyaltyProgramRequest(program=program))
    c = await merchant.create(given_name="S")
    await _sale(service, merchant.merchant, "ord_s1", c.id, 4_200)
    # Not due yet.
    await expire_all(service.runtime.uow, datetime.now(UTC))
    assert await _balance(service, merchant, c.id) == (42, 42, 0)
    await expire_all(service.runtime.uow, datetime.now(UTC) + timedelta(days=11))
    assert await _balance(service, merchant, c.id) == (0, 0, 0)
    history = await merchant(
        "ListPointsHistory", loyalty_pb2.ListPointsHistoryRequest(customer_id=c.id)
    )
    assert [(e.kind, e.points) for e in history.entries] == [("expired", -42), ("earned", 42)]


async def test_a_confirmed_order_cancelled_later_gives_back_what_it_earned_once(
    merchant: Caller, service: Service
) -> None:
    from pos.order.v1 import events_pb2 as order_events
    from pos.order.v1 import order_pb2
    from pos_customer.entrypoints.consumers import on_order_cancelled

    c = await merchant.create(given_name="Cancelled")
    assert await _sale(service, merchant.merchant, "ord_cx1", c.id, 4000) == 40
    assert await _sale(service, merchant.merchant, "ord_cx2", c.id, 1000) == 10

    async def cancelled(order_id: str) -> None:
        message = order_events.OrderCancelled(order=order_pb2.Order(id=order_id, customer_id=c.id))
        async with service.runtime.uow().bind(merchant.merchant) as uow:
            await on_order_cancelled(uow, message)
            await uow.commit()

    await cancelled("ord_cx1")
    await cancelled("ord_cx1")  # delivered twice, or reversed by the saga already: once
    await cancelled("ord_never_confirmed")  # earned nothing: nothing to give back
    assert await _balance(service, merchant, c.id) == (10, 10, 0)
    history = await merchant(
        "ListPointsHistory", loyalty_pb2.ListPointsHistoryRequest(customer_id=c.id)
    )
    assert sorted((e.kind, e.points) for e in history.entries) == [
        ("earned", 10),
        ("earned", 40),
        ("reversed", -40),
    ]


async def test_returned_units_take_back_their_share_of_the_points_once_and_never_more(
    merchant: Caller, service: Service
) -> None:
    from pos.order.v1 import events_pb2 as order_events
    from pos.order.v1 import order_pb2
    from pos_customer.entrypoints.consumers import on_order_cancelled, on_order_returned

    c = await merchant.create(given_name="Returns")
    assert await _sale(service, merchant.merchant, "ord_rt1", c.id, 6040) == 60

    async def deliver(handler: Any, message: Any) -> None:
        await _deliver(service, merchant.merchant, (handler, message))

    def returned(return_id: str, still_paid: int) -> order_events.OrderReturned:
        order = order_pb2.Order(id="ord_rt1", customer_id=c.id, total=_usd(6040),
                                paid=_usd(still_paid))  # fmt: skip
        return order_events.OrderReturned(order=order, order_return=order_pb2.Return(id=return_id))

    await deliver(on_order_returned, returned("ret_1", 6040 - 2013))  # a third back
    assert (await _balance(service, merchant, c.id))[0] == 60 - 19  # 60 * 2013 // 6040 = 19
    await deliver(on_order_returned, returned("ret_1", 6040 - 2013))  # delivered again: once
    assert (await _balance(service, merchant, c.id))[0] == 41
    await deliver(on_order_returned, returned("ret_2", 0))  # the rest back: exactly all of it
    assert await _balance(service, merchant, c.id) == (0, 0, 0)
    history = await merchant(
        "ListPointsHistory", loyalty_pb2.ListPointsHistoryRequest(customer_id=c.id)
    )
    # Each reversal names the order and its return apart.
    assert [(e.kind, e.points, e.order_id, e.return_id) for e in history.entries] == [
        ("reversed", -41, "ord_rt1", "ret_2"),
        ("reversed", -19, "ord_rt1", "ret_1"),
        ("earned", 60, "ord_rt1", ""),
    ]
    cancel = order_events.OrderCancelled(order=order_pb2.Order(id="ord_rt1", customer_id=c.id))
    await deliver(on_order_cancelled, cancel)  # nothing left to take: never below what was
    assert await _balance(service, merchant, c.id) == (0, 0, 0)


async def test_returns_take_back_the_points_of_the_goods_returned_only(
    merchant: Caller, service: Service
) -> None:
    """A 50.00 gift card and a 12.00 mug: only the mug earns (12). Returning the card takes
    nothing back; a goodwill refund through the payments API takes nothing back either (it
    returns no goods); returning the mug takes back all it earned."""
    from pos.order.v1 import events_pb2 as order_events
    from pos.order.v1 import order_pb2
    from pos_customer.entrypoints.consumers import on_order_confirmed, on_order_returned

    c = await merchant.create(given_name="Gift")

    def order(paid: int) -> order_pb2.Order:
        card = order_pb2.OrderLine(
            sku="",
            line_total=_usd(5000),
            gift_card=order_pb2.OrderLineGiftCard(gift_card_id="gft_1"),
        )
        mug = order_pb2.OrderLine(sku="MUG", line_total=_usd(1200))
        return order_pb2.Order(id="ord_gc1", customer_id=c.id, location_id="loc_1",
                               total=_usd(6200), tax_total=_usd(0), paid=_usd(paid),
                               lines=[card, mug])  # fmt: skip

    async def deliver(handler: Any, message: Any) -> None:
        await _deliver(service, merchant.merchant, (handler, message))

    def returned(return_id: str, paid: int, goods_returned: int) -> order_events.OrderReturned:
        return order_events.OrderReturned(
            order=order(paid), order_return=order_pb2.Return(id=return_id),
            goods_total=_usd(1200), goods_returned=_usd(goods_returned),
        )  # fmt: skip

    await deliver(on_order_confirmed, order_events.OrderConfirmed(order=order(6200)))
    assert (await _balance(service, merchant, c.id))[0] == 12
    await deliver(on_order_returned, returned("ret_card", 1200, 0))  # the card back
    assert (await _balance(service, merchant, c.id))[0] == 12
    # 5.00 of goodwill then the mug back: the goods returned are the mug, all of them.
    await deliver(on_order_returned, returned("ret_mug", 0, 1200))
    assert (await _balance(service, merchant, c.id))[0] == 0


def _order_events(customer_id: str, order_id: str) -> dict[str, Any]:
    """The order's events as the order service publishes them: confirmed (6040 earns 60), a
    third returned, two thirds returned (refunded so far), cancelled; each with its handler."""
    from pos.order.v1 import events_pb2 as order_events
    from pos.order.v1 import order_pb2
    from pos_customer.entrypoints import consumers

    def order(still_paid: int) -> order_pb2.Order:
        usd = [money_pb2.Money(amount=a, currency="USD") for a in (6040, 0, still_paid)]
        return order_pb2.Order(id=order_id, customer_id=customer_id, location_id="loc_1",
                               total=usd[0], tax_total=usd[1], paid=usd[2])  # fmt: skip

    def returned(return_id: str, refunded: int) -> Any:
        message = order_events.OrderReturned(
            order=order(6040 - refunded), order_return=order_pb2.Return(id=return_id)
        )
        return consumers.on_order_returned, message

    return {
        "confirmed": (consumers.on_order_confirmed, order_events.OrderConfirmed(order=order(6040))),
        "ret_1": returned("ret_1", 2013),
        "ret_2": returned("ret_2", 4026),
        "cancelled": (consumers.on_order_cancelled, order_events.OrderCancelled(order=order(0))),
    }


async def _deliver(service: Service, merchant: str, event: tuple[Any, Any]) -> None:
    """What the consumer does with one message: its handler in its own transaction."""
    handler, message = event
    async with service.runtime.uow().bind(merchant) as uow:
        await handler(uow, message)
        await uow.commit()


@pytest.mark.parametrize(
    ("events", "balance"),
    [
        (("confirmed", "cancelled"), 0),
        # 60 * 2013 // 6040 = 19 back, then 60 * 4026 // 6040 = 39 in all: 21 left.
        (("confirmed", "ret_1", "ret_2"), 21),
        (("confirmed", "ret_1", "cancelled"), 0),
    ],
)
async def test_an_orders_events_give_the_same_balance_in_any_arrival_order(
    merchant: Caller, service: Service, events: tuple[str, ...], balance: int
) -> None:
    """The consumers are not ordered across event types: an order's cancellation or return
    may arrive before its order_confirmed. Whatever the order (and delivered twice), a
    cancelled order keeps no points and a returned one keeps only what its returns left."""
    c = await merchant.create(given_name="Arrivals")
    for n, arrival in enumerate(itertools.permutations(events)):
        order_id = f"ord_arr{n}"
        every = _order_events(c.id, order_id)
        before = (await _balance(service, merchant, c.id))[0]
        for name in arrival:
            await _deliver(service, merchant.merchant, every[name])
            await _deliver(service, merchant.merchant, every[name])  # redelivered: once
        after = await _balance(service, merchant, c.id)
        assert (after[0] - before, after[0], after[2]) == (balance, after[1], 0), arrival
    orders = await merchant(
        "ListCustomerOrders", customer_pb2.ListCustomerOrdersRequest(customer_id=c.id)
    )
    expected = "reversed" if "cancelled" in events else "confirmed"
    assert {o.status for o in orders.orders} == {expected}
    assert len(orders.orders) == len(list(itertools.permutations(events)))


async def test_an_earn_and_a_cancellation_arriving_at_once_leave_nothing(
    merchant: Caller, service: Service
) -> None:
    """Two consumers' transactions at the same time, each unable to see the other's rows
    before it commits: the cancelled orders still keep no points."""
    c = await merchant.create(given_name="Concurrent")
    every = [_order_events(c.id, f"ord_cc{n}") for n in range(10)]
    await asyncio.gather(
        *(
            _deliver(service, merchant.merchant, events[name])
            for events in every
            for name in ("cancelled", "confirmed")
        )
    )
    assert await _balance(service, merchant, c.id) == (0, 0, 0)


async def test_a_merge_announces_both_sides_of_the_points_it_moves(
    merchant: Caller, service: Service
) -> None:
    """The loser's `merged_out` and the winner's `merged_in` each go out as an adjustment, so
    a partner following balances by events keeps both right."""
    from pos.customer.v1 import customer_pb2 as cpb
    from pos.customer.v1 import events_pb2

    winner = await merchant.create(given_name="Keeps")
    loser = await merchant.create(given_name="Goes")
    await _adjust(merchant, winner.id, 5)
    await _adjust(merchant, loser.id, 40)
    await merchant(
        "MergeCustomers", cpb.MergeCustomersRequest(winner_id=winner.id, loser_id=loser.id)
    )

    rows = await service.sql(
        "SELECT payload FROM outbox WHERE merchant_id = :m AND event_type = :t ORDER BY seq",
        m=merchant.merchant,
        t=events_pb2.LoyaltyPointsAdjusted.DESCRIPTOR.full_name,
    )
    entries = []
    for (payload,) in rows:
        event = events_pb2.LoyaltyPointsAdjusted()
        event.ParseFromString(bytes(payload))
        entries.append(event.entry)
    moved = [
        (e.customer_id, e.kind, e.points, e.balance_after) for e in entries if "merged" in e.kind
    ]
    assert moved == [(loser.id, "merged_out", -40, 0), (winner.id, "merged_in", 40, 45)]


async def test_a_cancelled_fulfilment_takes_back_the_points_of_goods_never_handed_over(
    merchant: Caller, service: Service
) -> None:
    """An order of 60.00 earning 60 points, in two fulfilments of 40.00 and 20.00. The second
    is cancelled (its goods never leave the store): a third of the points goes, once, the entry
    naming the fulfilment. A return of 20.00 of the first then arrives carrying the growing
    figure (40.00 given back): a third more, never both shares twice. Another order hears the
    same events before its earn: the earn takes them back at once."""
    from pos.order.v1 import events_pb2 as order_events
    from pos.order.v1 import order_pb2
    from pos_customer.entrypoints.consumers import (
        names_a_customer,
        on_fulfillment_updated,
        on_order_returned,
    )

    c = await merchant.create(given_name="Pickup")

    async def deliver(handler: Any, message: Any) -> None:
        await _deliver(service, merchant.merchant, (handler, message))

    def cancelled(order_id: str, given_back: int) -> order_events.OrderFulfillmentUpdated:
        return order_events.OrderFulfillmentUpdated(
            order=order_pb2.Order(id=order_id, customer_id=c.id, total=_usd(6000)),
            fulfillment_id=f"{order_id}-2",
            goods_total=_usd(6000),
            goods_given_back=_usd(given_back),
        )

    def returned(order_id: str, given_back: int) -> order_events.OrderReturned:
        return order_events.OrderReturned(
            order=order_pb2.Order(id=order_id, customer_id=c.id, total=_usd(6000)),
            order_return=order_pb2.Return(id=f"ret_{order_id}"),
            goods_total=_usd(6000),
            goods_returned=_usd(given_back),
        )

    # Only a cancellation or expiry says what it gave back; any other step is no business here.
    step = order_events.OrderFulfillmentUpdated(
        order=order_pb2.Order(id="ord_fc1", customer_id=c.id), fulfillment_id="ord_fc1-1"
    )
    assert not names_a_customer(step) and names_a_customer(cancelled("ord_fc1", 2000))

    assert await _sale(service, merchant.merchant, "ord_fc1", c.id, 6000) == 60
    await deliver(on_fulfillment_updated, cancelled("ord_fc1", 2000))
    await deliver(on_fulfillment_updated, cancelled("ord_fc1", 2000))  # delivered again: once
    assert await _balance(service, merchant, c.id) == (40, 40, 0)
    await deliver(on_order_returned, returned("ord_fc1", 4000))
    assert await _balance(service, merchant, c.id) == (20, 20, 0)
    history = await merchant(
        "ListPointsHistory", loyalty_pb2.ListPointsHistoryRequest(customer_id=c.id)
    )
    assert [(e.kind, e.points, e.return_id, e.fulfillment_id) for e in history.entries] == [
        ("reversed", -20, "ret_ord_fc1", ""),
        ("reversed", -20, "", "ord_fc1-2"),
        ("earned", 60, "", ""),
    ]
    assert "not handed over" in history.entries[1].reason

    # Both events before the order's earn, the later figure first: the earn keeps 20 of 60.
    await deliver(on_order_returned, returned("ord_fc2", 4000))
    await deliver(on_fulfillment_updated, cancelled("ord_fc2", 2000))
    assert await _sale(service, merchant.merchant, "ord_fc2", c.id, 6000) == 60
    assert await _balance(service, merchant, c.id) == (40, 40, 0)


async def _hold(caller: Caller, order_id: str, customer_id: str, pts: int) -> Any:
    return await caller(
        "HoldPoints",
        loyalty_pb2.HoldPointsRequest(order_id=order_id, customer_id=customer_id, points=pts,
                                      currency="USD"),
    )  # fmt: skip


async def _refused(work: Any) -> str:
    err = await asyncio.gather(work, return_exceptions=True)
    return str(read_error(err[0]).reason)  # type: ignore[arg-type]


async def test_points_taken_back_after_they_were_held_or_spent_are_a_debt_never_lost(
    merchant: Caller, service: Service
) -> None:
    from pos.order.v1 import events_pb2 as order_events
    from pos.order.v1 import order_pb2
    from pos_customer.entrypoints.consumers import on_order_cancelled, on_order_returned

    c = await merchant.create(given_name="Debt")

    async def cancelled(order_id: str) -> None:
        message = order_events.OrderCancelled(order=order_pb2.Order(id=order_id, customer_id=c.id))
        await _deliver(service, merchant.merchant, (on_order_cancelled, message))

    # Held by an open order, then that order is cancelled too: nothing is left to redeem.
    assert await _sale(service, merchant.merchant, "ord_db1", c.id, 9000) == 90
    await _hold(merchant, "ord_db2", c.id, 90)
    await cancelled("ord_db1")
    assert await _balance(service, merchant, c.id) == (0, 0, 90)
    await merchant("ReleasePoints", loyalty_pb2.ReleasePointsRequest(order_id="ord_db2"))
    assert await _balance(service, merchant, c.id) == (0, 0, 0)
    assert await _refused(_hold(merchant, "ord_db3", c.id, 1)) == "insufficient_points"

    # Held, then redeemed by the open order's confirmation: the balance goes below zero.
    assert await _sale(service, merchant.merchant, "ord_db4", c.id, 9000) == 90
    await _hold(merchant, "ord_db5", c.id, 90)
    await cancelled("ord_db4")
    await merchant("FinalizePoints", loyalty_pb2.FinalizePointsRequest(order_id="ord_db5"))
    assert await _balance(service, merchant, c.id) == (-90, -90, 0)
    assert await _refused(_hold(merchant, "ord_db6", c.id, 1)) == "insufficient_points"
    assert await _refused(_adjust(merchant, c.id, -1)) == "insufficient_points"

    # Later earnings pay the debt off first.
    assert await _sale(service, merchant.merchant, "ord_db7", c.id, 12000) == 120
    assert await _balance(service, merchant, c.id) == (30, 30, 0)
    await _hold(merchant, "ord_db8", c.id, 30)

    # Spent, then the goods returned: the return's share is taken whole.
    d = await merchant.create(given_name="Returned")
    assert await _sale(service, merchant.merchant, "ord_dr1", d.id, 6000) == 60
    await _hold(merchant, "ord_dr2", d.id, 50)
    await merchant("FinalizePoints", loyalty_pb2.FinalizePointsRequest(order_id="ord_dr2"))
    order = order_pb2.Order(id="ord_dr1", customer_id=d.id, total=_usd(6000), paid=_usd(0))
    returned = order_events.OrderReturned(order=order, order_return=order_pb2.Return(id="ret_db"))
    await _deliver(service, merchant.merchant, (on_order_returned, returned))
    assert await _balance(service, merchant, d.id) == (-50, -50, 0)
    history = await merchant(
        "ListPointsHistory", loyalty_pb2.ListPointsHistoryRequest(customer_id=d.id)
    )
    assert [(e.kind, e.points, e.balance_after) for e in history.entries] == [
        ("reversed", -60, -50),
        ("redeemed", -50, 10),
        ("earned", 60, 60),
    ]


async def test_a_merge_counts_both_histories_towards_the_winners_tier(
    merchant: Caller, service: Service
) -> None:
    program = loyalty_pb2.LoyaltyProgram(
        enabled=True,
        points_per_unit=1,
        tiers=[loyalty_pb2.Tier(name="silver", threshold_points=40, multiplier_bps=20_000)],
        point_value_minor=1,
    )
    await merchant("SetLoyaltyProgram", loyalty_pb2.SetLoyaltyProgramRequest(program=program))

    async def tier(customer_id: str) -> str:
        got = await merchant("GetCustomer", customer_pb2.GetCustomerRequest(id=customer_id))
        return str(got.customer.tier)

    async def merge(winner: str, loser: str) -> None:
        request = customer_pb2.MergeCustomersRequest(winner_id=winner, loser_id=loser)
        await merchant("MergeCustomers", request)

    # The winner keeps its tier when the loser's order is returned after the merge.
    a = await merchant.create(given_name="A")
    b = await merchant.create(given_name="B")
    assert await _sale(service, merchant.merchant, "ord_mt1", a.id, 4_500) == 45
    assert await _sale(service, merchant.merchant, "ord_mt2", b.id, 3_700) == 37
    assert (await tier(a.id), await tier(b.id)) == ("silver", "")
    await merge(a.id, b.id)
    assert await _balance(service, merchant, a.id) == (82, 82, 0)
    await merchant("ReverseOrderPoints", loyalty_pb2.ReverseOrderPointsRequest(order_id="ord_mt2"))
    assert await _balance(service, merchant, a.id) == (45, 45, 0)
    assert await tier(a.id) == "silver"

    # A winner below the tier reaches it with the loser's earns, at the merge.
    c = await merchant.create(given_name="C")
    d = await merchant.create(given_name="D")
    e = await merchant.create(given_name="E")
    assert await _sale(service, merchant.merchant, "ord_mt3", c.id, 1_000) == 10
    assert await _sale(service, merchant.merchant, "ord_mt4", d.id, 2_000) == 20
    assert await _sale(service, merchant.merchant, "ord_mt5", e.id, 1_500) == 15
    await merge(d.id, e.id)
    assert await tier(d.id) == ""
    await merge(c.id, d.id)  # e's earns came through d's merge
    assert await tier(c.id) == "silver"
    assert await _sale(service, merchant.merchant, "ord_mt6", c.id, 1_000) == 20  # x2


async def test_every_change_of_points_is_a_new_version_of_the_customer(
    merchant: Caller, service: Service
) -> None:
    """The balance, the points held and the tier are part of the customer (GET answers them
    with its `version`, the gateway's ETag): each change of them, by hand, an earn, a hold, a
    redemption, a release, a reversal or an expiry, is one new version (however many rows
    its transaction wrote: an earn that reaches a tier is one), with `updated_at` moved so the
    change feed finds it, and a `customer_updated` carrying the customer as it now stands. A
    repeat that changes nothing is no new version."""
    from pos.customer.v1 import events_pb2

    program = loyalty_pb2.LoyaltyProgram(
        enabled=True,
        points_per_unit=1,
        tiers=[loyalty_pb2.Tier(name="gold", threshold_points=100, multiplier_bps=10_000)],
        expiry_days=30,
        point_value_minor=1,
    )
    await merchant("SetLoyaltyProgram", loyalty_pb2.SetLoyaltyProgramRequest(program=program))
    c = await merchant.create(given_name="Versioned")
    last = c

    async def announced() -> list[tuple[int, int, int, str]]:
        rows = await service.sql(
            "SELECT payload FROM outbox WHERE merchant_id = :m AND event_type = :t ORDER BY seq",
            m=merchant.merchant,
            t=events_pb2.CustomerUpdated.DESCRIPTOR.full_name,
        )
        found = [events_pb2.CustomerUpdated.FromString(bytes(r.payload)).customer for r in rows]
        return [(e.version, e.loyalty_points, e.points_held, e.tier) for e in found]

    async def changed_to(balance: int, held: int, tier: str) -> None:
        nonlocal last
        got = (await merchant("GetCustomer", customer_pb2.GetCustomerRequest(id=c.id))).customer
        assert (got.loyalty_points, got.points_held, got.tier) == (balance, held, tier)
        assert got.version == last.version + 1
        assert got.updated_at.ToDatetime() > last.updated_at.ToDatetime()
        # A partner polling from the last change it saw finds this one: at once, or once a
        # transaction open in the database when it was written (the outbox relay's, say) is
        # over, as the feed stops at the oldest one (pos_kit/changes.py).
        feed = customer_pb2.ListCustomersRequest(updated_since=last.updated_at)

        async def seen(feed: customer_pb2.ListCustomersRequest = feed) -> list[int]:
            listed = (await merchant("ListCustomers", feed)).customers
            return [x.version for x in listed if x.id == c.id]

        assert await polled(seen) == [got.version]
        assert (await announced())[-1] == (got.version, balance, held, tier)
        last = got

    async def unchanged() -> None:
        got = (await merchant("GetCustomer", customer_pb2.GetCustomerRequest(id=c.id))).customer
        assert got == last

    await _adjust(merchant, c.id, 300)
    await changed_to(300, 0, "")
    await _sale(service, merchant.merchant, "ord_v1", c.id, 10_000)  # 100 more: gold, at once
    await changed_to(400, 0, "gold")
    assert await _sale(service, merchant.merchant, "ord_v1", c.id, 10_000) == 0
    await unchanged()
    # The order's earn was 60 days ago: it expires, the 300 credited by hand today do not.
    async with service.runtime.engine.begin() as conn:
        await conn.execute(
            sa.text(
                "UPDATE points_ledger SET created_at = now() - interval '60 days'"
                " WHERE merchant_id = :m AND order_id = 'ord_v1'"
            ),
            {"m": merchant.merchant},
        )
    assert (await merchant("ExpirePoints", loyalty_pb2.ExpirePointsRequest())).points == 100
    await changed_to(300, 0, "gold")
    hold = loyalty_pb2.HoldPointsRequest(order_id="ord_v2", customer_id=c.id, points=20)
    await merchant("HoldPoints", hold)
    await changed_to(300, 20, "gold")
    for _ in range(2):
        await merchant("FinalizePoints", loyalty_pb2.FinalizePointsRequest(order_id="ord_v2"))
    await changed_to(280, 0, "gold")
    await merchant("HoldPoints", loyalty_pb2.HoldPointsRequest(
        order_id="ord_v3", customer_id=c.id, points=10))  # fmt: skip
    await changed_to(280, 10, "gold")
    for _ in range(2):
        await merchant("ReleasePoints", loyalty_pb2.ReleasePointsRequest(order_id="ord_v3"))
    await changed_to(280, 0, "gold")
    async with service.runtime.uow().bind(merchant.merchant) as uow:
        await points.reverse_returned(uow, "ord_v1", "ret_v1", 10_000, 5_000)
        await uow.commit()
    await changed_to(230, 0, "")  # half of the order's 100 back: below gold
    for _ in range(2):
        await merchant(
            "ReverseOrderPoints", loyalty_pb2.ReverseOrderPointsRequest(order_id="ord_v1")
        )
    await changed_to(180, 0, "")
    assert len(await announced()) == 9  # one a change, none for the repeats

    # A return heard before its order's earn changes no customer; the earn then takes the
    # return's share back at once: one version for both, announced once.
    d = await merchant.create(given_name="Returned early")
    async with service.runtime.uow().bind(merchant.merchant) as uow:
        await points.reverse_returned(uow, "ord_v4", "ret_v4", 10_000, 5_000)
        await uow.commit()
    assert len(await announced()) == 9
    await _sale(service, merchant.merchant, "ord_v4", d.id, 10_000)
    got = (await merchant("GetCustomer", customer_pb2.GetCustomerRequest(id=d.id))).customer
    assert (got.loyalty_points, got.version) == (50, d.version + 1)
    assert (await announced())[9:] == [(got.version, 50, 0, "")]


async def _set_program(caller: Caller, **fields: Any) -> None:
    program = loyalty_pb2.LoyaltyProgram(enabled=True, points_per_unit=1, point_value_minor=1)
    for name, value in fields.items():
        if name == "tiers":
            program.tiers.extend(value)
        else:
            setattr(program, name, value)
    await caller("SetLoyaltyProgram", loyalty_pb2.SetLoyaltyProgramRequest(program=program))


async def test_a_sale_earns_at_the_tier_the_customer_holds_when_it_is_heard(
    merchant: Caller, service: Service
) -> None:
    """The multiplier is the tier the ledger gives the customer now, not the one stored at
    their last earn: a tier every customer holds from the start (threshold 0) multiplies the
    first sale, a tier whose period has passed no longer multiplies, and a program without
    tiers takes the old tier away at the next earn."""
    await _set_program(
        merchant,
        tiers=[loyalty_pb2.Tier(name="member", threshold_points=0, multiplier_bps=20_000)],
    )
    new = await merchant.create(given_name="New")
    assert await _sale(service, merchant.merchant, "ord_tt1", new.id, 1_000) == 20

    await _set_program(
        merchant,
        tier_period_days=30,
        tiers=[loyalty_pb2.Tier(name="gold", threshold_points=100, multiplier_bps=20_000)],
    )
    c = await merchant.create(given_name="Lapsed")
    await _sale(service, merchant.merchant, "ord_tt2", c.id, 10_000)  # 100 points: gold
    got = await merchant("GetCustomer", customer_pb2.GetCustomerRequest(id=c.id))
    assert got.customer.tier == "gold"
    # Those 100 points were earned 60 days ago: out of the 30-day period by now.
    async with service.runtime.engine.begin() as conn:
        await conn.execute(
            sa.text(
                "UPDATE points_ledger SET created_at = now() - interval '60 days'"
                " WHERE merchant_id = :m AND customer_id = :c"
            ),
            {"m": merchant.merchant, "c": c.id},
        )
    assert await _sale(service, merchant.merchant, "ord_tt3", c.id, 1_000) == 10  # x1
    got = await merchant("GetCustomer", customer_pb2.GetCustomerRequest(id=c.id))
    assert got.customer.tier == ""

    d = await merchant.create(given_name="Gold")
    await _sale(service, merchant.merchant, "ord_tt4", d.id, 10_000)
    await _set_program(merchant)  # no tiers any more
    assert await _sale(service, merchant.merchant, "ord_tt5", d.id, 1_000) == 10
    got = await merchant("GetCustomer", customer_pb2.GetCustomerRequest(id=d.id))
    assert got.customer.tier == ""


async def test_a_program_change_re_tiers_its_customers_at_once(
    merchant: Caller, service: Service
) -> None:
    """New thresholds (PUT /v1/loyalty-program): the tier a customer is shown is the new
    program's at once, not at their next earn or reversal. Each customer whose tier moves is a
    new version, announced (`customer_updated`, `loyalty_tier_changed`); the others are not."""
    from pos.customer.v1 import events_pb2

    gold100 = loyalty_pb2.Tier(name="gold", threshold_points=100, multiplier_bps=20_000)
    await _set_program(merchant, tiers=[gold100])
    c = await merchant.create(given_name="Earner")
    idle = await merchant.create(given_name="Idle")
    await _sale(service, merchant.merchant, "ord_rt1", c.id, 10_000)  # 100 points: gold

    async def shown(customer_id: str) -> tuple[str, int]:
        got = await merchant("GetCustomer", customer_pb2.GetCustomerRequest(id=customer_id))
        return got.customer.tier, got.customer.version

    tier, version = await shown(c.id)
    idle_version = (await shown(idle.id))[1]
    assert tier == "gold"

    await _set_program(
        merchant,
        tiers=[
            loyalty_pb2.Tier(name="gold", threshold_points=500, multiplier_bps=20_000),
            loyalty_pb2.Tier(name="silver", threshold_points=50, multiplier_bps=15_000),
        ],
    )
    assert await shown(c.id) == ("silver", version + 1)
    assert await shown(idle.id) == ("", idle_version)  # nothing moved: no new version
    listed = await merchant("ListCustomers", customer_pb2.ListCustomersRequest())
    assert {x.id: x.tier for x in listed.customers}[c.id] == "silver"

    # A tier every customer holds from the start: theirs at once, earned or not.
    await _set_program(
        merchant,
        tiers=[loyalty_pb2.Tier(name="member", threshold_points=0, multiplier_bps=10_000)],
    )
    assert (await shown(c.id))[0] == "member" and (await shown(idle.id))[0] == "member"
    await _set_program(merchant)  # no tiers any more
    assert (await shown(c.id))[0] == "" and (await shown(idle.id))[0] == ""

    rows = await service.sql(
        "SELECT payload FROM outbox WHERE merchant_id = :m AND event_type = :t ORDER BY seq",
        m=merchant.merchant,
        t=events_pb2.LoyaltyTierChanged.DESCRIPTOR.full_name,
    )
    changes = []
    for (payload,) in rows:
        event = events_pb2.LoyaltyTierChanged()
        event.ParseFromString(bytes(payload))
        changes.append((event.customer_id, event.previous_tier, event.tier))
    assert changes == [
        (c.id, "", "gold"),
        (c.id, "gold", "silver"),
        *sorted([(c.id, "silver", "member"), (idle.id, "", "member")]),
        *sorted([(c.id, "member", ""), (idle.id, "member", "")]),
    ]


async def test_taking_back_a_recent_earn_leaves_old_points_to_expire(
    merchant: Caller, service: Service
) -> None:
    """Expiry spends the oldest credits first, but a reversal takes back its own order's earn,
    not the oldest points: 100 earned 60 days ago, 50 earned today and taken back today by the
    order's cancellation, a 30-day expiry: the 100 old points are unspent and all expire."""
    await _set_program(merchant, expiry_days=30)
    c = await merchant.create(given_name="Lapsing")
    await _sale(service, merchant.merchant, "ord_xo1", c.id, 10_000)
    async with service.runtime.engine.begin() as conn:
        await conn.execute(
            sa.text(
                "UPDATE points_ledger SET created_at = now() - interval '60 days'"
                " WHERE merchant_id = :m AND customer_id = :c"
            ),
            {"m": merchant.merchant, "c": c.id},
        )
    await _sale(service, merchant.merchant, "ord_xo2", c.id, 5_000)
    async with service.runtime.uow().bind(merchant.merchant) as uow:
        await points.reverse_order(uow, "ord_xo2", "cancelled")
        await uow.commit()
    assert await _balance(service, merchant, c.id) == (100, 100, 0)
    expired = await merchant("ExpirePoints", loyalty_pb2.ExpirePointsRequest())
    assert expired.points == 100
    assert await _balance(service, merchant, c.id) == (0, 0, 0)


async def test_a_merge_does_not_renew_the_points_it_moves(
    merchant: Caller, service: Service
) -> None:
    """Points keep their age through a merge: 100 earned 60 days ago by a duplicate merged
    today expire under a 30-day expiry, as they would have on the duplicate."""
    await _set_program(merchant, expiry_days=30)
    old = await merchant.create(given_name="Duplicate")
    await _sale(service, merchant.merchant, "ord_xm1", old.id, 10_000)
    async with service.runtime.engine.begin() as conn:
        await conn.execute(
            sa.text(
                "UPDATE points_ledger SET created_at = now() - interval '60 days'"
                " WHERE merchant_id = :m AND customer_id = :c"
            ),
            {"m": merchant.merchant, "c": old.id},
        )
    winner = await merchant.create(given_name="Winner")
    await _sale(service, merchant.merchant, "ord_xm2", winner.id, 2_000)  # 20 recent
    await merchant(
        "MergeCustomers",
        customer_pb2.MergeCustomersRequest(winner_id=winner.id, loser_id=old.id),
    )
    assert await _balance(service, merchant, winner.id) == (120, 120, 0)
    expired = await merchant("ExpirePoints", loyalty_pb2.ExpirePointsRequest())
    assert (expired.customers, expired.points) == (1, 100)
    assert await _balance(service, merchant, winner.id) == (20, 20, 0)
    assert (await merchant("ExpirePoints", loyalty_pb2.ExpirePointsRequest())).points == 0


async def test_points_credited_by_hand_expire_as_earned_points_do(
    merchant: Caller, service: Service
) -> None:
    """A credit by hand is points like any other: under a 30-day expiry, 100 credited 60 days
    ago expire (the sweep finds a customer whose only old credit is one), 30 credited today
    and 20 earned today do not; a debit by hand spends the oldest credits first, as a
    redemption does."""
    await _set_program(merchant, expiry_days=30)
    c = await merchant.create(given_name="Credited")
    await _adjust(merchant, c.id, 100)
    d = await merchant.create(given_name="Debited")
    await _adjust(merchant, d.id, 100)
    async with service.runtime.engine.begin() as conn:
        await conn.execute(
            sa.text(
                "UPDATE points_ledger SET created_at = now() - interval '60 days'"
                " WHERE merchant_id = :m"
            ),
            {"m": merchant.merchant},
        )
    await _adjust(merchant, c.id, 30)
    await _sale(service, merchant.merchant, "ord_xa1", c.id, 2_000)
    await _adjust(merchant, d.id, -40)
    expired = await merchant("ExpirePoints", loyalty_pb2.ExpirePointsRequest())
    assert (expired.customers, expired.points) == (2, 160)
    assert await _balance(service, merchant, c.id) == (50, 50, 0)
    assert await _balance(service, merchant, d.id) == (0, 0, 0)
    assert (await merchant("ExpirePoints", loyalty_pb2.ExpirePointsRequest())).points == 0
    history = await merchant(
        "ListPointsHistory", loyalty_pb2.ListPointsHistoryRequest(customer_id=c.id)
    )
    assert [(e.kind, e.points) for e in history.entries] == [
        ("expired", -100),
        ("earned", 20),
        ("adjusted", 30),
        ("adjusted", 100),
    ]


async def test_a_hold_naming_a_duplicate_merged_away_holds_the_survivors_points(
    merchant: Caller, service: Service
) -> None:
    """A sale rung up for a duplicate just merged away (the order service has not heard of the
    merge yet) redeems the survivor's points, as its earn and its finalisation are theirs:
    the duplicate's 100 points moved to the survivor with the merge, and the hold for 80
    takes them there instead of refusing the customer as unknown."""
    survivor = await merchant.create(given_name="Survivor")
    duplicate = await merchant.create(given_name="Duplicate")
    await _adjust(merchant, duplicate.id, 100)
    await merchant(
        "MergeCustomers",
        customer_pb2.MergeCustomersRequest(winner_id=survivor.id, loser_id=duplicate.id),
    )

    held = await merchant(
        "HoldPoints",
        loyalty_pb2.HoldPointsRequest(order_id="ord_hm1", customer_id=duplicate.id, points=80,
                                      currency="USD"),
    )  # fmt: skip

    assert (held.hold.customer_id, held.hold.points) == (survivor.id, 80)
    assert await _balance(service, merchant, survivor.id) == (100, 100, 80)
    # Holding again under either id is the same hold; past what is left is refused.
    for named in (duplicate.id, survivor.id):
        again = loyalty_pb2.HoldPointsRequest(order_id="ord_hm1", customer_id=named, points=80)
        assert (await merchant("HoldPoints", again)).hold.customer_id == survivor.id
    err = await asyncio.gather(
        merchant(
            "HoldPoints",
            loyalty_pb2.HoldPointsRequest(order_id="ord_hm2", customer_id=duplicate.id,
                                          points=21),
        ),
        return_exceptions=True,
    )  # fmt: skip
    assert read_error(err[0]).reason == "insufficient_points"  # type: ignore[arg-type]
    await merchant("FinalizePoints", loyalty_pb2.FinalizePointsRequest(order_id="ord_hm1"))
    assert await _balance(service, merchant, survivor.id) == (20, 20, 0)
    assert await _balance(service, merchant, duplicate.id) == (0, 0, 0)


async def test_a_customer_made_under_a_tier_everyone_holds_holds_it_from_the_start(
    merchant: Caller,
) -> None:
    """A tier at threshold 0 is every customer's: one created (one by one, by upsert or in a
    batch) after it was set holds it at once, not from their first earn; without one, none."""
    member = loyalty_pb2.Tier(name="member", threshold_points=0, multiplier_bps=10_000)
    gold = loyalty_pb2.Tier(name="gold", threshold_points=500, multiplier_bps=20_000)
    await _set_program(merchant, tiers=[member, gold])
    one = await merchant.create(given_name="One")
    upserted = await merchant(
        "UpsertCustomer",
        customer_pb2.UpsertCustomerRequest(
            profile=customer_pb2.ProfileFields(external_id="tier-up", given_name="Up")
        ),
    )
    batch = await merchant(
        "BatchUpsertCustomers",
        customer_pb2.BatchUpsertCustomersRequest(
            customers=[customer_pb2.ProfileFields(external_id=f"tier-{i}") for i in range(2)]
        ),
    )
    made = [one, upserted.customer, *batch.customers]
    assert [c.tier for c in made] == ["member"] * 4
    for c in made:
        got = await merchant("GetCustomer", customer_pb2.GetCustomerRequest(id=c.id))
        assert got.customer.tier == "member"
    await _set_program(merchant, tiers=[gold])
    assert (await merchant.create(given_name="Later")).tier == ""


async def test_a_duplicate_erased_after_its_merge_still_earns_and_gives_back_for_the_survivor(
    merchant: Caller, service: Service
) -> None:
    """A duplicate merged away and then erased (its id named on its own) still leads to the
    survivor: an order of the duplicate's confirmed after the erasure earns for the survivor,
    and one it earned for before the merge gives its points back from the survivor when it is
    cancelled. Before, the erased duplicate led nowhere: the survivor kept the points of a
    refunded order and earned nothing for a sale."""
    winner = await merchant.create(given_name="Survives")
    loser = await merchant.create(given_name="Erased")
    assert await _sale(service, merchant.merchant, "ord_er1", loser.id, 2500) == 25
    await merchant(
        "MergeCustomers",
        customer_pb2.MergeCustomersRequest(winner_id=winner.id, loser_id=loser.id),
    )
    await merchant("EraseCustomer", customer_pb2.EraseCustomerRequest(id=loser.id))
    assert await _balance(service, merchant, winner.id) == (25, 25, 0)

    async with service.runtime.uow().bind(merchant.merchant) as uow:
        taken = await points.reverse_order(uow, "ord_er1", "cancelled")
        await uow.commit()
    assert [(e.customer_id, e.points) for e in taken] == [(winner.id, -25)]
    assert await _balance(service, merchant, winner.id) == (0, 0, 0)

    assert await _sale(service, merchant.merchant, "ord_er2", loser.id, 900) == 9
    assert await _balance(service, merchant, winner.id) == (9, 9, 0)
    orders = await merchant(
        "ListCustomerOrders", customer_pb2.ListCustomerOrdersRequest(customer_id=winner.id)
    )
    assert "ord_er2" in [o.order_id for o in orders.orders]
