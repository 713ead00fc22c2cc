"""A hold past its time that the sweep has not reached holds nothing by its terms: the levels a
write answers with, and the events it publishes with them, leave its units out of `reserved`
as every read does (`test_reservation_expiry.py -k read`). Before, a write answered the row as
written, its due holds' units still counted, so the answer (and `inventory.changed`) said
fewer units were available than the next read did.

Use cases against PostgreSQL with no service running, so no sweep runs: a hold is made due by
setting its time in the past, never by waiting."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta
from typing import TypeVar

import pytest
from inventory_db import Db, unique
from sqlalchemy import func, text, update

from pos_inventory.adapters.tables import reservations as reservations_table
from pos_inventory.domain.model import (
    Adjustment,
    LowStock,
    Reason,
    ReservationCommitted,
    ReservationCreated,
    ReservationExpired,
    ReservationReleased,
    StockChanged,
    StockLevel,
)
from pos_inventory.domain.reservations import validate_hold
from pos_inventory.service import handlers, reservations, stock
from pos_kit.paging import PageRequest

pytestmark = pytest.mark.asyncio(loop_scope="session")

E = TypeVar("E")
# Before any count a test takes: a change stamped then is superseded by it.
T_PAST = datetime(2026, 1, 1, tzinfo=UTC)


async def _stocked(db: Db, units: int, tag: str) -> tuple[str, str]:
    sku = unique(tag)
    loc = (await db.shop(sku)).id
    async with db.tx() as uow:
        await handlers.adjust_stock(uow, Adjustment(sku, loc, units, Reason.RECEIVED))
    return sku, loc


async def _hold(db: Db, sku: str, loc: str, units: int) -> str:
    async with db.tx() as uow:
        made, _ = await reservations.create_reservation(
            uow, validate_hold(loc, [(sku, units)], 600, "")
        )
    return made.id


async def _due(db: Db, reservation_id: str, seconds_ago: int = 1) -> None:
    """Its time is up (set in the past rather than waited for); nothing sweeps it here."""
    async with db.tx() as uow:
        await uow.conn.execute(
            update(reservations_table)
            .where(reservations_table.c.id == reservation_id)
            .values(expires_at=func.now() - timedelta(seconds=seconds_ago))
        )


async def _due_hold(db: Db, sku: str, loc: str, units: int) -> str:
    reservation_id = await _hold(db, sku, loc, units)
    await _due(db, reservation_id)
    return reservation_id


def _figures(level: StockLevel) -> tuple[int, int, int]:
    return level.on_hand, level.reserved, level.available


def _published(db: Db, start: int, kind: type[E]) -> list[E]:
    return [e for e in db.published[start:] if isinstance(e, kind)]


async def test_an_adjustment_answers_and_announces_levels_without_due_holds(db: Db) -> None:
    sku, loc = await _stocked(db, 10, "due-adj")
    await _due_hold(db, sku, loc, 4)
    start = len(db.published)
    async with db.tx() as uow:
        level, _ = await handlers.adjust_stock(uow, Adjustment(sku, loc, 1, Reason.RECEIVED))
    assert _figures(level) == (11, 0, 11)
    (changed,) = _published(db, start, StockChanged)
    assert _figures(changed.level) == (11, 0, 11)
    async with db.uow() as uow:  # the answer is what a read says
        assert [_figures(x) for x in await handlers.stock_levels(uow, [sku], loc)] == [(11, 0, 11)]


async def test_a_count_answers_and_announces_levels_without_due_holds(db: Db) -> None:
    sku, loc = await _stocked(db, 10, "due-count")
    await _due_hold(db, sku, loc, 4)
    start = len(db.published)
    async with db.tx() as uow:
        level, _ = await stock.count_stock(uow, "due-count-1", sku, loc, 8, None, None)
    assert _figures(level) == (8, 0, 8)
    (changed,) = _published(db, start, StockChanged)
    assert _figures(changed.level) == (8, 0, 8)


async def test_a_transfer_answers_and_announces_levels_without_due_holds(db: Db) -> None:
    sku, here = await _stocked(db, 10, "due-move")
    there = (await db.shop(sku)).id
    await _due_hold(db, sku, here, 4)
    start = len(db.published)
    async with db.tx() as uow:
        _, levels, _ = await stock.transfer_stock(uow, here, there, [(sku, 2)], None)
    assert sorted((x.location_id == here, *_figures(x)) for x in levels) == [
        (False, 2, 0, 2),
        (True, 8, 0, 8),
    ]
    source = [e.level for e in _published(db, start, StockChanged) if e.level.location_id == here]
    assert [_figures(x) for x in source] == [(8, 0, 8)]


async def test_a_recorded_sale_announces_levels_without_due_holds(db: Db) -> None:
    sku, loc = await _stocked(db, 10, "due-sale")
    await _due_hold(db, sku, loc, 4)
    start = len(db.published)
    async with db.tx() as uow:
        await handlers.record_sale(uow, "ord_due_sale", loc, [(sku, 3)])
    (changed,) = _published(db, start, StockChanged)
    assert _figures(changed.level) == (7, 0, 7)


async def test_a_new_hold_answers_and_announces_levels_without_due_holds(db: Db) -> None:
    sku, loc = await _stocked(db, 10, "due-hold")
    await _due_hold(db, sku, loc, 4)
    start = len(db.published)
    async with db.tx() as uow:
        _, levels = await reservations.create_reservation(
            uow, validate_hold(loc, [(sku, 3)], 600, "")
        )
    assert [_figures(x) for x in levels] == [(10, 3, 7)]
    (created,) = _published(db, start, ReservationCreated)
    assert [_figures(x) for x in created.levels] == [(10, 3, 7)]


async def test_a_commit_answers_and_announces_levels_without_due_holds(db: Db) -> None:
    sku, loc = await _stocked(db, 10, "due-commit")
    live = await _hold(db, sku, loc, 3)
    await _due_hold(db, sku, loc, 4)
    start = len(db.published)
    async with db.tx() as uow:
        _, levels = await reservations.commit_reservation(uow, live)
    assert [_figures(x) for x in levels] == [(7, 0, 7)]
    (committed,) = _published(db, start, ReservationCommitted)
    assert [_figures(x) for x in committed.levels] == [(7, 0, 7)]
    (changed,) = _published(db, start, StockChanged)
    assert _figures(changed.level) == (7, 0, 7)


async def test_a_release_answers_and_announces_levels_without_due_holds(db: Db) -> None:
    sku, loc = await _stocked(db, 10, "due-release")
    live = await _hold(db, sku, loc, 3)
    await _due_hold(db, sku, loc, 4)
    start = len(db.published)
    async with db.tx() as uow:
        _, levels = await reservations.release_reservation(uow, live)
    assert [_figures(x) for x in levels] == [(10, 0, 10)]
    (released,) = _published(db, start, ReservationReleased)
    assert [_figures(x) for x in released.levels] == [(10, 0, 10)]


async def test_a_due_hold_ended_by_its_release_answers_levels_without_other_due_holds(
    db: Db,
) -> None:
    """A release of a due hold ends it as expired: its answer and its event leave out the
    units of another due hold of the SKU there too."""
    sku, loc = await _stocked(db, 10, "due-release-due")
    first = await _due_hold(db, sku, loc, 3)
    await _due_hold(db, sku, loc, 4)
    start = len(db.published)
    async with db.tx() as uow:
        ended, levels = await reservations.release_reservation(uow, first)
    assert ended.status.value == "expired"
    assert [_figures(x) for x in levels] == [(10, 0, 10)]
    (expired,) = _published(db, start, ReservationExpired)
    assert [_figures(x) for x in expired.levels] == [(10, 0, 10)]


async def test_the_sweep_announces_levels_without_the_due_holds_it_has_yet_to_reach(
    db: Db,
) -> None:
    """A sweep batch that ends one due hold of a SKU announces its level without another due
    hold there that a later batch (or another replica) ends."""
    async with db.tx() as uow:  # whatever earlier tests left due, so the batch of one is ours
        while await reservations.expire_due(uow, 500):
            pass
    sku, loc = await _stocked(db, 10, "due-sweep")
    older = await _hold(db, sku, loc, 3)
    newer = await _hold(db, sku, loc, 4)
    await _due(db, older, seconds_ago=2)
    await _due(db, newer, seconds_ago=1)
    swept: list[object] = []
    async with db.tx() as uow:
        original = uow.publish_for

        def keep(merchant_id: str, event: object) -> None:
            swept.append(event)
            original(merchant_id, event)

        uow.publish_for = keep  # type: ignore[method-assign]
        assert await reservations.expire_due(uow, 1) == 1
    (expired,) = [e for e in swept if isinstance(e, ReservationExpired)]
    assert expired.reservation.id == older
    assert [_figures(x) for x in expired.levels] == [(10, 0, 10)]


async def test_a_sweep_of_several_holds_of_a_sku_announces_each_its_own_level(db: Db) -> None:
    """Holds of one SKU swept in one batch are given back one after the other, in the order
    their time ran out: each `reservation.expired` carries the level as it stood once that
    hold's units were back (so its `inventory.changed` is that version of the level, stamped
    after the one before). Before, the batch gave the SKU's units back in one statement and
    every event of the batch carried the final level, under one stamp."""
    async with db.tx() as uow:  # whatever earlier tests left due, so the batch is ours
        while await reservations.expire_due(uow, 500):
            pass
    sku, loc = await _stocked(db, 10, "due-sweep-many")
    first = await _hold(db, sku, loc, 3)
    second = await _hold(db, sku, loc, 4)
    third = await _hold(db, sku, loc, 1)
    await _due(db, second, seconds_ago=3)
    await _due(db, first, seconds_ago=2)
    await _due(db, third, seconds_ago=1)
    swept: list[ReservationExpired] = []
    async with db.tx() as uow:
        original = uow.publish_for

        def keep(merchant_id: str, event: object) -> None:
            if isinstance(event, ReservationExpired):
                swept.append(event)
            original(merchant_id, event)

        uow.publish_for = keep  # type: ignore[method-assign]
        assert await reservations.expire_due(uow, 500) == 3
    assert [e.reservation.id for e in swept] == [second, first, third]
    assert [[_figures(x) for x in e.levels] for e in swept] == [
        [(10, 4, 6)],
        [(10, 1, 9)],
        [(10, 0, 10)],
    ]
    stamps = [e.levels[0].updated_at for e in swept]
    assert all(s is not None for s in stamps)
    assert stamps == sorted(stamps) and len(set(stamps)) == 3, stamps
    async with db.uow() as uow:
        (now_read,) = await handlers.stock_levels(uow, [sku], loc)
    assert now_read == swept[-1].levels[0]


async def _someone_waits(db: Db) -> None:
    """Until a backend waits for a row lock another transaction holds."""
    deadline = asyncio.get_running_loop().time() + 20
    while True:
        async with db.engine.connect() as conn:
            waiting = (
                await conn.execute(text("SELECT count(*) FROM pg_locks WHERE NOT granted"))
            ).scalar_one()
        if waiting:
            return
        assert asyncio.get_running_loop().time() < deadline, "no write waited for the row"
        await asyncio.sleep(0.01)


@pytest.mark.parametrize("write", ["hold", "release", "sweep"])
async def test_a_write_that_waited_for_a_due_holds_expiry_answers_levels_as_they_are(
    db: Db, write: str
) -> None:
    """A due hold of 2 units is ended (its commit, refused for its time, ends it as expired)
    while a write of the same level runs: the write waits for the level's row, then finds the
    2 units given back. Its answer (and its events) say what a read says then. Before, the
    write's statement, begun while the expiry was not yet committed, still counted the hold as
    due and took its 2 units out of `reserved` a second time: `reserved` -1 or -2, a level the
    public model refuses, so the event (`reservation.expired` with it, from a sweep) was
    dead-lettered by the dispatcher and never reached the feed."""
    async with db.tx() as uow:  # whatever earlier tests left due, so the sweep's batch is ours
        while await reservations.expire_due(uow, 500):
            pass
    sku, loc = await _stocked(db, 10, f"due-wait-{write}")
    ending = await _due_hold(db, sku, loc, 2)
    other = await _hold(db, sku, loc, 1)
    if write == "sweep":
        await _due(db, other, seconds_ago=2)
    swept: list[ReservationExpired] = []

    async def run() -> list[StockLevel]:
        async with db.tx() as uow:
            if write == "hold":
                _, levels = await reservations.create_reservation(
                    uow, validate_hold(loc, [(sku, 1)], 600, "")
                )
                return levels
            if write == "release":
                _, levels = await reservations.release_reservation(uow, other)
                return levels
            original = uow.publish_for

            def keep(merchant_id: str, event: object) -> None:
                if isinstance(event, ReservationExpired):
                    swept.append(event)
                original(merchant_id, event)

            uow.publish_for = keep  # type: ignore[method-assign]
            assert await reservations.expire_due(uow, 500) == 1  # `ending` is locked: skipped
            return list(swept[0].levels)

    async with db.uow() as expiry:
        assert await reservations.expire_reservation(expiry, ending)
        going = asyncio.ensure_future(run())
        await _someone_waits(db)
        await expiry.commit()
    levels = await going

    expected = {"hold": (10, 2, 8), "release": (10, 0, 10), "sweep": (10, 0, 10)}[write]
    assert [_figures(x) for x in levels] == [expected]
    async with db.uow() as uow:
        assert [_figures(x) for x in await handlers.stock_levels(uow, [sku], loc)] == [expected]


async def _threshold(db: Db, sku: str, threshold: int) -> None:
    async with db.tx() as uow:
        await stock.set_low_stock_threshold(uow, sku, threshold)


def _lows(db: Db, start: int) -> list[tuple[int, int, int]]:
    return [(*_figures(e.level)[1:], e.threshold) for e in _published(db, start, LowStock)]


async def test_low_stock_is_announced_when_a_write_takes_what_reads_promised_below_it(
    db: Db,
) -> None:
    """Reads promise the units of a due hold; a decrease that takes that promise to the
    threshold is a crossing. Before, the crossing was judged from the row with the due hold
    counted, already below the threshold, so no alert came at all."""
    sku, loc = await _stocked(db, 10, "due-low")
    await _threshold(db, sku, 3)
    await _due_hold(db, sku, loc, 8)  # made: 2 left, announced then; due: 10 promised again
    start = len(db.published)
    async with db.tx() as uow:
        await handlers.adjust_stock(uow, Adjustment(sku, loc, -8, Reason.DAMAGED))
    assert _lows(db, start) == [(0, 2, 3)]


async def test_low_stock_is_announced_when_a_sale_or_a_move_takes_what_reads_promised_below_it(
    db: Db,
) -> None:
    sold, here = await _stocked(db, 10, "due-low-sale")
    await _threshold(db, sold, 3)
    await _due_hold(db, sold, here, 8)
    start = len(db.published)
    async with db.tx() as uow:  # 10 promised: 2 after the sale
        await handlers.record_sale(uow, "ord_due_low", here, [(sold, 8)])
    assert _lows(db, start) == [(0, 2, 3)]

    moved, here = await _stocked(db, 5, "due-low-move")
    there = (await db.shop(moved)).id
    await _threshold(db, moved, 3)
    await _due_hold(db, moved, here, 2)
    start = len(db.published)
    async with db.tx() as uow:  # 5 promised: 2 after the move
        await stock.transfer_stock(uow, here, there, [(moved, 3)], None)
    assert _lows(db, start) == [(0, 2, 3)]


async def test_no_low_stock_is_announced_while_reads_promise_more_than_the_threshold(
    db: Db,
) -> None:
    """A due hold's units are promised: a decrease that leaves more than the threshold as
    read is no crossing, though the row with the due hold counted would be below it."""
    sku, loc = await _stocked(db, 10, "due-no-low")
    await _threshold(db, sku, 3)
    await _due_hold(db, sku, loc, 5)
    start = len(db.published)
    async with db.tx() as uow:
        level, _ = await handlers.adjust_stock(uow, Adjustment(sku, loc, -3, Reason.DAMAGED))
    assert _figures(level) == (7, 0, 7)
    assert _lows(db, start) == []


async def _due_now(db: Db, reservation_id: str) -> datetime:
    """Its time is up at this moment (after the hold was made and its level stamped)."""
    async with db.tx() as uow:
        return (
            await uow.conn.execute(
                update(reservations_table)
                .where(reservations_table.c.id == reservation_id)
                .values(expires_at=func.now())
                .returning(reservations_table.c.expires_at)
            )
        ).scalar_one()


async def test_a_level_is_stamped_no_earlier_than_a_due_hold_left_out_of_it(db: Db) -> None:
    """A level's `updated_at` is when `reserved` (so `available`) last changed: a due hold's
    units left `reserved` when its time ran out, so a level read (or answered by a write
    that changed nothing) without them is stamped no earlier than that, as a due hold reads
    `updated_at` no earlier than its `expires_at`. Before, it kept the stamp of the hold,
    from when those units were still held."""
    sku, loc = await _stocked(db, 10, "due-stamp")
    async with db.tx() as uow:
        await stock.count_stock(uow, "due-stamp-count", sku, loc, 10, None, None)
    held = await _hold(db, sku, loc, 4)
    async with db.uow() as uow:
        ((stamped,),) = [[x.updated_at for x in await handlers.stock_levels(uow, [sku], loc)]]
    ran_out = await _due_now(db, held)
    assert stamped is not None and stamped < ran_out

    async with db.uow() as uow:
        (read,) = await handlers.stock_levels(uow, [sku], loc)
        (everywhere,) = await handlers.stock_levels(uow, [sku], None)
        (listed,) = (await handlers.stock_at(uow, loc, PageRequest(limit=500)))[0]
    for level in (read, everywhere, listed):
        assert _figures(level) == (10, 0, 10)
        assert level.updated_at is not None and level.updated_at >= ran_out

    # A change from before the latest count changes nothing (and stamps nothing): its answer
    # is the level as read, stamp included.
    async with db.tx() as uow:
        level, entry = await handlers.adjust_stock(
            uow, Adjustment(sku, loc, 1, Reason.RECEIVED, occurred_at=T_PAST)
        )
    assert entry.superseded
    assert _figures(level) == (10, 0, 10)
    assert level.updated_at is not None and level.updated_at >= ran_out
