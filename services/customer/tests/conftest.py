"""One customer service per test module, on real PostgreSQL and NATS; each test its merchant."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

import pytest_asyncio
import sqlalchemy as sa

from pos.customer.v1 import customer_pb2, customer_pb2_grpc
from pos_devstack.testing import Infra, serve_in_process


@dataclass
class Service:
    stub: customer_pb2_grpc.CustomerServiceStub
    runtime: Any
    url: str

    async def sql(self, statement: str, **params: Any) -> list[Any]:
        """Read the service's own tables, as a test's witness."""
        engine = self.runtime.engine
        async with engine.connect() as conn:
            return list((await conn.execute(sa.text(statement), params)).all())


@pytest_asyncio.fixture(loop_scope="session", scope="module")
async def service(infra: Infra) -> AsyncIterator[Service]:
    async with serve_in_process("customer", infra) as svc:
        yield Service(customer_pb2_grpc.CustomerServiceStub(svc.channel), svc.runtime, "")


class Caller:
    """Calls as one merchant, each mutation with a fresh request id unless given one."""

    def __init__(self, stub: customer_pb2_grpc.CustomerServiceStub, merchant: str) -> None:
        self.stub = stub
        self.merchant = merchant

    def md(self) -> tuple[tuple[str, str], ...]:
        return (("x-merchant-id", self.merchant),)

    async def __call__(self, method: str, request: Any, **fields: Any) -> Any:
        if "request_id" in request.DESCRIPTOR.fields_by_name and not request.request_id:
            request.request_id = str(uuid.uuid4())
        return await getattr(self.stub, method)(request, metadata=self.md(), timeout=20)

    async def create(self, **profile: Any) -> customer_pb2.Customer:
        answer = await self(
            "CreateCustomer",
            customer_pb2.CreateCustomerRequest(profile=customer_pb2.ProfileFields(**profile)),
        )
        return answer.customer


@pytest_asyncio.fixture(loop_scope="session")
async def merchant(service: Service) -> Caller:
    return Caller(service.stub, f"mer_{uuid.uuid4().hex[:12]}")


@pytest_asyncio.fixture(loop_scope="session")
async def other(service: Service) -> Caller:
    return Caller(service.stub, f"mer_{uuid.uuid4().hex[:12]}")
