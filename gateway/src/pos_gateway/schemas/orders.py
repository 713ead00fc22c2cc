"""Checkout and orders (a checkout answers its payment too: schemas.payments)."""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import Field

from pos_gateway.routes.common import INT32, INT64, INT64_MAX
from pos_gateway.schemas.base import Answer, Id, Money, OptionalId, Page, Timestamp, Version
from pos_gateway.schemas.payments import Payment
from pos_gateway.schemas.stock import GeoPoint

# A line's SKU; empty on a gift card line.
LineSku = Annotated[
    str,
    Field(pattern=r"^([A-Za-z0-9][A-Za-z0-9._/-]{0,63})?$", max_length=64, examples=["TEE-BLK-M"]),
]
MetadataValue = Annotated[str, Field(max_length=500)]
MetadataKey = Annotated[str, Field(min_length=1, max_length=40)]
# Order and fulfilment statuses are open strings in answers (as the payments' are): their words
# grow with commerce-states.md, and a client generated from an earlier document keeps working.
# The known values are said in the descriptions.
ORDER_STATUS_WORDS = (
    "`draft`, `pending_payment`, `confirmed`, `completed` or `cancelled` (`payment_declined` "
    "only on orders sold before the checkout saga); more values may come: treat an unknown one "
    'as not final. `draft`: `POST /v1/orders` with `"status": "draft"` saves it priced '
    "with nothing held (edited with `PATCH /v1/orders/{id}`, held and made `pending_payment` "
    "by `POST /v1/orders/{id}/submit`); otherwise `POST /v1/orders` saves it `pending_payment`, "
    "its stock held. `POST /v1/carts/calculate` prices a cart without saving it"
)
FULFILLMENT_STATUS_WORDS = (
    "in_store: `reserved` until the order is confirmed, then `fulfilled`; pickup: `reserved` "
    "→ `ready_for_pickup` → `picked_up` (or "
    "`cancelled`, `expired`); shipment: `reserved` → `picked` → `shipped` → `delivered` (or "
    "`cancelled`); more values may come"
)
FulfillmentType = Literal["in_store", "pickup", "shipment"]


class LineDiscount(Answer):
    promotion_id: str = Field(
        max_length=64, description="The offer, or `manual` for a discount given at the register"
    )
    amount: Money
    reason: str = Field(max_length=500, description="Why, as the offer states it")
    requested_by: str = Field(
        "",
        max_length=64,
        description="A manual discount's: the staff member who gave it (`key:<id>` when given "
        "through an API key)",
    )


class LineTax(Answer):
    name: str = Field(
        max_length=64,
        description="The tax's name at the location, one of its `taxes`; `tax` for a location "
        "taxing at a single rate, which has no name. A receipt labels each tax with its rate "
        "(`Tax 8.25%`, `State 6%`): the name and `rate_bps` here are what it is made of",
        examples=["tax"],
    )
    amount: Money
    rate_bps: int = Field(
        0,
        ge=0,
        le=10_000,
        json_schema_extra=INT32,
        description="Its rate in basis points as the line was taxed, at the store the goods "
        "were handed over at or left from; 0 on a line priced before rates were kept",
        examples=[825],
    )
    compound: bool | None = Field(
        None,
        description="Whether it compounded (was charged on the line's amount plus the taxes "
        "listed before it) as the line was taxed, at that store at the sale; null on a line "
        "priced before this was kept",
        examples=[False],
    )


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
    discount_total: Money | None = Field(None, description="What the line's discounts take off")
    tax_total: Money | None = Field(
        None,
        description="The line's tax, on the line less its discounts, rounded per line (the "
        "order's tax is the sum of its lines')",
    )
    tax_category: str = Field("", max_length=64, description="The product's, as sold")
    discounts: list[LineDiscount] = Field(default_factory=list, max_length=100)
    taxes: list[LineTax] = Field(default_factory=list, max_length=10)


class Fulfillment(Answer):
    id: Id
    type: FulfillmentType
    status: str = Field(max_length=32, description=FULFILLMENT_STATUS_WORDS, examples=["reserved"])
    location_id: OptionalId = Field(
        description="Where the goods leave from. Empty on a shipment whose store sourcing has "
        "not picked yet (one asked for with a `destination` and no store): until its stock is "
        "held, and for good on such an order cancelled before"
    )
    reservation_id: OptionalId = Field(description="The stock hold (pickup and shipment)")
    carrier: str = Field(max_length=100, description="Shipment, from `shipped`")
    tracking_number: str = Field(max_length=100, description="Shipment, from `shipped`")
    amount: Money = Field(description="This fulfilment's share of the order total")
    captured: Money = Field(
        description="How much of that share was captured; a refund does not lower it (see "
        "`refunded`)"
    )
    refunded: Money | None = Field(
        None,
        description="What of `captured` went back to the customer when the fulfilment was "
        "cancelled (the order's cancellation) or expired (a pickup not collected), with what "
        "price adjustments of its units (refunds naming `lines`) had given back before: "
        "`captured` less this is what it keeps. A return's refunds are the return's (`GET "
        "/v1/orders/{id}/returns`), not counted here. Null in an event published before the "
        "field existed",
    )
    expires_at: Timestamp | None = Field(
        None,
        description="Pickup waiting to be collected (from its confirmation): when it expires "
        "(its units back in stock, its money given back); null otherwise",
    )
    ship_to: str = Field(max_length=500, description="Shipment only")
    destination: GeoPoint | None = Field(
        None, description="Shipment: where to, when sourcing picked the store"
    )


