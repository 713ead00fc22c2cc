"""A request id reused with another body after a failed first attempt: real PostgreSQL, NATS
JetStream, and the inventory, payment and order services in this process.

A first attempt that fails after the order (or return) is saved drops the kit's claim, so a
retry may run at once; the gateway keeps nothing under the Idempotency-Key either. What is kept
is the request's start (`checkout_starts`, or the tender's step on the order), and with it the
request's fingerprint: the same request id with another body is refused
`idempotency_key_reused`, never taken on with the first body's order. Before, the second body's
card paid for the first body's cart (its own lines never sold), or its tender paid the first
tender's amount.

Between the order service and the payment and inventory services sit relays that pass every
call through, except the methods a test sends `away`: those are refused as unavailable before
they reach the service (nothing was done there), and kept for the test to read.
"""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack
from dataclasses import dataclass

import grpc
import pytest
import pytest_asyncio
from order_shop import payments_for, serve_order, tee_shop

from pos.common.v1 import money_pb2
from pos.inventory.v1 import stock_pb2
from pos.order.v1 import order_pb2, order_pb2_grpc
from pos.payment.v1 import payment_pb2, payment_pb2_grpc
from pos_devstack.testing import Infra, serve_in_process
from pos_kit.grpc_client import read_error

pytestmark = pytest.mark.asyncio(loop_scope="session")

MERCHANT = f"mer_reuse{uuid.uuid4().hex[:8]}"
MD = (("x-merchant-id", MERCHANT),)
CARD = payment_pb2.TENDER_TYPE_CARD


def usd(amount: int) -> money_pb2.Money:
    return money_pb2.Money(amount=amount, currency="USD")


class Relay(grpc.GenericRpcHandler):
    """Every call passed through as bytes, with its caller's metadata and deadline; a method
    in `away` is refused as unavailable without reaching the service, its requests kept."""

    def __init__(self, target: grpc.aio.Channel) -> None:
        self.target = target
        self.away: set[str] = set()
        self.refused: dict[str, list[bytes]] = {}
        self.passed: dict[str, list[bytes]] = {}

    def service(self, details: grpc.HandlerCallDetails) -> grpc.RpcMethodHandler:
        method: str = details.method  # type: ignore[attr-defined]
        name = method.rsplit("/", 1)[1]

        async def forward(request: bytes, context: grpc.aio.ServicerContext) -> bytes:
            if name in self.away:
                self.refused.setdefault(name, []).append(request)
                await context.abort(grpc.StatusCode.UNAVAILABLE, "connection refused")
            self.passed.setdefault(name, []).append(request)
            metadata = [(k, v) for k, v in context.invocation_metadata() or () if k[:2] == "x-"]
            try:
                answer: bytes = await self.target.unary_unary(method)(
                    request, metadata=metadata, timeout=context.time_remaining()
                )
            except grpc.aio.AioRpcError as err:
                await context.abort(
                    err.code(), err.details() or "", tuple(err.trailing_metadata() or ())
                )
            return answer

        return grpc.unary_unary_rpc_method_handler(forward)  # type: ignore[arg-type]


async def relay_to(stack: AsyncExitStack, channel: grpc.aio.Channel) -> tuple[Relay, int]:
    relay = Relay(channel)
    server = grpc.aio.server()
    server.add_generic_rpc_handlers((relay,))
    port = server.add_insecure_port("127.0.0.1:0")
    await server.start()
    stack.push_async_callback(server.stop, None)
    return relay, port


