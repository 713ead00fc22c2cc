"""The problem answers (RFC 9457): one `Problem`, and the two that carry more."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field

from pos_gateway.routes.common import INT32
from pos_gateway.schemas.base import FieldError, Version
from pos_gateway.schemas.orders import Order, Payment


class Problem(BaseModel):
    """RFC 9457 problem details with a stable machine `code`. A refusal may add members
    of its own: the figures a client can act on (`available` of a SKU that ran out)."""

    model_config = ConfigDict(extra="allow")

    type: str = Field(max_length=200, json_schema_extra={"format": "uri"})
    title: str = Field(max_length=100)
    status: int = Field(ge=400, le=599, json_schema_extra=INT32)
    # A service's own words, which may quote what was sent: no fixed maximum.
    detail: str
    code: str = Field(max_length=64, description="Stable machine code, e.g. `resource_missing`")
    # One per field problem: no fixed maximum (a batch of 1000 items can have many).
    errors: list[FieldError] = Field(
        default_factory=list, description="One entry per field problem; absent when none"
    )


class PaymentDeclined(Problem):
    """The sale is recorded (the order `payment_declined`), and so is the declined payment."""

    order: Order
    payment: Payment


class VersionMismatch(Problem):
    """If-Match named a version that is no longer current."""

    current_version: Version


# Error answers whose problem carries more than the common members, by status.
SPECIFIC = {402: PaymentDeclined, 412: VersionMismatch}
