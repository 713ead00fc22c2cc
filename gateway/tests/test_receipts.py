"""Receipts as a customer reads them: money written by each currency's minor units, times in
the store's zone, a sale's lines, taxes and tenders, and a return's refund."""

from __future__ import annotations

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
    for expected in ("2 x Black T-shirt (M)", "USD 50.00", "Discounts", "USD -6.20",
                     "Tax 8.25%", "USD 4.60", "TOTAL", "USD 60.40", "visa **** 4242",
                     "USD -24.35", "Returns within 30 days"):  # fmt: skip
        assert expected in paper, expected
    assert all(len(line) <= receipts.WIDTH for line in paper.splitlines())


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
