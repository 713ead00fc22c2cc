"""Orders, their lines and totals. Plain Python: no storage or transport here."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from enum import Enum

from pos_kit.errors import FieldViolation, raise_if, require
from pos_kit.money import Money

MAX_LINES = 200
MAX_QUANTITY = 10_000


class OrderStatus(Enum):
    CONFIRMED = "confirmed"
    PAYMENT_DECLINED = "payment_declined"


class Tender(Enum):
    CASH = "cash"
    CARD = "card"


@dataclass(frozen=True)
class LineRequest:
    sku: str
    quantity: int


@dataclass(frozen=True)
class PricedItem:
    sku: str
    name: str
    unit_price: Money


@dataclass(frozen=True)
class SellingLocation:
    id: str
    currency: str
    tax_rate_bps: int


@dataclass
class OrderLine:
    sku: str
    name: str
    quantity: int
    unit_price: Money

    @property
    def line_total(self) -> Money:
        return self.unit_price * self.quantity


@dataclass(frozen=True)
class Totals:
    subtotal: Money
    discount: Money
    tax: Money
    total: Money


@dataclass
class Order:
    id: str
    location_id: str
    customer_id: str
    lines: list[OrderLine]
    totals: Totals
    discounts_applied: bool
    status: OrderStatus = OrderStatus.CONFIRMED
    payment_id: str = ""
    created_at: datetime | None = None
    events: list[object] = field(default_factory=list, repr=False, compare=False)

    def settle(self, payment_id: str, captured: bool) -> None:
        self.payment_id = payment_id
        self.status = OrderStatus.CONFIRMED if captured else OrderStatus.PAYMENT_DECLINED
        if captured:
            self.events.append(OrderConfirmed(self))


@dataclass(frozen=True)
class OrderConfirmed:
    order: Order


def validate_checkout(location_id: str, lines: list[LineRequest], tender: Tender | None) -> None:
    violations: list[FieldViolation] = []
    violations += require(bool(location_id), "location_id", "is required")
    violations += require(bool(lines), "lines", "must have at least one line")
    violations += require(len(lines) <= MAX_LINES, "lines", f"must have at most {MAX_LINES}")
    for i, line in enumerate(lines[:MAX_LINES]):
        violations += require(bool(line.sku), f"lines[{i}].sku", "is required")
        violations += require(
            1 <= line.quantity <= MAX_QUANTITY,
            f"lines[{i}].quantity",
            f"must be between 1 and {MAX_QUANTITY}",
        )
    skus = [line.sku for line in lines]
    violations += require(len(set(skus)) == len(skus), "lines", "must not repeat a sku")
    violations += require(tender is not None, "tender_type", "must be CASH or CARD")
    raise_if(violations)


def price_lines(
    lines: list[LineRequest], items: dict[str, PricedItem], location: SellingLocation
) -> list[OrderLine]:
    """The price snapshot: each line priced as the catalog stands at the moment of sale."""
    violations: list[FieldViolation] = []
    for i, line in enumerate(lines):
        item = items.get(line.sku)
        if item is not None and item.unit_price.currency != location.currency:
            violations.append(
                FieldViolation(
                    f"lines[{i}].sku",
                    f"is priced in {item.unit_price.currency}, the location sells in "
                    f"{location.currency}",
                )
            )
    raise_if(violations)
    return [
        OrderLine(line.sku, items[line.sku].name, line.quantity, items[line.sku].unit_price)
        for line in lines
    ]


def compute_totals(lines: list[OrderLine], discount: Money, tax_rate_bps: int) -> Totals:
    """Subtotal, discount (never more than the subtotal), tax on the discounted amount, total."""
    currency = lines[0].unit_price.currency
    subtotal = Money.zero(currency)
    for line in lines:
        subtotal = subtotal + line.line_total
    discount = Money(min(max(discount.amount, 0), subtotal.amount), currency)
    taxable = subtotal - discount
    tax = taxable.apply_rate(tax_rate_bps)
    return Totals(subtotal, discount, tax, taxable + tax)


# Every domain event this service raises; each has an integration event (adapters/events.py).
EVENTS = (OrderConfirmed,)
