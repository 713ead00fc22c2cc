"""Money and the one rounding rule."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from pos_kit.money import Money, MoneyError, round_half_away


def test_rounding_is_half_away_from_zero() -> None:
    assert round_half_away(5, 10) == 1
    assert round_half_away(4, 10) == 0
    assert round_half_away(-5, 10) == -1
    assert round_half_away(-4, 10) == 0
    assert round_half_away(15, 10) == 2
    assert round_half_away(25, 10) == 3  # not banker's rounding


def test_tax_at_a_rate_in_basis_points() -> None:
    assert Money(1999, "USD").apply_rate(825) == Money(165, "USD")  # 164.9175 -> 165
    assert Money(1000, "USD").apply_rate(1000) == Money(100, "USD")
    assert Money(-1999, "USD").apply_rate(825) == Money(-165, "USD")  # refunds mirror sales


def test_amounts_must_be_integers_of_a_known_currency() -> None:
    with pytest.raises(MoneyError):
        Money(10.5, "USD")  # type: ignore[arg-type]
    with pytest.raises(MoneyError):
        Money(True, "USD")
    with pytest.raises(MoneyError):
        Money(100, "usd")
    with pytest.raises(MoneyError):
        Money(100, "XXX")


def test_currencies_never_mix() -> None:
    with pytest.raises(MoneyError):
        _ = Money(100, "USD") + Money(100, "EUR")


@given(
    amount=st.integers(min_value=-(10**9), max_value=10**9),
    weights=st.lists(st.integers(min_value=0, max_value=1000), min_size=1, max_size=20).filter(
        lambda w: sum(w) > 0
    ),
)
def test_allocation_never_gains_or_loses_a_cent(amount: int, weights: list[int]) -> None:
    parts = Money(amount, "USD").allocate(weights)
    assert sum(p.amount for p in parts) == amount
    assert len(parts) == len(weights)
