"""PostgreSQL storage of stock levels, the ledger and low-stock thresholds.

Row locks do the concurrency work: a hold is one conditional UPDATE, so the check that enough
is available and the hold itself happen on the latest row under its lock; concurrent holds on a
hot SKU queue on that lock and none can take more than is there. Every writer locks stock rows
in (merchant, sku, location) order, so transactions touching several rows cannot deadlock.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping, Sequence
from datetime import datetime
from typing import Any

from sqlalchemy import (
    ARRAY,
    BigInteger,
    Boolean,
    ClauseElement,
    DateTime,
    Row,
    Table,
    Text,
    and_,
    bindparam,
    cast,
    func,
    insert,
    literal_column,
    select,
    true,
    update,
)
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.ext.asyncio import AsyncConnection

from pos_inventory.adapters.tables import low_stock_thresholds, reservations, stock, stock_ledger
from pos_inventory.domain.ledger import EntryKind, ItemState, LedgerEntry, NewEntry
from pos_inventory.domain.model import Reason, StockLevel, Threshold
from pos_inventory.domain.reservations import ReservationStatus
from pos_inventory.service.ports import HistoryFilters
from pos_kit.ids import new_id
from pos_kit.paging import PageRequest
from pos_kit.uow import compiled_sql

ENTRY_PREFIX = "led"


def _due() -> Any:
    """A hold past its time (by the database clock) that the sweep has not reached: it holds
    nothing by its terms, though its units are still counted in the row's `reserved`."""
    # Literals, not parameters: `record_all` runs a statement compiled once (`compiled_sql`)
    # with only the parameters it names.
    return and_(
        reservations.c.status == literal_column(f"'{ReservationStatus.ACTIVE.value}'"),
        reservations.c.expires_at <= func.now(),
    )


def _due_of_row(table: Table, *columns: Any) -> Any:
    """`columns` over the lines of due holds (`_due`) holding the SKU of the `table` row the
    enclosing statement reads or changes: correlated to its merchant, SKU and location, and
    found through the partial index of due holds, which the sweep keeps short."""
    line = (
        func.jsonb_array_elements(reservations.c.lines)
        .table_valued("value")
        .render_derived(name="due_line")
    )
    return (
        select(*(column(line.c.value) for column in columns))
        .select_from(reservations)
        .join(line, true())
        .where(
            reservations.c.merchant_id == table.c.merchant_id,
            reservations.c.location_id == table.c.location_id,
            _due(),
            line.c.value.op("->>")(literal_column("0")) == table.c.sku,
        )
        .correlate(table)
        .scalar_subquery()
    )


def due_units(table: Table) -> Any:
    """The units of due holds still counted in `reserved` of the `table` row."""
    # sum() of bigint is numeric: back to a whole number of units.
    return _due_of_row(
        table,
        lambda value: cast(
            func.coalesce(
                func.sum(cast(value.op("->>")(literal_column("1")), BigInteger)),
                literal_column("0"),
            ),
            BigInteger,
        ),
    )


def due_since(table: Table) -> Any:
    """When the last of the due holds of the `table` row ran out (NULL without one): the
    moment its units left `reserved` as read."""
    return _due_of_row(table, lambda _: func.max(reservations.c.expires_at))


def level_columns(table: Table = stock) -> tuple[Any, ...]:
    """What a changed stock row answers with, to become a StockLevel: the level as a reader
    sees it (`reserved` without the units of due holds not yet swept, as `_levels_as_read`
    counts it), so a write's answer and its events agree with every read. Before, a write
    answered the row as written, and its due holds still held their units there.

    `updated_at` likewise is no earlier than the moment a due hold's units left `reserved`
    (its `expires_at`): a write that changed the row stamps it later anyway, but one that
    changed nothing (a change from before the latest count) left the stamp of the hold.

    The row must be locked by an earlier statement of the transaction: the sum of due holds
    is read with the writing statement's snapshot, while the row it changes is the latest. A
    statement that had to wait for the row saw a due hold another transaction was ending as
    still due, then found its units already given back: they left `reserved` twice (-2
    reserved, 12 available of 10 on hand), a level the public model refuses, so a sweep's
    `reservation.expired` was dead-lettered and never reached the feed. Locked first, the
    writing statement begins after whoever held the row has committed, and no expiry of a
    hold of the row can commit before this transaction ends (it changes the row too), so the
    sum and the row agree."""
    return (
        table.c.sku,
        table.c.location_id,
        table.c.on_hand,
        (table.c.reserved - due_units(table)).label("reserved"),
        # greatest() skips a NULL: without a due hold, the row's own stamp.
        func.greatest(table.c.updated_at, due_since(table)).label("updated_at"),
    )


