"""Use cases of the payment service."""

from __future__ import annotations

from pos_kit.errors import NotFound
from pos_kit.ids import new_id
from pos_kit.money import Money
from pos_payment.domain.model import (
    Payment,
    PaymentCaptured,
    PaymentStatus,
    TenderType,
    change_due,
    validate_charge,
)
from pos_payment.service.ports import CardProcessor, PaymentUnitOfWork


async def authorize_and_capture(
    uow: PaymentUnitOfWork,
    processor: CardProcessor,
    order_id: str,
    tender: TenderType | None,
    amount: Money,
    cash_tendered: Money | None,
    card_token: str,
) -> Payment:
    """Take a tender in one step. A decline is an answer, not an error: it is stored too."""
    validate_charge(order_id, tender, amount, cash_tendered, card_token)
    payment = Payment(new_id("pay"), order_id, TenderType.CASH, amount, PaymentStatus.CAPTURED)
    if tender is TenderType.CASH:
        assert cash_tendered is not None
        payment.change_due = change_due(amount, cash_tendered)
    else:
        payment.tender_type = TenderType.CARD
        result = await processor.authorize_and_capture(card_token, amount)
        if result.brand:
            payment.card_summary = f"{result.brand} •••• {result.last4}"
        if not result.approved:
            payment.status = PaymentStatus.DECLINED
            payment.decline_reason = result.decline_reason
    await uow.payments.add(payment)
    if payment.status is PaymentStatus.CAPTURED:
        uow.publish(PaymentCaptured(payment))
    return payment


async def get_payment(uow: PaymentUnitOfWork, payment_id: str) -> Payment:
    payment = await uow.payments.get(uow.merchant_id, payment_id)
    if payment is None:
        raise NotFound("payment", payment_id)
    return payment
