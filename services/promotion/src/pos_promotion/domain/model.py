"""Promotions and how they discount a cart. Plain Python: no storage or transport here."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from pos_kit.errors import FieldViolation, raise_if, require
from pos_kit.money import BPS, MINOR_UNITS, Money

MAX_NAME_LENGTH = 200
# Bounds well above what the order service sends (200 lines of at most 10,000 units), so a
# checkout never trips them, while a cart still cannot add up past a protobuf int64.
MAX_LINES = 1_000
MAX_QUANTITY = 1_000_000
INT64_MAX = 2**63 - 1


@dataclass(frozen=True)
class MoneyInput:
    """An amount as a client sent it, before we know it is valid money."""

    amount: int
    currency: str


@dataclass
class Promotion:
    id: str
    name: str
    percent_off_bps: int
    minimum_subtotal: Money | None
    active: bool = True
    created_at: datetime | None = None

    @property
    def has_threshold(self) -> bool:
        return self.minimum_subtotal is not None and self.minimum_subtotal.amount > 0

    def applies_to(self, subtotal: Money) -> bool:
        if not self.active:
            return False
        if self.minimum_subtotal is None or not self.has_threshold:
            return True
        # A threshold in another currency cannot be compared without a rate we do not own:
        # the promotion simply does not apply to that cart.
        return (
            self.minimum_subtotal.currency == subtotal.currency
            and subtotal.amount >= self.minimum_subtotal.amount
        )

    def reason(self) -> str:
        """What a receipt or a cart preview shows, e.g. "Summer: 10% off orders of 50.00 USD
        or more" ("or more" because reaching the threshold is enough)."""
        percent = f"{self.percent_off_bps / 100:g}%"
        if self.minimum_subtotal is None or not self.has_threshold:
            return f"{self.name}: {percent} off"
        return f"{self.name}: {percent} off orders of {format_money(self.minimum_subtotal)} or more"


@dataclass(frozen=True)
class PromotionCreated:
    promotion: Promotion


@dataclass(frozen=True)
class CartLineInput:
    sku: str
    quantity: int
    unit_price: MoneyInput


@dataclass(frozen=True)
class CartLine:
    sku: str
    quantity: int
    unit_price: Money


@dataclass(frozen=True)
class Cart:
    currency: str
    lines: tuple[CartLine, ...]

    @property
    def subtotal(self) -> Money:
        total = Money.zero(self.currency)
        for line in self.lines:
            total = total + line.unit_price * line.quantity
        return total


@dataclass(frozen=True)
class AppliedDiscount:
    promotion_id: str
    amount: Money
    reason: str


@dataclass(frozen=True)
class Discounts:
    applied: tuple[AppliedDiscount, ...]
    total: Money


def format_money(m: Money) -> str:
    """50.00 USD, 500 JPY, 1.500 KWD: minor units shown with the currency's own exponent."""
    exponent = MINOR_UNITS[m.currency]
    sign = "-" if m.amount < 0 else ""
    whole, fraction = divmod(abs(m.amount), 10**exponent)
    digits = f"{whole}.{fraction:0{exponent}d}" if exponent else str(whole)
    return f"{sign}{digits} {m.currency}"


def _currency_violations(field: str, currency: str) -> list[FieldViolation]:
    return require(
        currency in MINOR_UNITS, field, f"{currency!r} is not a supported ISO 4217 currency code"
    )


def new_promotion(
    promotion_id: str, name: str, percent_off_bps: int, minimum: MoneyInput | None
) -> Promotion:
    """A valid new promotion, or InvalidArgument naming every field that is wrong."""
    name = name.strip()
    violations: list[FieldViolation] = []
    violations += require(bool(name), "name", "is required")
    violations += require(
        len(name) <= MAX_NAME_LENGTH, "name", f"must be at most {MAX_NAME_LENGTH} characters"
    )
    violations += require(
        1 <= percent_off_bps <= BPS, "percent_off_bps", f"must be between 1 and {BPS}"
    )
    if minimum is not None:
        violations += _currency_violations("minimum_subtotal.currency", minimum.currency)
        violations += require(
            minimum.amount >= 0, "minimum_subtotal.amount", "must not be negative"
        )
    raise_if(violations)
    threshold = None if minimum is None else Money(minimum.amount, minimum.currency)
    return Promotion(promotion_id, name, percent_off_bps, threshold)


def new_cart(lines: list[CartLineInput], currency: str) -> Cart:
    """A valid cart in one currency, or InvalidArgument naming every field that is wrong."""
    violations = _currency_violations("currency", currency)
    violations += require(bool(lines), "lines", "must have at least one line")
    violations += require(len(lines) <= MAX_LINES, "lines", f"must have at most {MAX_LINES}")
    for i, line in enumerate(lines[:MAX_LINES]):
        violations += require(
            1 <= line.quantity <= MAX_QUANTITY,
            f"lines[{i}].quantity",
            f"must be between 1 and {MAX_QUANTITY}",
        )
        violations += require(
            line.unit_price.amount >= 0, f"lines[{i}].unit_price.amount", "must not be negative"
        )
        violations += require(
            line.unit_price.currency == currency,
            f"lines[{i}].unit_price.currency",
            f"must be the cart currency {currency!r}",
        )
    raise_if(violations)
    cart = Cart(
        currency,
        tuple(CartLine(ln.sku, ln.quantity, Money(ln.unit_price.amount, currency)) for ln in lines),
    )
    # Checked after the lines are known to be sane: the total is what would not fit downstream.
    raise_if(require(cart.subtotal.amount <= INT64_MAX, "lines", "the subtotal is too large"))
    return cart


def discounts_for(promotions: list[Promotion], cart: Cart) -> Discounts:
    """Every promotion the cart qualifies for, each taken off what the previous ones left.

    Why one after another on the remaining amount rather than each on the full subtotal:
    percentages then compound (10 % then 5 % is 14.5 %, not 15 %), so no combination of
    promotions can ever discount more than the cart is worth, and each discount is a plain
    `apply_rate` on a known amount, rounded by the one rule. Qualifying is judged on the cart's
    subtotal, not on what is left, so adding a promotion never disqualifies another. The order
    is by id (time-ordered, so oldest first), which makes the cents of rounding reproducible.
    """
    subtotal = cart.subtotal
    remaining = subtotal
    applied: list[AppliedDiscount] = []
    for promo in sorted(promotions, key=lambda p: p.id):
        if not promo.applies_to(subtotal):
            continue
        # apply_rate of at most 100 % never exceeds what is left; min() keeps that true even if
        # a bad row ever slipped past validation, so the cart never goes below zero.
        off = remaining.apply_rate(promo.percent_off_bps)
        amount = Money(min(off.amount, remaining.amount), cart.currency)
        if amount.amount <= 0:
            # Nothing left to take off (or a rate too small for this cart): not an applied
            # discount, so no line on the receipt claims one.
            continue
        remaining = remaining - amount
        applied.append(AppliedDiscount(promo.id, amount, promo.reason()))
    return Discounts(tuple(applied), subtotal - remaining)


# Every domain event this service raises; each has an integration event (adapters/events.py).
EVENTS = (PromotionCreated,)
