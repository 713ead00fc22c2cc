"""Customers."""

from __future__ import annotations

from pydantic import Field

from pos_gateway.routes.common import INT64, INT64_MAX
from pos_gateway.schemas.base import Answer, Id, Page, Timestamp, Version


class Customer(Answer):
    id: Id
    email: str = Field(min_length=3, max_length=254)
    given_name: str = Field(max_length=100)
    family_name: str = Field(max_length=100)
    loyalty_points: int = Field(ge=0, le=INT64_MAX, json_schema_extra=INT64)
    version: Version
    created_at: Timestamp
    updated_at: Timestamp


class CustomerList(Page[Customer]):
    pass
