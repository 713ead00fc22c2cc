"""Tax in the order domain, worked examples to the cent: US sales tax (exclusive, a state and a
city tax on one line), EU VAT (inclusive, the tax contained shown), a tax-exempt customer and an
exempt product, a discount before tax, a compound tax, and rounding per line then summed."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from pos_order.domain.pricing import LineDiscount, allocate, line_discounts, price
from pos_order.domain.tax import TaxRate, TaxRule, TaxTable, line_tax

# Illinois-like: state 6.25 %, Chicago 2.25 % on general merchandise; groceries 1 % state only.
CHICAGO = TaxTable(
    TaxRule((TaxRate("state", 625), TaxRate("city", 225))),
    {"food": TaxRule((TaxRate("state", 100),))},
)
# Germany: VAT 19 %, 7 % on food, prices include it.
BERLIN = TaxTable(
    TaxRule((TaxRate("VAT", 1900),), inclusive=True),
    {"food": TaxRule((TaxRate("VAT", 700),), inclusive=True)},
)


def _no_discounts(n: int) -> list[list[LineDiscount]]:
    return [[] for _ in range(n)]


def test_us_sales_tax_two_jurisdictions_added_on_top() -> None:
    # A 19.99 jacket and 4.49 of groceries.
    lines, totals = price([1999, 449], ["", "food"], _no_discounts(2), CHICAGO)
    # 19.99 x 6.25 % = 1.249375 -> 1.25; x 2.25 % = 0.449775 -> 0.45; food 4.49 x 1 % -> 0.04
    assert lines[0].taxes == (("state", 125), ("city", 45))
    assert lines[1].taxes == (("state", 4),)
    assert (totals.subtotal, totals.tax, totals.total) == (2448, 174, 2622)
    assert not totals.inclusive


def test_eu_vat_inclusive_shows_the_tax_contained() -> None:
    # Shelf prices 11.90 (19 %) and 2.14 (7 %): the customer pays exactly those.
    lines, totals = price([1190, 214], ["", "food"], _no_discounts(2), BERLIN)
    # 11.90 / 1.19 = 10.00 net: 1.90 contained; 2.14 / 1.07 = 2.00 net: 0.14 contained.
    assert [ln.tax for ln in lines] == [190, 14]
    assert (totals.subtotal, totals.tax, totals.total) == (1404, 204, 1404)
    assert totals.inclusive
    # A price that does not divide evenly: 9.99 / 1.19 = 8.3950... -> 8.39 net, 1.60 contained.
    assert line_tax(999, BERLIN.default).taxes == (("VAT", 160),)


def test_a_tax_exempt_customer_pays_no_tax_and_an_exempt_product_neither() -> None:
    _, exempt = price([1999, 449], ["", "food"], _no_discounts(2), CHICAGO, exempt_customer=True)
    assert (exempt.tax, exempt.total) == (0, 2448)
    lines, totals = price([1999, 1000], ["", "exempt"], _no_discounts(2), CHICAGO)
    assert lines[1].tax == 0 and totals.tax == 170


def test_a_discount_comes_before_tax() -> None:
    # 10 % off a 50.00 shirt (5.00) and a 12.00 mug (1.20), at 8.25 %.
    table = TaxTable.simple(825)
    shares = line_discounts([5000, 1200], 620, [], [])
    assert [sum(d.amount for d in s) for s in shares] == [500, 120]
    lines, totals = price([5000, 1200], ["", ""], shares, table)
    # 45.00 x 8.25 % = 3.7125 -> 3.71; 10.80 x 8.25 % = 0.891 -> 0.89
    assert [ln.tax for ln in lines] == [371, 89]
    assert (totals.discount, totals.tax, totals.total) == (620, 460, 6040)


def test_tax_is_rounded_per_line_then_summed() -> None:
    # Three lines of 0.10 at 5 %: 0.005 each rounds to 0.01 per line: 0.03, not 0.02 (0.015
    # on the order rounded once).
    lines, totals = price([10, 10, 10], ["", "", ""], _no_discounts(3), TaxTable.simple(500))
    assert [ln.tax for ln in lines] == [1, 1, 1] and totals.tax == 3


def test_a_compound_tax_is_charged_on_the_price_plus_the_taxes_before_it() -> None:
    rule = TaxRule((TaxRate("GST", 500), TaxRate("QST", 850, compound=True)))
    # 100.00: GST 5.00; QST 8.5 % of 105.00 = 8.925 -> 8.93
    assert line_tax(10000, rule).taxes == (("GST", 500), ("QST", 893))
    inclusive = TaxRule(rule.rates, inclusive=True)
    contained = line_tax(11393, inclusive)
    assert contained.net == 10000 and contained.total == 1393


def test_the_offers_own_split_is_kept_with_its_reason() -> None:
    from pos_order.domain.pricing import OfferShare

    offers = [
        OfferShare("prm_bogo", "buy one get one", ((1, 500),)),
        OfferShare("prm_10", "10% off", ((0, 100), (1, 50))),
    ]
    shares = line_discounts([1000, 1000], 650, offers, [100, 550])
    assert shares[0] == [LineDiscount("prm_10", 100, "10% off")]
    assert shares[1] == [
        LineDiscount("prm_bogo", 500, "buy one get one"),
        LineDiscount("prm_10", 50, "10% off"),
    ]


@given(
    st.lists(st.integers(0, 100_000), min_size=1, max_size=12),
    st.integers(0, 1_000_000),
)
def test_allocation_sums_exactly_and_never_exceeds_a_weight(weights: list[int], total: int) -> None:
    total = min(total, sum(weights))
    shares = allocate(total, weights)
    assert sum(shares) == (total if sum(weights) > 0 else 0)
    assert all(0 <= s <= w for s, w in zip(shares, weights, strict=True))


@given(st.integers(0, 10_000_000), st.sampled_from([0, 500, 700, 825, 1900, 2000]))
def test_inclusive_tax_and_net_add_up_to_the_shelf_price(gross: int, bps: int) -> None:
    found = line_tax(gross, TaxRule((TaxRate("VAT", bps),), inclusive=True))
    assert found.net + found.total == gross and found.total >= 0


def test_a_locations_taxes_make_one_rule_per_category() -> None:
    from pos_order.domain.tax import LocationTax

    table = TaxTable.of_taxes(
        [LocationTax("state", 625, {"food": 100}), LocationTax("city", 225, {"food": 0})]
    )
    assert table.rule_for("food").rates == (TaxRate("state", 100), TaxRate("city", 0))
    assert table.rule_for("standard").rates == (TaxRate("state", 625), TaxRate("city", 225))
    assert line_tax(1999, table.rule_for("")).taxes == (("state", 125), ("city", 45))


def test_each_line_keeps_the_rates_it_was_taxed_at_where_its_goods_leave_from() -> None:
    """A line handed over at the selling store (8.25 %) and one shipped from another (7 %):
    each priced line names the rate it was taxed at, for its receipt."""
    selling, shipping = TaxTable.simple(825), TaxTable.simple(700)
    lines, _ = price([1000, 1800], ["", ""], [[], []], selling, line_tables=[selling, shipping])
    assert [(ln.tax, ln.rates) for ln in lines] == [(83, (("tax", 825),)), (126, (("tax", 700),))]
