"""Use cases of reservations: hold, commit, release, and the expiry sweep."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime

from pos_inventory.domain.ledger import EntryKind, NewEntry, sequence_change
from pos_inventory.domain.model import (
    Reason,
    ReservationCommitted,
    ReservationCreated,
    ReservationExpired,
    ReservationReleased,
    StockLevel,
)
from pos_inventory.domain.reservations import (
    Hold,
    HoldDue,
    OutOfStock,
    Reservation,
    ReservationStatus,
    Short,
    check_can_commit,
    check_can_release,
)
from pos_inventory.service.handlers import announce, now, require_items
from pos_inventory.service.ports import InventoryUnitOfWork
from pos_kit.errors import Conflict, FieldViolation, NotFound
from pos_kit.ids import new_id
from pos_kit.paging import PageRequest

# A short hold ends at most this many due holds of its SKUs before it is tried again; the
# sweep (a batch at a time, every few seconds) ends any others.
MAX_DUE_IN_THE_WAY = 100


async def create_reservation(
    uow: InventoryUnitOfWork, hold: Hold
) -> tuple[Reservation, list[StockLevel]]:
    """Hold every line or none. The hot path is a read of the lines' products, one insert and
    one conditional update a line; the reasons for a short line are looked up only when there
    is one. A hold is a sale in waiting: an archived product's units are not held (409
    `product_archived`, as a checkout's), though they can still be counted and moved; nor
    are an inactive location's (409 `location_inactive`)."""
    asked = list(hold.asked)
    await refuse_archived(
        uow, asked or [sku for sku, _ in hold.lines], [f"lines[{i}].sku" for i in range(len(asked))]
    )
    at = await uow.locations.get(hold.location_id)
    if at is not None:  # an unknown one is refused below, as a short line's reason
        at.refuse_if_inactive("location_id")
    reservation = Reservation(new_id("res"), hold.location_id, hold.lines, hold.reference)
    await uow.reservations.add(reservation, hold.ttl_seconds)
    held, short_sku = await uow.stock.hold(hold.location_id, hold.lines)
    if short_sku is not None:
        await _refuse(uow, hold, short_sku)
    wanted = dict(hold.lines)
    levels = [level for level, _ in held]
    uow.publish(ReservationCreated(reservation, levels))
    for level, threshold in held:
        announce(uow, level, None, threshold, reserved_change=wanted[level.sku])
    return reservation, levels


async def refuse_archived(
    uow: InventoryUnitOfWork, skus: list[str], fields: Sequence[str] = ()
) -> None:
    """409 `product_archived` naming the SKUs of archived products among `skus`: their units
    are not promised (held or sourced), though they can still be counted and moved. `fields`,
    beside `skus`: the request field that named each (`lines[1].sku`), named in the refusal
    as an unknown SKU's is."""
    archived = sorted(
        {sku for p in await uow.products.by_skus(skus) if p.archived for sku in p.skus()}
        & set(skus)
    )
    if archived:
        refused = Conflict(
            f"archived products cannot be sold: {', '.join(archived)}",
            "product_archived",
            {"skus": ",".join(archived)},
        )
        refused.violations = [
            FieldViolation(field, "is an archived product's: it is not sold")
            for field, sku in zip(fields, skus, strict=False)
            if sku in archived
        ]
        raise refused


async def _refuse(uow: InventoryUnitOfWork, hold: Hold, short_sku: str) -> None:
    """Why a hold failed: an unknown location or SKU (404, naming the request's field), else
    the lines that are short."""
    skus = list(hold.asked) or [sku for sku, _ in hold.lines]
    await require_items(
        uow,
        skus,
        [hold.location_id],
        sku_fields=[f"lines[{i}].sku" for i in range(len(hold.asked))],
        location_fields=["location_id"],
    )
    # Lines before the short one are held by this (doomed) transaction; the short one and the
    # rest are untouched, so their levels are the truth.
    rest = [(sku, q) for sku, q in hold.lines if sku >= short_sku]
    levels = {lv.sku: lv for lv in await uow.stock.levels([s for s, _ in rest], [hold.location_id])}
    short = [
        Short(sku, quantity, levels[sku].available if sku in levels else 0)
        for sku, quantity in rest
        if sku == short_sku or (levels[sku].available if sku in levels else 0) < quantity
    ]
    # The due holds in the way of every line not yet held, not only of those short as read:
    # a read leaves due holds out, so a line short only by one reads as covered, and was left
    # for a refusal (and a retry) of its own.
    due = await due_holds_in_the_way(uow, hold.location_id, [sku for sku, _ in rest])
    refused = OutOfStock(short, due_holds=due)
    # Each short line's quantity, as the request sent it (`asked` keeps its order).
    refused.violations = [
        FieldViolation(
            f"lines[{hold.asked.index(s.sku)}].quantity",
            f"must be at most {max(s.available, 0)}, what is available",
        )
        for s in short
        if s.sku in hold.asked
    ]
    raise refused


async def get_reservation(uow: InventoryUnitOfWork, reservation_id: str) -> Reservation:
    reservation = await uow.reservations.get(reservation_id)
    if reservation is None:
        raise NotFound("reservation", reservation_id)
    return reservation


async def list_reservations(
    uow: InventoryUnitOfWork,
    page: PageRequest,
    status: ReservationStatus | None = None,
    location_id: str = "",
    sku: str = "",
) -> list[Reservation]:
    """The merchant's reservations by id, each as `get_reservation` reads it (a hold past its
    time is expired, swept or not), narrowed by the status read, the location and a SKU one
    of its lines holds. A location the merchant does not have is a 404 naming `location_id`,
    as every list's filter."""
    if location_id:
        await require_items(uow, [], [location_id], location_fields=["location_id"])
    return await uow.reservations.list(page, status, location_id, sku)


