"""The event feed, webhook subscriptions and their deliveries."""

from __future__ import annotations

from typing import Annotated, Any, Literal
from urllib.parse import urlsplit

from pydantic import ConfigDict, Field

from pos_gateway.routes.common import INT32, INT64, INT64_MAX
from pos_gateway.schemas.base import Answer, Id, Page, Timestamp, Version

# The public event types, `<resource>.<past-tense verb>` (../shared/docs/commerce-states.md),
# named in the document so a partner knows them before the first event, and the one list the
# dispatcher checks subscriptions against.
_NAMES = """
    location.created location.updated
    product.created product.updated product.archived inventory.changed inventory.low_stock
    reservation.created reservation.committed reservation.released reservation.expired
    order.created order.confirmed order.cancelled order.completed order.fulfillment_updated
    order.returned order.updated payment.authorized payment.captured payment.voided payment.failed
    payment.updated
    refund.created refund.succeeded refund.failed terminal_checkout.updated
    gift_card.activity_created gift_card.updated
    shift.opened shift.closed register.created register.updated register.paired
    register.retired staff.created staff.updated staff.deactivated override.granted
    promotion.created promotion.updated promotion.ended promotion.deleted
    coupon.redeemed coupon.released customer.created customer.updated customer.merged
    customer.erased loyalty.points_earned loyalty.points_redeemed loyalty.points_adjusted
    loyalty.points_expired loyalty.tier_changed webhook_subscription.disabled
    """
EVENT_TYPES = tuple(_NAMES.split())
# What a filter may name: a type, every type of a resource (`order.*`), or everything (`*`).
TYPE_FILTERS = (
    *EVENT_TYPES,
    *sorted({f"{t.split('.')[0]}.*" for t in EVENT_TYPES}),
    "*",
)
EVENT_TYPE = r"^[a-z_]+\.[a-z_]+$"
TYPE_PATTERN = r"^(\*|[a-z_]+\.(\*|[a-z_]+))$"
SECRET = r"^whsec_[A-Za-z0-9+/]{43}=$"  # noqa: S105 - the pattern of one, not one
# An event's place in its merchant's feed (1, 2, 3 ... without gaps); 0 on the one event that
# is not in the feed, a webhook subscription's test event.
Sequence = Field(
    ge=0,
    le=INT64_MAX,
    json_schema_extra=INT64,
    description="The event's place in your feed: 1, 2, 3 ... in commit order, without gaps; "
    "order by it. 0 only on a webhook subscription's test event "
    "(`webhook_subscription.tested`, sent on request), which is not in the feed",
)


# What `inventory.low_stock` carries beside its level: documented in the schema, not a field
# of the model, so that no other type's data gains a `threshold: null`.
LOW_STOCK_THRESHOLD = {
    "type": "integer",
    "format": "int64",
    "minimum": 0,
    "maximum": 1_000_000_000,
    "description": "`inventory.low_stock` only: the SKU's low-stock threshold (POST "
    "/v1/inventory/low-stock-thresholds) that `object.available` fell to or below, or that "
    "was set at or above it",
}


# The same for what a coupon's use carries beside the coupon.
def _use_of(what: str) -> dict[str, Any]:
    return {
        "type": "string",
        "maxLength": 64,
        "description": f"`coupon.redeemed` and `coupon.released` only: the {what} of the use",
    }


def _documented_extras(schema: dict[str, Any]) -> None:
    schema["properties"]["threshold"] = LOW_STOCK_THRESHOLD
    schema["properties"]["order_id"] = _use_of("order")
    schema["properties"]["customer_id"] = _use_of("customer (empty when the sale named none)")
    schema["properties"]["fulfillment_id"] = {
        "type": "string",
        "maxLength": 64,
        "description": "`order.fulfillment_updated` only: the fulfilment of `object` (the "
        "order) that changed, one of its `fulfillments[]`",
    }
    schema["properties"]["fulfillment_status"] = {
        "type": "string",
        "maxLength": 32,
        "description": "`order.fulfillment_updated` only: the `status` this change took that "
        "fulfilment to, in the words of `object.fulfillments[]` (a pickup's `ready_for_pickup`, "
        "`picked_up`, `cancelled` or `expired`; a shipment's `picked`, `shipped`, `delivered` "
        "or `cancelled`; more values may come)",
    }
    schema["properties"]["merged_customer_id"] = {
        "type": "string",
        "maxLength": 64,
        "description": "`customer.merged` only: the duplicate merged into `object` (its "
        "`status` is `merged` and `merged_into` the survivor from then on)",
    }


