"""PostgreSQL repositories and unit of work for promotions and coupons."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import (
    ColumnElement,
    Row,
    Select,
    and_,
    delete,
    func,
    insert,
    or_,
    select,
    union_all,
    update,
)
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from pos_kit.changes import list_page
from pos_kit.paging import PageRequest
from pos_kit.uow import UnitOfWork
from pos_promotion.adapters import definition, events
from pos_promotion.adapters.tables import (
    coupon_reservations,
    coupons,
    customer_merges,
    promotions,
    retired_groups,
)
from pos_promotion.domain.coupons import Coupon, CouponStatus, Reservation
from pos_promotion.domain.model import (
    MoneyInput,
    Promotion,
    Schedule,
    Status,
    first_kind_offer,
    window,
)
from pos_promotion.domain.rules import Kind, Level

_COLUMNS = (
    promotions.c.id,
    promotions.c.name,
    promotions.c.percent_off_bps,
    promotions.c.minimum_amount,
    promotions.c.minimum_currency,
    promotions.c.definition,
    promotions.c.status,
    promotions.c.version,
    promotions.c.used,
    promotions.c.created_at,
    promotions.c.updated_at,
    promotions.c.ended_at,
)


def _select(merchant_id: str) -> Select[Any]:
    return select(*_COLUMNS).where(promotions.c.merchant_id == merchant_id)


def _promotion(row: Row[Any]) -> Promotion:
    m = row._mapping
    if m["definition"]:
        offer = definition.from_json(m["id"], m["name"], m["definition"])
    else:  # stored by the first version: a percent off the order from a subtotal
        minimum = (
            None
            if m["minimum_currency"] is None
            else MoneyInput(m["minimum_amount"], m["minimum_currency"])
        )
        offer = first_kind_offer(m["id"], m["name"], m["percent_off_bps"], minimum)
    return Promotion(
        offer,
        Status(m["status"]),
        m["version"],
        m["used"],
        m["created_at"],
        m["updated_at"],
        m["ended_at"],
    )


def _values(p: Promotion) -> dict[str, Any]:
    offer = p.offer
    first_kind = offer.rule.kind is Kind.PERCENT_OFF and offer.rule.level is Level.ORDER
    minimum = offer.conditions.min_amount
    opens, closes = window(offer.conditions)
    return {
        "name": offer.name,
        "percent_off_bps": offer.rule.percent_bps if first_kind else 0,
        "minimum_amount": minimum if first_kind and minimum else None,
        "minimum_currency": offer.currency if first_kind and minimum else None,
        "active": p.active,
        "definition": definition.to_json(offer),
        "status": p.status.value,
        "version": p.version,
        "used": p.used,
        "ended_at": p.ended_at,
        "opens_at": opens,
        "closes_at": closes,
    }


class SqlPromotionRepository:
    def __init__(self, conn: AsyncConnection, merchant_id: str) -> None:
        self._conn = conn
        self._merchant = merchant_id

    async def add(self, promotion: Promotion) -> None:
        row = (
            await self._conn.execute(
                insert(promotions)
                .values(merchant_id=self._merchant, id=promotion.id, **_values(promotion))
                .returning(promotions.c.created_at, promotions.c.updated_at)
            )
        ).one()
        promotion.created_at, promotion.updated_at = row.created_at, row.updated_at

    async def get(self, promotion_id: str, lock: bool = False) -> Promotion | None:
        query = _select(self._merchant).where(
            promotions.c.id == promotion_id, promotions.c.status != Status.DELETED.value
        )
        if lock:
            query = query.with_for_update()
        row = (await self._conn.execute(query)).first()
        return _promotion(row) if row else None

    async def save(self, promotion: Promotion, seen_version: int) -> bool:
        """Writes it if it is still at `seen_version`; False when another write came first."""
        row = (
            await self._conn.execute(
                update(promotions)
                .where(
                    promotions.c.merchant_id == self._merchant,
                    promotions.c.id == promotion.id,
                    promotions.c.version == seen_version,
                )
                .values(**_values(promotion))
                .returning(promotions.c.updated_at)
            )
        ).first()
        if row is None:
            return False
        promotion.updated_at = row.updated_at
        return True

    async def remove(self, promotion_id: str) -> None:
        """Its coupons (never reserved, or it would be `used`) go; the promotion stays as a
        tombstone for the change feed: deleted, at a new version (the trigger stamps it)."""
        await self._conn.execute(
            delete(coupons).where(
                coupons.c.merchant_id == self._merchant, coupons.c.promotion_id == promotion_id
            )
        )
        await self._conn.execute(
            update(promotions)
            .where(promotions.c.merchant_id == self._merchant, promotions.c.id == promotion_id)
            .values(status=Status.DELETED.value, active=False, version=promotions.c.version + 1)
        )

    async def active(self) -> list[Promotion]:
        query = _select(self._merchant).where(
            promotions.c.status == Status.ACTIVE.value, _not_finished(datetime.now(UTC))
        )
        return [_promotion(r) for r in (await self._conn.execute(query)).all()]

    async def live(self) -> list[Promotion]:
        """Every promotion not ended (active or paused), whatever its window."""
        live = (Status.ACTIVE.value, Status.PAUSED.value)
        query = _select(self._merchant).where(promotions.c.status.in_(live))
        return [_promotion(r) for r in (await self._conn.execute(query.order_by(promotions.c.id)))]

    async def list(
        self,
        page: PageRequest,
        status: Status | None = None,
        schedule: Schedule | None = None,
        at: datetime | None = None,
    ) -> list[Promotion]:
        query = _select(self._merchant)
        if status is not None:
            query = query.where(promotions.c.status == status.value)
        elif page.since is None:
            # A deleted one is a tombstone of the change feed only.
            query = query.where(promotions.c.status != Status.DELETED.value)
        if schedule is not None:
            query = query.where(_in_schedule(schedule, at or datetime.now(UTC)))
        rows = await list_page(self._conn, query, promotions.c.updated_at, promotions.c.id, page)
        return [_promotion(r) for r in rows]

    async def mark_used(self, promotion_ids: set[str]) -> set[str]:
        rows = await self._conn.execute(
            update(promotions)
            .where(
                promotions.c.merchant_id == self._merchant,
                promotions.c.id.in_(promotion_ids),
                promotions.c.used.is_(False),
            )
            .values(used=True, version=promotions.c.version + 1)
            .returning(promotions.c.id)
        )
        return set(rows.scalars())


# How long before a read an active promotion's window must have closed for the checkout's
# reads of offers to leave it out: pricing gives it nothing from then on (model.schedule_of:
# `finished` is for every location). A day rather than none, so the answer is the one the
# whole list gave: a wall clock going back at a change of daylight saving time repeats the
# hour a window closed in, and a calculation may name a moment (`at`) just before the read.
FINISHED_BEFORE = timedelta(days=1)


def _not_finished(at: datetime) -> ColumnElement[bool]:
    """Not closed FINISHED_BEFORE `at` (a window with no end never closes; one not opened
    yet is kept: it opens while it is cached)."""
    closes = promotions.c.closes_at
    return or_(closes.is_(None), closes > at - FINISHED_BEFORE)


def _in_schedule(schedule: Schedule, at: datetime) -> ColumnElement[bool]:
    """model.schedule_of as SQL, on the stored window."""
    opens, closes = promotions.c.opens_at, promotions.c.closes_at
    if schedule is Schedule.SCHEDULED:
        return opens > at
    if schedule is Schedule.FINISHED:
        return and_(or_(opens.is_(None), opens <= at), closes <= at)
    return and_(or_(opens.is_(None), opens <= at), or_(closes.is_(None), closes > at))


def _coupon(row: Any) -> Coupon:
    m = row._mapping
    return Coupon(
        m["id"],
        m["promotion_id"],
        m["code_hint"],
        m["max_uses"],
        m["max_uses_per_customer"],
        m["redeemed_count"],
        m["reserved_count"],
        m["expires_at"],
        m["created_at"],
        status=CouponStatus(m["status"]),
        deactivated_at=m["deactivated_at"],
        updated_at=m["updated_at"],
    )


_COUPON_COLUMNS = (
    coupons.c.id,
    coupons.c.promotion_id,
    coupons.c.code_hint,
    coupons.c.max_uses,
    coupons.c.max_uses_per_customer,
    coupons.c.redeemed_count,
    coupons.c.reserved_count,
    coupons.c.expires_at,
    coupons.c.created_at,
    coupons.c.status,
    coupons.c.deactivated_at,
    coupons.c.updated_at,
)


class SqlCouponRepository:
    def __init__(self, conn: AsyncConnection, merchant_id: str) -> None:
        self._conn = conn
        self._merchant = merchant_id

    def _select(self) -> Select[Any]:
        return select(*_COUPON_COLUMNS).where(coupons.c.merchant_id == self._merchant)

    async def add(self, coupon: Coupon, code_hash: bytes) -> bool:
        """False when the code is taken (by this merchant): the caller says which one."""
        row = (
            await self._conn.execute(
                pg_insert(coupons)
                .values(
                    merchant_id=self._merchant,
                    id=coupon.id,
                    promotion_id=coupon.promotion_id,
                    code_hash=code_hash,
                    code_hint=coupon.code_hint,
                    max_uses=coupon.max_uses,
                    max_uses_per_customer=coupon.max_uses_per_customer,
                    expires_at=coupon.expires_at,
                )
                .on_conflict_do_nothing(constraint="coupons_code_key")
                .returning(coupons.c.created_at, coupons.c.updated_at)
            )
        ).first()
        if row is None:
            return False
        coupon.created_at, coupon.updated_at = row.created_at, row.updated_at
        return True

    async def by_hashes(self, hashes: list[bytes], lock: bool = False) -> dict[bytes, Coupon]:
        query = select(coupons.c.code_hash, *_COUPON_COLUMNS).where(
            coupons.c.merchant_id == self._merchant, coupons.c.code_hash.in_(hashes)
        )
        if lock:
            # By id, so two checkouts locking the same coupons never wait on each other in a
            # cycle.
            query = query.order_by(coupons.c.id).with_for_update()
        rows = (await self._conn.execute(query)).all()
        return {bytes(r.code_hash): _coupon(r) for r in rows}

    async def by_ids(self, coupon_ids: list[str], lock: bool = False) -> dict[str, Coupon]:
        query = self._select().where(coupons.c.id.in_(coupon_ids))
        if lock:
            query = query.order_by(coupons.c.id).with_for_update()
        rows = (await self._conn.execute(query)).all()
        return {r.id: _coupon(r) for r in rows}

    async def get(self, coupon_id: str, lock: bool = False) -> Coupon | None:
        query = self._select().where(coupons.c.id == coupon_id)
        if lock:
            query = query.with_for_update()
        row = (await self._conn.execute(query)).first()
        return _coupon(row) if row else None

    async def save_status(self, coupon: Coupon) -> None:
        stamped = await self._conn.execute(
            update(coupons)
            .where(coupons.c.merchant_id == self._merchant, coupons.c.id == coupon.id)
            .values(status=coupon.status.value, deactivated_at=coupon.deactivated_at)
            .returning(coupons.c.updated_at)
        )
        coupon.updated_at = stamped.scalar_one_or_none() or coupon.updated_at

    async def of_promotion(
        self, promotion_id: str, page: PageRequest, status: CouponStatus | None = None
    ) -> list[Coupon]:
        query = self._select().where(coupons.c.promotion_id == promotion_id)
        if status is not None:
            query = query.where(coupons.c.status == status.value)
        # With `updated_since` (in `page.since`): the kit's change feed, oldest change first,
        # resumed from the (updated_at, id) cursor; otherwise by id.
        rows = await list_page(self._conn, query, coupons.c.updated_at, coupons.c.id, page)
        return [_coupon(r) for r in rows]

    async def count(self, coupon: Coupon) -> None:
        """The coupon's counts stored, and its `updated_at` as the change stamped it: what is
        answered and announced with it (`CouponRedeemed`) is the coupon as GET then reads it."""
        stamped = await self._conn.execute(
            update(coupons)
            .where(coupons.c.merchant_id == self._merchant, coupons.c.id == coupon.id)
            .values(redeemed_count=coupon.redeemed_count, reserved_count=coupon.reserved_count)
            .returning(coupons.c.updated_at)
        )
        coupon.updated_at = stamped.scalar_one_or_none() or coupon.updated_at

    async def lock_order(self, order_id: str) -> None:
        key = func.hashtext(f"coupon-order:{self._merchant}:{order_id}")
        await self._conn.execute(select(func.pg_advisory_xact_lock(key)))

    async def reservations(self, order_id: str) -> list[Reservation]:
        rows = (
            await self._conn.execute(
                select(coupon_reservations)
                .where(
                    coupon_reservations.c.merchant_id == self._merchant,
                    coupon_reservations.c.order_id == order_id,
                )
                .order_by(coupon_reservations.c.coupon_id)
            )
        ).all()
        return [Reservation(r.order_id, r.coupon_id, r.customer_id, r.status) for r in rows]

    async def uses_by(self, coupon_id: str, customer_id: str) -> int:
        """Reservations held or redeemed by a customer, all orders, under any id the person
        had: the customer a named duplicate was merged into, and every duplicate merged into
        that one (`customer_merges`, kept flat so this is one statement). A reservation
        counts this under its lock on the coupon row, which every checkout of the coupon
        takes whichever id it names: two sales of one person never both pass."""
        merged = customer_merges.c
        survivor = func.coalesce(
            select(merged.survivor_id)
            .where(merged.merchant_id == self._merchant, merged.duplicate_id == customer_id)
            .scalar_subquery(),
            customer_id,
        )
        known_as = union_all(
            select(survivor),
            select(merged.duplicate_id).where(
                merged.merchant_id == self._merchant, merged.survivor_id == survivor
            ),
        )
        held = and_(
            coupon_reservations.c.merchant_id == self._merchant,
            coupon_reservations.c.coupon_id == coupon_id,
            coupon_reservations.c.customer_id.in_(known_as),
            coupon_reservations.c.status.in_(("reserved", "redeemed")),
        )
        query = select(func.count()).select_from(coupon_reservations).where(held)
        return int((await self._conn.execute(query)).scalar_one())

    async def save_reservation(self, r: Reservation) -> None:
        await self._conn.execute(
            insert(coupon_reservations).values(
                merchant_id=self._merchant,
                order_id=r.order_id,
                coupon_id=r.coupon_id,
                customer_id=r.customer_id,
                status=r.status,
            )
        )

    async def set_status(self, r: Reservation) -> None:
        await self._conn.execute(
            update(coupon_reservations)
            .where(
                coupon_reservations.c.merchant_id == self._merchant,
                coupon_reservations.c.order_id == r.order_id,
                coupon_reservations.c.coupon_id == r.coupon_id,
            )
            .values(status=r.status, updated_at=func.now())
        )


class SqlCustomerMerges:
    """Which duplicate went to which customer, as the customer service's merges said."""

    def __init__(self, conn: AsyncConnection, merchant_id: str) -> None:
        self._conn = conn
        self._merchant = merchant_id

    async def lock(self) -> None:
        """Until the transaction ends, no other merge of the merchant is recorded: two merges of
        a chain (X into Y, Y into Z) recorded at once by two replicas would each miss the
        other's row and leave X pointing at a duplicate."""
        key = func.hashtext(f"customer-merges:{self._merchant}")
        await self._conn.execute(select(func.pg_advisory_xact_lock(key)))

    async def survivor_of(self, customer_id: str) -> str:
        row = (
            await self._conn.execute(
                select(customer_merges.c.survivor_id).where(
                    customer_merges.c.merchant_id == self._merchant,
                    customer_merges.c.duplicate_id == customer_id,
                )
            )
        ).first()
        return str(row.survivor_id) if row else customer_id

    async def record(self, duplicate_id: str, survivor_id: str) -> None:
        """The duplicate is the survivor now, and so is everything merged into it before."""
        await self._conn.execute(
            pg_insert(customer_merges)
            .values(merchant_id=self._merchant, duplicate_id=duplicate_id, survivor_id=survivor_id)
            .on_conflict_do_update(
                constraint="customer_merges_pkey", set_={"survivor_id": survivor_id}
            )
        )
        await self._conn.execute(
            update(customer_merges)
            .where(
                customer_merges.c.merchant_id == self._merchant,
                customer_merges.c.survivor_id == duplicate_id,
            )
            .values(survivor_id=survivor_id)
        )


