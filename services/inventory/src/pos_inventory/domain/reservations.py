"""Reservations: units held at a location for a while, then sold, released or expired.

A hold is what keeps a web shop, a till and a partner app from selling the same last unit:
units are promised only while `available` (on_hand - reserved) covers them, and the check and
the hold are one step in storage. Plain Python here: no storage or transport.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from enum import Enum

from pos_inventory.domain.ledger import MAX_UNITS
from pos_inventory.domain.model import SKU
from pos_kit.errors import Conflict, FieldViolation, raise_if, require

DEFAULT_TTL_SECONDS = 900
MAX_TTL_SECONDS = 7 * 24 * 3600
MAX_LINES = 100
MAX_REFERENCE = 200

Line = tuple[str, int]  # (sku, quantity)


class ReservationStatus(Enum):
    ACTIVE = "active"
    COMMITTED = "committed"
    RELEASED = "released"
    EXPIRED = "expired"


@dataclass
class Reservation:
    id: str
    location_id: str
    lines: list[Line]
    reference: str = ""
    status: ReservationStatus = ReservationStatus.ACTIVE
    expires_at: datetime | None = None
    created_at: datetime | None = None
    updated_at: datetime | None = None


@dataclass(frozen=True)
class Hold:
    """A validated request to hold lines: SKUs unique and sorted, so that every transaction
    locks stock rows in the same order and two multi-line holds can never deadlock.
    `asked`: the SKUs in the order the request sent its lines, so a refusal names the line
    as sent (`lines[1].sku`); empty for a hold the service makes itself (a sourcing's)."""

    location_id: str
    lines: list[Line]
    ttl_seconds: int
    reference: str
    asked: tuple[str, ...] = ()


@dataclass(frozen=True)
class Short:
    """A line that could not be held, and what was available for it."""

    sku: str
    wanted: int
    available: int


class OutOfStock(Conflict):
    """`due_holds`: holds past their time that still hold some of the short SKUs there (the
    sweep has not reached them): ended, they may leave enough."""

    def __init__(
        self, short: list[Short], doing: str = "hold", due_holds: list[str] | None = None
    ) -> None:
        # `doing` names what was refused (a hold, a transfer's move): the detail is read by
        # people, and a transfer refused "to hold" sent them looking for a hold.
        names = ", ".join(f"{s.sku} (wanted {s.wanted}, available {s.available})" for s in short)
        super().__init__(
            f"not enough stock to {doing}: {names}",
            "insufficient_stock",
            {
                "skus": ",".join(s.sku for s in short),
                "available": ",".join(str(s.available) for s in short),
            },
        )
        self.short = short
        self.due_holds = due_holds or []


def line_violations(lines: list[Line], name: str = "lines") -> list[FieldViolation]:
    """Every problem of a list of lines; a SKU named twice is an error, not a silent sum."""
    violations: list[FieldViolation] = []
    violations += require(bool(lines), name, "must hold at least one line")
    violations += require(len(lines) <= MAX_LINES, name, f"must hold at most {MAX_LINES} lines")
    seen: set[str] = set()
    for i, (sku, quantity) in enumerate(lines[: MAX_LINES + 1]):
        violations += require(bool(SKU.match(sku)), f"{name}[{i}].sku", "must be a valid SKU")
        violations += require(sku not in seen, f"{name}[{i}].sku", "appears in an earlier line")
        violations += require(
            0 < quantity <= MAX_UNITS,
            f"{name}[{i}].quantity",
            "must be a whole number of units from 1 to 1,000,000,000",
        )
        seen.add(sku)
    return violations


def validate_hold(location_id: str, lines: list[Line], ttl_seconds: int, reference: str) -> Hold:
    violations: list[FieldViolation] = []
    violations += require(bool(location_id), "location_id", "is required")
    violations += line_violations(lines)
    violations += require(
        0 <= ttl_seconds <= MAX_TTL_SECONDS,
        "ttl_seconds",
        f"must be from 1 to {MAX_TTL_SECONDS} seconds (or unset for {DEFAULT_TTL_SECONDS})",
    )
    violations += require(
        len(reference) <= MAX_REFERENCE, "reference", f"must be at most {MAX_REFERENCE} characters"
    )
    raise_if(violations)
    return Hold(
        location_id,
        sorted(lines),
        ttl_seconds or DEFAULT_TTL_SECONDS,
        reference,
        tuple(sku for sku, _ in lines),
    )


class HoldDue(Conflict):
    """A commit of a hold whose time is up (by the database clock) that the sweep has not yet
    reached: the hold ends as expired, as the sweep would end it, in a transaction of its own
    (`reservations.expire_reservation`), and the caller is told it expired."""

    def __init__(self, reservation_id: str, verb: str) -> None:
        super().__init__(f"the reservation expired before it was {verb}", "reservation_expired")
        self.reservation_id = reservation_id


def check_can_commit(reservation: Reservation) -> bool:
    """True when the commit must do the work; False when it was already committed (a no-op)."""
    if reservation.status is ReservationStatus.COMMITTED:
        return False
    if reservation.status is ReservationStatus.RELEASED:
        raise Conflict("the reservation was released", "reservation_released")
    if reservation.status is ReservationStatus.EXPIRED:
        raise Conflict("the reservation expired before it was committed", "reservation_expired")
    return True


def check_can_release(reservation: Reservation) -> bool:
    """True when the release must do the work; False when there is nothing left to let go (a
    no-op answering the hold as it ended): released already, or expired, whose units its expiry
    gave back, which is all a release asks. Committed, its units are sold: a conflict, as a
    commit of a released or expired hold is (nothing was sold then)."""
    if reservation.status is ReservationStatus.COMMITTED:
        raise Conflict("the reservation was committed: its units are sold", "reservation_committed")
    return reservation.status is ReservationStatus.ACTIVE
