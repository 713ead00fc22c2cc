"""PostgreSQL repositories and unit of work for orders."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import asdict
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import (
    ARRAY,
    BindParameter,
    LargeBinary,
    Row,
    bindparam,
    delete,
    exists,
    func,
    or_,
    select,
    text,
    update,
)
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.ext.asyncio import AsyncConnection

from pos_kit.changes import list_page
from pos_kit.direct import Prepared, bound, keyed
from pos_kit.errors import DomainError, ErrorKind, FieldViolation, RequestIdReused
from pos_kit.ids import new_nonce
from pos_kit.money import Money
from pos_kit.paging import PageRequest
from pos_kit.uow import UnitOfWork
from pos_order.adapters import events
from pos_order.adapters.returns_repository import SqlReturns
from pos_order.adapters.tables import (
    catalog_prices,
    checkout_starts,
    kit,
    known_customers,
    order_settings,
    order_settings_leases,
    orders,
    selling_locations,
)
from pos_order.domain.coupons import Coupons
from pos_order.domain.model import (
    ENDED,
    Capture,
    DraftAsk,
    DraftPricing,
    Fulfillment,
    FulfillmentRequest,
    FulfillmentStatus,
    FulfillmentType,
    GiftCardAsk,
    HoldState,
    LineRequest,
    Order,
    OrderLine,
    OrderStatus,
    PointsState,
    PricedItem,
    Saga,
    SagaState,
    SellingLocation,
    StatusChange,
    Tender,
    TenderRecord,
    TenderState,
    Totals,
)
from pos_order.domain.pricing import MAX_MERGE_HOPS, Buyer, KnownCustomer, LineDiscount, Manual
from pos_order.domain.returns import ReceiptlessLimit
from pos_order.domain.tax import LocationTax
from pos_order.service.ports import OrderFilters, OrderSettings, Start


def _when(value: str | None) -> datetime | None:
    return datetime.fromisoformat(value) if value else None


def _stamp(value: datetime | None) -> str | None:
    return value.isoformat() if value else None


def fulfillments_to_json(found: list[Fulfillment]) -> list[dict[str, Any]]:
    return [
        {
            "id": f.id,
            "type": f.type.value,
            "location_id": f.location_id,
            "status": f.status.value,
            "amount": f.amount,
            "captured": f.captured,
            **({"refunded": f.refunded} if f.refunded else {}),
            "reservation_id": f.reservation_id,
            "hold": f.hold.value if f.hold else None,
            "carrier": f.carrier,
            "tracking_number": f.tracking_number,
            "ship_to": f.ship_to,
            "expires_at": _stamp(f.expires_at),
            "destination": list(f.destination) if f.destination else None,
        }
        for f in found
    ]


def _fulfillments(found: list[dict[str, Any]]) -> list[Fulfillment]:
    return [
        Fulfillment(
            id=f["id"],
            type=FulfillmentType(f["type"]),
            location_id=f["location_id"],
            status=FulfillmentStatus(f["status"]),
            amount=f["amount"],
            captured=f["captured"],
            refunded=f.get("refunded", 0),
            reservation_id=f["reservation_id"],
            hold=HoldState(f["hold"]) if f["hold"] else None,
            carrier=f["carrier"],
            tracking_number=f["tracking_number"],
            ship_to=f["ship_to"],
            expires_at=_when(f["expires_at"]),
            destination=tuple(f["destination"]) if f.get("destination") else None,
        )
        for f in found
    ]


def saga_to_json(saga: Saga) -> dict[str, Any]:
    return {
        "state": saga.state.value,
        "confirm_requested": saga.confirm_requested,
        "tenders": [
            {
                "n": t.n,
                "tender": t.tender.value,
                "amount": t.amount,
                "request_id": t.request_id,
                "asked_by": t.asked_by,
                **({"fingerprint": t.fingerprint} if t.fingerprint else {}),
                "payment_id": t.payment_id,
                "state": t.state.value,
                "captured": t.captured,
                "refunded": t.refunded,
                "refunded_seen": t.refunded_seen,
                **({"credit_refunded": t.credit_refunded} if t.credit_refunded else {}),
                **({"voided": t.voided} if t.voided else {}),
                **({"to_record": True} if t.to_record else {}),
                **({"cash_tendered": t.cash_tendered} if t.cash_tendered is not None else {}),
                **({"record_refused": t.record_refused} if t.record_refused else {}),
                **({"register_id": t.register_id, "staff_id": t.staff_id} if t.register_id else {}),
            }
            for t in saga.tenders
        ],
        "captures": [_capture_json(c) for c in saga.captures],
        "done_steps": saga.done_steps,
        "cancel_reason": saga.cancel_reason,
        "hold_ttl": saga.hold_ttl,
        "coupons": saga.coupons.to_json(),
        "points": saga.points,
        "points_discount": saga.points_discount,
        "points_state": saga.points_state.value if saga.points_state else None,
        **(
            {
                "exchange_of": saga.exchange_of,
                "exchange_return_id": saga.exchange_return_id,
                "credit": saga.credit,
                "credit_returned": saga.credit_returned,
            }
            if saga.exchange_of
            else {}
        ),
        **({"announce_when_held": True} if saga.announce_when_held else {}),
        **({"one_call_sale": True} if saga.one_call_sale else {}),
        **({"cancelling": saga.cancelling} if saga.cancelling else {}),
        **({"stepping": saga.stepping} if saga.stepping else {}),
        **({"expiring": saga.expiring} if saga.expiring else {}),
        **(
            {"cancelled_at": {k: list(v) for k, v in saga.cancelled_at.items()}}
            if saga.cancelled_at
            else {}
        ),
        **({"refunds": [_capture_json(r) for r in saga.refunds]} if saga.refunds else {}),
        **(
            {
                "cancel_adjusted": {
                    fid: {sku: list(a) for sku, a in by_sku.items()}
                    for fid, by_sku in saga.cancel_adjusted.items()
                }
            }
            if saga.cancel_adjusted
            else {}
        ),
        **({"capture_cut": saga.capture_cut} if saga.capture_cut else {}),
        **({"draft": _draft_json(saga.draft)} if saga.draft is not None else {}),
        **({"submits": saga.submits} if saga.submits else {}),
        **({"tax_inclusive": saga.tax_inclusive} if saga.tax_inclusive is not None else {}),
        **({"tax_exempt": True} if saga.tax_exempt else {}),
        **({"refusal": _refusal_json(saga.refusal)} if saga.refusal is not None else {}),
    }


def _refusal_json(e: DomainError) -> dict[str, Any]:
    return {
        "message": e.message,
        "code": e.code,
        "kind": e.kind.value,
        "violations": [[v.field, v.description] for v in e.violations],
        "metadata": dict(e.metadata),
    }


def _refusal(found: dict[str, Any] | None) -> DomainError | None:
    if not found:
        return None
    return DomainError(
        found["message"],
        found["code"],
        [FieldViolation(f, d) for f, d in found["violations"]],
        dict(found["metadata"]),
        ErrorKind(found["kind"]),
    )


def _money_json(m: Money | None) -> list[Any] | None:
    return [m.amount, m.currency] if m is not None else None


def _money(found: list[Any] | None) -> Money | None:
    return Money(found[0], found[1]) if found else None


def _manual_json(m: Manual | None) -> list[Any] | None:
    return [m.kind, m.value, m.reason, m.requested_by] if m is not None else None


def _manual(found: list[Any] | None) -> Manual | None:
    return Manual(*found) if found else None


def _draft_json(ask: DraftAsk) -> dict[str, Any]:
    return {
        "lines": [
            {
                "sku": ln.sku,
                "quantity": ln.quantity,
                "fulfillment": ln.fulfillment,
                "manual": _manual_json(ln.manual),
                "unit_price": _money_json(ln.unit_price),
                # Only a card's value: a pre-printed code is never taken by an order kept
                # for later (CreateOrder refuses one).
                "gift_card": _money_json(ln.gift_card.amount) if ln.gift_card else None,
            }
            for ln in ask.lines
        ],
        "fulfillments": [
            {
                "type": f.type.value,
                "location_id": f.location_id,
                "ship_to": f.ship_to,
                "destination": list(f.destination) if f.destination else None,
            }
            for f in ask.fulfillments
        ],
        # Never its coupon codes: a code is not stored (the submit that was given them has
        # them), only how many there are to reserve.
        "coupons_given": ask.coupons_given,
        "order_manual": _manual_json(ask.order_manual),
        "redeem_points": ask.redeem_points,
        **({"was": _draft_pricing_json(ask.was)} if ask.was is not None else {}),
    }


def _draft_pricing_json(was: DraftPricing) -> dict[str, Any]:
    t = was.totals
    return {
        "customer_id": was.customer_id,
        "currency": t.total.currency,
        "lines": _lines_json(was.lines),
        "totals": [t.subtotal.amount, t.discount.amount, t.tax.amount, t.total.amount],
        "discounts_applied": was.discounts_applied,
        "fulfillments": fulfillments_to_json(was.fulfillments),
        "points": was.points,
        "points_discount": was.points_discount,
        "tax_inclusive": was.tax_inclusive,
        "tax_exempt": was.tax_exempt,
    }


def _draft_pricing(found: dict[str, Any] | None) -> DraftPricing | None:
    if not found:
        return None
    cur = found["currency"]
    return DraftPricing(
        found["customer_id"],
        _lines(found["lines"], cur),
        Totals(*(Money(amount, cur) for amount in found["totals"])),
        found["discounts_applied"],
        _fulfillments(found["fulfillments"]),
        found["points"],
        found["points_discount"],
        found["tax_inclusive"],
        found["tax_exempt"],
    )


def _draft(found: dict[str, Any] | None) -> DraftAsk | None:
    if not found:
        return None
    lines = []
    for ln in found["lines"]:
        card = _money(ln.get("gift_card"))
        lines.append(
            LineRequest(
                ln["sku"],
                ln["quantity"],
                ln["fulfillment"],
                _manual(ln.get("manual")),
                _money(ln.get("unit_price")),
                GiftCardAsk(card) if card is not None else None,
            )
        )
    return DraftAsk(
        lines,
        [
            FulfillmentRequest(
                FulfillmentType(f["type"]),
                f["location_id"],
                f["ship_to"],
                tuple(f["destination"]) if f.get("destination") else None,
            )
            for f in found["fulfillments"]
        ],
        (),
        _manual(found.get("order_manual")),
        found.get("redeem_points", 0),
        found.get("coupons_given", 0),
        _draft_pricing(found.get("was")),
    )


def _capture_json(c: Capture) -> dict[str, Any]:
    return {
        "request_id": c.request_id,
        "payment_id": c.payment_id,
        "amount": c.amount,
        "fulfillment_id": c.fulfillment_id,
        "done": c.done,
    }


def _saga(found: dict[str, Any]) -> Saga:
    if not found:  # an order sold before the saga was persisted
        return Saga(SagaState.DONE)
    return Saga(
        state=SagaState(found["state"]),
        confirm_requested=found["confirm_requested"],
        tenders=[
            TenderRecord(
                n=t["n"],
                tender=Tender(t["tender"]),
                amount=t["amount"],
                request_id=t["request_id"],
                asked_by=t["asked_by"],
                fingerprint=t.get("fingerprint", ""),
                payment_id=t["payment_id"],
                state=TenderState(t["state"]),
                captured=t["captured"],
                refunded=t["refunded"],
                refunded_seen=t.get("refunded_seen", 0),
                credit_refunded=t.get("credit_refunded", 0),
                voided=t.get("voided", 0),
                to_record=t.get("to_record", False),
                cash_tendered=t.get("cash_tendered"),
                record_refused=t.get("record_refused", ""),
                register_id=t.get("register_id", ""),
                staff_id=t.get("staff_id", ""),
            )
            for t in found["tenders"]
        ],
        captures=[Capture(**c) for c in found["captures"]],
        done_steps=list(found["done_steps"]),
        cancel_reason=found["cancel_reason"],
        hold_ttl=found.get("hold_ttl", 0),
        coupons=Coupons.from_json(found.get("coupons")),
        points=found.get("points", 0),
        points_discount=found.get("points_discount", 0),
        points_state=PointsState(found["points_state"]) if found.get("points_state") else None,
        exchange_of=found.get("exchange_of", ""),
        exchange_return_id=found.get("exchange_return_id", ""),
        credit=found.get("credit", 0),
        credit_returned=found.get("credit_returned", 0),
        announce_when_held=found.get("announce_when_held", False),
        one_call_sale=found.get("one_call_sale", False),
        cancelling=list(found.get("cancelling", [])),
        stepping=list(found.get("stepping", [])),
        expiring=list(found.get("expiring", [])),
        cancelled_at={k: (v[0], v[1]) for k, v in found.get("cancelled_at", {}).items()},
        refunds=[Capture(**r) for r in found.get("refunds", [])],
        cancel_adjusted={
            fid: {sku: (a[0], a[1]) for sku, a in by_sku.items()}
            for fid, by_sku in found.get("cancel_adjusted", {}).items()
        },
        capture_cut={
            fid: {f: int(a) for f, a in by.items()}
            for fid, by in found.get("capture_cut", {}).items()
        },
        draft=_draft(found.get("draft")),
        submits=found.get("submits", 0),
        tax_inclusive=found.get("tax_inclusive"),
        tax_exempt=found.get("tax_exempt", False),
        refusal=_refusal(found.get("refusal")),
    )


def _lines(found: list[dict[str, Any]], cur: str) -> list[OrderLine]:
    return [
        OrderLine(
            ln["sku"],
            ln["name"],
            ln["quantity"],
            Money(ln["unit_price"], cur),
            ln.get("fulfillment_id", ""),
            ln.get("tax_category", ""),
            discount=ln.get("discount", 0),
            tax=ln.get("tax", 0),
            discounts=[LineDiscount(*d) for d in ln.get("discounts", [])],
            taxes=[(name, amount) for name, amount in ln.get("taxes", [])],
            tax_rates=dict(ln.get("tax_rates") or {}),
            tax_compound=dict(ln.get("tax_compound") or {}),
            product_id=ln.get("product_id", ""),
            category=ln.get("category", ""),
            # Lines saved before they had ids: by their place, as they were priced.
            id=ln.get("id") or f"L{i + 1}",
            gift_card=ln.get("gift_card", False),
            code_supplied=ln.get("code_supplied", False),
            gift_card_id=ln.get("gift_card_id", ""),
            gift_card_last4=ln.get("gift_card_last4", ""),
            below_cost=ln.get("below_cost", False),
        )
        for i, ln in enumerate(found)
    ]


def _order(row: Row[Any]) -> Order:
    m = row._mapping
    cur = m["currency"]
    saga = _saga(m["saga"])
    if not m["saga"] and m["payment_id"]:
        # Sold before the saga: its one captured payment.
        saga.tenders.append(
            TenderRecord(
                1,
                Tender.CARD,
                m["total"],
                "",
                payment_id=m["payment_id"],
                state=TenderState.CAPTURED,
                captured=m["total"],
            )
        )
    return Order(
        id=m["id"],
        location_id=m["location_id"],
        customer_id=m["customer_id"],
        lines=_lines(m["lines"], cur),
        totals=Totals(
            Money(m["subtotal"], cur),
            Money(m["discount_total"], cur),
            Money(m["tax_total"], cur),
            Money(m["total"], cur),
        ),
        discounts_applied=m["discounts_applied"],
        status=OrderStatus(m["status"]),
        channel=m["channel"],
        fulfillments=_fulfillments(m["fulfillments"]),
        saga=saga,
        notes=m["notes"],
        metadata=dict(m["metadata"]),
        version=m["version"],
        timeline=[
            StatusChange(c["status"], datetime.fromisoformat(c["at"]), c.get("reason", ""))
            for c in m["timeline"]
        ],
        created_at=m["created_at"],
        updated_at=m["updated_at"],
        expires_at=m["due_at"] if m["status"] == OrderStatus.PENDING_PAYMENT.value else None,
        register_id=m["register_id"],
        staff_id=m["staff_id"],
    )


def _due_at(order: Order) -> datetime | None:
    """When the resumer must look at the order whoever else does: an unconfirmed order's holds
    run out; a pickup waits no longer."""
    if order.status is OrderStatus.PENDING_PAYMENT and order.saga.state is SagaState.RUNNING:
        return order.expires_at
    if order.saga.state is SagaState.DONE and (order.coupons_due or order.tenders_to_record_now):
        # A redemption (confirmed) or a release (cancelled) that could not be asked yet, or
        # cash taken while the payment service was away: the resumer asks it on its next pass
        # (and on each pass after while that service is still away). Cash whose record was
        # refused for good waits for a person, not for the resumer.
        return order.updated_at
    if order.status is OrderStatus.CONFIRMED:
        waits = [
            f.expires_at
            for f in order.fulfillments
            if f.type is FulfillmentType.PICKUP and f.status not in ENDED and f.expires_at
        ]
        return min(waits) if waits else None
    return None


def _lines_json(lines: list[OrderLine]) -> list[dict[str, Any]]:
    return [
        {
            "sku": ln.sku,
            "name": ln.name,
            "quantity": ln.quantity,
            "unit_price": ln.unit_price.amount,
            "fulfillment_id": ln.fulfillment_id,
            "tax_category": ln.tax_category,
            "discount": ln.discount,
            "tax": ln.tax,
            "discounts": [
                [d.promotion_id, d.amount, d.reason, d.requested_by] for d in ln.discounts
            ],
            "taxes": [[name, amount] for name, amount in ln.taxes],
            "tax_rates": ln.tax_rates,
            **({"tax_compound": ln.tax_compound} if ln.tax_compound else {}),
            "product_id": ln.product_id,
            "category": ln.category,
            "id": ln.id,
            **({"below_cost": True} if ln.below_cost else {}),
            **(
                {
                    "gift_card": True,
                    "code_supplied": ln.code_supplied,
                    "gift_card_id": ln.gift_card_id,
                    "gift_card_last4": ln.gift_card_last4,
                }
                if ln.gift_card
                else {}
            ),
        }
        for ln in lines
    ]


def _values(order: Order) -> dict[str, Any]:
    t = order.totals
    return {
        "location_id": order.location_id,
        "customer_id": order.customer_id,
        "status": order.status.value,
        "currency": t.total.currency,
        "lines": _lines_json(order.lines),
        "subtotal": t.subtotal.amount,
        "discount_total": t.discount.amount,
        "tax_total": t.tax.amount,
        "total": t.total.amount,
        "discounts_applied": order.discounts_applied,
        "payment_id": order.payment_id,
        "channel": order.channel,
        "version": order.version,
        "fulfillments": fulfillments_to_json(order.fulfillments),
        "saga": saga_to_json(order.saga),
        "timeline": [
            {"status": c.status, "at": c.at.isoformat(), "reason": c.reason} for c in order.timeline
        ],
        "notes": order.notes,
        "metadata": order.metadata,
        "saga_state": order.saga.state.value,
        "due_at": _due_at(order),
        "register_id": order.register_id,
        "staff_id": order.staff_id,
    }


# The columns `_values` writes; with the keys, the statements below (built once: an order's
# row is written twice a sale, and building these wide statements each time cost more than
# sending them).
VALUE_COLUMNS = (
    "location_id", "customer_id", "status", "currency", "lines", "subtotal", "discount_total",
    "tax_total", "total", "discounts_applied", "payment_id", "channel", "version",
    "fulfillments", "saga", "timeline", "notes", "metadata", "saga_state", "due_at",
    "register_id", "staff_id",
)  # fmt: skip


def _insert_order() -> Any:
    return (
        pg_insert(orders)
        .values(
            merchant_id=bindparam("merchant_id"),
            id=bindparam("id"),
            **bound(orders, VALUE_COLUMNS),
            created_at=func.coalesce(
                bindparam("created_at", type_=orders.c.created_at.type), func.now()
            ),
            updated_at=func.coalesce(
                bindparam("updated_at", type_=orders.c.updated_at.type), func.now()
            ),
        )
        .on_conflict_do_nothing()
        .returning(orders.c.created_at, orders.c.updated_at)
    )


def _update_order(check_version: bool) -> Callable[[], Any]:
    def build() -> Any:
        keys = ("merchant_id", "id", "version") if check_version else ("merchant_id", "id")
        return (
            update(orders)
            .where(keyed(orders, *keys))
            .values(
                **bound(orders, VALUE_COLUMNS),
                updated_at=func.coalesce(
                    bindparam("updated_at", type_=orders.c.updated_at.type), func.now()
                ),
                touched_at=func.now(),
            )
            .returning(orders.c.updated_at)
        )

    return build


def _get_order(lock: bool) -> Callable[[], Any]:
    def build() -> Any:
        query = select(orders).where(keyed(orders, "merchant_id", "id"))
        return query.with_for_update() if lock else query

    return build


GET_ORDER = Prepared(_get_order(lock=False))
GET_ORDER_LOCKED = Prepared(_get_order(lock=True))
INSERT_ORDER = Prepared(_insert_order)
SAVE_ORDER = Prepared(_update_order(check_version=False))
SAVE_ORDER_IF_VERSION = Prepared(_update_order(check_version=True))


class SqlOrderRepository:
    def __init__(self, conn: AsyncConnection, merchant_id: str) -> None:
        self._conn = conn
        self._merchant = merchant_id

    async def add(self, order: Order) -> bool:
        """Insert a new order; False when one with its id exists already (a re-run)."""
        row = (
            await INSERT_ORDER.execute(
                self._conn,
                {
                    "merchant_id": self._merchant,
                    "id": order.id,
                    **_values(order),
                    "created_at": order.created_at,
                    "updated_at": order.updated_at,
                },
            )
        ).first()
        if row is None:
            return False
        order.created_at, order.updated_at = row.created_at, row.updated_at
        return True

    async def save(self, order: Order) -> None:
        """Write the order back (it was read locked, in this transaction)."""
        params = {"w_merchant_id": self._merchant, "w_id": order.id, **_values(order),
                  "updated_at": order.updated_at}  # fmt: skip
        row = (await SAVE_ORDER.execute(self._conn, params)).one()
        order.updated_at = row.updated_at

    async def save_if_version(self, order: Order, version: int) -> bool:
        params = {"w_merchant_id": self._merchant, "w_id": order.id, "w_version": version,
                  **_values(order), "updated_at": order.updated_at}  # fmt: skip
        row = (await SAVE_ORDER_IF_VERSION.execute(self._conn, params)).first()
        if row is None:
            return False
        order.updated_at = row.updated_at
        return True

    async def get(self, order_id: str, *, lock: bool = False) -> Order | None:
        statement = GET_ORDER_LOCKED if lock else GET_ORDER
        params = {"w_merchant_id": self._merchant, "w_id": order_id}
        row = (await statement.execute(self._conn, params)).first()
        return _order(row) if row else None

    async def list(self, page: PageRequest, filters: OrderFilters | None = None) -> list[Order]:
        query = select(orders).where(orders.c.merchant_id == self._merchant)
        f = filters or OrderFilters()
        if f.status:
            query = query.where(orders.c.status == f.status.value)
        if f.channel:
            query = query.where(orders.c.channel == f.channel)
        if f.location_id:
            # A location's orders are those sold there or fulfilled from there: its till
            # hands over the web orders picked up there and ships the ones it sources.
            query = query.where(
                or_(
                    orders.c.location_id == f.location_id,
                    orders.c.fulfillments.contains([{"location_id": f.location_id}]),
                )
            )
        if f.customer_id:
            query = query.where(orders.c.customer_id == f.customer_id)
        if f.fulfillment_status:
            query = query.where(
                orders.c.fulfillments.contains([{"status": f.fulfillment_status.value}])
            )
        if f.register_id:
            query = query.where(orders.c.register_id == f.register_id)
        if f.staff_id:
            query = query.where(orders.c.staff_id == f.staff_id)
        if f.created_since is not None:
            query = query.where(orders.c.created_at >= f.created_since)
        if f.created_before is not None:
            query = query.where(orders.c.created_at < f.created_before)
        # With `updated_since` (in `page.since`): the kit's change feed, oldest change first,
        # resumed from the (updated_at, id) cursor; otherwise by id.
        rows = await list_page(self._conn, query, orders.c.updated_at, orders.c.id, page)
        return [_order(r) for r in rows]

    async def discard(self, order_id: str) -> None:
        """Remove an order whose sale was refused before anything was taken or held."""
        await self._conn.execute(
            orders.delete().where(
                orders.c.merchant_id == self._merchant,
                orders.c.id == order_id,
                orders.c.status == OrderStatus.PENDING_PAYMENT.value,
            )
        )

    async def erase_customer(self, customer_id: str) -> None:
        """Blank the addresses, destinations, notes and metadata of the customer's orders (a
        new version each, no event: nothing about the sale changed), rewrite their events not
        yet published without them, then delete this service's stored answers and published
        events whose bytes hold any of them with the order's id."""
        found = (
            await self._conn.execute(
                select(orders.c.id, orders.c.fulfillments, orders.c.notes, orders.c.metadata)
                .where(orders.c.merchant_id == self._merchant, orders.c.customer_id == customer_id)
                .with_for_update()
            )
        ).all()
        tagged: dict[str, set[str]] = {}
        for row in found:
            held = {f["ship_to"] for f in row.fulfillments if f.get("ship_to")}
            placed = any(f.get("destination") for f in row.fulfillments)
            if not held and not placed and not row.notes and not row.metadata:
                continue
            # A partner's metadata may name the buyer in its keys as in its values.
            tags = {t for pair in row.metadata.items() for t in pair if t}
            tags |= held | ({row.notes} if row.notes else set())
            if tags:
                tagged[row.id] = tags
            blanked = [{**f, "ship_to": "", "destination": None} for f in row.fulfillments]
            await self._conn.execute(
                update(orders)
                .where(orders.c.merchant_id == self._merchant, orders.c.id == row.id)
                .values(
                    fulfillments=blanked,
                    notes="",
                    metadata={},
                    version=orders.c.version + 1,
                    updated_at=func.now(),
                )
            )
        # Before the published rows go: a row the relay is sending now is waited for there,
        # and is then a published one, which the deletion below (a later snapshot) sees.
        await self._redact_unpublished(customer_id, {row.id for row in found})
        for order_id, tags in sorted(tagged.items()):
            # Notes and metadata are short and free-form ("ok", "1", "gift wrap"): bytes
            # holding such a value are this order's copies only when they also hold its id.
            # Another order's stored answer is kept: deleted, a retry of its request would
            # run again.
            await self._drop_copies(
                "position(:order_id in {held}) > 0 AND EXISTS"
                " (SELECT 1 FROM unnest(:tags) AS tag"
                " WHERE position(tag in {held}) > 0)",
                bindparam("order_id", order_id.encode(), type_=LargeBinary),
                bindparam("tags", [t.encode() for t in sorted(tags)], type_=ARRAY(LargeBinary)),
            )

    async def _redact_unpublished(self, customer_id: str, order_ids: set[str]) -> None:
        """The customer's order events still in the outbox go out without what the erasure
        blanked (events.erased_in_event), under their own event ids: deleted, their readers
        would miss the sale (inventory a confirmation's stock decrement).
        Locked as the relay claims them (FOR UPDATE; it skips locked rows): a row the relay
        is publishing is waited for, and drops out here once it is marked published."""
        outbox = kit.outbox
        names = sorted({customer_id, *order_ids})
        held = await self._conn.execute(
            select(outbox.c.seq, outbox.c.event_type, outbox.c.payload)
            .where(
                outbox.c.merchant_id == self._merchant,
                outbox.c.published_at.is_(None),
                outbox.c.event_type.in_(list(events.ORDER_EVENTS)),
                # Only rows naming the customer or one of the orders are read and locked.
                text(
                    "EXISTS (SELECT 1 FROM unnest(:names) AS name"
                    " WHERE position(name in payload) > 0)"
                ).bindparams(
                    bindparam("names", [n.encode() for n in names], type_=ARRAY(LargeBinary))
                ),
            )
            .order_by(outbox.c.seq)
            .with_for_update()
        )
        for seq, event_type, payload in held.all():
            redacted = events.erased_in_event(event_type, payload, customer_id, order_ids)
            if redacted is not None:
                await self._conn.execute(
                    update(outbox).where(outbox.c.seq == seq).values(payload=redacted)
                )

    async def _drop_copies(self, holding: str, *params: BindParameter[Any]) -> None:
        """Delete the stored answers and published outbox rows whose bytes (`{held}` in the
        condition `holding`) match it. A stored answer would replay the order as it was; a
        published event's row is kept only as a record that it went out. Unpublished rows
        have yet to go out (the relay reads them): the erasure rewrote them instead."""
        await self._conn.execute(
            kit.requests.delete().where(
                kit.requests.c.merchant_id == self._merchant,
                text(holding.format(held="response")).bindparams(*params),
            )
        )
        await self._conn.execute(
            kit.outbox.delete().where(
                kit.outbox.c.merchant_id == self._merchant,
                kit.outbox.c.published_at.is_not(None),
                text(holding.format(held="payload")).bindparams(*params),
            )
        )

    async def touch(self, order_id: str, idle_for: timedelta = timedelta(0)) -> None:
        """A caller drives this order's saga now: the resumer leaves it alone a while (its
        window less `idle_for`, counted as already spent)."""
        await self._conn.execute(
            update(orders)
            .where(orders.c.merchant_id == self._merchant, orders.c.id == order_id)
            .values(touched_at=func.now() - idle_for)
        )


