"""Domain objects <-> pos.payment.v1 protobuf messages."""

from __future__ import annotations

from pos.payment.v1 import payment_pb2
from pos_kit.proto_money import to_proto
from pos_payment.domain.model import Payment, PaymentStatus, TenderType

TENDERS = {
    TenderType.CASH: payment_pb2.TENDER_TYPE_CASH,
    TenderType.CARD: payment_pb2.TENDER_TYPE_CARD,
}
STATUSES = {
    PaymentStatus.CAPTURED: payment_pb2.PAYMENT_STATUS_CAPTURED,
    PaymentStatus.DECLINED: payment_pb2.PAYMENT_STATUS_DECLINED,
}


def payment_to_proto(p: Payment) -> payment_pb2.Payment:
    msg = payment_pb2.Payment(
        id=p.id,
        order_id=p.order_id,
        tender_type=TENDERS[p.tender_type],
        amount=to_proto(p.amount),
        status=STATUSES[p.status],
        card_summary=p.card_summary,
        decline_reason=p.decline_reason,
    )
    if p.change_due is not None:
        msg.change_due.CopyFrom(to_proto(p.change_due))
    if p.created_at is not None:
        msg.created_at.FromDatetime(p.created_at)
    return msg
