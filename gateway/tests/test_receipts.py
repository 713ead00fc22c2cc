"""Receipts as a customer reads them: money written by each currency's minor units, times in
the store's zone, a sale's lines, taxes and tenders, and a return's refund."""

from __future__ import annotations

from typing import Any

from pos_gateway import examples as ex
from pos_gateway import receipts
from pos_gateway.routes.receipt import EXAMPLE
from pos_gateway.schemas.receipts import Receipt


def test_money_is_written_with_the_currency_s_own_minor_units() -> None:
    assert receipts.money_text({"amount": 2599, "currency": "USD"}) == "USD 25.99"
    assert receipts.money_text({"amount": 5, "currency": "EUR"}) == "EUR 0.05"
    assert receipts.money_text({"amount": 2500, "currency": "JPY"}) == "JPY 2500"
    assert receipts.money_text({"amount": 1250, "currency": "BHD"}) == "BHD 1.250"
    assert receipts.money_text({"amount": -620, "currency": "USD"}) == "USD -6.20"


def test_times_are_in_the_store_s_zone_across_a_clock_change() -> None:
    assert receipts.local("2026-01-15T15:30:00.000Z", "America/Chicago") == (
        "2026-01-15T09:30:00-06:00"
    )
    assert receipts.local("2026-07-15T15:30:00.000Z", "America/Chicago") == (
        "2026-07-15T10:30:00-05:00"
    )
    assert receipts.local("2026-07-15T15:30:00.000Z", "Not/AZone") == "2026-07-15T15:30:00+00:00"


def test_a_sale_s_receipt_has_its_lines_taxes_tenders_and_returns() -> None:
    receipt = Receipt.model_validate(EXAMPLE)
    assert receipt.kind == "sale" and receipt.total.amount == 6040
    assert [t.rate_bps for t in receipt.taxes] == [825]
    assert receipt.taxes[0].taxable.amount == 6200 - 620
    assert [(t.card_brand, t.card_last4) for t in receipt.tenders] == [("visa", "4242")]
    assert [r.return_id for r in receipt.returns] == [ex.RETURN_ID]
    assert receipt.refunded is not None and receipt.refunded.amount == 2435
    paper = receipts.text(EXAMPLE)
    for expected in ("2 x Black T-shirt (M)", "USD 50.00", "10% off over $50", "USD -6.20",
                     "Tax 8.25%", "USD 4.60", "TOTAL", "USD 60.40", "visa **** 4242",
                     "USD -24.35", "Returns within 30 days"):  # fmt: skip
        assert expected in paper, expected
    assert all(len(line) <= receipts.WIDTH for line in paper.splitlines())
    # Each line with its own discounts by offer and its tax per rate, as the sale stored them.
    tee = receipt.lines[0]
    assert [(d.name, d.amount.amount) for d in tee.discounts] == [("10% off over $50", 500)]
    assert [(t.name, t.rate_bps, t.amount.amount) for t in tee.taxes] == [("Tax 8.25%", 825, 371)]
    assert [(d.name, d.amount.amount) for d in receipt.discounts] == [("10% off over $50", 620)]
    assert "Sale items: exchange only" in paper and receipt.return_policy_text


def test_several_taxes_and_rates_are_shown_per_rate() -> None:
    usd = ex.usd
    order = {
        **ex.ORDER,
        "lines": [
            {**ex.ORDER["lines"][0], "discounts": [], "discount_total": usd(0),  # type: ignore[index]
             "tax_category": "standard",
             "taxes": [{"name": "State", "amount": usd(300)}, {"name": "City", "amount": usd(50)}]},
            {**ex.ORDER["lines"][1], "discounts": [], "discount_total": usd(0),  # type: ignore[index]
             "tax_category": "food", "taxes": [{"name": "State", "amount": usd(24)}]},
        ],
        "discount_total": usd(0),
        "tax_total": usd(374),
    }  # fmt: skip
    shop = {"id": ex.LOCATION_ID, "time_zone": "UTC", "taxes": [
        {"name": "State", "rate_bps": 600, "rates_bps": {"food": 200}},
        {"name": "City", "rate_bps": 100, "rates_bps": {"food": 0}}]}  # fmt: skip
    receipt = Receipt.model_validate(receipts.build(order, [], [], shop, 30))
    assert [(t.name, t.taxable.amount, t.amount.amount) for t in receipt.taxes] == [
        ("State 6%", 5000, 300),
        ("City 1%", 5000, 50),
        ("State 2%", 1200, 24),
    ]
    assert [t.name for t in receipt.lines[0].taxes] == ["State 6%", "City 1%"]
    assert receipt.discounts == []