class SqlKnownCustomers:
    """The read model of the merchant's customer ids (see tables.known_customers)."""

    def __init__(self, conn: AsyncConnection, merchant_id: str) -> None:
        self._conn = conn
        self._merchant = merchant_id

    async def contains(self, customer_id: str) -> bool:
        t = known_customers
        query = select(
            exists().where(
                t.c.merchant_id == self._merchant,
                t.c.customer_id == customer_id,
                t.c.erased.is_(False),
            )
        )
        return bool((await self._conn.execute(query)).scalar())

    async def forget(self, customer_id: str) -> None:
        """Erased: a sale naming the id asks the customer service again (and is refused).
        The row stays as a tombstone, locked FOR UPDATE until this transaction ends: taken
        first in the erasure, so an order naming the id being written now (which holds the
        row FOR KEY SHARE, see `erased`) commits before the erasure blanks the customer's
        orders, or waits for it and finds the id erased."""
        t = known_customers
        where = (t.c.merchant_id == self._merchant, t.c.customer_id == customer_id)
        await self._conn.execute(select(t.c.customer_id).where(*where).with_for_update())
        statement = pg_insert(t).values(
            merchant_id=self._merchant, customer_id=customer_id, version=0, erased=True
        )
        await self._conn.execute(
            statement.on_conflict_do_update(
                constraint="known_customers_pkey",
                set_={"erased": True, "groups": [], "tax_exempt": False, "seen_at": func.now()},
            )
        )

    async def erased(self, customer_id: str) -> bool | None:
        """Whether the id is erased (None: not known here), its row locked FOR KEY SHARE until
        this transaction ends: an erasure begun meanwhile is waited for, one beginning later
        waits for this transaction (see `forget`)."""
        t = known_customers
        found = await self._conn.execute(
            select(t.c.erased)
            .where(t.c.merchant_id == self._merchant, t.c.customer_id == customer_id)
            .with_for_update(read=True, key_share=True)
        )
        row = found.first()
        return None if row is None else bool(row.erased)

    async def remember(self, customer_id: str, version: int, buyer: Buyer | None = None) -> None:
        # Events may arrive out of order and race a checkout's own look-up: keep the newest.
        # A look-up learns the version only: it leaves what an event brought as it is.
        t = known_customers
        values: dict[str, object] = {"version": version}
        if buyer is not None:
            values |= {"groups": list(buyer.groups), "tax_exempt": buyer.tax_exempt}
        statement = pg_insert(t).values(
            merchant_id=self._merchant, customer_id=customer_id, **values
        )
        await self._conn.execute(
            statement.on_conflict_do_update(
                constraint="known_customers_pkey",
                set_={
                    **{k: statement.excluded[k] for k in values},
                    "seen_at": statement.excluded.seen_at,
                },
                # An erased id stays erased, whatever event of it comes late.
                where=(t.c.version < statement.excluded.version) & t.c.erased.is_(False),
            )
        )

    async def resolve(self, customer_id: str) -> KnownCustomer | None:
        # One read for an id of its own (every sale's case); one more per merge followed.
        seen = {customer_id}
        for _ in range(MAX_MERGE_HOPS):
            params = {"w_merchant_id": self._merchant, "w_customer_id": customer_id}
            row = (await BUYER.execute(self._conn, params)).first()
            if row is None or row.erased:
                return None  # not known here (or erased: asked, then refused)
            if not row.merged_into:
                return KnownCustomer(customer_id, Buyer(tuple(row.groups), row.tax_exempt))
            if row.merged_into in seen:
                return None  # a loop no merge can make: ask the customer service instead
            customer_id = row.merged_into
            seen.add(customer_id)
        return None

    async def merged(self, loser_id: str, winner_id: str) -> None:
        # A merge is final (the duplicate is never active again), so it holds whatever version
        # of the duplicate arrives before or after it: remember() never touches merged_into.
        t = known_customers
        statement = pg_insert(t).values(
            merchant_id=self._merchant, customer_id=loser_id, version=0, merged_into=winner_id
        )
        await self._conn.execute(
            statement.on_conflict_do_update(
                constraint="known_customers_pkey",
                set_={"merged_into": statement.excluded.merged_into, "seen_at": func.now()},
            )
        )


