"""Domain events -> the integration events of pos.order.v1: one mapper per event, each with
the whole order as GetOrder answers it."""

from __future__ import annotations

from typing import Any

from google.protobuf.message import DecodeError, Message

from pos.order.v1 import events_pb2
from pos_kit import personal
from pos_kit.events import EventRegistry
from pos_kit.money import Money
from pos_kit.proto_money import to_proto
from pos_order.adapters.messages import FULFILLMENT_STATUSES, order_to_proto, return_to_proto
from pos_order.domain.model import (
    OrderCancelled,
    OrderCompleted,
    OrderConfirmed,
    OrderCreated,
    OrderFulfillmentUpdated,
    OrderUpdated,
)
from pos_order.domain.returns import OrderReturned

REGISTRY = EventRegistry()


@REGISTRY.maps(OrderCreated)
def _created(event: OrderCreated) -> events_pb2.OrderCreated:
    return events_pb2.OrderCreated(order=order_to_proto(event.order))


@REGISTRY.maps(OrderConfirmed)
def _confirmed(event: OrderConfirmed) -> events_pb2.OrderConfirmed:
    return events_pb2.OrderConfirmed(order=order_to_proto(event.order))


@REGISTRY.maps(OrderUpdated)
def _updated(event: OrderUpdated) -> events_pb2.OrderUpdated:
    return events_pb2.OrderUpdated(order=order_to_proto(event.order))


@REGISTRY.maps(OrderCancelled)
def _cancelled(event: OrderCancelled) -> events_pb2.OrderCancelled:
    return events_pb2.OrderCancelled(order=order_to_proto(event.order))


@REGISTRY.maps(OrderCompleted)
def _completed(event: OrderCompleted) -> events_pb2.OrderCompleted:
    return events_pb2.OrderCompleted(order=order_to_proto(event.order))


@REGISTRY.maps(OrderFulfillmentUpdated)
def _fulfillment(event: OrderFulfillmentUpdated) -> events_pb2.OrderFulfillmentUpdated:
    msg = events_pb2.OrderFulfillmentUpdated(
        order=order_to_proto(event.order), fulfillment_id=event.fulfillment_id
    )
    if event.status is not None:
        msg.fulfillment_status = FULFILLMENT_STATUSES.to_proto(event.status)
    if event.goods_given_back is not None:
        currency = event.order.currency
        msg.goods_total.CopyFrom(to_proto(Money(event.order.goods_total, currency)))
        msg.goods_given_back.CopyFrom(to_proto(Money(event.goods_given_back, currency)))
    return msg


@REGISTRY.maps(OrderReturned)
def _returned(event: OrderReturned) -> events_pb2.OrderReturned:
    if event.order is None:  # without a receipt: no order, and no order's goods to count
        return events_pb2.OrderReturned(order_return=return_to_proto(event.ret))
    currency = event.order.currency
    return events_pb2.OrderReturned(
        order=order_to_proto(event.order),
        order_return=return_to_proto(event.ret),
        goods_total=to_proto(Money(event.goods_total, currency)),
        goods_returned=to_proto(Money(event.goods_returned, currency)),
    )


# The events that carry the whole order (`order`), by event type (the outbox's `event_type`).
ORDER_EVENTS: dict[str, type[Message]] = {
    kind.DESCRIPTOR.full_name: kind
    for kind in (
        events_pb2.OrderCreated,
        events_pb2.OrderConfirmed,
        events_pb2.OrderUpdated,
        events_pb2.OrderCancelled,
        events_pb2.OrderCompleted,
        events_pb2.OrderFulfillmentUpdated,
        events_pb2.OrderReturned,
    )
}


def erased_in_event(
    event_type: str, payload: bytes, customer_id: str, order_ids: set[str]
) -> bytes | None:
    """An event not yet published, as the erasure of `customer_id` (whose orders are
    `order_ids`) leaves it: still sent (its readers need the sale: inventory decrements stock
    on a confirmation), without its fields the contract marks personal (`pos_kit.personal`:
    the order's notes and metadata, each fulfilment's `ship_to` and `destination`); the rest,
    its event id with it, as it was. None when it is none of the customer's orders or holds
    none of that."""
    kind = ORDER_EVENTS.get(event_type)
    if kind is None:
        return None
    event: Any = kind()
    try:
        event.ParseFromString(payload)
    except DecodeError:
        return None
    if not event.HasField("order"):
        return None  # a return without a receipt: no order
    order = event.order
    if order.customer_id != customer_id and order.id not in order_ids:
        return None
    if not personal.blank(event):
        return None
    rewritten: bytes = event.SerializeToString()
    return rewritten
