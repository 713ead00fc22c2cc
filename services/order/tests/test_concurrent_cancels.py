"""Two cancels of one fulfilment at once, under different request ids: both are told the
outcome, and the money is given back once. Real PostgreSQL, NATS JetStream, and the inventory,
payment and order services in this process; the payment service's sandbox processor takes
1.5 s a call, so the second cancel arrives while the first one's void is at the processor.

Both cancels drive the same steps under the same derived request ids (`<order>/void/<payment>`):
the payment service answers the second `request_in_progress` while the first is in flight,
and the order service waits for that answer and takes it as its own instead of passing the
retryable refusal on to a caller who did nothing twice.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack
from dataclasses import dataclass

import psycopg
import pytest
import pytest_asyncio
from order_shop import serve_order, tee_shop

from pos.order.v1 import order_pb2, order_pb2_grpc
from pos.payment.v1 import payment_pb2
from pos_devstack.testing import Infra, serve_in_process, until

pytestmark = pytest.mark.asyncio(loop_scope="session")

MERCHANT_ID = "mer_twice"
MERCHANT = (("x-merchant-id", MERCHANT_ID),)
PROCESSOR_SECONDS = 1.5


@dataclass
class Shop:
    orders: order_pb2_grpc.OrderServiceStub
    payment_db: str
    location: str

    def in_flight(self, request_id: str) -> bool:
        """The payment service has claimed the request and has no answer yet."""
        with psycopg.connect(self.payment_db) as conn:
            row = conn.execute(
                "SELECT response IS NULL FROM processed_requests WHERE request_id = %s",
                (request_id,),
            ).fetchone()
        return row is not None and bool(row[0])

    def payment(self, order_id: str) -> tuple[str, int, int]:
        with psycopg.connect(self.payment_db) as conn:
            rows = conn.execute(
                "SELECT status, authorized, voided FROM payments WHERE order_id = %s",
                (order_id,),
            ).fetchall()
        ((status, authorized, voided),) = rows
        return status, authorized, voided


@pytest_asyncio.fixture(loop_scope="session")
async def shop(infra: Infra) -> AsyncIterator[Shop]:
    server = infra.new_nats()
    try:
        async with AsyncExitStack() as stack:
            inventory = await stack.enter_async_context(
                serve_in_process("inventory", infra, server.url)
            )
            payment = await stack.enter_async_context(
                serve_in_process(
                    "payment", infra, server.url, sandbox_delay_seconds=PROCESSOR_SECONDS
                )
            )
            # Pickups wait an hour at most: captured at hand-over, so a cancel voids.
            order = await stack.enter_async_context(
                serve_order(
                    infra, server.url, inventory.port, payment.port, pickup_expiry_seconds=3600
                )
            )
            location = await tee_shop(inventory.channel, MERCHANT_ID, stock=10)
            yield Shop(
                order_pb2_grpc.OrderServiceStub(order.channel), payment.database_url, location
            )
    finally:
        server.stop()


async def test_two_cancels_of_one_fulfilment_at_once_both_answer_and_void_once(
    shop: Shop,
) -> None:
    created = await shop.orders.CreateOrder(
        order_pb2.CreateOrderRequest(
            request_id=str(uuid.uuid4()),
            channel="web",
            location_id=shop.location,
            lines=[order_pb2.OrderLineRequest(sku="TEE", quantity=1)],
            fulfillments=[
                order_pb2.FulfillmentRequest(
                    type=order_pb2.FULFILLMENT_TYPE_PICKUP, location_id=shop.location
                )
            ],
        ),
        metadata=MERCHANT,
        timeout=30,
    )
    order_id = created.order.id
    await shop.orders.AddTender(
        order_pb2.AddTenderRequest(
            request_id=str(uuid.uuid4()),
            order_id=order_id,
            tender_type=payment_pb2.TENDER_TYPE_CARD,
            card_token="tok_visa",
        ),
        metadata=MERCHANT,
        timeout=30,
    )
    confirmed = await shop.orders.ConfirmOrder(
        order_pb2.ConfirmOrderRequest(request_id=str(uuid.uuid4()), order_id=order_id),
        metadata=MERCHANT,
        timeout=30,
    )
    (pickup,) = confirmed.order.fulfillments
    assert pickup.captured.amount == 0  # authorised only: the cancel voids
    (payment_id,) = confirmed.order.payment_ids

    def cancel() -> asyncio.Future[order_pb2.CancelFulfillmentResponse]:
        return asyncio.ensure_future(
            shop.orders.CancelFulfillment(
                order_pb2.CancelFulfillmentRequest(
                    request_id=str(uuid.uuid4()), order_id=order_id, fulfillment_id=pickup.id
                ),
                metadata=MERCHANT,
                timeout=30,
            )
        )

    first = cancel()
    void = f"{order_id}/void/{payment_id}"
    await until(lambda: shop.in_flight(void) or first.done(), limit=30)
    assert shop.in_flight(void), first.exception() if first.done() else "?"
    second = cancel()
    answers = await asyncio.gather(first, second)

    for answer in answers:
        assert answer.order.status == order_pb2.ORDER_STATUS_CANCELLED
        assert [f.status for f in answer.order.fulfillments] == [
            order_pb2.FULFILLMENT_STATUS_CANCELLED
        ]
    assert shop.payment(order_id) == ("voided", 2500, 2500)
