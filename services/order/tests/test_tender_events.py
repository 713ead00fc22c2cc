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
    payment service, which does it, and its answer is lost (UNAVAILABLE to the caller). So is
    one of a method for one order (`lose_for`: (method, order id) to how many of its calls
    naming that order pass first), whatever the resumer asks for other orders meanwhile."""

    def __init__(self, target: grpc.aio.Channel) -> None:
        self.target = target
        self.lose: set[str] = set()
        self.lose_for: dict[tuple[str, str], int] = {}

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
            for (lost, order_id), passing in list(self.lose_for.items()):
                if lost == name and order_id.encode() in request:
                    if passing:
                        self.lose_for[lost, order_id] = passing - 1
                        continue
                    del self.lose_for[lost, order_id]
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

    async def create(self, kind: Any = order_pb2.FULFILLMENT_TYPE_PICKUP) -> order_pb2.Order:
        """A web order of one T-shirt (25.00, no tax) for pickup (or as `kind` says), its
        stock held."""
        created = await self.orders.CreateOrder(
            order_pb2.CreateOrderRequest(
                request_id=str(uuid.uuid4()),
                channel="web",
                location_id=self.location,
                lines=[order_pb2.OrderLineRequest(sku="TEE", quantity=1)],
                fulfillments=[order_pb2.FulfillmentRequest(type=kind, location_id=self.location)],
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

    async def confirm(self, order_id: str) -> order_pb2.Order:
        confirmed = await self.orders.ConfirmOrder(
            order_pb2.ConfirmOrderRequest(request_id=str(uuid.uuid4()), order_id=order_id),
            metadata=MERCHANT,
            timeout=10,
        )
        return confirmed.order

    def sql(self, query: str, *args: Any) -> list[tuple[Any, ...]]:
        with psycopg.connect(self.order_db) as conn:
            return list(conn.execute(query, args).fetchall())  # type: ignore[arg-type]

    def events(self, order_id: str) -> list[tuple[Any, order_pb2.Order]]:
        """The order's events written so far (the outbox, any but `order_returned`), in
        order: each one's kind (its message class) and the order it carries."""
        rows = self.sql(
            "SELECT event_type, payload FROM outbox WHERE position(%s::bytea in payload) > 0 "
            "ORDER BY seq",
            order_id.encode(),
        )
        found: list[tuple[Any, order_pb2.Order]] = []
        for event_type, payload in rows:
            kind = ORDER_EVENTS.get(event_type)
            if kind is not None and kind is not events_pb2.OrderReturned:
                message: Any = kind.FromString(bytes(payload))
                if message.order.id == order_id:
                    found.append((kind, message.order))
        return found

    def announced(self, order_id: str) -> order_pb2.Order | None:
        """The order as its last event written carries it, or None while it has none."""
        events = self.events(order_id)
        return events[-1][1] if events else None


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


async def test_a_tenders_record_and_its_answer_are_each_announced_once(shop: Shop) -> None:
    """`AddTender` writes its tender on the order (a new version, before the payment service
    is asked, so a crash leaves it for the resumer), then the answer (another). Each version
    is announced: the order's events carry every version from its announcement (its
    `order.created`, once its stock was held) to the last, each once. A retry of the request
    is answered as it was, and writes nothing: no new version, no event. Before, the version
    that recorded the tender had no event (nor what its read learnt of the order's payments,
    until the answer came)."""
    order = await shop.create()
    request = order_pb2.AddTenderRequest(
        request_id=str(uuid.uuid4()), order_id=order.id, tender_type=CARD, card_token="tok_visa"
    )
    taken = await shop.orders.AddTender(request, metadata=MERCHANT, timeout=10)
    assert taken.order.version == order.version + 2  # the tender recorded, then its answer

    events = shop.events(order.id)
    assert [o.version for _, o in events] == list(range(order.version, taken.order.version + 1))
    recorded = events[-2][1]
    assert recorded.status == order_pb2.ORDER_STATUS_PENDING_PAYMENT
    assert (recorded.paid.amount, list(recorded.payment_ids)) == (0, [])  # not answered yet
    _announced_as_get_answers(shop, taken.order)

    again = await shop.orders.AddTender(request, metadata=MERCHANT, timeout=10)
    assert again.order == taken.order and again.payment.id == taken.payment.id
    assert (await shop.order(order.id)).version == taken.order.version
    assert shop.events(order.id) == events


async def test_a_void_the_resumer_learns_of_an_order_being_confirmed_is_announced(
    shop: Shop,
) -> None:
    """A web order paid by card is confirmed (`ConfirmOrder`: the confirmation asked, a new
    version) and the answer of the payment service's read of the card's window is lost: the
    confirmation stops there (503), for the resumer to take further. Meanwhile the card is
    voided through the payments API, which the order hears of by no event here. The resumer
    learns the void (`paid` 0, the total due again) and writes it: that version is announced,
    once, and then the order is cancelled unpaid (`abandoned`). Before, what the resumer
    learnt of the tenders of an order whose confirmation was asked was written with no event,
    its end left to tell it."""
    order = await shop.create()
    taken = await shop.tender(order.id, card_token="tok_visa")
    # The confirmation reads the payments before its claim, then the card's window.
    shop.relay.lose_for["GetOrderPayments", order.id] = 1
    with pytest.raises(grpc.aio.AioRpcError) as err:
        await shop.confirm(order.id)
    assert err.value.code() == grpc.StatusCode.UNAVAILABLE
    await shop.payments.VoidPayment(
        payment_pb2.VoidPaymentRequest(request_id=str(uuid.uuid4()), payment_id=taken.payment.id),
        metadata=MERCHANT,
        timeout=10,
    )

    ended = await polled(
        lambda: shop.order(order.id),
        lambda o: o.status == order_pb2.ORDER_STATUS_CANCELLED,
        limit=30,
    )

    assert (ended.status, ended.cancel_reason) == (order_pb2.ORDER_STATUS_CANCELLED, "abandoned")
    since = [(kind, o) for kind, o in shop.events(order.id) if o.version > taken.order.version]
    learnt = [o for _, o in since if o.status == order_pb2.ORDER_STATUS_PENDING_PAYMENT]
    assert [(o.paid.amount, list(o.payment_ids)) for o in learnt] == [(0, [taken.payment.id])]
    assert since[0][0] is events_pb2.OrderUpdated
    assert since[-1][0] is events_pb2.OrderCancelled
    told = [(kind, o.version) for kind, o in since]
    assert len(set(told)) == len(told)  # nothing told twice


