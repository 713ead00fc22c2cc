"""Use cases of the payment service, one function each."""

from __future__ import annotations

from pos_kit.errors import FieldViolation, InvalidArgument, NotFound, raise_if, require
from pos_kit.ids import new_id
from pos_payment.domain.model import (
    Charge,
    Payment,
    PaymentCaptured,
    PaymentStatus,
    TenderType,
    card_summary,
    change_due,
)
from pos_payment.domain.processor import UnknownCardToken
from pos_payment.service.ports import CardProcessor, PaymentUnitOfWork


async def authorize_and_capture(
    uow: PaymentUnitOfWork, processor: CardProcessor, charge: Charge, idempotency_key: str
) -> Payment:
    """Take one tender in one step. A decline is an answer, not an error: it is stored too.

    `charge` is already validated (pos_payment.domain.model.validate_charge), so a refused card
    number never got this far. The caller holds the request_id claim in the same transaction,
    so a concurrent duplicate waits here instead of charging the card a second time.
    """
    payment = Payment(
        new_id("pay"), charge.order_id, charge.tender, charge.amount, PaymentStatus.CAPTURED
    )
    if charge.tender is TenderType.CASH:
        assert charge.cash_tendered is not None  # validate_charge requires it for cash
        payment.change_due = change_due(charge.amount, charge.cash_tendered)
    else:
        try:
            outcome = await processor.authorize_and_capture(
                charge.card_token, charge.amount, idempotency_key
            )
        except UnknownCardToken:
            raise InvalidArgument(
                "the card token is not valid",
                [FieldViolation("card_token", "is not a token the processor issued")],
            ) from None
        # Only brand and last four digits survive the call; the token goes no further.
        payment.card_summary = card_summary(outcome.brand, outcome.last4)
        if not outcome.approved:
            payment.status = PaymentStatus.DECLINED
            payment.decline_reason = outcome.decline_reason or "declined"
    await uow.payments.add(payment)
    if payment.status is PaymentStatus.CAPTURED:
        uow.publish(PaymentCaptured(payment))
    return payment


async def get_payment(uow: PaymentUnitOfWork, payment_id: str) -> Payment:
    raise_if(require(bool(payment_id), "id", "is required"))
    payment = await uow.payments.get(uow.merchant_id, payment_id)
    if payment is None:
        raise NotFound("payment", payment_id)
    return payment