def _buyer() -> Any:
    t = known_customers
    return select(t.c.groups, t.c.tax_exempt, t.c.merged_into, t.c.erased).where(
        keyed(t, "merchant_id", "customer_id")
    )


def _start_checkout() -> Any:
    t = checkout_starts
    return (
        pg_insert(t)
        .values(
            merchant_id=bindparam("merchant_id"),
            request_id=bindparam("request_id"),
            fingerprint=bindparam("fingerprint", type_=LargeBinary),
            nonce=bindparam("nonce"),
        )
        .on_conflict_do_nothing()
        .returning(t.c.started_at, t.c.nonce)
    )


# Read or written on every sale: built once (pos_kit.direct.Prepared).
BUYER = Prepared(_buyer)
START_CHECKOUT = Prepared(_start_checkout)


class SqlCheckoutStarts:
    """When each checkout request was first claimed (see tables.checkout_starts)."""

    def __init__(self, conn: AsyncConnection, merchant_id: str) -> None:
        self._conn = conn
        self._merchant = merchant_id

    async def start(self, request_id: str, fingerprint: bytes) -> Start:
        t = checkout_starts
        # The first claim's transaction stamps it (`now()`, the claim's own time) with the
        # request's fingerprint and a nonce of its own; a retry, serialised behind the kit's
        # claim on the same request id, finds it. One round trip on a first attempt, two on a
        # retry.
        params = {"merchant_id": self._merchant, "request_id": request_id,
                  "fingerprint": fingerprint, "nonce": new_nonce()}  # fmt: skip
        first = (await START_CHECKOUT.execute(self._conn, params)).first()
        if first is not None:
            return Start(first.started_at, first.nonce, fresh=True)
        earlier = (
            await self._conn.execute(
                select(t.c.started_at, t.c.fingerprint, t.c.nonce).where(
                    t.c.merchant_id == self._merchant, t.c.request_id == request_id
                )
            )
        ).one()
        # The kit's claim of a failed attempt is gone, so only this tells a retry from the
        # same id sent with another body; NULL: started before fingerprints were kept.
        if earlier.fingerprint is not None and bytes(earlier.fingerprint) != fingerprint:
            raise RequestIdReused()
        # NULL nonce: started before nonces were kept (its ids derive as they did then).
        return Start(earlier.started_at, earlier.nonce or "")

    async def forget(self, request_id: str) -> None:
        t = checkout_starts
        await self._conn.execute(
            t.delete().where(t.c.merchant_id == self._merchant, t.c.request_id == request_id)
        )

    async def earlier(self, request_id: str) -> Start | None:
        t = checkout_starts
        row = (
            await self._conn.execute(
                select(t.c.started_at, t.c.nonce).where(
                    t.c.merchant_id == self._merchant, t.c.request_id == request_id
                )
            )
        ).first()
        return Start(row.started_at, row.nonce or "") if row is not None else None


