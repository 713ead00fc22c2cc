"""A receipt: a sale's or one return's record for the customer (see pos_gateway.receipts)."""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from pos_gateway.routes.common import INT64
from pos_gateway.schemas.base import Answer, Id, Money, OptionalId
from pos_gateway.schemas.orders import LineSku

LocalTime = str  # RFC 3339 with the location's offset: `2026-01-15T04:30:00-05:00`


class ReceiptLocation(Answer):
    id: Id
    name: str = Field(max_length=200)
    time_zone: str = Field(max_length=64, description="IANA: the receipt's times are in it")


class ReceiptLine(Answer):
    line_id: str = Field(max_length=32)
    name: str = Field(max_length=500)
    sku: LineSku
    quantity: int = Field(ge=1, le=10_000, json_schema_extra=INT64)
    unit_price: Money | None = Field(None, description="Sale receipts")
    line_total: Money | None = Field(None, description="Sale receipts")
    amount: Money | None = Field(None, description="Return receipts: the refund for the units")
    gift_card_last4: str = Field("", max_length=4, description="A gift card line's card")
    restocked: bool | None = Field(None, description="Return receipts")
    discounts: list[ReceiptDiscount] = Field(
        default_factory=list, max_length=50, description="Sale receipts: the line's discounts"
    )
    taxes: list[ReceiptLineTax] = Field(
        default_factory=list, max_length=20, description="Sale receipts: the line's tax per rate"
    )


class ReceiptDiscount(Answer):
    name: str = Field(max_length=600, description="The offer's name, or a manual one's reason")
    amount: Money


class ReceiptLineTax(Answer):
    name: str = Field(max_length=100, examples=["Tax 8.25%"])
    rate_bps: int = Field(ge=0, le=100_000, json_schema_extra=INT64)
    amount: Money


class ReceiptTax(Answer):
    name: str = Field(max_length=100, examples=["Tax 8.25%"])
    rate_bps: int = Field(ge=0, le=100_000, json_schema_extra=INT64)
    compound: bool = Field(
        False,
        description="Charged on the goods plus the taxes before it, as the lines were taxed "
        "(lines priced before that was kept: as the store they were taxed at compounds it "
        "now): a compound tax and a plain one of the same name and rate (two stores, or the "
        "store's settings changed between sales) are two entries, the paper roll marking the "
        "compound one",
    )
    taxable: Money
    amount: Money


class ReceiptTender(Answer):
    payment_id: Id
    tender_type: str = Field(max_length=32)
    card_brand: str = Field(max_length=32)
    card_last4: str = Field(max_length=4)
    amount: Money = Field(
        description="What it pays for the sale: what it captured, or (goods still to be "
        "handed over or shipped, captured then) what it holds for them, authorised less voided"
    )
    refunded: Money | None = Field(
        None, description="Sale receipts: what went back to this tender so far"
    )


class ReceiptTenderToRecord(Answer):
    tender_type: str = Field(max_length=32)
    amount: Money


class ReceiptReturnLine(Answer):
    line_id: str = Field(max_length=32)
    quantity: int = Field(ge=1, le=10_000, json_schema_extra=INT64)
    amount: Money


EXCHANGE_ORDER = Field("", description="Made in an exchange: the new order its units paid for")
CREDITED = Field(None, description="Made in an exchange: how much paid for the new order")


class ReceiptReturn(Answer):
    return_id: Id
    at: LocalTime | None = Field(None, max_length=40)
    lines: list[ReceiptReturnLine] = Field(max_length=200)
    amount: Money
    exchange_order_id: OptionalId = EXCHANGE_ORDER
    credited: Money | None = CREDITED


class ReceiptSettlement(Answer):
    outcome: Literal["paid_out_of_band", "refused"] = Field(
        description="`paid_out_of_band`: paid another way (`tender_type`); `refused`: not paid"
    )
    tender_type: Literal["cash", "external"] | None = Field(
        description="Paid out of band: how; null when refused"
    )
    amount: Money = Field(description="What the refunds to the tenders did not pay")
    reference: str = Field(max_length=128, description="The till's receipt, a transfer's id")


class Receipt(Answer):
    kind: Literal["sale", "return"]
    order_id: Id
    return_id: OptionalId = Field("", description="A return's receipt: the return")
    location: ReceiptLocation
    at: LocalTime | None = Field(None, max_length=40, description="In the location's zone")
    status: str = Field("", max_length=32, description="Sale receipts: the order's status")
    reason: str = Field("", max_length=50, description="Return receipts: why")
    lines: list[ReceiptLine] = Field(max_length=200)
    subtotal: Money | None = None
    discounts: list[ReceiptDiscount] = Field(default_factory=list, max_length=50)
    taxes: list[ReceiptTax] = Field(
        default_factory=list,
        max_length=20,
        description="Sale receipts: each tax, rate and compounding, with what it was charged "
        "on (`taxable`: the goods after their discounts, less the tax they contain when prices "
        "include it; for a compound tax, plus the taxes before it, as the store each line was "
        "taxed at, where its goods were handed over or left from, compounds it)",
    )
    tax_inclusive: bool = Field(
        False,
        description="Sale receipts: the prices held their tax (VAT), so `taxes` are contained "
        "in `total`, not added to it",
    )
    total: Money = Field(description="A return's receipt: the refund")
    tenders: list[ReceiptTender] = Field(
        max_length=50,
        description="Paid with (sale), or refunded to (return: the refunds that were not refused)",
    )
    tenders_to_record: list[ReceiptTenderToRecord] = Field(
        default_factory=list,
        max_length=50,
        description="Sale receipts: cash taken while the payment service was away, not in a "
        "payment yet (the order's `tenders_to_record`); once recorded it is among `tenders`",
    )
    change_due: Money | None = None
    returns: list[ReceiptReturn] = Field(default_factory=list, max_length=200)
    refunded: Money | None = Field(
        None,
        description="Sale receipts: what went back to the tenders: its returns' refunds (an "
        "exchange's credited part paid for its new order instead) and refunds made otherwise "
        "(through the payments API, by a cancellation)",
    )
    settlement: ReceiptSettlement | None = Field(
        None,
        description="Return receipts: what a person settled of a refund the payment processor "
        "refused (the return's `settlement`); null otherwise",
    )
    return_policy: str = Field(max_length=500, description="The return window's sentence")
    return_policy_text: str = Field(
        "", max_length=1_000, description="The merchant's own return policy (order settings)"
    )
    exchange_order_id: OptionalId = EXCHANGE_ORDER
    credited: Money | None = CREDITED
    exchange_of: OptionalId = Field(
        "", description="An exchange's new order: the order whose returned units paid for it"
    )
    exchange_credit: Money | None = Field(
        None, description="An exchange's new order: what the returned units paid of it"
    )