def test_the_taxable_amount_is_what_each_rate_was_applied_to() -> None:
    """Inclusive prices (VAT): the taxable amount is the net, without the tax it contains; a
    compound tax's is the net plus the taxes listed before it. Each rate times its taxable
    amount gives back the tax, as an accountant reads a receipt."""

    def eur(amount: int) -> dict[str, object]:
        return {"amount": amount, "currency": "EUR"}

    vat_line = {
        **ex.ORDER["lines"][0],
        "discounts": [],
        "discount_total": eur(0),  # type: ignore[index]
        "line_total": eur(2997),
        "tax_category": "standard",
        "taxes": [{"name": "tax", "amount": eur(499), "rate_bps": 2000}],
    }
    vat = {
        **ex.ORDER,
        "lines": [vat_line],
        "discount_total": eur(0),
        "tax_total": eur(499),
        "subtotal": eur(2997),
        "total": eur(2997),
        "tax_inclusive": True,
    }
    shop = {"id": ex.LOCATION_ID, "time_zone": "UTC", "tax_rate_bps": 2000}
    (tax,) = Receipt.model_validate(receipts.build(vat, [], [], shop, 30)).taxes
    assert (tax.rate_bps, tax.taxable.amount, tax.amount.amount) == (2000, 2498, 499)
    # The same sale from before lines kept their taxes: the net from the order's total.
    older = {**vat, "lines": [{**vat_line, "taxes": []}]}
    (tax,) = Receipt.model_validate(receipts.build(older, [], [], shop, 30)).taxes
    assert (tax.taxable.amount, tax.amount.amount) == (2498, 499)

    def cad(amount: int) -> dict[str, object]:
        return {"amount": amount, "currency": "CAD"}

    line = {
        **ex.ORDER["lines"][0],
        "discounts": [],
        "discount_total": cad(0),  # type: ignore[index]
        "line_total": cad(5997),
        "tax_category": "standard",
        "taxes": [
            {"name": "gst", "amount": cad(300), "rate_bps": 500},
            {"name": "qst", "amount": cad(628), "rate_bps": 997},
        ],
    }
    order = {
        **ex.ORDER,
        "lines": [line],
        "discount_total": cad(0),
        "tax_total": cad(928),
        "tax_inclusive": False,
    }
    shop = {
        "id": ex.LOCATION_ID,
        "time_zone": "UTC",
        "taxes": [
            {"name": "gst", "rate_bps": 500},
            {"name": "qst", "rate_bps": 997, "compound": True},
        ],
    }
    receipt = Receipt.model_validate(receipts.build(order, [], [], shop, 30))
    assert [(t.name, t.taxable.amount, t.amount.amount) for t in receipt.taxes] == [
        ("gst 5%", 5997, 300),
        ("qst 9.97%", 5997 + 300, 628),
    ]  # fmt: skip


def test_a_line_taxed_at_another_store_shows_the_rate_it_was_taxed_at() -> None:
    """A shipment from a store at 7 % on an order sold at one at 8.25 %: the line's own rate
    (kept at the sale), not the selling store's; a line priced before rates were kept still
    reads the selling store's."""
    usd = ex.usd
    shipped = {
        **ex.ORDER["lines"][0],
        "discounts": [],
        "discount_total": usd(0),  # type: ignore[index]
        "line_total": usd(1800),
        "tax_category": "",
        "taxes": [{"name": "tax", "amount": usd(126), "rate_bps": 700}],
    }
    older = {
        **ex.ORDER["lines"][1],
        "discounts": [],
        "discount_total": usd(0),  # type: ignore[index]
        "line_total": usd(1000),
        "tax_category": "",
        "taxes": [{"name": "tax", "amount": usd(83)}],
    }
    order = {**ex.ORDER, "lines": [shipped, older], "discount_total": usd(0),
             "tax_total": usd(209)}  # fmt: skip
    shop = {"id": ex.LOCATION_ID, "time_zone": "UTC", "tax_rate_bps": 825}
    receipt = Receipt.model_validate(receipts.build(order, [], [], shop, 30))
    assert [(t.rate_bps, t.taxable.amount, t.amount.amount) for t in receipt.taxes] == [
        (700, 1800, 126),
        (825, 1000, 83),
    ]
    assert [t.name for t in receipt.lines[0].taxes] == ["Tax 7%"]


