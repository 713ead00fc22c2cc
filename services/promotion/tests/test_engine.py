"""The rule engine: worked retail examples to the cent, and the properties every cart keeps."""

from __future__ import annotations

from datetime import UTC, datetime, time

import pytest
from hypothesis import given
from hypothesis import strategies as st

from pos_promotion.domain.engine import Context, Line, Manual, ManualKind, allocate, price
from pos_promotion.domain.rules import Conditions, Kind, Level, Offer, Rule, Selector, Tier

USD = "USD"
SHIRTS = Selector(categories=frozenset({"shirts"}))


def offer(oid: str, rule: Rule, **kw: object) -> Offer:
    return Offer(oid, oid.title(), rule, currency=USD, **kw)  # type: ignore[arg-type]


def shirt(sku: str, cents: int, qty: int = 1) -> Line:
    return Line(sku, qty, cents, categories=frozenset({"shirts"}))


BOGO = offer(
    "bogo",
    Rule(Kind.BUY_X_GET_Y, Level.ITEM, SHIRTS, percent_bps=10000, buy_quantity=1, get_quantity=1),
)
THREE_FOR_TWO = offer(
    "three4two",
    Rule(Kind.BUY_X_GET_Y, Level.ITEM, SHIRTS, percent_bps=10000, buy_quantity=2, get_quantity=1),
)
TIERED = offer(
    "tiers",
    Rule(Kind.TIERS, Level.ITEM, SHIRTS, tiers=(Tier(2, 1000), Tier(4, 2000))),
)
HAPPY_HOUR = offer(
    "happy",
    Rule(Kind.PERCENT_OFF, Level.ITEM, Selector(skus=frozenset({"BEER"})), percent_bps=5000),
    conditions=Conditions(
        time_zone="Europe/Berlin",
        days=frozenset({4}),  # Friday
        hours_from=time(22),
        hours_until=time(2),
    ),
)
HAPPY_HOUR_ANYWHERE = offer(
    "happy_anywhere",
    Rule(Kind.PERCENT_OFF, Level.ITEM, Selector(skus=frozenset({"BEER"})), percent_bps=5000),
    conditions=Conditions(days=frozenset({4}), hours_from=time(22), hours_until=time(2)),
)
SPEND_50 = offer(
    "spend50", Rule(Kind.AMOUNT_OFF, amount=1000), conditions=Conditions(min_amount=5000)
)
TEN_PERCENT = offer("tenpct", Rule(Kind.PERCENT_OFF, percent_bps=1000))
BUNDLE = offer("bundle", Rule(Kind.BUNDLE, Level.ITEM, SHIRTS, amount=5000, get_quantity=3))
SALE = offer(
    "sale", Rule(Kind.SALE_PRICE, Level.ITEM, Selector(skus=frozenset({"MUG"})), amount=700)
)
FREE_TOTE = offer(
    "tote",
    Rule(Kind.FREE_ITEM, Level.ITEM, Selector(skus=frozenset({"TOTE"})), get_quantity=1),
    conditions=Conditions(min_amount=3000),
)
COUPON_5 = offer("coupon5", Rule(Kind.AMOUNT_OFF, amount=500), requires_coupon=True)
EXCL_30 = offer("excl30", Rule(Kind.PERCENT_OFF, percent_bps=3000), exclusive=True)
EXCL_5 = offer("excl5", Rule(Kind.PERCENT_OFF, percent_bps=500), exclusive=True)
ITEM_5_OFF = offer("item5", Rule(Kind.AMOUNT_OFF, Level.ITEM, SHIRTS, amount=500))

FRI_23_BERLIN = datetime(2026, 12, 4, 22, 0, tzinfo=UTC)  # Friday 23:00 in Berlin
SAT_01_BERLIN = datetime(2026, 12, 5, 0, 30, tzinfo=UTC)  # Saturday 01:30 in Berlin
SAT_03_BERLIN = datetime(2026, 12, 5, 2, 30, tzinfo=UTC)  # Saturday 03:30: over
SAT_23_BERLIN = datetime(2026, 12, 5, 22, 0, tzinfo=UTC)  # Saturday 23:00: not a Friday

