"""Customers."""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import Field

from pos_gateway.routes.common import INT32, INT64, INT64_MAX, INT64_MIN
from pos_gateway.schemas.base import Answer, Id, Money, Page, Timestamp, Version
from pos_gateway.schemas.gift_cards import GiftCard
from pos_gateway.schemas.orders import Order

Tag = Annotated[str, Field(min_length=1, max_length=50)]
Points = Annotated[int, Field(ge=INT64_MIN, le=INT64_MAX, json_schema_extra=INT64)]
Text200 = Annotated[str, Field(max_length=200)]


class CustomerAddress(Answer):
    label: Text200
    line1: Text200
    line2: Text200
    city: Text200
    region: Text200
    postal_code: Text200
    country: str = Field(max_length=2, description="ISO 3166-1 alpha-2")


class MarketingConsent(Answer):
    granted: bool
    given_at: Timestamp | None = Field(description="When the customer said so; null: never")
    channel: str = Field(
        max_length=20, description="web, in_store, email, sms, phone, app or import"
    )


class Customer(Answer):
    id: Id
    email: str = Field(max_length=254, description="Empty when the customer has none")
    given_name: str = Field(max_length=100)
    family_name: str = Field(max_length=100)
    loyalty_points: int = Field(
        ge=INT64_MIN,
        le=INT64_MAX,
        json_schema_extra=INT64,
        description="Below 0 when points taken back for a cancelled or returned order had "
        "been spent: a debt that later earnings pay off; no points can be redeemed meanwhile",
    )
    version: Version
    created_at: Timestamp
    updated_at: Timestamp
    phone: str = Field(max_length=16, description="E.164 (+14155550100); empty when none")
    external_id: str = Field(max_length=100, description="Your own id; empty when none")
    addresses: list[CustomerAddress] = Field(max_length=10)
    birthday: str = Field(max_length=10, description="YYYY-MM-DD; empty when unknown")
    notes: str = Field(max_length=2000)
    marketing_consent: MarketingConsent | None = Field(
        description="Whether the customer agreed to marketing: `granted` false when it was never "
        "given or was withdrawn (`given_at`: when the choice was recorded, null when none was)"
    )
    tags: list[Tag] = Field(max_length=50)
    group_ids: list[Id] = Field(max_length=1000)
    status: str = Field(
        max_length=10,
        description="active, or merged (see merged_into). In the list's `updated_since` feed "
        "also erased: a tombstone holding only `id`, `status`, `version` and the times, every "
        "other field empty",
    )
    merged_into: str = Field(
        max_length=64, description="The customer a merge moved it to; empty unless merged"
    )
    points_held: int = Field(
        ge=0, le=INT64_MAX, json_schema_extra=INT64, description="Held by open orders"
    )
    tier: str = Field(max_length=50, description="The loyalty tier; empty when none")


class ErasedCustomer(Answer):
    id: Id
    erased_at: Timestamp


class CustomerImport(Answer):
    data: list[Customer] = Field(max_length=1000)
    created: int = Field(ge=0, le=1000, json_schema_extra=INT32)
    updated: int = Field(ge=0, le=1000, json_schema_extra=INT32)


class UpsertedCustomer(Answer):
    customer: Customer
    created: bool


class MergedCustomers(Answer):
    winner: Customer
    loser: Customer


class Group(Answer):
    id: Id
    name: str = Field(max_length=100)
    description: str = Field(max_length=500)
    member_count: int = Field(ge=0, le=INT64_MAX, json_schema_extra=INT64)
    created_at: Timestamp
    version: Version = Field(
        description="Bumped by a change of its name or description (not by members joining or "
        "leaving); send it back in If-Match"
    )
    updated_at: Timestamp | None = Field(
        None,
        description="The moment of its last change (made, or a new `version`): its place in "
        "the list's `updated_since` feed",
    )
    status: Literal["active", "deleted"] = Field(
        "active",
        description="active; in the list's `updated_since` feed also deleted: a group deleted "
        "since, at the time of its deletion, with a new `version` and no members (a read of it "
        "is a 404)",
    )


class GroupList(Page[Group]):
    pass


