"""Where to fulfil an order from: nearby stock and the sourcing proposal. Plain Python.

The rules, in the order they are tried:
1. Pickup: the customer collects at the chosen location, so it must have every line.
2. Single: the nearest shipping location that has every line; one parcel is cheaper and
   kinder than several.
3. Split: no location has everything, so the nearest locations each send what they have,
   nearest first, until every line is covered.
4. Unfulfillable: not even all shipping locations together have enough; `short` says what is
   missing, and nothing is held.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from enum import Enum

from pos_inventory.domain.model import GeoPoint, Location
from pos_inventory.domain.reservations import Line

EARTH_RADIUS_KM = 6371.0088


def distance_km(a: GeoPoint, b: GeoPoint) -> float:
    """Great-circle distance (haversine): good to a fraction of a percent for choosing stores."""
    lat1, lon1, lat2, lon2 = map(math.radians, (a.latitude, a.longitude, b.latitude, b.longitude))
    h = (
        math.sin((lat2 - lat1) / 2) ** 2
        + math.cos(lat1) * math.cos(lat2) * math.sin((lon2 - lon1) / 2) ** 2
    )
    return 2 * EARTH_RADIUS_KM * math.asin(min(1.0, math.sqrt(h)))


@dataclass(frozen=True)
class Candidate:
    """A location with the units it can promise now, by SKU."""

    location: Location
    available: dict[str, int]
    distance_km: float | None = None

    def covers(self, lines: list[Line]) -> bool:
        return all(self.available.get(sku, 0) >= quantity for sku, quantity in lines)


def by_distance(candidates: list[Candidate]) -> list[Candidate]:
    """Nearest first; locations without a known position last, then by id for a stable order."""
    return sorted(
        candidates,
        key=lambda c: (c.distance_km is None, c.distance_km or 0.0, c.location.id),
    )


class Strategy(Enum):
    PICKUP = "pickup"
    SINGLE = "single"
    SPLIT = "split"
    UNFULFILLABLE = "unfulfillable"


@dataclass(frozen=True)
class Allocation:
    location_id: str
    distance_km: float | None
    lines: list[Line]


@dataclass(frozen=True)
class Proposal:
    strategy: Strategy
    reason_code: str
    reason: str
    allocations: list[Allocation] = field(default_factory=list)
    short: list[Line] = field(default_factory=list)


def propose_pickup(lines: list[Line], at: Candidate) -> Proposal:
    if not at.location.pickup_enabled:
        return Proposal(
            Strategy.UNFULFILLABLE,
            "pickup_not_offered",
            f"{at.location.name} does not offer pickup",
        )
    short = _short_at(lines, at)
    if short:
        return Proposal(
            Strategy.UNFULFILLABLE,
            "pickup_location_short",
            f"{at.location.name} does not have every line for pickup",
            short=short,
        )
    return Proposal(
        Strategy.PICKUP,
        "pickup_location_has_all",
        f"{at.location.name} has every line for pickup",
        [Allocation(at.location.id, at.distance_km, list(lines))],
    )


def propose_shipping(lines: list[Line], candidates: list[Candidate]) -> Proposal:
    ordered = by_distance([c for c in candidates if c.location.ship_enabled])
    for rank, candidate in enumerate(ordered):
        if candidate.covers(lines):
            if candidate.distance_km is None:
                # Ranked after every location with a position: "nearest" would be a guess.
                why = "ships and has every line; its distance is unknown (it has no position)"
            elif rank == 0:
                why = "is the nearest that ships and has every line"
            else:
                why = f"is the nearest of {rank + 1} that ships and has every line"
            return Proposal(
                Strategy.SINGLE,
                "nearest_with_all_lines",
                f"{candidate.location.name} {why}",
                [Allocation(candidate.location.id, candidate.distance_km, list(lines))],
            )
    remaining = dict(lines)
    allocations: list[Allocation] = []
    for candidate in ordered:
        taken: list[Line] = []
        for sku, wanted in sorted(remaining.items()):
            quantity = min(wanted, max(0, candidate.available.get(sku, 0)))
            if quantity > 0:
                taken.append((sku, quantity))
                remaining[sku] = wanted - quantity
        remaining = {sku: left for sku, left in remaining.items() if left > 0}
        if taken:
            allocations.append(Allocation(candidate.location.id, candidate.distance_km, taken))
        if not remaining:
            return Proposal(
                Strategy.SPLIT,
                "split_nearest_first",
                f"no single location has every line; {len(allocations)} nearest locations "
                "ship parts",
                allocations,
            )
    return Proposal(
        Strategy.UNFULFILLABLE,
        "not_enough_stock",
        "all shipping locations together do not have every line",
        short=sorted(remaining.items()),
    )


def _short_at(lines: list[Line], at: Candidate) -> list[Line]:
    return [
        (sku, quantity - max(0, at.available.get(sku, 0)))
        for sku, quantity in lines
        if at.available.get(sku, 0) < quantity
    ]
