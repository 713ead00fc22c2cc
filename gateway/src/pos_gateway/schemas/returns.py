"""Returns of an order's units, refunded to the original tenders."""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from pos_gateway.routes.common import INT64
from pos_gateway.schemas.base import Answer, Id, Money, OptionalId, Page, Timestamp
from pos_gateway.schemas.orders import LineSku, Order


class ReturnLine(Answer):
    line_id: str = Field(
        max_length=32, description="The order line (`L<n>`); empty without a receipt"
    )
    sku: LineSku
    quantity: int = Field(ge=1, le=10_000, json_schema_extra=INT64)
    restock: bool = Field(description="Back to stock at `location_id`, or not (damaged, say)")
    location_id: Id = Field(description="The store that took the units back")
    amount: Money = Field(
        description="The refund for these units: their share of what the line paid after every "
        "discount, with its tax"
    )


class ReturnRefund(Answer):
    refund_id: Id
    payment_id: Id = Field(description="The tender it went back to")
    amount: Money
    status: str = Field(max_length=32, description="`pending`, `succeeded` or `failed`")


class ReturnSettlement(Answer):
    outcome: Literal["paid_out_of_band", "refused"] = Field(
        description="`paid_out_of_band`: what the payment processor did not refund was paid "
        "another way (cash from the till, a transfer); `refused`: it is not paid"
    )
    amount: Money = Field(
        description="What of the return's refund the payment processor did not pay, settled "
        "this way"
    )
    tender_type: Literal["cash", "external"] | None = Field(
        description="Paid out of band: how; null when refused"
    )
    reference: str = Field(
        max_length=128, description="Paid out of band: the till's receipt, a transfer's reference"
    )
    reason: str = Field(max_length=500, description="Why it was settled this way")
    settled_by: str = Field(
        max_length=80,
        description="Who settled it: the staff member signed in at the register, or `key:<id>` "
        "of the API key or OAuth client",
    )
    settled_at: Timestamp


class Return(Answer):
    id: Id
    order_id: OptionalId = Field(description="Empty for a return without a receipt")
    lines: list[ReturnLine] = Field(min_length=1, max_length=200)
    reason: str = Field(max_length=50, examples=["wrong_size"])
    override_reason: str = Field(
        max_length=500, description="Why it was taken past the return window, when it was"
    )
    amount: Money = Field(description="The refund: the lines' amounts together")
    status: Literal["pending", "completed"] = Field(
        description="`pending` while the refund and restock are under way (a retry of the "
        "same request finishes it), or while a refund refused for good waits for a person "
        "(`refusal_code`); then `completed`: refunded and restocked, or settled by a person "
        "(`settlement`)"
    )
    refunds: list[ReturnRefund] = Field(
        max_length=50, description="One per tender refunded, from the last one taken backwards"
    )
    created_at: Timestamp
    completed_at: Timestamp | None = None
    customer_id: OptionalId = Field("", description="A return without a receipt: credited")
    store_credit_gift_card_id: OptionalId = Field(
        "", description="A return without a receipt: the store credit card issued"
    )
    exchange_order_id: OptionalId = Field(
        "", description="Part of an exchange: the new order its units pay for"
    )
    credited: Money | None = Field(
        None,
        description="Part of an exchange: how much of `amount` paid for the new order instead "
        "of being refunded (`refunds` carry only the rest, the difference owed)",
    )
    refusal_code: str = Field(
        "",
        max_length=64,
        description="The payment processor or service refused the refund for good "
        "(`refund_failed`, `refund_partly_failed`, `amount_exceeds_refundable`, "
        "`not_captured`): the return stays `pending` for a person to settle "
        "(`POST /v1/orders/{order_id}/returns/{return_id}/settle`) and is not retried. Kept "
        "once it is settled; empty otherwise",
    )
    settlement: ReturnSettlement | None = Field(
        None, description="How a person settled a refund refused for good; null otherwise"
    )
    register_id: OptionalId = Field(
        "",
        description="Taken at a register: that register (a refund finished later, by a retry "
        "or by the service itself, is still that register's); empty from the back office",
    )
    staff_id: OptionalId = Field(
        "", description="Taken at a register: the staff member signed in there; empty otherwise"
    )
    shift_id: OptionalId = Field(
        "",
        description="A return refunding cash: the register's shift open when it was taken. Its "
        "cash counts in the shift open at that register when the refund is paid: this one, "
        "or, if it was closed before the refund went through, the register's next one; "
        "empty when no cash goes back",
    )
    updated_at: Timestamp | None = Field(
        None,
        description="The moment of its last change: its place in the list's `updated_since` feed",
    )


class StoreCredit(Answer):
    gift_card_id: Id
    code: str | None = Field(
        max_length=64, description="The card's code: in this answer only; null in a replay"
    )


class ReceiptlessReturn(Answer):
    order_return: Return = Field(description="The return (no order: `order_id` is empty)")
    store_credit: StoreCredit | None = Field(
        description="The gift card credited; null in a replay (its code is not kept)"
    )
    secret_redacted: bool = Field(False, description="true in a replay: the code is not kept")


class ReturnList(Page[Return]):
    pass


class Exchange(Answer):
    order_return: Return = Field(
        description="The return of the original order's units (`exchange_order_id`: the new order)"
    )
    order: Order = Field(description="The new order (`exchange_of`: the original order)")
    original_order: Order = Field(description="The original order after the exchange")
    charged: Money = Field(
        description="The difference taken with `tenders` (on the new order): the new total "
        "less the returned units' value, when the new lines cost more; zero otherwise"
    )
    refunded: Money = Field(
        description="The difference refunded to the original order's tenders, when the new "
        "lines cost less; zero otherwise"
    )


__all__ = [
    "Exchange",
    "ReceiptlessReturn",
    "Return",
    "ReturnList",
    "ReturnSettlement",
    "StoreCredit",
]
