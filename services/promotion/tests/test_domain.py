"""The discount rules and the validation of promotions and carts, as plain Python."""

from __future__ import annotations

import pytest

from pos_kit.errors import InvalidArgument
from pos_kit.money import Money
from pos_promotion.domain.model import (
    MAX_LINES,
    Cart,
    CartLineInput,
    MoneyInput,
    Promotion,
    discounts_for,
    format_money,
    new_cart,
    new_promotion,
)

USD = "USD"


def cart(*prices: int, currency: str = USD) -> Cart:
    return new_cart(
        [CartLineInput(f"SKU{i}", 1, MoneyInput(p, currency)) for i, p in enumerate(prices)],
        currency,
    )


def fields(err: pytest.ExceptionInfo[InvalidArgument]) -> list[str]:
    return [v.field for v in err.value.violations]


def test_a_threshold_applies_once_the_subtotal_reaches_it() -> None:
    promo = Promotion("promo_1", "Big basket", 1000, Money(5000, USD))
    assert discounts_for([promo], cart(2500, 2499)).applied == ()
    result = discounts_for([promo], cart(2500, 2500))
    assert [(d.promotion_id, d.amount) for d in result.applied] == [("promo_1", Money(500, USD))]
    assert result.total == Money(500, USD)
    assert result.applied[0].reason == "Big basket: 10% off orders of 50.00 USD or more"


def test_promotions_stack_on_what_is_left_so_they_compound() -> None:
    promos = [Promotion("promo_b", "B", 500, None), Promotion("promo_a", "A", 1000, None)]
    result = discounts_for(promos, cart(10000))
    # Oldest (lowest id) first: 10 % of 100.00, then 5 % of the 90.00 left: 14.5 %, not 15 %.
    assert [(d.promotion_id, d.amount.amount) for d in result.applied] == [
        ("promo_a", 1000),
        ("promo_b", 450),
    ]
    assert result.total == Money(1450, USD)


def test_stacked_promotions_never_take_the_cart_below_zero() -> None:
    promos = [Promotion("promo_x", "X", 10000, None), Promotion("promo_y", "Y", 9000, None)]
    result = discounts_for(promos, cart(999))
    assert result.total == Money(999, USD)
    # Nothing is left for the second one, so it is not listed as applied.
    assert [d.promotion_id for d in result.applied] == ["promo_x"]


def test_the_discount_is_rounded_half_away_from_zero() -> None:
    promo = Promotion("promo_1", "Ten", 1000, None)
    assert discounts_for([promo], cart(1005)).total == Money(101, USD)  # 100.5 -> 101
    assert discounts_for([promo], cart(1004)).total == Money(100, USD)  # 100.4 -> 100


def test_inactive_promotions_and_thresholds_in_another_currency_do_not_apply() -> None:
    promos = [
        Promotion("promo_a", "A", 1000, None, active=False),
        Promotion("promo_b", "B", 1000, Money(100, "EUR")),
    ]
    assert discounts_for(promos, cart(10000)).total == Money(0, USD)


def test_a_zero_threshold_in_any_currency_means_always() -> None:
    promo = Promotion("promo_a", "Everything", 1250, Money(0, "EUR"))
    result = discounts_for([promo], cart(10000))
    assert result.total == Money(1250, USD)
    assert result.applied[0].reason == "Everything: 12.5% off"


def test_reasons_show_the_threshold_with_the_currency_exponent() -> None:
    assert format_money(Money(50000, "JPY")) == "50000 JPY"
    assert format_money(Money(1500, "KWD")) == "1.500 KWD"
    assert format_money(Money(5, USD)) == "0.05 USD"
    promo = Promotion("promo_j", "Yen", 1, Money(50000, "JPY"))
    assert promo.reason() == "Yen: 0.01% off orders of 50000 JPY or more"


def test_a_new_promotion_is_trimmed_and_active() -> None:
    promo = new_promotion("promo_1", "  Summer  ", 10000, MoneyInput(0, USD))
    assert (promo.name, promo.percent_off_bps, promo.active) == ("Summer", 10000, True)
    assert promo.minimum_subtotal == Money(0, USD)
    assert new_promotion("promo_2", "x" * 200, 1, None).minimum_subtotal is None


def test_every_bad_promotion_field_is_named() -> None:
    with pytest.raises(InvalidArgument) as err:
        new_promotion("promo_1", "   ", 0, MoneyInput(-1, "usd"))
    assert fields(err) == [
        "name",
        "percent_off_bps",
        "minimum_subtotal.currency",
        "minimum_subtotal.amount",
    ]
    with pytest.raises(InvalidArgument) as err:
        new_promotion("promo_1", "x" * 201, 10001, None)
    assert fields(err) == ["name", "percent_off_bps"]


def test_a_line_in_another_currency_is_a_field_error() -> None:
    lines = [
        CartLineInput("A", 1, MoneyInput(100, USD)),
        CartLineInput("B", 1, MoneyInput(100, "EUR")),
    ]
    with pytest.raises(InvalidArgument) as err:
        new_cart(lines, USD)
    assert fields(err) == ["lines[1].unit_price.currency"]


def test_every_bad_cart_field_is_named() -> None:
    lines = [
        CartLineInput("A", 0, MoneyInput(-5, USD)),
        CartLineInput("B", 1_000_001, MoneyInput(100, USD)),
    ]
    with pytest.raises(InvalidArgument) as err:
        new_cart(lines, USD)
    assert fields(err) == ["lines[0].quantity", "lines[0].unit_price.amount", "lines[1].quantity"]
    with pytest.raises(InvalidArgument) as err:
        new_cart([], "XXX")
    assert fields(err) == ["currency", "lines"]
    too_many = [CartLineInput("A", 1, MoneyInput(1, USD))] * (MAX_LINES + 1)
    with pytest.raises(InvalidArgument) as err:
        new_cart(too_many, USD)
    assert fields(err) == ["lines"]


def test_a_subtotal_that_cannot_be_represented_is_refused() -> None:
    huge = CartLineInput("A", 1_000_000, MoneyInput(2**62, USD))
    with pytest.raises(InvalidArgument) as err:
        new_cart([huge], USD)
    assert fields(err) == ["lines"]
