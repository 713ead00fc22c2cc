"""PostgreSQL repositories and unit of work for payments, their operations and refunds."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

from sqlalchemy import (
    ColumnElement,
    Row,
    Select,
    Table,
    and_,
    delete,
    func,
    insert,
    literal,
    or_,
    select,
    union_all,
    update,
)
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.ext.asyncio import AsyncConnection

from pos_kit.changes import list_page
from pos_kit.direct import Prepared, bound, keyed
from pos_kit.paging import PageRequest
from pos_kit.uow import UnitOfWork
from pos_payment.adapters import at_register, events
from pos_payment.adapters.shifts import SqlShiftRepository
from pos_payment.adapters.tables import (
    exchange_credits,
    merchant_settings,
    operations,
    out_of_band_refunds,
    payments,
    refunds,
    terminal_checkouts,
)
from pos_payment.domain.model import (
    CreatedWindow,
    CreditStatus,
    ExchangeCredit,
    Operation,
    OperationKind,
    OperationStatus,
    OutOfBandRefund,
    Payment,
    PaymentSettings,
    PaymentStatus,
    Refund,
    RefundLine,
    TenderType,
    TerminalCheckout,
    TerminalStatus,
    card_summary,
)
from pos_payment.domain.shifts import Movement

_PAYMENT_STATE = (
    "status", "authorized", "captured", "voided", "refunded", "capturing", "refunding",
    "voiding", "card_brand", "card_last4", "decline_code", "decline_reason",
    "processor_reference", "expires_at", "credited", "paid_out_of_band",
)  # fmt: skip


def _payment(row: Row[Any]) -> Payment:
    m = row._mapping
    return Payment(
        id=m["id"],
        order_id=m["order_id"],
        reference=m["reference"],
        location_id=m["location_id"],
        tender_type=TenderType(m["tender_type"]),
        currency=m["currency"],
        amount=m["amount"],
        tip=m["tip"],
        status=PaymentStatus(m["status"]),
        capture_at_once=m["capture_at_once"],
        authorized=m["authorized"],
        captured=m["captured"],
        voided=m["voided"],
        refunded=m["refunded"],
        capturing=m["capturing"],
        refunding=m["refunding"],
        voiding=m["voiding"],
        credited=m["credited"],
        paid_out_of_band=m["paid_out_of_band"],
        change_due=m["change_due"],
        cash_tendered=m["cash_tendered"],
        card_brand=m["card_brand"],
        card_last4=m["card_last4"],
        external_reference=m["external_reference"],
        decline_code=m["decline_code"],
        decline_reason=m["decline_reason"],
        processor_reference=m["processor_reference"],
        request_key=m["request_key"],
        expires_at=m["expires_at"],
        version=m["version"],
        created_at=m["created_at"],
        updated_at=m["updated_at"],
    )


def _state(p: Payment) -> dict[str, Any]:
    values = {name: getattr(p, name) for name in _PAYMENT_STATE}
    values["status"] = p.status.value
    values["card_summary"] = card_summary(p.card_brand, p.card_last4)
    return values


# A payment's row is written twice a sale (taken, then settled): the statements are built once
# (pos_kit.direct.Prepared), every value a parameter named after its column.
_ADDED = (
    "merchant_id", "id", "order_id", "reference", "location_id", "tender_type", "amount", "tip",
    "currency", "capture_at_once", "change_due", "cash_tendered", "external_reference",
    "request_key", *_PAYMENT_STATE, "card_summary", "register_id", "staff_id",
)  # fmt: skip


def _insert_payment() -> Any:
    return (
        insert(payments)
        .values(bound(payments, _ADDED))
        .returning(payments.c.created_at, payments.c.updated_at)
    )


def _update_payment(check_version: bool) -> Callable[[], Any]:
    def build() -> Any:
        keys = ("merchant_id", "id", "version") if check_version else ("merchant_id", "id")
        return (
            update(payments)
            .where(keyed(payments, *keys))
            .values(
                version=payments.c.version + 1, **bound(payments, (*_PAYMENT_STATE, "card_summary"))
            )
            .returning(
                payments.c.version,
                payments.c.updated_at,
                payments.c.register_id,
                payments.c.shift_id,
            )
        )

    return build


def _get_payment(column: str, lock: bool) -> Callable[[], Any]:
    def build() -> Any:
        query = select(payments).where(keyed(payments, "merchant_id", column))
        return query.with_for_update() if lock else query

    return build


GET_PAYMENT = Prepared(_get_payment("id", lock=False))
GET_PAYMENT_LOCKED = Prepared(_get_payment("id", lock=True))
PAYMENT_BY_REQUEST = Prepared(_get_payment("request_key", lock=False))
INSERT_PAYMENT = Prepared(_insert_payment)
SAVE_PAYMENT = Prepared(_update_payment(check_version=False))
SAVE_PAYMENT_IF_VERSION = Prepared(_update_payment(check_version=True))


class SqlPaymentRepository:
    """Bound to one merchant when the unit of work builds it: it sees no other's payments."""

    def __init__(self, conn: AsyncConnection, merchant_id: str) -> None:
        self._conn = conn
        self._merchant = merchant_id

    def _mine(self) -> Any:
        return payments.c.merchant_id == self._merchant

    async def add(self, payment: Payment, taken_at: tuple[str, str] | None = None) -> None:
        """`taken_at`: the register and member it was taken at when the call is not theirs
        (a card reader's answer, recorded by the sweep); else the call's."""
        at = at_register.stamp()
        if taken_at is not None and taken_at[0]:
            at = {"register_id": taken_at[0], "staff_id": taken_at[1]}
        values = {
            "merchant_id": self._merchant,
            "id": payment.id,
            "order_id": payment.order_id,
            "reference": payment.reference,
            "location_id": payment.location_id,
            "tender_type": payment.tender_type.value,
            "amount": payment.amount,
            "tip": payment.tip,
            "currency": payment.currency,
            "capture_at_once": payment.capture_at_once,
            "change_due": payment.change_due,
            "cash_tendered": payment.cash_tendered,
            "external_reference": payment.external_reference,
            "request_key": payment.request_key,
            **_state(payment),
            "register_id": "",
            "staff_id": "",
            **at,
        }
        row = (await INSERT_PAYMENT.execute(self._conn, values)).one()
        payment.created_at, payment.updated_at = row.created_at, row.updated_at
        if payment.captured:  # only moved money joins a shift (a card is authorised first)
            await self._attach(payment.id)

    async def _attach(self, payment_id: str) -> None:
        await at_register.attach(
            self._conn, payments, self._merchant, payment_id, payments.c.captured > 0
        )

    async def get(self, payment_id: str, *, lock: bool = False) -> Payment | None:
        statement = GET_PAYMENT_LOCKED if lock else GET_PAYMENT
        params = {"w_merchant_id": self._merchant, "w_id": payment_id}
        row = (await statement.execute(self._conn, params)).first()
        return _payment(row) if row else None

    async def by_request_key(self, key: str) -> Payment | None:
        params = {"w_merchant_id": self._merchant, "w_request_key": key}
        row = (await PAYMENT_BY_REQUEST.execute(self._conn, params)).first()
        return _payment(row) if row else None

    async def for_order(self, order_id: str, *, lock: bool = False) -> list[Payment]:
        """In the order they were taken: ids are time-ordered, and locking in id order keeps
        every writer's locks in one order (no deadlock between two refunds of one order)."""
        query = (
            select(payments)
            .where(self._mine(), payments.c.order_id == order_id)
            .order_by(payments.c.id)
        )
        rows = (await self._conn.execute(query.with_for_update() if lock else query)).all()
        return [_payment(r) for r in rows]

    async def save(self, payment: Payment) -> None:
        saved = await self.save_if_version(payment, None)
        assert saved, "save() is for a payment read in this transaction"

    async def save_if_version(self, payment: Payment, version: int | None) -> bool:
        keys: dict[str, Any] = {"w_merchant_id": self._merchant, "w_id": payment.id}
        statement = SAVE_PAYMENT if version is None else SAVE_PAYMENT_IF_VERSION
        if version is not None:
            keys["w_version"] = version
        row = (await statement.execute(self._conn, {**keys, **_state(payment)})).first()
        if row is None:
            return False
        payment.version, payment.updated_at = row.version, row.updated_at
        # The row as updated says whether it joins a shift now (what `_attach` would read).
        if payment.captured and row.register_id and not row.shift_id:
            await at_register.attach_at(
                self._conn, payments, self._merchant, payment.id, row.register_id
            )
        return True

    async def forget(self, payment_id: str) -> None:
        """Remove a payment the processor never acted on (it was never reached)."""
        await self._conn.execute(
            delete(payments).where(
                self._mine(), payments.c.id == payment_id, payments.c.status == "pending"
            )
        )

    async def list(
        self,
        page: PageRequest,
        order_id: str,
        location_id: str,
        status: PaymentStatus | None,
        created: CreatedWindow,
    ) -> list[Payment]:
        query = _created_in(select(payments).where(self._mine()), payments.c.created_at, created)
        if order_id:
            query = query.where(payments.c.order_id == order_id)
        if location_id:
            query = query.where(payments.c.location_id == location_id)
        if status is not None:
            query = query.where(payments.c.status == status.value)
        rows = await list_page(self._conn, query, payments.c.updated_at, payments.c.id, page)
        return [_payment(r) for r in rows]