class SqlOrderSettings:
    def __init__(self, conn: AsyncConnection, merchant_id: str) -> None:
        self._conn = conn
        self._merchant = merchant_id

    async def get(self, *, lock: bool = False) -> OrderSettings | None:
        t = order_settings
        query = select(t).where(t.c.merchant_id == self._merchant)
        row = (await self._conn.execute(query.with_for_update() if lock else query)).first()
        if row is None:
            return None
        return OrderSettings(
            capture_pickup_at_order=row.capture_pickup_at_order,
            pickup_expiry_seconds=row.pickup_expiry_seconds,
            hold_seconds=row.hold_seconds,
            return_window_days=row.return_window_days,
            return_policy_text=row.return_policy_text,
            version=row.version,
            receiptless_limit=ReceiptlessLimit(
                row.receiptless_limit_amount, row.receiptless_limit_days
            )
            if row.receiptless_limit_amount is not None and row.receiptless_limit_days is not None
            else None,
        )

    async def put(self, settings: OrderSettings) -> bool:
        t = order_settings
        limit = settings.receiptless_limit
        values = {
            "capture_pickup_at_order": settings.capture_pickup_at_order,
            "pickup_expiry_seconds": settings.pickup_expiry_seconds,
            "hold_seconds": settings.hold_seconds,
            "return_window_days": settings.return_window_days,
            "return_policy_text": settings.return_policy_text,
            "version": settings.version,
            "receiptless_limit_amount": limit.amount if limit else None,
            "receiptless_limit_days": limit.days if limit else None,
        }
        statement = pg_insert(t).values(merchant_id=self._merchant, **values)
        written = await self._conn.execute(
            statement.on_conflict_do_update(
                constraint="order_settings_pkey",
                set_={**values, "updated_at": func.now()},
                where=t.c.version == settings.version - 1,
            ).returning(t.c.merchant_id)
        )
        return written.first() is not None

    async def lease(self, holder: str, seconds: float) -> bool:
        t = order_settings_leases
        statement = pg_insert(t).values(
            merchant_id=self._merchant,
            holder=holder,
            expires_at=func.now() + timedelta(seconds=seconds),
        )
        written = await self._conn.execute(
            statement.on_conflict_do_update(
                constraint="order_settings_leases_pkey",
                set_={"holder": holder, "expires_at": statement.excluded.expires_at},
                where=(t.c.holder == holder) | (t.c.expires_at < func.now()),
            ).returning(t.c.holder)
        )
        return written.first() is not None

    async def holds_lease(self, holder: str) -> bool:
        t = order_settings_leases
        found = await self._conn.execute(
            select(t.c.holder).where(t.c.merchant_id == self._merchant).with_for_update(read=True)
        )
        row = found.first()
        return row is not None and row.holder == holder

    async def release(self, holder: str) -> None:
        t = order_settings_leases
        await self._conn.execute(
            delete(t).where(t.c.merchant_id == self._merchant, t.c.holder == holder)
        )


