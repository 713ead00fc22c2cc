"""Use cases of locations and of single stock changes (adjustments, recorded sales)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace
from datetime import UTC, datetime

from pos_inventory.domain.ledger import (
    EntryKind,
    LedgerEntry,
    NewEntry,
    change_time,
    crossed_low,
    sequence_change,
    validate_occurred_at,
)
from pos_inventory.domain.model import (
    Adjustment,
    Location,
    LocationCreated,
    LocationStatus,
    LocationUpdated,
    LowStock,
    Reason,
    StockChanged,
    StockLevel,
    validate_adjustment,
    validate_location,
    validate_sku_list,
)
from pos_inventory.service.ports import InventoryUnitOfWork
from pos_kit.errors import Conflict, FieldViolation, InvalidArgument, NotFound, raise_if, require
from pos_kit.ids import new_id
from pos_kit.paging import PageRequest, encode_token


def now() -> datetime:
    return datetime.now(UTC)


# A merchant's locations are bounded, so every answer with one entry per location (stock
# levels, availability, a split sourcing) is bounded too: the gateway's document says so.
MAX_LOCATIONS = 1000


async def create_location(uow: InventoryUnitOfWork, draft: Location) -> Location:
    validate_location(draft)
    if await uow.locations.count_for_add() >= MAX_LOCATIONS:
        raise Conflict(
            f"a merchant has at most {MAX_LOCATIONS} locations", "location_limit_reached"
        )
    draft.id = new_id("loc")
    draft.name = draft.name.strip()
    await uow.locations.add(draft)
    uow.publish(LocationCreated(draft))
    return draft


# What a location's change may set; its currency and kind never change (its products'
# prices, its orders, its settlement reports and its stock are in that currency, of that kind).
LOCATION_FIELDS = (
    "name",
    "address",
    "geo",
    "time_zone",
    "tax_rate_bps",
    "tax_rates_bps",
    "taxes",
    "prices_include_tax",
    "pickup_enabled",
    "ship_enabled",
    "status",
)


async def update_location(
    uow: InventoryUnitOfWork, location_id: str, changes: dict[str, object], expected_version: int
) -> Location:
    """Change a location's fields named in `changes` (each replaced whole: an address, a set
    of rates, a list of taxes). Pickup and shipping flags decide what online orders may do
    there (the order service refuses a pickup or a named shipping store that does not offer
    it); the tax fields price every sale from the change on (an order priced before keeps its
    tax). A new version each time something changes; fields sent as they already are change
    nothing (no version), as a product's."""
    raise_if(
        require(bool(location_id), "id", "is required")
        + require(
            bool(changes) and set(changes) <= set(LOCATION_FIELDS),
            "update_mask",
            f"names one or more of {', '.join(LOCATION_FIELDS)}",
        )
    )
    location = await uow.locations.get(location_id, lock=True)
    if location is None:
        raise NotFound("location", location_id)
    if expected_version and expected_version != location.version:
        raise Conflict(
            "the location changed since the version you sent",
            "version_mismatch",
            {"current_version": str(location.version)},
        )
    changed = replace(location, **changes)  # type: ignore[arg-type]
    validate_location(changed, address_sent="address" in changes)
    changed.name = changed.name.strip()
    if changed == location:
        return location
    changed.version += 1
    await uow.locations.save(changed)
    uow.publish(LocationUpdated(changed))
    return changed


async def list_locations(
    uow: InventoryUnitOfWork, page: PageRequest, status: LocationStatus | None = None
) -> list[Location]:
    """By id (of one status, if given), or the change feed (oldest change first). A feed of
    one status would never tell a poller a location left it (closed, or reopened), so the two
    do not combine, as for products (`catalog.list_products`)."""
    if status is not None and page.since is not None:
        raise_if([FieldViolation("status", "cannot be combined with updated_since")])
    return await uow.locations.list(page, status)


