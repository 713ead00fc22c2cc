"""Integration events: protobuf messages bound for the outbox and JetStream."""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, TypeVar

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


D = TypeVar("D")
Mapper = Callable[[Any], Message]


class EventRegistry:
    """A service's domain events -> its integration events: one mapper per domain event type,
    all in one module (`adapters/events.py`), checked against the domain's list at start-up."""

    def __init__(self) -> None:
        self._mappers: dict[type, Mapper] = {}

    def maps(
        self, domain_type: type[D]
    ) -> Callable[[Callable[[D], Message]], Callable[[D], Message]]:
        def register(mapper: Callable[[D], Message]) -> Callable[[D], Message]:
            if domain_type in self._mappers:
                raise ValueError(f"{domain_type.__name__} is mapped twice")
            self._mappers[domain_type] = mapper
            return mapper

        return register

    def to_outgoing(self, event: object, merchant_id: str) -> OutgoingEvent:
        mapper = self._mappers.get(type(event))
        if mapper is None:
            raise TypeError(f"no integration event for {type(event).__name__}")
        return make_event(mapper(event), merchant_id)

    def check(self, domain_types: Iterable[type]) -> None:
        """Fail fast (at start-up) when a domain event has no integration event."""
        missing = sorted(t.__name__ for t in domain_types if t not in self._mappers)
        if missing:
            raise LookupError(f"domain events with no integration event: {', '.join(missing)}")