WORKED = [
    # (what, offers, lines, context, total discount, per line)
    (
        "BOGO: the cheaper shirt free",
        [BOGO],
        [shirt("A", 2000), shirt("B", 1500)],
        Context(),
        1500,
        [0, 1500],
    ),
    ("BOGO with 3: one set only", [BOGO], [shirt("A", 2000, 3)], Context(), 2000, [2000]),
    (
        "3 for 2: the cheapest of three free",
        [THREE_FOR_TWO],
        [shirt("A", 2500), shirt("B", 1800), shirt("C", 1200)],
        Context(),
        1200,
        [0, 0, 1200],
    ),
    (
        "3 for 2 with six: the two cheapest free",
        [THREE_FOR_TWO],
        [shirt("A", 3000, 2), shirt("B", 1000, 4)],
        Context(),
        2000,
        [0, 2000],
    ),
    ("tiers: 3 shirts get 10 %", [TIERED], [shirt("A", 1999, 3)], Context(), 600, [600]),
    (
        "tiers: 4 shirts get 20 %",
        [TIERED],
        [shirt("A", 1999, 2), shirt("B", 2499, 2)],
        Context(),
        1800,
        [800, 1000],
    ),
    ("tiers: 1 shirt gets nothing", [TIERED], [shirt("A", 1999)], Context(), 0, [0]),
    (
        "happy hour Friday 23:00 Berlin",
        [HAPPY_HOUR],
        [Line("BEER", 2, 450)],
        Context(at=FRI_23_BERLIN),
        450,
        [450],
    ),
    (
        "happy hour across midnight: Saturday 01:30 is Friday's",
        [HAPPY_HOUR],
        [Line("BEER", 2, 450)],
        Context(at=SAT_01_BERLIN),
        450,
        [450],
    ),
    (
        "happy hour over at 03:30",
        [HAPPY_HOUR],
        [Line("BEER", 2, 450)],
        Context(at=SAT_03_BERLIN),
        0,
        [0],
    ),
    (
        "happy hour not on Saturday night",
        [HAPPY_HOUR],
        [Line("BEER", 2, 450)],
        Context(at=SAT_23_BERLIN),
        0,
        [0],
    ),
    (
        "the offer's own zone wins over the location's: 23:00 Friday in New York is 05:00"
        " Saturday in Berlin, after its happy hour",
        [HAPPY_HOUR],
        [Line("BEER", 1, 450)],
        Context(at=datetime(2026, 12, 5, 4, 0, tzinfo=UTC), time_zone="America/New_York"),
        0,
        [0],
    ),
    (
        "an offer without a zone reads the location's: 23:00 in New York is 04:00 Saturday UTC",
        [HAPPY_HOUR_ANYWHERE],
        [Line("BEER", 1, 450)],
        Context(at=datetime(2026, 12, 5, 4, 0, tzinfo=UTC), time_zone="America/New_York"),
        225,
        [225],
    ),
    (
        "an offer without a zone, at a location without one: UTC",
        [HAPPY_HOUR_ANYWHERE],
        [Line("BEER", 1, 450)],
        Context(at=datetime(2026, 12, 4, 23, 0, tzinfo=UTC)),
        225,
        [225],
    ),
    (
        "spend 50 get 10: spread by largest remainder",
        [SPEND_50],
        [Line("X", 1, 3333), Line("Y", 1, 3333), Line("Z", 1, 3334)],
        Context(),
        1000,
        [333, 333, 334],
    ),
    ("spend 50: 49.99 gets nothing", [SPEND_50], [Line("X", 1, 4999)], Context(), 0, [0]),
    (
        "exclusive vs stack: the stack (10 % + 10.00) beats exclusive 5 %",
        [TEN_PERCENT, SPEND_50, EXCL_5],
        [Line("X", 1, 10000)],
        Context(),
        2000,
        [2000],
    ),
    (
        "exclusive vs stack: exclusive 30 % beats the stack",
        [TEN_PERCENT, SPEND_50, EXCL_30, EXCL_5],
        [Line("X", 1, 10000)],
        Context(),
        3000,
        [3000],
    ),
    (
        "coupon + automatic: item 5.00 off, 10 %, then the coupon's 5.00",
        [COUPON_5, TEN_PERCENT, ITEM_5_OFF],
        [shirt("A", 3000), Line("MUG", 1, 1000)],
        Context(coupon_offers=frozenset({"coupon5"})),
        # 30.00 -> 25.00; 10 % of 35.00 = 3.50 (2.50 + 1.00); 5.00 of 31.50 (3.57 + 1.43)
        500 + 350 + 500,
        [500 + 250 + 357, 100 + 143],
    ),
    (
        "a coupon offer without its coupon does nothing",
        [COUPON_5],
        [Line("X", 1, 3000)],
        Context(),
        0,
        [0],
    ),
    (
        "any 3 shirts for 50.00, the dearest grouped",
        [BUNDLE],
        [shirt("A", 2500, 2), shirt("B", 2000, 2)],
        Context(),
        2000,
        [1429, 571],
    ),
    ("sale price 7.00 on a 9.50 mug", [SALE], [Line("MUG", 3, 950)], Context(), 750, [750]),
    (
        "free tote over 30.00",
        [FREE_TOTE],
        [Line("TOTE", 2, 500), Line("X", 1, 2500)],
        Context(),
        500,
        [500, 0],
    ),
    (
        "manual: price override then 10 % off the line, who asked is kept",
        [],
        [Line("X", 2, 1000, manual=Manual(ManualKind.PRICE, 800, "damaged box", "emp_1"))],
        Context(manual=Manual(ManualKind.PERCENT, 1000, "loyal customer", "emp_2")),
        400 + 160,
        [560],
    ),
]


