"""Returns in PostgreSQL: one row per return, its document written whole."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import func, select, text, update
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.ext.asyncio import AsyncConnection

from pos_kit.changes import list_page
from pos_kit.paging import PageRequest
from pos_order.adapters.tables import order_returns, refund_holds
from pos_order.domain.pricing import MAX_MERGE_HOPS
from pos_order.domain.returns import (
    Refunded,
    Return,
    ReturnLine,
    ReturnStatus,
    Settlement,
    SettlementOutcome,
    SoldLine,
    TenderRefund,
    lowest_sold,
)
from pos_order.service.ports import ReturnFilters


def _stamp(value: datetime | None) -> str | None:
    return value.isoformat() if value else None


def _when(value: str | None) -> datetime | None:
    return datetime.fromisoformat(value) if value else None


def _amounts(amounts: list[TenderRefund]) -> list[dict[str, Any]]:
    return [{"payment_id": t.payment_id, "amount": t.amount} for t in amounts]


def _settlement_to_json(s: Settlement) -> dict[str, Any]:
    return {
        "outcome": s.outcome.value,
        "amount": s.amount,
        "tender": s.tender,
        "reference": s.reference,
        "reason": s.reason,
        "settled_by": s.settled_by,
        "settled_at": _stamp(s.settled_at),
    }


def _settlement(found: dict[str, Any] | None) -> Settlement | None:
    if not found:
        return None
    return Settlement(
        SettlementOutcome(found["outcome"]),
        found["amount"],
        found["tender"],
        found["reference"],
        found["reason"],
        found["settled_by"],
        _when(found["settled_at"]),
    )


def return_to_json(r: Return) -> dict[str, Any]:
    return {
        "lines": [
            {
                "line_id": ln.line_id,
                "sku": ln.sku,
                "quantity": ln.quantity,
                "restock": ln.restock,
                "location_id": ln.location_id,
                "amount": ln.amount,
                "gift_card_id": ln.gift_card_id,
            }
            for ln in r.lines
        ],
        "reason": r.reason,
        "currency": r.currency,
        "amount": r.amount,
        "override_reason": r.override_reason,
        "tender_amounts": [
            {"payment_id": t.payment_id, "amount": t.amount} for t in r.tender_amounts
        ],
        "refunds": [
            {
                "refund_id": x.refund_id,
                "payment_id": x.payment_id,
                "amount": x.amount,
                "status": x.status,
            }
            for x in r.refunds
        ],
        "created_at": _stamp(r.created_at),
        "completed_at": _stamp(r.completed_at),
        "customer_id": r.customer_id,
        "store_credit_gift_card_id": r.store_credit_gift_card_id,
        **(
            {"exchange_order_id": r.exchange_order_id, "credited": r.credited}
            if r.exchange_order_id
            else {}
        ),
        **(
            {
                "credit_order_id": r.credit_order_id,
                "credit_amounts": _amounts(r.credit_amounts),
                "credit_set_aside": r.credit_set_aside,
            }
            if r.credit_amounts
            else {}
        ),
        **({"credit_from": _amounts(r.credit_from)} if r.credit_from else {}),
        **({"credit_carried": _amounts(r.credit_carried)} if r.credit_carried else {}),
        **({"refusal": r.refusal} if r.refusal else {}),
        **({"settlement": _settlement_to_json(r.settlement)} if r.settlement else {}),
    }


def _return(row: Any) -> Return:
    m = row._mapping
    b = m["body"]
    return Return(
        id=m["id"],
        order_id=m["order_id"],
        lines=[ReturnLine(**ln) for ln in b["lines"]],
        reason=b["reason"],
        currency=b["currency"],
        amount=b["amount"],
        status=ReturnStatus(m["status"]),
        override_reason=b["override_reason"],
        tender_amounts=[TenderRefund(**t) for t in b["tender_amounts"]],
        refunds=[Refunded(**x) for x in b["refunds"]],
        created_at=_when(b["created_at"]),
        completed_at=_when(b["completed_at"]),
        customer_id=b.get("customer_id", ""),
        store_credit_gift_card_id=b.get("store_credit_gift_card_id", ""),
        exchange_order_id=b.get("exchange_order_id", ""),
        credited=b.get("credited", 0),
        credit_order_id=b.get("credit_order_id", ""),
        credit_amounts=[TenderRefund(**t) for t in b.get("credit_amounts", [])],
        credit_set_aside=b.get("credit_set_aside", False),
        credit_from=[TenderRefund(**t) for t in b.get("credit_from", [])],
        credit_carried=[TenderRefund(**t) for t in b.get("credit_carried", [])],
        refusal=b.get("refusal", ""),
        settlement=_settlement(b.get("settlement")),
        register_id=m["register_id"],
        staff_id=m["staff_id"],
        shift_id=m["shift_id"],
        updated_at=m["updated_at"],
    )


class SqlReturns:
    def __init__(self, conn: AsyncConnection, merchant_id: str) -> None:
        self._conn = conn
        self._merchant = merchant_id

    async def refund_hold(self, order_id: str) -> tuple[bool, int]:
        h = refund_holds
        row = (
            await self._conn.execute(
                select(h.c.until > func.clock_timestamp(), h.c.generation).where(
                    h.c.merchant_id == self._merchant, h.c.order_id == order_id
                )
            )
        ).first()
        return (bool(row[0]), int(row[1])) if row else (False, 0)

    async def hold_for_refund(self, order_id: str, request_id: str, seconds: int) -> bool:
        h = refund_holds
        until = func.clock_timestamp() + func.make_interval(0, 0, 0, 0, 0, 0, seconds)
        insert = pg_insert(h).values(
            merchant_id=self._merchant,
            order_id=order_id,
            request_id=request_id,
            until=until,
            generation=1,
        )
        held = await self._conn.execute(
            insert.on_conflict_do_update(
                index_elements=[h.c.merchant_id, h.c.order_id],
                set_={
                    "request_id": request_id,
                    "until": until,
                    "generation": h.c.generation + 1,
                },
                where=(h.c.until <= func.clock_timestamp()) | (h.c.request_id == request_id),
            ).returning(h.c.generation)
        )
        return held.first() is not None

    async def release_refund_hold(self, order_id: str, request_id: str) -> None:
        h = refund_holds
        await self._conn.execute(
            update(h)
            .where(
                h.c.merchant_id == self._merchant,
                h.c.order_id == order_id,
                h.c.request_id == request_id,
            )
            .values(until=func.clock_timestamp())
        )

    async def add(self, r: Return) -> None:
        stamped = await self._conn.execute(
            pg_insert(order_returns)
            .values(
                merchant_id=self._merchant,
                id=r.id,
                order_id=r.order_id,
                customer_id=r.customer_id,
                status=r.status.value,
                refusal=r.refusal,
                body=return_to_json(r),
                created_at=r.created_at,
                touched_at=r.created_at,
                register_id=r.register_id,
                staff_id=r.staff_id,
                shift_id=r.shift_id,
            )
            .on_conflict_do_nothing()
            .returning(order_returns.c.updated_at)
        )
        r.updated_at = stamped.scalar_one_or_none() or r.updated_at

    async def save(self, r: Return) -> None:
        # A change: a new version, which has the table's trigger stamp `updated_at`, the
        # change feed's place (migration 0019); `touched_at` is the resumer's queue.
        stamped = await self._conn.execute(
            update(order_returns)
            .where(order_returns.c.merchant_id == self._merchant, order_returns.c.id == r.id)
            .values(
                status=r.status.value,
                refusal=r.refusal,
                body=return_to_json(r),
                version=order_returns.c.version + 1,
                touched_at=r.completed_at or func.now(),
            )
            .returning(order_returns.c.updated_at)
        )
        r.updated_at = stamped.scalar_one_or_none() or r.updated_at

    async def discard(self, return_id: str) -> None:
        """A pending exchange's return whose new order was cancelled: its units are free again
        (nothing was refunded or restocked for it)."""
        await self._conn.execute(
            order_returns.delete().where(
                order_returns.c.merchant_id == self._merchant,
                order_returns.c.id == return_id,
                order_returns.c.status == "pending",
            )
        )

    async def touch(self, return_id: str) -> None:
        """Looked at and left pending: the resumer comes back after its window, and the
        returns behind it in its queue get their turn first. Bookkeeping, not a change of
        the return: its place in the change feed (`updated_at`) stays."""
        await self._conn.execute(
            update(order_returns)
            .where(
                order_returns.c.merchant_id == self._merchant,
                order_returns.c.id == return_id,
                order_returns.c.status == "pending",
            )
            .values(touched_at=func.now())
        )

    async def get(self, return_id: str) -> Return | None:
        row = (
            await self._conn.execute(
                select(order_returns).where(
                    order_returns.c.merchant_id == self._merchant,
                    order_returns.c.id == return_id,
                )
            )
        ).first()
        return _return(row) if row is not None else None

    async def lowest_prices(
        self, skus: list[str], currency: str, since: datetime
    ) -> dict[str, int]:
        """The lowest price per unit each SKU sold for since `since` in `currency`, after its
        discounts (domain.returns.SoldLine), from this service's own orders."""
        rows = await self._conn.execute(
            text(
                """
                SELECT l->>'sku' AS sku, o.discount_total,
                       (l->>'unit_price')::bigint AS unit_price,
                       (l->>'quantity')::bigint AS quantity,
                       (l->>'discount')::bigint AS line_discount,
                       g.goods, g.lines_discount
                  FROM orders o
                  CROSS JOIN LATERAL (
                        SELECT coalesce(sum((x->>'unit_price')::bigint
                                            * (x->>'quantity')::bigint), 0)::bigint AS goods,
                               coalesce(sum((x->>'discount')::bigint), 0)::bigint
                                   AS lines_discount
                          FROM jsonb_array_elements(o.lines) x
                         WHERE NOT coalesce((x->>'gift_card')::boolean, false)) g
                  CROSS JOIN LATERAL jsonb_array_elements(o.lines) l
                 WHERE o.merchant_id = :merchant
                   AND o.created_at >= :since
                   AND o.currency = :currency
                   AND o.status IN ('confirmed', 'completed')
                   AND l->>'sku' = ANY(:skus)
                """
            ),
            {"merchant": self._merchant, "since": since, "currency": currency, "skus": skus},
        )
        return lowest_sold(
            [
                SoldLine(
                    row.sku,
                    row.unit_price,
                    row.quantity,
                    row.line_discount,
                    row.lines_discount,
                    row.goods,
                    row.discount_total,
                )
                for row in rows
            ]
        )

    async def lock_receiptless(self, customer_id: str) -> None:
        """Until this transaction ends, no other return without a receipt for `customer_id` is
        planned: each counts the ones before it. (No row to lock: the customer's first return
        has none yet.) Two customers sharing the key only wait for each other."""
        key = func.hashtextextended(f"receiptless:{self._merchant}:{customer_id}", 0)
        await self._conn.execute(select(func.pg_advisory_xact_lock(key)))

    async def receiptless_credited(self, customer_id: str, currency: str, since: datetime) -> int:
        """The store credit of the returns without a receipt of `customer_id` and of every
        duplicate merged into them (as far as this service has heard of the merges), made
        since `since` in `currency`: completed ones and those still being made."""
        found = await self._conn.execute(
            text(
                """
                WITH RECURSIVE merged(customer_id, hops) AS (
                    SELECT CAST(:customer AS text), 0
                    UNION
                    SELECT k.customer_id, m.hops + 1
                      FROM known_customers k JOIN merged m ON k.merged_into = m.customer_id
                     WHERE k.merchant_id = :merchant AND m.hops < :hops
                )
                SELECT coalesce(sum((r.body->>'amount')::bigint), 0)::bigint
                  FROM order_returns r
                 WHERE r.merchant_id = :merchant
                   AND r.order_id = ''
                   AND r.customer_id IN (SELECT customer_id FROM merged)
                   AND r.created_at >= :since
                   AND r.body->>'currency' = :currency
                """
            ),
            {
                "merchant": self._merchant,
                "customer": customer_id,
                "hops": MAX_MERGE_HOPS,
                "since": since,
                "currency": currency,
            },
        )
        return int(found.scalar_one())

    async def of_order(self, order_id: str) -> list[Return]:
        rows = await self._conn.execute(
            select(order_returns)
            .where(
                order_returns.c.merchant_id == self._merchant,
                order_returns.c.order_id == order_id,
            )
            .order_by(order_returns.c.created_at, order_returns.c.id)
        )
        return [_return(row) for row in rows]

    async def page(self, f: ReturnFilters, page: PageRequest) -> list[Return]:
        # By id, as every list pages: a return's id starts with the time it was asked for, so
        # this is oldest first, and a cursor stays good while more returns are made. With
        # `updated_since` (in `page.since`): the kit's change feed, oldest change first,
        # resumed from the (updated_at, id) cursor.
        query = select(order_returns).where(order_returns.c.merchant_id == self._merchant)
        for column, wanted in (
            (order_returns.c.order_id, f.order_id),
            (order_returns.c.status, f.status),
            (order_returns.c.register_id, f.register_id),
            (order_returns.c.staff_id, f.staff_id),
        ):
            if wanted:
                query = query.where(column == wanted)
        if f.created_since is not None:
            query = query.where(order_returns.c.created_at >= f.created_since)
        if f.created_before is not None:
            query = query.where(order_returns.c.created_at < f.created_before)
        rows = await list_page(
            self._conn, query, order_returns.c.updated_at, order_returns.c.id, page
        )
        return [_return(row) for row in rows]
