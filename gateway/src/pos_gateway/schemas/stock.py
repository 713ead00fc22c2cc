"""Locations and stock answers: levels, the ledger, reservations, availability, sourcing."""

from __future__ import annotations

from enum import StrEnum
from typing import Annotated, Literal

from pydantic import Field

from pos_gateway.routes.common import INT64
from pos_gateway.schemas.base import (
    Answer,
    Bps,
    Count,
    Currency,
    Id,
    Kilometres,
    OptionalId,
    Page,
    Sku,
    StockLine,
    Timestamp,
    Units,
    Version,
)
from pos_gateway.schemas.catalog import TAX_CATEGORY

# A merchant has at most this many locations (the inventory service's MAX_LOCATIONS, a 409
# `location_limit_reached` past it): an answer with an entry per location is bounded by it.
LOCATIONS_MAX = 1000
# SKUs one stock-levels or availability request may name.
SKUS_ASKED_MAX = 200

# A location's rates are keyed by the tax categories products carry: the same rule.
TaxRateKey = Annotated[str, Field(pattern=TAX_CATEGORY, max_length=32)]


class LocationTaxRule(Answer):
    """One tax a location charges (its name, rates and whether it compounds). Named apart from
    `Location.tax_rates_bps`: generated clients name inline maps by parent and field."""

    name: str = Field(min_length=1, max_length=32, examples=["state"])
    rate_bps: Bps
    rates_bps: dict[TaxRateKey, Bps] = Field(
        max_length=50, description="Per tax category; others pay rate_bps"
    )
    compound: bool = Field(description="Charged on the price plus the taxes listed before it")


class Address(Answer):
    line1: str = Field(max_length=200)
    line2: str = Field(max_length=200)
    city: str = Field(max_length=200)
    region: str = Field(max_length=200)
    postal_code: str = Field(max_length=20)
    country: str = Field(pattern=r"^([A-Z]{2})?$", max_length=2, description="ISO 3166-1 alpha-2")


class GeoPoint(Answer):
    latitude: float = Field(ge=-90, le=90, json_schema_extra={"format": "double"})
    longitude: float = Field(ge=-180, le=180, json_schema_extra={"format": "double"})


class Location(Answer):
    id: Id
    name: str = Field(min_length=1, max_length=200)
    currency: Currency
    tax_rate_bps: Bps
    version: Version
    created_at: Timestamp
    updated_at: Timestamp = Field(
        description="The moment of its last change: its place in the list's `updated_since` feed"
    )
    kind: Literal["store", "warehouse"]
    address: Address | None
    geo: GeoPoint | None = Field(description="null when unknown")
    time_zone: str = Field(max_length=64, description="IANA time zone", examples=["UTC"])
    tax_rates_bps: dict[TaxRateKey, Bps] = Field(
        max_length=50, description="Per tax category; others pay tax_rate_bps"
    )
    pickup_enabled: bool
    ship_enabled: bool
    prices_include_tax: bool = Field(False, description="Shelf prices include their tax (VAT)")
    taxes: list[LocationTaxRule] = Field(
        default_factory=list,
        max_length=5,
        description="Several taxes (a state's and a city's); when set they replace "
        "tax_rate_bps and tax_rates_bps",
    )
    status: Literal["active", "inactive"] = Field(
        description="`inactive`: closed by the merchant; it sells, holds and receives stock no "
        "more and is never sourced or offered nearby (its stock can still be counted, written "
        "off and moved out)"
    )


class StockLevel(Answer):
    sku: Sku
    location_id: Id
    on_hand: Units = Field(description="May be negative: recorded sales beyond what was received")
    reserved: Count = Field(description="Held by active reservations")
    available: Count = Field(description="on_hand - reserved, never below zero")
    updated_at: Timestamp | None = Field(
        description="When on_hand or reserved (so available) last changed, moving forward with "
        "every change in the order of the ledger; null: never"
    )