def _created_in(
    query: Select[Any], column: ColumnElement[Any], created: CreatedWindow
) -> Select[Any]:
    if created.since is not None:
        query = query.where(column >= created.since)
    if created.before is not None:
        query = query.where(column < created.before)
    return query


def _operation(row: Row[Any]) -> Operation:
    m = row._mapping
    return Operation(
        id=m["id"],
        payment_id=m["payment_id"],
        kind=OperationKind(m["kind"]),
        amount=m["amount"],
        request_key=m["request_key"],
        status=OperationStatus(m["status"]),
        reason=m["reason"],
    )


class SqlOperationRepository:
    def __init__(self, conn: AsyncConnection, merchant_id: str) -> None:
        self._conn = conn
        self._merchant = merchant_id

    async def add(self, op: Operation) -> None:
        await self._conn.execute(
            insert(operations).values(
                merchant_id=self._merchant,
                id=op.id,
                payment_id=op.payment_id,
                kind=op.kind.value,
                amount=op.amount,
                status=op.status.value,
                reason=op.reason,
                request_key=op.request_key,
            )
        )

    async def get(self, op_id: str) -> Operation | None:
        query = select(operations).where(
            operations.c.merchant_id == self._merchant, operations.c.id == op_id
        )
        row = (await self._conn.execute(query)).first()
        return _operation(row) if row else None

    async def by_request_key(self, key: str, *, lock: bool = False) -> Operation | None:
        query = select(operations).where(
            operations.c.merchant_id == self._merchant, operations.c.request_key == key
        )
        row = (await self._conn.execute(query.with_for_update() if lock else query)).first()
        return _operation(row) if row else None

    async def save(self, op: Operation) -> None:
        await self._conn.execute(
            update(operations)
            .where(operations.c.merchant_id == self._merchant, operations.c.id == op.id)
            .values(status=op.status.value, updated_at=func.now())
        )
        if op.kind is OperationKind.CAPTURE and op.status is OperationStatus.SUCCEEDED:
            # Each capture counts in the shift open at its payment's register now, not in the
            # one its first capture joined: that one may be closed, its report final.
            register = await self._conn.scalar(
                select(payments.c.register_id).where(
                    payments.c.merchant_id == self._merchant, payments.c.id == op.payment_id
                )
            )
            if register:
                await at_register.attach_at(self._conn, operations, self._merchant, op.id, register)

    async def forget(self, op: Operation) -> None:
        await self._conn.execute(
            delete(operations).where(
                operations.c.merchant_id == self._merchant,
                operations.c.id == op.id,
                operations.c.status == "pending",
            )
        )