async def require_items(
    uow: InventoryUnitOfWork,
    skus: list[str],
    location_ids: list[str],
    to_stock: bool = False,
    sku_fields: Sequence[str] = (),
    location_fields: Sequence[str] = (),
) -> None:
    """NotFound for an unknown location or SKU, exactly as for another merchant's.

    `sku_fields` and `location_fields`, beside `skus` and `location_ids`: the request fields
    that named each (`lines[1].sku`, `to_location_id`), so the refusal tells the caller which
    reference to fix (`errors[]` at the gateway), a list filter's too (`location_id`, as the
    gateway names its own filters' on `GET /v1/shifts`); none for references in a path.

    A SKU is known when the catalog sells under it: a product's own or one of its variants'
    (stock is kept per SKU, and a variant is sold like any product). An archived product's SKUs
    stay known, so its remaining stock can still be counted, moved and written off.

    `to_stock`: the caller goes on to write the SKUs' levels, so the SKUs are held in the
    catalog until it commits. Checked and written in two statements, a rename between them
    saw no stock yet and left the units under a SKU no product has (a later product given it
    inherited them); held, the rename waits for the write and is refused `sku_has_stock`, or
    went first and the SKU is not found."""
    wanted = list(dict.fromkeys(location_ids))
    found = {loc.id for loc in await uow.locations.many(wanted)} if wanted else set()
    for location_id in wanted:
        if location_id not in found:
            named = [f for f, loc in zip(location_fields, location_ids, strict=False)
                     if loc == location_id]  # fmt: skip
            raise NotFound("location", location_id, named)
    if not skus:
        return
    known = await uow.products.known_skus(list(dict.fromkeys(skus)), hold=to_stock)
    missing = sorted(set(skus) - known)
    if missing:
        named = [f for f, sku in zip(sku_fields, skus, strict=False) if sku not in known]
        error = NotFound("product", ", ".join(missing), named)
        error.metadata["skus"] = ",".join(missing)
        raise error


def announce(
    uow: InventoryUnitOfWork,
    level: StockLevel,
    entry: LedgerEntry | None,
    threshold: int | None,
    reserved_change: int = 0,
) -> None:
    """The events of one changed level: the change itself and, when it crossed, low stock.

    `level` is the level after the change as a reader sees it (without the units of holds
    past their time not yet swept); what was available before is that level without the
    change (`entry`'s delta of on_hand, `reserved_change` of reserved), so a crossing is
    judged by the figures the reads showed on both sides. Before, it was judged from the
    row as locked, due holds counted: a fall from what the reads promised to the threshold
    was no crossing if the due holds had already taken the row below it."""
    if entry is not None:
        uow.publish(StockChanged(level, entry))
    on_hand_change = entry.delta if entry is not None else 0
    before = max(0, level.on_hand - on_hand_change - (level.reserved - reserved_change))
    if threshold is not None and crossed_low(before, level, threshold):
        uow.publish(LowStock(level, threshold))


async def _covered(
    uow: InventoryUnitOfWork, adjustment: Adjustment, on_hand: int, reserved: int, delta: int
) -> None:
    """A decrease meant as "now" takes only units on the shelf that no hold has promised:
    `on_hand` never falls below zero, nor below what is held (a write-off of held units left
    less on the shelf than was promised, and the hold's commit then took stock below zero).
    Refused, a 409 `insufficient_stock` naming `delta` with what it may take. `reserved` is
    the row's, as locked; a hold past its time that the sweep has not reached promises
    nothing (it can no longer be committed), so where the row's figure would refuse, the
    level is read as every read sees it, without such holds, and judged by that. To write
    off held units, release (or commit) their hold first; a loss found late is reported with
    its `occurred_at`, a fact recorded whatever it leaves."""
    left = on_hand + delta
    if left >= max(0, reserved):
        return
    # Refused by the row's figure (rarely short only of holds past their time): as read.
    (level,) = await uow.stock.levels([adjustment.sku], [adjustment.location_id])
    reserved = level.reserved
    if left >= max(0, reserved):
        return
    sku, free = adjustment.sku, max(0, on_hand - reserved)
    if reserved <= 0:  # short of what is on hand, nothing held: as before
        detail = f"not enough {sku!r} on hand to remove {-delta} (on hand: {on_hand})"
        reason = f"must take at most {free}, what is on hand"
    else:
        detail = (
            f"not enough {sku!r} on hand and not held to remove {-delta} (on hand: "
            f"{on_hand}, held by reservations: {reserved})"
        )
        reason = (
            f"must take at most {free}, what is on hand and not held ({reserved} held by "
            "reservations: release a hold to write its units off)"
        )
    # `skus` and `available` as a hold's refusal names them, so a client reads every
    # `insufficient_stock` one way; `sku` and `on_hand` as before.
    refused = Conflict(
        detail,
        "insufficient_stock",
        {"sku": sku, "on_hand": str(on_hand), "skus": sku, "available": str(free)},
    )
    refused.violations = [FieldViolation("delta", reason)]
    raise refused


def _goods_back(adjustment: Adjustment) -> bool:
    """Units back on the shelf that a sale took away: the order service's restock of a
    return (`returned`) or of an order never collected (`correction`), each naming what
    brought them back in its `reference` (the REST route sets none). A fact, as the sale was:
    recorded under the SKU they were sold under, as `record_sale` records a sale whatever the
    SKU, though no product sells it any more (renamed since, at zero). Refused, the return
    had refunded the customer (or issued the store credit) and stayed pending for ever, its
    units claimed, its resumer asking again and again."""
    return (
        bool(adjustment.reference)
        and adjustment.delta > 0
        and adjustment.reason
        in (
            Reason.RETURNED,
            Reason.CORRECTION,
        )
    )


