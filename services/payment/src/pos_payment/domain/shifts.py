"""Shifts and cash drawers: plain domain code.

A shift runs on one register from open to close. The drawer starts with the float; the cash
payments and cash refunds taken at that register while the shift is open, and the pay-ins and
pay-outs recorded on it, move it; at the close the counted cash is compared with what it should
hold:

    expected = float + cash sales - cash refunds + pay-ins - pay-outs
               + gift cards sold for cash (activated or loaded outside a payment)
    over/short = counted - expected   (negative: short)

A no-sale open moves no money, but is recorded (who, when, why).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from enum import Enum

from pos_kit.errors import Conflict, FieldViolation, InvalidArgument, raise_if, require
from pos_kit.money import MINOR_UNITS

MAX_AMOUNT = 10**12
REASON_MAX = 500


class ShiftStatus(Enum):
    OPEN = "open"
    CLOSED = "closed"


@dataclass(frozen=True)
class ShiftFilter:
    """What a shift list is narrowed to (each optional): a register, a location, a status,
    opened in [opened_since, opened_before)."""

    register_id: str = ""
    location_id: str = ""
    status: ShiftStatus | None = None
    opened_since: datetime | None = None
    opened_before: datetime | None = None


class MovementKind(Enum):
    PAY_IN = "pay_in"
    PAY_OUT = "pay_out"
    NO_SALE = "no_sale"


@dataclass(frozen=True)
class CashTotals:
    """What moved the drawer during a shift, in minor units of the shift's currency."""

    cash_sales: int = 0
    cash_refunds: int = 0
    pay_ins: int = 0
    pay_outs: int = 0
    no_sales: int = 0
    # Not cash: what the register's confirmed orders took off, and the overrides granted.
    discounts: int = 0
    discounted_orders: int = 0
    overrides: int = 0
    # Gift card value moved at the register outside a payment: cards sold on their own and
    # loads (of which paid in cash: in the drawer), and redemptions less refunds to cards.
    gift_cards_sold: int = 0
    gift_cards_sold_cash: int = 0
    gift_cards_redeemed: int = 0


def expected_cash(opening_float: int, totals: CashTotals) -> int:
    return (
        opening_float
        + totals.cash_sales
        - totals.cash_refunds
        + totals.pay_ins
        - totals.pay_outs
        + totals.gift_cards_sold_cash
    )


@dataclass(frozen=True)
class TenderLine:
    """What one tender took and gave back in one currency. Cash is always in the shift's
    currency (cash in another is refused at the register); a card taken in another currency
    moves no drawer and has a line of its own, after the shift's currency's lines."""

    tender: str
    taken: int
    taken_count: int
    refunded: int
    refunded_count: int
    currency: str = ""


@dataclass
class Shift:
    id: str
    location_id: str
    register_id: str
    currency: str
    opening_float: int
    opened_by: str
    status: ShiftStatus = ShiftStatus.OPEN
    closed_by: str = ""
    counted_cash: int | None = None
    expected_at_close: int | None = None
    version: int = 1
    opened_at: datetime | None = None
    closed_at: datetime | None = None
    # The moment of its last change, opened or closed (the database stamps it): its place in
    # the change feed. What its payments and movements add to its report does not move it.
    updated_at: datetime | None = None
    # Read with the shift, never stored on it: what the payments and movements say.
    totals: CashTotals = field(default_factory=CashTotals)
    tenders: list[TenderLine] = field(default_factory=list)

    @property
    def expected(self) -> int:
        if self.expected_at_close is not None:
            return self.expected_at_close
        return expected_cash(self.opening_float, self.totals)

    @property
    def over_short(self) -> int:
        return 0 if self.counted_cash is None else self.counted_cash - self.expected

    def close(self, counted: int, staff_id: str) -> None:
        if self.status is ShiftStatus.CLOSED:
            raise Conflict("the shift is already closed", "shift_closed")
        self.expected_at_close = expected_cash(self.opening_float, self.totals)
        self.counted_cash = counted
        self.closed_by = staff_id
        self.status = ShiftStatus.CLOSED
        self.version += 1


