"""What an order waiting for payment learns of its tenders, announced at the version it made:
real PostgreSQL, NATS JetStream, and the inventory, payment and order services in this process.

The order service hears nothing from the payment service's events here (the payment service
publishes to a NATS server of its own): what the order learns of its payments it learns by
asking them (a tender's read, the resumer), as it does when their events are late. Between the
two services sits a relay that can lose the answer of one call (the payment made, its answer
never back). The order's events are read from its outbox: after each change, the last one of
the order carries the order as `GetOrder` answers it then.
"""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack
from dataclasses import dataclass
from typing import Any

import grpc
import psycopg
import pytest
import pytest_asyncio
from order_shop import serve_order, serve_relay, tee_shop

from pos.order.v1 import events_pb2, order_pb2, order_pb2_grpc
from pos.payment.v1 import payment_pb2, payment_pb2_grpc
from pos_devstack.testing import Infra, polled, serve_in_process
from pos_order.adapters.events import ORDER_EVENTS

pytestmark = pytest.mark.asyncio(loop_scope="session")

MERCHANT = (("x-merchant-id", "mer_tender_events"),)
CARD = payment_pb2.TENDER_TYPE_CARD


class LosingRelay(grpc.GenericRpcHandler):
    """Every payment call passed through; one call of a method named in `lose` reaches the
    payment service, which does it, and its answer is lost (UNAVAILABLE to the caller)."""

    def __init__(self, target: grpc.aio.Channel) -> None:
        self.target = target
        self.lose: set[str] = set()

    def service(self, details: grpc.HandlerCallDetails) -> grpc.RpcMethodHandler:
        method: str = details.method  # type: ignore[attr-defined]

        async def forward(request: bytes, context: grpc.aio.ServicerContext) -> bytes:
            name = method.rsplit("/", 1)[1]
            metadata = [(k, v) for k, v in context.invocation_metadata() or () if k[:2] == "x-"]
            try:
                answer: bytes = await self.target.unary_unary(method)(
                    request, metadata=metadata, timeout=context.time_remaining()
                )
            except grpc.aio.AioRpcError as err:
                await context.abort(
                    err.code(), err.details() or "", tuple(err.trailing_metadata() or ())
                )
            if name in self.lose:
                self.lose.discard(name)
                await context.abort(grpc.StatusCode.UNAVAILABLE, "connection reset")
            return answer

        return grpc.unary_unary_rpc_method_handler(forward)  # type: ignore[arg-type]


@dataclass
class Shop:
    orders: order_pb2_grpc.OrderServiceStub
    payments: payment_pb2_grpc.PaymentServiceStub
    relay: LosingRelay
    location: str
    order_db: str

    async def order(self, order_id: str) -> order_pb2.Order:
        got = await self.orders.GetOrder(
            order_pb2.GetOrderRequest(id=order_id), metadata=MERCHANT, timeout=5
        )
        return got.order

    async def create(self) -> order_pb2.Order:
        """A web order of one T-shirt (25.00, no tax) for pickup, its stock held."""
        created = await self.orders.CreateOrder(
            order_pb2.CreateOrderRequest(
                request_id=str(uuid.uuid4()),
                channel="web",
                location_id=self.location,
                lines=[order_pb2.OrderLineRequest(sku="TEE", quantity=1)],
                fulfillments=[
                    order_pb2.FulfillmentRequest(
                        type=order_pb2.FULFILLMENT_TYPE_PICKUP, location_id=self.location
                    )
                ],
            ),
            metadata=MERCHANT,
            timeout=10,
        )
        return created.order

    async def tender(self, order_id: str, **fields: Any) -> order_pb2.AddTenderResponse:
        return await self.orders.AddTender(  # type: ignore[no-any-return]
            order_pb2.AddTenderRequest(
                request_id=str(uuid.uuid4()), order_id=order_id, tender_type=CARD, **fields
            ),
            metadata=MERCHANT,
            timeout=10,
        )

    def announced(self, order_id: str) -> order_pb2.Order | None:
        """The order as its last event written (the outbox, any but `order_returned`) carries
        it, or None while it has none."""
        with psycopg.connect(self.order_db) as conn:
            rows = conn.execute(
                "SELECT event_type, payload FROM outbox WHERE position(%s::bytea in payload) > 0 "
                "ORDER BY seq",
                (order_id.encode(),),
            ).fetchall()
        last = None
        for event_type, payload in rows:
            kind = ORDER_EVENTS.get(event_type)
            if kind is not None and kind is not events_pb2.OrderReturned:
                message: Any = kind.FromString(bytes(payload))
                if message.order.id == order_id:
                    last = message.order
        return last


