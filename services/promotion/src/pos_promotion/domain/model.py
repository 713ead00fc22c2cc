"""Promotions and how they discount a cart. Plain Python: no storage or transport here."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from pos_kit.errors import FieldViolation, raise_if, require
from pos_kit.money import BPS, Money


@dataclass
class Promotion:
    id: str
    name: str
    percent_off_bps: int
    minimum_subtotal: Money | None
    active: bool = True
    created_at: datetime | None = None

    def applies_to(self, subtotal: Money) -> bool:
        if not self.active:
            return False
        if self.minimum_subtotal is None or self.minimum_subtotal.amount == 0:
            return True
        # A threshold in another currency cannot be compared: it does not apply.
        return (
            self.minimum_subtotal.currency == subtotal.currency
            and subtotal.amount >= self.minimum_subtotal.amount
        )

    def reason(self) -> str:
        percent = f"{self.percent_off_bps / 100:g}%"
        if self.minimum_subtotal is None or self.minimum_subtotal.amount == 0:
            return f"{self.name}: {percent} off"
        m = self.minimum_subtotal
        return f"{self.name}: {percent} off orders of {m.amount / 100:.2f} {m.currency} or more"


@dataclass(frozen=True)
class PromotionCreated:
    promotion: Promotion


@dataclass(frozen=True)
class CartLine:
    sku: str
    quantity: int
    unit_price: Money


@dataclass(frozen=True)
class AppliedDiscount:
    promotion_id: str
    amount: Money
    reason: str


def validate_new(name: str, percent_off_bps: int, minimum: Money | None) -> None:
    violations: list[FieldViolation] = []
    violations += require(0 < len(name.strip()) <= 200, "name", "must be 1 to 200 characters")
    violations += require(
        0 < percent_off_bps <= BPS, "percent_off_bps", f"must be between 1 and {BPS}"
    )
    if minimum is not None:
        violations += require(
            minimum.amount >= 0, "minimum_subtotal.amount", "must not be negative"
        )
    raise_if(violations)


def validate_cart(lines: list[CartLine], currency: str) -> None:
    violations: list[FieldViolation] = []
    violations += require(bool(lines), "lines", "must have at least one line")
    for i, line in enumerate(lines):
        violations += require(line.quantity >= 1, f"lines[{i}].quantity", "must be at least 1")
        violations += require(
            line.unit_price.amount >= 0, f"lines[{i}].unit_price.amount", "must not be negative"
        )
        violations += require(
            line.unit_price.currency == currency,
            f"lines[{i}].unit_price.currency",
            f"must be the cart currency {currency}",
        )
    raise_if(violations)


def calculate(
    promotions: list[Promotion], lines: list[CartLine], currency: str
) -> list[AppliedDiscount]:
    """Every applicable promotion, each taken off what the previous ones left.

    Applying them one after another (10 % then 5 % is 14.5 %, not 15 %) keeps the total below
    the cart and makes the order of application the only rule to explain.
    """
    validate_cart(lines, currency)
    subtotal = Money.zero(currency)
    for line in lines:
        subtotal = subtotal + line.unit_price * line.quantity
    remaining = subtotal
    applied: list[AppliedDiscount] = []
    for promo in sorted(promotions, key=lambda p: p.id):
        if not promo.applies_to(subtotal) or remaining.amount <= 0:
            continue
        amount = remaining.apply_rate(promo.percent_off_bps)
        amount = Money(min(amount.amount, remaining.amount), currency)
        if amount.amount == 0:
            continue
        remaining = remaining - amount
        applied.append(AppliedDiscount(promo.id, amount, promo.reason()))
    return applied
