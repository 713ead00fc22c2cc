"""Catalog, locations and stock. Plain Python: no storage or transport here."""

from __future__ import annotations

import math
import re
from dataclasses import dataclass, field
from datetime import datetime
from enum import Enum
from typing import TYPE_CHECKING

from pos_kit.countries import NOT_A_COUNTRY, is_country
from pos_kit.errors import DomainError, ErrorKind, FieldViolation, raise_if, require
from pos_kit.money import BPS, MINOR_UNITS
from pos_kit.zones import is_iana_zone

if TYPE_CHECKING:  # the events below carry these; their modules build on this one
    from pos_inventory.domain.catalog import Product
    from pos_inventory.domain.ledger import LedgerEntry
    from pos_inventory.domain.reservations import Reservation

SKU = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._\-/]{0,63}$")
# One rule for a tax category, on products and in a location's rates alike: a rate under a
# key no product could carry would never apply.
TAX_CATEGORY = re.compile(r"^[a-z][a-z0-9_]{0,31}$")
MAX_SKUS_PER_CALL = 500


class Reason(Enum):
    RECEIVED = "received"
    SOLD = "sold"
    RETURNED = "returned"
    DAMAGED = "damaged"
    CORRECTION = "correction"
    LOST = "lost"


class LocationKind(Enum):
    STORE = "store"
    WAREHOUSE = "warehouse"


class LocationStatus(Enum):
    ACTIVE = "active"
    # Closed by the merchant: it sells, holds and receives no more, and is never sourced or
    # offered nearby; its stock can still be counted, written off and moved out.
    INACTIVE = "inactive"


@dataclass(frozen=True)
class Address:
    line1: str = ""
    line2: str = ""
    city: str = ""
    region: str = ""
    postal_code: str = ""
    country: str = ""


@dataclass(frozen=True)
class GeoPoint:
    latitude: float
    longitude: float


def geo_violations(point: GeoPoint, name: str) -> list[FieldViolation]:
    """A position's problems, each field named under `name`. NaN fails every comparison, so
    a range check alone told a NaN latitude it "must be between -90 and 90": true, but not
    what was wrong with it; it is not a number to place, and nor is an infinity."""
    violations: list[FieldViolation] = []
    for part, value, bound in (
        ("latitude", point.latitude, 90),
        ("longitude", point.longitude, 180),
    ):
        if not math.isfinite(value):
            violations.append(FieldViolation(f"{name}.{part}", "must be a finite number"))
        elif not -bound <= value <= bound:
            violations.append(
                FieldViolation(f"{name}.{part}", f"must be between -{bound} and {bound}")
            )
    return violations


@dataclass(frozen=True)
class LocationTax:
    """One of several taxes a location charges (a state's, a city's), in order."""

    name: str
    rate_bps: int
    rates_bps: dict[str, int] = field(default_factory=dict, hash=False)
    compound: bool = False


MAX_TAXES = 5


@dataclass
class Location:
    id: str
    name: str
    currency: str
    tax_rate_bps: int
    version: int = 1
    created_at: datetime | None = None
    kind: LocationKind = LocationKind.STORE
    address: Address = field(default_factory=Address)
    geo: GeoPoint | None = None
    time_zone: str = "UTC"
    tax_rates_bps: dict[str, int] = field(default_factory=dict)
    pickup_enabled: bool = False
    ship_enabled: bool = False
    # VAT-style: shelf prices here contain their tax (the order service shows it contained).
    prices_include_tax: bool = False
    # When set, these replace tax_rate_bps and tax_rates_bps: each charged on its own.
    taxes: list[LocationTax] = field(default_factory=list)
    # The moment of its last change (the database stamps it): its place in the change feed.
    updated_at: datetime | None = None
    status: LocationStatus = LocationStatus.ACTIVE

    @property
    def inactive(self) -> bool:
        return self.status is LocationStatus.INACTIVE

    def refuse_if_inactive(self, field_name: str) -> None:
        """409 `location_inactive`, naming the request field that chose it."""
        if self.inactive:
            raise DomainError(
                f"location {self.id!r} is inactive: it no longer sells, holds or receives stock",
                "location_inactive",
                [FieldViolation(field_name, "the location is inactive")],
                {"location_id": self.id},
                ErrorKind.CONFLICT,
            )

    def tax_rate_for(self, tax_category: str) -> int:
        return self.tax_rates_bps.get(tax_category, self.tax_rate_bps)