LEVEL = level_columns()


# The arrays a batch of ledger entries is sent as (`SqlStock.record_all`), one row per SKU.
_ENTRY_ARRAYS = (
    ("sku", Text),
    ("kind", Text),
    ("reason", Text),
    ("quantity", BigInteger),
    ("delta", BigInteger),
    ("superseded", Boolean),
    ("occurred_at", DateTime(timezone=True)),
    ("reference", Text),
    ("note", Text),
    ("entry_id", Text),
    ("reserved", BigInteger),
)


# The columns `record_all` answers, in order: the level's, then the entry's, then the threshold.
_RECORDED_LEVEL = ("sku", "location_id", "on_hand", "reserved", "updated_at")
_RECORDED_ENTRY = tuple(c.name for c in stock_ledger.c)

RunRows = Callable[[str, Mapping[str, Any]], Awaitable[list[Sequence[Any]]]]


def level_of(m: Any) -> StockLevel:
    return StockLevel(m["sku"], m["location_id"], m["on_hand"], m["reserved"], m["updated_at"])


def entry_of(row: Row[Any]) -> LedgerEntry:
    return entry_from(row._mapping)


def entry_from(m: Any) -> LedgerEntry:
    return LedgerEntry(
        id=m["entry_id"],
        sku=m["sku"],
        location_id=m["location_id"],
        kind=EntryKind(m["kind"]),
        reason=Reason(m["reason"]) if m["reason"] else None,
        quantity=m["quantity"],
        delta=m["delta"],
        on_hand_after=m["on_hand_after"],
        superseded=m["superseded"],
        occurred_at=m["occurred_at"],
        recorded_at=m["created_at"],
        reference=m["reference"],
        note=m["note"],
    )


def _lock_all(table: Table) -> ClauseElement:
    """The rows of several SKUs at one location, created at zero where missing, locked in
    the order of the (sorted) `skus`, as `lock` does for one."""
    wanted = (
        func.unnest(bindparam("skus", type_=ARRAY(Text)))
        .table_valued("sku")
        .render_derived(name="wanted")
    )
    return (
        pg_insert(table)
        .from_select(
            ["merchant_id", "sku", "location_id", "on_hand"],
            select(
                bindparam("merchant_id", type_=Text),
                wanted.c.sku,
                bindparam("location_id", type_=Text),
                literal_column("0"),
            ).order_by(wanted.c.sku),
        )
        .on_conflict_do_update(constraint="stock_pkey", set_={"on_hand": table.c.on_hand})
        .returning(
            table.c.sku, table.c.on_hand, table.c.reserved, table.c.counted_at, table.c.count_key
        )
    )