@pytest.mark.parametrize(
    ("offers", "lines", "ctx", "total", "per_line"),
    [w[1:] for w in WORKED],
    ids=[w[0] for w in WORKED],
)
def test_worked_retail_examples_to_the_cent(
    offers: list[Offer], lines: list[Line], ctx: Context, total: int, per_line: list[int]
) -> None:
    priced = price(offers, lines, USD, ctx)
    assert priced.total_discount == total
    assert list(priced.line_discounts) == per_line
    assert sum(a.amount for a in priced.applied) == total


def test_manual_discounts_say_why_and_who_asked() -> None:
    lines = [Line("X", 1, 1000, manual=Manual(ManualKind.AMOUNT, 200, "scratched", "emp_7"))]
    priced = price([], lines, USD)
    [applied] = priced.applied
    assert (applied.source, applied.amount, applied.reason, applied.requested_by) == (
        "manual",
        200,
        "Manual: scratched",
        "emp_7",
    )


def test_a_manual_amount_off_a_line_comes_off_each_of_its_units() -> None:
    """A "1.00 off" on a line of 3 scratched mugs at 10.00 is 1.00 off each mug, as documented
    for `amount` on a line (and as an item offer's amount is): 3.00 off the line, not 1.00."""
    mugs = Line("MUG", 3, 1000, manual=Manual(ManualKind.AMOUNT, 100, "scratched", "emp_7"))
    priced = price([], [mugs], USD)
    assert (priced.total_discount, list(priced.line_discounts)) == (300, [300])
    [applied] = priced.applied
    assert (applied.source, applied.amount, applied.lines) == ("manual", 300, (300,))
    # More off each unit than a unit costs: the whole line, never below zero.
    whole = Line("MUG", 3, 1000, manual=Manual(ManualKind.AMOUNT, 1500, "flood", "emp_7"))
    assert price([], [whole], USD).line_discounts == (3000,)


