"""The refund of returned units, on generated orders (lines, an order-level discount, tax,
several tenders) and generated sequences of partial returns: never more than was paid, exactly
what was paid when everything comes back, to the cent, and no tender refunded past its
capture."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime, timedelta
from fractions import Fraction

import pytest
from hypothesis import given
from hypothesis import strategies as st

from pos_kit.errors import Conflict, InvalidArgument
from pos_kit.money import Money
from pos_order.domain.model import (
    Fulfillment,
    FulfillmentStatus,
    FulfillmentType,
    Order,
    OrderLine,
    OrderStatus,
    Tender,
    TenderRecord,
    TenderState,
    Totals,
    compute_totals,
)
from pos_order.domain.returns import (
    Refunded,
    Return,
    ReturnLine,
    ReturnLineRequest,
    ReturnRequest,
    ReturnStatus,
    SoldLine,
    TenderRefund,
    UnitsRefund,
    adjusted_in_fulfillment,
    allocate,
    attributed,
    lowest_sold,
    order_paid_per_line,
    plan_return,
    refunded,
    tenders_left,
    validate_request,
)

USD = "USD"
SOLD = datetime(2026, 11, 1, 12, tzinfo=UTC)


def sold_order(
    lines: list[tuple[int, int]],
    discount: int,
    tax_bps: int,
    tender_weights: list[int],
    gift_cards: list[int] = (),  # type: ignore[assignment]
) -> Order:
    made = [
        OrderLine(f"SKU{i}", f"Item {i}", q, Money(p, USD), "f1", id=f"L{i + 1}")
        for i, (p, q) in enumerate(lines)
    ]
    made += [
        OrderLine(
            "", "Gift card", 1, Money(a, USD), "f1", id=f"L{len(made) + k + 1}", gift_card=True
        )
        for k, a in enumerate(gift_cards)
    ]
    totals = compute_totals(made, Money(discount, USD), tax_bps, USD)
    order = Order(
        id="ord_1",
        location_id="loc_1",
        customer_id="",
        lines=made,
        totals=totals,
        discounts_applied=True,
        status=OrderStatus.COMPLETED,
        fulfillments=[
            Fulfillment("f1", FulfillmentType.IN_STORE, "loc_1", FulfillmentStatus.FULFILLED)
        ],
        created_at=SOLD,
    )
    for n, part in enumerate(allocate(totals.total.amount, tender_weights), start=1):
        if part > 0:
            order.saga.tenders.append(
                TenderRecord(
                    n,
                    Tender.CARD,
                    part,
                    f"ord_1/payment/{n}",
                    payment_id=f"pay_{n}",
                    state=TenderState.CAPTURED,
                    captured=part,
                )
            )
    return order


def do_return(order: Order, done: list[Return], asks: list[tuple[str, int]]) -> Return:
    req = ReturnRequest(
        f"req-{len(done)}", order.id, [ReturnLineRequest(i, q) for i, q in asks], "unwanted"
    )
    ret = plan_return(
        order, done, req, f"ret_{len(done)}", SOLD + timedelta(days=1), 30,
        tenders_left(order, done),
    )  # fmt: skip
    # Completed: its refunds now count in the tenders' refunded amounts.
    ret.status = ReturnStatus.COMPLETED
    refunded(order, ret)
    done.append(ret)
    return ret


orders = st.builds(
    sold_order,
    lines=st.lists(st.tuples(st.integers(1, 50_000), st.integers(1, 12)), min_size=1, max_size=6),
    discount=st.integers(0, 200_000),
    tax_bps=st.integers(0, 2_500),
    tender_weights=st.lists(st.integers(0, 100), min_size=1, max_size=4).filter(any),
    gift_cards=st.lists(st.integers(1, 10_000), max_size=2),
)


@given(order=orders, data=st.data())
def test_refunds_over_any_sequence_of_returns_are_exactly_what_was_paid(
    order: Order, data: st.DataObject
) -> None:
    paid = order_paid_per_line(order)
    # The lines' paid totals are the order's total, to the cent.
    assert sum(p.paid for p in paid.values()) == order.totals.total.amount
    goods = [ln for ln in order.lines if not ln.gift_card]
    left = {ln.id: ln.quantity for ln in goods}
    done: list[Return] = []
    returned_all = data.draw(st.booleans())
    while any(left.values()):
        open_lines = [i for i, n in left.items() if n > 0]
        chosen = data.draw(st.lists(st.sampled_from(open_lines), min_size=1, unique=True))
        asks = [(i, data.draw(st.integers(1, left[i]))) for i in chosen]
        do_return(order, done, asks)
        for i, q in asks:
            left[i] -= q
        if not returned_all and data.draw(st.booleans()):
            break
    back = {ln.id: sum(r.units(ln.id) for r in done) for ln in goods}
    for ln in goods:
        got = sum(rl.amount for r in done for rl in r.lines if rl.line_id == ln.id)
        # Within a cent of the exact share of what the line paid, never above it ...
        exact = Fraction(paid[ln.id].paid * back[ln.id], ln.quantity)
        assert exact - 1 < got <= exact
        # ... and exactly what it paid once every unit is back.
        if back[ln.id] == ln.quantity:
            assert got == paid[ln.id].paid
    total = sum(r.amount for r in done)
    assert total <= order.totals.total.amount
    if all(back[ln.id] == ln.quantity for ln in goods):
        gift_value = sum(ln.line_total.amount for ln in order.lines if ln.gift_card)
        assert total == order.totals.total.amount - gift_value
    # Each return's tender amounts add up to its refund; no tender past its capture.
    for r in done:
        assert sum(t.amount for t in r.tender_amounts) == r.amount
    for t in order.saga.tenders:
        taken = sum(
            x.amount for r in done for x in r.tender_amounts if x.payment_id == t.payment_id
        )
        assert taken <= t.captured


def test_the_refund_is_spread_from_the_last_tender_taken_backwards() -> None:
    order = sold_order([(1000, 3)], 0, 0, [1, 2])  # 30.00: pay_1 10.00, pay_2 20.00
    ret = do_return(order, [], [("L1", 3)])
    assert [(t.payment_id, t.amount) for t in ret.tender_amounts] == [
        ("pay_2", 2000),
        ("pay_1", 1000),
    ]


def test_a_refund_counts_once_whether_its_answer_or_its_event_comes_first() -> None:
    def fresh() -> Order:
        order = sold_order([(1000, 3)], 0, 0, [1, 2])  # pay_1 10.00, pay_2 20.00
        # A refund through the payments API, heard by its event: pay_2 refunded 5.00 in all.
        assert order.refunded_in_all("pay_2", 500) and order.paid == 2500
        assert not order.refunded_in_all("pay_2", 500)  # the same event again
        assert not order.refunded_in_all("pay_9", 500)  # no tender of this order
        return order

    def returned(order: Order, told: int | None) -> Return:
        ret = do_return(order, [], [("L1", 1)])  # 10.00, from pay_2 (15.00 left there)
        assert [(t.payment_id, t.amount) for t in ret.tender_amounts] == [("pay_2", 1000)]
        return replace(ret, refunds=[Refunded("rfd_2", "pay_2", 1000, "succeeded", told)])

    # The return's answer says pay_2 refunded 15.00 in all; its event afterwards, or an older
    # one late, changes nothing.
    order = fresh()
    ret = returned(order, 1500)
    order.saga.tenders[1].refunded = 0  # as before the return completed
    refunded(order, ret)
    assert order.paid == 1500
    assert not order.refunded_in_all("pay_2", 1500) and not order.refunded_in_all("pay_2", 500)
    # Its event first, then the return completes: the same.
    order = fresh()
    ret = returned(order, 1500)
    order.saga.tenders[1].refunded = 0
    assert order.refunded_in_all("pay_2", 1500) and order.paid == 1500
    refunded(order, ret)
    assert order.paid == 1500
    # An answer stored before answers said so: the return's own count, until the event says
    # more; never the two added.
    order = fresh()
    ret = returned(order, None)
    order.saga.tenders[1].refunded = 0
    refunded(order, ret)
    assert order.paid == 2000
    assert order.refunded_in_all("pay_2", 1500) and order.paid == 1500


def test_a_pending_returns_refund_already_heard_is_not_taken_twice_from_what_is_left() -> None:
    order = sold_order([(1000, 3)], 0, 0, [1])  # 30.00 on pay_1
    req = ReturnRequest("req-a", order.id, [ReturnLineRequest("L1", 1)], "unwanted")
    pending = plan_return(order, [], req, "ret_a", SOLD + timedelta(days=1), 30,
                          tenders_left(order, []))  # fmt: skip
    assert pending.status is ReturnStatus.PENDING
    # Its refund went through and was heard; the return is not recorded completed yet.
    assert order.refunded_in_all("pay_1", 1000)
    assert tenders_left(order, [pending]) == [("pay_1", 2000)]
    # A refund made elsewhere meanwhile is taken off too.
    assert order.refunded_in_all("pay_1", 1500)
    assert tenders_left(order, [pending]) == [("pay_1", 1500)]


def test_an_order_discount_and_tax_are_shared_by_value_and_the_last_unit_takes_the_rest() -> None:
    # 3 x 10.00 + 1 x 5.00 = 35.00, 5.00 off, 10 % tax on 30.00 = 3.00: total 33.00.
    order = sold_order([(1000, 3), (500, 1)], 500, 1000, [1])
    assert order.totals.total.amount == 3300
    paid = order_paid_per_line(order)
    # L1 takes 30/35 of the discount (4.29 by largest remainder), L2 the rest (0.71).
    assert (paid["L1"].discount, paid["L2"].discount) == (429, 71)
    assert paid["L1"].paid + paid["L2"].paid == 3300
    done: list[Return] = []
    first = do_return(order, done, [("L1", 1)])
    second = do_return(order, done, [("L1", 1)])
    third = do_return(order, done, [("L1", 1)])
    assert first.amount + second.amount + third.amount == paid["L1"].paid
    assert (
        max(first.amount, second.amount, third.amount)
        - min(first.amount, second.amount, third.amount)
        <= 1
    )


def test_bad_returns_are_refused_naming_the_field() -> None:
    order = sold_order([(1000, 2)], 0, 0, [1], gift_cards=[5000])
    done: list[Return] = []
    do_return(order, done, [("L1", 1)])
    cases = {
        "lines[0].quantity": [("L1", 2)],  # one left
        "lines[0].line_id": [("L9", 1)],  # not a line of the order
    }
    for field, asks in cases.items():
        with pytest.raises(InvalidArgument) as err:
            do_return(order, done, asks)
        assert [v.field for v in err.value.violations] == [field]
    with pytest.raises(InvalidArgument) as err:
        do_return(order, done, [("L2", 1)])  # the gift card line
    assert [v.field for v in err.value.violations] == ["lines[0].line_id"]
    late = ReturnRequest("late", order.id, [ReturnLineRequest("L1", 1)], "unwanted")
    with pytest.raises(Conflict) as closed:
        plan_return(order, done, late, "ret_x", SOLD + timedelta(days=31), 30, [])
    assert closed.value.code == "return_window_closed"
    overridden = ReturnRequest(
        "late", order.id, [ReturnLineRequest("L1", 1)], "unwanted", override_reason="manager ok"
    )
    ret = plan_return(
        order, done, overridden, "ret_x", SOLD + timedelta(days=31), 30,
        tenders_left(order, done),
    )  # fmt: skip
    assert ret.amount == 1000


def test_units_a_return_still_being_made_holds_are_a_conflict_not_a_bad_request() -> None:
    """3 sold, 1 returned, 2 in a return whose refunds are under way (it may yet fail and give
    them back): asking for 1 more is a 409 `return_in_progress` naming the quantity, to retry;
    asking for more than the 2 the order could ever give back is still the 400."""
    order = sold_order([(1000, 3)], 0, 0, [1])
    done: list[Return] = []
    do_return(order, done, [("L1", 1)])
    req = ReturnRequest("req-p", order.id, [ReturnLineRequest("L1", 2)], "unwanted")
    making = plan_return(
        order, done, req, "ret_p", SOLD + timedelta(days=1), 30, tenders_left(order, done)
    )
    assert making.status is ReturnStatus.PENDING
    earlier = [*done, making]
    with pytest.raises(Conflict) as busy:
        do_return(order, earlier, [("L1", 1)])
    assert busy.value.code == "return_in_progress"
    assert [v.field for v in busy.value.violations] == ["lines[0].quantity"]
    with pytest.raises(InvalidArgument) as bad:
        do_return(order, earlier, [("L1", 3)])
    assert (
        "1 already returned, 2 in a return still being made" in bad.value.violations[0].description
    )


def test_units_of_a_return_still_being_made_are_not_back_for_the_last_return() -> None:
    """Two tees (L1) and a mug (L2) on one card (62.00); both tees in an exchange still being
    made (its return pending: the new order's payment may yet fail and the exchange be
    dropped), its 50.00 credit set aside on the card; 10.00 given back by goodwill since. The
    mug (12.00) is not the order's last units while that return may be undone: worth more
    than the card still holds (2.00), it is refused (409 `amount_exceeds_refundable`), as it
    would be without the exchange. Once the exchange's return is done (completed, or refused
    for good and waiting for a person, never dropped), the mug is the last and takes what is
    left; goodwill, credit and refunds then add up to what the card took, never more."""
    order = sold_order([(2500, 2), (1200, 1)], 0, 0, [1])
    assert order.totals.total.amount == 6200
    at = SOLD + timedelta(days=1)
    swap = ReturnRequest("req-x", order.id, [ReturnLineRequest("L1", 2)], "wrong_size")
    exchanged = plan_return(order, [], swap, "ret_x", at, 30, [], spread=False)
    exchanged.exchange_order_id, exchanged.credited = "ord_2", exchanged.amount
    exchanged.credit_from = [TenderRefund("pay_1", exchanged.amount)]
    assert exchanged.status is ReturnStatus.PENDING and exchanged.credited == 5000
    assert order.refunded_in_all("pay_1", 1000)  # goodwill, outside the returns
    mug = ReturnRequest("req-m", order.id, [ReturnLineRequest("L2", 1)], "unwanted")

    def mug_back(earlier: list[Return]) -> Return:
        return plan_return(order, earlier, mug, "ret_m", at, 30, tenders_left(order, earlier))

    with pytest.raises(Conflict) as refused:
        mug_back([exchanged])
    assert refused.value.code == "amount_exceeds_refundable"
    assert refused.value.metadata == {"refundable": "200"}
    assert [v.field for v in refused.value.violations] == ["lines"]

    for done in (
        replace(exchanged, status=ReturnStatus.COMPLETED),
        replace(exchanged, refusal="refund_failed"),
    ):
        last = mug_back([done])
        assert last.amount == 200 and [ln.amount for ln in last.lines] == [200]
        assert [(t.payment_id, t.amount) for t in last.tender_amounts] == [("pay_1", 200)]
        assert 1000 + exchanged.credited + last.amount == order.saga.tenders[0].captured

    # The exchange not made (its return dropped, its credit released): the mug takes its
    # whole price, which the card still holds.
    assert mug_back([]).amount == 1200


def test_past_the_window_an_override_reason_of_spaces_is_no_reason() -> None:
    """Blank after trimming it is a 400 naming it; the window's 409 names it as what to send;
    one kept is kept trimmed."""
    order = sold_order([(1000, 2)], 0, 0, [1])
    late = SOLD + timedelta(days=31)
    blank = ReturnRequest(
        "late", order.id, [ReturnLineRequest("L1", 1)], "unwanted", override_reason="   "
    )
    with pytest.raises(InvalidArgument) as err:
        validate_request(blank)
    assert [v.field for v in err.value.violations] == ["override_reason"]
    with pytest.raises(Conflict) as closed:
        plan_return(order, [], blank, "ret_x", late, 30, tenders_left(order, []))
    assert closed.value.code == "return_window_closed"
    assert [v.field for v in closed.value.violations] == ["override_reason"]
    padded = replace(blank, override_reason="  manager ok \n")
    validate_request(padded)
    ret = plan_return(order, [], padded, "ret_x", late, 30, tenders_left(order, []))
    assert ret.override_reason == "manager ok"


def test_a_line_refunds_its_own_discounts_and_tax_as_the_pricing_step_stored_them() -> None:
    # Half-price mugs: the offer is the mug's alone, so a tee returned refunds all it paid
    # (25.00 + 2.06 tax), not a share of the mug's discount.
    order = sold_order([(2500, 1), (1200, 1)], 0, 0, [1])
    tee, mug = order.lines
    tee.tax, tee.taxes = 206, [("tax", 206)]
    mug.discount, mug.tax, mug.taxes = 600, 50, [("tax", 50)]
    order.totals = Totals(Money(3700, USD), Money(600, USD), Money(256, USD), Money(3356, USD))
    order.saga.tenders[0].amount = order.saga.tenders[0].captured = 3356
    paid = order_paid_per_line(order)
    assert (paid["L1"].paid, paid["L2"].paid) == (2706, 650)
    assert do_return(order, [], [("L1", 1)]).amount == 2706
    # Lines that do not account for the order's totals: shared by value, as before.
    mug.discount = 0
    assert order_paid_per_line(order)["L1"].discount > 0


def test_a_return_without_a_receipt_prices_a_unit_after_its_own_lines_discount() -> None:
    # An order of a tee (2 x 25.00) and a mug (12.00) with 10.00 off the tees only.
    tee = SoldLine("TEE", 2500, 2, 1000, 1000, 6200, 1000)
    mug = SoldLine("MUG", 1200, 1, 0, 1000, 6200, 1000)
    assert (tee.unit_sold_for, mug.unit_sold_for) == (2000, 1200)
    # The same order priced before lines kept their discounts: the discount shared by value.
    old_tee, old_mug = (
        SoldLine("TEE", 2500, 2, None, 0, 6200, 1000),
        SoldLine("MUG", 1200, 1, None, 0, 6200, 1000),
    )
    assert (old_tee.unit_sold_for, old_mug.unit_sold_for) == (2096, 1006)
    # The lowest of each SKU over several sales; a remainder never credits more than paid.
    odd = SoldLine("TEE", 2500, 3, 1000, 1000, 7500, 1000)  # 65.00 for three: 21.66 each
    assert lowest_sold([tee, mug, odd]) == {"TEE": 2000, "MUG": 1200}
    assert lowest_sold([odd]) == {"TEE": 2166}


def _adjusted_return(
    order: Order, done: list[Return], asks: list[tuple[str, int]], refunds: list[UnitsRefund]
) -> Return:
    at = SOLD + timedelta(days=1, minutes=len(done))
    req = ReturnRequest(
        f"req-{len(done)}", order.id, [ReturnLineRequest(i, q) for i, q in asks], "unwanted"
    )
    ret = plan_return(
        order, done, req, f"ret_{len(done)}", at, 30, tenders_left(order, done),
        adjusted=attributed(order, refunds, done),
    )  # fmt: skip
    ret.created_at, ret.status = at, ReturnStatus.COMPLETED
    done.append(ret)
    return ret


def _named(amount: int, minutes: int, *lines: tuple[str, int]) -> UnitsRefund:
    at = SOLD + timedelta(days=1, minutes=minutes)
    return UnitsRefund(f"rfd_{minutes}", amount, False, at, (at, "adjust", lines), lines, "adjust")


@pytest.mark.parametrize(
    "asks",
    [
        [[("L1", 3)], [("L2", 2)]],
        [[("L2", 1)], [("L1", 1)], [("L1", 1), ("L2", 1)], [("L1", 1)]],
        [[("L1", 1), ("L2", 2)], [("L1", 2)]],
    ],
)
def test_units_a_refund_named_get_back_only_what_they_were_not_given(
    asks: list[list[tuple[str, int]]],
) -> None:
    """Three of SKU0 and two of SKU1; 5.00 given back naming one SKU0 and one SKU1 (shared by
    their worth) before any return. Whatever the order of the returns, everything back
    refunds exactly what was paid less the 5.00, and no return asks more than its units'
    worth."""
    order = sold_order([(2000, 3), (1000, 2)], 0, 825, [1])
    refunds = [_named(500, 0, ("SKU0", 1), ("SKU1", 1))]
    done: list[Return] = []
    paid = order_paid_per_line(order)
    for step in asks:
        ret = _adjusted_return(order, done, step, refunds)
        for ln in ret.lines:
            assert 0 <= ln.amount <= paid[ln.line_id].worth(ln.quantity) + 1
    assert sum(r.amount for r in done) + 500 == order.totals.total.amount


def test_a_unit_returned_before_the_refund_naming_its_sku_keeps_its_whole_refund() -> None:
    """One of two SKU0 returned, then 3.00 given back naming the other: the second return is
    the adjusted unit, refunded its worth less the 3.00."""
    order = sold_order([(2000, 2)], 0, 0, [1])
    done: list[Return] = []
    first = _adjusted_return(order, done, [("L1", 1)], [])
    second = _adjusted_return(order, done, [("L1", 1)], [_named(300, 60, ("SKU0", 1))])
    assert (first.amount, second.amount) == (2000, 1700)


def _one_sku_two_prices() -> Order:
    """One unit of SKU0 at 16.91 (80 % off) and five at 84.49, on two lines: the same SKU
    sold at two prices (168.96 and 422.45 for six units: 439.36)."""
    order = sold_order([(1691, 1), (8449, 5)], 0, 0, [1])
    order.lines[1] = replace(order.lines[1], sku="SKU0")
    return order


@pytest.mark.parametrize(
    "asks",
    [
        [[("L1", 1)], [("L2", 1)]],
        [[("L1", 1), ("L2", 1)]],
        [[("L2", 1)], [("L1", 1)]],
        [[("L1", 1)], [("L2", 5)]],
    ],
)
def test_an_adjustment_of_a_sku_at_two_prices_is_taken_once_off_its_dear_units(
    asks: list[list[tuple[str, int]]],
) -> None:
    """84.49 given back naming one SKU0 (the most a unit of it may take: a dear unit's
    price). The adjusted unit is a dear one (L2), as the refund's check took it: the cheap
    unit (L1) comes back for its whole 16.91 and the first dear unit back for nothing,
    however the returns are batched. Before, the cheap unit was taken to be the adjusted one:
    returned alone it refunded nothing, and what it could not take was lost by the next
    return (84.49 refunded for the two units in two returns, 16.91 in one)."""
    order = _one_sku_two_prices()
    refunds = [_named(8449, 0, ("SKU0", 1))]
    done: list[Return] = []
    for step in asks:
        _adjusted_return(order, done, step, refunds)
    back = {ln.line_id: 0 for r in done for ln in r.lines}
    for r in done:
        for ln in r.lines:
            back[ln.line_id] += ln.amount
    assert back["L1"] == 1691
    returned_l2 = sum(ln.quantity for r in done for ln in r.lines if ln.line_id == "L2")
    assert back["L2"] == 8449 * (returned_l2 - 1)


def test_a_cancel_of_the_cheap_units_of_an_adjusted_sku_takes_nothing_off() -> None:
    """The same SKU at two prices in two pickups, 84.49 given back naming one unit: a cancel
    of the cheap unit's pickup gives back its whole 16.91 (nothing of the adjustment is taken
    off it); a cancel of the dear units' pickup takes the 84.49 off them."""
    order = _one_sku_two_prices()
    order.status = OrderStatus.CONFIRMED
    order.fulfillments = [
        Fulfillment("f1", FulfillmentType.PICKUP, "loc_1", FulfillmentStatus.RESERVED),
        Fulfillment("f2", FulfillmentType.PICKUP, "loc_1", FulfillmentStatus.RESERVED),
    ]
    order.lines[1] = replace(order.lines[1], fulfillment_id="f2")
    refunds = [_named(8449, 0, ("SKU0", 1))]
    assert adjusted_in_fulfillment(order, "f1", refunds, []) == {}
    assert adjusted_in_fulfillment(order, "f2", refunds, []) == {"SKU0": (1, 8449)}


