"""Checkout and orders (a checkout answers its payment too: schemas.payments)."""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from pos_gateway.routes.common import INT64
from pos_gateway.schemas.base import Answer, Id, Money, OptionalId, Page, Sku, Timestamp
from pos_gateway.schemas.payments import Payment


class OrderLine(Answer):
    sku: Sku
    name: str = Field(max_length=500, description="The product's name, with the variant's")
    quantity: int = Field(ge=1, le=10_000, json_schema_extra=INT64)
    unit_price: Money
    line_total: Money


class Order(Answer):
    id: Id
    location_id: Id
    customer_id: OptionalId
    lines: list[OrderLine] = Field(min_length=1, max_length=200)
    subtotal: Money
    discount_total: Money
    tax_total: Money
    total: Money = Field(description="subtotal - discount_total + tax_total")
    status: Literal["confirmed", "payment_declined"]
    discounts_applied: bool = Field(description="false when promotions could not be applied")
    payment_id: OptionalId
    created_at: Timestamp


class Checkout(Answer):
    order: Order
    payment: Payment


class OrderList(Page[Order]):
    pass