def test_an_exchange_shows_on_both_orders_receipts() -> None:
    exchange = ex.EXCHANGE
    ret, new = exchange["order_return"], exchange["order"]
    shop = {"id": ex.LOCATION_ID, "name": "Downtown", "time_zone": "UTC", "tax_rate_bps": 825}
    sale = Receipt.model_validate(receipts.build(ex.ORDER, [ex.PAYMENT], [ret], shop, 30))
    (back,) = sale.returns
    assert back.exchange_order_id == new["id"] and back.credited is not None
    # Only the difference went back to the card: the credited part paid for the new order.
    assert sale.refunded is not None and sale.refunded.amount == 2435 - 1299
    assert f"to order {new['id']}" in receipts.text(sale.model_dump(mode="json"))
    bought = receipts.build(new, [], [], shop, 30)
    assert bought["exchange_of"] == ex.ORDER_ID and bought["exchange_credit"]["amount"] == 1299
    paper = receipts.text(bought)
    assert f"Exchange of {ex.ORDER_ID}" in paper and "Returned goods" in paper
    assert all(len(line) <= receipts.WIDTH for line in paper.splitlines())
    slip = receipts.build(ex.ORDER, [ex.PAYMENT], [ret], shop, 30, ret["id"])
    assert slip["exchange_order_id"] == new["id"] and "RETURNED" in receipts.text(slip)


def test_a_return_s_receipt_shows_the_units_back_and_the_refund() -> None:
    slip = receipts.build(
        ex.ORDER,
        [ex.PAYMENT],
        [ex.RETURN],
        {"id": ex.LOCATION_ID, "name": "Downtown", "time_zone": "UTC"},
        30,
        ex.RETURN_ID,
    )
    receipt = Receipt.model_validate(slip)
    assert receipt.kind == "return" and receipt.total.amount == 2435
    assert [(ln.name, ln.quantity, ln.restocked) for ln in receipt.lines] == [
        ("Black T-shirt (M)", 1, True)
    ]
    assert "REFUND" in receipts.text(slip) and "&lt;" not in receipts.html_page(slip)
    assert receipts.build(ex.ORDER, [], [], {"id": ex.LOCATION_ID}, 30, "ret_other") == {}


def test_html_escapes_what_the_merchant_typed() -> None:
    shop = {"id": ex.LOCATION_ID, "name": "<script>x</script>", "time_zone": "UTC"}
    page = receipts.html_page(receipts.build(ex.ORDER, [], [], shop, 0))
    assert "<script>" not in page and "&lt;script&gt;" in page and "Sales are final" in page


def test_a_cancelled_order_s_receipt_shows_what_the_cancellation_refunded() -> None:
    """No return refunded it: the cancellation did, and the payment says how much."""
    order = {**ex.ORDER, "status": "cancelled"}
    payment = {**ex.PAYMENT, "captured": ex.usd(6040), "refunded": ex.usd(6040)}
    shop = {"id": ex.LOCATION_ID, "time_zone": "UTC", "tax_rate_bps": 825}
    receipt = Receipt.model_validate(receipts.build(order, [payment], [], shop, 30))
    assert receipt.status == "cancelled"
    assert receipt.refunded is not None and receipt.refunded.amount == 6040
    assert "Refunded" in receipts.text(receipt.model_dump(mode="json"))