def test_a_pending_returns_own_refund_is_no_adjustment() -> None:
    """A return whose refund was made but is not recorded on it yet (pending): that refund
    names its lines under its reason, and is not taken off a later return of the SKU."""
    order = sold_order([(2000, 2)], 0, 0, [1])
    done: list[Return] = []
    first = _adjusted_return(order, done, [("L1", 1)], [])
    first.status = ReturnStatus.PENDING
    at = SOLD + timedelta(days=1, minutes=30)
    its_own = UnitsRefund("rfd_1", 2000, False, at, (at, "unwanted", (("SKU0", 1),)),
                          (("SKU0", 1),), "unwanted")  # fmt: skip
    second = _adjusted_return(order, done, [("L1", 1)], [its_own])
    assert second.amount == 2000


def test_a_pending_returns_refund_leaves_its_gift_card_out_as_refunds_do() -> None:
    """A pending return of a unit and a gift card line: its refund names only the unit (a gift
    card line has no SKU), and is still known as its own."""
    order = sold_order([(2000, 2)], 0, 0, [1], gift_cards=[1000])
    done: list[Return] = []
    first = _adjusted_return(order, done, [("L1", 1)], [])
    first.lines.append(ReturnLine("L2", "", 1, False, "loc_1", 1000, "gc_1"))
    first.status = ReturnStatus.PENDING
    at = SOLD + timedelta(days=1, minutes=30)
    its_own = UnitsRefund("rfd_1", 3000, False, at, (at, "unwanted", (("SKU0", 1),)),
                          (("SKU0", 1),), "unwanted")  # fmt: skip
    second = _adjusted_return(order, done, [("L1", 1)], [its_own])
    assert second.amount == 2000