def _refund(row: Row[Any]) -> Refund:
    m = row._mapping
    return Refund(
        id=m["id"],
        payment_id=m["payment_id"],
        order_id=m["order_id"],
        tender_type=TenderType(m["tender_type"]),
        currency=m["currency"],
        amount=m["amount"],
        status=OperationStatus(m["status"]),
        reason=m["reason"],
        lines=tuple(RefundLine(x["sku"], x["quantity"]) for x in m["lines"]),
        failure_code=m["failure_code"],
        request_key=m["request_key"],
        created_at=m["created_at"],
        updated_at=m["updated_at"],
        exchange_order_id=m["exchange_order_id"],
    )


class SqlRefundRepository:
    def __init__(self, conn: AsyncConnection, merchant_id: str) -> None:
        self._conn = conn
        self._merchant = merchant_id

    def _mine(self) -> Any:
        return refunds.c.merchant_id == self._merchant

    async def add(self, refund: Refund) -> None:
        row = (
            await self._conn.execute(
                insert(refunds)
                .values(
                    merchant_id=self._merchant,
                    id=refund.id,
                    payment_id=refund.payment_id,
                    order_id=refund.order_id,
                    tender_type=refund.tender_type.value,
                    amount=refund.amount,
                    currency=refund.currency,
                    status=refund.status.value,
                    reason=refund.reason,
                    lines=[{"sku": x.sku, "quantity": x.quantity} for x in refund.lines],
                    failure_code=refund.failure_code,
                    request_key=refund.request_key,
                    exchange_order_id=refund.exchange_order_id,
                    **at_register.stamp(),
                )
                .returning(refunds.c.created_at, refunds.c.updated_at)
            )
        ).one()
        refund.created_at, refund.updated_at = row.created_at, row.updated_at
        await self._attach(refund.id)

    async def _attach(self, refund_id: str) -> None:
        await at_register.attach(
            self._conn, refunds, self._merchant, refund_id, refunds.c.status == "succeeded"
        )

    async def get(self, refund_id: str, *, lock: bool = False) -> Refund | None:
        query = select(refunds).where(self._mine(), refunds.c.id == refund_id)
        row = (await self._conn.execute(query.with_for_update() if lock else query)).first()
        return _refund(row) if row else None

    async def of_request(self, prefix: str, legacy: str = "") -> list[Refund]:
        """The refunds one request made, in that order: their keys are `<prefix><n:03d>`
        (`handlers.refund_keys`, ending in "/"), or, written before 2026-12-05, `<legacy>/<n:03d>`
        with `legacy` the request's own key: exactly those, not the keys of another request
        whose id begins with this one's and a "/"."""
        key = refunds.c.request_key
        # Every key that starts with the prefix: "/" is followed by "0" in byte order.
        mine = and_(key >= prefix, key < prefix[:-1] + "0")
        if legacy:
            old = and_(key >= legacy + "/", key < legacy + "0", func.length(key) == len(legacy) + 4)
            mine = or_(mine, old)
        query = select(refunds).where(self._mine(), mine).order_by(key)
        return [_refund(r) for r in (await self._conn.execute(query)).all()]

    async def save(self, refund: Refund) -> None:
        row = (
            await self._conn.execute(
                update(refunds)
                .where(self._mine(), refunds.c.id == refund.id)
                .values(status=refund.status.value, failure_code=refund.failure_code)
                .returning(refunds.c.updated_at)
            )
        ).one()
        refund.updated_at = row.updated_at
        await self._attach(refund.id)

    async def list(
        self,
        page: PageRequest,
        payment_id: str,
        order_id: str,
        location_id: str,
        created: CreatedWindow,
    ) -> list[Refund]:
        query = _created_in(select(refunds).where(self._mine()), refunds.c.created_at, created)
        if payment_id:
            query = query.where(refunds.c.payment_id == payment_id)
        if order_id:
            query = query.where(refunds.c.order_id == order_id)
        if location_id:
            # A refund is where its payment was taken (the money leaves that till or terminal).
            taken_there = select(payments.c.id).where(
                payments.c.merchant_id == self._merchant, payments.c.location_id == location_id
            )
            query = query.where(refunds.c.payment_id.in_(taken_there))
        rows = await list_page(self._conn, query, refunds.c.updated_at, refunds.c.id, page)
        return [_refund(r) for r in rows]


