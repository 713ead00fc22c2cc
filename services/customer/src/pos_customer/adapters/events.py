"""Domain events -> the integration events of pos.customer.v1."""

from __future__ import annotations

from google.protobuf.message import Message

from pos.customer.v1 import events_pb2
from pos_customer.adapters import messages
from pos_customer.domain.model import CustomerCreated, CustomerUpdated, LoyaltyPointsEarned
from pos_kit.events import OutgoingEvent, make_event


def to_outgoing(event: object, merchant_id: str) -> OutgoingEvent:
    msg: Message
    if isinstance(event, CustomerCreated):
        msg = events_pb2.CustomerCreated(customer=messages.customer_to_proto(event.customer))
    elif isinstance(event, CustomerUpdated):
        msg = events_pb2.CustomerUpdated(customer=messages.customer_to_proto(event.customer))
    elif isinstance(event, LoyaltyPointsEarned):
        msg = events_pb2.LoyaltyPointsEarned(
            customer_id=event.customer_id,
            order_id=event.order_id,
            points=event.points,
            balance=event.balance,
        )
    else:
        raise TypeError(f"no integration event for {type(event).__name__}")
    return make_event(msg, merchant_id)
