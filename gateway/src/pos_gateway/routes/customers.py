"""Customers: /v1/customers."""

from __future__ import annotations

from typing import Annotated, Any

import grpc
from fastapi import APIRouter, Depends, Header, Response
from pydantic import Field

from pos.customer.v1 import customer_pb2
from pos_gateway.clients import Services
from pos_gateway.convert import to_json
from pos_gateway.problems import Problem
from pos_gateway.routes.common import (
    Body,
    Cursor,
    Limit,
    UpdatedSince,
    op,
    page,
    request_id,
    services,
    timestamp,
)
from pos_kit.grpc_client import read_error

router = APIRouter(prefix="/v1", tags=["customers"])
Svc = Annotated[Services, Depends(services)]


class CustomerPatch(Body):
    email: str | None = Field(None, min_length=3, max_length=254)
    given_name: str | None = Field(None, max_length=100)
    family_name: str | None = Field(None, max_length=100)


class CustomerIn(Body):
    email: str = Field(min_length=3, max_length=254)
    given_name: str = Field("", max_length=100)
    family_name: str = Field("", max_length=100)


@router.post("/customers", status_code=201, **op("customers:write", "Create a customer"))
async def create_customer(body: CustomerIn, svc: Svc) -> dict[str, Any]:
    answer = await svc.customer.CreateCustomer(
        customer_pb2.CreateCustomerRequest(request_id=request_id(), **body.model_dump())
    )
    return to_json(answer.customer)


@router.get("/customers", **op("customers:read", "List customers"))
async def list_customers(
    svc: Svc, limit: Limit = 50, cursor: Cursor = None, updated_since: UpdatedSince = None
) -> dict[str, Any]:
    request = customer_pb2.ListCustomersRequest(page_size=limit, page_token=cursor or "")
    if updated_since is not None:
        request.updated_since.CopyFrom(timestamp(updated_since))
    answer = await svc.customer.ListCustomers(request)
    return page([to_json(x) for x in answer.customers], answer.next_page_token)


@router.get(
    "/customers/{customer_id}", **op("customers:read", "Get a customer with its loyalty balance")
)
async def get_customer(customer_id: str, svc: Svc, response: Response) -> dict[str, Any]:
    answer = await svc.customer.GetCustomer(customer_pb2.GetCustomerRequest(id=customer_id))
    response.headers["ETag"] = f'"{answer.customer.version}"'
    return to_json(answer.customer)


def _version(if_match: str | None) -> int:
    """If-Match carries the version as an entity tag: `"3"`, `W/"3"` or a bare 3."""
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


@router.patch("/customers/{customer_id}", **op("customers:write", "Update a customer"))
async def update_customer(
    customer_id: str,
    body: CustomerPatch,
    svc: Svc,
    response: Response,
    if_match: Annotated[str | None, Header()] = None,
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