@dataclass(frozen=True)
class StockLevel:
    sku: str
    location_id: str
    on_hand: int
    reserved: int
    updated_at: datetime | None = None

    @property
    def available(self) -> int:
        # A loss recorded after units were held can leave fewer on the shelf than are held;
        # nothing more can be promised then, but "minus two available" promises nothing either.
        return max(0, self.on_hand - self.reserved)


def reported_late(occurred_at: datetime | None, now: datetime) -> bool:
    """True for a change stamped with a moment already past: a fact reported late, recorded
    whatever it leaves (see `Adjustment.may_go_negative`). A stamp ahead of now, accepted up
    to `ledger.MAX_CLOCK_SKEW` for a till's clock running fast, reports nothing that has
    happened yet: it is taken as now, as a change sent with no stamp, and its units must be
    there."""
    return occurred_at is not None and occurred_at <= now


@dataclass(frozen=True)
class Adjustment:
    sku: str
    location_id: str
    delta: int
    reason: Reason
    reference: str = ""
    # When it happened; None means now (see domain/ledger.py for how it is sequenced).
    occurred_at: datetime | None = None
    note: str = ""

    def may_go_negative(self, now: datetime) -> bool:
        """A reported fact may drive stock negative, visibly; a request to take units may not.

        A fact is a change stamped with when it happened (`occurred_at`, before `now`): it
        arrives late, and refusing it would make the outcome depend on what had arrived before
        it, against the promise that the same changes end in the same levels in any order.
        Only a decrease meant as "now" (no `occurred_at`, or one a little ahead of now: a
        till's clock running fast, see `reported_late`) must be covered by what is on hand:
        most likely a typo otherwise. (A sale made at a till is the order's event, recorded by
        `record_sale`, never an adjustment: a reference a caller sends proves no sale.)
        """
        return reported_late(self.occurred_at, now)


def validate_location(location: Location, address_sent: bool = True) -> None:
    """Every rule at once, so a client fixes all its field errors in one round trip."""
    violations: list[FieldViolation] = []
    violations += require(
        0 < len(location.name.strip()) <= 200, "name", "must be 1 to 200 characters"
    )
    violations += require(
        location.currency in MINOR_UNITS, "currency", "must be a supported ISO 4217 code, e.g. USD"
    )
    violations += require(
        0 <= location.tax_rate_bps <= BPS, "tax_rate_bps", f"must be between 0 and {BPS}"
    )
    for category, bps in sorted(location.tax_rates_bps.items()):
        violations += require(
            bool(TAX_CATEGORY.match(category)),
            f"tax_rates_bps.{category}",
            "must be a lowercase letter, then up to 31 lowercase letters, digits or '_'",
        )
        violations += require(
            0 <= bps <= BPS, f"tax_rates_bps.{category}", f"must be between 0 and {BPS}"
        )
    violations += require(
        len(location.tax_rates_bps) <= 50, "tax_rates_bps", "must list at most 50 categories"
    )
    violations += require(
        len(location.taxes) <= MAX_TAXES, "taxes", f"must list at most {MAX_TAXES} taxes"
    )
    # In any case, as role and tier names: "VAT" and "vat" would print as two taxes alike.
    names = [t.name.strip().casefold() for t in location.taxes]
    violations += require(len(set(names)) == len(names), "taxes", "must name each tax once")
    for i, tax in enumerate(location.taxes[:MAX_TAXES]):
        violations += require(
            0 < len(tax.name.strip()) <= 32, f"taxes[{i}].name", "must be 1 to 32 characters"
        )
        violations += require(
            0 <= tax.rate_bps <= BPS, f"taxes[{i}].rate_bps", f"must be between 0 and {BPS}"
        )
        violations += require(
            len(tax.rates_bps) <= 50, f"taxes[{i}].rates_bps", "must list at most 50 categories"
        )
        for category, bps in sorted(tax.rates_bps.items()):
            violations += require(
                bool(TAX_CATEGORY.match(category)) and 0 <= bps <= BPS,
                f"taxes[{i}].rates_bps.{category}",
                f"must be a tax category code with a rate between 0 and {BPS}",
            )
    violations += require(
        not location.taxes or not location.taxes[0].compound,
        "taxes[0].compound",
        "the first tax has no tax before it to compound on",
    )
    violations += require(
        is_time_zone(location.time_zone),
        "time_zone",
        "must be an IANA time zone, e.g. Europe/Paris",
    )
    if location.geo is not None:
        violations += geo_violations(location.geo, "geo")
    for name, value in vars(location.address).items():
        violations += require(
            len(value) <= 200, f"address.{name}", "must be at most 200 characters"
        )
    # No country is none; one given is judged when the address is sent (`address_sent`), so
    # an address kept from before unassigned codes were refused still lets its location be
    # renamed or closed.
    violations += require(
        not (address_sent and location.address.country) or is_country(location.address.country),
        "address.country",
        NOT_A_COUNTRY,
    )
    raise_if(violations)