class EventData(Answer):
    """`object`, and for some types more beside it: `order.returned` carries the return as
    `object` and the order as it stands after it as `order` (null for a return without a
    receipt); `order.fulfillment_updated` carries the order as `object` and the fulfilment
    that changed as `fulfillment_id` with its new `fulfillment_status`; `inventory.low_stock`
    carries the stock level (its `sku`, `location_id` and `available`) as `object` and the
    threshold it fell to or below as `threshold`; `coupon.redeemed` and `coupon.released` carry the
    coupon as `object` and the `order_id` and `customer_id` of the use; `customer.merged`
    carries the survivor as `object` and the duplicate's id as `merged_customer_id`;
    `webhook_subscription.disabled` carries the subscription with its URL's `origin` (scheme,
    host and port) in place of its `url`, which may hold the receiver's own token: `GET
    /v1/webhook-subscriptions/{id}` (`webhooks:manage`) answers the URL."""

    # The extras pass as they are; no other type gains a field.
    model_config = ConfigDict(extra="allow", json_schema_extra=_documented_extras)

    object: dict[str, Any] = Field(
        description="The resource as `GET` returns it at this version (for a deleted or erased "
        "resource, what is left of it)"
    )


class Event(Answer):
    id: Id
    type: str = Field(pattern=EVENT_TYPE, max_length=64, examples=["order.confirmed"])
    sequence: int = Sequence
    merchant_id: Id
    occurred_at: Timestamp
    data: EventData


class EventList(Answer):
    data: list[Event] = Field(max_length=200)
    next_after: int = Field(
        ge=0,
        le=INT64_MAX,
        json_schema_extra=INT64,
        description="Pass as `after` to read on: the last sequence this page covered",
    )
    has_more: bool = Field(description="false: you are at the head of the feed for now")


def origin(url: str) -> str:
    """Where a URL sends: scheme, host and port only. A receiver's URL may carry its own token
    in the path or query, which must not spread beyond the holders of `webhooks:manage`: the
    audit log (`audit:read`) and the `webhook_subscription.disabled` event (`events:read`, and
    other subscriptions' endpoints) name this instead."""
    parts = urlsplit(url)
    return f"{parts.scheme}://{parts.netloc.rpartition('@')[2]}"


class WebhookSubscription(Answer):
    id: Id
    url: str = Field(max_length=2048)
    event_types: list[Annotated[str, Field(pattern=TYPE_PATTERN, max_length=64)]] = Field(
        min_length=1, max_length=64
    )
    description: str = Field(max_length=500)
    status: Literal["enabled", "disabled"]
    disabled_reason: Literal["", "by_request", "endpoint_gone", "failing"] = Field(
        description="Why it is disabled: by you, a 410 Gone from the endpoint, or days of "
        "failures; empty while enabled"
    )
    version: Version
    created_at: Timestamp
    updated_at: Timestamp


class NewWebhookSubscription(Answer):
    subscription: WebhookSubscription
    secret: str | None = Field(
        pattern=SECRET,
        max_length=50,
        description="The signing secret (Standard Webhooks `whsec_`): shown in this answer "
        "only; null in a replay",
    )
    secret_redacted: bool = Field(description="true in a replay: the secret is not kept there")


class WebhookSubscriptionList(Page[WebhookSubscription]):
    pass


class DeliveryAttempt(Answer):
    number: int = Field(ge=1, le=100, json_schema_extra=INT32)
    attempted_at: Timestamp
    status_code: int = Field(
        ge=0, le=599, json_schema_extra=INT32, description="0: no answer (see `error`)"
    )
    latency_ms: int = Field(ge=0, le=INT64_MAX, json_schema_extra=INT64)
    response_excerpt: str = Field(max_length=1024, description="The answer's first bytes")
    error: str = Field(max_length=200, description="A timeout or a refused connection")


class Delivery(Answer):
    id: Id
    subscription_id: Id
    event_id: Id
    event_type: str = Field(max_length=64)
    sequence: int = Field(ge=0, le=INT64_MAX, json_schema_extra=INT64)
    status: Literal["pending", "succeeded", "failed"]
    attempt_count: int = Field(ge=0, le=100, json_schema_extra=INT32)
    next_attempt_at: Timestamp | None = Field(description="While pending: when it is tried next")
    created_at: Timestamp
    attempts: list[DeliveryAttempt] = Field(max_length=100)


class DeliveryList(Page[Delivery]):
    pass


class Replayed(Answer):
    replayed: int = Field(ge=0, le=10_000, json_schema_extra=INT32)