def _credit(row: Row[Any]) -> ExchangeCredit:
    m = row._mapping
    return ExchangeCredit(
        exchange_order_id=m["exchange_order_id"],
        order_id=m["order_id"],
        currency=m["currency"],
        amounts={x["payment_id"]: x["amount"] for x in m["amounts"]},
        status=CreditStatus(m["status"]),
        created_at=m["created_at"],
        updated_at=m["updated_at"],
    )


class SqlCreditRepository:
    """Exchange credits, one per new order."""

    def __init__(self, conn: AsyncConnection, merchant_id: str) -> None:
        self._conn = conn
        self._merchant = merchant_id

    async def get(self, exchange_order_id: str, *, lock: bool = False) -> ExchangeCredit | None:
        query = select(exchange_credits).where(
            exchange_credits.c.merchant_id == self._merchant,
            exchange_credits.c.exchange_order_id == exchange_order_id,
        )
        row = (await self._conn.execute(query.with_for_update() if lock else query)).first()
        return _credit(row) if row else None

    async def add(self, credit: ExchangeCredit) -> bool:
        """Insert it; False, and nothing written, when the new order has one already."""
        row = (
            await self._conn.execute(
                pg_insert(exchange_credits)
                .values(
                    merchant_id=self._merchant,
                    exchange_order_id=credit.exchange_order_id,
                    order_id=credit.order_id,
                    currency=credit.currency,
                    status=credit.status.value,
                    amounts=[{"payment_id": k, "amount": v} for k, v in credit.amounts.items()],
                )
                .on_conflict_do_nothing()
                .returning(exchange_credits.c.created_at, exchange_credits.c.updated_at)
            )
        ).first()
        if row is None:
            return False
        credit.created_at, credit.updated_at = row.created_at, row.updated_at
        return True

    async def save(self, credit: ExchangeCredit) -> None:
        row = (
            await self._conn.execute(
                update(exchange_credits)
                .where(
                    exchange_credits.c.merchant_id == self._merchant,
                    exchange_credits.c.exchange_order_id == credit.exchange_order_id,
                )
                .values(
                    status=credit.status.value,
                    # What it has on each payment moves when an exchange of its new order
                    # carries part of it on (and back, if that exchange is not made).
                    amounts=[{"payment_id": k, "amount": v} for k, v in credit.amounts.items()],
                    updated_at=func.now(),
                )
                .returning(exchange_credits.c.updated_at)
            )
        ).one()
        credit.updated_at = row.updated_at