def is_time_zone(name: str) -> bool:
    # A zone of the IANA database, not any file ZoneInfo opens (`localtime`, `right/UTC`).
    return is_iana_zone(name)


# What a reason says the units did: came in, went out, or either (a count put right). A
# "received" that takes units away (or a "damaged" that adds them) would make the ledger and
# every report by reason lie about what happened.
ADDS_UNITS = frozenset({Reason.RECEIVED, Reason.RETURNED})
TAKES_UNITS = frozenset({Reason.SOLD, Reason.DAMAGED, Reason.LOST})


def validate_adjustment(adj: Adjustment) -> None:
    violations: list[FieldViolation] = []
    violations += require(bool(adj.sku), "sku", "is required")
    violations += require(bool(adj.location_id), "location_id", "is required")
    violations += require(adj.delta != 0, "delta", "must not be zero")
    if adj.delta > 0 and adj.reason in TAKES_UNITS:
        violations.append(
            FieldViolation("delta", f"must be negative: {adj.reason.value} takes units away")
        )
    if adj.delta < 0 and adj.reason in ADDS_UNITS:
        violations.append(
            FieldViolation("delta", f"must be positive: {adj.reason.value} adds units")
        )
    violations += require(
        abs(adj.delta) <= 1_000_000_000, "delta", "must be at most 1,000,000,000 units"
    )
    violations += require(len(adj.note) <= 500, "note", "must be at most 500 characters")
    violations += require(len(adj.reference) <= 64, "reference", "must be at most 64 characters")
    raise_if(violations)


def validate_sku_list(skus: list[str]) -> None:
    violations: list[FieldViolation] = []
    violations += require(bool(skus), "skus", "must name at least one sku")
    violations += require(
        len(skus) <= MAX_SKUS_PER_CALL, "skus", f"must name at most {MAX_SKUS_PER_CALL}"
    )
    raise_if(violations)


# --- Domain events: what changed, raised by the handlers and mapped to integration events ---


@dataclass(frozen=True)
class LocationCreated:
    location: Location


@dataclass(frozen=True)
class LocationUpdated:
    location: Location


@dataclass(frozen=True)
class ProductCreated:
    product: Product


@dataclass(frozen=True)
class ProductUpdated:
    product: Product


@dataclass(frozen=True)
class ProductArchived:
    product: Product


@dataclass(frozen=True)
class StockChanged:
    level: StockLevel
    entry: LedgerEntry


@dataclass(frozen=True)
class LowStock:
    level: StockLevel
    threshold: int


@dataclass(frozen=True)
class Threshold:
    """A SKU's low-stock threshold, as set: `available` at or below it is low stock."""

    sku: str
    threshold: int

    @property
    def id(self) -> str:
        """Its key in a list (one threshold per SKU), which pages by it."""
        return self.sku


@dataclass(frozen=True)
class ReservationChanged:
    """A reservation and the levels of its lines after the change."""

    reservation: Reservation
    levels: list[StockLevel] = field(default_factory=list)


class ReservationCreated(ReservationChanged):
    pass


class ReservationCommitted(ReservationChanged):
    pass


class ReservationReleased(ReservationChanged):
    pass


class ReservationExpired(ReservationChanged):
    pass


# Every domain event this service raises; each has an integration event (adapters/events.py).
EVENTS = (
    LocationCreated,
    LocationUpdated,
    ProductCreated,
    ProductUpdated,
    ProductArchived,
    StockChanged,
    LowStock,
    ReservationCreated,
    ReservationCommitted,
    ReservationReleased,
    ReservationExpired,
)