class SqlActivePromotions:
    """The checkout's read of a merchant's active promotions, on an autocommit connection (one
    statement sees one snapshot; a unit of work would add BEGIN and ROLLBACK round trips).
    The cache (adapters/cache.py) calls it only when it holds nothing for the merchant."""

    def __init__(self, engine: AsyncEngine) -> None:
        self._engine = engine

    async def active(self, merchant_id: str) -> list[Promotion]:
        """The active promotions but those whose window closed (a merchant's past campaigns
        never ended by hand): pricing drops them, so they are neither read nor cached."""
        query = _select(merchant_id).where(
            promotions.c.status == Status.ACTIVE.value, _not_finished(datetime.now(UTC))
        )
        async with self._engine.connect() as conn:
            reader = await conn.execution_options(isolation_level="AUTOCOMMIT")
            rows = (await reader.execute(query)).all()
        return [_promotion(r) for r in rows]

    async def is_active(self, merchant_id: str, promotion_id: str) -> bool:
        query = select(promotions.c.id).where(
            promotions.c.merchant_id == merchant_id,
            promotions.c.id == promotion_id,
            promotions.c.status == Status.ACTIVE.value,
        )
        async with self._engine.connect() as conn:
            reader = await conn.execution_options(isolation_level="AUTOCOMMIT")
            return (await reader.execute(query)).first() is not None

    async def coupons(self, merchant_id: str, hashes: list[bytes]) -> dict[bytes, Coupon]:
        async with self._engine.connect() as conn:
            reader = await conn.execution_options(isolation_level="AUTOCOMMIT")
            return await SqlCouponRepository(reader, merchant_id).by_hashes(hashes)

    async def uses_by(self, merchant_id: str, coupon_id: str, customer_id: str) -> int:
        async with self._engine.connect() as conn:
            reader = await conn.execution_options(isolation_level="AUTOCOMMIT")
            return await SqlCouponRepository(reader, merchant_id).uses_by(coupon_id, customer_id)