def _out_of_band(row: Row[Any]) -> OutOfBandRefund:
    m = row._mapping
    return OutOfBandRefund(
        return_id=m["return_id"],
        order_id=m["order_id"],
        currency=m["currency"],
        tender=TenderType(m["tender_type"]),
        reference=m["reference"],
        amounts={x["payment_id"]: x["amount"] for x in m["amounts"]},
        set_aside={x["payment_id"]: x["set_aside"] for x in m["amounts"]},
        shift_id=m["shift_id"],
        movement_id=m["movement_id"],
        created_at=m["created_at"],
    )


class SqlOutOfBandRepository:
    """Refunds paid out of band, one per return; and the drawer they may come out of."""

    def __init__(self, conn: AsyncConnection, merchant_id: str) -> None:
        self._conn = conn
        self._merchant = merchant_id

    async def get(self, return_id: str) -> OutOfBandRefund | None:
        row = (
            await self._conn.execute(
                select(out_of_band_refunds).where(
                    out_of_band_refunds.c.merchant_id == self._merchant,
                    out_of_band_refunds.c.return_id == return_id,
                )
            )
        ).first()
        return _out_of_band(row) if row else None

    async def add(self, record: OutOfBandRefund) -> bool:
        """Insert it; False, and nothing written, when the return has one already."""
        row = (
            await self._conn.execute(
                pg_insert(out_of_band_refunds)
                .values(
                    merchant_id=self._merchant,
                    return_id=record.return_id,
                    order_id=record.order_id,
                    currency=record.currency,
                    tender_type=record.tender.value,
                    reference=record.reference,
                    amounts=[
                        {"payment_id": k, "amount": v, "set_aside": record.set_aside.get(k, 0)}
                        for k, v in record.amounts.items()
                    ],
                    shift_id=record.shift_id,
                    movement_id=record.movement_id,
                )
                .on_conflict_do_nothing()
                .returning(out_of_band_refunds.c.created_at)
            )
        ).first()
        if row is None:
            return False
        record.created_at = row.created_at
        return True

    async def open_shift_at(self, register_id: str) -> tuple[str, str] | None:
        """The register's open shift (its id and currency), read with a share lock as money
        attached to it is (adapters/at_register.py): its close waits for this transaction."""
        return await at_register.open_shift(self._conn, self._merchant, register_id)

    async def pay_out(self, movement: Movement) -> None:
        await SqlShiftRepository(self._conn, self._merchant).add_movement(movement)