class LedgerEntry(Answer):
    id: Id
    sku: Sku
    location_id: Id
    kind: Literal["adjustment", "count", "transfer_out", "transfer_in", "sale"]
    reason: Literal["received", "sold", "returned", "damaged", "correction", "lost"] | None = Field(
        description="Set for adjustments and sales (every sale is `sold`)"
    )
    quantity: Units = Field(description="What was asked: the signed change, or the count")
    delta: Units = Field(description="What it did to on_hand; 0 when superseded by a count")
    on_hand_after: Units
    superseded: bool
    occurred_at: Timestamp
    recorded_at: Timestamp = Field(
        description="When it was written here; an item's entries in the order of its ledger"
    )
    reference: str = Field(max_length=200, description="The order, reservation or transfer")
    note: str = Field(max_length=500)


class Adjusted(StockLevel):
    """The new level, with the ledger entry the adjustment wrote."""

    entry: LedgerEntry


class Counted(Answer):
    level: StockLevel
    entry: LedgerEntry


class Transfer(Answer):
    transfer_id: Id
    levels: list[StockLevel] = Field(max_length=200, description="Both locations' new levels")
    entries: list[LedgerEntry] = Field(max_length=200)


class Threshold(Answer):
    sku: Sku
    threshold: Annotated[int, Field(ge=0, le=1_000_000_000, json_schema_extra=INT64)] | None = (
        Field(description="null: no alert")
    )


class ReservationStatus(StrEnum):
    """`active` holds the units until `expires_at`; the others hold nothing any more"""

    ACTIVE = "active"
    COMMITTED = "committed"
    RELEASED = "released"
    EXPIRED = "expired"


class Reservation(Answer):
    id: Id
    location_id: Id
    status: ReservationStatus
    lines: list[StockLine] = Field(max_length=100)
    reference: str = Field(max_length=200)
    expires_at: Timestamp
    created_at: Timestamp
    updated_at: Timestamp


class HeldReservation(Reservation):
    """The reservation, with the levels it changed."""

    levels: list[StockLevel] = Field(max_length=100)


class SkuAvailability(Answer):
    sku: Sku
    on_hand: Units
    reserved: Count
    available: Count
    locations: list[StockLevel] = Field(
        max_length=LOCATIONS_MAX, description="One per open location that has a level"
    )


class NearbyLocation(Answer):
    location: Location
    distance_km: Kilometres
    levels: list[StockLevel] = Field(max_length=100)


class SourcingAllocation(Answer):
    location_id: Id
    distance_km: Kilometres | None = Field(
        description="From the destination; null when unknown: the location has no `geo`, or "
        "a pickup has no destination"
    )
    lines: list[StockLine] = Field(max_length=100)
    reservation_id: OptionalId


class SourcingProposal(Answer):
    strategy: Literal["pickup", "single", "split", "unfulfillable"]
    allocations: list[SourcingAllocation] = Field(
        max_length=LOCATIONS_MAX, description="One per location shipping a part"
    )
    reason: str = Field(max_length=2000, description="Why, in words for people")
    reason_code: str = Field(max_length=64, examples=["nearest_with_all_lines"])
    short: list[StockLine] = Field(max_length=100, description="What no location can supply")


class StockLevelList(Page[StockLevel]):
    # One level per SKU and location: up to 200 SKUs at each of the merchant's locations.
    data: list[StockLevel] = Field(max_length=SKUS_ASKED_MAX * LOCATIONS_MAX)


class LocationList(Page[Location]):
    pass


class LedgerEntryList(Page[LedgerEntry]):
    pass


class ReservationList(Page[Reservation]):
    pass


class SkuAvailabilityList(Page[SkuAvailability]):
    pass


class NearbyLocationList(Page[NearbyLocation]):
    pass


class ThresholdList(Page[Threshold]):
    """The thresholds set (each `threshold` a number: a SKU with none is not listed)."""
