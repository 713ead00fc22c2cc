"""Catalog, locations and stock. Plain Python: no storage or transport here."""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import datetime
from enum import Enum

from pos_kit.errors import FieldViolation, raise_if, require
from pos_kit.money import BPS, MINOR_UNITS

SKU = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._\-/]{0,63}$")
MAX_SKUS_PER_CALL = 500


class Reason(Enum):
    RECEIVED = "received"
    SOLD = "sold"
    RETURNED = "returned"
    DAMAGED = "damaged"
    CORRECTION = "correction"


@dataclass
class Location:
    id: str
    name: str
    currency: str
    tax_rate_bps: int
    version: int = 1
    created_at: datetime | None = None


@dataclass(frozen=True)
class StockLevel:
    sku: str
    location_id: str
    on_hand: int
    reserved: int

    @property
    def available(self) -> int:
        return self.on_hand - self.reserved


@dataclass(frozen=True)
class Adjustment:
    sku: str
    location_id: str
    delta: int
    reason: Reason
    reference: str = ""

    @property
    def may_go_negative(self) -> bool:
        """A sale already made at a till is a fact: it may drive stock negative, visibly.

        Every other decrease must be covered by what is on hand.
        """
        return self.reason is Reason.SOLD and bool(self.reference)


@dataclass(frozen=True)
class StockChanged:
    level: StockLevel
    delta: int
    reason: Reason


def validate_location(name: str, currency: str, tax_rate_bps: int) -> None:
    violations: list[FieldViolation] = []
    violations += require(0 < len(name.strip()) <= 200, "name", "must be 1 to 200 characters")
    violations += require(
        currency in MINOR_UNITS, "currency", "must be a supported ISO 4217 code, e.g. USD"
    )
    violations += require(0 <= tax_rate_bps <= BPS, "tax_rate_bps", f"must be between 0 and {BPS}")
    raise_if(violations)


def validate_adjustment(adj: Adjustment) -> None:
    violations: list[FieldViolation] = []
    violations += require(bool(adj.sku), "sku", "is required")
    violations += require(bool(adj.location_id), "location_id", "is required")
    violations += require(adj.delta != 0, "delta", "must not be zero")
    violations += require(
        abs(adj.delta) <= 1_000_000_000, "delta", "must be at most 1,000,000,000 units"
    )
    raise_if(violations)


def validate_sku_list(skus: list[str]) -> None:
    violations: list[FieldViolation] = []
    violations += require(bool(skus), "skus", "must name at least one sku")
    violations += require(
        len(skus) <= MAX_SKUS_PER_CALL, "skus", f"must name at most {MAX_SKUS_PER_CALL}"
    )
    raise_if(violations)