class PricingWarning(Answer):
    """Something to know about how the order or cart was priced that is not an error."""

    code: str = Field(
        max_length=64,
        description="Stable machine code: `discounts_unavailable` (promotions could not be "
        "reached: list prices, no discount; `discounts_applied` is false). More may come: show "
        "an unknown one by its `message`",
        examples=["discounts_unavailable"],
    )
    message: str = Field(max_length=500, description="In words for people")


WARNINGS: list[PricingWarning] = Field(
    default_factory=list,
    max_length=20,
    description="What to know about how it was priced, though nothing failed (empty when "
    "nothing): `discounts_unavailable` whenever `discounts_applied` is false",
)


class StatusChange(Answer):
    status: str = Field(
        max_length=100,
        description="An order status, or `<fulfilment id>:<fulfilment status>`",
        examples=["confirmed"],
    )
    at: Timestamp
    reason: str = Field(max_length=100, description="Why, when there is a reason (cancelled)")


class OrderCoupon(Answer):
    coupon_id: Id
    promotion_id: Id
    code_hint: str = Field(
        max_length=8,
        description="The code's last characters: a third of it, four at most (never the whole "
        "code)",
    )
    status: str = Field(
        max_length=32,
        description="reserved (at checkout), redeemed (the order confirmed) or released (it "
        "was cancelled, before or after its confirmation: the use is the customer's again); "
        "more values may come",
        examples=["redeemed"],
    )


class TenderToRecord(Answer):
    """Cash taken while the payment service was away: the sale is made and the money in the
    drawer, but no payment records it yet."""

    tender_type: str = Field(max_length=32, description="`cash` (an open list)", examples=["cash"])
    amount: Money
    cash_tendered: Money | None = Field(None, description="Cash: what the customer handed over")
    change_due: Money | None = Field(None, description="Cash: tendered minus the amount")
    refusal: str = Field(
        "",
        max_length=64,
        description="Set when the payment service refused for good to record it "
        "(`shift_currency_mismatch`: the register's open shift counts another currency): held "
        "for a person, no longer asked, and a return of the sale is a 409 "
        "`payment_record_refused` until a person records it "
        "(`POST /v1/orders/{id}/tenders-to-record/settle`). Empty while it waits for that "
        "service",
        examples=[""],
    )


