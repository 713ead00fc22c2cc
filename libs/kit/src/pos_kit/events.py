"""Integration events: protobuf messages bound for the outbox and JetStream."""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import UTC, datetime

from google.protobuf.message import Message

from pos_kit.ids import new_id

# NATS headers every event carries (besides Nats-Msg-Id, which JetStream dedupes on).
EVENT_ID_HEADER = "Omnitill-Event-Id"
EVENT_TYPE_HEADER = "Omnitill-Event-Type"
MERCHANT_HEADER = "Omnitill-Merchant-Id"
TRACEPARENT_HEADER = "traceparent"


@dataclass(frozen=True, slots=True)
class OutgoingEvent:
    event_id: str
    subject: str
    event_type: str
    merchant_id: str
    payload: bytes


def _snake(name: str) -> str:
    return re.sub(r"(?<!^)(?=[A-Z])", "_", name).lower()


def subject_for(message: Message) -> str:
    """pos.order.v1.OrderConfirmed -> pos.order.v1.order_confirmed"""
    package, _, name = message.DESCRIPTOR.full_name.rpartition(".")
    return f"{package}.{_snake(name)}"


def make_event(
    message: Message, merchant_id: str, occurred_at: datetime | None = None
) -> OutgoingEvent:
    """Fill the message's `meta` (event id, merchant, time) and wrap it for the outbox."""
    event_id = new_id("evt")
    meta = getattr(message, "meta", None)
    if meta is not None:
        meta.event_id = event_id
        meta.merchant_id = merchant_id
        meta.occurred_at.FromDatetime(occurred_at or datetime.now(UTC))
    return OutgoingEvent(
        event_id=event_id,
        subject=subject_for(message),
        event_type=message.DESCRIPTOR.full_name,
        merchant_id=merchant_id,
        payload=message.SerializeToString(),
    )
