"""Customers: /v1/customers."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Response
from pydantic import Field

from pos.customer.v1 import customer_pb2
from pos_gateway import examples as ex
from pos_gateway.clients import Services
from pos_gateway.convert import to_model, to_page
from pos_gateway.routes.common import (
    CREATE,
    Body,
    Cursor,
    IfMatch,
    Limit,
    PathId,
    UpdatedSince,
    example,
    expected_version,
    op,
    request_id,
    services,
    timestamp,
    version_checked,
)
from pos_gateway.schemas.people import Customer, CustomerList

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
async def create_customer(body: CustomerIn, svc: Svc) -> Customer:
    answer = await svc.customer.CreateCustomer(
        customer_pb2.CreateCustomerRequest(request_id=request_id(), **body.model_dump())
    )
    return to_model(Customer, answer.customer)


@router.get("/customers", **op("customers:read", "List customers", example=ex.page(ex.CUSTOMER)))
async def list_customers(
    svc: Svc, limit: Limit = 50, cursor: Cursor = None, updated_since: UpdatedSince = None
) -> CustomerList:
    request = customer_pb2.ListCustomersRequest(page_size=limit, page_token=cursor or "")
    if updated_since is not None:
        request.updated_since.CopyFrom(timestamp(updated_since))
    answer = await svc.customer.ListCustomers(request)
    return to_page(CustomerList, answer.customers, answer.next_page_token)


@router.get(
    "/customers/{customer_id}",
    **op("customers:read", "Get a customer with its loyalty balance", (404,), example=ex.CUSTOMER),
)
async def get_customer(customer_id: PathId, svc: Svc, response: Response) -> Customer:
    answer = await svc.customer.GetCustomer(customer_pb2.GetCustomerRequest(id=customer_id))
    response.headers["ETag"] = f'"{answer.customer.version}"'
    return to_model(Customer, answer.customer)


@router.patch(
    "/customers/{customer_id}",
    **op("customers:write", "Update a customer", (404, 409, 412), example=ex.CUSTOMER),
)
async def update_customer(
    customer_id: PathId,
    body: CustomerPatch,
    svc: Svc,
    response: Response,
    if_match: IfMatch = None,
) -> Customer:
    """Send `If-Match: "<version>"` to update only the version you saw; a stale one is a 412."""
    request = customer_pb2.UpdateCustomerRequest(
        request_id=request_id(), id=customer_id, expected_version=expected_version(if_match)
    )
    for name, value in body.model_dump(exclude_unset=True).items():
        if value is not None:
            setattr(request, name, value)
    answer = await version_checked(svc.customer.UpdateCustomer(request))
    response.headers["ETag"] = f'"{answer.customer.version}"'
    return to_model(Customer, answer.customer)