def test_refunds_made_outside_returns_show_on_the_sale_s_receipt_and_per_tender() -> None:
    """A goodwill refund through the payments API is in `refunded` and on its tender; a
    return's refund is counted once, whether the payment already says so or not yet."""
    shop = {"id": ex.LOCATION_ID, "time_zone": "UTC", "tax_rate_bps": 825}
    goodwill = {**ex.PAYMENT, "refunded": ex.usd(500)}
    receipt = Receipt.model_validate(receipts.build(ex.ORDER, [goodwill], [], shop, 30))
    assert receipt.refunded is not None and receipt.refunded.amount == 500
    assert [t.refunded.amount for t in receipt.tenders if t.refunded] == [500]
    paper = receipts.text(receipt.model_dump(mode="json"))
    assert "Refunded" in paper and "USD -5.00" in paper
    # The return (24.35) and the goodwill refund, both on the payment: 28.35 in all.
    both = {**ex.PAYMENT, "refunded": ex.usd(2935)}
    sale = Receipt.model_validate(receipts.build(ex.ORDER, [both], [ex.RETURN], shop, 30))
    assert sale.refunded is not None and sale.refunded.amount == 2935
    paper = receipts.text(sale.model_dump(mode="json"))
    assert "USD -24.35" in paper and "USD -5.00" in paper
    # The return's refund still pending at the processor: the return speaks for it.
    pending = Receipt.model_validate(receipts.build(ex.ORDER, [ex.PAYMENT], [ex.RETURN], shop, 30))
    assert pending.refunded is not None and pending.refunded.amount == 2435
    assert "Refunded" not in receipts.text(pending.model_dump(mode="json"))


def test_a_refund_the_processor_refused_gave_nothing_back() -> None:
    """A return whose refund was refused for good (settled by a person, or waiting for one):
    its failed refund is not counted as money back on the card."""
    shop = {"id": ex.LOCATION_ID, "time_zone": "UTC", "tax_rate_bps": 825}
    receipt = Receipt.model_validate(
        receipts.build(ex.ORDER, [ex.PAYMENT], [ex.RETURN_SETTLED], shop, 30)
    )
    assert receipt.refunded is not None and receipt.refunded.amount == 0
    assert [t.refunded.amount for t in receipt.tenders if t.refunded] == [0]


def test_a_settled_return_s_receipt_shows_the_refunds_made_and_the_settlement() -> None:
    """Split tender, the gift card's refund refused and paid in cash by a person: the slip
    shows the card's refund and the cash, never the gift card's refund that did not happen."""
    usd = ex.usd
    card = {**ex.PAYMENT, "id": "pay_card", "card_brand": "visa", "card_last4": "4242"}
    gift = {**ex.PAYMENT, "id": "pay_gift", "tender_type": "gift_card", "card_brand": "",
            "card_last4": "9YFB"}  # fmt: skip
    ret = {
        **ex.RETURN_SETTLED,
        "amount": usd(4871),
        "refunds": [
            {"refund_id": "rfd_1", "payment_id": "pay_card", "amount": usd(2000),
             "status": "succeeded"},
            {"refund_id": "rfd_2", "payment_id": "pay_gift", "amount": usd(2871),
             "status": "failed"},
        ],
        "refusal_code": "refund_partly_failed",
        "settlement": {**ex.RETURN_SETTLED["settlement"], "amount": usd(2871)},  # type: ignore[dict-item]
    }  # fmt: skip
    shop = {"id": ex.LOCATION_ID, "name": "Downtown", "time_zone": "UTC"}
    slip = receipts.build(ex.ORDER, [card, gift], [ret], shop, 30, ret["id"])
    receipt = Receipt.model_validate(slip)
    assert [(t.payment_id, t.amount.amount) for t in receipt.tenders] == [("pay_card", 2000)]
    assert receipt.settlement is not None
    assert (receipt.settlement.tender_type, receipt.settlement.amount.amount) == ("cash", 2871)
    for paper in (receipts.text(slip), receipts.html_page(slip)):
        assert "visa **** 4242" in paper and "USD 20.00" in paper
        assert "9YFB" not in paper
        assert "cash" in paper and "USD 28.71" in paper and "till 2, receipt 4471" in paper
    refused = {**ret, "settlement": {**ret["settlement"], "outcome": "refused",
                                     "tender_type": None, "reference": ""}}  # fmt: skip
    paper = receipts.text(receipts.build(ex.ORDER, [card, gift], [refused], shop, 30, ret["id"]))
    assert "Not refunded" in paper and "USD 28.71" in paper and "cash" not in paper


