"""The customer service running for real: gRPC in, loyalty from order events, exactly once."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass

import grpc
import nats
import pytest
import pytest_asyncio

from pos.common.v1 import money_pb2
from pos.customer.v1 import customer_pb2, customer_pb2_grpc, loyalty_pb2
from pos.customer.v1 import events_pb2 as customer_events
from pos.order.v1 import events_pb2 as order_events
from pos.order.v1 import order_pb2
from pos_devstack.natsd import LocalNats
from pos_devstack.testing import Infra, serve_in_process
from pos_kit.events import EVENT_ID_HEADER, EVENT_TYPE_HEADER, MERCHANT_HEADER
from pos_kit.grpc_client import read_error
from pos_kit.streams import ensure_service_streams

pytestmark = pytest.mark.asyncio(loop_scope="session")


@dataclass
class Running:
    stub: customer_pb2_grpc.CustomerServiceStub
    nats: LocalNats
    runtime: object


@pytest_asyncio.fixture(loop_scope="session")
async def running(infra: Infra) -> AsyncIterator[Running]:
    server = infra.new_nats()
    try:
        async with serve_in_process("customer", infra, server.url) as svc:
            yield Running(customer_pb2_grpc.CustomerServiceStub(svc.channel), server, svc.runtime)
    finally:
        server.stop()


def md(merchant: str = "mer_a") -> tuple[tuple[str, str], ...]:
    return (("x-merchant-id", merchant),)


async def _create(stub: customer_pb2_grpc.CustomerServiceStub, rid: str, email: str):  # type: ignore[no-untyped-def]
    return await stub.CreateCustomer(
        customer_pb2.CreateCustomerRequest(request_id=rid, email=email, given_name="Ada"),
        metadata=md(),
        timeout=5,
    )


async def test_create_is_idempotent_by_request_id(running: Running) -> None:
    first = await _create(running.stub, "r-1", "ada@example.com")
    again = await _create(running.stub, "r-1", "ada@example.com")
    assert again == first
    listed = await running.stub.ListCustomers(
        customer_pb2.ListCustomersRequest(), metadata=md(), timeout=5
    )
    assert [c.id for c in listed.customers] == [first.customer.id]


async def test_same_request_id_with_another_body_is_refused(running: Running) -> None:
    await _create(running.stub, "r-2", "bob@example.com")
    with pytest.raises(grpc.aio.AioRpcError) as err:
        await _create(running.stub, "r-2", "carol@example.com")
    assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert read_error(err.value).reason == "idempotency_key_reused"


async def test_another_merchants_customer_is_not_found(running: Running) -> None:
    created = await _create(running.stub, "r-3", "dan@example.com")
    with pytest.raises(grpc.aio.AioRpcError) as err:
        await running.stub.GetCustomer(
            customer_pb2.GetCustomerRequest(id=created.customer.id), metadata=md("mer_b"), timeout=5
        )
    assert err.value.code() == grpc.StatusCode.NOT_FOUND


async def test_calls_without_deadline_or_merchant_are_refused(running: Running) -> None:
    with pytest.raises(grpc.aio.AioRpcError) as err:
        await running.stub.GetCustomer(customer_pb2.GetCustomerRequest(id="x"), metadata=md())
    assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    with pytest.raises(grpc.aio.AioRpcError) as err:
        await running.stub.GetCustomer(customer_pb2.GetCustomerRequest(id="x"), timeout=5)
    assert err.value.code() == grpc.StatusCode.UNAUTHENTICATED


async def test_a_confirmed_order_delivered_twice_credits_loyalty_once(running: Running) -> None:
    created = await _create(running.stub, "r-4", "eve@example.com")
    customer_id = created.customer.id
    confirmed = order_events.OrderConfirmed(
        order=order_pb2.Order(
            id="ord_1",
            customer_id=customer_id,
            total=money_pb2.Money(amount=6040, currency="USD"),
        )
    )
    nc = await nats.connect(running.nats.url)
    try:
        js = nc.jetstream()
        await ensure_service_streams(js, "order")
        for transport_id in ("first", "second"):  # as if the order relay published it twice
            await js.publish(
                "pos.order.v1.order_confirmed",
                confirmed.SerializeToString(),
                headers={
                    "Nats-Msg-Id": transport_id,
                    EVENT_ID_HEADER: "evt_order_1",
                    EVENT_TYPE_HEADER: "pos.order.v1.OrderConfirmed",
                    MERCHANT_HEADER: "mer_a",
                },
            )
        consumer = running.runtime.consumers[0]  # type: ignore[attr-defined]
        deadline = time.monotonic() + 20
        while consumer.applied + consumer.duplicates < 2:
            assert time.monotonic() < deadline, "the consumer did not see both deliveries"
            await asyncio.sleep(0.02)
        got = await running.stub.GetCustomer(
            customer_pb2.GetCustomerRequest(id=customer_id), metadata=md(), timeout=5
        )
        assert got.customer.loyalty_points == 60
        assert consumer.duplicates == 1
        # The accrual itself is announced, once.
        await ensure_service_streams(js, "customer")
        deadline = time.monotonic() + 20
        while True:
            try:
                earned = await js.get_last_msg(
                    "POS_CUSTOMER", "pos.customer.v1.loyalty_points_earned"
                )
                break
            except nats.js.errors.NotFoundError:
                assert time.monotonic() < deadline, "LoyaltyPointsEarned was not published"
                await asyncio.sleep(0.05)
        message = customer_events.LoyaltyPointsEarned.FromString(earned.data)
        assert (message.customer_id, message.points, message.balance) == (customer_id, 60, 60)
        # With the entry the points history lists for it, as the other point events carry.
        (listed,) = (
            await running.stub.ListPointsHistory(
                loyalty_pb2.ListPointsHistoryRequest(customer_id=customer_id),
                metadata=md(),
                timeout=5,
            )
        ).entries
        assert listed.kind == "earned"
        assert message.entry == listed
    finally:
        await nc.close()
