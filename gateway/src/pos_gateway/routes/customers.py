"""Customers: /v1/customers."""

from __future__ import annotations

import re
from typing import Annotated, Any

import grpc
from fastapi import APIRouter, Depends, Header, Response
from pydantic import Field

from pos.customer.v1 import customer_pb2
from pos_gateway import examples as ex
from pos_gateway.clients import Services
from pos_gateway.convert import to_json
from pos_gateway.problems import Problem
from pos_gateway.routes.common import (
    CREATE,
    Body,
    Cursor,
    Limit,
    UpdatedSince,
    example,
    op,
    page,
    request_id,
    services,
    timestamp,
)
from pos_kit.grpc_client import read_error

router = APIRouter(prefix="/v1", tags=["customers"])
Svc = Annotated[Services, Depends(services)]


# The customer service's rule (no space, one @, a dot after it), stated in the document so a
# client can check it first. Control characters are named outright: regex engines disagree on
# which of them `\s` covers (Python's includes \x1c-\x1f, JSON Schema's does not).
_PART = r"[^@\s\x00-\x1f\x7f-\x9f]+"
EMAIL = rf"^{_PART}@{_PART}\.{_PART}$"


class CustomerPatch(Body):
    model_config = example({"given_name": "Augusta Ada"})

    email: str | None = Field(None, min_length=3, max_length=254, pattern=EMAIL)
    given_name: str | None = Field(None, max_length=100)
    family_name: str | None = Field(None, max_length=100)


class CustomerIn(Body):
    model_config = example(
        {"email": "ada@example.com", "given_name": "Ada", "family_name": "Lovelace"}
    )

    email: str = Field(min_length=3, max_length=254, pattern=EMAIL)
    given_name: str = Field("", max_length=100)
    family_name: str = Field("", max_length=100)


@router.post(
    "/customers",
    **op("customers:write", "Create a customer", CREATE, example=ex.CUSTOMER, status=201),
)
async def create_customer(body: CustomerIn, svc: Svc) -> dict[str, Any]:
    answer = await svc.customer.CreateCustomer(
        customer_pb2.CreateCustomerRequest(request_id=request_id(), **body.model_dump())
    )
    return to_json(answer.customer)


@router.get("/customers", **op("customers:read", "List customers", example=ex.page(ex.CUSTOMER)))
async def list_customers(
    svc: Svc, limit: Limit = 50, cursor: Cursor = None, updated_since: UpdatedSince = None
) -> dict[str, Any]:
    request = customer_pb2.ListCustomersRequest(page_size=limit, page_token=cursor or "")
    if updated_since is not None:
        request.updated_since.CopyFrom(timestamp(updated_since))
    answer = await svc.customer.ListCustomers(request)
    return page([to_json(x) for x in answer.customers], answer.next_page_token)


@router.get(
    "/customers/{customer_id}",
    **op("customers:read", "Get a customer with its loyalty balance", (404,), example=ex.CUSTOMER),
)
async def get_customer(customer_id: str, svc: Svc, response: Response) -> dict[str, Any]:
    answer = await svc.customer.GetCustomer(customer_pb2.GetCustomerRequest(id=customer_id))
    response.headers["ETag"] = f'"{answer.customer.version}"'
    return to_json(answer.customer)


IF_MATCH = r'^(W/)?"?[1-9][0-9]{0,17}"?$'


def _version(if_match: str | None) -> int:
    """If-Match carries the version as an entity tag: `"3"`, `W/"3"` or a bare 3."""
    if if_match is None:
        return 0
    tag = if_match.strip().removeprefix("W/").strip('"')
    # ASCII digits only and at most 18 of them: int() takes other scripts' digits, and a
    # number past int64 would fail in protobuf as a 500 instead of this 400.
    if not re.fullmatch(r"[1-9][0-9]{0,17}", tag):
        raise Problem(
            400,
            "invalid_if_match",
            "If-Match must be the resource's version",
            [{"field": "If-Match", "reason": "must be a positive version number"}],
        )
    return int(tag)


@router.patch(
    "/customers/{customer_id}",
    **op("customers:write", "Update a customer", (404, 409, 412), example=ex.CUSTOMER),
)
async def update_customer(
    customer_id: str,
    body: CustomerPatch,
    svc: Svc,
    response: Response,
    if_match: Annotated[
        str | None,
        Header(
            description='The version you saw, as its ETag: `"3"` (or `W/"3"`, or 3)',
            json_schema_extra={"pattern": IF_MATCH},
        ),
    ] = None,
) -> dict[str, Any]:
    """Send `If-Match: "<version>"` to update only the version you saw; a stale one is a 412."""
    request = customer_pb2.UpdateCustomerRequest(
        request_id=request_id(), id=customer_id, expected_version=_version(if_match)
    )
    for name, value in body.model_dump(exclude_unset=True).items():
        if value is not None:
            setattr(request, name, value)
    try:
        answer = await svc.customer.UpdateCustomer(request)
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
    response.headers["ETag"] = f'"{answer.customer.version}"'
    return to_json(answer.customer)
