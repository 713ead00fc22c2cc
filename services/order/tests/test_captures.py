"""Which tender captures what at confirmation, on the domain alone (no server)."""

from __future__ import annotations

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
    compute_totals,
)

USD = "USD"


def pending_cap_order() -> Order:
    """A cap at 19.49 (tax included in the figure), sold in store, not confirmed yet."""
    lines = [OrderLine("CAP", "Cap", 1, Money(1949, USD), "f1", id="L1")]
    totals = compute_totals(lines, Money(0, USD), 0, USD)
    return Order(
        id="ord_1",
        location_id="loc_1",
        customer_id="",
        lines=lines,
        totals=totals,
        discounts_applied=True,
        status=OrderStatus.PENDING_PAYMENT,
        fulfillments=[
            Fulfillment("f1", FulfillmentType.IN_STORE, "loc_1", FulfillmentStatus.RESERVED, 1949)
        ],
    )


def test_cash_refunded_before_the_confirmation_pays_for_nothing() -> None:
    order = pending_cap_order()
    cash = TenderRecord(1, Tender.CASH, 1000, "ord_1/payment/1", payment_id="pay_1",
                        state=TenderState.CAPTURED, captured=1000)  # fmt: skip
    order.saga.tenders.append(cash)
    # 4.00 of the cash given back through the payments API (the order heard of it).
    assert order.refunded_in_all("pay_1", 400) and order.paid == 600
    # The card then takes what is due: 13.49.
    card = TenderRecord(2, Tender.CARD, 1349, "ord_1/payment/2", payment_id="pay_2",
                        state=TenderState.AUTHORIZED)  # fmt: skip
    order.saga.tenders.append(card)
    assert order.balance_due == 0

    order.attribute_taken()
    plan = order.plan_captures(order.fulfillments)

    assert order.fulfillments[0].captured == 600  # the cash kept, no more
    assert [(c.payment_id, c.amount) for c in plan] == [("pay_2", 1349)]


def test_cash_kept_whole_is_attributed_whole() -> None:
    order = pending_cap_order()
    order.saga.tenders += [
        TenderRecord(1, Tender.CASH, 1000, "ord_1/payment/1", payment_id="pay_1",
                     state=TenderState.CAPTURED, captured=1000),
        TenderRecord(2, Tender.CARD, 949, "ord_1/payment/2", payment_id="pay_2",
                     state=TenderState.AUTHORIZED),
    ]  # fmt: skip
    order.attribute_taken()
    plan = order.plan_captures(order.fulfillments)
    assert order.fulfillments[0].captured == 1000
    assert [(c.payment_id, c.amount) for c in plan] == [("pay_2", 949)]


def test_the_order_names_what_each_payment_holds_for_it() -> None:
    """A loyalty program that earns on some tenders only earns on their share: the order says
    what each payment was taken for, nothing for a declined one."""
    order = pending_cap_order()
    order.saga.tenders += [
        TenderRecord(1, Tender.CARD, 1949, "ord_1/payment/1", payment_id="pay_1",
                     state=TenderState.FAILED),
        TenderRecord(2, Tender.GIFT_CARD, 1500, "ord_1/payment/2", payment_id="pay_2",
                     state=TenderState.CAPTURED, captured=1500),
        TenderRecord(3, Tender.CARD, 449, "ord_1/payment/3", payment_id="pay_3",
                     state=TenderState.AUTHORIZED),
        TenderRecord(4, Tender.CARD, 449, "ord_1/payment/4"),  # asked, not answered yet
    ]  # fmt: skip
    assert order.tender_types == ["card", "gift_card", "card"]
    assert order.tender_amounts == [0, 1500, 449]
    # Part of the gift card given back: it paid the rest.
    assert order.refunded_in_all("pay_2", 500)
    assert order.tender_amounts == [0, 1000, 449]
