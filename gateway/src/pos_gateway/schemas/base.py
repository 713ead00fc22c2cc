"""What every answer is built from: the base model, bounded scalars, Money, the list envelope."""

from __future__ import annotations

from typing import Annotated, Generic, TypeVar

from pydantic import BaseModel, ConfigDict, Field

from pos_gateway.routes.common import INT32, INT64, INT64_MAX, INT64_MIN, SKU

T = TypeVar("T")

# The most one page holds: the `limit` query parameter's maximum.
PAGE_MAX = 200


class Answer(BaseModel):
    """An answer's model. Fields the model does not name are dropped, not sent: the answer is
    exactly what the document says, even if a service starts sending more."""

    model_config = ConfigDict(extra="ignore")


# Every time the API answers is RFC 3339 in UTC with milliseconds (pos_gateway.convert).
Timestamp = Annotated[
    str,
    Field(
        pattern=r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}\.\d{3}Z$",
        max_length=24,
        json_schema_extra={"format": "date-time"},
        examples=["2026-01-20T14:05:12.250Z"],
    ),
]
# Ids are opaque: a prefix and a time-ordered body (`prod_01j9x6...`); never more than 64.
Id = Annotated[str, Field(min_length=1, max_length=64)]
# An id that is empty when there is none (an order without a customer, a dry run's hold).
OptionalId = Annotated[str, Field(max_length=64, description="Empty when there is none")]
Sku = Annotated[str, Field(pattern=SKU, max_length=64, examples=["TEE-BLK-M"])]
Currency = Annotated[
    str, Field(pattern=r"^[A-Z]{3}$", min_length=3, max_length=3, description="ISO 4217 code")
]
Version = Annotated[
    int,
    Field(
        ge=1,
        le=INT64_MAX,
        json_schema_extra=INT64,
        description="Bumped by every change; send it back in If-Match",
    ),
]
# Signed stock units: on_hand may go below zero when recorded sales exceed what was received.
Units = Annotated[int, Field(ge=INT64_MIN, le=INT64_MAX, json_schema_extra=INT64)]
Count = Annotated[int, Field(ge=0, le=INT64_MAX, json_schema_extra=INT64)]
Quantity = Annotated[int, Field(ge=1, le=INT64_MAX, json_schema_extra=INT64)]
Bps = Annotated[int, Field(ge=0, le=10_000, json_schema_extra=INT32, description="825 = 8.25 %")]
Kilometres = Annotated[float, Field(ge=0, le=20_100, json_schema_extra={"format": "double"})]


class Money(Answer):
    """An amount in integer minor units with its currency."""

    amount: int = Field(
        ge=0, le=INT64_MAX, json_schema_extra=INT64, description="Integer minor units: 2599 = 25.99"
    )
    currency: Currency


class SignedMoney(Answer):
    """Money that may be negative: value leaving a gift card, a day's or a drawer's balance
    when more went out than came in."""

    amount: Units = Field(description="Integer minor units, signed: -2599 = -25.99")
    currency: Currency


class FieldError(Answer):
    """What is wrong with one field."""

    field: str = Field(max_length=500, description="The field, e.g. `lines[0].sku`")
    reason: str = Field(max_length=1000)


class StockLine(Answer):
    sku: Sku
    quantity: Quantity


class Page(Answer, Generic[T]):
    """A list answer: `data`, and `next_cursor` to pass as `cursor` for the next page (null on
    the last page, and on lists that are never paged). Each use is a subclass,
    `class ProductList(Page[Product])`, so the document and a generated SDK name it
    `ProductList`, not `Page_Product_`."""

    data: list[T] = Field(max_length=PAGE_MAX)
    next_cursor: str | None = Field(max_length=512)