@dataclass(frozen=True)
class Movement:
    id: str
    shift_id: str
    kind: MovementKind
    amount: int
    currency: str
    reason: str
    staff_id: str
    register_id: str
    created_at: datetime | None = None


def money_violations(amount: int, currency: str, name: str, positive: bool) -> list[FieldViolation]:
    low = 1 if positive else 0
    return [
        *require(low <= amount <= MAX_AMOUNT, f"{name}.amount",
                 f"must be {'more than 0' if positive else 'at least 0'} and at most {MAX_AMOUNT}"),
        *require(currency in MINOR_UNITS, f"{name}.currency", "must be a supported ISO 4217 code"),
    ]  # fmt: skip


def validate_open(location_id: str, register_id: str, amount: int, currency: str) -> None:
    raise_if(
        [
            *require(bool(location_id), "location_id", "is required"),
            *require(bool(register_id), "register_id", "a shift is opened at a register"),
            *money_violations(amount, currency, "opening_float", positive=False),
        ]
    )


def validate_movement(kind: MovementKind, amount: int, currency: str, reason: str) -> None:
    if kind is MovementKind.NO_SALE:
        raise_if(
            [
                *require(amount == 0, "amount.amount", "a no-sale open moves no money"),
                *require(bool(reason.strip()), "reason", "say why the drawer is opened"),
                *require(len(reason) <= REASON_MAX, "reason", f"at most {REASON_MAX} characters"),
            ]
        )
        return
    raise_if(
        [
            *money_violations(amount, currency, "amount", positive=True),
            *require(bool(reason.strip()), "reason", "a pay-in or pay-out needs a reason"),
            *require(len(reason) <= REASON_MAX, "reason", f"at most {REASON_MAX} characters"),
        ]
    )


def check_pay_out(shift: Shift, amount: int) -> None:
    """A pay-out takes cash out of the drawer: never more than it is expected to hold now
    (one past it is a drawer the till cannot count down from: left below zero, every later
    close is short by it). The shift's row is locked and its totals read after the lock, so
    two pay-outs at once cannot both take the last of it."""
    held = shift.expected
    if amount > held:
        refused = Conflict(
            f"the drawer is expected to hold {held} ({shift.currency} minor units); a pay-out "
            "takes no more than that",
            "insufficient_cash_in_drawer",
            {"expected_cash": str(held)},
        )
        refused.violations = [
            FieldViolation(
                "amount.amount",
                f"must be at most {max(held, 0)}, the cash the drawer is expected to hold",
            )
        ]
        raise refused


def check_pay_in(shift: Shift, amount: int) -> None:
    """A pay-in brings cash into the drawer: never past the ceiling of every amount
    (`MAX_AMOUNT`), which the drawer's expected cash is held to as each pay-in is (else
    repeated pay-ins take it past what a close can count). Checked, as a pay-out is, on the
    shift's row locked and its totals read after the lock."""
    room = MAX_AMOUNT - shift.expected
    if amount > room:
        raise InvalidArgument(
            f"the drawer would hold more than {MAX_AMOUNT} ({shift.currency} minor units)",
            [
                FieldViolation(
                    "amount.amount",
                    f"must be at most {max(room, 0)}: the drawer is expected to hold "
                    f"{shift.expected}, and at most {MAX_AMOUNT}",
                )
            ],
        )


def check_currency_of(shift: Shift, currency: str, name: str) -> None:
    if currency != shift.currency:
        raise InvalidArgument(
            f"the shift counts {shift.currency}",
            [FieldViolation(f"{name}.currency", f"must be the shift's currency, {shift.currency}")],
        )


@dataclass(frozen=True)
class ShiftOpened:
    """shift.opened: the whole shift as GetShift returns it."""

    shift: Shift


@dataclass(frozen=True)
class ShiftClosed:
    """shift.closed: the shift with its counted cash, over/short and report."""

    shift: Shift


EVENTS = (ShiftOpened, ShiftClosed)


def validate_filter(filters: ShiftFilter) -> None:
    """An opened-at window that ends before (or as) it starts is the two swapped: refused,
    never a silent empty list."""
    if filters.opened_since is not None and filters.opened_before is not None:
        raise_if(
            require(filters.opened_before > filters.opened_since, "opened_before",
                    "must be after opened_since")
        )  # fmt: skip
