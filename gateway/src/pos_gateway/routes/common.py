"""What every route module shares: request models' building blocks and list answers."""

from __future__ import annotations

from collections.abc import Awaitable
from datetime import UTC, datetime
from typing import Annotated, Any, TypeVar

import grpc
from fastapi import Query, Request
from google.protobuf.timestamp_pb2 import Timestamp
from pydantic import BaseModel, ConfigDict, Field

from pos.common.v1 import money_pb2
from pos_gateway.auth import require
from pos_gateway.clients import Services
from pos_gateway.problems import Problem
from pos_kit.context import request_id_var
from pos_kit.grpc_client import read_error

T = TypeVar("T")


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
UpdatedSince = Annotated[
    datetime | None,
    Query(
        description="Only what changed at or after this RFC 3339 time, oldest change first; "
        "poll again from the last `updated_at` you saw",
    ),
]


def timestamp(value: datetime, name: str = "updated_since") -> Timestamp:
    if value.tzinfo is None:
        raise Problem(
            400,
            "invalid_request",
            f"{name} must carry a time zone",
            [{"field": name, "reason": "must be an RFC 3339 time with an offset"}],
        )
    stamp = Timestamp()
    stamp.FromDatetime(value.astimezone(UTC))
    return stamp


def services(request: Request) -> Services:
    svc: Services = request.app.state.services
    return svc


def request_id() -> str:
    """The Idempotency-Key of this request (or a fresh id): the services' request_id."""
    return request_id_var.get() or ""


def page(items: list[dict[str, Any]], next_token: str) -> dict[str, Any]:
    return {"data": items, "next_cursor": next_token or None}


PROBLEM = {
    "content": {
        "application/problem+json": {
            "schema": {
                "type": "object",
                "properties": {
                    "type": {"type": "string"},
                    "title": {"type": "string"},
                    "status": {"type": "integer"},
                    "detail": {"type": "string"},
                    "code": {"type": "string"},
                    "errors": {
                        "type": "array",
                        "items": {
                            "type": "object",
                            "properties": {
                                "field": {"type": "string"},
                                "reason": {"type": "string"},
                            },
                        },
                    },
                },
                "required": ["type", "title", "status", "code"],
            }
        }
    }
}
_ERRORS = {
    400: "Invalid request: `errors[]` names each field",
    401: "Missing or invalid API key",
    403: "The key lacks the required scope (`insufficient_scope`)",
    404: "No such resource for this merchant",
    409: "Conflict with the current state, or the same Idempotency-Key still running",
    412: "If-Match names a version that is no longer current",
    413: "Request body too large",
    422: "Idempotency-Key reused with a different request",
    429: "Rate limit exceeded; see Retry-After",
    503: "A service the request needs is unavailable",
    504: "A service the request needs did not answer in time",
}


def op(scope: str, summary: str) -> dict[str, Any]:
    """Everything a /v1 route declares besides its path: scope check, docs, error answers."""
    return {
        "summary": summary,
        "description": f"Requires the `{scope}` scope.",
        "dependencies": [require(scope)],
        "responses": {code: {"description": text, **PROBLEM} for code, text in _ERRORS.items()},
        "openapi_extra": {"security": [{"apiKey": [scope]}], "x-required-scopes": [scope]},
    }


def expected_version(if_match: str | None) -> int:
    """If-Match carries the version as an entity tag: `"3"`, `W/"3"` or a bare 3; none is 0."""
    if if_match is None:
        return 0
    tag = if_match.strip().removeprefix("W/").strip('"')
    if not tag.isdigit() or int(tag) < 1:
        raise Problem(
            400,
            "invalid_if_match",
            "If-Match must be the resource's version",
            [{"field": "If-Match", "reason": "must be a positive version number"}],
        )
    return int(tag)


async def version_checked(call: Awaitable[T]) -> T:
    """A stale If-Match (reason `version_mismatch`) is a 412 carrying the current version."""
    try:
        return await call
    except grpc.aio.AioRpcError as exc:
        remote = read_error(exc)
        if remote.reason == "version_mismatch":
            raise Problem(
                412,
                "version_mismatch",
                remote.message,
                extra={"current_version": int(remote.metadata.get("current_version", "0"))},
            ) from None
        raise