class SqlRetiredGroups:
    def __init__(self, conn: AsyncConnection, merchant_id: str) -> None:
        self._conn = conn
        self._merchant = merchant_id

    async def lock(self, group_ids: set[str]) -> None:
        # In one order: two writes naming overlapping groups never wait on each other crosswise.
        for group_id in sorted(group_ids):
            key = func.hashtext(f"customer-group:{self._merchant}:{group_id}")
            await self._conn.execute(select(func.pg_advisory_xact_lock(key)))

    async def retired(self, group_ids: set[str]) -> set[str]:
        if not group_ids:
            return set()
        rows = await self._conn.execute(
            select(retired_groups.c.group_id).where(
                retired_groups.c.merchant_id == self._merchant,
                retired_groups.c.group_id.in_(sorted(group_ids)),
            )
        )
        return set(rows.scalars())

    async def retire(self, group_id: str, retirement_id: str) -> None:
        await self._conn.execute(
            pg_insert(retired_groups)
            .values(merchant_id=self._merchant, group_id=group_id, retirement_id=retirement_id)
            .on_conflict_do_nothing()
        )

    async def reinstate(self, group_id: str, retirement_id: str) -> None:
        await self._conn.execute(
            delete(retired_groups).where(
                retired_groups.c.merchant_id == self._merchant,
                retired_groups.c.group_id == group_id,
                retired_groups.c.retirement_id == retirement_id,
            )
        )


class PromotionUow(UnitOfWork):
    """The kit's unit of work plus this service's repositories and event mapping."""

    events = events.REGISTRY

    @property
    def promotions(self) -> SqlPromotionRepository:
        return SqlPromotionRepository(self.conn, self.merchant_id)

    @property
    def coupons(self) -> SqlCouponRepository:
        return SqlCouponRepository(self.conn, self.merchant_id)

    @property
    def merges(self) -> SqlCustomerMerges:
        return SqlCustomerMerges(self.conn, self.merchant_id)

    @property
    def retired_groups(self) -> SqlRetiredGroups:
        return SqlRetiredGroups(self.conn, self.merchant_id)
