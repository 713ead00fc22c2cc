"""A cancel by a caller who may not refund asks the payment service what the order's payments
hold before anything is claimed, with no database connection held: real PostgreSQL, NATS
JetStream, and the inventory, payment and order services in this process.

The order service gets a pool of one connection that gives up after 1.5 s, and the cancel's
payment read is held at a relay until another request has run. A cancel that asked with its
claiming transaction open (as it once did) would keep the only connection, and the other
request would fail waiting for it.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack

import grpc
import pytest
import pytest_asyncio
from order_shop import serve_order, tee_shop
from test_cancel_races import CARD, KINDS, MERCHANT, Relay, Shop

from pos.order.v1 import order_pb2, order_pb2_grpc
from pos.payment.v1 import payment_pb2_grpc
from pos_devstack.testing import Infra, serve_in_process

pytestmark = pytest.mark.asyncio(loop_scope="session")


@pytest_asyncio.fixture(loop_scope="session", scope="module")
async def shop(infra: Infra) -> AsyncIterator[Shop]:
    server = infra.new_nats()
    try:
        async with AsyncExitStack() as stack:
            inventory = await stack.enter_async_context(
                serve_in_process("inventory", infra, server.url)
            )
            payment = await stack.enter_async_context(
                serve_in_process("payment", infra, server.url)
            )
            relay = Relay(payment.channel)
            relay_server = grpc.aio.server()
            relay_server.add_generic_rpc_handlers((relay,))
            relay_port = relay_server.add_insecure_port("127.0.0.1:0")
            await relay_server.start()
            stack.push_async_callback(relay_server.stop, None)
            order = await stack.enter_async_context(
                serve_order(
                    infra,
                    server.url,
                    inventory.port,
                    relay_port,
                    pickup_expiry_seconds=3600,
                    database_pool_size=1,
                    database_pool_overflow=0,
                    database_pool_timeout_seconds=1.5,
                )
            )
            location = await tee_shop(inventory.channel, MERCHANT[0][1], stock=100)
            yield Shop(
                order_pb2_grpc.OrderServiceStub(order.channel),
                payment_pb2_grpc.PaymentServiceStub(payment.channel),
                relay,
                location,
            )
    finally:
        server.stop()


async def test_a_cancel_reading_the_payments_holds_no_connection(shop: Shop) -> None:
    order = await shop.create(KINDS["pickup"])
    await shop.tender(order.id, tender_type=CARD, card_token="tok_visa")
    gate = shop.relay.gate("GetOrderPayments")
    cancel = asyncio.ensure_future(
        shop.orders.CancelOrder(
            order_pb2.CancelOrderRequest(
                request_id=str(uuid.uuid4()), order_id=order.id, refund_not_permitted=True
            ),
            metadata=MERCHANT,
            timeout=20,
        )
    )
    try:
        arrived = asyncio.ensure_future(gate.arrived.wait())
        await asyncio.wait([cancel, arrived], return_when=asyncio.FIRST_COMPLETED)
        assert gate.arrived.is_set(), cancel.exception() if cancel.done() else "?"
        # The cancel waits at the relay: the only connection must be free for another order.
        other = await shop.create(KINDS["pickup"])
        assert other.status == order_pb2.ORDER_STATUS_PENDING_PAYMENT
    finally:
        gate.opened.set()
    answer = await cancel
    assert answer.order.status == order_pb2.ORDER_STATUS_CANCELLED
    assert await shop.money_held(order.id) == 0