@dataclass
class Shop:
    orders: order_pb2_grpc.OrderServiceStub
    payments: payment_pb2_grpc.PaymentServiceStub
    payment: Relay
    inventory: Relay
    payment_db: str
    location: str

    async def order(self, order_id: str) -> order_pb2.Order:
        got = await self.orders.GetOrder(
            order_pb2.GetOrderRequest(id=order_id), metadata=MD, timeout=5
        )
        return got.order

    async def payments_of(self, order_id: str) -> list[payment_pb2.Payment]:
        try:
            found = await self.payments.GetOrderPayments(
                payment_pb2.GetOrderPaymentsRequest(order_id=order_id), metadata=MD, timeout=5
            )
        except grpc.aio.AioRpcError as err:
            assert err.code() == grpc.StatusCode.NOT_FOUND  # no payment for it
            return []
        return list(found.payments)

    def passed(self, method: str) -> list[bytes]:
        return list(self.payment.passed.get(method, []))


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
            to_payment, payment_port = await relay_to(stack, payment.channel)
            to_inventory, inventory_port = await relay_to(stack, inventory.channel)
            order = await stack.enter_async_context(
                serve_order(infra, server.url, inventory_port, payment_port)
            )
            location = await tee_shop(inventory.channel, MERCHANT, stock=100)
            yield Shop(
                order_pb2_grpc.OrderServiceStub(order.channel),
                payment_pb2_grpc.PaymentServiceStub(payment.channel),
                to_payment,
                to_inventory,
                payment.database_url,
                location,
            )
    finally:
        server.stop()


def sale(shop: Shop, request_id: str, quantity: int, token: str) -> order_pb2.CheckoutRequest:
    return order_pb2.CheckoutRequest(
        request_id=request_id,
        location_id=shop.location,
        lines=[order_pb2.CheckoutLine(sku="TEE", quantity=quantity)],
        tender_type=CARD,
        card_token=token,
    )


def reused(err: pytest.ExceptionInfo[grpc.aio.AioRpcError]) -> bool:
    return (err.value.code(), read_error(err.value).reason) == (
        grpc.StatusCode.INVALID_ARGUMENT,
        "idempotency_key_reused",
    )


async def test_a_checkout_request_id_reused_with_another_cart_and_card_is_refused(
    shop: Shop,
) -> None:
    """The order is saved, then the payment service is away: nothing charged. The same request
    id with two T-shirts and another card must not charge that card for the first body's one
    T-shirt; the first body's retry still sells it, paid with its own card."""
    request_id = str(uuid.uuid4())
    first = sale(shop, request_id, 1, "tok_visa")
    shop.payment.away = {"AuthorizeAndCapture"}
    with pytest.raises(grpc.aio.AioRpcError) as failed:
        await shop.orders.Checkout(first, metadata=MD, timeout=10)
    assert read_error(failed.value).reason == "payment_unavailable"
    asked = payment_pb2.AuthorizeAndCaptureRequest.FromString(
        shop.payment.refused["AuthorizeAndCapture"][-1]
    )
    saved = await shop.order(asked.order_id)
    assert saved.status == order_pb2.ORDER_STATUS_PENDING_PAYMENT
    shop.payment.away = set()
    charges = len(shop.passed("AuthorizeAndCapture"))

    with pytest.raises(grpc.aio.AioRpcError) as other:
        await shop.orders.Checkout(
            sale(shop, request_id, 2, "tok_mastercard"), metadata=MD, timeout=10
        )

    assert reused(other), read_error(other.value)
    assert len(shop.passed("AuthorizeAndCapture")) == charges  # no card was asked
    kept = await shop.order(asked.order_id)
    assert kept == saved  # its lines, its state, its version: untouched
    assert payments_for(shop.payment_db, asked.order_id) == 0

    sold = await shop.orders.Checkout(first, metadata=MD, timeout=10)
    assert sold.order.id == asked.order_id
    assert sold.order.status == order_pb2.ORDER_STATUS_COMPLETED
    assert [(ln.sku, ln.quantity) for ln in sold.order.lines] == [("TEE", 1)]
    assert sold.order.total.amount == 2500
    charged = [payment_pb2.AuthorizeAndCaptureRequest.FromString(b)
               for b in shop.passed("AuthorizeAndCapture")[charges:]]  # fmt: skip
    assert [(c.order_id, c.card_token) for c in charged] == [(asked.order_id, "tok_visa")]
    assert payments_for(shop.payment_db, asked.order_id) == 1