def _terminal(row: Row[Any]) -> TerminalCheckout:
    m = row._mapping
    return TerminalCheckout(
        id=m["id"],
        order_id=m["order_id"],
        reference=m["reference"],
        location_id=m["location_id"],
        device_id=m["device_id"],
        currency=m["currency"],
        amount=m["amount"],
        tip=m["tip"],
        deadline=m["deadline"],
        request_key=m["request_key"],
        status=TerminalStatus(m["status"]),
        payment_id=m["payment_id"],
        decline_code=m["decline_code"],
        created_at=m["created_at"],
        updated_at=m["updated_at"],
        register_id=m["register_id"],
        staff_id=m["staff_id"],
    )


class SqlTerminalRepository:
    def __init__(self, conn: AsyncConnection, merchant_id: str) -> None:
        self._conn = conn
        self._merchant = merchant_id

    async def add(self, checkout: TerminalCheckout) -> None:
        row = (
            await self._conn.execute(
                insert(terminal_checkouts)
                .values(
                    merchant_id=self._merchant,
                    id=checkout.id,
                    order_id=checkout.order_id,
                    reference=checkout.reference,
                    location_id=checkout.location_id,
                    device_id=checkout.device_id,
                    amount=checkout.amount,
                    tip=checkout.tip,
                    currency=checkout.currency,
                    status=checkout.status.value,
                    request_key=checkout.request_key,
                    deadline=checkout.deadline,
                    **at_register.stamp(),
                )
                .returning(
                    terminal_checkouts.c.created_at,
                    terminal_checkouts.c.updated_at,
                    terminal_checkouts.c.register_id,
                    terminal_checkouts.c.staff_id,
                )
            )
        ).one()
        checkout.created_at, checkout.updated_at = row.created_at, row.updated_at
        checkout.register_id, checkout.staff_id = row.register_id, row.staff_id

    async def get(self, checkout_id: str, *, lock: bool = False) -> TerminalCheckout | None:
        query = select(terminal_checkouts).where(
            terminal_checkouts.c.merchant_id == self._merchant,
            terminal_checkouts.c.id == checkout_id,
        )
        row = (await self._conn.execute(query.with_for_update() if lock else query)).first()
        return _terminal(row) if row else None

    async def save(self, checkout: TerminalCheckout) -> None:
        row = (
            await self._conn.execute(
                update(terminal_checkouts)
                .where(
                    terminal_checkouts.c.merchant_id == self._merchant,
                    terminal_checkouts.c.id == checkout.id,
                )
                .values(
                    status=checkout.status.value,
                    payment_id=checkout.payment_id,
                    decline_code=checkout.decline_code,
                    updated_at=func.now(),
                )
                .returning(terminal_checkouts.c.updated_at)
            )
        ).one()
        checkout.updated_at = row.updated_at


