"""Rows and domain objects -> pos.dispatcher.v1 messages."""

from __future__ import annotations

import json
from datetime import datetime
from typing import Any

from google.protobuf.timestamp_pb2 import Timestamp

from pos.dispatcher.v1 import dispatcher_pb2 as pb
from pos_dispatcher.adapters.repository import DeliveryRow, StoredEvent
from pos_dispatcher.domain.model import Status, Subscription
from pos_gateway.convert import to_model
from pos_gateway.schemas.events import WebhookSubscription, origin
from pos_kit.enums import ProtoEnum

STATUS = ProtoEnum(Status, pb.SubscriptionStatus)


def _ts(value: datetime | None) -> Timestamp | None:
    if value is None:
        return None
    stamp = Timestamp()
    stamp.FromDatetime(value)
    return stamp


def event_to_proto(event: StoredEvent) -> pb.Event:
    return pb.Event(
        id=event.id,
        type=event.type,
        sequence=event.sequence,
        merchant_id=event.merchant_id,
        occurred_at=_ts(event.occurred_at),
        data_json=json.dumps(event.data, separators=(",", ":")),
    )


def subscription_to_proto(sub: Subscription) -> pb.Subscription:
    return pb.Subscription(
        id=sub.id,
        url=sub.url,
        event_types=sub.event_types,
        description=sub.description,
        status=pb.SubscriptionStatus.ValueType(STATUS.to_proto(sub.status)),
        disabled_reason=sub.disabled_reason,
        version=sub.version,
        created_at=_ts(sub.created_at),
        updated_at=_ts(sub.updated_at),
    )


def subscription_snapshot(sub: Subscription) -> dict[str, Any]:
    """The data of a `webhook_subscription.*` event: the subscription as `GET` returns it, with
    its URL's `origin` in place of the `url`. A receiver's URL may hold its own token, and only
    `webhooks:manage` reads a subscription, while the event goes to every `events:read` key and
    to other subscriptions' endpoints."""
    shown = to_model(WebhookSubscription, subscription_to_proto(sub)).model_dump(mode="json")
    return {
        "object": {
            ("origin" if key == "url" else key): (origin(value) if key == "url" else value)
            for key, value in shown.items()
        }
    }


DELIVERY_STATUS = {
    "pending": pb.DELIVERY_STATUS_PENDING,
    "succeeded": pb.DELIVERY_STATUS_SUCCEEDED,
    "failed": pb.DELIVERY_STATUS_FAILED,
}
DELIVERY_STATUS_NAME = {v: k for k, v in DELIVERY_STATUS.items()}


def delivery_to_proto(row: DeliveryRow) -> pb.Delivery:
    return pb.Delivery(
        id=row.id,
        subscription_id=row.subscription_id,
        event_id=row.event_id,
        event_type=row.event_type,
        sequence=row.sequence,
        status=DELIVERY_STATUS[row.status],
        attempt_count=row.attempt_count,
        next_attempt_at=_ts(row.next_attempt_at) if row.status == "pending" else None,
        created_at=_ts(row.created_at),
        attempts=[
            pb.Attempt(
                number=a["number"],
                attempted_at=_ts(a["attempted_at"]),
                status_code=a["status_code"],
                latency_ms=a["latency_ms"],
                response_excerpt=a["response_excerpt"],
                error=a["error"],
            )
            for a in row.attempts
        ],
    )
