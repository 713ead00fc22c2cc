"""pos.customer.v1.CustomerService: translates protobuf <-> handlers, nothing more."""

from __future__ import annotations

from collections.abc import Callable
from typing import Literal

import grpc

from pos.customer.v1 import customer_pb2, customer_pb2_grpc
from pos_customer.adapters.messages import customer_to_proto
from pos_customer.adapters.repository import CustomerUow
from pos_customer.service import handlers
from pos_kit.paging import page_of, page_request
from pos_kit.servicer import Servicer, mutation, query


def _optional(
    request: customer_pb2.UpdateCustomerRequest,
    name: Literal["email", "given_name", "family_name"],
) -> str | None:
    return getattr(request, name) if request.HasField(name) else None


class CustomerApi(Servicer[CustomerUow], customer_pb2_grpc.CustomerServiceServicer):
    @mutation(customer_pb2.CreateCustomerResponse)
    async def CreateCustomer(
        self, request: customer_pb2.CreateCustomerRequest, uow: CustomerUow
    ) -> customer_pb2.CreateCustomerResponse:
        customer = await handlers.create_customer(
            uow, request.email, request.given_name, request.family_name
        )
        return customer_pb2.CreateCustomerResponse(customer=customer_to_proto(customer))

    @mutation(customer_pb2.UpdateCustomerResponse)
    async def UpdateCustomer(
        self, request: customer_pb2.UpdateCustomerRequest, uow: CustomerUow
    ) -> customer_pb2.UpdateCustomerResponse:
        customer = await handlers.update_customer(
            uow,
            request.id,
            _optional(request, "email"),
            _optional(request, "given_name"),
            _optional(request, "family_name"),
            request.expected_version,
        )
        return customer_pb2.UpdateCustomerResponse(customer=customer_to_proto(customer))

    @query
    async def GetCustomer(
        self, request: customer_pb2.GetCustomerRequest, uow: CustomerUow
    ) -> customer_pb2.GetCustomerResponse:
        customer = await handlers.get_customer(uow, request.id)
        return customer_pb2.GetCustomerResponse(customer=customer_to_proto(customer))

    @query
    async def ListCustomers(
        self, request: customer_pb2.ListCustomersRequest, uow: CustomerUow
    ) -> customer_pb2.ListCustomersResponse:
        page = page_request(request)
        found, token = page_of(await handlers.list_customers(uow, page), page)
        return customer_pb2.ListCustomersResponse(
            customers=[customer_to_proto(c) for c in found], next_page_token=token
        )


def registrar(uow: Callable[[], CustomerUow]) -> Callable[[grpc.aio.Server], None]:
    def register(server: grpc.aio.Server) -> None:
        customer_pb2_grpc.add_CustomerServiceServicer_to_server(CustomerApi(uow), server)

    return register


SERVICE_NAME = customer_pb2.DESCRIPTOR.services_by_name["CustomerService"].full_name