def test_a_manual_amount_off_each_unit_is_capped_unit_by_unit() -> None:
    """Buy one get one free leaves one shirt at 0.00 and one at 10.00: 3.00 off each takes
    3.00 from the paid one only (the free one has nothing to give), as an item amount does."""
    pulled = Manual(ManualKind.AMOUNT, 300, "pulled thread", "emp_7")
    shirts = Line("A", 2, 1000, categories=frozenset({"shirts"}), manual=pulled)
    priced = price([BOGO], [shirts], USD)
    assert [(a.source, a.amount) for a in priced.applied] == [("bogo", 1000), ("manual", 300)]
    assert priced.line_discounts == (1300,)


def test_non_stackable_offers_keep_the_highest_priority_one_per_level() -> None:
    a = offer("a", Rule(Kind.PERCENT_OFF, percent_bps=1000), stackable=False, priority=1)
    b = offer("b", Rule(Kind.PERCENT_OFF, percent_bps=2000), stackable=False)
    c = offer("c", Rule(Kind.AMOUNT_OFF, amount=100))
    priced = price([a, b, c], [Line("X", 1, 10000)], USD)
    assert [x.source for x in priced.applied] == ["a", "c"]
    assert priced.total_discount == 1000 + 100


def test_a_non_stackable_offer_that_gives_the_cart_nothing_does_not_shut_out_another() -> None:
    """Shoes 20 % off (priority 5) names nothing in a cart of tea: it cannot win the level,
    or the tea's 10 % would be dropped for an offer that takes nothing either."""
    shoes = offer(
        "shoes",
        Rule(Kind.PERCENT_OFF, Level.ITEM, Selector(skus=frozenset({"SHOE"})), percent_bps=2000),
        stackable=False,
        priority=5,
    )
    tea = offer(
        "tea",
        Rule(Kind.PERCENT_OFF, Level.ITEM, Selector(skus=frozenset({"TEA"})), percent_bps=1000),
        stackable=False,
    )
    three_for_two = offer(
        "sets",
        Rule(Kind.BUY_X_GET_Y, Level.ITEM, percent_bps=10000, buy_quantity=2, get_quantity=1),
        stackable=False,
        priority=9,
    )  # one unit in the cart: no set is formed
    priced = price([shoes, tea, three_for_two], [Line("TEA", 1, 400)], USD)
    assert [(a.source, a.amount) for a in priced.applied] == [("tea", 40)]
    # With shoes in the cart the priority decides, as before.
    both = [Line("TEA", 1, 400), Line("SHOE", 1, 5000)]
    assert [a.source for a in price([shoes, tea], both, USD).applied] == ["shoes"]


def test_conditions_channel_location_groups_and_minimum_quantity() -> None:
    vip = offer(
        "vip",
        Rule(Kind.PERCENT_OFF, percent_bps=1000),
        conditions=Conditions(
            channels=frozenset({"web"}),
            location_ids=frozenset({"loc_1"}),
            customer_groups=frozenset({"vip"}),
            min_quantity=2,
        ),
    )
    lines = [Line("X", 2, 1000)]
    ok = Context(channel="web", location_id="loc_1", customer_groups=frozenset({"vip", "staff"}))
    assert price([vip], lines, USD, ok).total_discount == 200
    for ctx in (
        Context(channel="register", location_id="loc_1", customer_groups=frozenset({"vip"})),
        Context(channel="web", location_id="loc_2", customer_groups=frozenset({"vip"})),
        Context(channel="web", location_id="loc_1"),
    ):
        assert price([vip], lines, USD, ctx).total_discount == 0
    assert price([vip], [Line("X", 1, 1000)], USD, ok).total_discount == 0


