"""Use cases of counts, transfers, the ledger history and low-stock thresholds."""

from __future__ import annotations

from datetime import datetime

from pos_inventory.domain.ledger import (
    MAX_UNITS,
    EntryKind,
    LedgerEntry,
    NewEntry,
    change_time,
    sequence_change,
    sequence_count,
    validate_count,
    validate_note,
    validate_occurred_at,
)
from pos_inventory.domain.model import (
    SKU,
    LowStock,
    Reason,
    StockLevel,
    Threshold,
    reported_late,
)
from pos_inventory.domain.reservations import Line, OutOfStock, Short, line_violations
from pos_inventory.service.handlers import announce, now, require_items
from pos_inventory.service.ports import HistoryFilters, InventoryUnitOfWork
from pos_inventory.service.reservations import due_holds_in_the_way
from pos_kit.errors import Conflict, FieldViolation, raise_if, require
from pos_kit.ids import new_id
from pos_kit.paging import PageRequest


async def count_stock(
    uow: InventoryUnitOfWork,
    count_key: str,
    sku: str,
    location_id: str,
    counted: int,
    expected_on_hand: int | None,
    occurred_at: datetime | None,
    note: str = "",
) -> tuple[StockLevel, LedgerEntry]:
    """A physical count. `count_key` (the request id) orders counts taken at the same instant."""
    at_now = now()
    validate_count(sku, location_id, counted, occurred_at or at_now, at_now)
    when = change_time(occurred_at, at_now)
    raise_if(validate_note(note))
    await require_items(
        uow,
        [sku],
        [location_id],
        to_stock=True,
        sku_fields=["sku"],
        location_fields=["location_id"],
    )
    state = await uow.stock.lock(sku, location_id)
    if expected_on_hand is not None and expected_on_hand != state.on_hand:
        # The counter saw a figure that has changed since: their count may be stale, so they
        # are told the current figure and decide, rather than silently overwriting a sale.
        refused = Conflict(
            f"on_hand is {state.on_hand}, not the expected {expected_on_hand}",
            "count_conflict",
            {"on_hand": str(state.on_hand), "expected_on_hand": str(expected_on_hand)},
        )
        refused.violations = [
            FieldViolation("expected_on_hand", f"must be {state.on_hand}, what is on hand now")
        ]
        raise refused
    later = (
        0
        if state.counted_after(when, count_key)
        else await uow.stock.changed_after(sku, location_id, when)
    )
    applied = sequence_count(state, counted, when, count_key, later)
    level, entry, threshold = await uow.stock.record(
        sku,
        location_id,
        NewEntry(EntryKind.COUNT, None, counted, applied, when, note=note),
        count_key=count_key,
    )
    announce(uow, level, entry, threshold)
    return level, entry


async def transfer_stock(
    uow: InventoryUnitOfWork,
    from_location_id: str,
    to_location_id: str,
    lines: list[Line],
    occurred_at: datetime | None,
    note: str = "",
) -> tuple[str, list[StockLevel], list[LedgerEntry]]:
    """Move units out of one location and into another, every line or none.

    A move meant as now (no `occurred_at`, or one a little ahead of now: `reported_late`)
    takes only units available at the source: held units are promised to someone. One
    stamped with when it happened reports a move made, as a stamped adjustment does
    (`Adjustment.may_go_negative`): recorded whatever the source has left now (its leg out
    sequenced by `occurred_at`: nothing, if a later count already saw the units gone), so the
    same changes end in the same levels in any order of arrival.
    """
    at_now = now()
    when = change_time(occurred_at, at_now)
    violations: list[FieldViolation] = []
    violations += require(bool(from_location_id), "from_location_id", "is required")
    violations += require(bool(to_location_id), "to_location_id", "is required")
    violations += require(
        from_location_id != to_location_id, "to_location_id", "must differ from from_location_id"
    )
    violations += line_violations(lines)
    violations += validate_occurred_at(occurred_at or at_now, at_now)
    violations += validate_note(note)
    raise_if(violations)
    await require_items(
        uow,
        [sku for sku, _ in lines],
        [from_location_id, to_location_id],
        to_stock=True,
        sku_fields=[f"lines[{i}].sku" for i in range(len(lines))],
        location_fields=["from_location_id", "to_location_id"],
    )
    # A closed store's stock can move out (to be sold elsewhere), never in.
    destination = await uow.locations.get(to_location_id)
    assert destination is not None  # found just above
    destination.refuse_if_inactive("to_location_id")
    transfer_id = new_id("trf")
    wanted = dict(lines)
    # Lock every row first, in (sku, location) order like every other writer, then check.
    keys = sorted((sku, loc) for sku in wanted for loc in (from_location_id, to_location_id))
    states = {key: await uow.stock.lock(*key) for key in keys}
    short = [
        Short(sku, quantity, state.on_hand - state.reserved)
        for sku, quantity in sorted(wanted.items())
        if (state := states[(sku, from_location_id)]).on_hand - state.reserved < quantity
        and not reported_late(occurred_at, at_now)
    ]
    if short:
        short = [Short(s.sku, s.wanted, max(0, s.available)) for s in short]
        due = await due_holds_in_the_way(uow, from_location_id, [s.sku for s in short])
        refused = OutOfStock(short, "move", due)
        # Each short line's quantity, as the request sent it, as a hold's refusal names it.
        at = {sku: i for i, (sku, _) in enumerate(lines)}
        refused.violations = [
            FieldViolation(
                f"lines[{at[s.sku]}].quantity", f"must be at most {s.available}, what is available"
            )
            for s in sorted(short, key=lambda s: at[s.sku])
        ]
        raise refused
    levels: list[StockLevel] = []
    entries: list[LedgerEntry] = []
    for sku, location_id in keys:
        outgoing = location_id == from_location_id
        quantity = -wanted[sku] if outgoing else wanted[sku]
        state = states[(sku, location_id)]
        applied = sequence_change(state, quantity, when)
        kind = EntryKind.TRANSFER_OUT if outgoing else EntryKind.TRANSFER_IN
        level, entry, threshold = await uow.stock.record(
            sku, location_id, NewEntry(kind, None, quantity, applied, when, transfer_id, note)
        )
        announce(uow, level, entry, threshold)
        levels.append(level)
        entries.append(entry)
    return transfer_id, levels, entries


