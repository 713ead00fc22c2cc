"""Promotions (offers with their rule and conditions) and coupons."""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import Field

from pos_gateway.routes.common import INT32, INT64, INT64_MAX
from pos_gateway.schemas.base import Answer, Id, Money, Page, Timestamp, Version

Kind = Literal[
    "percent_off", "amount_off", "buy_x_get_y", "bundle", "tiers", "sale_price", "free_item"
]
Level = Literal["item", "order"]
Small = Annotated[int, Field(ge=0, le=1_000_000, json_schema_extra=INT32)]
Bps = Annotated[int, Field(ge=0, le=10_000, json_schema_extra=INT32, description="1000 = 10 %")]
Word = Annotated[str, Field(max_length=64)]


class Selector(Answer):
    """Which lines an item rule looks at: by SKU, product or category; none named: every line."""

    skus: list[Word] = Field(max_length=1000)
    product_ids: list[Word] = Field(max_length=1000)
    categories: list[Word] = Field(max_length=1000)


class Tier(Answer):
    min_quantity: int = Field(ge=1, le=INT64_MAX, json_schema_extra=INT64)
    percent_bps: Bps


class Rule(Answer):
    kind: Kind
    level: Level
    items: Selector
    percent_bps: Bps
    amount: Money | None = Field(description="amount off, a bundle's price or a sale price")
    buy_quantity: Small
    get_quantity: Small
    get_items: Selector | None
    tiers: list[Tier] = Field(max_length=20)
    limit_per_order: Small


class Conditions(Answer):
    starts_at: str = Field(max_length=32, description="Local wall-clock time; empty: no start")
    ends_at: str = Field(max_length=32, description="Local wall-clock time, exclusive")
    time_zone: str = Field(
        max_length=64,
        description="IANA zone of the window and hours; empty: the location's, else UTC",
    )
    days_of_week: list[Annotated[int, Field(ge=1, le=7, json_schema_extra=INT32)]] = Field(
        max_length=7, description="1 = Monday .. 7 = Sunday"
    )
    hours_from: str = Field(max_length=8)
    hours_until: str = Field(max_length=8)
    channels: list[Word] = Field(max_length=1000)
    location_ids: list[Word] = Field(max_length=1000)
    customer_groups: list[Word] = Field(max_length=1000)
    min_quantity: int = Field(ge=0, le=INT64_MAX, json_schema_extra=INT64)
    min_amount: Money | None


class Promotion(Answer):
    id: Id
    name: str = Field(min_length=1, max_length=200)
    percent_off_bps: int = Field(
        ge=0,
        le=10_000,
        json_schema_extra=INT32,
        description="A percent off the whole order (1000 = 10 %); 0 for other offers",
    )
    minimum_subtotal: Money | None = Field(description="null: applies to every cart")
    active: bool
    created_at: Timestamp
    # Null only in events published before offers had rules (a percent off the order).
    rule: Rule | None = Field(description="What it takes off")
    conditions: Conditions | None = Field(description="When and for whom it applies")
    priority: int = Field(ge=-(2**31), le=2**31 - 1, json_schema_extra=INT32)
    exclusive: bool
    stackable: bool
    requires_coupon: bool
    status: Literal["active", "paused", "ended", "deleted"] = Field(
        description="active, paused or ended; in the list's `updated_since` feed also deleted: a "
        "promotion deleted since, at the time of its deletion, with a new `version` (a read of "
        "it is a 404)"
    )
    version: Version
    updated_at: Timestamp
    ended_at: Timestamp | None
    used: bool = Field(description="A coupon of it was reserved: it can be ended, not deleted")
    # Null only in events published before the field.
    schedule_state: Literal["scheduled", "running", "finished"] | None = Field(
        description="Where now is against its window (`conditions.starts_at`/`ends_at`), read "
        "from the clock at each read: `scheduled` before it opens, `running` inside it (or with "
        "no window), `finished` once it closed; apart from `status`, the merchant's pause and "
        "end. It applies when `status` is `active`, this is `running` and its other conditions "
        "hold. A window without `time_zone` opens at the first location anywhere (UTC+14) and "
        "closes at the last (UTC-12). It moves on with no new `version` and no event"
    )


class PromotionList(Page[Promotion]):
    pass


class Coupon(Answer):
    id: Id
    promotion_id: Id
    code_hint: str = Field(
        max_length=4,
        description="The code's last characters: a third of it, four at most (never the whole "
        "code)",
    )
    max_uses: int = Field(ge=0, le=2**31 - 1, json_schema_extra=INT32, description="0: no limit")
    max_uses_per_customer: int = Field(ge=0, le=2**31 - 1, json_schema_extra=INT32)
    redeemed_count: int = Field(ge=0, le=2**31 - 1, json_schema_extra=INT32)
    reserved_count: int = Field(ge=0, le=2**31 - 1, json_schema_extra=INT32)
    expires_at: Timestamp | None
    created_at: Timestamp
    status: Literal["active", "deactivated"] = Field(
        description="deactivated: this code no longer reserves (its promotion goes on); final"
    )
    deactivated_at: Timestamp | None
    updated_at: Timestamp | None = Field(
        None,
        description="The moment of its last change (created, reserved, redeemed, released, "
        "deactivated): its place in the list's `updated_since` feed",
    )


class CouponList(Page[Coupon]):
    pass


class CouponBatch(Answer):
    coupons: list[Coupon] = Field(max_length=10_000)
    codes: list[Annotated[str, Field(max_length=40)]] | None = Field(
        max_length=10_000,
        description="The codes, in the order of `coupons`: shown in this answer only",
    )
    secret_redacted: bool = Field(description="true in a replay: the codes are not kept")
