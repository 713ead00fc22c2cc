"""Customers and their loyalty balance. Plain Python: no storage or transport here."""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from datetime import datetime

from pos_kit.errors import FieldViolation, raise_if, require

_EMAIL = re.compile(r"^[^@\s]+@[^@\s]+\.[^@\s]+$")
# One point per whole unit of currency spent (100 minor units), rounded down.
MINOR_UNITS_PER_POINT = 100


@dataclass
class Customer:
    id: str
    email: str
    given_name: str
    family_name: str
    loyalty_points: int = 0
    version: int = 1
    created_at: datetime | None = None
    updated_at: datetime | None = None
    events: list[object] = field(default_factory=list, repr=False, compare=False)

    def earn_points(self, order_id: str, order_total_minor: int) -> int:
        points = points_for(order_total_minor)
        if points > 0:
            self.loyalty_points += points
            self.version += 1
            self.events.append(LoyaltyPointsEarned(self.id, order_id, points, self.loyalty_points))
        return points


@dataclass(frozen=True)
class CustomerUpdated:
    customer: Customer


@dataclass(frozen=True)
class CustomerCreated:
    customer: Customer


@dataclass(frozen=True)
class LoyaltyPointsEarned:
    customer_id: str
    order_id: str
    points: int
    balance: int


def points_for(order_total_minor: int) -> int:
    return max(0, order_total_minor // MINOR_UNITS_PER_POINT)


def validate_new_customer(email: str, given_name: str, family_name: str) -> None:
    validate_profile(email, given_name, family_name)


def validate_profile(email: str | None, given_name: str | None, family_name: str | None) -> None:
    violations: list[FieldViolation] = []
    if email is not None:
        violations += require(bool(_EMAIL.match(email)), "email", "must be an email address")
        violations += require(len(email) <= 254, "email", "must be at most 254 characters")
    if given_name is not None:
        violations += require(
            len(given_name) <= 100, "given_name", "must be at most 100 characters"
        )
    if family_name is not None:
        violations += require(
            len(family_name) <= 100, "family_name", "must be at most 100 characters"
        )
    raise_if(violations)


# Every domain event this service raises; each has an integration event (adapters/events.py).
EVENTS = (CustomerCreated, CustomerUpdated, LoyaltyPointsEarned)