def _sale(lines: list[Any], subtotal: int, discount: int, tax: int, total: int) -> dict[str, Any]:
    usd = ex.usd
    money = {"subtotal": usd(subtotal), "discount_total": usd(discount), "tax_total": usd(tax)}
    return {**ex.ORDER, "lines": lines, **money, "total": usd(total)}


def test_a_tax_inclusive_sale_shows_the_tax_contained_in_its_total_on_the_net() -> None:
    """Shelf prices that hold their tax (VAT): the tax is contained in the total, not added to
    it, and what it is charged on is the price less that tax (20 % of 79.45 is 15.89; of the
    gross 95.34 it would be 19.07)."""
    usd = ex.usd
    socks = {**ex.ORDER["lines"][0], "line_total": usd(6993), "discount_total": usd(699),  # type: ignore[index]
             "discounts": [], "tax_category": "standard",
             "taxes": [{"name": "tax", "amount": usd(1049), "rate_bps": 2000}]}  # fmt: skip
    mugs = {**ex.ORDER["lines"][1], "line_total": usd(3600), "discount_total": usd(360),  # type: ignore[index]
            "discounts": [], "tax_category": "standard",
            "taxes": [{"name": "tax", "amount": usd(540), "rate_bps": 2000}]}  # fmt: skip
    order = _sale([socks, mugs], 10593, 1059, 1589, 9534)
    shop = {"id": ex.LOCATION_ID, "time_zone": "UTC", "tax_rate_bps": 2000,
            "prices_include_tax": True}  # fmt: skip
    receipt = Receipt.model_validate(receipts.build(order, [], [], shop, 30))
    assert receipt.tax_inclusive
    assert [(t.rate_bps, t.taxable.amount, t.amount.amount) for t in receipt.taxes] == [
        (2000, 6294 - 1049 + 3240 - 540, 1589)
    ]
    paper = receipts.text(receipt.model_dump(mode="json"))
    assert "Incl. Tax 20%" in paper and "USD 95.34" in paper
    # A sale whose prices exclude their tax says so too.
    assert not Receipt.model_validate(EXAMPLE).tax_inclusive
    assert "Incl." not in receipts.text(EXAMPLE)


def test_a_compound_tax_is_charged_on_the_price_and_the_taxes_before_it() -> None:
    """A city tax compounded on the state's: 1.5 % of 62.94 + 3.93 (66.87) is 1.00, and the
    receipt says it was charged on that, not on 62.94 alone."""
    usd = ex.usd
    socks = {**ex.ORDER["lines"][0], "line_total": usd(6993), "discount_total": usd(699),  # type: ignore[index]
             "discounts": [], "tax_category": "standard",
             "taxes": [{"name": "state", "amount": usd(393), "rate_bps": 625},
                       {"name": "city", "amount": usd(100), "rate_bps": 150}]}  # fmt: skip
    order = _sale([socks], 6993, 699, 493, 6787)
    city = {"name": "city", "rate_bps": 150, "compound": True}
    shop = {
        "id": ex.LOCATION_ID,
        "time_zone": "UTC",
        "taxes": [{"name": "state", "rate_bps": 625}, city],
    }
    receipt = Receipt.model_validate(receipts.build(order, [], [], shop, 30))
    assert [(t.name, t.taxable.amount, t.amount.amount) for t in receipt.taxes] == [
        ("state 6.25%", 6294, 393),
        ("city 1.5%", 6294 + 393, 100),
    ]


