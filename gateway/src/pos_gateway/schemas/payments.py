"""Payments and refunds (the vocabulary of commerce-states: payment and refund statuses)."""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from pos_gateway.routes.common import INT64, INT64_MAX
from pos_gateway.schemas.base import Answer, Id, Money, OptionalId, Page, Sku, Timestamp, Version

TenderType = Literal["cash", "card", "gift_card", "external"]
# Words a list of the document once fixed to fewer values: open strings now, their values said
# in words, so a client generated from the first document keeps working as the list grows.
TENDER_WORDS = "`cash`, `card`, `gift_card` or `external`"


class Payment(Answer):
    id: Id
    order_id: OptionalId = Field(description="The order it pays for; empty for a standalone one")
    tender_type: str = Field(max_length=32, description=TENDER_WORDS)
    amount: Money = Field(description="What was asked for, tip excluded")
    status: str = Field(
        max_length=32,
        description="`pending` while the processor's answer is unknown (the reconciler settles "
        "it), `authorized`, `captured` (in full or in part), `voided`, or `failed` (see "
        "`decline_code`); `declined` is no longer sent: a decline is `failed`",
    )
    change_due: Money | None = Field(description="Cash only: tendered minus the total")
    card_summary: str = Field(
        max_length=64, description="Card and gift card: brand and last four characters"
    )
    decline_reason: str = Field(max_length=200, description="In words, when it failed")
    created_at: Timestamp
    reference: str = Field(max_length=128, description="Your reference for a standalone payment")
    location_id: OptionalId
    tip: Money | None = Field(description="The tip, on top of the amount")
    total: Money | None = Field(description="amount + tip: what is authorised")
    authorized: Money | None = Field(description="What the processor authorised")
    captured: Money | None = Field(description="What was captured so far, over every capture")
    refunded: Money | None = Field(description="What was refunded so far (succeeded refunds)")
    credited: Money | None = Field(
        None,
        description="What of the captured money pays for an exchange's new order (the returned "
        "goods' credit): not refundable from this payment, except by a return of that order's "
        "goods",
    )
    paid_out_of_band: Money | None = Field(
        None,
        description="What of the captured money a return's refund gave back another way (the "
        "processor refused it; a person settled it as paid in cash or externally): never "
        "refundable from this payment again",
    )
    voided: Money | None = Field(description="What was released uncaptured (void or expiry)")
    decline_code: str = Field(
        max_length=64,
        description="Stable code when it failed: `card_declined`, `insufficient_funds`, "
        "`expired_card`, `processor_unavailable`",
    )
    card_brand: str = Field(max_length=32, description="Card: visa, mastercard, ...")
    card_last4: str = Field(max_length=4)
    cash_tendered: Money | None = Field(description="Cash only: what the customer handed over")
    external_reference: str = Field(
        max_length=128, description="External only: the other system's reference"
    )
    expires_at: Timestamp | None = Field(
        description="An authorisation not captured by then is voided"
    )
    updated_at: Timestamp | None = None
    version: int = Field(0, ge=0, le=INT64_MAX, json_schema_extra=INT64)


class PaymentList(Page[Payment]):
    pass


class RefundLine(Answer):
    sku: Sku
    quantity: int = Field(ge=1, le=INT64_MAX, json_schema_extra=INT64)


class Refund(Answer):
    id: Id
    payment_id: Id
    order_id: OptionalId
    tender_type: TenderType = Field(description="The tender the money goes back to")
    amount: Money
    status: Literal["pending", "succeeded", "failed"]
    reason: str = Field(max_length=500)
    lines: list[RefundLine] = Field(max_length=200, description="The order lines it is for")
    failure_code: str = Field(max_length=64, description="Why it failed, when it did")
    created_at: Timestamp
    updated_at: Timestamp


class RefundList(Page[Refund]):
    pass


class RefundsCreated(Answer):
    """One refund per tender the money goes back to."""

    data: list[Refund] = Field(max_length=200)


class TerminalCheckout(Answer):
    id: Id
    order_id: OptionalId = Field(description="The order, when the checkout was sent for one")
    reference: str = Field(max_length=128, description="Your reference (a register's sale)")
    location_id: Id
    device_id: Id = Field(description="The reader it was sent to")
    amount: Money
    tip: Money
    status: Literal["pending", "completed", "declined", "cancelled", "timed_out"] = Field(
        description="`pending` until the reader answers: `completed` (the payment is "
        "captured), `declined` (the payment failed), `cancelled` (at the reader or from the "
        "register), `timed_out` (no answer before `deadline`)"
    )
    payment_id: OptionalId = Field(description="The payment the reader took, once it answered")
    decline_code: str = Field(max_length=64)
    deadline: Timestamp
    created_at: Timestamp
    updated_at: Timestamp


class PaymentSettings(Answer):
    authorization_window_seconds: int = Field(
        ge=60,
        le=31 * 24 * 3600,
        json_schema_extra=INT64,
        description="An authorisation not captured within this is voided (`payment.voided`, "
        "reason `expired`) and a capture after it is a 409 `authorization_expired`",
    )
    updated_at: Timestamp | None = Field(description="Null while the defaults apply")
    version: Version


class OrderPayments(Answer):
    """What an order's tenders came to (split tender: card + cash + gift card ...)."""

    order_id: Id
    authorized: Money = Field(description="Authorised over every tender, net of voids")
    captured: Money
    refunded: Money
    balance_due: Money | None = Field(
        description="The order's total minus what its tenders authorised"
    )
    payments: list[Payment] = Field(max_length=200, description="In the order they were taken")
