"""pos.customer.v1.CustomerService: translates protobuf <-> handlers, nothing more."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC
from typing import Literal

import grpc

from pos.customer.v1 import customer_pb2, customer_pb2_grpc
from pos_customer.adapters.messages import customer_to_proto
from pos_customer.adapters.repository import CustomerUow
from pos_customer.service import handlers
from pos_kit.context import current_merchant
from pos_kit.idempotency import once
from pos_kit.paging import decode_change, decode_token, encode_change, encode_token, page_size


class CustomerApi(customer_pb2_grpc.CustomerServiceServicer):
    def __init__(self, uow: Callable[[], CustomerUow]) -> None:
        self._uow = uow

    async def CreateCustomer(
        self, request: customer_pb2.CreateCustomerRequest, context: grpc.aio.ServicerContext
    ) -> customer_pb2.CreateCustomerResponse:
        async with self._uow().bind(current_merchant()) as uow:

            async def work() -> customer_pb2.CreateCustomerResponse:
                customer = await handlers.create_customer(
                    uow, request.email, request.given_name, request.family_name
                )
                return customer_pb2.CreateCustomerResponse(customer=customer_to_proto(customer))

            return await once(
                uow, "CreateCustomer", request, customer_pb2.CreateCustomerResponse, work
            )

    async def UpdateCustomer(
        self, request: customer_pb2.UpdateCustomerRequest, context: grpc.aio.ServicerContext
    ) -> customer_pb2.UpdateCustomerResponse:
        def field(name: Literal["email", "given_name", "family_name"]) -> str | None:
            return getattr(request, name) if request.HasField(name) else None

        async with self._uow().bind(current_merchant()) as uow:

            async def work() -> customer_pb2.UpdateCustomerResponse:
                customer = await handlers.update_customer(
                    uow,
                    request.id,
                    field("email"),
                    field("given_name"),
                    field("family_name"),
                    request.expected_version,
                )
                return customer_pb2.UpdateCustomerResponse(customer=customer_to_proto(customer))

            return await once(
                uow, "UpdateCustomer", request, customer_pb2.UpdateCustomerResponse, work
            )

    async def GetCustomer(
        self, request: customer_pb2.GetCustomerRequest, context: grpc.aio.ServicerContext
    ) -> customer_pb2.GetCustomerResponse:
        async with self._uow().bind(current_merchant()) as uow:
            customer = await handlers.get_customer(uow, request.id)
            return customer_pb2.GetCustomerResponse(customer=customer_to_proto(customer))

    async def ListCustomers(
        self, request: customer_pb2.ListCustomersRequest, context: grpc.aio.ServicerContext
    ) -> customer_pb2.ListCustomersResponse:
        limit = page_size(request.page_size)
        async with self._uow().bind(current_merchant()) as uow:
            if request.HasField("updated_since"):
                since = request.updated_since.ToDatetime(tzinfo=UTC)
                cursor = decode_change(request.page_token)
                found = await handlers.list_changed_customers(uow, limit + 1, since, cursor)
            else:
                found = await handlers.list_customers(
                    uow, limit + 1, decode_token(request.page_token)
                )
        page = found[:limit]
        token = ""
        if len(found) > limit:
            last = page[-1]
            token = (
                encode_change(last.updated_at, last.id)
                if request.HasField("updated_since") and last.updated_at is not None
                else encode_token(last.id)
            )
        return customer_pb2.ListCustomersResponse(
            customers=[customer_to_proto(c) for c in page], next_page_token=token
        )


def registrar(uow: Callable[[], CustomerUow]) -> Callable[[grpc.aio.Server], None]:
    def register(server: grpc.aio.Server) -> None:
        customer_pb2_grpc.add_CustomerServiceServicer_to_server(CustomerApi(uow), server)

    return register


SERVICE_NAME = customer_pb2.DESCRIPTOR.services_by_name["CustomerService"].full_name
