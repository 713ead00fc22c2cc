"""A checkout retried after its payment's answer was lost sells under the same order id: real
PostgreSQL, NATS JetStream, and the inventory, payment and order services in this process.

Between the order and payment services sits a relay that passes every call through, except that
it drops the first answer and reports the service unavailable: the card is charged, the order
service never learns it. The checkout fails and the kit drops its claim, so the client's retry
is a new claim. The retry must hand the payment service the same order id under the same
payment request id: any other order id is refused as a reused request id, and the charge would
be left with no order.
"""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack
from dataclasses import dataclass, field

import grpc
import pytest
import pytest_asyncio
from order_shop import payments_for, serve_order, tee_shop

from pos.order.v1 import order_pb2, order_pb2_grpc
from pos.payment.v1 import payment_pb2, payment_pb2_grpc
from pos_devstack.testing import Infra, serve_in_process
from pos_kit.grpc_client import read_error

pytestmark = pytest.mark.asyncio(loop_scope="session")

MERCHANT_ID = "mer_retry"
MERCHANT = (("x-merchant-id", MERCHANT_ID),)


@dataclass
class LosingRelay(payment_pb2_grpc.PaymentServiceServicer):
    """Passes charges to the payment service (its refusals too); the first answer never comes
    back."""

    payment: payment_pb2_grpc.PaymentServiceStub
    seen: list[payment_pb2.AuthorizeAndCaptureRequest] = field(default_factory=list)

    async def AuthorizeAndCapture(
        self, request: payment_pb2.AuthorizeAndCaptureRequest, context: grpc.aio.ServicerContext
    ) -> payment_pb2.AuthorizeAndCaptureResponse:
        self.seen.append(request)
        metadata = [(k, v) for k, v in context.invocation_metadata() or () if k.startswith("x-")]
        try:
            answer: payment_pb2.AuthorizeAndCaptureResponse = (
                await self.payment.AuthorizeAndCapture(request, metadata=metadata, timeout=5)
            )
        except grpc.aio.AioRpcError as refused:  # passed on as the payment service said it
            await context.abort(
                refused.code(), refused.details() or "", tuple(refused.trailing_metadata() or ())
            )
        if len(self.seen) == 1:
            await context.abort(grpc.StatusCode.UNAVAILABLE, "connection reset")
        return answer


@dataclass
class Stack:
    order: order_pb2_grpc.OrderServiceStub
    relay: LosingRelay
    payment_db: str
    location_id: str

    def payments_for(self, order_id: str) -> int:
        return payments_for(self.payment_db, order_id)


@pytest_asyncio.fixture(loop_scope="session")
async def stack(infra: Infra) -> AsyncIterator[Stack]:
    server = infra.new_nats()
    try:
        async with AsyncExitStack() as stack:
            inventory = await stack.enter_async_context(
                serve_in_process("inventory", infra, server.url)
            )
            payment = await stack.enter_async_context(
                serve_in_process("payment", infra, server.url)
            )
            relay = LosingRelay(payment_pb2_grpc.PaymentServiceStub(payment.channel))
            relay_server = grpc.aio.server()
            payment_pb2_grpc.add_PaymentServiceServicer_to_server(relay, relay_server)
            relay_port = relay_server.add_insecure_port("127.0.0.1:0")
            await relay_server.start()
            stack.push_async_callback(relay_server.stop, None)
            order = await stack.enter_async_context(
                serve_order(infra, server.url, inventory.port, relay_port)
            )
            location_id = await tee_shop(inventory.channel, MERCHANT_ID)
            yield Stack(
                order=order_pb2_grpc.OrderServiceStub(order.channel),
                relay=relay,
                payment_db=payment.database_url,
                location_id=location_id,
            )
    finally:
        server.stop()


async def test_a_retry_after_a_lost_payment_answer_reuses_the_order_id(stack: Stack) -> None:
    request = order_pb2.CheckoutRequest(
        request_id=str(uuid.uuid4()),
        location_id=stack.location_id,
        lines=[order_pb2.CheckoutLine(sku="TEE", quantity=1)],
        tender_type=payment_pb2.TENDER_TYPE_CARD,
        card_token="tok_visa",
    )
    with pytest.raises(grpc.aio.AioRpcError) as err:
        await stack.order.Checkout(request, metadata=MERCHANT, timeout=10)
    assert err.value.code() == grpc.StatusCode.UNAVAILABLE
    assert read_error(err.value).reason == "payment_unavailable"
    charged = stack.relay.seen[0]
    assert stack.payments_for(charged.order_id) == 1  # the card was charged all the same

    retry: order_pb2.CheckoutResponse = await stack.order.Checkout(
        request, metadata=MERCHANT, timeout=10
    )

    again = stack.relay.seen[1]
    assert (again.request_id, again.order_id) == (charged.request_id, charged.order_id)
    assert retry.order.id == charged.order_id
    assert retry.order.status == order_pb2.ORDER_STATUS_COMPLETED
    assert retry.payment.order_id == retry.order.id
    assert stack.payments_for(retry.order.id) == 1
    replay = await stack.order.Checkout(request, metadata=MERCHANT, timeout=10)
    assert replay == retry and len(stack.relay.seen) == 2


async def test_a_request_id_reused_with_another_body_leaves_the_first_sale_to_finish(
    stack: Stack,
) -> None:
    """The failed first run dropped its claim, so the same request id with another card reaches
    the saga, which finds the first run's order (the same start) and asks the payment service
    under its payment's request id: refused as reused. That refuses this request, not the
    sale: the order the card was charged for stays, and the first request's retry sells it."""
    request = order_pb2.CheckoutRequest(
        request_id=str(uuid.uuid4()),
        location_id=stack.location_id,
        lines=[order_pb2.CheckoutLine(sku="TEE", quantity=1)],
        tender_type=payment_pb2.TENDER_TYPE_CARD,
        card_token="tok_visa",
    )
    with pytest.raises(grpc.aio.AioRpcError):
        await stack.order.Checkout(request, metadata=MERCHANT, timeout=10)
    charged = stack.relay.seen[0]
    other = order_pb2.CheckoutRequest()
    other.CopyFrom(request)
    other.card_token = "tok_mastercard"

    with pytest.raises(grpc.aio.AioRpcError) as reused:
        await stack.order.Checkout(other, metadata=MERCHANT, timeout=10)

    assert read_error(reused.value).reason == "idempotency_key_reused"
    kept = await stack.order.GetOrder(
        order_pb2.GetOrderRequest(id=charged.order_id), metadata=MERCHANT, timeout=5
    )
    assert kept.order.status == order_pb2.ORDER_STATUS_PENDING_PAYMENT
    retry = await stack.order.Checkout(request, metadata=MERCHANT, timeout=10)
    assert retry.order.id == charged.order_id
    assert retry.order.status == order_pb2.ORDER_STATUS_COMPLETED
    assert stack.payments_for(retry.order.id) == 1