def test_a_window_uses_local_wall_clock_time_and_ends_exclusive() -> None:
    winter = offer(
        "winter",
        Rule(Kind.PERCENT_OFF, percent_bps=1000),
        conditions=Conditions(
            starts_at=datetime(2026, 12, 1),
            ends_at=datetime(2027, 1, 1),
            time_zone="America/New_York",
        ),
    )
    lines = [Line("X", 1, 1000)]
    # 2027-01-01 03:00 UTC is still 2026-12-31 22:00 in New York.
    assert (
        price([winter], lines, USD, Context(at=datetime(2027, 1, 1, 3, tzinfo=UTC))).total_discount
        == 100
    )
    assert (
        price([winter], lines, USD, Context(at=datetime(2027, 1, 1, 5, tzinfo=UTC))).total_discount
        == 0
    )
    assert (
        price([winter], lines, USD, Context(at=datetime(2026, 12, 1, 4, tzinfo=UTC))).total_discount
        == 0
    )
    assert price([winter], lines, USD, Context()).total_discount == 0  # no clock: no window


def test_buy_x_get_y_limit_per_order() -> None:
    limited = offer(
        "lim",
        Rule(
            Kind.BUY_X_GET_Y,
            Level.ITEM,
            SHIRTS,
            percent_bps=5000,
            buy_quantity=1,
            get_quantity=1,
            limit_per_order=2,
        ),
    )
    priced = price([limited], [shirt("A", 1000, 10)], USD)
    assert priced.total_discount == 1000  # two sets, one half-price shirt each


def test_an_amount_off_each_unit_skips_the_units_already_given_free() -> None:
    """5.00 off each shirt after buy one get one free: the free shirt has nothing left to take
    5.00 off, so the paid one alone gets it. Capped at the line only, the 5.00 of the free
    unit came off the paid one and two 10.00 shirts cost nothing."""
    two = [shirt("C", 1000, 2)]
    priced = price([BOGO, ITEM_5_OFF], two, USD)
    assert priced.total_discount == 1000 + 500
    assert [(a.source, a.amount) for a in priced.applied] == [("bogo", 1000), ("item5", 500)]
    tote = offer("tote", Rule(Kind.FREE_ITEM, Level.ITEM, SHIRTS, get_quantity=1), priority=1)
    assert price([tote, ITEM_5_OFF], two, USD).total_discount == 1000 + 500
    # A unit bought for the set (paid in full) still takes its 5.00.
    three = [shirt("C", 1000, 3)]
    assert price([BOGO, ITEM_5_OFF], three, USD).total_discount == 1000 + 2 * 500


def test_an_amount_off_each_unit_after_a_partial_set_is_capped_unit_by_unit() -> None:
    """A set discounts some of a line's units: those units have only what the set left them,
    the others their full price. 9.00 off each of three 10.00 shirts after "any 2 for 15.00":
    the two bundled shirts have 7.50 left each (7.50 off each, not 9.00), the third takes the
    whole 9.00. Capped at the line instead, the bundled shirts' excess came off the third and
    the three cost nothing."""
    nine = offer("item9", Rule(Kind.AMOUNT_OFF, Level.ITEM, SHIRTS, amount=900))
    two_for_15 = offer("two4", Rule(Kind.BUNDLE, Level.ITEM, SHIRTS, amount=1500, get_quantity=2))
    three = [shirt("A", 1000, 3)]
    priced = price([two_for_15, nine], three, USD)
    assert [(a.source, a.amount) for a in priced.applied] == [("two4", 500), ("item9", 2400)]
    assert priced.total == 100
    # Buy 2 get 1 half price: the half-price shirt has 5.00 left, so 6.00 off each takes 5.00
    # off it and 6.00 off each of the two bought in full.
    six = offer("item6", Rule(Kind.AMOUNT_OFF, Level.ITEM, SHIRTS, amount=600))
    half = offer(
        "half",
        Rule(
            Kind.BUY_X_GET_Y, Level.ITEM, SHIRTS, percent_bps=5000, buy_quantity=2, get_quantity=1
        ),
    )
    priced = price([half, six], three, USD)
    assert [(a.source, a.amount) for a in priced.applied] == [("half", 500), ("item6", 1700)]
    # A rate off the line between them shrinks every unit alike: 10 % leaves the half-price
    # shirt 4.50 and the others 9.00 each.
    ten = offer("ten", Rule(Kind.PERCENT_OFF, Level.ITEM, SHIRTS, percent_bps=1000))
    priced = price([half, ten, six], three, USD)
    assert [(a.source, a.amount) for a in priced.applied] == [
        ("half", 500),
        ("ten", 250),
        ("item6", 450 + 600 + 600),
    ]
    # Limited to one unit: it goes where the whole amount lands, a unit bought in full.
    one = offer("one6", Rule(Kind.AMOUNT_OFF, Level.ITEM, SHIRTS, amount=600, limit_per_order=1))
    priced = price([half, one], [shirt("A", 1000, 3)], USD)
    assert [(a.source, a.amount) for a in priced.applied] == [("half", 500), ("one6", 600)]
    # Across lines: a bundle that groups a dear shirt with a cheap one leaves the cheap one's
    # bundled unit 5.00 (its share of the 15.00 saved is 5.00); the cheap line's other unit is
    # still 10.00 and takes the whole 8.00.
    eight = offer("item8", Rule(Kind.AMOUNT_OFF, Level.ITEM, SHIRTS, amount=800))
    priced = price([two_for_15, eight], [shirt("A", 2000), shirt("B", 1000, 2)], USD)
    assert list(priced.line_discounts) == [1000 + 800, 500 + 500 + 800]


