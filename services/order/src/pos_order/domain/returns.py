"""Itemized returns: what a returned unit is worth, and the Return object.

Plain Python. The one rule that keeps a refund from ever exceeding what was paid:

- each line's *paid total* is its value after its discounts, plus its tax, as the pricing step
  stored them on the line (an order priced before lines kept them: its share of the order's
  discount and of its tax, allocated by largest remainder); either way the lines' paid totals
  add up to the order's total to the cent;
- the first `n` units of a line returned are worth `paid * n // quantity` (floor); a return of
  `k` units after `r` already returned refunds `worth(r + k) - worth(r)`. Over any sequence of
  returns the refunds telescope to `worth(all returned)`: exactly what was paid for those units,
  and returning every unit of a line refunds exactly its paid total.

Returns never change the order's status (commerce-states.md): they are objects of their own.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta
from enum import Enum

from pos_kit.errors import Conflict, FieldViolation, raise_if, require
from pos_order.domain.model import (
    LEFT_THE_STORE,
    Order,
    OrderLine,
    OrderStatus,
    Tender,
    Totals,
)
from pos_order.domain.model import (
    FulfillmentStatus as F,
)

MAX_RETURN_LINES = 200
MAX_REASON = 500
# What a caller may name as a reason code (free text goes in `note`-like fields elsewhere).
_REASON = re.compile(r"[a-z][a-z0-9_]{0,49}")


def allocate(total: int, weights: list[int]) -> list[int]:
    """`total` split in proportion to `weights`, by largest remainder: the parts add up to
    `total` exactly, each within one unit of its exact share; ties go to the earlier weight."""
    whole = sum(weights)
    if not weights:
        return []
    if whole <= 0:
        return [total] + [0] * (len(weights) - 1)
    floors = [total * w // whole for w in weights]
    remainders = [total * w % whole for w in weights]
    left = total - sum(floors)
    order = sorted(range(len(weights)), key=lambda i: (-remainders[i], i))
    for i in order[:left]:
        floors[i] += 1
    return floors


@dataclass(frozen=True)
class LinePaid:
    """What the customer paid for one line: after its share of every discount, with its tax."""

    line_id: str
    quantity: int
    discount: int
    tax: int
    paid: int

    def worth(self, units: int) -> int:
        """The first `units` units returned are worth this much, together."""
        return self.paid * units // self.quantity


def paid_per_line(
    lines: list[OrderLine], discount_total: int, tax_total: int
) -> dict[str, LinePaid]:
    """Each line's paid total. A gift card line takes no discount and no tax (the order's
    totals were computed that way); the goods lines share the order's discount by their
    value and its tax by their value after discount."""
    goods = [ln for ln in lines if not ln.gift_card]
    discounts = allocate(discount_total, [ln.line_total.amount for ln in goods])
    after = [ln.line_total.amount - d for ln, d in zip(goods, discounts, strict=True)]
    taxes = allocate(tax_total, after)
    out: dict[str, LinePaid] = {}
    for ln, d, net, t in zip(goods, discounts, after, taxes, strict=True):
        out[ln.id] = LinePaid(ln.id, ln.quantity, d, t, net + t)
    for ln in lines:
        if ln.gift_card:
            out[ln.id] = LinePaid(ln.id, ln.quantity, 0, 0, ln.line_total.amount)
    return out


def stored_paid_per_line(lines: list[OrderLine], totals: Totals) -> dict[str, LinePaid] | None:
    """Each line's paid total from what the pricing step stored on it (its discounts with
    their offers, its tax per rate), when those add up to the order's totals: the order's own
    figures, not a re-derivation. Tax-exclusive (the total adds the lines' taxes) or inclusive
    (the prices contain them); None when the lines do not account for the totals (an order
    priced before lines kept them), and the allocation applies."""
    goods = [ln for ln in lines if not ln.gift_card]
    cards = sum(ln.line_total.amount for ln in lines if ln.gift_card)
    if sum(ln.discount for ln in goods) != totals.discount.amount:
        return None
    if sum(ln.tax for ln in goods) != totals.tax.amount:
        return None
    net = sum(ln.line_total.amount - ln.discount for ln in goods) + cards
    if net + totals.tax.amount == totals.total.amount:
        inclusive = False
    elif net == totals.total.amount:
        inclusive = True
    else:
        return None
    out = {
        ln.id: LinePaid(
            ln.id,
            ln.quantity,
            ln.discount,
            ln.tax,
            ln.line_total.amount - ln.discount + (0 if inclusive else ln.tax),
        )
        for ln in goods
    }
    for ln in lines:
        if ln.gift_card:
            out[ln.id] = LinePaid(ln.id, ln.quantity, 0, 0, ln.line_total.amount)
    return out


def order_paid_per_line(order: Order) -> dict[str, LinePaid]:
    stored = stored_paid_per_line(order.lines, order.totals)
    if stored is not None:
        return stored
    return paid_per_line(order.lines, order.totals.discount.amount, order.totals.tax.amount)


class ReturnStatus(Enum):
    # Recorded (its units taken out of what is left to return); money and stock under way, or
    # (with a `refusal`) waiting for a person to settle a refund refused for good.
    PENDING = "pending"
    # Refunded to the tenders and restocked as asked, or settled by a person (`settlement`).
    COMPLETED = "completed"


class SettlementOutcome(Enum):
    # The part of the refund the payment processor did not pay was paid another way (cash from
    # the till, a bank transfer, ...): the customer has it.
    PAID_OUT_OF_BAND = "paid_out_of_band"
    # It was not paid: the merchant closes the return without it.
    REFUSED = "refused"


# How a refund settled by hand may have been paid (tenders outside a processor).
OUT_OF_BAND_TENDERS = ("cash", "external")
MAX_REFERENCE = 128


@dataclass
class Settlement:
    """A person closed a return whose refund was refused for good: what was left unpaid, and
    how it was settled, by whom and why."""

    outcome: SettlementOutcome
    amount: int  # what the processor did not refund (minor units, the return's currency)
    tender: str  # paid out of band: cash or external; empty when refused
    reference: str  # the till's receipt, a transfer's reference, ...
    reason: str
    settled_by: str  # the staff member signed in at the register, or `key:<id>`
    settled_at: datetime | None = None


@dataclass(frozen=True)
class ReturnLineRequest:
    line_id: str
    quantity: int
    restock: bool = True
    # Where the units come back to stock; empty: the order's selling location.
    location_id: str = ""


@dataclass(frozen=True)
class TenderRefund:
    """A caller's amount for one of the order's payments."""

    payment_id: str
    amount: int
    # The currency the caller named the amount in (empty: the order's); never stored.
    currency: str = ""


@dataclass
class ReturnLine:
    line_id: str
    sku: str
    quantity: int
    restock: bool
    location_id: str
    amount: int  # the refund for these units
    # A gift card line: its card, deactivated before the refund (never restocked).
    gift_card_id: str = ""


@dataclass
class Refunded:
    refund_id: str
    payment_id: str
    amount: int
    status: str
    # What the payment has refunded in all after this refund, as the payment service answered;
    # None in answers from before it said so.
    payment_refunded: int | None = None


@dataclass
class Return:
    id: str
    order_id: str
    lines: list[ReturnLine]
    reason: str
    currency: str
    amount: int
    status: ReturnStatus = ReturnStatus.PENDING
    override_reason: str = ""
    tender_amounts: list[TenderRefund] = field(default_factory=list)
    refunds: list[Refunded] = field(default_factory=list)
    created_at: datetime | None = None
    completed_at: datetime | None = None
    # A return without a receipt: the customer, and the store credit card once issued.
    customer_id: str = ""
    store_credit_gift_card_id: str = ""
    # Part of an exchange: the new order, and how much of `amount` pays for it instead of
    # going back to the tenders (`tender_amounts` refund only the rest).
    exchange_order_id: str = ""
    credited: int = 0
    # A return of an exchange's new order past what its own payments hold: the rest goes back
    # to the original order's payments, which the exchange's credit came from.
    credit_order_id: str = ""
    credit_amounts: list[TenderRefund] = field(default_factory=list)
    # An exchange's return: which of the original order's payments back `credited`, and how
    # much each. Set aside there (the payment service's exchange credit), so no refund of the
    # original order gives that money back a second time; empty for an exchange made before.
    credit_from: list[TenderRefund] = field(default_factory=list)
    # An exchange's return whose original order was itself an exchange's new order: the part
    # of `credited` its own payments do not back, carried from that order's own credit (set
    # aside on the payments of the order it came from, which keep it for the new order).
    credit_carried: list[TenderRefund] = field(default_factory=list)
    # A return of an exchange's new order: its `credit_amounts` drawn on that credit.
    credit_set_aside: bool = False
    # Its refund refused for good (the payment service's code): it waits for a person to
    # settle it, and nothing asks the refund again meanwhile. Kept once settled.
    refusal: str = ""
    settlement: Settlement | None = None
    # Where it was taken: the register and the member signed in there (empty from the back
    # office), and that register's shift open then (empty when no cash goes back). A refund
    # finished later (a retry, the resumer after a crash) is made as from that register, so
    # its cash counts in the shift open there when it is paid.
    register_id: str = ""
    staff_id: str = ""
    shift_id: str = ""
    # The moment of its last change (stamped by the database): its place in the change feed.
    updated_at: datetime | None = None

    def units(self, line_id: str) -> int:
        return sum(ln.quantity for ln in self.lines if ln.line_id == line_id)


@dataclass(frozen=True)
class ReturnRequest:
    request_id: str
    order_id: str
    lines: list[ReturnLineRequest]
    reason: str
    override_reason: str = ""
    tender_amounts: list[TenderRefund] = field(default_factory=list)
    # The request's fingerprint, kept with its start (ports.CheckoutStarts.start).
    fingerprint: bytes = b""
    # Where it is asked: the register and the member signed in there (the call's metadata),
    # empty from the back office.
    register_id: str = ""
    staff_id: str = ""


CASH_NEEDS_SHIFT = "cash_refund_needs_open_shift"


def cash_payments(order: Order) -> set[str]:
    """The order's payments taken in cash: what goes back to them leaves a drawer."""
    return {t.payment_id for t in order.saga.tenders if t.tender is Tender.CASH and t.payment_id}


def restocked_at_the_orders_store(order: Order, lines: list[ReturnLineRequest]) -> list[str]:
    """The fields of the asked lines whose units go back to the order's own store: restocked,
    naming no store of their own (`lines[i].location_id`, the field that would send them to
    another). Lines that are not the order's, or are its gift cards (never restocked), are
    left to the plan's own rules; an order of no store has none."""
    if not order.location_id:
        return []
    stocked = {ln.id for ln in order.lines if not ln.gift_card}
    return [f"lines[{i}].location_id" for i, ln in enumerate(lines)
            if ln.restock and not ln.location_id and ln.line_id in stocked]  # fmt: skip


def refuse_cash_without_drawer(
    ret: Return,
    req: ReturnRequest,
    cash: set[str],
    register_id: str,
    shift_id: str,
    exchange: bool = False,
) -> bool:
    """Cash goes back out of a register's drawer, so a return that refunds any is taken at a
    register with a shift open: its drawer's count then expects the cash to be gone. From the
    back office (no register) or at a register with no shift open it would count in no shift,
    and the drawer it left would come up short with no record of why: refused (409
    `cash_refund_needs_open_shift`) before anything is written, naming the field that sends
    money to cash. An exchange (`exchange`) owes back the difference when its new lines cost
    less than the returned units, to the original order's tenders: its `new_lines` are named.
    Refunds to cards, gift cards and other tenders need no drawer. Whether cash goes back."""
    to_cash = [
        t
        for t in (*ret.tender_amounts, *ret.credit_amounts)
        if t.payment_id in cash and t.amount > 0
    ]
    if not to_cash or (register_id and shift_id):
        return bool(to_cash)
    why = _drawer_wanted(register_id)
    if exchange:
        violations = [
            FieldViolation(
                "new_lines",
                "cost less than the returned units, and the difference goes back to a cash "
                f"payment ({to_cash[0].payment_id}), which needs {why}; make the exchange at "
                "a register with an open shift",
            )
        ]
    elif req.tender_amounts:
        violations = [
            FieldViolation(
                f"tender_amounts[{i}].payment_id",
                f"is a cash payment: cash given back leaves a drawer and needs {why}",
            )
            for i, t in enumerate(req.tender_amounts)
            if t.payment_id in cash and t.amount > 0
        ]
    else:
        violations = [
            FieldViolation(
                "tender_amounts",
                f"the refund goes back to a cash payment ({to_cash[0].payment_id}), which "
                f"needs {why}; take the return at a register with an open shift, or name "
                "tender_amounts on the order's other payments",
            )
        ]
    raise _no_drawer(why, register_id, violations)


def refuse_cancel_cash_without_drawer(
    to_cash: list[str], field: str, register_id: str, shift_id: str
) -> None:
    """The returns' rule for a cancel a caller asks (the whole order, `field` "order_id", or
    one fulfilment, "fulfillment_id"): one whose refund gives cash back (`to_cash`, the cash
    payments it reaches) is made at a register with a shift open, whose drawer's count then
    expects the cash gone; from the back office or at a register with no shift open it is
    refused (409 `cash_refund_needs_open_shift`) before the cancel is marked. A cancel the
    service makes itself (an expiry, an abandoned sale, a compensation) is never asked this:
    the money is owed back whoever is at a till."""
    if not to_cash or (register_id and shift_id):
        return
    why = _drawer_wanted(register_id)
    what = "order" if field == "order_id" else "fulfilment"
    raise _no_drawer(
        why,
        register_id,
        [
            FieldViolation(
                field,
                f"this {what} was paid in cash ({to_cash[0]}) and its cancel gives that cash "
                f"back, which needs {why}; cancel it at a register with an open shift",
            )
        ],
    )


def _drawer_wanted(register_id: str) -> str:
    return (
        "a register with an open shift: it is made from the back office"
        if not register_id
        else f"a shift open at register {register_id}, which has none"
    )


def _no_drawer(why: str, register_id: str, violations: list[FieldViolation]) -> Conflict:
    refused = Conflict(
        f"a cash refund is paid out of a register's drawer and needs {why}",
        CASH_NEEDS_SHIFT,
        {"register_id": register_id} if register_id else {},
    )
    refused.violations = violations
    return refused


def validate_request(req: ReturnRequest) -> None:
    """What can be told without the order: refused before anything is claimed."""
    violations: list[FieldViolation] = []
    violations += require(bool(req.lines), "lines", "must have at least one line")
    violations += require(
        len(req.lines) <= MAX_RETURN_LINES, "lines", f"must have at most {MAX_RETURN_LINES}"
    )
    for i, ln in enumerate(req.lines[:MAX_RETURN_LINES]):
        violations += require(bool(ln.line_id), f"lines[{i}].line_id", "is required")
        violations += require(
            1 <= ln.quantity <= 10_000, f"lines[{i}].quantity", "must be between 1 and 10000"
        )
    ids = [ln.line_id for ln in req.lines]
    violations += require(len(set(ids)) == len(ids), "lines", "must name each line once")
    violations += require(
        _REASON.fullmatch(req.reason) is not None,
        "reason",
        "is required: a lower-case code such as damaged, wrong_size, unwanted",
    )
    violations += require(
        len(req.override_reason) <= MAX_REASON,
        "override_reason",
        f"must be at most {MAX_REASON} characters",
    )
    # Spaces alone would take a return past the window with no reason given.
    violations += require(
        req.override_reason == "" or bool(req.override_reason.strip()),
        "override_reason",
        "must not be blank: say why the return is taken past the window, or leave it out",
    )
    named: set[str] = set()
    for i, t in enumerate(req.tender_amounts):
        violations += require(bool(t.payment_id), f"tender_amounts[{i}].payment_id", "is required")
        violations += require(
            t.payment_id not in named, f"tender_amounts[{i}].payment_id", "is named twice"
        )
        named.add(t.payment_id)
        violations += require(t.amount > 0, f"tender_amounts[{i}].amount", "must be more than 0")
    raise_if(violations)


@dataclass(frozen=True)
class UnitsRefund:
    """A refund of the order's payments as the payment service lists it, with the units it
    named (`lines`: a price adjustment, a gesture on an item); one per tender of its request,
    which share `request` (its time, reason and lines)."""

    refund_id: str
    amount: int
    failed: bool
    at: datetime
    request: tuple[object, ...]
    lines: tuple[tuple[str, int], ...]
    reason: str = ""


@dataclass(frozen=True)
class Adjusted:
    """What refunds made outside the returns gave back for `units` units of one SKU, together
    (`amount`), from `since` (the first of them)."""

    units: int
    amount: int
    since: datetime

    def worth(self, units: int) -> int:
        """What the first `units` of the adjusted units were given back, together."""
        return self.amount * min(units, self.units) // self.units


def _named_per_sku(
    order: Order, refunds: list[UnitsRefund], earlier: list[Return]
) -> dict[str, Adjusted]:
    """Per SKU, what refunds of the order made outside its returns gave back for the units
    they named, before anything a cancel took of it (see `adjustments`)."""
    of_returns = {x.refund_id for r in earlier for x in r.refunds}
    # A pending return's refunds may be made and not recorded on it yet: they name its lines
    # under its reason, as a return's refunds do.
    pending = {
        # As its refunds name them: gift card lines (no SKU) are left out there.
        (r.reason, tuple((ln.sku, ln.quantity) for ln in r.lines if ln.sku))
        for r in earlier
        if r.status is ReturnStatus.PENDING
    }
    requests: dict[tuple[object, ...], list[UnitsRefund]] = {}
    for f in refunds:
        if f.failed or not f.lines or f.refund_id in of_returns:
            continue
        if (f.reason, f.lines) in pending:
            continue
        requests.setdefault(f.request, []).append(f)
    paid = order_paid_per_line(order)
    unit: dict[str, int] = {}
    for ln in order.lines:
        if ln.sku and ln.id in paid and ln.sku not in unit:
            unit[ln.sku] = paid[ln.id].worth(1)
    units: dict[str, int] = {}
    amounts: dict[str, int] = {}
    since: dict[str, datetime] = {}
    for made in requests.values():
        listed = [(sku, q) for sku, q in made[0].lines if sku in unit and q > 0]
        shares = allocate(sum(f.amount for f in made), [unit[sku] * q for sku, q in listed])
        at = min(f.at for f in made)
        for (sku, q), share in zip(listed, shares, strict=True):
            units[sku] = units.get(sku, 0) + q
            amounts[sku] = amounts.get(sku, 0) + share
            since[sku] = min(since.get(sku, at), at)
    return {sku: Adjusted(units[sku], amounts[sku], since[sku]) for sku in units}


def adjustments(
    order: Order, refunds: list[UnitsRefund], earlier: list[Return]
) -> dict[str, Adjusted]:
    """Per SKU, what refunds of the order made outside its returns gave back for the units
    they named, less what cancels took of it: a return of such a unit refunds what it was
    paid less that, or a price adjustment would be paid back on top of the unit's whole price.
    A refund naming several SKUs is shared among them by the units' paid value. Which units
    it stands for: `attributed`."""
    named = _named_per_sku(order, refunds, earlier)
    units = {sku: a.units for sku, a in named.items()}
    amounts = {sku: a.amount for sku, a in named.items()}
    # What cancelled fulfilments' units took of it went with them (`adjusted_in_fulfillment`).
    for by_sku in order.saga.cancel_adjusted.values():
        for sku, (gone, amount) in by_sku.items():
            if sku in units:
                units[sku] -= gone
                amounts[sku] -= amount
    return {
        sku: Adjusted(units[sku], max(0, amounts[sku]), named[sku].since)
        for sku in units
        if units[sku] > 0
    }


# A price tier of a SKU: its lines whose units were paid the same (the SKU, a unit's price).
Tier = tuple[str, int]


@dataclass(frozen=True)
class Attributed:
    """Which units refunds naming units (price adjustments) stand for, per price tier of a
    SKU (`tiers`, less what cancels took of them), and the tier of each goods line
    (`tier_of`). See `attributed`."""

    tiers: dict[Tier, Adjusted]
    tier_of: dict[str, Tier]

    def of_line(self, line_id: str) -> tuple[Tier, Adjusted] | None:
        tier = self.tier_of.get(line_id)
        if tier is None or tier not in self.tiers:
            return None
        return tier, self.tiers[tier]


def _unit_price(line: LinePaid) -> int:
    return line.paid // line.quantity if line.quantity > 0 else 0


def attributed(order: Order, refunds: list[UnitsRefund], earlier: list[Return]) -> Attributed:
    """The units refunds naming a SKU (`adjustments`) were given back for: the dearest units
    of the SKU kept when the first of them was made, as the check of such a refund takes them
    (`units_refund_at_most`), its amount shared among their price tiers by their paid value.
    A SKU on two lines at different prices thus has its adjustment charged once, against the
    dear units, whatever is cancelled, returned or exchanged after, and however batched;
    before, the check took the dearest units and returns and cancels the first units back,
    and what a cheap unit could not take was lost between requests. Within one tier (units
    paid the same) which units were adjusted makes no difference: the first back after the
    adjustment (returned, or cancelled) are taken to be them (`less_adjustments`)."""
    paid = order_paid_per_line(order)
    tier_of: dict[str, Tier] = {}
    for ln in order.lines:
        if ln.sku and not ln.gift_card and ln.id in paid:
            tier_of[ln.id] = (ln.sku, _unit_price(paid[ln.id]))
    named = _named_per_sku(order, refunds, earlier)
    if not named:
        return Attributed({}, tier_of)
    # Units of a fulfilment cancelled or expired were gone before the adjustment, unless its
    # cancel took part of one (it came after).
    gone = {
        f.id
        for f in order.fulfillments
        if f.status in (F.CANCELLED, F.EXPIRED) and f.id not in order.saga.cancel_adjusted
    }
    tiers: dict[Tier, Adjusted] = {}
    for sku, a in named.items():
        kept: dict[Tier, int] = {}
        for ln in order.lines:
            if tier_of.get(ln.id, ("", 0))[0] != sku or ln.fulfillment_id in gone:
                continue
            before = sum(
                back.quantity
                for r in earlier
                if r.created_at is not None and r.created_at < a.since
                for back in r.lines
                if back.line_id == ln.id
            )
            tier = tier_of[ln.id]
            kept[tier] = kept.get(tier, 0) + max(0, ln.quantity - before)
        dearest = sorted(kept, key=lambda t: -t[1])
        if not dearest:
            continue
        left = a.units
        units: dict[Tier, int] = {}
        for tier in dearest:
            units[tier] = min(left, kept[tier])
            left -= units[tier]
        # More units named than were kept: the rest taken as the dearest's.
        units[dearest[0]] += left
        charged = [t for t in dearest if units[t] > 0]
        shares = allocate(a.amount, [units[t] * t[1] for t in charged])
        for tier, share in zip(charged, shares, strict=True):
            tiers[tier] = Adjusted(units[tier], share, a.since)
    # What cancelled fulfilments' units took of it went with them, dearest tier first.
    for fid, by_sku in order.saga.cancel_adjusted.items():
        for sku, (units_gone, amount) in by_sku.items():
            mine = sorted(
                {tier_of[ln.id] for ln in order.lines
                 if ln.fulfillment_id == fid and tier_of.get(ln.id, ("", 0))[0] == sku},
                key=lambda t: -t[1],
            )  # fmt: skip
            for tier in mine:
                t_adj = tiers.get(tier)
                if t_adj is None or units_gone <= 0:
                    continue
                took_units = min(units_gone, t_adj.units)
                took = amount if took_units == units_gone else min(amount, t_adj.worth(took_units))
                tiers[tier] = Adjusted(
                    t_adj.units - took_units, max(0, t_adj.amount - took), t_adj.since
                )
                units_gone -= took_units
                amount -= took
    return Attributed({t: a for t, a in tiers.items() if a.units > 0}, tier_of)


def adjusted_in_fulfillment(
    order: Order, fulfillment_id: str, refunds: list[UnitsRefund], earlier: list[Return]
) -> dict[str, tuple[int, int]]:
    """Per SKU, what refunds naming units (`attributed`, less what earlier cancels took)
    gave back for the units of a fulfilment being cancelled, and how many of them are taken to
    be adjusted: its cancel gives back what they were paid less that, as a return does. The
    adjusted units are the dearest of the SKU (`attributed`); within their price tier, the
    first units to come back after the adjustment (returned, or cancelled) are taken to be
    them, as for a return (`less_adjustments`)."""
    adjusted = attributed(order, refunds, earlier)
    if not adjusted.tiers:
        return {}
    seen: dict[Tier, int] = {}
    for r in earlier:
        for back in r.lines:
            found = adjusted.of_line(back.line_id)
            if found is None:
                continue
            tier, a = found
            if r.created_at is not None and r.created_at >= a.since:
                seen[tier] = seen.get(tier, 0) + back.quantity
    out: dict[str, tuple[int, int]] = {}
    for ln in order.lines:
        found = adjusted.of_line(ln.id)
        if ln.fulfillment_id != fulfillment_id or ln.gift_card or found is None:
            continue
        tier, a = found
        before = seen.get(tier, 0)
        seen[tier] = before + ln.quantity
        units = min(before + ln.quantity, a.units) - min(before, a.units)
        if units <= 0:
            continue
        took = a.worth(before + ln.quantity) - a.worth(before)
        had = out.get(ln.sku, (0, 0))
        out[ln.sku] = (had[0] + units, had[1] + took)
    return out


def price_given_back(
    order: Order, earlier: list[Return], refunds: list[UnitsRefund]
) -> tuple[int, dict[str, int]]:
    """What the order's returns (`earlier`, pending ones too) and its refunds naming units
    (price adjustments, gestures on an item) took off the price it is sold for, and, per
    payment, what its pending returns plan to refund: for `Order.unpaid_after_refunds`. A
    refund naming no units is no part of it: that money went back for nothing the order
    accounts for."""
    returned = sum(r.amount for r in earlier if r.order_id == order.id)
    adjusted = sum(a.amount for a in adjustments(order, refunds, earlier).values())
    planned: dict[str, int] = {}
    for r in earlier:
        if r.status is ReturnStatus.PENDING:
            for t in r.tender_amounts:
                planned[t.payment_id] = planned.get(t.payment_id, 0) + t.amount
    return returned + adjusted, planned


def units_refund_at_most(
    order: Order,
    earlier: list[Return],
    refunds: list[UnitsRefund],
    named: list[tuple[str, int]],
) -> int:
    """The most a refund naming units (`named`: SKU and quantity, a price adjustment, a
    gesture on an item) may give back: what those units were paid, after their share of the
    order's discounts, with their tax. A refund names SKUs, not lines, and a SKU may be on
    several lines at different prices: its named units are taken to be the dearest of its
    units not returned (so no adjustment a unit could take is refused), and together never
    more than its units still kept were paid less what earlier refunds naming the SKU gave
    back (`adjustments`). Units of a cancelled or expired fulfilment were given back with it:
    they count for nothing."""
    paid = order_paid_per_line(order)
    gone = {f.id for f in order.fulfillments if f.status in (F.CANCELLED, F.EXPIRED)}
    returned: dict[str, int] = {}
    returned_amount: dict[str, int] = {}
    for r in earlier:
        for rl in r.lines:
            returned[rl.line_id] = returned.get(rl.line_id, 0) + rl.quantity
            returned_amount[rl.line_id] = returned_amount.get(rl.line_id, 0) + rl.amount
    asked: dict[str, int] = {}
    for sku, quantity in named:
        asked[sku] = asked.get(sku, 0) + quantity
    adjusted = adjustments(order, refunds, earlier)
    at_most = 0
    for sku, quantity in asked.items():
        units: list[int] = []  # what each unit of the SKU still kept was paid
        kept = 0  # what they were paid together, less what their returns gave back
        for ln in order.lines:
            if ln.sku != sku or ln.gift_card or ln.id not in paid or ln.fulfillment_id in gone:
                continue
            line = paid[ln.id]
            back = min(returned.get(ln.id, 0), ln.quantity)
            units += [line.worth(k + 1) - line.worth(k) for k in range(back, ln.quantity)]
            kept += line.paid - returned_amount.get(ln.id, 0)
        a = adjusted.get(sku)
        kept -= a.amount if a is not None else 0
        dearest = sum(sorted(units, reverse=True)[:quantity])
        at_most += max(0, min(dearest, kept))
    return at_most


def the_last(order: Order, earlier: list[Return], made: list[ReturnLine]) -> bool:
    """Whether, with `made`, every unit of the order's goods lines will have come back.
    Only returns that will not be undone count as back: completed ones, and those whose refund
    was refused for good (they wait for a person, who completes them; never dropped). A return
    still being made (an exchange's whose new order's payment is pending, a refund under way)
    may yet fail and be dropped, its units kept by the customer: until it is done, a return
    beside it is not the last, and is refused when worth more than the payments still hold
    (what that pending return plans to take counts as gone there, `tenders_left`)."""
    back: dict[str, int] = {}
    done = [r for r in earlier if r.status is ReturnStatus.COMPLETED or r.refusal]
    for ln in [*(x for r in done for x in r.lines), *made]:
        back[ln.line_id] = back.get(ln.line_id, 0) + ln.quantity
    return all(back.get(ln.id, 0) >= ln.quantity for ln in order.lines if not ln.gift_card)


def at_most(lines: list[ReturnLine], held: int) -> int:
    """The lines' refunds scaled down (by their amounts) to `held` when they add up to more;
    their total after."""
    total = sum(ln.amount for ln in lines)
    if total <= held:
        return total
    for ln, part in zip(lines, allocate(held, [ln.amount for ln in lines]), strict=True):
        ln.amount = part
    return held


def less_adjustments(
    made: list[ReturnLine], earlier: list[Return], adjusted: Attributed
) -> list[ReturnLine]:
    """The returned lines' refunds less what refunds outside the returns gave back for their
    units already (`attributed`: the dearest units of the SKU). Within a price tier which
    units were adjusted makes no difference: the first ones returned after the adjustment are
    taken to be them (so no unit ever gets more back than it was paid); units returned before
    it were not."""
    seen: dict[Tier, int] = {}
    for r in earlier:
        for ln in r.lines:
            found = adjusted.of_line(ln.line_id)
            if found is None:
                continue
            tier, a = found
            if r.created_at is not None and r.created_at >= a.since:
                seen[tier] = seen.get(tier, 0) + ln.quantity
    out = []
    # What a line could not take (a remainder of a cent) is taken off the next of its tier.
    carried: dict[Tier, int] = {}
    for ln in made:
        found = adjusted.of_line(ln.line_id)
        if found is None:
            out.append(ln)
            continue
        tier, a = found
        before = seen.get(tier, 0)
        seen[tier] = before + ln.quantity
        taken = a.worth(before + ln.quantity) - a.worth(before) + carried.pop(tier, 0)
        if taken > ln.amount:
            carried[tier] = taken - ln.amount
        out.append(replace(ln, amount=max(0, ln.amount - taken)))
    return out


def plan_return(
    order: Order,
    earlier: list[Return],
    req: ReturnRequest,
    return_id: str,
    at: datetime,
    window_days: int,
    tenders: list[tuple[str, int]],
    gift_card_balances: dict[str, int] | None = None,
    spread: bool = True,
    adjusted: Attributed | None = None,
) -> Return:
    """The return the request asks for, against the order and every earlier return of it
    (pending ones included: their units are spoken for). Every rule is checked before anything
    is written; each failure names its field.

    `gift_card_balances`: the balance of each gift card the request returns, as read just
    before: a card is returned (deactivated, its value refunded) only while it holds all of it.

    `tenders_left`: what each of the order's payments has left to refund, in the order they
    were taken (see `tenders_left`). Without the caller's amounts per tender, the refund is
    spread from the last payment taken backwards (commerce-states.md). The plan is stored with
    the return before any refund is asked, so a retry asks the same amounts under the same ids.
    `spread` False: no refund planned here (an exchange plans only the difference it owes).
    `adjusted`: what refunds outside the returns gave back for units they named
    (`attributed`), taken off the refund of those units. The return that brings the order's
    last units back refunds at most what the payments still hold (`the_last`); any other
    worth more than that is refused (409 `amount_exceeds_refundable`).
    """
    gift_card_balances = gift_card_balances or {}
    if order.status not in (OrderStatus.CONFIRMED, OrderStatus.COMPLETED):
        raise Conflict(
            f"the order is {order.status.value}: only a sold order takes returns",
            "order_not_sold",
        )
    sold_at = order.created_at or at
    if at > sold_at + timedelta(days=window_days) and not req.override_reason.strip():
        closed = Conflict(
            f"the order is past the {window_days}-day return window: an override_reason is needed",
            "return_window_closed",
            {"window_days": str(window_days)},
        )
        closed.violations = [
            FieldViolation(
                "override_reason",
                f"is required past the {window_days}-day return window: why it is taken anyway",
            )
        ]
        raise closed
    lines = {ln.id: ln for ln in order.lines}
    paid = order_paid_per_line(order)
    violations: list[FieldViolation] = []
    in_flight: list[FieldViolation] = []
    made: list[ReturnLine] = []
    for i, ask in enumerate(req.lines):
        line = lines.get(ask.line_id)
        if line is None:
            violations.append(FieldViolation(f"lines[{i}].line_id", "is not a line of the order"))
            continue
        f = order.fulfillment(line.fulfillment_id)
        if f is not None and f.status not in LEFT_THE_STORE:
            violations.append(
                FieldViolation(
                    f"lines[{i}].line_id",
                    f"has not been handed over ({f.status.value}): cancel the order instead",
                )
            )
            continue
        if line.gift_card:
            # Its card is deactivated and its value refunded: only while none of it was spent.
            balance = gift_card_balances.get(line.gift_card_id)
            if not line.gift_card_id or balance is None or balance < line.line_total.amount:
                violations.append(
                    FieldViolation(
                        f"lines[{i}].line_id",
                        "is a gift card whose balance was spent (or that was never activated): "
                        "it cannot be returned",
                    )
                )
                continue
        before = sum(r.units(line.id) for r in earlier)
        making = sum(r.units(line.id) for r in earlier if r.status is ReturnStatus.PENDING)
        left = line.quantity - before
        if ask.quantity > left:
            if ask.quantity <= left + making:
                # Units of a return still being made, which may yet fail and give them back:
                # not a wrong request, a conflict with that return (retry once it is done).
                in_flight.append(
                    FieldViolation(
                        f"lines[{i}].quantity",
                        f"{making} of its units are in a return still being made: at most "
                        f"{left} can be returned until it is done",
                    )
                )
                continue
            violations.append(
                FieldViolation(
                    f"lines[{i}].quantity",
                    f"must be at most {left}: {line.quantity} sold, {before - making} already "
                    f"returned" + (f", {making} in a return still being made" if making else ""),
                )
            )
            continue
        share = paid[line.id]
        amount = share.worth(before + ask.quantity) - share.worth(before)
        made.append(
            ReturnLine(
                line.id,
                line.sku,
                ask.quantity,
                ask.restock and not line.gift_card,
                ask.location_id or order.location_id,
                amount,
                line.gift_card_id if line.gift_card else "",
            )
        )
    raise_if(violations)
    if in_flight:
        busy = Conflict(
            "units asked for are in a return of this order still being made: retry once it is done",
            "return_in_progress",
        )
        busy.violations = in_flight
        raise busy
    if adjusted is not None and adjusted.tiers:
        made = less_adjustments(made, earlier, adjusted)
    total = sum(ln.amount for ln in made)
    captured = dict(tenders)
    if spread and not req.tender_amounts and the_last(order, earlier, made):
        # The last units back get what the payments still hold: refunds made outside the
        # returns (goodwill on the order) gave the rest back already, and refusing would
        # leave the customer no way to return them.
        total = at_most(made, max(0, sum(x for _, x in tenders)))
    if not spread:
        planned: list[TenderRefund] = []
    elif not req.tender_amounts:
        planned = spread_backwards(total, tenders)
    else:
        planned = [TenderRefund(t.payment_id, t.amount) for t in req.tender_amounts]
        named = sum(t.amount for t in req.tender_amounts)
        tender_violations = require(
            named == total,
            "tender_amounts",
            f"must add up to the refund of the returned units ({total})",
        )
        for i, t in enumerate(req.tender_amounts):
            if t.currency and t.currency != order.currency:
                tender_violations.append(
                    FieldViolation(
                        f"tender_amounts[{i}].amount.currency",
                        f"must be the order's currency ({order.currency})",
                    )
                )
            elif t.payment_id not in captured:
                tender_violations.append(
                    FieldViolation(
                        f"tender_amounts[{i}].payment_id", "is not a payment of the order"
                    )
                )
            elif t.amount > captured[t.payment_id]:
                tender_violations.append(
                    FieldViolation(
                        f"tender_amounts[{i}].amount",
                        f"must be at most what the payment has left ({captured[t.payment_id]})",
                    )
                )
        raise_if(tender_violations)
    return Return(
        id=return_id,
        order_id=order.id,
        lines=made,
        reason=req.reason,
        currency=order.currency,
        amount=total,
        override_reason=req.override_reason.strip(),
        tender_amounts=planned,
        created_at=at,
    )


def exceeds_refundable(
    amount: int,
    refundable: int,
    message: str = "the order's payments have less left to refund than these units are worth",
) -> Conflict:
    """The 409 of a return (or an exchange) worth more than the order's payments have left to
    refund: what is left (`refundable`), and the field that asked for more. The payment
    service's code for the same refusal: a client sees one, whichever of the two noticed first
    (a refund made outside a return reaches the order by event)."""
    refused = Conflict(message, "amount_exceeds_refundable", {"refundable": str(refundable)})
    refused.violations = [
        FieldViolation(
            "lines",
            f"the units are worth {amount} to refund; the order's payments have {refundable} "
            "left (refunds made outside a return, or an exchange's credit, took the rest)",
        )
    ]
    return refused


def spread_backwards(amount: int, tenders: list[tuple[str, int]]) -> list[TenderRefund]:
    """`amount` over the tenders from the last one taken backwards, each up to what it has
    left. More than they have left together is refused: a refund is never more than what was
    captured."""
    refundable = max(0, sum(left for _, left in tenders))
    if amount > refundable:
        # The payment service's code for the same refusal: a client sees one, whichever of
        # the two noticed first (a refund made outside a return reaches the order by event).
        raise exceeds_refundable(amount, refundable)
    out: list[TenderRefund] = []
    due = amount
    for payment_id, left in reversed(tenders):
        if due <= 0:
            break
        take = min(due, left)
        if take > 0:
            out.append(TenderRefund(payment_id, take))
            due -= take
    return out


def tenders_left(order: Order, earlier: list[Return]) -> list[tuple[str, int]]:
    """What each captured payment of the order has left to refund, in the order taken: its
    capture less what it refunded (completed returns are counted there) less what pending
    returns plan to take from it, less what backs the credit of the order's exchanges (their
    returns' `credit_from`, pending ones too) and was not given back by a return of the new
    order: money that pays for another order is not refundable from this one. Less, too, what
    returns settled as paid out of band gave back another way (the payment service set it
    aside on the payments): the customer has it already."""
    planned: dict[str, int] = {}
    backing: dict[str, int] = {}
    aside: dict[str, int] = {}
    for r in earlier:
        if r.status is ReturnStatus.PENDING:
            for t in r.tender_amounts:
                planned[t.payment_id] = planned.get(t.payment_id, 0) + t.amount
        for t in r.credit_from:
            backing[t.payment_id] = backing.get(t.payment_id, 0) + t.amount
        for t in paid_out_of_band(r):
            aside[t.payment_id] = aside.get(t.payment_id, 0) + t.amount
    # A pending return's refund may be in what the payment service said already (it went
    # through, the return is not recorded completed yet): the larger of the two counts, never
    # their sum; the payment service refuses a refund beyond what is really left.
    return [
        (
            t.payment_id,
            t.captured
            - max(t.refunded + planned.get(t.payment_id, 0), t.refunded_seen)
            - max(0, backing.get(t.payment_id, 0) - t.credit_refunded)
            - aside.get(t.payment_id, 0),
        )
        for t in order.saga.tenders
        if t.payment_id and t.captured > 0
    ]


def less(left: list[tuple[str, int]], taken: list[TenderRefund]) -> list[tuple[str, int]]:
    """What each payment has left after `taken`, in the same order."""
    out = dict(left)
    for t in taken:
        out[t.payment_id] = out.get(t.payment_id, 0) - t.amount
    return [(payment_id, out[payment_id]) for payment_id, _ in left]


def credit_left(backing: list[TenderRefund], earlier: list[Return]) -> list[tuple[str, int]]:
    """A return of an exchange's new order: what the credit set aside on each of the original
    order's payments (`backing`, the exchange return's `credit_from`) has left, after what the
    new order's earlier returns (`earlier`, pending ones too) gave back of it; in the order the
    payments were taken (`credit_from` was spread from the last one backwards)."""
    taken: dict[str, int] = {}
    for r in earlier:
        drawn = [*r.credit_amounts] if r.credit_set_aside else []
        # An exchange of the new order in turn carried part of the credit on to its own.
        for t in [*drawn, *r.credit_carried]:
            taken[t.payment_id] = taken.get(t.payment_id, 0) + t.amount
    return [(t.payment_id, t.amount - taken.get(t.payment_id, 0)) for t in reversed(backing)]


def split_for_credit(amount: int, own: list[tuple[str, int]], credit_left: int) -> tuple[int, int]:
    """A refund of an exchange's new order: from its own payments first (the difference taken
    was the last tender), the rest from the credit the returned goods gave it, never more than
    is left of that credit."""
    from_own = min(amount, sum(left for _, left in own))
    rest = amount - from_own
    if rest > credit_left:
        raise exceeds_refundable(
            amount,
            max(0, sum(left for _, left in own)) + credit_left,
            "the order's payments and its exchange credit have less left to refund than these "
            "units are worth",
        )
    return from_own, rest


def credit_refunded(earlier: list[Return]) -> int:
    """What returns of an exchange's new order took back of its credit (pending ones too),
    and what its own exchanges carried on to their new orders."""
    return sum(t.amount for r in earlier for t in [*r.credit_amounts, *r.credit_carried])


def refunded(
    order: Order, ret: Return, paid: list[TenderRefund] | None = None, credit: bool = False
) -> None:
    """A return's refunds are done (`paid`: what went back to each of the order's payments;
    by default its planned `tender_amounts`): its tenders' own refunded amounts include them,
    and what the payment service answered its payments have refunded in all is heard (the
    order may have heard it from the refund's event already: the two counts are never added).
    `credit`: the money backed an exchange's credit (a return of the new order gave it back),
    which its tenders no longer back."""
    for t in order.saga.tenders:
        for r in ret.tender_amounts if paid is None else paid:
            if r.payment_id == t.payment_id:
                t.refunded += r.amount
                if credit:
                    t.credit_refunded += r.amount
    for made in ret.refunds:
        if made.payment_refunded is not None:
            order.refunded_in_all(made.payment_id, made.payment_refunded)


def went_through(ret: Return, planned: list[TenderRefund]) -> list[TenderRefund]:
    """Of `planned`, what the return's refunds paid (every refund but a failed one: a pending
    one is the payment service's to settle), per payment."""
    paid: dict[str, int] = {}
    for r in ret.refunds:
        if r.status != "failed":
            paid[r.payment_id] = paid.get(r.payment_id, 0) + r.amount
    out = []
    for t in planned:
        amount = min(t.amount, paid.get(t.payment_id, 0))
        if amount > 0:
            out.append(TenderRefund(t.payment_id, amount))
            paid[t.payment_id] -= amount
    return out


@dataclass(frozen=True)
class SettleRequest:
    request_id: str
    order_id: str
    return_id: str
    outcome: SettlementOutcome | None
    tender: str  # paid out of band: cash or external
    reference: str
    reason: str
    settled_by: str


def validate_settlement(req: SettleRequest) -> None:
    """What can be told without the return: refused before anything is claimed."""
    violations: list[FieldViolation] = []
    violations += require(bool(req.return_id), "return_id", "is required")
    violations += require(req.outcome is not None, "outcome", "must be paid_out_of_band or refused")
    if req.outcome is SettlementOutcome.PAID_OUT_OF_BAND:
        violations += require(
            req.tender in OUT_OF_BAND_TENDERS,
            "tender_type",
            "must be cash or external: how the refund was paid",
        )
    else:
        violations += require(
            not req.tender, "tender_type", "is only for a refund paid out of band"
        )
        violations += require(
            not req.reference, "reference", "is only for a refund paid out of band"
        )
    violations += require(
        bool(req.reason.strip()), "reason", "is required: why it was settled this way"
    )
    violations += require(
        len(req.reason) <= MAX_REASON, "reason", f"must be at most {MAX_REASON} characters"
    )
    violations += require(
        len(req.reference) <= MAX_REFERENCE,
        "reference",
        f"must be at most {MAX_REFERENCE} characters",
    )
    raise_if(violations)


def unpaid(ret: Return) -> int:
    """What of the return's planned refund its refunds did not pay."""
    planned = [*ret.tender_amounts, *ret.credit_amounts]
    return sum(t.amount for t in planned) - sum(t.amount for t in went_through(ret, planned))


def unpaid_by_payment(ret: Return) -> list[TenderRefund]:
    """What of the return's refund to the order's own payments (`tender_amounts`) its
    refunds did not pay, per payment, as `went_through` counts them. (What it was to give back
    of an exchange's credit stays set aside for that exchange on the original order's
    payments, where no other refund reaches it.)"""
    paid: dict[str, int] = {}
    for r in ret.refunds:
        if r.status != "failed":
            paid[r.payment_id] = paid.get(r.payment_id, 0) + r.amount
    out = []
    for t in ret.tender_amounts:
        took = min(t.amount, paid.get(t.payment_id, 0))
        paid[t.payment_id] = paid.get(t.payment_id, 0) - took
        if t.amount > took:
            out.append(TenderRefund(t.payment_id, t.amount - took))
    return out


def paid_out_of_band(ret: Return) -> list[TenderRefund]:
    """A return settled as paid out of band: what each of the order's payments did not refund
    of it, which the customer was paid another way; nothing for any other return."""
    s = ret.settlement
    if s is None or s.outcome is not SettlementOutcome.PAID_OUT_OF_BAND:
        return []
    return unpaid_by_payment(ret)


def still_pending(ret: Return) -> list[Refunded]:
    """The return's refunds whose processor answer is not known."""
    return [r for r in ret.refunds if r.status == "pending"]


def settleable(ret: Return) -> None:
    """Only a return whose refund was refused for good is settled by a person: a return
    still under way completes on its own, a completed one is done."""
    if ret.status is ReturnStatus.COMPLETED:
        raise Conflict(
            f"return {ret.id} is completed: there is nothing to settle", "return_completed"
        )
    if not ret.refusal:
        raise Conflict(
            f"return {ret.id}'s refund is still under way (it was not refused): it completes "
            "on its own",
            "return_not_refused",
        )


def settle(ret: Return, req: SettleRequest, at: datetime) -> Settlement:
    """A person settles a return whose refund was refused for good (`settleable`), its
    refunds as the payment service says they stand now. One still pending at the processor
    may yet go through or fail, so what the return left unpaid is not known: it is not
    settled until the processor has answered (409 `refund_pending`; the payment service's
    reconciler settles it), or the customer could be paid twice, or not at all."""
    settleable(ret)
    waiting = ", ".join(r.refund_id for r in still_pending(ret))
    if waiting:
        raise Conflict(
            f"refund {waiting} of return {ret.id} is still pending at the payment processor: "
            "what the return left unpaid is not known yet; settle it once the processor has "
            "answered",
            "refund_pending",
            {"return_id": ret.id, "refund_ids": waiting.replace(" ", "")},
        )
    assert req.outcome is not None  # validate_settlement
    return Settlement(
        req.outcome,
        unpaid(ret),
        req.tender if req.outcome is SettlementOutcome.PAID_OUT_OF_BAND else "",
        req.reference,
        req.reason.strip(),
        req.settled_by,
        at,
    )


# How far back a return without a receipt looks for the price a SKU sold for.
RECEIPTLESS_LOOKBACK = timedelta(days=30)


@dataclass(frozen=True)
class ReceiptlessLine:
    sku: str
    quantity: int
    restock: bool = True


@dataclass(frozen=True)
class ReceiptlessRequest:
    request_id: str
    location_id: str
    customer_id: str
    lines: list[ReceiptlessLine]
    reason: str
    # The request's fingerprint, kept with its start (ports.CheckoutStarts.start).
    fingerprint: bytes = b""


def validate_receiptless(req: ReceiptlessRequest) -> None:
    violations: list[FieldViolation] = []
    violations += require(bool(req.location_id), "location_id", "is required")
    violations += require(
        bool(req.customer_id), "customer_id", "is required: store credit goes to a customer"
    )
    violations += require(bool(req.lines), "lines", "must have at least one line")
    violations += require(
        len(req.lines) <= MAX_RETURN_LINES, "lines", f"must have at most {MAX_RETURN_LINES}"
    )
    for i, ln in enumerate(req.lines[:MAX_RETURN_LINES]):
        violations += require(bool(ln.sku), f"lines[{i}].sku", "is required")
        violations += require(
            1 <= ln.quantity <= 10_000, f"lines[{i}].quantity", "must be between 1 and 10000"
        )
    skus = [ln.sku for ln in req.lines]
    violations += require(len(set(skus)) == len(skus), "lines", "must name each sku once")
    violations += require(
        _REASON.fullmatch(req.reason) is not None,
        "reason",
        "is required: a lower-case code such as damaged, wrong_size, unwanted",
    )
    raise_if(violations)


def plan_receiptless(
    req: ReceiptlessRequest,
    return_id: str,
    currency: str,
    lowest: dict[str, int],
    at: datetime,
) -> Return:
    """Credit each unit at the lowest price its SKU sold for in the lookback (`lowest`, per
    unit after its order's discount share, in the store's currency). A SKU not sold there in
    that time has no price to credit, nor has one that sold for nothing there (given away, a
    100 % discount): refused, naming the line."""
    days = RECEIPTLESS_LOOKBACK.days
    violations = [
        FieldViolation(
            f"lines[{i}].sku",
            f"was not sold in the last {days} days in {currency}: no price to credit"
            if ln.sku not in lowest
            else f"sold for nothing in the last {days} days: no store credit to give",
        )
        for i, ln in enumerate(req.lines)
        if lowest.get(ln.sku, 0) <= 0
    ]
    raise_if(violations)
    lines = [
        ReturnLine(
            "", ln.sku, ln.quantity, ln.restock, req.location_id, lowest[ln.sku] * ln.quantity
        )
        for ln in req.lines
    ]
    return Return(
        id=return_id,
        order_id="",
        lines=lines,
        reason=req.reason,
        currency=currency,
        amount=sum(ln.amount for ln in lines),
        created_at=at,
        customer_id=req.customer_id,
    )


@dataclass(frozen=True)
class ReceiptlessLimit:
    """The merchant's cap on returns without a receipt (a fraud control): at most `amount` of
    store credit (minor units of the returning store's currency) to one customer from such
    returns within the last `days` days, rolling. A duplicate merged into the customer counts
    as them; returns in another currency count against a cap of their own."""

    amount: int
    days: int


# Bounds of the limit: a window of a day to a year, and an amount far below what int64 sums
# of many returns could overflow (0 takes no return without a receipt at all).
MAX_RECEIPTLESS_DAYS = 365
MAX_RECEIPTLESS_AMOUNT = 10**15


def receiptless_limit_violations(limit: ReceiptlessLimit, field: str) -> list[FieldViolation]:
    return [
        *require(
            0 <= limit.amount <= MAX_RECEIPTLESS_AMOUNT,
            f"{field}.amount",
            f"must be between 0 and {MAX_RECEIPTLESS_AMOUNT} (minor units)",
        ),
        *require(
            1 <= limit.days <= MAX_RECEIPTLESS_DAYS,
            f"{field}.days",
            f"must be between 1 and {MAX_RECEIPTLESS_DAYS}",
        ),
    ]


def within_receiptless_limit(limit: ReceiptlessLimit, credited: int, ret: Return) -> None:
    """A return without a receipt that would take its customer past the limit, counting the
    credit of their earlier ones in the window (`credited`), is refused whole: a 409
    `receiptless_limit_exceeded` saying what is left (`remaining`, never below 0)."""
    remaining = max(0, limit.amount - credited)
    if ret.amount <= remaining:
        return
    raise Conflict(
        f"this return's store credit ({ret.amount}) would take the customer past the limit on "
        f"returns without a receipt: {remaining} of {limit.amount} {ret.currency} is left "
        f"within {limit.days} days",
        "receiptless_limit_exceeded",
        {
            "remaining": str(remaining),
            "limit": str(limit.amount),
            "window_days": str(limit.days),
            "currency": ret.currency,
        },
    )


def unit_price_after_discount(unit_price: int, goods: int, discount: int) -> int:
    """What one unit sold for after its order's discount, shared by value (floor): the
    merchant never credits more than the unit brought in."""
    if goods <= 0:
        return unit_price
    return unit_price * (goods - discount) // goods


@dataclass(frozen=True)
class SoldLine:
    """A line of a past sale, as a return without a receipt prices its SKU from it."""

    sku: str
    unit_price: int
    quantity: int
    line_discount: int | None  # what the pricing step stored on the line; None before it did
    lines_discount: int  # the sum of that over the order's goods
    goods: int  # the order's goods at their shelf price (gift cards apart)
    order_discount: int

    @property
    def unit_sold_for(self) -> int:
        """One unit's price after its discounts (floor): the line's own discounts when the
        order's lines account for its whole discount (a discount on one product lowers that
        product only), else the order's discount shared by value over its goods."""
        if (
            self.line_discount is not None
            and self.lines_discount == self.order_discount
            and self.quantity > 0
        ):
            return (self.unit_price * self.quantity - self.line_discount) // self.quantity
        return unit_price_after_discount(self.unit_price, self.goods, self.order_discount)


def lowest_sold(lines: list[SoldLine]) -> dict[str, int]:
    """The lowest price a unit of each SKU sold for among these lines."""
    lowest: dict[str, int] = {}
    for ln in lines:
        price = ln.unit_sold_for
        lowest[ln.sku] = min(price, lowest.get(ln.sku, price))
    return lowest


@dataclass(frozen=True)
class OrderReturned:
    """A return completed: refunded and restocked. Carries the return and the order, and
    what all the order's completed returns, and its cancelled and expired fulfilments, took
    back of its goods (gift cards apart). A return without a receipt has no order: `None`,
    and nothing of an order's goods."""

    order: Order | None
    ret: Return
    goods_returned: int = 0

    @property
    def goods_total(self) -> int:
        return self.order.goods_total if self.order is not None else 0


def goods_returned(returns: list[Return]) -> int:
    """What the completed returns took back of an order's goods: their lines' amounts, gift
    cards apart, the part an exchange credited to its new order included."""
    return sum(
        ln.amount
        for r in returns
        if r.status is ReturnStatus.COMPLETED
        for ln in r.lines
        if not ln.gift_card_id
    )
