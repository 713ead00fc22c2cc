"""Domain objects <-> pos.payment.v1 protobuf messages."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from pos.common.v1 import money_pb2
from pos.payment.v1 import payment_pb2
from pos_kit.enums import ProtoEnum
from pos_payment.domain.model import (
    CreditStatus,
    ExchangeCredit,
    OperationStatus,
    OrderPayments,
    OutOfBandRefund,
    Payment,
    PaymentSettings,
    PaymentStatus,
    Refund,
    TenderType,
    TerminalCheckout,
    TerminalStatus,
    card_summary,
)

TENDERS = ProtoEnum(TenderType, payment_pb2.TenderType)
STATUSES = ProtoEnum(PaymentStatus, payment_pb2.PaymentStatus)
OPERATION_STATUSES = ProtoEnum(OperationStatus, payment_pb2.OperationStatus)
REFUND_STATUSES = ProtoEnum(OperationStatus, payment_pb2.RefundStatus)
TERMINAL_STATUSES = ProtoEnum(TerminalStatus, payment_pb2.TerminalCheckoutStatus)


def money(amount: int, currency: str) -> money_pb2.Money:
    return money_pb2.Money(amount=amount, currency=currency)


def _stamped(msg: Any, created: datetime | None, updated: datetime | None) -> None:
    if created is not None:
        msg.created_at.FromDatetime(created)
    if updated is not None:
        msg.updated_at.FromDatetime(updated)


def payment_to_proto(p: Payment) -> payment_pb2.Payment:
    cur = p.currency
    msg = payment_pb2.Payment(
        id=p.id,
        order_id=p.order_id,
        reference=p.reference,
        location_id=p.location_id,
        tender_type=payment_pb2.TenderType.ValueType(TENDERS.to_proto(p.tender_type)),
        amount=money(p.amount, cur),
        tip=money(p.tip, cur),
        total=money(p.total, cur),
        status=payment_pb2.PaymentStatus.ValueType(STATUSES.to_proto(p.status)),
        authorized=money(p.authorized, cur),
        captured=money(p.captured, cur),
        voided=money(p.voided, cur),
        refunded=money(p.refunded, cur),
        credited=money(p.credited, cur),
        paid_out_of_band=money(p.paid_out_of_band, cur),
        card_summary=card_summary(p.card_brand, p.card_last4),
        card_brand=p.card_brand,
        card_last4=p.card_last4,
        external_reference=p.external_reference,
        decline_code=p.decline_code,
        decline_reason=p.decline_reason,
        version=p.version,
    )
    if p.change_due is not None:
        msg.change_due.CopyFrom(money(p.change_due, cur))
    if p.cash_tendered is not None:
        msg.cash_tendered.CopyFrom(money(p.cash_tendered, cur))
    if p.expires_at is not None:
        msg.expires_at.FromDatetime(p.expires_at)
    _stamped(msg, p.created_at, p.updated_at)
    return msg


def refund_to_proto(r: Refund) -> payment_pb2.Refund:
    msg = payment_pb2.Refund(
        id=r.id,
        payment_id=r.payment_id,
        order_id=r.order_id,
        tender_type=payment_pb2.TenderType.ValueType(TENDERS.to_proto(r.tender_type)),
        amount=money(r.amount, r.currency),
        status=payment_pb2.RefundStatus.ValueType(REFUND_STATUSES.to_proto(r.status)),
        reason=r.reason,
        lines=[payment_pb2.RefundLine(sku=x.sku, quantity=x.quantity) for x in r.lines],
        failure_code=r.failure_code,
    )
    _stamped(msg, r.created_at, r.updated_at)
    return msg


def credit_to_proto(c: ExchangeCredit) -> payment_pb2.ExchangeCredit:
    msg = payment_pb2.ExchangeCredit(
        exchange_order_id=c.exchange_order_id,
        order_id=c.order_id,
        status=(
            payment_pb2.EXCHANGE_CREDIT_STATUS_APPLIED
            if c.status is CreditStatus.APPLIED
            else payment_pb2.EXCHANGE_CREDIT_STATUS_RELEASED
        ),
        amounts=[
            payment_pb2.TenderAmount(payment_id=k, amount=money(v, c.currency))
            for k, v in c.amounts.items()
        ],
    )
    _stamped(msg, c.created_at, c.updated_at)
    return msg


def out_of_band_to_proto(r: OutOfBandRefund) -> payment_pb2.OutOfBandRefund:
    msg = payment_pb2.OutOfBandRefund(
        return_id=r.return_id,
        order_id=r.order_id,
        tender_type=TENDERS.to_proto(r.tender),
        reference=r.reference,
        amounts=[
            payment_pb2.TenderAmount(payment_id=k, amount=money(v, r.currency))
            for k, v in r.amounts.items()
        ],
        set_aside=[
            payment_pb2.TenderAmount(payment_id=k, amount=money(v, r.currency))
            for k, v in r.set_aside.items()
        ],
        shift_id=r.shift_id,
        drawer_movement_id=r.movement_id,
    )
    if r.created_at is not None:
        msg.created_at.FromDatetime(r.created_at)
    return msg


def order_payments_to_proto(
    o: OrderPayments, total: int | None
) -> payment_pb2.GetOrderPaymentsResponse:
    cur = o.currency
    msg = payment_pb2.GetOrderPaymentsResponse(
        order_id=o.order_id,
        authorized=money(o.authorized, cur),
        captured=money(o.captured, cur),
        refunded=money(o.refunded, cur),
        payments=[payment_to_proto(p) for p in o.payments],
    )
    if total is not None:
        msg.balance_due.CopyFrom(money(o.balance_due(total), cur))
    return msg


def terminal_to_proto(c: TerminalCheckout) -> payment_pb2.TerminalCheckout:
    msg = payment_pb2.TerminalCheckout(
        id=c.id,
        order_id=c.order_id,
        reference=c.reference,
        location_id=c.location_id,
        device_id=c.device_id,
        amount=money(c.amount, c.currency),
        tip=money(c.tip, c.currency),
        status=payment_pb2.TerminalCheckoutStatus.ValueType(TERMINAL_STATUSES.to_proto(c.status)),
        payment_id=c.payment_id,
        decline_code=c.decline_code,
    )
    msg.deadline.FromDatetime(c.deadline)
    _stamped(msg, c.created_at, c.updated_at)
    return msg


def settings_to_proto(s: PaymentSettings) -> payment_pb2.PaymentSettings:
    msg = payment_pb2.PaymentSettings(
        authorization_window_seconds=s.authorization_window_seconds, version=s.version
    )
    if s.updated_at is not None:
        msg.updated_at.FromDatetime(s.updated_at)
    return msg