def _record_all(table: Table) -> ClauseElement:
    """Change locked rows of one location by the given deltas and write their ledger entries
    from the changed rows; answers the level, the entry and the SKU's threshold of each."""
    given = select(
        *(
            # Bound as `entry_<name>`: a parameter named like a column of the tables written
            # here would be taken as a value for that column.
            func.unnest(bindparam(f"entry_{name}", type_=ARRAY(kind))).label(name)
            for name, kind in _ENTRY_ARRAYS
        )
    ).cte("given")
    changed = (
        update(table)
        .where(
            table.c.merchant_id == bindparam("merchant_id", type_=Text),
            table.c.location_id == bindparam("location_id", type_=Text),
            table.c.sku == given.c.sku,
        )
        # `updated_at` is stamped by the table's trigger when on_hand moves (migration 0008).
        .values(
            on_hand=table.c.on_hand + given.c.delta, reserved=table.c.reserved + given.c.reserved
        )
        .returning(*level_columns(table))
        .cte("changed")
    )
    written = (
        insert(stock_ledger)
        .from_select(
            [
                "merchant_id",
                "sku",
                "location_id",
                "kind",
                "reason",
                "quantity",
                "delta",
                "superseded",
                "on_hand_after",
                "occurred_at",
                "reference",
                "note",
                "entry_id",
            ],
            select(
                bindparam("merchant_id", type_=Text),
                changed.c.sku,
                changed.c.location_id,
                given.c.kind,
                given.c.reason,
                given.c.quantity,
                given.c.delta,
                given.c.superseded,
                changed.c.on_hand,
                given.c.occurred_at,
                given.c.reference,
                given.c.note,
                given.c.entry_id,
            ).join_from(changed, given, given.c.sku == changed.c.sku),
        )
        .returning(*(stock_ledger.c[name] for name in _RECORDED_ENTRY))
        .cte("written")
    )
    threshold = (
        select(low_stock_thresholds.c.threshold)
        .where(
            low_stock_thresholds.c.merchant_id == bindparam("merchant_id", type_=Text),
            low_stock_thresholds.c.sku == changed.c.sku,
        )
        .scalar_subquery()
    )
    return select(
        *(changed.c[name].label(f"level_{name}") for name in _RECORDED_LEVEL),
        *(written.c[name].label(f"entry_{name}") for name in _RECORDED_ENTRY),
        threshold.label("threshold"),
    ).join_from(changed, written, written.c.sku == changed.c.sku)


def _due_held(merchant_id: str, skus: list[str] | None, location_ids: list[str] | None) -> Any:
    """Units still counted in `reserved` by holds past their time that the sweep has not
    reached, per (location, SKU): they hold nothing by their terms, so a read leaves them out
    (the sweep still gives them back and publishes the expiry). Found through the partial
    index of due holds, which the sweep keeps short."""
    line = (
        func.jsonb_array_elements(reservations.c.lines)
        .table_valued("value")
        .render_derived(name="line")
    )
    sku = line.c.value.op("->>")(0)
    query = (
        select(
            reservations.c.location_id,
            sku.label("sku"),
            # sum() of bigint is numeric: back to a whole number of units.
            cast(func.sum(cast(line.c.value.op("->>")(1), BigInteger)), BigInteger).label("units"),
            func.max(reservations.c.expires_at).label("since"),
        )
        .select_from(reservations)
        .join(line, true())
        .where(reservations.c.merchant_id == merchant_id, _due())
        .group_by(reservations.c.location_id, sku)
    )
    if skus is not None:
        query = query.where(sku.in_(skus))
    if location_ids:
        query = query.where(reservations.c.location_id.in_(location_ids))
    return query.subquery("due")


def _levels_as_read(
    merchant_id: str, skus: list[str] | None, location_ids: list[str] | None
) -> Any:
    """Levels as a reader sees them: `reserved` without the units of due holds not yet swept
    (`_due_held`), so `available` promises them, one statement with the levels; `updated_at`
    no earlier than the moment the last of them ran out, when their units left `reserved`
    (as a due hold reads `updated_at` no earlier than its `expires_at`)."""
    due = _due_held(merchant_id, skus, location_ids)
    return select(
        stock.c.sku,
        stock.c.location_id,
        stock.c.on_hand,
        (stock.c.reserved - func.coalesce(due.c.units, 0)).label("reserved"),
        # greatest() skips a NULL: without a due hold, the row's own stamp.
        func.greatest(stock.c.updated_at, due.c.since).label("updated_at"),
    ).select_from(
        stock.outerjoin(
            due, and_(due.c.location_id == stock.c.location_id, due.c.sku == stock.c.sku)
        )
    )


