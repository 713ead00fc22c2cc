"""PostgreSQL storage of reservations, and the sweep that expires them across merchants.

A reservation's `updated_at` is the table's to stamp (migration 0009): the moment it was made,
then the moment its status changed, on the locked row, so it only moves forward."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import (
    ColumnElement,
    Row,
    Select,
    and_,
    case,
    func,
    insert,
    literal_column,
    or_,
    select,
    tuple_,
    update,
)
from sqlalchemy.ext.asyncio import AsyncConnection

from pos_inventory.adapters.stock import LEVEL, level_of
from pos_inventory.adapters.tables import reservations, stock
from pos_inventory.domain.model import StockLevel
from pos_inventory.domain.reservations import Reservation, ReservationStatus
from pos_kit.paging import PageRequest


def reservation_of(row: Row[Any]) -> Reservation:
    m = row._mapping
    return Reservation(
        id=m["id"],
        location_id=m["location_id"],
        lines=[(sku, int(quantity)) for sku, quantity in m["lines"]],
        reference=m["reference"],
        status=ReservationStatus(m["status"]),
        expires_at=m["expires_at"],
        created_at=m["created_at"],
        updated_at=m["updated_at"],
    )


def _due() -> ColumnElement[bool]:
    """Active as stored, past its time by the database clock: read as expired."""
    return and_(
        reservations.c.status == ReservationStatus.ACTIVE.value,
        reservations.c.expires_at <= func.now(),
    )


def reads_as(status: ReservationStatus) -> ColumnElement[bool]:
    """The holds `as_read` reads in `status`, said of the stored columns (not of the status
    it computes), so an index on them finds them and the planner can tell how many: a hold
    is read active while stored active and not due, expired when stored so or due, and
    committed or released as stored."""
    stored = reservations.c.status == status.value
    if status is ReservationStatus.ACTIVE:
        return and_(stored, reservations.c.expires_at > func.now())
    if status is ReservationStatus.EXPIRED:
        return or_(stored, _due())
    return stored


def as_read() -> list[Any]:
    """The columns of a reservation as a reader sees it. A hold past its time (by the database
    clock) holds nothing by its terms: it reads `expired` before the sweep writes it so, and
    its `updated_at` is then no earlier than the moment it ran out (the sweep's stamp, later
    still, replaces it). Before, it read `active` for up to a sweep interval."""
    due = _due()
    return [
        *(c for c in reservations.c if c.name not in ("status", "updated_at")),
        case((due, ReservationStatus.EXPIRED.value), else_=reservations.c.status).label("status"),
        case(
            (due, func.greatest(reservations.c.updated_at, reservations.c.expires_at)),
            else_=reservations.c.updated_at,
        ).label("updated_at"),
    ]


class SqlReservations:
    def __init__(self, conn: AsyncConnection, merchant_id: str) -> None:
        self._conn = conn
        self._merchant = merchant_id

    def _key(self, reservation_id: str) -> Any:
        return and_(
            reservations.c.merchant_id == self._merchant, reservations.c.id == reservation_id
        )

    async def add(self, reservation: Reservation, ttl_seconds: int) -> None:
        # The database clock sets the expiry, so the sweep (which reads the same clock) and the
        # hold agree on it whatever the drift between service replicas.
        row = (
            await self._conn.execute(
                insert(reservations)
                .values(
                    merchant_id=self._merchant,
                    id=reservation.id,
                    location_id=reservation.location_id,
                    status=reservation.status.value,
                    lines=[list(line) for line in reservation.lines],
                    reference=reservation.reference,
                    expires_at=func.now() + func.make_interval(0, 0, 0, 0, 0, 0, ttl_seconds),
                )
                .returning(
                    reservations.c.expires_at, reservations.c.created_at, reservations.c.updated_at
                )
            )
        ).one()
        reservation.expires_at = row.expires_at
        reservation.created_at = row.created_at
        reservation.updated_at = row.updated_at

    async def get(self, reservation_id: str, lock: bool = False) -> Reservation | None:
        """The reservation as stored, locked until commit (`lock`, for a change of it); else
        as a reader sees it (`as_read`): a hold past its time is expired, swept or not."""
        if lock:
            # Commit, release and the sweep all lock the reservation first: one of them wins.
            query = select(reservations).where(self._key(reservation_id)).with_for_update()
        else:
            query = select(*as_read()).where(self._key(reservation_id))
        row = (await self._conn.execute(query)).first()
        return reservation_of(row) if row else None

    async def finish(
        self, reservation_id: str, status: ReservationStatus, unless_due: bool
    ) -> Reservation | None:
        """Move an active reservation to `status`; None when it is no longer active (or is
        already due, with unless_due)."""
        query = update(reservations).where(
            self._key(reservation_id), reservations.c.status == ReservationStatus.ACTIVE.value
        )
        if unless_due:
            query = query.where(reservations.c.expires_at > func.now())
        row = (
            await self._conn.execute(query.values(status=status.value).returning(*reservations.c))
        ).first()
        return reservation_of(row) if row else None

    async def due_holding(self, location_id: str, skus: list[str], limit: int) -> list[str]:
        """Ids of up to `limit` active holds at the location past their time (by the database
        clock) that hold any of `skus`, oldest due first: what the sweep has yet to give back
        there. The SKUs are matched in the query, before the limit: matched after it, `limit`
        due holds of other SKUs hid every one in the way."""
        line = (
            func.jsonb_array_elements(reservations.c.lines)
            .table_valued("value")
            .render_derived(name="line")
        )
        holds_one = (
            select(literal_column("1"))
            .select_from(line)
            .where(line.c.value.op("->>")(0).in_(skus))
            .correlate(reservations)
            .exists()
        )
        rows = await self._conn.execute(
            select(reservations.c.id)
            .where(
                reservations.c.merchant_id == self._merchant,
                reservations.c.location_id == location_id,
                reservations.c.status == ReservationStatus.ACTIVE.value,
                reservations.c.expires_at <= func.now(),
                holds_one,
            )
            .order_by(reservations.c.expires_at, reservations.c.id)
            .limit(limit)
        )
        return [r.id for r in rows]

    async def list(
        self, page: PageRequest, status: ReservationStatus | None, location_id: str, sku: str
    ) -> list[Reservation]:
        """By id (the primary key's order), each as a reader sees it (`as_read`): `status`
        matches the status read, so a due hold not yet swept is `expired`, not `active`."""
        rows = await self._conn.execute(self.listing(page, status, location_id, sku))
        return [reservation_of(r) for r in rows]

    def listing(
        self, page: PageRequest, status: ReservationStatus | None, location_id: str, sku: str
    ) -> Select[Any]:
        """The query of `list`."""
        read = select(*as_read()).where(reservations.c.merchant_id == self._merchant)
        if location_id:
            read = read.where(reservations.c.location_id == location_id)
        if sku:  # a line [sku, quantity] is an array that contains [sku]
            read = read.where(reservations.c.lines.contains([[sku]]))
        if status is not None:
            read = read.where(reads_as(status))
        if page.after:
            read = read.where(reservations.c.id > page.after)
        return read.order_by(reservations.c.id).limit(page.fetch)

    async def expire_if_due(self, reservation_id: str) -> Reservation | None:
        """Mark an active reservation expired when it is due by the database clock, as the
        sweep does; None when it is not active or not due."""
        row = (
            await self._conn.execute(
                update(reservations)
                .where(
                    self._key(reservation_id),
                    reservations.c.status == ReservationStatus.ACTIVE.value,
                    reservations.c.expires_at <= func.now(),
                )
                .values(status=ReservationStatus.EXPIRED.value)
                .returning(*reservations.c)
            )
        ).first()
        return reservation_of(row) if row else None


class SqlExpiry:
    """The expiry sweep: not bound to a merchant, it serves them all."""

    def __init__(self, conn: AsyncConnection) -> None:
        self._conn = conn

    async def expire_due(self, limit: int, as_of: datetime | None) -> list[tuple[str, Reservation]]:
        """Mark up to `limit` due reservations expired; SKIP LOCKED lets several replicas sweep
        at once without waiting on each other or on a commit in progress."""
        now = func.now() if as_of is None else as_of
        due = (
            select(reservations.c.merchant_id, reservations.c.id)
            .where(
                reservations.c.status == ReservationStatus.ACTIVE.value,
                reservations.c.expires_at <= now,
            )
            .order_by(reservations.c.expires_at)
            .limit(limit)
            .with_for_update(skip_locked=True)
            .cte("due")
        )
        rows = await self._conn.execute(
            update(reservations)
            .where(reservations.c.merchant_id == due.c.merchant_id, reservations.c.id == due.c.id)
            .values(status=ReservationStatus.EXPIRED.value)
            .returning(*reservations.c)
        )
        return [(r.merchant_id, reservation_of(r)) for r in rows]

    async def unhold(
        self, holds: list[tuple[str, str, list[tuple[str, int]]]]
    ) -> list[list[StockLevel]]:
        """Give back the units of many merchants' holds, one hold after the other: each is
        (merchant, location, lines), and its answer the levels of its lines once its units are
        back. Every row is locked first, in (merchant, sku, location) order like every other
        writer; then each hold's lines are given back by a statement of their own, so a level
        two holds of the batch held is answered (and stamped) as it stood after each."""
        keys = sorted(
            {(merchant, sku, location_id) for merchant, location_id, lines in holds
             for sku, _ in lines}
        )  # fmt: skip
        if keys:
            # Locked first, in key order, by a statement of their own (see `level_columns`).
            await self._conn.execute(
                select(stock.c.sku)
                .where(tuple_(stock.c.merchant_id, stock.c.sku, stock.c.location_id).in_(keys))
                .order_by(stock.c.merchant_id, stock.c.sku, stock.c.location_id)
                .with_for_update()
            )
        after: list[list[StockLevel]] = []
        for merchant, location_id, lines in holds:
            levels: list[StockLevel] = []
            for sku, quantity in lines:
                row = (
                    await self._conn.execute(
                        update(stock)
                        .where(
                            stock.c.merchant_id == merchant,
                            stock.c.sku == sku,
                            stock.c.location_id == location_id,
                        )
                        .values(reserved=stock.c.reserved - quantity)
                        .returning(*LEVEL)
                    )
                ).one()
                levels.append(level_of(row._mapping))
            after.append(levels)
        return after