async def test_an_exchanges_card_settled_is_announced_when_the_resumer_learns_it(
    shop: Shop,
) -> None:
    """A T-shirt bought on the web (handed over in store) is exchanged for two; the
    difference is on a card whose answer is lost (`tok_timeout`: 503 `payment_pending`, the
    new order announced with the card `pending`). The payment service's reconciler captures
    it, and the resumer, the till gone, learns it (`paid` the new total: the credit and the
    card) and finishes the exchange. The version that wrote what it learnt is announced once,
    before the new order's confirmation. Before, the new order's confirmation having been
    asked, that version had no event."""
    original = await shop.create(order_pb2.FULFILLMENT_TYPE_IN_STORE)
    await shop.tender(original.id, card_token="tok_visa")
    await shop.confirm(original.id)
    request = order_pb2.CreateExchangeRequest(
        request_id=str(uuid.uuid4()),
        order_id=original.id,
        lines=[order_pb2.ReturnLineRequest(line_id="L1", quantity=1, restock=True)],
        new_lines=[order_pb2.ExchangeLine(sku="TEE", quantity=2)],
        reason="wrong_size",
        tenders=[order_pb2.ExchangeTender(tender_type=CARD, card_token="tok_timeout")],
    )
    with pytest.raises(grpc.aio.AioRpcError) as err:
        await shop.orders.CreateExchange(request, metadata=MERCHANT, timeout=20)
    assert err.value.code() == grpc.StatusCode.UNAVAILABLE
    ((new_id,),) = shop.sql("SELECT id FROM orders WHERE saga->>'exchange_of' = %s", original.id)
    pending = await shop.order(new_id)
    assert pending.paid.amount == 2500 and len(pending.payment_ids) == 1  # the credit only
    _announced_as_get_answers(shop, pending)

    sold = await polled(
        lambda: shop.order(new_id),
        lambda o: o.status == order_pb2.ORDER_STATUS_COMPLETED,
        limit=30,
    )

    assert sold.status == order_pb2.ORDER_STATUS_COMPLETED, sold
    since = [(kind, o) for kind, o in shop.events(new_id) if o.version > pending.version]
    learnt = [o for _, o in since if o.status == order_pb2.ORDER_STATUS_PENDING_PAYMENT]
    assert [(o.paid.amount, list(o.payment_ids)) for o in learnt] == [
        (5000, list(pending.payment_ids))
    ]
    assert since[0][0] is events_pb2.OrderUpdated
    assert events_pb2.OrderConfirmed in [kind for kind, _ in since]
    told = [(kind, o.version) for kind, o in since]
    assert len(set(told)) == len(told)  # nothing told twice


async def test_a_register_sales_card_settled_is_not_announced_before_the_sale(
    shop: Shop,
) -> None:
    """A register sale (`Checkout`) is announced at its end only: partners hear of it
    confirmed (or cancelled). Its card's answer lost (`tok_timeout`: 503 `payment_pending`),
    the resumer learns it captured and confirms the sale: what it learnt is written (a new
    version) but not announced, the sale's first event being its confirmation."""
    request = order_pb2.CheckoutRequest(
        request_id=str(uuid.uuid4()),
        location_id=shop.location,
        lines=[order_pb2.CheckoutLine(sku="TEE", quantity=1)],
        tender_type=CARD,
        card_token="tok_timeout",
    )
    with pytest.raises(grpc.aio.AioRpcError) as err:
        await shop.orders.Checkout(request, metadata=MERCHANT, timeout=20)
    assert err.value.code() == grpc.StatusCode.UNAVAILABLE
    ((sale_id,),) = shop.sql(
        "SELECT id FROM orders WHERE saga->'tenders'->0->>'asked_by' = %s", request.request_id
    )
    assert shop.events(sale_id) == []

    sold = await polled(
        lambda: shop.order(sale_id),
        lambda o: o.status == order_pb2.ORDER_STATUS_COMPLETED,
        limit=30,
    )

    assert sold.status == order_pb2.ORDER_STATUS_COMPLETED, sold
    kinds = [kind for kind, _ in shop.events(sale_id)]
    assert kinds[0] is events_pb2.OrderConfirmed, kinds
    assert events_pb2.OrderUpdated not in kinds


def _announced_as_get_answers(shop: Shop, order: order_pb2.Order) -> None:
    """The order's last event carries `order` (as `GetOrder` answered it): its version first,
    then all of it."""
    announced = shop.announced(order.id)
    assert announced is not None
    assert (announced.version, announced.paid.amount, list(announced.payment_ids)) == (
        order.version, order.paid.amount, list(order.payment_ids),
    )  # fmt: skip
    assert announced == order
