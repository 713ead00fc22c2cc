"""Use cases of availability: per SKU across locations, stock near a point, and sourcing."""

from __future__ import annotations

import math
from dataclasses import dataclass, field

from pos_inventory.domain.model import (
    GeoPoint,
    Location,
    StockLevel,
    geo_violations,
    validate_sku_list,
)
from pos_inventory.domain.reservations import (
    DEFAULT_TTL_SECONDS,
    MAX_REFERENCE,
    MAX_TTL_SECONDS,
    Hold,
    Line,
    line_violations,
)
from pos_inventory.domain.sourcing import (
    Candidate,
    Proposal,
    by_distance,
    distance_km,
    propose_pickup,
    propose_shipping,
)
from pos_inventory.service.handlers import require_items
from pos_inventory.service.ports import InventoryUnitOfWork
from pos_inventory.service.reservations import create_reservation, refuse_archived
from pos_kit.errors import FieldViolation, NotFound, raise_if, require
from pos_kit.paging import MAX_PAGE_SIZE

MAX_LOCATIONS_PER_CALL = 500
# As many of the nearest as a page holds (REST `limit`, at most 200); before, 100 whatever
# was asked, and an answer with no further page read as all there was.
MAX_NEARBY = MAX_PAGE_SIZE


@dataclass(frozen=True)
class SkuAvailability:
    sku: str
    on_hand: int
    reserved: int
    available: int
    locations: list[StockLevel] = field(default_factory=list)


async def availability(
    uow: InventoryUnitOfWork, skus: list[str], location_ids: list[str]
) -> list[SkuAvailability]:
    """The endless aisle: what can be promised of each SKU anywhere, and where. A location the
    merchant closed (inactive) promises nothing (no hold, no sourcing, not nearby): its levels
    are neither counted nor listed, named in `location_ids` or not (its stock still reads
    with the stock levels). Before, its units were in the totals, offered where no open store
    could sell them."""
    validate_sku_list(skus)
    raise_if(
        require(
            len(location_ids) <= MAX_LOCATIONS_PER_CALL,
            "location_ids",
            f"must name at most {MAX_LOCATIONS_PER_CALL}",
        )
    )
    # Another merchant's location is refused like a made-up one, not quietly left out.
    await require_items(uow, [], location_ids)
    levels = await uow.stock.levels(list(dict.fromkeys(skus)), location_ids or None)
    places = list(dict.fromkeys(lv.location_id for lv in levels))
    closed = (
        {loc.id for loc in await uow.locations.many(places) if loc.inactive} if places else set()
    )
    levels = [lv for lv in levels if lv.location_id not in closed]
    by_sku: dict[str, list[StockLevel]] = {}
    for level in levels:
        by_sku.setdefault(level.sku, []).append(level)
    return [
        SkuAvailability(
            sku,
            sum(lv.on_hand for lv in by_sku.get(sku, [])),
            sum(lv.reserved for lv in by_sku.get(sku, [])),
            # Summed per location: a shortfall at one store does not cancel stock at another.
            sum(lv.available for lv in by_sku.get(sku, [])),
            by_sku.get(sku, []),
        )
        for sku in dict.fromkeys(skus)
    ]


def _geo_violations(point: GeoPoint | None, name: str) -> list[FieldViolation]:
    if point is None:
        return [FieldViolation(name, "is required")]
    return geo_violations(point, name)


async def _candidates(
    uow: InventoryUnitOfWork, lines: list[Line], places: list[Location], origin: GeoPoint | None
) -> tuple[list[Candidate], dict[str, list[StockLevel]]]:
    """Each place with what it can promise of the lines; also its levels, by location id."""
    skus = [sku for sku, _ in lines]
    levels = await uow.stock.levels(skus, [loc.id for loc in places]) if places else []
    at: dict[str, list[StockLevel]] = {}
    for level in levels:
        at.setdefault(level.location_id, []).append(level)
    candidates = [
        Candidate(
            loc,
            {lv.sku: lv.available for lv in at.get(loc.id, [])},
            distance_km(origin, loc.geo) if origin is not None and loc.geo is not None else None,
        )
        for loc in places
    ]
    return candidates, at


@dataclass(frozen=True)
class Nearby:
    location: Location
    distance_km: float
    levels: list[StockLevel]