async def stock_history(
    uow: InventoryUnitOfWork, f: HistoryFilters, page: PageRequest
) -> list[LedgerEntry]:
    kinds = sorted(k.value for k in EntryKind)
    reasons = sorted(r.value for r in Reason)
    raise_if(
        require(not f.kind or f.kind in kinds, "kind", f"one of {', '.join(kinds)}")
        + require(not f.reason or f.reason in reasons, "reason", f"one of {', '.join(reasons)}")
        + require(
            f.recorded_since is None
            or f.recorded_before is None
            or f.recorded_before > f.recorded_since,
            "recorded_before",
            "must be after recorded_since",
        )
    )
    if f.location_id:
        # Filtering by a location the merchant does not have is a 404, as everywhere else.
        await require_items(uow, [], [f.location_id], location_fields=["location_id"])
    return await uow.stock.history(f, page)


# As many SKUs as a stock read takes at once.
THRESHOLD_SKUS_MAX = 200


async def low_stock_thresholds(
    uow: InventoryUnitOfWork, skus: list[str], page: PageRequest
) -> list[Threshold]:
    """The thresholds set, by SKU; of `skus` only when given (a SKU with none is left out, as
    one removed is). Each must be a valid SKU (a 400 naming `skus[i]`), at most 200."""
    bad = [i for i, sku in enumerate(skus) if not SKU.match(sku)]
    raise_if(
        require(len(skus) <= THRESHOLD_SKUS_MAX, "skus", "must hold at most 200 SKUs")
        + [FieldViolation(f"skus[{i}]", "must be a valid SKU") for i in bad]
    )
    return await uow.stock.thresholds(sorted(set(skus)), page)


async def set_low_stock_threshold(
    uow: InventoryUnitOfWork, sku: str, threshold: int | None
) -> None:
    violations = require(bool(SKU.match(sku)), "sku", "must be a valid SKU")
    if threshold is not None:
        violations += require(
            0 <= threshold <= MAX_UNITS, "threshold", "must be from 0 to 1,000,000,000"
        )
    raise_if(violations)
    await require_items(uow, [sku], [], to_stock=True, sku_fields=["sku"])
    before = await uow.stock.set_threshold(sku, threshold)
    if threshold is None:
        return
    # A threshold moved over a level is a crossing as much as a level falling below it: the
    # merchant who sets 5 where 2 are left is told now, not after a restock and a fall that
    # may never come. A level the old threshold already covered was told then.
    # Its rows are locked (in location order, as every writer locks) before they are read:
    # a change of the level waits, then reads this threshold (and alerts by it), or went
    # first and is read here, so a crossing is announced once, never twice or not at all.
    found = await uow.stock.levels([sku], None)
    for location_id in sorted(level.location_id for level in found):
        await uow.stock.lock(sku, location_id)
    for level in await uow.stock.levels([sku], None):
        if level.available <= threshold and (before is None or level.available > before):
            uow.publish(LowStock(level, threshold))