def test_a_card_authorised_for_goods_not_handed_over_yet_shows_what_it_pays() -> None:
    """A web order confirmed with its pickup or shipment still to go: the card is authorised,
    captured at hand-over or shipping. Its receipt shows the card paying the order (what it
    authorised less what was voided), not 0.00; once captured in part, still the whole of what
    it holds, and what a cancelled fulfilment's void took off is not shown."""
    usd = ex.usd
    waiting = {**ex.PAYMENT, "status": "authorized", "captured": usd(0)}
    receipt = Receipt.model_validate(receipts.build(ex.ORDER, [waiting], [], {"id": "x"}, 30))
    assert [t.amount.amount for t in receipt.tenders] == [6040]
    paper = receipts.text(receipt.model_dump(mode="json")).splitlines()
    assert [ln.split()[-1] for ln in paper if ln.startswith("visa ****")] == ["60.40"]
    halfway = {**ex.PAYMENT, "captured": usd(2000)}
    receipt = Receipt.model_validate(receipts.build(ex.ORDER, [halfway], [], {"id": "x"}, 30))
    assert [t.amount.amount for t in receipt.tenders] == [6040]
    voided = {**ex.PAYMENT, "captured": usd(4000), "voided": usd(2040)}
    receipt = Receipt.model_validate(receipts.build(ex.ORDER, [voided], [], {"id": "x"}, 30))
    assert [t.amount.amount for t in receipt.tenders] == [4000]


def test_the_receipt_is_written_in_the_type_the_accept_header_prefers() -> None:
    """RFC 9110's negotiation: quality values, the most specific range, then the client's
    order; JSON when anything goes. (A type was picked by finding its name in the header: a
    range of quality 0 was read as asked for, `text/*` and quality values not at all.)"""
    from starlette.requests import Request

    from pos_gateway.routes.receipt import _wanted

    def wanted(accept: str | None, format_: str | None = None) -> str:
        headers = [(b"accept", accept.encode())] if accept is not None else []
        return _wanted(Request({"type": "http", "headers": headers}), format_)

    assert wanted(None) == wanted("*/*") == wanted("application/json") == "json"
    assert wanted("text/plain") == wanted("text/*") == wanted("text/plain, text/html") == "text"
    assert wanted("text/html") == wanted("text/html, text/plain") == "html"
    assert wanted("text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8") == "html"
    assert wanted("text/html;q=0, application/json") == "json"
    assert wanted("text/plain;q=0.5, text/html") == "html"
    assert wanted("application/json;q=0.1, text/*") == "text"
    assert wanted("application/json, text/html") == "json"
    assert wanted("text/html", "json") == "json"  # `format` wins


def _picked_up_elsewhere() -> tuple[dict[str, Any], dict[str, Any], dict[str, Any]]:
    """A sale at a store with a plain city 10 % (one line taken there), and a line picked up
    at another store whose city 10 % compounds on its state 6 % (10 % of 90.00 + 5.40 is
    9.54): the order, the selling store and the pickup store."""
    usd = ex.usd
    other = "loc_pickup"
    here = {**ex.ORDER["lines"][0], "line_total": usd(1000), "discount_total": usd(0),  # type: ignore[index]
            "discounts": [], "tax_category": "",
            "taxes": [{"name": "state", "amount": usd(60), "rate_bps": 600},
                      {"name": "city", "amount": usd(100), "rate_bps": 1000}]}  # fmt: skip
    there = {**ex.ORDER["lines"][1], "line_total": usd(9000), "discount_total": usd(0),  # type: ignore[index]
             "discounts": [], "tax_category": "", "fulfillment_id": f"{ex.ORDER_ID}-2",
             "taxes": [{"name": "state", "amount": usd(540), "rate_bps": 600},
                       {"name": "city", "amount": usd(954), "rate_bps": 1000}]}  # fmt: skip
    pickup = {**ex.ORDER["fulfillments"][0], "id": f"{ex.ORDER_ID}-2", "type": "pickup",  # type: ignore[index]
              "location_id": other}  # fmt: skip
    order = {**_sale([here, there], 10000, 0, 1654, 11654),
             "fulfillments": [*ex.ORDER["fulfillments"], pickup]}  # type: ignore[misc]  # fmt: skip
    state = {"name": "state", "rate_bps": 600}
    shop = {"id": ex.LOCATION_ID, "time_zone": "UTC",
            "taxes": [state, {"name": "city", "rate_bps": 1000}]}  # fmt: skip
    store = {"id": other, "time_zone": "UTC",
             "taxes": [state, {"name": "city", "rate_bps": 1000, "compound": True}]}  # fmt: skip
    return order, shop, store