# The stores whose rates this process found (or wrote) in the read model, and when: a sale at
# a store confirmed within `CONFIRMED_FOR` seconds, with the same rates, reads nothing (most
# sales; the read was a statement on every one). The location events keep the read model
# current as well, so this only delays a live sale's correction of it by that long.
CONFIRMED_FOR = 10.0
_CONFIRMED: dict[tuple[str, str], tuple[tuple[Any, ...], float]] = {}


class SqlPriceBook:
    """The read model of prices and selling locations (see tables.catalog_prices)."""

    def __init__(self, conn: AsyncConnection, merchant_id: str) -> None:
        self._conn = conn
        self._merchant = merchant_id

    async def remember_prices(self, items: list[tuple[PricedItem, int]]) -> None:
        if not items:
            return
        t = catalog_prices
        statement = pg_insert(t).values(
            [
                {
                    "merchant_id": self._merchant,
                    "sku": item.sku,
                    "name": item.name,
                    "price": item.unit_price.amount,
                    "currency": item.unit_price.currency,
                    "version": version,
                    "product_id": item.product_id,
                    "category": item.category,
                    "tax_category": item.tax_category,
                    "open_price": item.open_price,
                    "unit_cost": item.unit_cost,
                }
                for item, version in items
            ]
        )
        # Events may arrive out of order: the newest version of the product wins.
        await self._conn.execute(
            statement.on_conflict_do_update(
                constraint="catalog_prices_pkey",
                set_={
                    "name": statement.excluded.name,
                    "price": statement.excluded.price,
                    "currency": statement.excluded.currency,
                    "version": statement.excluded.version,
                    "product_id": statement.excluded.product_id,
                    "category": statement.excluded.category,
                    "tax_category": statement.excluded.tax_category,
                    "open_price": statement.excluded.open_price,
                    "unit_cost": statement.excluded.unit_cost,
                    "seen_at": func.now(),
                },
                where=t.c.version <= statement.excluded.version,
            )
        )

    async def forget_prices(self, skus: list[str]) -> None:
        t = catalog_prices
        await self._conn.execute(
            t.delete().where(t.c.merchant_id == self._merchant, t.c.sku.in_(skus))
        )

    async def remember_location(self, location: SellingLocation) -> None:
        t = selling_locations
        # Read first: an upsert locks the row even when its WHERE leaves it as it was, and
        # every sale at a store would then wait for the one before it to commit.
        taxes = [asdict(x) for x in location.taxes]
        wanted = (
            location.currency,
            location.tax_rate_bps,
            location.tax_rates_bps,
            location.tax_inclusive,
            location.time_zone,
            taxes,
        )
        key = (self._merchant, location.id)
        seen = _CONFIRMED.get(key)
        if seen is not None and seen[0] == wanted and time.monotonic() - seen[1] < CONFIRMED_FOR:
            return
        if len(_CONFIRMED) > 10_000:
            _CONFIRMED.clear()
        _CONFIRMED[key] = (wanted, time.monotonic())
        known = (
            await self._conn.execute(
                select(
                    t.c.currency,
                    t.c.tax_rate_bps,
                    t.c.tax_rates,
                    t.c.prices_include_tax,
                    t.c.time_zone,
                    t.c.taxes,
                ).where(t.c.merchant_id == self._merchant, t.c.location_id == location.id)
            )
        ).first()
        if known is not None and tuple(known) == wanted:
            return
        statement = pg_insert(t).values(
            merchant_id=self._merchant,
            location_id=location.id,
            currency=location.currency,
            tax_rate_bps=location.tax_rate_bps,
            tax_rates=location.tax_rates_bps,
            prices_include_tax=location.tax_inclusive,
            time_zone=location.time_zone,
            taxes=taxes,
        )
        # Written only when it changed: most sales find it as it was.
        await self._conn.execute(
            statement.on_conflict_do_update(
                constraint="selling_locations_pkey",
                set_={
                    "currency": statement.excluded.currency,
                    "tax_rate_bps": statement.excluded.tax_rate_bps,
                    "tax_rates": statement.excluded.tax_rates,
                    "prices_include_tax": statement.excluded.prices_include_tax,
                    "time_zone": statement.excluded.time_zone,
                    "taxes": statement.excluded.taxes,
                    "seen_at": func.now(),
                },
                where=(t.c.currency != statement.excluded.currency)
                | (t.c.tax_rate_bps != statement.excluded.tax_rate_bps)
                | (t.c.tax_rates != statement.excluded.tax_rates)
                | (t.c.prices_include_tax != statement.excluded.prices_include_tax)
                | (t.c.time_zone != statement.excluded.time_zone)
                | (t.c.taxes != statement.excluded.taxes),
            )
        )

    async def snapshot(
        self, location_id: str, skus: list[str]
    ) -> tuple[SellingLocation | None, dict[str, PricedItem]]:
        loc = selling_locations
        found = (
            await self._conn.execute(
                select(loc).where(
                    loc.c.merchant_id == self._merchant, loc.c.location_id == location_id
                )
            )
        ).first()
        t = catalog_prices
        rows = (
            await self._conn.execute(
                select(t).where(t.c.merchant_id == self._merchant, t.c.sku.in_(skus))
            )
        ).all()
        items = {
            r.sku: PricedItem(
                r.sku,
                r.name,
                Money(r.price, r.currency),
                r.tax_category,
                r.product_id,
                r.category,
                r.open_price,
                r.unit_cost,
            )
            for r in rows
        }
        location = (
            SellingLocation(
                found.location_id,
                found.currency,
                found.tax_rate_bps,
                {k: int(v) for k, v in found.tax_rates.items()},
                found.time_zone,
                found.prices_include_tax,
                tuple(
                    LocationTax(t["name"], t["rate_bps"], dict(t["rates_bps"]), t["compound"])
                    for t in found.taxes
                ),
            )
            if found
            else None
        )
        return location, items


class OrderUow(UnitOfWork):
    """The kit's unit of work plus this service's repositories and event mapping."""

    events = events.REGISTRY

    @property
    def orders(self) -> SqlOrderRepository:
        return SqlOrderRepository(self.conn, self.merchant_id)

    @property
    def customers(self) -> SqlKnownCustomers:
        return SqlKnownCustomers(self.conn, self.merchant_id)

    @property
    def checkouts(self) -> SqlCheckoutStarts:
        return SqlCheckoutStarts(self.conn, self.merchant_id)

    @property
    def settings(self) -> SqlOrderSettings:
        return SqlOrderSettings(self.conn, self.merchant_id)

    @property
    def prices(self) -> SqlPriceBook:
        return SqlPriceBook(self.conn, self.merchant_id)

    @property
    def returns(self) -> SqlReturns:
        return SqlReturns(self.conn, self.merchant_id)
