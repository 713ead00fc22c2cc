"""Customers: /v1/customers."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Depends
from pydantic import Field

from pos.customer.v1 import customer_pb2
from pos_gateway.clients import Services
from pos_gateway.convert import to_json
from pos_gateway.routes.common import Body, Cursor, Limit, op, page, request_id, services

router = APIRouter(prefix="/v1", tags=["customers"])
Svc = Annotated[Services, Depends(services)]


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
async def list_customers(svc: Svc, limit: Limit = 50, cursor: Cursor = None) -> dict[str, Any]:
    answer = await svc.customer.ListCustomers(
        customer_pb2.ListCustomersRequest(page_size=limit, page_token=cursor or "")
    )
    return page([to_json(x) for x in answer.customers], answer.next_page_token)


@router.get(
    "/customers/{customer_id}", **op("customers:read", "Get a customer with its loyalty balance")
)
async def get_customer(customer_id: str, svc: Svc) -> dict[str, Any]:
    answer = await svc.customer.GetCustomer(customer_pb2.GetCustomerRequest(id=customer_id))
    return to_json(answer.customer)