class Order(Answer):
    id: Id
    location_id: Id
    customer_id: OptionalId
    lines: list[OrderLine] = Field(min_length=1, max_length=200)
    subtotal: Money
    discount_total: Money
    tax_total: Money
    total: Money = Field(description="subtotal - discount_total + tax_total")
    status: str = Field(max_length=32, description=ORDER_STATUS_WORDS, examples=["confirmed"])
    discounts_applied: bool = Field(description="false when promotions could not be applied")
    warnings: list[PricingWarning] = WARNINGS
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
        description="requested, payment_declined, payment_unavailable (the card never reached "
        "the processor: nothing declined, nothing taken), expired, abandoned, insufficient_stock, "
        "confirmation_failed; an exchange's new order also amount_exceeds_refundable (the "
        "returned units' money was refunded from the original order meanwhile)",
    )
    payment_ids: list[Id] = Field(default_factory=list, max_length=50)
    tender_types: list[Annotated[str, Field(max_length=32)]] = Field(
        default_factory=list,
        max_length=50,
        description="The tender type of each payment in payment_ids, in the same order: "
        "`card`, `cash`, `gift_card`, `external` (an open list: more may come)",
    )
    tender_amounts: list[Annotated[int, Field(ge=0, le=INT64_MAX, json_schema_extra=INT64)]] = (
        Field(
            default_factory=list,
            max_length=50,
            description="What each payment in payment_ids pays for the order, in minor units, in "
            "the same order: what it was taken for less what went back of it; 0 for one that "
            "holds no money (declined, voided, its answer unknown)",
        )
    )
    paid: Money | None = Field(
        None, description="What the tenders authorised or captured, net of voids and refunds"
    )
    tenders_to_record: list[TenderToRecord] = Field(
        default_factory=list,
        max_length=50,
        description="Cash taken at the register while the payment service was away: counted in "
        "`paid`, in no payment yet (nor in payment_ids). The order service records it there "
        "as soon as that service is back (once, under the sale's own request), then it is in "
        "payment_ids and no longer here; until then a return of the sale is a 409 "
        "`payment_not_recorded` to retry (`payment_record_refused` when the record was refused "
        "for good: see `refusal`)",
    )
    cancelled_total: Money | None = Field(
        None,
        description="What the order's cancelled and expired fulfilments' shares come to: not "
        "sold (refunded if it was captured, never captured otherwise). `total` less it is what "
        "the order is sold for; all of `total` for a cancelled order",
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
    coupons: list[OrderCoupon] = Field(
        default_factory=list, max_length=10, description="The coupons the order named"
    )
    exchange_of: OptionalId = Field(
        "", description="An exchange's new order: the order whose returned units pay for it"
    )
    exchange_return_id: OptionalId = Field(
        "", description="An exchange's new order: the return of those units"
    )
    exchange_credit: Money | None = Field(
        None,
        description="An exchange's new order: how much of the total the returned units pay "
        "(no payment carries it; `paid` includes it)",
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
        None,
        description="The sale's payment; null for a zero total, which needs none, and for cash "
        "taken while the payment service was away (the order's `tenders_to_record`, with the "
        "change due)",
    )
    gift_cards: list[IssuedGiftCard] | None = ISSUED
    secret_redacted: bool = REDACTED


class ConfirmedOrder(Order):
    gift_cards: list[IssuedGiftCard] | None = ISSUED
    secret_redacted: bool = REDACTED


class OrderList(Page[Order]):
    pass


RECEIPTLESS_LIMIT_WORDS = (
    "The most store credit one customer may receive from returns without a receipt (`POST "
    "/v1/returns`) within the last `days` days, rolling: `amount` in minor units of the "
    "returning store's currency (a return in another currency counts against a cap of its own "
    "at the same figure). A customer's earlier such returns in the window count, and so do "
    "those of duplicates merged into them. A return that would take the customer past it is "
    "refused before anything is done (no store credit, no stock moved, no return): a 409 "
    "`receiptless_limit_exceeded` with `remaining`, what is left. null: no limit (the default)"
)


class ReceiptlessLimit(Answer):
    amount: int = Field(
        ge=0,
        le=INT64_MAX,
        json_schema_extra=INT64,
        description="At most this much store credit in the window, in minor units (0: no "
        "return without a receipt at all)",
        examples=[20000],
    )
    days: int = Field(
        ge=1, le=365, json_schema_extra=INT64, description="The rolling window", examples=[30]
    )


class OrderSettings(Answer):
    capture_pickup_at_order: bool = Field(
        description="Pickups captured at confirmation (true) or at hand-over (false). Even "
        "when false, a pickup whose wait (`pickup_expiry_seconds`) outlasts the authorisation "
        "(`authorization_window_seconds`) is captured at confirmation: an authorisation must "
        "never lapse before the goods are collected"
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
    return_policy_text: str = Field(
        "",
        max_length=1_000,
        description="The merchant's return policy, printed on receipts after the window's "
        "sentence; empty: that sentence alone",
    )
    receiptless_limit: ReceiptlessLimit | None = Field(None, description=RECEIPTLESS_LIMIT_WORDS)
    version: Version = Field(
        description="Moved on by every change of any field shown here, the authorisation "
        "window included (1 while the defaults apply); send it back in If-Match. The window "
        "is the payment settings', which have a version of their own (GET "
        "/v1/payment-settings): a change of it moves both"
    )


class CartDiscount(Answer):
    promotion_id: str = Field(max_length=64, description="The offer, or `manual`")
    amount: Money
    reason: str = Field(max_length=500)
    level: str = Field(max_length=16, description="item or order", examples=["order"])
    requested_by: str = Field("", max_length=64, description="A manual discount's: who")


class RejectedCoupon(Answer):
    code_index: int = Field(ge=0, le=9, description="Its position in `coupon_codes`")
    reason: str = Field(
        max_length=64,
        description="coupon_unknown, coupon_expired, coupon_exhausted, coupon_inactive, "
        "coupon_deactivated, coupon_not_applicable, coupon_customer_limit, "
        "coupon_customer_required",
    )
    message: str = Field(max_length=500)


class CartQuote(Answer):
    lines: list[OrderLine] = Field(max_length=200)
    discounts: list[CartDiscount] = Field(max_length=200)
    subtotal: Money
    discount_total: Money
    tax_total: Money
    total: Money = Field(
        description="subtotal - discount_total + tax_total, or with tax-inclusive prices "
        "subtotal - discount_total (tax_total is contained in it)"
    )
    discounts_applied: bool = Field(description="false when promotions could not be asked")
    warnings: list[PricingWarning] = WARNINGS
    rejected_coupons: list[RejectedCoupon] = Field(max_length=10)
    tax_inclusive: bool
