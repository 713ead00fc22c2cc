"""Domain objects <-> pos.customer.v1 protobuf messages."""

from __future__ import annotations

from pos.customer.v1 import customer_pb2
from pos_customer.domain.model import Customer


def customer_to_proto(c: Customer) -> customer_pb2.Customer:
    msg = customer_pb2.Customer(
        id=c.id,
        email=c.email,
        given_name=c.given_name,
        family_name=c.family_name,
        loyalty_points=c.loyalty_points,
        version=c.version,
    )
    if c.created_at is not None:
        msg.created_at.FromDatetime(c.created_at)
    if c.updated_at is not None:
        msg.updated_at.FromDatetime(c.updated_at)
    return msg