async def nearby_stock(
    uow: InventoryUnitOfWork,
    lines: list[Line],
    near: GeoPoint | None,
    radius_km: float,
    pickup_only: bool,
    limit: int,
) -> list[Nearby]:
    """Locations with a known position that have every line available, nearest first. It
    says where a customer can buy the lines: an archived product is not for sale, so its SKU
    is a 409 `product_archived`, with stock or without, as a sourcing's dry run is (before,
    the locations holding its units were listed)."""
    violations = line_violations(lines)
    violations += _geo_violations(near, "near")
    # NaN is not "zero or more" either: `>=` is false for it.
    violations += require(
        math.isfinite(radius_km) and radius_km >= 0,
        "radius_km",
        "must be a finite number, zero (no limit) or more",
    )
    raise_if(violations)
    assert near is not None
    # A SKU no product sells under is not found, as in a sourcing or a hold: an empty list
    # said no store had it, as if it had merely sold out.
    await require_items(
        uow,
        [sku for sku, _ in lines],
        [],
        sku_fields=[f"lines[{i}].sku" for i in range(len(lines))],
    )
    await refuse_archived(uow, [sku for sku, _ in lines])
    places = [
        loc
        for loc in await uow.locations.all()
        if loc.geo is not None and not loc.inactive and (loc.pickup_enabled or not pickup_only)
    ]
    candidates, levels = await _candidates(uow, lines, places, near)
    found = []
    for candidate in by_distance(candidates):
        assert candidate.distance_km is not None  # every place has a position
        if radius_km and candidate.distance_km > radius_km:
            break
        if candidate.covers(lines):
            found.append(
                Nearby(candidate.location, candidate.distance_km, levels[candidate.location.id])
            )
            if len(found) >= min(limit, MAX_NEARBY):
                break
    return found


@dataclass(frozen=True)
class Sourced:
    proposal: Proposal
    reservation_ids: dict[str, str]  # location id -> the hold placed there


async def propose_sourcing(
    uow: InventoryUnitOfWork,
    lines: list[Line],
    destination: GeoPoint | None,
    pickup_location_id: str,
    dry_run: bool,
    ttl_seconds: int,
    reference: str,
    currency: str = "",
) -> Sourced:
    """Where the lines should leave from, held there unless `dry_run`. With a `currency`, only
    a store selling in it (an order's stores all sell in the order's currency)."""
    violations = line_violations(lines)
    if destination is not None and pickup_location_id:
        violations.append(
            FieldViolation(
                "pickup_location_id", "give a destination or a pickup location, not both"
            )
        )
    elif destination is None and not pickup_location_id:
        violations.append(
            FieldViolation("destination", "a destination or a pickup_location_id is required")
        )
    elif destination is not None:
        violations += _geo_violations(destination, "destination")
    violations += require(
        0 <= ttl_seconds <= MAX_TTL_SECONDS, "ttl_seconds", f"must be 1 to {MAX_TTL_SECONDS}"
    )
    violations += require(
        len(reference) <= MAX_REFERENCE, "reference", f"must be at most {MAX_REFERENCE} characters"
    )
    raise_if(violations)
    await require_items(
        uow,
        [sku for sku, _ in lines],
        [],
        sku_fields=[f"lines[{i}].sku" for i in range(len(lines))],
    )
    # Before any proposal, so a dry run answers what the real call would, whatever the stock.
    await refuse_archived(
        uow, [sku for sku, _ in lines], [f"lines[{i}].sku" for i in range(len(lines))]
    )
    lines = sorted(lines)
    if pickup_location_id:
        at = await uow.locations.get(pickup_location_id)
        if at is None:
            raise NotFound("location", pickup_location_id, ["pickup_location_id"])
        at.refuse_if_inactive("pickup_location_id")
        raise_if(
            require(
                not currency or at.currency == currency,
                "pickup_location_id",
                f"location {at.id} sells in {at.currency}, not {currency}",
            )
        )
        (candidate,), _ = await _candidates(uow, lines, [at], None)
        proposal = propose_pickup(lines, candidate)
    else:
        places = [
            loc
            for loc in await uow.locations.all()
            if loc.ship_enabled and not loc.inactive and (not currency or loc.currency == currency)
        ]
        candidates, _ = await _candidates(uow, lines, places, destination)
        proposal = propose_shipping(lines, candidates)
    held: dict[str, str] = {}
    ttl = ttl_seconds or DEFAULT_TTL_SECONDS
    if not dry_run:
        for allocation in proposal.allocations:
            hold = Hold(allocation.location_id, allocation.lines, ttl, reference)
            reservation, _ = await create_reservation(uow, hold)
            held[allocation.location_id] = reservation.id
    return Sourced(proposal, held)
