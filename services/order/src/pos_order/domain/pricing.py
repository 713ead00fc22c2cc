"""The pricing step shared by a checkout, an order and the cart preview (`CalculateCart`):
the lines as the catalog prices them, the promotion service's discounts spread on the lines,
each line's tax at the selling location, and the totals. Plain code: whatever calls it (a sale
or a preview) gets the same cents from the same inputs.
"""

from __future__ import annotations

from dataclasses import dataclass

from pos_kit.errors import FieldViolation, require
from pos_order.domain.tax import EXEMPT, TaxTable, line_tax


@dataclass(frozen=True)
class LineDiscount:
    """One discount's share on one line: the offer (or "manual") and why."""

    promotion_id: str
    amount: int
    reason: str
    requested_by: str = ""  # a manual discount's: who asked


@dataclass(frozen=True)
class PricingWarning:
    """A matter of how a sale or a cart was priced that is not an error (the architecture's
    "the order says so with a warning"): a stable code for programs, words for people."""

    code: str
    message: str


DISCOUNTS_UNAVAILABLE = PricingWarning(
    "discounts_unavailable",
    "Promotions could not be reached: sold at list price, no discount was applied.",
)


def pricing_warnings(discounts_applied: bool) -> list[PricingWarning]:
    """What an order or a cart priced so says beside its totals. Derived from what is kept
    (`discounts_applied`), never stored apart, so an order and its every snapshot agree."""
    return [] if discounts_applied else [DISCOUNTS_UNAVAILABLE]


# A customer the merchant tags so (in the customer service) buys without tax.
TAX_EXEMPT_TAGS = frozenset({"tax_exempt", "tax-exempt"})


@dataclass(frozen=True)
class Buyer:
    """What pricing knows of the customer, from the customer service's events (no call):
    their groups (offers for some groups only) and whether they are tax-exempt."""

    groups: tuple[str, ...] = ()
    tax_exempt: bool = False

    @staticmethod
    def of(group_ids: list[str] | tuple[str, ...], tags: list[str] | tuple[str, ...]) -> Buyer:
        exempt = any(t.strip().lower() in TAX_EXEMPT_TAGS for t in tags)
        return Buyer(tuple(sorted(group_ids)), exempt)


@dataclass(frozen=True)
class KnownCustomer:
    """The customer a sale naming an id is for, as the read model knows them: the id itself, or
    the survivor of the merges it went through (a duplicate merged away buys as the survivor),
    with what pricing needs of them."""

    id: str
    buyer: Buyer


# How many merges a read follows from an id to its survivor: far more than real chains, and a
# bound if events ever made a loop.
MAX_MERGE_HOPS = 10


LINE_KINDS = ("percent", "amount", "price")
ORDER_KINDS = ("percent", "amount")


@dataclass(frozen=True)
class Manual:
    """A discount given by hand at the register: `percent` (basis points), `amount` (minor
    units off each unit of a line, or once off the order) or, on a line, `price` (the new unit
    price, never above list). The promotion service applies it in its stated place in the order
    of application; the order records it with its reason and who asked."""

    kind: str
    value: int
    reason: str
    requested_by: str


def validate_manual(
    manual: Manual | None, name: str, kinds: tuple[str, ...]
) -> list[FieldViolation]:
    if manual is None:
        return []
    out: list[FieldViolation] = []
    out += require(manual.kind in kinds, f"{name}.kind", "must be " + ", ".join(kinds))
    top = 10_000 if manual.kind == "percent" else 100_000_000_00
    out += require(0 < manual.value <= top, f"{name}.value", f"must be between 1 and {top}")
    out += require(0 < len(manual.reason.strip()) <= 200, f"{name}.reason", "is required "
                   "(at most 200 characters)")  # fmt: skip
    out += require(0 < len(manual.requested_by) <= 64, f"{name}.requested_by", "is required: "
                   "who asked for it")  # fmt: skip
    return out