def test_an_amount_off_each_unit_with_a_limit_takes_the_units_it_is_worth_most_on() -> None:
    """10.00 off each shirt, at most two: a 3.00 sock-shirt, a 25.00 shirt and a 40.00 one. A
    unit's discount is capped at its price, so on the 3.00 shirt the offer is worth 3.00 only:
    the two units it discounts are the 25.00 and 40.00 ones, 20.00 off as the offer says.
    Taking the cheapest units first gave 3.00 + 10.00 = 13.00."""
    two = offer("two10", Rule(Kind.AMOUNT_OFF, Level.ITEM, SHIRTS, amount=1000, limit_per_order=2))
    lines = [shirt("CHEAP", 300), shirt("MID", 2500), shirt("DEAR", 4000)]
    priced = price([two], lines, USD)
    assert priced.total_discount == 2000
    assert list(priced.line_discounts) == [0, 1000, 1000]
    # Each unit worth the whole amount: the dearest units take it, whatever the order sent.
    priced = price([two], [shirt("A", 2500, 2), shirt("B", 4000, 2), shirt("C", 300, 3)], USD)
    assert list(priced.line_discounts) == [0, 2000, 0]
    # Three units of a 6.00 line and one 30.00 unit, at most three units: the 30.00 unit's
    # 10.00, then two of the 6.00 units at 6.00 each (never the 6.00 units first).
    three = offer(
        "three10", Rule(Kind.AMOUNT_OFF, Level.ITEM, SHIRTS, amount=1000, limit_per_order=3)
    )
    priced = price([three], [shirt("S", 600, 3), shirt("L", 3000)], USD)
    assert list(priced.line_discounts) == [1200, 1000]
    # A unit a set discounted counts at what the set left it: buy one get one half price on
    # two 12.00 shirts leaves one at 6.00; with a 20.00 shirt, the two units 10.00 off is
    # worth most on are the 20.00 one and the 12.00 one bought in full.
    half = offer(
        "half",
        Rule(
            Kind.BUY_X_GET_Y, Level.ITEM, Selector(skus=frozenset({"T"})), percent_bps=5000,
            buy_quantity=1, get_quantity=1,
        ),
    )  # fmt: skip
    priced = price([half, two], [shirt("T", 1200, 2), shirt("U", 2000)], USD)
    assert [(a.source, a.amount) for a in priced.applied] == [("half", 600), ("two10", 2000)]


