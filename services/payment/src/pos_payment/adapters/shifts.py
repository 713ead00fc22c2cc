"""Shift storage (PostgreSQL): shifts, drawer movements, and the totals read from the
payments, captures and refunds attributed to a shift (adapters/at_register.py)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from sqlalchemy import Row, Select, func, insert, select, union_all, update
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.ext.asyncio import AsyncConnection

from pos_kit.changes import list_page
from pos_kit.paging import PageRequest
from pos_kit.uow import UnitOfWork
from pos_payment.adapters.gift_card_tables import gift_card_activities
from pos_payment.adapters.shift_messages import REGISTRY
from pos_payment.adapters.tables import (
    drawer_movements,
    operations,
    payments,
    refunds,
    register_activity,
    shifts,
)
from pos_payment.domain.shifts import (
    CashTotals,
    Movement,
    MovementKind,
    Shift,
    ShiftFilter,
    ShiftStatus,
    TenderLine,
)


def _shift(row: Row[Any]) -> Shift:
    m = row._mapping
    return Shift(
        id=m["id"],
        location_id=m["location_id"],
        register_id=m["register_id"],
        currency=m["currency"],
        opening_float=m["opening_float"],
        opened_by=m["opened_by"],
        status=ShiftStatus(m["status"]),
        closed_by=m["closed_by"],
        counted_cash=m["counted_cash"],
        expected_at_close=m["expected_cash"],
        version=m["version"],
        opened_at=m["opened_at"],
        closed_at=m["closed_at"],
        updated_at=m["updated_at"],
    )


def _report(
    shift: Shift,
    sales: dict[tuple[str, str], tuple[int, int]],
    back: dict[tuple[str, str], tuple[int, int]],
    drawer: dict[str, tuple[int, int]],
    noted: list[tuple[str, str, int, int]],
    cards: list[tuple[str, bool, int]],
) -> None:
    """Set the shift's totals and tender lines from its grouped rows: taken and given back
    per (tender, currency), drawer movements per kind, register activity per (kind,
    currency), gift card activity per (kind, paid in cash)."""
    cash = ("cash", shift.currency)
    activity: dict[str, tuple[int, int]] = {}
    for kind, currency, amount, count in noted:
        if currency in ("", shift.currency):
            total, n = activity.get(kind, (0, 0))
            activity[kind] = (total + amount, n + count)
    sold = sold_cash = redeemed = 0
    for kind, in_cash, amount in cards:
        if kind in ("activate", "load"):
            sold += amount
            sold_cash += amount if in_cash else 0
        elif kind in ("redeem", "refund"):
            redeemed -= amount
    shift.totals = CashTotals(
        cash_sales=sales.get(cash, (0, 0))[0],
        cash_refunds=back.get(cash, (0, 0))[0],
        pay_ins=drawer.get(MovementKind.PAY_IN.value, (0, 0))[0],
        pay_outs=drawer.get(MovementKind.PAY_OUT.value, (0, 0))[0],
        no_sales=drawer.get(MovementKind.NO_SALE.value, (0, 0))[1],
        discounts=activity.get("discount", (0, 0))[0],
        discounted_orders=activity.get("discount", (0, 0))[1],
        overrides=activity.get("override", (0, 0))[1],
        gift_cards_sold=sold,
        gift_cards_sold_cash=sold_cash,
        gift_cards_redeemed=redeemed,
    )
    # The shift's currency first, each tender in name order; then the other currencies.
    shift.tenders = [
        TenderLine(t[0], *sales.get(t, (0, 0)), *back.get(t, (0, 0)), currency=t[1])
        for t in sorted({*sales, *back}, key=lambda t: (t[1] != shift.currency, t[1], t[0]))
    ]


class SqlShiftRepository:
    def __init__(self, conn: AsyncConnection, merchant_id: str) -> None:
        self._conn = conn
        self._merchant = merchant_id

    async def add(self, shift: Shift) -> None:
        made = await self._conn.execute(
            insert(shifts)
            .values(
                merchant_id=self._merchant, id=shift.id, location_id=shift.location_id,
                register_id=shift.register_id, status=shift.status.value,
                currency=shift.currency, opening_float=shift.opening_float,
                opened_by=shift.opened_by,
            )
            .returning(shifts.c.opened_at, shifts.c.updated_at)
        )  # fmt: skip
        shift.opened_at, shift.updated_at = made.one()

    async def open_at(self, register_id: str) -> Shift | None:
        row = (
            await self._conn.execute(
                select(shifts).where(
                    shifts.c.merchant_id == self._merchant,
                    shifts.c.register_id == register_id,
                    shifts.c.status == "open",
                )
            )
        ).first()
        return None if row is None else await self._filled(_shift(row))

    async def get(self, shift_id: str, *, lock: bool = False) -> Shift | None:
        query = select(shifts).where(
            shifts.c.merchant_id == self._merchant, shifts.c.id == shift_id
        )
        row = (await self._conn.execute(query.with_for_update() if lock else query)).first()
        return None if row is None else await self._filled(_shift(row))

    async def list(self, page: PageRequest, filters: ShiftFilter) -> list[Shift]:
        """Newest first, or with `page.since` the change feed (oldest change first); each
        filter given narrows it."""
        t = shifts
        query = select(t).where(t.c.merchant_id == self._merchant)
        if filters.register_id:
            query = query.where(t.c.register_id == filters.register_id)
        if filters.location_id:
            query = query.where(t.c.location_id == filters.location_id)
        if filters.status is not None:
            query = query.where(t.c.status == filters.status.value)
        if filters.opened_since is not None:
            query = query.where(t.c.opened_at >= filters.opened_since)
        if filters.opened_before is not None:
            query = query.where(t.c.opened_at < filters.opened_before)
        if page.since is not None:
            changed = await list_page(self._conn, query, shifts.c.updated_at, shifts.c.id, page)
            return [*await self._all_filled([_shift(row) for row in changed])]
        if page.after:
            query = query.where(shifts.c.id < page.after)
        rows = await self._conn.execute(query.order_by(shifts.c.id.desc()).limit(page.fetch))
        return [*await self._all_filled([_shift(row) for row in rows])]

    async def save(self, shift: Shift) -> None:
        closed = await self._conn.execute(
            update(shifts)
            .where(shifts.c.merchant_id == self._merchant, shifts.c.id == shift.id)
            .values(
                status=shift.status.value, closed_by=shift.closed_by,
                counted_cash=shift.counted_cash, expected_cash=shift.expected_at_close,
                version=shift.version,
                closed_at=func.now() if shift.status is ShiftStatus.CLOSED else None,
            )
            .returning(shifts.c.closed_at, shifts.c.updated_at)
        )  # fmt: skip
        shift.closed_at, shift.updated_at = closed.one()

    async def add_movement(self, movement: Movement) -> Movement:
        row = (
            await self._conn.execute(
                insert(drawer_movements)
                .values(
                    merchant_id=self._merchant, id=movement.id, shift_id=movement.shift_id,
                    kind=movement.kind.value, amount=movement.amount,
                    currency=movement.currency, reason=movement.reason,
                    staff_id=movement.staff_id, register_id=movement.register_id,
                )
                .returning(drawer_movements.c.created_at)
            )
        ).one()  # fmt: skip
        return Movement(**{**movement.__dict__, "created_at": row.created_at})

    async def _filled(self, shift: Shift) -> Shift:
        """The shift with what its payments, refunds and movements add up to."""
        return (await self._all_filled([shift]))[0]

    async def _all_filled(self, found: Sequence[Shift]) -> Sequence[Shift]:
        """The shifts, each with what its payments, refunds, movements, register activity and
        gift cards add up to: five grouped queries for the whole page, whatever its size."""
        if not found:
            return found
        ids = [shift.id for shift in found]
        r, d, a, g = refunds, drawer_movements, register_activity, gift_card_activities
        mine = self._merchant
        taken = await self._conn.execute(self._taken(ids))
        given = await self._conn.execute(
            select(r.c.shift_id, r.c.tender_type, r.c.currency, func.sum(r.c.amount),
                   func.count())
            .where(r.c.merchant_id == mine, r.c.shift_id.in_(ids), r.c.status == "succeeded")
            .group_by(r.c.shift_id, r.c.tender_type, r.c.currency)
        )  # fmt: skip
        moved = await self._conn.execute(
            select(d.c.shift_id, d.c.kind, func.sum(d.c.amount), func.count())
            .where(d.c.merchant_id == mine, d.c.shift_id.in_(ids))
            .group_by(d.c.shift_id, d.c.kind)
        )
        noted = await self._conn.execute(
            select(a.c.shift_id, a.c.kind, a.c.currency, func.sum(a.c.amount), func.count())
            .where(a.c.merchant_id == mine, a.c.shift_id.in_(ids))
            .group_by(a.c.shift_id, a.c.kind, a.c.currency)
        )
        cards = await self._conn.execute(
            select(g.c.shift_id, g.c.kind, g.c.paid_in_cash, func.sum(g.c.amount))
            .where(g.c.merchant_id == mine, g.c.shift_id.in_(ids))
            .group_by(g.c.shift_id, g.c.kind, g.c.paid_in_cash)
        )
        # Per shift, then per tender and currency: cash is always the shift's (cash in another
        # is refused at the register, service/handlers.py); a card in another currency moves
        # no drawer and is listed on a line of its own currency.
        sales: dict[str, dict[tuple[str, str], tuple[int, int]]] = {i: {} for i in ids}
        back: dict[str, dict[tuple[str, str], tuple[int, int]]] = {i: {} for i in ids}
        drawer: dict[str, dict[str, tuple[int, int]]] = {i: {} for i in ids}
        noted_by: dict[str, list[tuple[str, str, int, int]]] = {i: [] for i in ids}
        cards_by: dict[str, list[tuple[str, bool, int]]] = {i: [] for i in ids}
        for row in taken:
            sales[row[0]][(row[1], row[2])] = (int(row[3]), int(row[4]))
        for row in given:
            back[row[0]][(row[1], row[2])] = (int(row[3]), int(row[4]))
        for row in moved:
            drawer[row[0]][row[1]] = (int(row[2]), int(row[3]))
        for row in noted:
            noted_by[row[0]].append((row[1], row[2], int(row[3]), int(row[4])))
        for row in cards:
            cards_by[row[0]].append((row[1], bool(row[2]), int(row[3])))
        for shift in found:
            _report(shift, sales[shift.id], back[shift.id], drawer[shift.id],
                    noted_by[shift.id], cards_by[shift.id])  # fmt: skip
        return found

    def _taken(self, shift_ids: Sequence[str]) -> Select[Any]:
        """Per shift and tender, what was captured while the shift was open, and of how many
        payments. A capture operation counts in the shift it joined when it succeeded
        (at_register.py); what a payment captured without one (captured at once, at its
        authorisation) counts in the payment's own shift. So a later capture of a payment
        taken in this shift, the shift closed meanwhile, counts in the shift open then and
        never changes this one."""
        p, o, mine = payments, operations, self._merchant
        by_operations = (
            select(func.coalesce(func.sum(o.c.amount), 0))
            .where(o.c.merchant_id == mine, o.c.payment_id == p.c.id,
                   o.c.kind == "capture", o.c.status == "succeeded")
            .scalar_subquery()
        )  # fmt: skip
        at_once = select(
            p.c.shift_id,
            p.c.id.label("payment_id"),
            p.c.tender_type,
            p.c.currency,
            (p.c.captured - by_operations).label("amount"),
        ).where(p.c.merchant_id == mine, p.c.shift_id.in_(shift_ids), p.c.captured > 0)
        captures = (
            select(o.c.shift_id, o.c.payment_id, p.c.tender_type, p.c.currency, o.c.amount)
            .join(p, (p.c.merchant_id == o.c.merchant_id) & (p.c.id == o.c.payment_id))
            .where(o.c.merchant_id == mine, o.c.shift_id.in_(shift_ids),
                   o.c.kind == "capture", o.c.status == "succeeded")
        )  # fmt: skip
        moved = union_all(at_once, captures).subquery()
        return (
            select(moved.c.shift_id, moved.c.tender_type, moved.c.currency,
                   func.sum(moved.c.amount), func.count(moved.c.payment_id.distinct()))
            .where(moved.c.amount > 0)
            .group_by(moved.c.shift_id, moved.c.tender_type, moved.c.currency)
        )  # fmt: skip

    async def note_activity(
        self, kind: str, resource_id: str, register_id: str, amount: int = 0, currency: str = ""
    ) -> None:
        """Count a discounted order or an override in the register's open shift, if any. The
        open shift is read with a share lock, as money is attached (adapters/at_register.py):
        a close waits for this transaction, and what arrives after the close finds no shift."""
        shift = await self._conn.scalar(
            select(shifts.c.id)
            .where(shifts.c.merchant_id == self._merchant, shifts.c.register_id == register_id,
                   shifts.c.status == "open")
            .with_for_update(read=True)
        )  # fmt: skip
        await self._conn.execute(
            pg_insert(register_activity)
            .values(merchant_id=self._merchant, kind=kind, resource_id=resource_id,
                    register_id=register_id, shift_id=shift or "", amount=amount,
                    currency=currency)
            .on_conflict_do_nothing()
        )  # fmt: skip


class ShiftUow(UnitOfWork):
    """The kit's unit of work with the shift repository and its events."""

    events = REGISTRY

    @property
    def shifts(self) -> SqlShiftRepository:
        return SqlShiftRepository(self.conn, self.merchant_id)