@pytest_asyncio.fixture(loop_scope="session", scope="module")
async def shop(infra: Infra) -> AsyncIterator[Shop]:
    orders_nats, payments_nats = infra.new_nats(), infra.new_nats()
    try:
        async with AsyncExitStack() as stack:
            inventory = await stack.enter_async_context(
                serve_in_process("inventory", infra, orders_nats.url)
            )
            # Its reconciler looks a lost answer up 2 s after the call (not while it may
            # still be at the processor), at its next sweep.
            payment = await stack.enter_async_context(
                serve_in_process(
                    "payment",
                    infra,
                    payments_nats.url,
                    reconcile_after_seconds=2.0,
                    sweep_interval_seconds=0.2,
                )
            )
            relay = LosingRelay(payment.channel)
            relay_port = await serve_relay(stack, relay)
            # The resumer takes over an order left for 3 s, looking every 0.2 s.
            order = await stack.enter_async_context(
                serve_order(
                    infra,
                    orders_nats.url,
                    inventory.port,
                    relay_port,
                    payment_timeout_seconds=2.0,
                    saga_abandon_seconds=3.0,
                    saga_sweep_seconds=0.2,
                )
            )
            location = await tee_shop(inventory.channel, MERCHANT[0][1], stock=100)
            yield Shop(
                order_pb2_grpc.OrderServiceStub(order.channel),
                payment_pb2_grpc.PaymentServiceStub(payment.channel),
                relay,
                location,
                order.database_url,
            )
    finally:
        payments_nats.stop()
        orders_nats.stop()


async def test_a_void_learnt_by_a_tender_then_refused_is_announced(shop: Shop) -> None:
    """The order's card is voided through the payments API (`POST /v1/payments/{id}/void`)
    and the order has not heard of it when the next tender comes: that tender's read learns of
    the void (`paid` back to 0, the balance due again) and the tender is refused (a token the
    processor never issued). The version that wrote the void is announced: the order's last
    event carries `paid` 0, the order as `GetOrder` answers it. Before, the void was written
    with the tender and no event said so, and the void's own event, heard later, found it
    counted: the feed kept the order paid in full."""
    order = await shop.create()
    taken = await shop.tender(order.id, card_token="tok_visa")
    assert taken.order.paid.amount == taken.order.total.amount
    _announced_as_get_answers(shop, taken.order)
    await shop.payments.VoidPayment(
        payment_pb2.VoidPaymentRequest(request_id=str(uuid.uuid4()), payment_id=taken.payment.id),
        metadata=MERCHANT,
        timeout=10,
    )

    with pytest.raises(grpc.aio.AioRpcError) as err:
        await shop.tender(order.id, card_token="tok_bogus")

    assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    after = await shop.order(order.id)
    assert after.paid.amount == 0 and after.version > taken.order.version
    _announced_as_get_answers(shop, after)


@pytest.mark.parametrize("token", ["tok_visa", "tok_declined"], ids=["approved", "declined"])
async def test_a_tender_whose_answer_was_lost_is_announced_once_the_resumer_learns_it(
    shop: Shop, token: str
) -> None:
    """The payment service took the tender (approved or declined) and its answer was lost on
    the way back: the tender's request fails, its tender still awaited. The resumer, its
    driver gone, finds the payment and records it (`payment_ids`, and `paid` for an approved
    card): that version is announced, the order's last event carrying it as `GetOrder`
    answers it. Before, the resumer wrote it with no event."""
    order = await shop.create()
    shop.relay.lose.add("CreatePayment")
    with pytest.raises(grpc.aio.AioRpcError) as err:
        await shop.tender(order.id, card_token=token)
    assert err.value.code() == grpc.StatusCode.UNAVAILABLE

    learnt = await polled(lambda: shop.order(order.id), lambda o: len(o.payment_ids) == 1, limit=30)

    assert len(learnt.payment_ids) == 1, learnt
    assert learnt.status == order_pb2.ORDER_STATUS_PENDING_PAYMENT
    assert learnt.paid.amount == (learnt.total.amount if token == "tok_visa" else 0)
    _announced_as_get_answers(shop, learnt)


async def test_a_pending_tender_settled_is_announced_when_the_order_learns_it(
    shop: Shop,
) -> None:
    """`tok_timeout`: approved at the processor, its answer lost; the tender is answered
    `pending` (announced so), and the payment service's reconciler settles it. The resumer
    learns it (`paid` the total): that version is announced then, not with the order's next
    change (its confirmation, another tender), which may never come."""
    order = await shop.create()
    tendered = await shop.tender(order.id, card_token="tok_timeout")
    assert tendered.payment.status == payment_pb2.PAYMENT_STATUS_PENDING
    _announced_as_get_answers(shop, tendered.order)

    learnt = await polled(
        lambda: shop.order(order.id), lambda o: o.paid.amount == o.total.amount, limit=30
    )

    assert learnt.paid.amount == learnt.total.amount, learnt
    assert learnt.status == order_pb2.ORDER_STATUS_PENDING_PAYMENT
    _announced_as_get_answers(shop, learnt)


def _announced_as_get_answers(shop: Shop, order: order_pb2.Order) -> None:
    """The order's last event carries `order` (as `GetOrder` answered it): its version first,
    then all of it."""
    announced = shop.announced(order.id)
    assert announced is not None
    assert (announced.version, announced.paid.amount, list(announced.payment_ids)) == (
        order.version, order.paid.amount, list(order.payment_ids),
    )  # fmt: skip
    assert announced == order
