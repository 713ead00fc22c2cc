"""The order's row as the repository writes it: the statements built once name every column
`_values` fills, and no other."""

from __future__ import annotations

import json
from dataclasses import replace

from pos_kit.money import Money
from pos_order.adapters import repository
from pos_order.adapters.tables import orders
from pos_order.domain.model import (
    DraftAsk,
    DraftPricing,
    Fulfillment,
    FulfillmentRequest,
    FulfillmentStatus,
    FulfillmentType,
    GiftCardAsk,
    LineRequest,
    Order,
    OrderLine,
    Saga,
    compute_totals,
)
from pos_order.domain.pricing import LineDiscount, Manual


def test_the_prepared_statements_write_every_value_of_an_order() -> None:
    lines = [OrderLine("TEE", "Tee", 2, Money(2500, "USD"), "F1")]
    order = Order(
        id="ord_1",
        location_id="loc_1",
        customer_id="",
        lines=lines,
        totals=compute_totals(lines, Money(0, "USD"), 825),
        discounts_applied=True,
    )
    written = repository._values(order)
    assert tuple(written) == repository.VALUE_COLUMNS
    assert set(repository.VALUE_COLUMNS) <= {c.name for c in orders.c}


def test_a_drafts_cart_is_read_back_as_it_was_written() -> None:
    ask = DraftAsk(
        [
            LineRequest("TEE", 2, 0, Manual("percent", 1000, "loyal", "stf_1")),
            LineRequest("OPEN", 1, 1, unit_price=Money(999, "USD")),
            LineRequest("", 1, 0, gift_card=GiftCardAsk(Money(5000, "USD"))),
        ],
        [
            FulfillmentRequest(FulfillmentType.IN_STORE, "loc_1"),
            FulfillmentRequest(FulfillmentType.SHIPMENT, "", "1 Main St", (40.7, -74.0)),
        ],
        ("SAVE10",),
        Manual("amount", 500, "sorry", "key:k1"),
        300,
        coupons_given=1,
    )
    saga = Saga(draft=ask, submits=2)
    # Through JSON, as the jsonb column keeps it: everything but a coupon code, never stored.
    stored = json.dumps(repository.saga_to_json(saga))
    assert "SAVE10" not in stored
    found = repository._saga(json.loads(stored))
    assert found.draft == replace(ask, coupon_codes=()) and found.submits == 2
    assert repository._saga(repository.saga_to_json(Saga())).draft is None


def test_a_submitting_drafts_pricing_before_its_submit_is_read_back_as_it_was_written() -> None:
    """What a refused submit puts back (`Order.back_to_draft`) survives the row."""
    lines = [
        OrderLine(
            "TEE", "Tee", 2, Money(2500, "EUR"), "F1", "apparel", discount=500, tax=750,
            discounts=[LineDiscount("manual", 500, "loyal", "stf_1")],
            taxes=[("VAT", 750)], tax_rates={"VAT": 1700}, product_id="prd_1",
            category="tops", id="L1", below_cost=True,
        ),
        OrderLine("", "Gift card", 1, Money(5000, "EUR"), "F2", id="L2", gift_card=True),
    ]  # fmt: skip
    was = DraftPricing(
        "cus_1",
        lines,
        compute_totals(lines, Money(500, "EUR"), 0),
        True,
        [
            Fulfillment(
                "F1",
                FulfillmentType.SHIPMENT,
                "",
                FulfillmentStatus.RESERVED,
                4500,
                ship_to="1 Main St",
                destination=(40.7, -74.0),
            ),
            Fulfillment("F2", FulfillmentType.IN_STORE, "loc_1", FulfillmentStatus.FULFILLED),
        ],
        points=200,
        points_discount=200,
        tax_inclusive=True,
        tax_exempt=False,
    )
    ask = DraftAsk([LineRequest("TEE", 2)], [], coupons_given=1, was=was)
    stored = json.dumps(repository.saga_to_json(Saga(draft=ask, submits=1)))
    found = repository._saga(json.loads(stored))
    assert found.draft == ask