def manual_off_bps(lines: list[Manual | None], order_manual: Manual | None) -> int | None:
    """The most any line is sold below its price by manual percentages, in basis points: a
    line's and the order's compounded (each applies to what the other left). None when an
    amount off is given: it cannot be judged as a percentage before pricing."""
    asked = [m for m in (*lines, order_manual) if m is not None]
    if any(m.kind == "amount" for m in asked):
        return None
    whole = 10_000
    on_order = order_manual.value if order_manual is not None else 0
    on_lines = [m.value if m is not None and m.kind == "percent" else 0 for m in lines]
    return max(
        (whole - (whole - line) * (whole - on_order) // whole for line in on_lines),
        default=on_order,
    )


@dataclass(frozen=True)
class OfferShare:
    """A discount as the promotion service applied it, with its share per line index."""

    promotion_id: str
    reason: str
    lines: tuple[tuple[int, int], ...]
    requested_by: str = ""


def allocate(total: int, weights: list[int]) -> list[int]:
    """`total` split in proportion to `weights` by largest remainder: the parts add up to it
    exactly, and none is more than its weight when the total is not."""
    whole = sum(weights)
    if total <= 0 or whole <= 0:
        return [0] * len(weights)
    shares = [total * w // whole for w in weights]
    left = total - sum(shares)
    by_remainder = sorted(range(len(weights)), key=lambda i: (-(total * weights[i] % whole), i))
    for i in by_remainder[:left]:
        shares[i] += 1
    return shares


def line_discounts(
    line_totals: list[int], total: int, offers: list[OfferShare], per_line: list[int]
) -> list[list[LineDiscount]]:
    """Each line's discounts with their offer and reason. The promotion service's own split is
    kept when it adds up; otherwise (an older answer, a flat amount) the total is spread over
    the lines by value."""
    n = len(line_totals)
    out: list[list[LineDiscount]] = [[] for _ in range(n)]
    split = sum(a for o in offers for _, a in o.lines)
    if offers and split == total and all(0 <= i < n for o in offers for i, _ in o.lines):
        for o in offers:
            for i, amount in o.lines:
                if amount:
                    out[i].append(LineDiscount(o.promotion_id, amount, o.reason, o.requested_by))
        return out
    shares = per_line if len(per_line) == n and sum(per_line) == total else None
    if shares is None:
        shares = allocate(total, line_totals)
    reason = offers[0].reason if len(offers) == 1 else "discount"
    promotion = offers[0].promotion_id if len(offers) == 1 else ""
    for i, amount in enumerate(shares):
        if amount:
            out[i].append(LineDiscount(promotion, amount, reason))
    return out


@dataclass(frozen=True)
class PricedLine:
    line_total: int
    discount: int
    tax: int
    taxes: tuple[tuple[str, int], ...]
    discounts: tuple[LineDiscount, ...]
    # The rate (basis points) of each tax that applied, by name: what the line was taxed at,
    # where its goods were handed over or left from, kept for its receipt.
    rates: tuple[tuple[str, int], ...] = ()
    # Whether each tax compounded (charged on the amount plus the taxes listed before it), by
    # name, as it was charged: the store's settings may change after the sale.
    compound: tuple[tuple[str, bool], ...] = ()


@dataclass(frozen=True)
class CartTotals:
    subtotal: int
    discount: int
    tax: int
    total: int
    inclusive: bool


def price(
    line_totals: list[int],
    tax_categories: list[str],
    discounts: list[list[LineDiscount]],
    table: TaxTable,
    exempt_customer: bool = False,
    line_tables: list[TaxTable] | None = None,
) -> tuple[list[PricedLine], CartTotals]:
    """Discounts first (a line never below zero), then each line's tax on what is left, by
    the rules of `table` (the selling location's) or of the line's own in `line_tables` (the
    store a pickup or shipment leaves from)."""
    lines: list[PricedLine] = []
    tables = line_tables or [table] * len(line_totals)
    for total, category, found, own in zip(
        line_totals, tax_categories, discounts, tables, strict=True
    ):
        off = min(sum(d.amount for d in found), total)
        rule = own.rule_for(category)
        owed = line_tax(total - off, rule, exempt_customer or category == EXEMPT)
        rates = tuple((r.name, r.bps) for r in rule.rates)
        compound = tuple((r.name, r.compound) for r in rule.rates)
        lines.append(PricedLine(total, off, owed.total, owed.taxes, tuple(found), rates, compound))
    subtotal = sum(ln.line_total for ln in lines)
    discount = sum(ln.discount for ln in lines)
    tax = sum(ln.tax for ln in lines)
    # Inclusive prices already hold their tax: it is shown, not added.
    total = subtotal - discount + (0 if table.inclusive else tax)
    return lines, CartTotals(subtotal, discount, tax, total, table.inclusive)
