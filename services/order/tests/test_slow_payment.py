"""Checkouts waiting on a slow card processor hold no database connection: real PostgreSQL, NATS
JetStream, and the inventory, payment and order services in this process.

The order service gets a pool of one connection that gives up after 1.5 s, and the payment
service's sandbox processor takes 4 s per card. A checkout holding its transaction through the
payment would keep the only connection for 4 s and the others would fail waiting for it.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack
from dataclasses import dataclass

import grpc
import psycopg
import pytest
import pytest_asyncio
from order_shop import payments_for, serve_order, tee_shop

from pos.order.v1 import order_pb2, order_pb2_grpc
from pos.payment.v1 import payment_pb2
from pos_devstack.testing import Infra, serve_in_process, until
from pos_kit.grpc_client import read_error

pytestmark = pytest.mark.asyncio(loop_scope="session")

MERCHANT_ID = "mer_slow"
MERCHANT = (("x-merchant-id", MERCHANT_ID),)
PAYMENT_SECONDS = 4.0


@dataclass
class Stack:
    order: order_pb2_grpc.OrderServiceStub
    order_db: str
    payment_db: str
    location_id: str

    def request(self, request_id: str) -> order_pb2.CheckoutRequest:
        return order_pb2.CheckoutRequest(
            request_id=request_id,
            location_id=self.location_id,
            lines=[order_pb2.CheckoutLine(sku="TEE", quantity=1)],
            tender_type=payment_pb2.TENDER_TYPE_CARD,
            card_token="tok_visa",
        )

    async def checkout(self, request: order_pb2.CheckoutRequest) -> order_pb2.CheckoutResponse:
        answer: order_pb2.CheckoutResponse = await self.order.Checkout(
            request, metadata=MERCHANT, timeout=30
        )
        return answer

    def payments_for(self, order_id: str) -> int:
        return payments_for(self.payment_db, order_id)

    def claimed(self, request_id: str) -> bool:
        """The checkout's claim is committed and it has no answer yet: it is in its calls."""
        with psycopg.connect(self.order_db) as conn:
            row = conn.execute(
                "SELECT response IS NULL FROM processed_requests WHERE request_id = %s",
                (request_id,),
            ).fetchone()
        return row is not None and bool(row[0])


@pytest_asyncio.fixture(loop_scope="session")
async def stack(infra: Infra) -> AsyncIterator[Stack]:
    server = infra.new_nats()
    try:
        async with AsyncExitStack() as stack:
            inventory = await stack.enter_async_context(
                serve_in_process("inventory", infra, server.url)
            )
            payment = await stack.enter_async_context(
                serve_in_process(
                    "payment", infra, server.url, sandbox_delay_seconds=PAYMENT_SECONDS
                )
            )
            order = await stack.enter_async_context(
                serve_order(
                    infra,
                    server.url,
                    inventory.port,
                    payment.port,
                    database_pool_size=1,
                    database_pool_overflow=0,
                    # Below the payment's 4 s, so a checkout holding the one connection
                    # through its payment fails the others; above 1.5 s, which a loaded
                    # machine's turns at the connection (four checkouts, the service's own
                    # tasks) could pass with nothing held.
                    database_pool_timeout_seconds=3.0,
                    # The 4 s payment, answered late on a loaded machine (all three services
                    # share the test's one event loop), is not a payment service away.
                    payment_timeout_seconds=20.0,
                )
            )
            location_id = await tee_shop(inventory.channel, MERCHANT_ID)
            yield Stack(
                order=order_pb2_grpc.OrderServiceStub(order.channel),
                order_db=order.database_url,
                payment_db=payment.database_url,
                location_id=location_id,
            )
    finally:
        server.stop()


async def test_checkouts_waiting_on_a_slow_payment_hold_no_connection(stack: Stack) -> None:
    requests = [stack.request(uuid.uuid4().hex) for _ in range(4)]

    answers = await asyncio.gather(*(stack.checkout(r) for r in requests))

    assert len({a.order.id for a in answers}) == 4
    for answer in answers:
        assert answer.order.status == order_pb2.ORDER_STATUS_COMPLETED
        assert answer.order.discounts_applied is False  # promotion is away: list price
        assert answer.payment.order_id == answer.order.id
        assert stack.payments_for(answer.order.id) == 1


async def test_a_duplicate_during_the_payment_is_in_progress_then_replays(stack: Stack) -> None:
    request = stack.request(uuid.uuid4().hex)
    first = asyncio.create_task(stack.checkout(request))
    # Seen claimed with no answer: the first is in its calls (its payment takes 4 s).
    await until(lambda: stack.claimed(request.request_id), limit=PAYMENT_SECONDS)

    with pytest.raises(grpc.aio.AioRpcError) as err:
        await stack.checkout(request)
    assert err.value.code() == grpc.StatusCode.ABORTED
    assert read_error(err.value).reason == "request_in_progress"

    answer = await first
    replay = await stack.checkout(request)

    assert replay == answer
    assert answer.order.status == order_pb2.ORDER_STATUS_COMPLETED
    assert stack.payments_for(answer.order.id) == 1
