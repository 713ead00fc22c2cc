"""What every route module shares: request models' building blocks and list answers."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import Query, Request
from pydantic import BaseModel, ConfigDict, Field

from pos.common.v1 import money_pb2
from pos_gateway.clients import Services
from pos_kit.context import request_id_var


class Body(BaseModel):
    # Unknown fields are refused so a typo never silently does nothing.
    model_config = ConfigDict(extra="forbid")


class MoneyIn(Body):
    amount: int = Field(ge=0, le=10**12, description="Integer minor units, e.g. 2599 = 25.99")
    currency: str = Field(pattern=r"^[A-Z]{3}$", examples=["USD"])

    def pb(self) -> money_pb2.Money:
        return money_pb2.Money(amount=self.amount, currency=self.currency)


Limit = Annotated[int, Query(ge=1, le=200, description="Page size (default 50, max 200)")]
Cursor = Annotated[str | None, Query(max_length=512, description="next_cursor of the last page")]


def services(request: Request) -> Services:
    svc: Services = request.app.state.services
    return svc


def request_id() -> str:
    """The Idempotency-Key of this request (or a fresh id): the services' request_id."""
    return request_id_var.get() or ""


def page(items: list[dict[str, Any]], next_token: str) -> dict[str, Any]:
    return {"data": items, "next_cursor": next_token or None}