async def adjust_stock(
    uow: InventoryUnitOfWork, adjustment: Adjustment
) -> tuple[StockLevel, LedgerEntry]:
    at_now = now()
    occurred_at = change_time(adjustment.occurred_at, at_now)
    validate_adjustment(adjustment)
    raise_if(validate_occurred_at(adjustment.occurred_at or at_now, at_now))
    try:
        await require_items(
            uow,
            [adjustment.sku],
            [adjustment.location_id],
            to_stock=True,
            sku_fields=["sku"],
            location_fields=["location_id"],
        )
    except NotFound as missing:
        # The locations are checked first: a missing product here means the location is ours.
        if not (_goods_back(adjustment) and missing.metadata.get("resource") == "product"):
            raise
    if adjustment.reason is Reason.RECEIVED or (
        adjustment.reason is Reason.RETURNED and not _goods_back(adjustment)
    ):
        # A closed store receives no more stock, as a transfer into it is refused: no
        # delivery, no goods brought back (the order service refuses a return that restocks
        # there). What it has can still be counted, corrected either way, written off and
        # moved out. The order service's own restock of a return (`_goods_back`) checked the
        # store before the refund: refused now, the refunded return would stay pending.
        at = await uow.locations.get(adjustment.location_id)
        assert at is not None  # found just above
        at.refuse_if_inactive("location_id")
    state = await uow.stock.lock(adjustment.sku, adjustment.location_id)
    applied = sequence_change(state, adjustment.delta, occurred_at)
    if applied.delta < 0 and not adjustment.may_go_negative(at_now):
        await _covered(uow, adjustment, state.on_hand, state.reserved, applied.delta)
    level, entry, threshold = await uow.stock.record(
        adjustment.sku,
        adjustment.location_id,
        NewEntry(
            EntryKind.ADJUSTMENT,
            adjustment.reason,
            adjustment.delta,
            applied,
            occurred_at,
            adjustment.reference,
            adjustment.note,
        ),
    )
    announce(uow, level, entry, threshold)
    return level, entry


async def record_sale(
    uow: InventoryUnitOfWork, order_id: str, location_id: str, lines: list[tuple[str, int]]
) -> None:
    """Stock follows a confirmed sale; it may go negative (flagged in the level, not hidden).

    The sale already happened at the till, so it is recorded even for a SKU or location this
    service does not know: refusing it would only make the ledger disagree with the shelf.
    """
    if not order_id or not location_id:
        raise InvalidArgument(
            "a confirmed order needs an id and a location",
            [
                *require(bool(order_id), "order.id", "is required"),
                *require(bool(location_id), "order.location_id", "is required"),
            ],
        )
    occurred_at = now()
    totals: dict[str, int] = {}
    for sku, quantity in lines:
        if sku and quantity > 0:  # otherwise nothing left the shelf
            totals[sku] = totals.get(sku, 0) + quantity
    if not totals:
        return
    # Every line in two statements (rows locked in SKU order, then changed with their ledger
    # entries), not three round trips a line: a sale's stock is the busiest write here.
    skus = sorted(totals)
    states = await uow.stock.lock_all(location_id, skus)
    entries = [
        (
            sku,
            NewEntry(
                EntryKind.SALE,
                Reason.SOLD,
                -totals[sku],
                sequence_change(states[sku], -totals[sku], occurred_at),
                occurred_at,
                order_id,
            ),
        )
        for sku in skus
    ]
    recorded = await uow.stock.record_all(location_id, entries)
    for level, entry, threshold in recorded:
        announce(uow, level, entry, threshold)


async def stock_at(
    uow: InventoryUnitOfWork, location_id: str, page: PageRequest
) -> tuple[list[StockLevel], str]:
    """Every level at a location, by SKU, a page at a time (a store's whole stock, as Square
    counts inventory by location), and the token of the next page ("" at the end)."""
    raise_if(require(bool(location_id), "skus", "give SKUs, or a location_id to list its stock"))
    await require_items(uow, [], [location_id], location_fields=["location_id"])
    found = await uow.stock.levels_at(location_id, page.after, page.fetch)
    levels = found[: page.limit]
    if len(found) <= page.limit:
        return levels, ""
    return levels, encode_token(levels[-1].sku, page.scope)


async def stock_levels(
    uow: InventoryUnitOfWork, skus: list[str], location_id: str | None
) -> list[StockLevel]:
    validate_sku_list(skus)
    if location_id:
        # A level of zero is an answer about a location we have; an id we do not is no location.
        await require_items(uow, [], [location_id], location_fields=["location_id"])
    found = await uow.stock.levels(skus, [location_id] if location_id else None)
    if location_id:
        # Nothing ever received is a level of zero, not an absence.
        have = {level.sku for level in found}
        found += [StockLevel(s, location_id, 0, 0) for s in dict.fromkeys(skus) if s not in have]
    return found