class PointsEntry(Answer):
    id: Id
    customer_id: Id
    kind: str = Field(
        max_length=20,
        description="earned, reversed, redeemed, adjusted, expired, merged_in or merged_out",
    )
    points: Points
    balance_after: int = Field(ge=INT64_MIN, le=INT64_MAX, json_schema_extra=INT64)
    order_id: str = Field(max_length=64, description="The order it is for; empty for none")
    return_id: str = Field(
        "",
        max_length=64,
        description="A `reversed` entry's return, whose units it takes points back for; empty "
        "for the order's own entries",
    )
    fulfillment_id: str = Field(
        "",
        max_length=64,
        description="A `reversed` entry's cancelled or expired fulfilment, whose goods never "
        "reached the customer and take their share of the points back; empty otherwise",
    )
    reason: str = Field(max_length=500)
    created_at: Timestamp


class PointsHistory(Page[PointsEntry]):
    pass


class PointsAdjustment(Answer):
    entry: PointsEntry
    balance: int = Field(ge=INT64_MIN, le=INT64_MAX, json_schema_extra=INT64)


class Purchase(Answer):
    order_id: Id
    location_id: str = Field(max_length=64)
    total: Money
    points_earned: int = Field(ge=0, le=INT64_MAX, json_schema_extra=INT64)
    ordered_at: Timestamp
    status: str = Field(max_length=10, description="confirmed or reversed")
    returned: Money = Field(
        description="What the order's completed returns took back so far: refunded, or "
        "credited to an exchange's new order. Never more than the total."
    )


class PurchaseSummary(Answer):
    lifetime_spend: Money | None = Field(
        description="Confirmed purchases less what their returns took back, in the currency "
        "the customer spent most in; null before the first purchase."
    )
    lifetime_spend_by_currency: list[Money] = Field(
        default_factory=list,
        max_length=300,
        description="Confirmed purchases less returns, one entry per currency, by code.",
    )
    visit_count: int = Field(ge=0, le=INT64_MAX, json_schema_extra=INT64)
    last_visit_at: Timestamp | None
    favourite_location_id: str = Field(max_length=64)


class PurchaseHistory(Page[Purchase]):
    summary: PurchaseSummary


class LoyaltyTier(Answer):
    name: str = Field(min_length=1, max_length=50)
    threshold_points: int = Field(ge=0, le=10**12, json_schema_extra=INT64)
    multiplier_bps: int = Field(
        ge=10_000, le=100_000, json_schema_extra=INT32, description="15000 = x1.5"
    )


class LoyaltyProgram(Answer):
    enabled: bool
    points_per_unit: int = Field(ge=0, le=1000, json_schema_extra=INT64)
    rounding: str = Field(max_length=10, description="down or nearest")
    earning_tenders: list[Annotated[str, Field(max_length=20)]] = Field(max_length=4)
    excluded_skus: list[Annotated[str, Field(max_length=64)]] = Field(max_length=1000)
    tiers: list[LoyaltyTier] = Field(max_length=20)
    expiry_days: int = Field(
        ge=0,
        le=3650,
        json_schema_extra=INT32,
        description="Points earned or credited by hand expire this many days after they were "
        "credited, oldest first; 0: never",
    )
    tier_period_days: int = Field(ge=0, le=3650, json_schema_extra=INT32)
    point_value_minor: int = Field(ge=0, le=1_000_000, json_schema_extra=INT64)
    version: int = Field(ge=0, le=INT64_MAX, json_schema_extra=INT64)


class CustomerExport(Answer):
    customer: Customer
    groups: list[Group] = Field(max_length=1000)
    points_history: list[PointsEntry] = Field(max_length=1_000_000)
    orders: list[Purchase] = Field(
        max_length=1_000_000, description="The purchase history the customer service keeps"
    )
    sales: list[Order] = Field(
        max_length=1_000_000,
        description="The customer's orders as the order service holds them (lines, "
        "fulfilments and their addresses, notes, timeline), oldest change first",
    )
    gift_cards: list[GiftCard] = Field(
        max_length=1_000_000,
        description="Gift cards issued to the customer (store credit included); never a code",
    )
    merged_customer_ids: list[Id] = Field(
        max_length=10_000,
        description="The duplicates merged into this customer: their orders and gift cards "
        "are in `sales` and `gift_cards` too",
    )


class CustomerList(Page[Customer]):
    pass
