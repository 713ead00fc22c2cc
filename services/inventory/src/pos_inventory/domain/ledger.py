"""How a change of on_hand is sequenced by when it happened, not by when it arrived.

A till that was offline sends its changes late. A physical count fixes on_hand at the moment it
was taken, so a change that happened before the latest count is already part of what was
counted: it is recorded in the ledger but changes nothing (it is "superseded"). A change that
happened after the count applies on top of it. With that one rule the same set of changes ends
in the same on_hand whatever order they arrive in:

    on_hand = quantity of the latest count + the sum of every change that happened after it

Counts are ordered by (occurred_at, key), the key being the count's request id, so two counts
taken at the same instant still have one winner everywhere.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from enum import Enum

from pos_inventory.domain.model import Reason, StockLevel
from pos_kit.errors import FieldViolation, raise_if, require

# Clocks of tills drift; a change from further in the future than this is a wrong clock, and
# accepting it would let it supersede every real change until then.
MAX_CLOCK_SKEW = timedelta(minutes=5)
MAX_UNITS = 1_000_000_000


class EntryKind(Enum):
    ADJUSTMENT = "adjustment"
    COUNT = "count"
    TRANSFER_OUT = "transfer_out"
    TRANSFER_IN = "transfer_in"
    SALE = "sale"


@dataclass(frozen=True)
class Applied:
    """The outcome of sequencing one change: what it does to on_hand."""

    delta: int
    superseded: bool

    def on_hand_after(self, state: ItemState) -> int:
        return state.on_hand + self.delta


@dataclass(frozen=True)
class LedgerEntry:
    id: str
    sku: str
    location_id: str
    kind: EntryKind
    reason: Reason | None
    quantity: int  # what was asked: the signed change, or the quantity counted
    delta: int  # what it did to on_hand
    on_hand_after: int
    superseded: bool
    occurred_at: datetime
    recorded_at: datetime
    reference: str = ""
    note: str = ""


@dataclass(frozen=True)
class NewEntry:
    """A ledger entry about to be written, after sequencing."""

    kind: EntryKind
    reason: Reason | None
    quantity: int
    applied: Applied
    occurred_at: datetime
    reference: str = ""
    note: str = ""


def crossed_low(available_before: int, after: StockLevel, threshold: int | None) -> bool:
    """True when available fell to or below the threshold with this change (not when it was
    already there: one alert per crossing, not one per sale)."""
    return threshold is not None and available_before > threshold >= after.available


@dataclass(frozen=True)
class ItemState:
    """What sequencing needs to know of one (sku, location)."""

    on_hand: int
    reserved: int
    counted_at: datetime | None
    count_key: str

    def counted_after(self, occurred_at: datetime, key: str = "") -> bool:
        """True when the latest count was taken at or after this moment (and key)."""
        if self.counted_at is None:
            return False
        return (self.counted_at, self.count_key) >= (occurred_at, key)


def sequence_change(state: ItemState, quantity: int, occurred_at: datetime) -> Applied:
    """A signed change (adjustment, transfer leg, sale)."""
    # A change at the very instant of a count is taken to be part of it (every key sorts at
    # or after ""): the count is the latest word on that instant.
    if state.counted_after(occurred_at):
        return Applied(0, True)
    return Applied(quantity, False)


def sequence_count(
    state: ItemState, counted: int, occurred_at: datetime, key: str, changed_since: int
) -> Applied:
    """A count of `counted` units taken at occurred_at.

    `changed_since` is the sum of the changes recorded for the item that happened after
    occurred_at: they are not in what was counted, so they apply on top of it.
    """
    if state.counted_after(occurred_at, key):
        return Applied(0, True)
    return Applied(counted + changed_since - state.on_hand, False)


def change_time(occurred_at: datetime | None, now: datetime) -> datetime:
    """The moment a change is recorded at and sequenced by: its `occurred_at` when that is
    already past, else `now`.

    A stamp ahead of the clock (accepted up to MAX_CLOCK_SKEW: a till's clock running fast)
    reports nothing that has happened yet, so it is a change meant as now. Kept at its stamp,
    a count dated ahead superseded every sale, commit, write-off and transfer out made until
    then (each dated before it), and a change dated ahead was added on top of a count taken
    after it, counted twice. Every writer of the ledger decides its change's time here.
    """
    if occurred_at is None or occurred_at > now:
        return now
    return occurred_at


def validate_occurred_at(occurred_at: datetime, now: datetime) -> list[FieldViolation]:
    return require(
        occurred_at <= now + MAX_CLOCK_SKEW,
        "occurred_at",
        "must not be more than 5 minutes in the future",
    )


def validate_count(
    sku: str, location_id: str, counted: int, occurred_at: datetime, now: datetime
) -> None:
    violations: list[FieldViolation] = []
    violations += require(bool(sku), "sku", "is required")
    violations += require(bool(location_id), "location_id", "is required")
    violations += require(counted >= 0, "quantity", "must be zero or more")
    violations += require(counted <= MAX_UNITS, "quantity", "must be at most 1,000,000,000")
    violations += validate_occurred_at(occurred_at, now)
    raise_if(violations)


def validate_note(note: str) -> list[FieldViolation]:
    return require(len(note) <= 500, "note", "must be at most 500 characters")