async def test_a_tender_request_id_reused_with_another_card_and_amount_is_refused(
    shop: Shop,
) -> None:
    """A tender's step is kept on the order by its request id: another body under that id must
    not pay the first body's amount with its own card."""
    made = await shop.orders.CreateOrder(
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
        metadata=MD,
        timeout=10,
    )
    order_id = made.order.id
    request_id = str(uuid.uuid4())
    first = order_pb2.AddTenderRequest(
        request_id=request_id, order_id=order_id, tender_type=CARD, card_token="tok_visa",
        amount=usd(1000),
    )  # fmt: skip
    shop.payment.away = {"CreatePayment"}
    with pytest.raises(grpc.aio.AioRpcError) as failed:
        await shop.orders.AddTender(first, metadata=MD, timeout=10)
    assert failed.value.code() == grpc.StatusCode.UNAVAILABLE
    shop.payment.away = set()
    asked = len(shop.passed("CreatePayment"))
    before = await shop.order(order_id)

    other = order_pb2.AddTenderRequest(
        request_id=request_id, order_id=order_id, tender_type=CARD,
        card_token="tok_mastercard", amount=usd(2500),
    )  # fmt: skip
    with pytest.raises(grpc.aio.AioRpcError) as refused:
        await shop.orders.AddTender(other, metadata=MD, timeout=10)

    assert reused(refused), read_error(refused.value)
    assert len(shop.passed("CreatePayment")) == asked
    assert await shop.order(order_id) == before
    assert await shop.payments_of(order_id) == []

    taken = await shop.orders.AddTender(first, metadata=MD, timeout=10)
    created = [payment_pb2.CreatePaymentRequest.FromString(b)
               for b in shop.passed("CreatePayment")[asked:]]  # fmt: skip
    assert [(c.card_token, c.amount.amount) for c in created] == [("tok_visa", 1000)]
    assert taken.payment.amount.amount == 1000
    assert [p.amount.amount for p in await shop.payments_of(order_id)] == [1000]


async def test_an_order_request_id_reused_with_other_lines_is_refused(shop: Shop) -> None:
    """An order saved and then not held (inventory away): the same request id with other lines
    must not answer (and hold) the first body's order as its own."""
    request_id = str(uuid.uuid4())

    def order(quantity: int) -> order_pb2.CreateOrderRequest:
        return order_pb2.CreateOrderRequest(
            request_id=request_id,
            channel="web",
            location_id=shop.location,
            lines=[order_pb2.OrderLineRequest(sku="TEE", quantity=quantity)],
            fulfillments=[
                order_pb2.FulfillmentRequest(
                    type=order_pb2.FULFILLMENT_TYPE_PICKUP, location_id=shop.location
                )
            ],
        )

    shop.inventory.away = {"CreateReservation"}
    try:
        with pytest.raises(grpc.aio.AioRpcError) as failed:
            await shop.orders.CreateOrder(order(1), metadata=MD, timeout=10)
    finally:
        shop.inventory.away = set()
    assert failed.value.code() == grpc.StatusCode.UNAVAILABLE
    hold = stock_pb2.CreateReservationRequest.FromString(
        shop.inventory.refused["CreateReservation"][-1]
    )
    order_id = hold.request_id.split("/")[0]
    saved = await shop.order(order_id)
    assert [ln.quantity for ln in saved.lines] == [1]
    holds = len(shop.inventory.passed.get("CreateReservation", []))

    with pytest.raises(grpc.aio.AioRpcError) as refused:
        await shop.orders.CreateOrder(order(2), metadata=MD, timeout=10)

    assert reused(refused), read_error(refused.value)
    assert len(shop.inventory.passed.get("CreateReservation", [])) == holds
    assert await shop.order(order_id) == saved

    made = await shop.orders.CreateOrder(order(1), metadata=MD, timeout=10)
    assert made.order.id == order_id
    assert [ln.quantity for ln in made.order.lines] == [1]
    assert made.order.fulfillments[0].status == order_pb2.FULFILLMENT_STATUS_RESERVED


