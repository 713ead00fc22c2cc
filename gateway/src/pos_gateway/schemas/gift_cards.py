"""Gift cards, their activities, and the settlement report."""

from __future__ import annotations

from typing import Annotated

from pydantic import Field

from pos_gateway.routes.common import INT64, INT64_MAX
from pos_gateway.schemas.base import (
    Answer,
    Count,
    Id,
    Money,
    OptionalId,
    Page,
    SignedMoney,
    Timestamp,
    Version,
)

# A code as printed (groups of four) or as a merchant's pre-printed card has it.
GiftCardCode = Annotated[str, Field(pattern=r"^[A-Za-z0-9_ -]{4,80}$", max_length=80)]
# A merchant's pre-printed code as it is issued. Only its letters and digits make it hard to
# guess: at least 8 of them (a length after normalisation, which JSON Schema can't state).
SUPPLIED_CODE = (
    "A pre-printed card's code: 8 to 64 letters, digits, '-' or '_', at least 8 of them letters "
    "or digits ('-' and '_' alone are no secret: a 400 naming `code`)"
)
SuppliedGiftCardCode = Annotated[
    str, Field(pattern=r"^[A-Za-z0-9_-]{8,64}$", min_length=8, max_length=64)
]


class GiftCard(Answer):
    id: Id
    code_last4: str = Field(max_length=4, description="All that is kept of the code")
    balance: Money
    status: str = Field(max_length=32, description="`active` or `deactivated`")
    customer_id: OptionalId
    order_id: OptionalId = Field(description="The order that sold it, as an order line")
    order_line_id: OptionalId
    reason: str = Field(
        max_length=32,
        description="`sale`, `store_credit` (a return without a receipt) or `promotional`",
    )
    location_id: OptionalId
    version: int = Field(ge=0, le=INT64_MAX, json_schema_extra=INT64)
    created_at: Timestamp
    updated_at: Timestamp


class GiftCardList(Page[GiftCard]):
    pass


class GiftCardActivity(Answer):
    id: Id
    gift_card_id: Id
    kind: str = Field(
        max_length=32,
        description="`activate`, `load`, `redeem`, `refund`, `adjust` or `deactivate`",
    )
    amount: SignedMoney = Field(description="Value in positive, value out negative")
    balance_after: Money
    reference: str = Field(
        max_length=200,
        description="What caused it: the payment's id for the card taken as a tender (its "
        "redemption, what a void gave back, the payment's refunds), the order's id for a card "
        "sold on an order, or your own reference (loads, redemptions and refunds made here)",
    )
    location_id: OptionalId
    created_at: Timestamp


class GiftCardActivityList(Page[GiftCardActivity]):
    pass


class GiftCardMoved(Answer):
    """A card after a change, and the activity the change wrote."""

    gift_card: GiftCard
    activity: GiftCardActivity


class NewGiftCard(GiftCardMoved):
    code: GiftCardCode | None = Field(description="Shown in this answer only; null in a replay")
    secret_redacted: bool = Field(description="true in a replay: the code is not kept")


class GiftCardRedeemed(GiftCardMoved):
    redeemed: Money = Field(description="What the card gave")
    remaining_due: Money = Field(description="What is still due on another tender")


class GiftCardSettings(Answer):
    max_balance: int = Field(
        ge=1, le=10**12, json_schema_extra=INT64, description="The most one card may hold"
    )
    version: Version


class TenderTotals(Answer):
    name: str = Field(max_length=32, description="A tender type, or a card brand")
    captured: Money
    captured_count: Count
    refunded: Money
    refunded_count: Count
    net: SignedMoney = Field(
        description="Captured less refunded: below zero on a day (or a "
        "shift) that gave back more than it took"
    )


class SettlementReport(Answer):
    location_id: Id
    date: str = Field(pattern=r"^\d{4}-\d\d-\d\d$", max_length=10)
    time_zone: str = Field(max_length=64, description="The location's, which sets the day")
    starts_at: Timestamp = Field(description="Local midnight, in UTC")
    ends_at: Timestamp = Field(description="The next local midnight (23 to 25 hours later)")
    tenders: list[TenderTotals] = Field(max_length=16, description="Every tender type")
    card_brands: list[TenderTotals] = Field(max_length=64)
    gift_cards_sold: Money = Field(
        description="Value put on cards here: issued and loaded. Store credit and promotional "
        "cards are no sale: they are in `store_credit_issued` and `promotional_issued`; sales "
        "undone are in `gift_card_sales_undone`"
    )
    gift_cards_sold_count: Count
    gift_cards_sold_cash: Money = Field(
        description="Of `gift_cards_sold`, what the customers paid in cash at a register "
        "(`paid_in_cash` on a card sold on its own or a load): cash in the drawers that no "
        "payment took, so in no tender. The day's cash is the `cash` tender's net and this, as "
        "a shift's `expected_cash` counts it"
    )
    gift_card_sales_undone: Money = Field(
        description="Cards sold here with an order and deactivated that day because the order "
        "was cancelled or the line returned: what was taken off them. Apart from the day's "
        "sales, so that a day undoing an earlier day's sale is never a negative day of sales"
    )
    gift_card_sales_undone_count: Count
    promotional_issued: Money = Field(
        description="Value of the cards given away here as a promotion (`reason: promotional`)"
    )
    promotional_issued_count: Count
    store_credit_issued: Money = Field(
        description="Value of the cards issued here as store credit (`reason: store_credit`, a "
        "return without a receipt)"
    )
    store_credit_issued_count: Count
    gift_cards_redeemed: SignedMoney = Field(
        description="Value taken off gift cards here, whatever the route: the gift card "
        "tender net of its refunds, and redemptions through `POST /v1/gift-cards/redeem` "
        "naming this `location_id`, net of value given back to cards here through "
        "`POST /v1/gift-cards/{id}/refunds`; so it may exceed the `gift_card` tender's net. A "
        "redemption naming no location is in no location's report"
    )
    tips: Money
    net: SignedMoney = Field(
        description="Every tender's net: below zero on a day that gave back more than it took"
    )
    computed_at: Timestamp