def test_a_line_taxed_at_another_store_compounds_as_that_store_s_taxes_do() -> None:
    """The pickup line's city tax compounds at the pickup store, not at the selling one: it
    was charged on 90.00 + 5.40, and the receipt says so."""
    order, shop, store = _picked_up_elsewhere()
    order = {**order, "lines": order["lines"][1:], "subtotal": ex.usd(9000),
             "tax_total": ex.usd(1494), "total": ex.usd(10494)}  # fmt: skip
    built = receipts.build(order, [], [], shop, 30, stores={store["id"]: store})
    receipt = Receipt.model_validate(built)
    assert [(t.name, t.taxable.amount, t.amount.amount) for t in receipt.taxes] == [
        ("state 6%", 9000, 540),
        ("city 10%", 9540, 954),
    ]


def test_a_compound_and_a_plain_tax_of_one_name_and_rate_are_kept_apart() -> None:
    """A plain city 10 % (the selling store) and a compounding one (the pickup store) are two
    taxes: two rows, each with what it was charged on, the compounding one marked."""
    order, shop, store = _picked_up_elsewhere()
    built = receipts.build(order, [], [], shop, 30, stores={store["id"]: store})
    receipt = Receipt.model_validate(built)
    assert [(t.name, t.taxable.amount, t.amount.amount) for t in receipt.taxes] == [
        ("state 6%", 10000, 600),
        ("city 10%", 1000, 100),
        ("city 10%", 9540, 954),
    ]
    assert [t.compound for t in receipt.taxes] == [False, False, True]


def test_a_compound_and_a_plain_tax_of_one_name_and_rate_are_two_rows_told_apart_on_paper() -> None:
    """The paper roll printed the two city 10 % rows alike: the compound one is marked."""
    order, shop, store = _picked_up_elsewhere()
    built = receipts.build(order, [], [], shop, 30, stores={store["id"]: store})
    paper = receipts.text(Receipt.model_validate(built).model_dump(mode="json")).splitlines()
    city = [ln for ln in paper if ln.startswith("city 10%")]
    assert city == [receipts._row("city 10%", "USD 1.00"),
                    receipts._row("city 10% compound", "USD 9.54")]  # fmt: skip
    assert all(len(line) <= receipts.WIDTH for line in paper)


def test_a_receipt_compounds_each_tax_as_the_line_was_charged_not_as_the_store_does_now() -> None:
    """The lines keep whether each tax compounded when they were taxed: the selling store's
    city tax compounding now (and the pickup store's no longer) changes nothing of the sale's
    receipt. A line priced before that was kept reads the store's settings (the tests above)."""
    order, shop, store = _picked_up_elsewhere()
    kept = {"state": False, "city": False}, {"state": False, "city": True}
    lines = [
        {**ln, "taxes": [{**t, "compound": flags[t["name"]]} for t in ln["taxes"]]}
        for ln, flags in zip(order["lines"], kept, strict=True)
    ]
    order = {**order, "lines": lines}
    city_now = {"name": "city", "rate_bps": 1000}
    shop = {**shop, "taxes": [shop["taxes"][0], {**city_now, "compound": True}]}
    store = {**store, "taxes": [store["taxes"][0], city_now]}
    built = receipts.build(order, [], [], shop, 30, stores={store["id"]: store})
    receipt = Receipt.model_validate(built)
    assert [(t.name, t.compound, t.taxable.amount, t.amount.amount) for t in receipt.taxes] == [
        ("state 6%", False, 10000, 600),
        ("city 10%", False, 1000, 100),
        ("city 10%", True, 9540, 954),
    ]


def test_a_manual_discount_is_named_once_with_the_staff_s_reason() -> None:
    """The order carries "Manual: <reason>" (the promotion service's wording): the receipt
    said "Manual discount: Manual: <reason>"."""
    manual = {"promotion_id": "manual", "reason": "Manual: damaged box", "amount": ex.usd(100)}
    assert receipts._discount_name(manual) == "Manual discount: damaged box"
    assert receipts._discount_name({**manual, "reason": ""}) == "Manual discount: by staff"
    assert receipts._discount_name({**manual, "reason": "Manual: "}) == "Manual discount: by staff"
