"""Returns of an order's units, refunded to the original tenders."""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from pos_gateway.routes.common import INT64
from pos_gateway.schemas.base import Answer, Id, Money, OptionalId, Page, Timestamp
from pos_gateway.schemas.orders import LineSku


class ReturnLine(Answer):
    line_id: str = Field(max_length=32, description="The order line (`L<n>`)", examples=["L1"])
    sku: LineSku
    quantity: int = Field(ge=1, le=10_000, json_schema_extra=INT64)
    restock: bool = Field(description="Back to stock at `location_id`, or not (damaged, say)")
    location_id: Id = Field(description="The store that took the units back")
    amount: Money = Field(
        description="The refund for these units: their share of what the line paid after every "
        "discount, with its tax"
    )


class ReturnRefund(Answer):
    refund_id: Id
    payment_id: Id = Field(description="The tender it went back to")
    amount: Money
    status: str = Field(max_length=32, description="`pending`, `succeeded` or `failed`")


class Return(Answer):
    id: Id
    order_id: Id
    lines: list[ReturnLine] = Field(min_length=1, max_length=200)
    reason: str = Field(max_length=50, examples=["wrong_size"])
    override_reason: str = Field(
        max_length=500, description="Why it was taken past the return window, when it was"
    )
    amount: Money = Field(description="The refund: the lines' amounts together")
    status: Literal["pending", "completed"] = Field(
        description="`pending` while the refund and restock are under way (a retry of the "
        "same request finishes it), then `completed`"
    )
    refunds: list[ReturnRefund] = Field(
        max_length=50, description="One per tender refunded, from the last one taken backwards"
    )
    created_at: Timestamp
    completed_at: Timestamp | None = None


class ReturnList(Page[Return]):
    pass


__all__ = ["OptionalId", "Return", "ReturnList"]