async def commit_reservation(
    uow: InventoryUnitOfWork, reservation_id: str
) -> tuple[Reservation, list[StockLevel]]:
    """The held units are sold: on_hand and reserved go down together, with a ledger entry."""
    reservation = await _locked(uow, reservation_id)
    if not check_can_commit(reservation):
        return reservation, await _levels(uow, reservation)
    finished = await uow.reservations.finish(
        reservation_id, ReservationStatus.COMMITTED, unless_due=True
    )
    if finished is None:  # its time is up: it ends as expired (`expire_reservation`)
        raise HoldDue(reservation_id, "committed")
    occurred_at = now()
    # Every line in two statements, as a sale's (`handlers.record_sale`): the rows locked in
    # SKU order (a hold's lines are unique and sorted), then changed with their ledger entries.
    # Three round trips a line kept the first line's row locked through all of them, and every
    # other hold and sale of that SKU at the store waited behind it.
    states = await uow.stock.lock_all(finished.location_id, [sku for sku, _ in finished.lines])
    entries = [
        (
            sku,
            NewEntry(
                EntryKind.SALE,
                Reason.SOLD,
                -quantity,
                sequence_change(states[sku], -quantity, occurred_at),
                occurred_at,
                finished.id,
            ),
        )
        for sku, quantity in finished.lines
    ]
    recorded = await uow.stock.record_all(
        finished.location_id, entries, [-quantity for _, quantity in finished.lines]
    )
    levels: list[StockLevel] = []
    for (_, quantity), (level, entry, threshold) in zip(finished.lines, recorded, strict=True):
        announce(uow, level, entry, threshold, reserved_change=-quantity)
        levels.append(level)
    uow.publish(ReservationCommitted(finished, levels))
    return finished, levels


async def release_reservation(
    uow: InventoryUnitOfWork, reservation_id: str
) -> tuple[Reservation, list[StockLevel]]:
    """The held units are given back. Released or expired already (swept or not: the
    database clock judges `expires_at`), nothing is left to let go: the hold is answered as it
    ended, as a second release is, and its units are given back once, by whichever came first.
    A hold due but not yet swept ends here as expired, as the sweep would end it."""
    reservation = await _locked(uow, reservation_id)
    if not check_can_release(reservation):
        return reservation, await _levels(uow, reservation)
    finished = await uow.reservations.finish(
        reservation_id, ReservationStatus.RELEASED, unless_due=True
    )
    if finished is None:  # its time is up: it expires now, in this transaction
        ended = await _expire_locked(uow, reservation_id)
        if ended is None:
            raise AssertionError(f"reservation {reservation_id} neither active nor due")
        return ended
    levels = await uow.stock.unhold(finished.location_id, finished.lines)
    uow.publish(ReservationReleased(finished, levels))
    return finished, levels


async def expire_reservation(uow: InventoryUnitOfWork, reservation_id: str) -> bool:
    """End one of the merchant's holds as expired if it is active and due, as the sweep would:
    its units back once and `ReservationExpired` published. For a commit that found it due
    (`HoldDue`), in a transaction of its own, since the commit's is rolled back. False when
    it was no longer active (the sweep got there first) or is not due."""
    reservation = await _locked(uow, reservation_id)
    if reservation.status is not ReservationStatus.ACTIVE:
        return False
    return await _expire_locked(uow, reservation_id) is not None


async def due_holds_in_the_way(
    uow: InventoryUnitOfWork, location_id: str, skus: list[str]
) -> list[str]:
    """The holds at `location_id` past their time that still hold some of `skus`: a hold or a
    move short there may be short only because the sweep has not reached them. Read by the
    refused write itself (one indexed query, only when refused), so a refusal with none costs
    no other transaction."""
    return await uow.reservations.due_holding(location_id, skus, MAX_DUE_IN_THE_WAY)


async def _expire_locked(
    uow: InventoryUnitOfWork, reservation_id: str
) -> tuple[Reservation, list[StockLevel]] | None:
    """The sweep's work for one active hold, locked by the caller, if it is due: None if not."""
    expired = await uow.reservations.expire_if_due(reservation_id)
    if expired is None:
        return None
    levels = await uow.stock.unhold(expired.location_id, expired.lines)
    uow.publish(ReservationExpired(expired, levels))
    return expired, levels


async def expire_due(uow: InventoryUnitOfWork, limit: int, as_of: datetime | None = None) -> int:
    """Expire up to `limit` due holds of every merchant and give their units back, one hold
    after the other in the order their time ran out: each `ReservationExpired` carries its
    lines' levels as they stood once its units were back, as a release's or a single expiry's
    does. Before, a level several holds of the batch held was given back in one statement, and
    every one of their events carried the final level (one stamp, several figures announced as
    one version)."""
    expired = await uow.expiry.expire_due(limit, as_of)
    expired.sort(key=lambda x: (x[1].expires_at or datetime.min.replace(tzinfo=UTC), x[1].id))
    after = await uow.expiry.unhold([(merchant, r.location_id, r.lines) for merchant, r in expired])
    for (merchant, reservation), levels in zip(expired, after, strict=True):
        uow.publish_for(merchant, ReservationExpired(reservation, levels))
    return len(expired)


async def _locked(uow: InventoryUnitOfWork, reservation_id: str) -> Reservation:
    """The reservation, locked until commit: a commit, a release and the sweep take turns."""
    reservation = await uow.reservations.get(reservation_id, lock=True)
    if reservation is None:
        raise NotFound("reservation", reservation_id)
    return reservation


async def _levels(uow: InventoryUnitOfWork, reservation: Reservation) -> list[StockLevel]:
    skus = [sku for sku, _ in reservation.lines]
    return await uow.stock.levels(skus, [reservation.location_id])