async def test_an_exchange_request_id_reused_with_another_card_is_refused(shop: Shop) -> None:
    """An exchange whose difference could not be taken (payment away): another body under its
    request id must not pay the first body's new order with its own card."""
    original = await shop.orders.Checkout(
        sale(shop, str(uuid.uuid4()), 1, "tok_visa"), metadata=MD, timeout=10
    )
    request_id = str(uuid.uuid4())

    def exchange(token: str, quantity: int) -> order_pb2.CreateExchangeRequest:
        return order_pb2.CreateExchangeRequest(
            request_id=request_id,
            order_id=original.order.id,
            lines=[order_pb2.ReturnLineRequest(line_id="L1", quantity=1, restock=True)],
            new_lines=[order_pb2.ExchangeLine(sku="TEE", quantity=quantity)],
            reason="wrong_size",
            tenders=[order_pb2.ExchangeTender(tender_type=CARD, card_token=token)],
        )

    shop.payment.away = {"CreatePayment"}
    try:
        with pytest.raises(grpc.aio.AioRpcError) as failed:
            await shop.orders.CreateExchange(exchange("tok_visa", 2), metadata=MD, timeout=20)
    finally:
        shop.payment.away = set()
    assert failed.value.code() == grpc.StatusCode.UNAVAILABLE, read_error(failed.value)
    asked = payment_pb2.CreatePaymentRequest.FromString(shop.payment.refused["CreatePayment"][-1])
    new_order = await shop.order(asked.order_id)
    assert new_order.status == order_pb2.ORDER_STATUS_PENDING_PAYMENT
    taken = len(shop.passed("CreatePayment"))

    with pytest.raises(grpc.aio.AioRpcError) as refused:
        await shop.orders.CreateExchange(exchange("tok_mastercard", 3), metadata=MD, timeout=20)

    assert reused(refused), read_error(refused.value)
    assert len(shop.passed("CreatePayment")) == taken
    assert await shop.order(asked.order_id) == new_order
    assert await shop.payments_of(asked.order_id) == []

    done = await shop.orders.CreateExchange(exchange("tok_visa", 2), metadata=MD, timeout=20)
    assert done.order.id == asked.order_id
    assert done.order.status == order_pb2.ORDER_STATUS_COMPLETED
    assert done.charged.amount == 2500
    created = [payment_pb2.CreatePaymentRequest.FromString(b)
               for b in shop.passed("CreatePayment")[taken:]]  # fmt: skip
    assert [(c.card_token, c.amount.amount) for c in created] == [("tok_visa", 2500)]


async def test_a_return_request_id_reused_with_other_units_is_refused(shop: Shop) -> None:
    """A return planned, then its refund not asked (payment away): another body under its
    request id must not finish the first body's return as its own."""
    original = await shop.orders.Checkout(
        sale(shop, str(uuid.uuid4()), 2, "tok_visa"), metadata=MD, timeout=10
    )
    request_id = str(uuid.uuid4())

    def back(quantity: int) -> order_pb2.CreateReturnRequest:
        return order_pb2.CreateReturnRequest(
            request_id=request_id,
            order_id=original.order.id,
            lines=[order_pb2.ReturnLineRequest(line_id="L1", quantity=quantity, restock=True)],
            reason="unwanted",
        )

    shop.payment.away = {"CreateRefund"}
    try:
        with pytest.raises(grpc.aio.AioRpcError) as failed:
            await shop.orders.CreateReturn(back(1), metadata=MD, timeout=20)
    finally:
        shop.payment.away = set()
    assert failed.value.code() == grpc.StatusCode.UNAVAILABLE, read_error(failed.value)
    refunds = len(shop.passed("CreateRefund"))

    with pytest.raises(grpc.aio.AioRpcError) as refused:
        await shop.orders.CreateReturn(back(2), metadata=MD, timeout=20)

    assert reused(refused), read_error(refused.value)
    assert len(shop.passed("CreateRefund")) == refunds
    listed = await shop.orders.ListReturns(
        order_pb2.ListReturnsRequest(order_id=original.order.id), metadata=MD, timeout=5
    )
    assert [r.status for r in listed.returns] == ["pending"]

    done = await shop.orders.CreateReturn(back(1), metadata=MD, timeout=20)
    assert done.order_return.status == "completed"
    assert [ln.quantity for ln in done.order_return.lines] == [1]
    assert done.order_return.amount.amount == 2500
