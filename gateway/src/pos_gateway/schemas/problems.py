"""The problem answers (RFC 9457): one `Problem`, and the two that carry more."""

from __future__ import annotations

from typing import Annotated

from pydantic import BaseModel, ConfigDict, Field

from pos_gateway.problems import DETAIL_MAX, ERRORS_MAX
from pos_gateway.routes.common import INT32, INT64, INT64_MAX
from pos_gateway.schemas.base import FieldError
from pos_gateway.schemas.orders import Order
from pos_gateway.schemas.payments import Payment


class Problem(BaseModel):
    """RFC 9457 problem details with a stable machine `code`. A refusal may add members
    of its own, the figures a client can act on, typed as JSON: counts are integers
    (`on_hand`, `refundable`, `capturable`, `balance_due`, `current_version`, ...), `skus` and
    `lines` arrays of strings; `insufficient_stock` names the SKUs in `skus` with what each
    has `available` (an array in the same order), or a shipment's shortfall as `short`
    (`[{sku, quantity}]`)."""

    model_config = ConfigDict(extra="allow")

    type: str = Field(max_length=200, json_schema_extra={"format": "uri"})
    title: str = Field(max_length=100)
    status: int = Field(ge=400, le=599, json_schema_extra=INT32)
    detail: str = Field(
        max_length=DETAIL_MAX,
        description="In words for people; it may quote what was sent, cut to its maximum",
    )
    code: str = Field(max_length=64, description="Stable machine code, e.g. `resource_missing`")
    errors: list[FieldError] = Field(
        default_factory=list,
        max_length=ERRORS_MAX,
        description=f"One entry per field problem, the first {ERRORS_MAX} when there are more; "
        "absent when none",
    )


class PaymentDeclined(Problem):
    """The sale is recorded (the order `cancelled`, `cancel_reason` `payment_declined`), and so
    is the declined payment."""

    order: Order
    payment: Payment


class VersionMismatch(Problem):
    """If-Match named a version that is no longer current, or one of a resource that does not
    exist (an upsert by external id): its `current_version` is then 0."""

    current_version: Annotated[
        int,
        Field(
            ge=0,
            le=INT64_MAX,
            json_schema_extra=INT64,
            description="The version now; 0 when the resource does not exist",
        ),
    ]


# Error answers whose problem carries more than the common members, by status.
SPECIFIC = {402: PaymentDeclined, 412: VersionMismatch}
