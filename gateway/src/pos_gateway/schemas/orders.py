"""Checkout and orders (a checkout answers its payment too: schemas.payments)."""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import Field

from pos_gateway.routes.common import INT64, INT64_MAX
from pos_gateway.schemas.base import Answer, Id, Money, OptionalId, Page, Timestamp
from pos_gateway.schemas.payments import Payment
from pos_gateway.schemas.stock import GeoPoint

# A line's SKU; empty on a gift card line.
LineSku = Annotated[
    str,
    Field(pattern=r"^([A-Za-z0-9][A-Za-z0-9._/-]{0,63})?$", max_length=64, examples=["TEE-BLK-M"]),
]
MetadataValue = Annotated[str, Field(max_length=500)]
MetadataKey = Annotated[str, Field(min_length=1, max_length=40)]
OrderStatus = Literal[
    "draft", "pending_payment", "confirmed", "completed", "cancelled", "payment_declined"
]
FulfillmentType = Literal["in_store", "pickup", "shipment"]
FulfillmentStatus = Literal[
    "fulfilled",
    "reserved",
    "ready_for_pickup",
    "picked_up",
    "picked",
    "shipped",
    "delivered",
    "cancelled",
    "expired",
]


class OrderLineGiftCard(Answer):
    gift_card_id: OptionalId = Field(description="The card, once activated (at confirmation)")
    code_last4: str = Field(max_length=4, description="All that is kept of the code")


class OrderLine(Answer):
    sku: LineSku
    name: str = Field(max_length=500, description="The product's name, with the variant's")
    quantity: int = Field(ge=1, le=10_000, json_schema_extra=INT64)
    unit_price: Money
    line_total: Money
    fulfillment_id: OptionalId = Field("", description="The fulfilment this line leaves by")
    id: str = Field(
        "", max_length=32, description="`L<n>`: the line's place in the request", examples=["L1"]
    )
    gift_card: OrderLineGiftCard | None = Field(
        None, description="Set on a gift card line (its `sku` is empty)"
    )


class Fulfillment(Answer):
    id: Id
    type: FulfillmentType
    status: FulfillmentStatus = Field(
        description="in_store: fulfilled; pickup: reserved → ready_for_pickup → picked_up (or "
        "cancelled, expired); shipment: reserved → picked → shipped → delivered (or cancelled)"
    )
    location_id: Id = Field(description="Where the goods leave from")
    reservation_id: OptionalId = Field(description="The stock hold (pickup and shipment)")
    carrier: str = Field(max_length=100, description="Shipment, from `shipped`")
    tracking_number: str = Field(max_length=100, description="Shipment, from `shipped`")
    amount: Money = Field(description="This fulfilment's share of the order total")
    captured: Money = Field(description="How much of that share is captured")
    ship_to: str = Field(max_length=500, description="Shipment only")
    destination: GeoPoint | None = Field(
        None, description="Shipment: where to, when sourcing picked the store"
    )


class StatusChange(Answer):
    status: str = Field(
        max_length=100,
        description="An order status, or `<fulfilment id>:<fulfilment status>`",
        examples=["confirmed"],
    )
    at: Timestamp
    reason: str = Field(max_length=100, description="Why, when there is a reason (cancelled)")


class Order(Answer):
    id: Id
    location_id: Id
    customer_id: OptionalId
    lines: list[OrderLine] = Field(min_length=1, max_length=200)
    subtotal: Money
    discount_total: Money
    tax_total: Money
    total: Money = Field(description="subtotal - discount_total + tax_total")
    status: OrderStatus = Field(
        description="draft → pending_payment → confirmed → completed, or cancelled "
        "(`payment_declined` only on orders sold before the checkout saga)"
    )
    discounts_applied: bool = Field(description="false when promotions could not be applied")
    payment_id: OptionalId = Field(description="The last payment taken; all are in payment_ids")
    created_at: Timestamp
    channel: str = Field("register", max_length=32, examples=["web"])
    version: int = Field(1, ge=1, le=INT64_MAX, json_schema_extra=INT64)
    updated_at: Timestamp | None = None
    fulfillments: list[Fulfillment] = Field(default_factory=list, max_length=20)
    timeline: list[StatusChange] = Field(
        default_factory=list, max_length=1000, description="Every transition, oldest first"
    )
    notes: str = Field("", max_length=2000)
    metadata: dict[MetadataKey, MetadataValue] = Field(default_factory=dict, max_length=50)
    cancel_reason: str = Field(
        "",
        max_length=50,
        description="requested, payment_declined, expired, abandoned, insufficient_stock, "
        "confirmation_failed",
    )
    payment_ids: list[Id] = Field(default_factory=list, max_length=50)
    paid: Money | None = Field(
        None, description="What the tenders authorised or captured, net of voids and refunds"
    )
    points_redeemed: int = Field(
        0, ge=0, le=INT64_MAX, json_schema_extra=INT64,
        description="Loyalty points redeemed on the order (their value is in discount_total)",
    )  # fmt: skip
    register_id: OptionalId = Field(
        description="A register sale: the register it was rung up on; empty otherwise"
    )
    staff_id: OptionalId = Field(
        description="A register sale: the staff member signed in at the register; empty otherwise"
    )


class IssuedGiftCard(Answer):
    line_id: str = Field(max_length=32, description="The gift card line", examples=["L2"])
    gift_card_id: Id
    code: str = Field(max_length=64, description="The card's code: shown in this answer only")


ISSUED = Field(
    None,
    max_length=200,
    description="The gift card lines this request activated, with their codes: in this answer "
    "only (null when none was activated, and in a replay)",
)
REDACTED = Field(False, description="true in a replay that had gift card codes: not kept")


class Checkout(Answer):
    order: Order
    payment: Payment | None = Field(
        None, description="The sale's payment; null for a zero total, which needs none"
    )
    gift_cards: list[IssuedGiftCard] | None = ISSUED
    secret_redacted: bool = REDACTED


class ConfirmedOrder(Order):
    gift_cards: list[IssuedGiftCard] | None = ISSUED
    secret_redacted: bool = REDACTED


class OrderList(Page[Order]):
    pass


class OrderSettings(Answer):
    capture_pickup_at_order: bool = Field(
        description="Pickups captured at confirmation (true) or at hand-over (false)"
    )
    pickup_expiry_seconds: int = Field(
        ge=0, le=INT64_MAX, json_schema_extra=INT64, description="How long a pickup waits"
    )
    hold_seconds: int = Field(
        ge=0,
        le=INT64_MAX,
        json_schema_extra=INT64,
        description="How long an unconfirmed order's holds last before it is cancelled",
    )
    authorization_window_seconds: int = Field(
        ge=0,
        le=INT64_MAX,
        json_schema_extra=INT64,
        description="An authorisation not captured within this is voided: the payment "
        "settings' (a pickup that would outlive it is captured at confirmation)",
    )
    return_window_days: int = Field(ge=0, le=INT64_MAX, json_schema_extra=INT64)