def new_entry_id() -> str:
    return new_id(ENTRY_PREFIX)


class SqlStock:
    def __init__(self, conn: AsyncConnection, merchant_id: str, rows: RunRows) -> None:
        self._conn = conn
        self._merchant = merchant_id
        # The unit of work's own way to run a statement compiled once (`compiled_sql`) on
        # the driver's connection: for the statements of a sale, the busiest writes here.
        self._rows = rows

    def _key(self, sku: str, location_id: str) -> Any:
        return (
            (stock.c.merchant_id == self._merchant)
            & (stock.c.sku == sku)
            & (stock.c.location_id == location_id)
        )

    def _threshold(self, sku: str) -> Any:
        return (
            select(low_stock_thresholds.c.threshold)
            .where(
                low_stock_thresholds.c.merchant_id == self._merchant,
                low_stock_thresholds.c.sku == sku,
            )
            .scalar_subquery()
        )

    async def _lock_rows(self, location_id: str, skus: list[str]) -> None:
        """The rows of `skus` at `location_id` locked, in SKU order as every writer locks, by
        a statement of their own before the one that changes them (see `level_columns`)."""
        await self._conn.execute(
            select(stock.c.sku)
            .where(
                stock.c.merchant_id == self._merchant,
                stock.c.location_id == location_id,
                stock.c.sku.in_(sorted(skus)),
            )
            .order_by(stock.c.sku)
            .with_for_update()
        )

    async def lock(self, sku: str, location_id: str) -> ItemState:
        """The item's row, created at zero if it never existed, locked until commit."""
        row = (
            await self._conn.execute(
                pg_insert(stock)
                .values(merchant_id=self._merchant, sku=sku, location_id=location_id, on_hand=0)
                .on_conflict_do_update(constraint="stock_pkey", set_={"on_hand": stock.c.on_hand})
                .returning(stock.c.on_hand, stock.c.reserved, stock.c.counted_at, stock.c.count_key)
            )
        ).one()
        return ItemState(row.on_hand, row.reserved, row.counted_at, row.count_key)

    async def lock_all(self, location_id: str, skus: list[str]) -> dict[str, ItemState]:
        """`lock` for several SKUs at one location in one statement: the rows are created at
        zero where missing and locked in SKU order."""
        rows = await self._rows(
            compiled_sql(stock, "lock_all", _lock_all),
            {"merchant_id": self._merchant, "location_id": location_id, "skus": sorted(skus)},
        )
        return {r[0]: ItemState(r[1], r[2], r[3], r[4]) for r in rows}

    async def record_all(
        self,
        location_id: str,
        entries: list[tuple[str, NewEntry]],
        reserved_deltas: list[int] | None = None,
    ) -> list[tuple[StockLevel, LedgerEntry, int | None]]:
        """`record` (without counts) for several locked rows of one location, in one
        statement: the rows changed (`reserved_deltas[i]` moves the reserved units of
        `entries[i]`), their ledger entries written from the changed rows, and each SKU's
        threshold read, in the order of `entries` (one per SKU)."""
        rows = await self._rows(
            compiled_sql(stock, "record_all", _record_all),
            {
                "merchant_id": self._merchant,
                "location_id": location_id,
                "entry_sku": [sku for sku, _ in entries],
                "entry_kind": [e.kind.value for _, e in entries],
                "entry_reason": [e.reason.value if e.reason else "" for _, e in entries],
                "entry_quantity": [e.quantity for _, e in entries],
                "entry_delta": [e.applied.delta for _, e in entries],
                "entry_superseded": [e.applied.superseded for _, e in entries],
                "entry_occurred_at": [e.occurred_at for _, e in entries],
                "entry_reference": [e.reference for _, e in entries],
                "entry_note": [e.note for _, e in entries],
                "entry_entry_id": [new_entry_id() for _ in entries],
                "entry_reserved": reserved_deltas or [0] * len(entries),
            },
        )
        by_sku = {r[0]: r for r in rows}
        out = []
        for sku, _ in entries:
            r = by_sku[sku]
            level = dict(zip(_RECORDED_LEVEL, r[: len(_RECORDED_LEVEL)], strict=True))
            entry = dict(zip(_RECORDED_ENTRY, r[len(_RECORDED_LEVEL) : -1], strict=True))
            out.append((level_of(level), entry_from(entry), r[-1]))
        return out

    async def changed_after(self, sku: str, location_id: str, occurred_at: datetime) -> int:
        total = await self._conn.scalar(
            select(func.coalesce(func.sum(stock_ledger.c.quantity), 0)).where(
                stock_ledger.c.merchant_id == self._merchant,
                stock_ledger.c.sku == sku,
                stock_ledger.c.location_id == location_id,
                stock_ledger.c.kind != EntryKind.COUNT.value,
                stock_ledger.c.occurred_at > occurred_at,
            )
        )
        return int(total or 0)

    async def record(
        self,
        sku: str,
        location_id: str,
        entry: NewEntry,
        reserved_delta: int = 0,
        count_key: str | None = None,
    ) -> tuple[StockLevel, LedgerEntry, int | None]:
        """Apply a sequenced change to a locked row and write its ledger entry.

        Returns the new level, the entry, and the SKU's low-stock threshold (None if unset).
        """
        values: dict[str, Any] = {
            "on_hand": stock.c.on_hand + entry.applied.delta,
            "reserved": stock.c.reserved + reserved_delta,
        }
        if count_key is not None and not entry.applied.superseded:
            values["counted_at"] = entry.occurred_at
            values["count_key"] = count_key
        row = (
            await self._conn.execute(
                update(stock)
                .where(self._key(sku, location_id))
                .values(**values)
                .returning(*LEVEL, self._threshold(sku).label("threshold"))
            )
        ).one()
        written = (
            await self._conn.execute(
                insert(stock_ledger)
                .values(
                    merchant_id=self._merchant,
                    sku=sku,
                    location_id=location_id,
                    kind=entry.kind.value,
                    reason=entry.reason.value if entry.reason else "",
                    quantity=entry.quantity,
                    delta=entry.applied.delta,
                    superseded=entry.applied.superseded,
                    on_hand_after=row.on_hand,
                    occurred_at=entry.occurred_at,
                    reference=entry.reference,
                    note=entry.note,
                    entry_id=new_entry_id(),
                )
                .returning(*stock_ledger.c)
            )
        ).one()
        return level_of(row._mapping), entry_of(written), row.threshold

    async def hold(
        self, location_id: str, lines: list[tuple[str, int]]
    ) -> tuple[list[tuple[StockLevel, int | None]], str | None]:
        """Reserve every line, in the (sorted) order given; stop at the first that is short.

        Returns the new levels with each SKU's threshold, and the SKU that could not be held
        (None when all were). The caller rolls back on a short line: all or nothing.
        """
        await self._lock_rows(location_id, [sku for sku, _ in lines])
        held: list[tuple[StockLevel, int | None]] = []
        for sku, quantity in lines:
            row = (
                await self._conn.execute(
                    update(stock)
                    .where(
                        self._key(sku, location_id),
                        stock.c.on_hand - stock.c.reserved >= quantity,
                    )
                    .values(reserved=stock.c.reserved + quantity)
                    .returning(*LEVEL, self._threshold(sku).label("threshold"))
                )
            ).first()
            if row is None:
                return held, sku
            held.append((level_of(row._mapping), row.threshold))
        return held, None

    async def unhold(self, location_id: str, lines: list[tuple[str, int]]) -> list[StockLevel]:
        """Give held units back (a release): reserved goes down, on_hand is untouched."""
        await self._lock_rows(location_id, [sku for sku, _ in lines])
        levels = []
        for sku, quantity in sorted(lines):
            row = (
                await self._conn.execute(
                    update(stock)
                    .where(self._key(sku, location_id))
                    .values(reserved=stock.c.reserved - quantity)
                    .returning(*LEVEL)
                )
            ).one()
            levels.append(level_of(row._mapping))
        return levels

    async def levels(self, skus: list[str], location_ids: list[str] | None) -> list[StockLevel]:
        """The levels of `skus` (at `location_ids`, or everywhere) as a reader sees them: held
        units of due holds the sweep has not reached are not `reserved` (`_levels_as_read`)."""
        query = _levels_as_read(self._merchant, skus, location_ids).where(
            stock.c.merchant_id == self._merchant, stock.c.sku.in_(skus)
        )
        if location_ids:
            query = query.where(stock.c.location_id.in_(location_ids))
        rows = await self._conn.execute(query.order_by(stock.c.sku, stock.c.location_id))
        return [level_of(r._mapping) for r in rows]

    async def levels_at(self, location_id: str, after: str | None, fetch: int) -> list[StockLevel]:
        query = _levels_as_read(self._merchant, None, [location_id]).where(
            stock.c.merchant_id == self._merchant, stock.c.location_id == location_id
        )
        if after:
            query = query.where(stock.c.sku > after)
        rows = await self._conn.execute(query.order_by(stock.c.sku).limit(fetch))
        return [level_of(r._mapping) for r in rows]

    async def history(self, f: HistoryFilters, page: PageRequest) -> list[LedgerEntry]:
        query = select(stock_ledger).where(stock_ledger.c.merchant_id == self._merchant)
        for column, wanted in (
            (stock_ledger.c.sku, f.sku),
            (stock_ledger.c.location_id, f.location_id),
            (stock_ledger.c.kind, f.kind),
            (stock_ledger.c.reason, f.reason),
        ):
            if wanted:
                query = query.where(column == wanted)
        if f.recorded_since is not None:
            query = query.where(stock_ledger.c.created_at >= f.recorded_since)
        if f.recorded_before is not None:
            query = query.where(stock_ledger.c.created_at < f.recorded_before)
        if page.after:
            # The entry the last page ended with, by its id (never by `seq`, which a token
            # would show); an id of no entry of the merchant's ends the list.
            before = (
                select(stock_ledger.c.seq)
                .where(
                    stock_ledger.c.merchant_id == self._merchant,
                    stock_ledger.c.entry_id == page.after,
                )
                .scalar_subquery()
            )
            query = query.where(stock_ledger.c.seq < before)
        newest_first = query.order_by(stock_ledger.c.seq.desc())
        rows = await self._conn.execute(newest_first.limit(page.fetch))
        return [entry_of(r) for r in rows]

    async def thresholds(self, skus: list[str], page: PageRequest) -> list[Threshold]:
        t = low_stock_thresholds
        query = select(t.c.sku, t.c.threshold).where(t.c.merchant_id == self._merchant)
        if skus:
            query = query.where(t.c.sku.in_(skus))
        if page.after:
            query = query.where(t.c.sku > page.after)
        rows = await self._conn.execute(query.order_by(t.c.sku).limit(page.fetch))
        return [Threshold(r.sku, r.threshold) for r in rows]

    async def set_threshold(self, sku: str, threshold: int | None) -> int | None:
        # Locked: two changes of one SKU's threshold each compare with the other's result.
        before = (
            await self._conn.execute(
                select(low_stock_thresholds.c.threshold)
                .where(
                    low_stock_thresholds.c.merchant_id == self._merchant,
                    low_stock_thresholds.c.sku == sku,
                )
                .with_for_update()
            )
        ).scalar_one_or_none()
        if threshold is None:
            await self._conn.execute(
                low_stock_thresholds.delete().where(
                    low_stock_thresholds.c.merchant_id == self._merchant,
                    low_stock_thresholds.c.sku == sku,
                )
            )
            return before
        await self._conn.execute(
            pg_insert(low_stock_thresholds)
            .values(merchant_id=self._merchant, sku=sku, threshold=threshold)
            .on_conflict_do_update(
                constraint="low_stock_thresholds_pkey", set_={"threshold": threshold}
            )
        )
        return before
