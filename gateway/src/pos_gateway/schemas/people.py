"""Customers and promotions."""

from __future__ import annotations

from pydantic import Field

from pos_gateway.routes.common import INT32, INT64, INT64_MAX
from pos_gateway.schemas.base import Answer, Id, Money, Page, Timestamp, Version


class Customer(Answer):
    id: Id
    email: str = Field(min_length=3, max_length=254)
    given_name: str = Field(max_length=100)
    family_name: str = Field(max_length=100)
    loyalty_points: int = Field(ge=0, le=INT64_MAX, json_schema_extra=INT64)
    version: Version
    created_at: Timestamp
    updated_at: Timestamp


class Promotion(Answer):
    id: Id
    name: str = Field(min_length=1, max_length=200)
    percent_off_bps: int = Field(
        ge=1, le=10_000, json_schema_extra=INT32, description="1000 = 10 % off"
    )
    minimum_subtotal: Money | None = Field(description="null: applies to every cart")
    active: bool
    created_at: Timestamp


class CustomerList(Page[Customer]):
    pass


class PromotionList(Page[Promotion]):
    pass