class SqlSettingsRepository:
    def __init__(self, conn: AsyncConnection, merchant_id: str) -> None:
        self._conn = conn
        self._merchant = merchant_id

    async def get(self, *, lock: bool = False) -> PaymentSettings | None:
        query = select(merchant_settings).where(merchant_settings.c.merchant_id == self._merchant)
        row = (await self._conn.execute(query.with_for_update() if lock else query)).first()
        if row is None:
            return None
        return PaymentSettings(row.authorization_window_seconds, row.updated_at, row.version)

    async def save(self, settings: PaymentSettings) -> bool:
        t = merchant_settings
        values = {
            "authorization_window_seconds": settings.authorization_window_seconds,
            "version": settings.version,
        }
        row = (
            await self._conn.execute(
                pg_insert(t)
                .values(merchant_id=self._merchant, **values)
                .on_conflict_do_update(
                    index_elements=[t.c.merchant_id],
                    set_={**values, "updated_at": func.now()},
                    where=t.c.version == settings.version - 1,
                )
                .returning(t.c.updated_at)
            )
        ).first()
        if row is None:
            return False
        settings.updated_at = row.updated_at
        return True


class PaymentUow(UnitOfWork):
    """The kit's unit of work plus this service's repositories and event mapping."""

    events = events.REGISTRY

    @property
    def payments(self) -> SqlPaymentRepository:
        return SqlPaymentRepository(self.conn, self.merchant_id)

    @property
    def operations(self) -> SqlOperationRepository:
        return SqlOperationRepository(self.conn, self.merchant_id)

    @property
    def refunds(self) -> SqlRefundRepository:
        return SqlRefundRepository(self.conn, self.merchant_id)

    @property
    def terminals(self) -> SqlTerminalRepository:
        return SqlTerminalRepository(self.conn, self.merchant_id)

    @property
    def credits(self) -> SqlCreditRepository:
        return SqlCreditRepository(self.conn, self.merchant_id)

    @property
    def out_of_band(self) -> SqlOutOfBandRepository:
        return SqlOutOfBandRepository(self.conn, self.merchant_id)

    @property
    def settings(self) -> SqlSettingsRepository:
        return SqlSettingsRepository(self.conn, self.merchant_id)


# --- the background sweeps' work lists, across merchants -------------------------------------


@dataclass(frozen=True)
class OpenWork:
    """Something the reconciler or the expiry sweep must settle, and whose merchant it is."""

    merchant_id: str
    kind: str  # "payment", "operation", "refund", "terminal" or "expired"
    id: str


def _pending(table: Table, kind: str, grace: timedelta) -> Any:
    return select(table.c.merchant_id, literal(kind).label("kind"), table.c.id).where(
        table.c.status == "pending", table.c.updated_at < func.now() - grace
    )


async def open_work(conn: AsyncConnection, grace: timedelta, limit: int = 500) -> list[OpenWork]:
    """Pending work older than `grace` (a live call is given that long to answer), and
    authorisations past their window with something left to void: at most `limit` of each
    kind, so a backlog of one (answers lost in an acquirer's bad hour, left pending until it
    answers lookups again) never keeps the others (a reader's customer, an expiry) waiting."""
    expired = select(payments.c.merchant_id, literal("expired").label("kind"), payments.c.id).where(
        payments.c.status.in_(("authorized", "captured")),
        payments.c.expires_at < func.now(),
        payments.c.authorized > payments.c.captured + payments.c.voided,
        payments.c.capturing == 0,
        payments.c.voiding.is_(False),
    )
    kinds = (
        _pending(payments, "payment", grace),
        _pending(operations, "operation", grace),
        _pending(refunds, "refund", grace),
        # A reader's answer is asked for as soon as the checkout is pending.
        _pending(terminal_checkouts, "terminal", timedelta(0)),
        expired,
    )
    query = union_all(*(kind.limit(limit) for kind in kinds))
    rows: Sequence[Row[Any]] = (await conn.execute(query)).all()
    return [OpenWork(r.merchant_id, r.kind, r.id) for r in rows]