def test_buy_a_get_b_discounts_only_b() -> None:
    rule = Rule(
        Kind.BUY_X_GET_Y,
        Level.ITEM,
        Selector(skus=frozenset({"PHONE"})),
        percent_bps=10000,
        buy_quantity=1,
        get_quantity=1,
        get_items=Selector(skus=frozenset({"CASE"})),
    )
    priced = price([offer("p", rule)], [Line("PHONE", 1, 50000), Line("CASE", 3, 2000)], USD)
    assert list(priced.line_discounts) == [0, 2000]


def test_currency_mismatch_and_zero_prices() -> None:
    assert price([SPEND_50], [Line("X", 1, 9000)], "EUR").total_discount == 0
    assert price([TEN_PERCENT, BOGO], [shirt("A", 0, 3)], USD).total_discount == 0


def test_allocation_by_largest_remainder() -> None:
    assert allocate(100, [1, 1, 1]) == [34, 33, 33]
    assert allocate(10, [3333, 3333, 3334]) == [3, 3, 4]
    assert allocate(0, [5, 7]) == [0, 0]
    assert allocate(5, [0, 0]) == [0, 0]


# ---------- properties ----------

OFFERS = [
    BOGO,
    THREE_FOR_TWO,
    TIERED,
    SPEND_50,
    TEN_PERCENT,
    BUNDLE,
    SALE,
    FREE_TOTE,
    EXCL_30,
    ITEM_5_OFF,
    COUPON_5,
]

lines_st = st.lists(
    st.builds(
        Line,
        sku=st.sampled_from(["A", "B", "MUG", "TOTE", "X"]),
        quantity=st.integers(1, 12),
        unit_price=st.integers(0, 20000),
        categories=st.sampled_from([frozenset(), frozenset({"shirts"})]),
        manual=st.one_of(
            st.none(),
            st.builds(
                Manual,
                st.just(ManualKind.PERCENT),
                st.integers(0, 10000),
                st.just("r"),
                st.just("e"),
            ),
            st.builds(
                Manual,
                st.just(ManualKind.AMOUNT),
                st.integers(0, 30000),
                st.just("r"),
                st.just("e"),
            ),
        ),
    ),
    min_size=1,
    max_size=8,
)
offers_st = st.lists(st.sampled_from(OFFERS), unique=True, max_size=6)


@given(lines=lines_st, offers=offers_st, data=st.data())
def test_properties_never_negative_never_above_list_sums_exact_order_independent(
    lines: list[Line], offers: list[Offer], data: st.DataObject
) -> None:
    ctx = Context(coupon_offers=frozenset({"coupon5"}))
    priced = price(offers, lines, USD, ctx)
    for ln, d in zip(lines, priced.line_discounts, strict=True):
        assert 0 <= d <= ln.unit_price * ln.quantity  # no line below zero
    assert 0 <= priced.total_discount <= priced.subtotal  # never above list, never negative
    assert priced.total_discount == sum(priced.line_discounts)
    for a in priced.applied:
        assert a.amount == sum(a.lines) and all(x >= 0 for x in a.lines)
    perm = data.draw(st.permutations(range(len(lines))))
    shuffled = price(list(reversed(offers)), [lines[i] for i in perm], USD, ctx)
    assert shuffled.total_discount == priced.total_discount
    # Line by line too (identical lines may trade their discounts: compare as a multiset).
    moved = sorted(zip([repr(lines[i]) for i in perm], shuffled.line_discounts, strict=True))
    assert moved == sorted(zip(map(repr, lines), priced.line_discounts, strict=True))


@given(
    total=st.integers(0, 10**9), weights=st.lists(st.integers(0, 10**7), min_size=1, max_size=30)
)
def test_allocation_sums_exactly_and_never_exceeds_a_weight(total: int, weights: list[int]) -> None:
    whole = sum(weights)
    total = min(total, whole)
    shares = allocate(total, weights)
    assert sum(shares) == (total if whole else 0)
    assert all(0 <= s <= w for s, w in zip(shares, weights, strict=True))
