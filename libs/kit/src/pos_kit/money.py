"""Money: integer minor units with an ISO 4217 currency, and the one rounding rule.

Every amount in Omnitill is an integer count of the currency's minor unit. Fractions arise only
when a rate (tax, percent off) is applied; `apply_rate` is the single place they are rounded,
half away from zero, so a till, a web shop and a refund always agree to the cent.
"""

from __future__ import annotations

from dataclasses import dataclass

# Currencies accepted and their minor-unit exponents (ISO 4217). Extend as markets are added.
MINOR_UNITS: dict[str, int] = {
    "AUD": 2, "BRL": 2, "CAD": 2, "CHF": 2, "CNY": 2, "CZK": 2, "DKK": 2, "EUR": 2, "GBP": 2,
    "HKD": 2, "HUF": 2, "INR": 2, "JPY": 0, "KRW": 0, "MXN": 2, "NOK": 2, "NZD": 2, "PLN": 2,
    "SEK": 2, "SGD": 2, "USD": 2, "ZAR": 2, "KWD": 3, "BHD": 3,
}  # fmt: skip

BPS = 10_000  # basis points in one whole


class MoneyError(ValueError):
    """An amount or currency that is not valid money."""


def check_currency(code: str) -> str:
    if code not in MINOR_UNITS:
        raise MoneyError(f"unknown or unsupported ISO 4217 currency code {code!r}")
    return code


def round_half_away(numerator: int, denominator: int) -> int:
    """Integer division rounded half away from zero: the project's one rounding rule."""
    if denominator <= 0:
        raise MoneyError("denominator must be positive")
    sign = -1 if numerator < 0 else 1
    quotient, remainder = divmod(abs(numerator), denominator)
    if remainder * 2 >= denominator:
        quotient += 1
    return sign * quotient


@dataclass(frozen=True, slots=True)
class Money:
    amount: int
    currency: str

    def __post_init__(self) -> None:
        if isinstance(self.amount, bool) or not isinstance(self.amount, int):
            raise MoneyError("amount must be an integer number of minor units")
        check_currency(self.currency)

    @classmethod
    def zero(cls, currency: str) -> Money:
        return cls(0, currency)

    def _same(self, other: Money) -> None:
        if other.currency != self.currency:
            raise MoneyError(f"cannot combine {self.currency} with {other.currency}")

    def __add__(self, other: Money) -> Money:
        self._same(other)
        return Money(self.amount + other.amount, self.currency)

    def __sub__(self, other: Money) -> Money:
        self._same(other)
        return Money(self.amount - other.amount, self.currency)

    def __mul__(self, quantity: int) -> Money:
        return Money(self.amount * quantity, self.currency)

    def __neg__(self) -> Money:
        return Money(-self.amount, self.currency)

    def __lt__(self, other: Money) -> bool:
        self._same(other)
        return self.amount < other.amount

    def __le__(self, other: Money) -> bool:
        self._same(other)
        return self.amount <= other.amount

    def apply_rate(self, rate_bps: int) -> Money:
        """This amount times a rate in basis points, rounded by the one rule."""
        return Money(round_half_away(self.amount * rate_bps, BPS), self.currency)

    def allocate(self, weights: list[int]) -> list[Money]:
        """Split into parts proportional to weights that add up exactly to this amount.

        Remainders go to the largest weights first, so a discount spread over lines never
        gains or loses a cent.
        """
        total = sum(weights)
        if total <= 0 or any(w < 0 for w in weights):
            raise MoneyError("weights must be non-negative with a positive sum")
        shares = [self.amount * w // total for w in weights]
        left = self.amount - sum(shares)
        order = sorted(range(len(weights)), key=lambda i: (-weights[i], i))
        for i in order[:left]:
            shares[i] += 1
        return [Money(s, self.currency) for s in shares]
