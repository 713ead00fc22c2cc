"""A cancel beside a fulfilment step or a tender of the same order, and a tender the payment
service refuses: real PostgreSQL, NATS JetStream, and the inventory, payment and order services
in this process.

Between the order and payment services sits a relay that passes every call through, except the
one call a test gates: that call waits at the relay (before it reaches the payment service, or
with its answer held back) until the test has sent the other request, so each interleaving is
run on purpose, not left to timing. After each one, exactly one of the two requests wins, and
no payment of a cancelled order holds money: every authorisation voided, every capture
refunded.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import AsyncExitStack, asynccontextmanager
from dataclasses import dataclass, field
from typing import Any

import grpc
import psycopg
import pytest
import pytest_asyncio
from order_shop import serve_order, serve_relay, tee_shop

from pos.common.v1 import money_pb2
from pos.inventory.v1 import inventory_pb2_grpc
from pos.order.v1 import order_pb2, order_pb2_grpc
from pos.payment.v1 import payment_pb2, payment_pb2_grpc, shifts_pb2, shifts_pb2_grpc
from pos_devstack.testing import Infra, serve_in_process
from pos_kit.grpc_client import read_error

pytestmark = pytest.mark.asyncio(loop_scope="session")

MERCHANT = (("x-merchant-id", "mer_races"),)
CARD = payment_pb2.TENDER_TYPE_CARD
CASH = payment_pb2.TENDER_TYPE_CASH


@dataclass
class Gate:
    """One call of a method held at the relay until `opened`; `after`: its answer is held (the
    payment service has done it), else the call itself (it has not reached the service)."""

    after: bool
    arrived: asyncio.Event = field(default_factory=asyncio.Event)
    opened: asyncio.Event = field(default_factory=asyncio.Event)


class Relay(grpc.GenericRpcHandler):
    """Every payment call passed through as bytes, with its caller's metadata and deadline."""

    def __init__(self, target: grpc.aio.Channel) -> None:
        self.target = target
        self.gates: dict[str, Gate] = {}

    def gate(self, method: str, after: bool = False) -> Gate:
        self.gates[method] = gate = Gate(after)
        return gate

    def service(self, details: grpc.HandlerCallDetails) -> grpc.RpcMethodHandler:
        method: str = details.method  # type: ignore[attr-defined]

        async def forward(request: bytes, context: grpc.aio.ServicerContext) -> bytes:
            gate = self.gates.pop(method.rsplit("/", 1)[1], None)
            if gate is not None and not gate.after:
                gate.arrived.set()
                await gate.opened.wait()
            metadata = [(k, v) for k, v in context.invocation_metadata() or () if k[:2] == "x-"]
            try:
                answer: bytes = await self.target.unary_unary(method)(
                    request, metadata=metadata, timeout=context.time_remaining()
                )
            except grpc.aio.AioRpcError as err:
                await context.abort(
                    err.code(), err.details() or "", tuple(err.trailing_metadata() or ())
                )
            if gate is not None and gate.after:
                gate.arrived.set()
                await gate.opened.wait()
            return answer

        return grpc.unary_unary_rpc_method_handler(forward)  # type: ignore[arg-type]


@dataclass
class Shop:
    orders: order_pb2_grpc.OrderServiceStub
    payments: payment_pb2_grpc.PaymentServiceStub
    relay: Relay
    location: str
    shifts: shifts_pb2_grpc.ShiftServiceStub
    order_db: str
    payment_db: str = ""
    inventory: inventory_pb2_grpc.InventoryServiceStub | None = None

    async def order(self, order_id: str) -> order_pb2.Order:
        got = await self.orders.GetOrder(
            order_pb2.GetOrderRequest(id=order_id), metadata=MERCHANT, timeout=5
        )
        return got.order

    async def create(self, kind: int) -> order_pb2.Order:
        """A web order of one T-shirt (25.00, no tax), held for pickup or shipment."""
        fulfillment = order_pb2.FulfillmentRequest(type=kind, location_id=self.location)
        if kind == order_pb2.FULFILLMENT_TYPE_SHIPMENT:
            fulfillment.ship_to = "1 Main St, Springfield"
        created = await self.orders.CreateOrder(
            order_pb2.CreateOrderRequest(
                request_id=str(uuid.uuid4()),
                channel="web",
                location_id=self.location,
                lines=[order_pb2.OrderLineRequest(sku="TEE", quantity=1)],
                fulfillments=[fulfillment],
            ),
            metadata=MERCHANT,
            timeout=10,
        )
        return created.order

    async def tender(self, order_id: str, **fields: Any) -> order_pb2.AddTenderResponse:
        fields.setdefault("request_id", str(uuid.uuid4()))
        return await self.orders.AddTender(  # type: ignore[no-any-return]
            order_pb2.AddTenderRequest(order_id=order_id, **fields), metadata=MERCHANT, timeout=10
        )

    async def confirmed(self, kind: int) -> order_pb2.Order:
        """Paid by card and confirmed: a pickup captures at hand-over, a shipment at shipped."""
        order = await self.create(kind)
        await self.tender(order.id, tender_type=CARD, card_token="tok_visa")
        answer = await self.orders.ConfirmOrder(
            order_pb2.ConfirmOrderRequest(request_id=str(uuid.uuid4()), order_id=order.id),
            metadata=MERCHANT,
            timeout=10,
        )
        assert answer.order.status == order_pb2.ORDER_STATUS_CONFIRMED
        return answer.order

    async def cancel(self, order_id: str, at: Any = MERCHANT) -> order_pb2.Order:
        answer = await self.orders.CancelOrder(
            order_pb2.CancelOrderRequest(request_id=str(uuid.uuid4()), order_id=order_id),
            metadata=at,
            timeout=10,
        )
        return answer.order

    async def ready(self, order: order_pb2.Order) -> order_pb2.Order:
        """The step before the hand-over (ready for pickup) or shipment (picked): one at a
        time, as the state machines go; it captures nothing."""
        f = order.fulfillments[0]
        shipment = f.type == order_pb2.FULFILLMENT_TYPE_SHIPMENT
        answer = await self.orders.UpdateFulfillment(
            order_pb2.UpdateFulfillmentRequest(
                request_id=str(uuid.uuid4()),
                order_id=order.id,
                fulfillment_id=f.id,
                status=order_pb2.FULFILLMENT_STATUS_PICKED
                if shipment
                else order_pb2.FULFILLMENT_STATUS_READY_FOR_PICKUP,
            ),
            metadata=MERCHANT,
            timeout=10,
        )
        return answer.order

    async def step(self, order: order_pb2.Order) -> order_pb2.Order:
        """The fulfilment's hand-over (pickup) or shipment (shipment)."""
        f = order.fulfillments[0]
        shipment = f.type == order_pb2.FULFILLMENT_TYPE_SHIPMENT
        answer = await self.orders.UpdateFulfillment(
            order_pb2.UpdateFulfillmentRequest(
                request_id=str(uuid.uuid4()),
                order_id=order.id,
                fulfillment_id=f.id,
                status=order_pb2.FULFILLMENT_STATUS_SHIPPED
                if shipment
                else order_pb2.FULFILLMENT_STATUS_PICKED_UP,
                carrier="UPS" if shipment else "",
                tracking_number="1Z999" if shipment else "",
            ),
            metadata=MERCHANT,
            timeout=10,
        )
        return answer.order

    async def payments_of(self, order_id: str) -> list[payment_pb2.Payment]:
        try:
            found = await self.payments.GetOrderPayments(
                payment_pb2.GetOrderPaymentsRequest(order_id=order_id), metadata=MERCHANT, timeout=5
            )
        except grpc.aio.AioRpcError as err:
            assert err.code() == grpc.StatusCode.NOT_FOUND  # no payment for it
            return []
        return list(found.payments)

    async def money_held(self, order_id: str) -> int:
        """What the order's payments still hold: captured and not refunded, plus authorised and
        neither captured nor voided."""
        held = 0
        for p in await self.payments_of(order_id):
            held += p.captured.amount - p.refunded.amount
            if p.status == payment_pb2.PAYMENT_STATUS_AUTHORIZED:
                held += p.amount.amount - p.captured.amount
        return held


@asynccontextmanager
async def relayed_shop(infra: Infra, **order_settings: Any) -> AsyncIterator[Shop]:
    """Inventory, payment and order in this process, the order service's payment calls through
    a relay; `order_settings` are the order service's, beside the pickups' hour."""
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
            relay_port = await serve_relay(stack, relay)
            # Pickups wait an hour at most, well within a card's authorisation: captured at
            # hand-over, not at confirmation.
            order = await stack.enter_async_context(
                serve_order(
                    infra,
                    server.url,
                    inventory.port,
                    relay_port,
                    pickup_expiry_seconds=3600,
                    **order_settings,
                )
            )
            location = await tee_shop(inventory.channel, MERCHANT[0][1], stock=1000)
            yield Shop(
                order_pb2_grpc.OrderServiceStub(order.channel),
                payment_pb2_grpc.PaymentServiceStub(payment.channel),
                relay,
                location,
                shifts_pb2_grpc.ShiftServiceStub(payment.channel),
                order.database_url,
                payment.database_url,
                inventory_pb2_grpc.InventoryServiceStub(inventory.channel),
            )
    finally:
        server.stop()


@pytest_asyncio.fixture(loop_scope="session", scope="module")
async def shop(infra: Infra) -> AsyncIterator[Shop]:
    async with relayed_shop(infra) as found:
        yield found


async def _beside(
    gate: Gate, first: Awaitable[Any], second: Callable[[], Awaitable[Any]]
) -> tuple[Any, Any]:
    """`first` runs until its gated call is at the relay; `second` runs to its end meanwhile;
    then the gate opens and `first` ends. Both outcomes (an answer or the error)."""
    running = asyncio.ensure_future(first)
    try:
        arrived = asyncio.ensure_future(gate.arrived.wait())
        await asyncio.wait([running, arrived], return_when=asyncio.FIRST_COMPLETED)
        assert gate.arrived.is_set(), running.exception() if running.done() else "?"
        try:
            other: Any = await second()
        except grpc.aio.AioRpcError as err:
            other = err
    finally:
        gate.opened.set()
    try:
        mine: Any = await running
    except grpc.aio.AioRpcError as err:
        mine = err
    return mine, other


def _refused(outcome: Any, reason: str) -> None:
    assert isinstance(outcome, grpc.aio.AioRpcError), f"not refused: {outcome}"
    assert outcome.code() == grpc.StatusCode.FAILED_PRECONDITION, outcome
    assert read_error(outcome).reason == reason, read_error(outcome)


KINDS = {
    "pickup": order_pb2.FULFILLMENT_TYPE_PICKUP,
    "shipment": order_pb2.FULFILLMENT_TYPE_SHIPMENT,
}


@pytest.mark.parametrize("kind", KINDS)
async def test_a_cancel_while_a_fulfilment_step_captures_is_refused(shop: Shop, kind: str) -> None:
    """The step's capture is at the relay when the cancel comes: the step decided first, so
    the cancel is a 409 and the goods leave with their share captured."""
    order = await shop.ready(await shop.confirmed(KINDS[kind]))
    gate = shop.relay.gate("CapturePayment")

    stepped, cancelled = await _beside(gate, shop.step(order), lambda: shop.cancel(order.id))

    _refused(cancelled, "fulfillment_in_progress")
    assert isinstance(stepped, order_pb2.Order), stepped
    after = await shop.order(order.id)
    f = after.fulfillments[0]
    assert f.status in (
        order_pb2.FULFILLMENT_STATUS_SHIPPED,
        order_pb2.FULFILLMENT_STATUS_PICKED_UP,
    )
    assert after.status in (order_pb2.ORDER_STATUS_CONFIRMED, order_pb2.ORDER_STATUS_COMPLETED)
    assert f.captured.amount == f.amount.amount == after.total.amount
    (payment,) = await shop.payments_of(order.id)
    assert (payment.captured.amount, payment.refunded.amount) == (after.total.amount, 0)
    # Gone (the pickup completed the order): a cancel now is refused for good.
    with pytest.raises(grpc.aio.AioRpcError) as err:
        await shop.cancel(order.id)
    _refused(err.value, "order_final" if kind == "pickup" else "order_fulfilled")


@pytest.mark.parametrize("kind", KINDS)
async def test_a_fulfilment_step_while_the_cancel_gives_back_the_money_is_refused(
    shop: Shop, kind: str
) -> None:
    """The cancel's void is at the relay when the step comes: the cancel began first, so the
    step is a 409; nothing is captured, the authorisation is voided, the unit back in stock."""
    order = await shop.ready(await shop.confirmed(KINDS[kind]))
    gate = shop.relay.gate("VoidPayment")

    cancelled, stepped = await _beside(gate, shop.cancel(order.id), lambda: shop.step(order))

    _refused(stepped, "order_not_confirmed")
    assert isinstance(cancelled, order_pb2.Order), cancelled
    after = await shop.order(order.id)
    assert after.status == order_pb2.ORDER_STATUS_CANCELLED
    assert after.fulfillments[0].status == order_pb2.FULFILLMENT_STATUS_CANCELLED
    assert [t.status for t in after.timeline][-2:] == [
        "cancelled",
        f"{after.fulfillments[0].id}:cancelled",
    ]
    (payment,) = await shop.payments_of(order.id)
    assert payment.status == payment_pb2.PAYMENT_STATUS_VOIDED
    assert payment.captured.amount == 0
    assert await shop.money_held(order.id) == 0


TENDERS = {
    "card": {"tender_type": CARD, "card_token": "tok_visa"},
    "cash": {
        "tender_type": CASH,
        "cash_tendered": money_pb2.Money(amount=3000, currency="USD"),
    },
}


@pytest.mark.parametrize("held", ["call", "answer"])
@pytest.mark.parametrize("tender", TENDERS)
async def test_a_tender_beside_a_cancel_holds_no_money_on_the_cancelled_order(
    shop: Shop, tender: str, held: str
) -> None:
    """The tender is at the relay (its payment not made yet, or made with its answer held)
    when the cancel comes and ends: the cancel wins, and the tender's payment, made after the
    cancel looked for the order's payments or not, is voided or refunded; the tender is a 409."""
    order = await shop.create(KINDS["pickup"])
    gate = shop.relay.gate("CreatePayment", after=held == "answer")

    tendered, cancelled = await _beside(
        gate, shop.tender(order.id, **TENDERS[tender]), lambda: shop.cancel(order.id)
    )

    assert isinstance(cancelled, order_pb2.Order), cancelled
    assert cancelled.status == order_pb2.ORDER_STATUS_CANCELLED
    (payment,) = await shop.payments_of(order.id)
    assert await shop.money_held(order.id) == 0, payment
    _refused(tendered, "order_not_pending")
    after = await shop.order(order.id)
    assert after.status == order_pb2.ORDER_STATUS_CANCELLED
    assert list(after.payment_ids) == [payment.id]
    assert after.paid.amount == 0


@pytest.mark.parametrize(
    "refused",
    [{"tender_type": CARD}, {"tender_type": CARD, "card_token": "tok_bogus"}],
    ids=["no_token", "unknown_token"],
)
async def test_a_refused_tender_holds_up_nothing(shop: Shop, refused: dict[str, Any]) -> None:
    """A tender the payment service refuses (400) took nothing: the next one, or the same
    request corrected, is taken at once, and the order is confirmed."""
    order = await shop.create(KINDS["pickup"])
    request_id = str(uuid.uuid4())
    with pytest.raises(grpc.aio.AioRpcError) as err:
        await shop.tender(order.id, request_id=request_id, **refused)
    assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    with pytest.raises(grpc.aio.AioRpcError) as err:
        await shop.tender(order.id, **refused)  # again, under another key
    assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert await shop.payments_of(order.id) == []

    taken = await shop.tender(
        order.id, request_id=request_id, tender_type=CARD, card_token="tok_visa"
    )

    assert taken.payment.status == payment_pb2.PAYMENT_STATUS_AUTHORIZED
    assert taken.order.paid.amount == taken.order.total.amount
    assert list(taken.order.payment_ids) == [taken.payment.id]
    confirmed = await shop.orders.ConfirmOrder(
        order_pb2.ConfirmOrderRequest(request_id=str(uuid.uuid4()), order_id=order.id),
        metadata=MERCHANT,
        timeout=10,
    )
    assert confirmed.order.status == order_pb2.ORDER_STATUS_CONFIRMED


async def test_a_tender_the_processor_never_had_holds_up_nothing(shop: Shop) -> None:
    """`tok_processing_error`: the processor is out of reach, a 503 `processor_unavailable`;
    the payment service made no payment (it forgets it). The tender is awaited no more: the
    next one, a gift card's or another card's, is taken at once (it was a 409
    `payment_pending` until the resumer gave the tender up, about a minute later). Its retry
    under the same request id asks the processor again, and only one payment is ever made."""
    order = await shop.create(KINDS["pickup"])
    request_id = str(uuid.uuid4())
    unreached = {"tender_type": CARD, "card_token": "tok_processing_error"}
    for _ in range(2):  # the request, then its retry under the same request id
        with pytest.raises(grpc.aio.AioRpcError) as err:
            await shop.tender(order.id, request_id=request_id, **unreached)
        assert err.value.code() == grpc.StatusCode.UNAVAILABLE
        assert read_error(err.value).reason == "processor_unavailable"
        assert await shop.payments_of(order.id) == []

    taken = await shop.tender(order.id, tender_type=CARD, card_token="tok_visa")

    assert taken.payment.status == payment_pb2.PAYMENT_STATUS_AUTHORIZED
    assert taken.order.paid.amount == taken.order.total.amount
    assert list(taken.order.payment_ids) == [taken.payment.id]
    # Covered now: the first request's retry takes nothing more.
    with pytest.raises(grpc.aio.AioRpcError) as err:
        await shop.tender(order.id, request_id=request_id, **unreached)
    _refused(err.value, "balance_covered")
    assert [p.id for p in await shop.payments_of(order.id)] == [taken.payment.id]
    confirmed = await shop.orders.ConfirmOrder(
        order_pb2.ConfirmOrderRequest(request_id=str(uuid.uuid4()), order_id=order.id),
        metadata=MERCHANT,
        timeout=10,
    )
    assert confirmed.order.status == order_pb2.ORDER_STATUS_CONFIRMED


async def test_a_cancelled_orders_fulfilment_shows_its_capture_given_back(shop: Shop) -> None:
    """Cash is captured when taken and is the pickup's at confirmation; the cancel refunds it.
    The fulfilment still says what was captured for it and now also what went back, so it
    is not read as money kept (`captured` alone stayed 25.00 after the refund, before)."""
    order = await shop.create(KINDS["pickup"])
    await shop.tender(order.id, **TENDERS["cash"])
    confirmed = await shop.orders.ConfirmOrder(
        order_pb2.ConfirmOrderRequest(request_id=str(uuid.uuid4()), order_id=order.id),
        metadata=MERCHANT,
        timeout=10,
    )
    (kept,) = confirmed.order.fulfillments
    assert (kept.captured.amount, kept.refunded.amount) == (2500, 0)
    till = _till("reg_cancel_shows")
    await _open_shift(shop, till)

    # The cash goes back out of a drawer: cancelled at a register with a shift open.
    cancelled = await shop.cancel(order.id, till)

    assert await shop.money_held(order.id) == 0
    for seen in (cancelled, await shop.order(order.id)):
        (f,) = seen.fulfillments
        assert f.status == order_pb2.FULFILLMENT_STATUS_CANCELLED
        assert (f.captured.amount, f.refunded.amount) == (2500, 2500)
        assert f.refunded.currency == "USD"


async def test_a_cancel_beside_a_card_answer_not_known_yet_is_refused_and_writes_nothing(
    shop: Shop,
) -> None:
    """`tok_timeout`: approved at the processor, its answer lost; the payment is pending until
    the payment service's reconciler settles it. A cancel then is a 409 `payment_pending` that
    changes nothing (recorded, it was a 503 for a cancel that then happened on its own, once
    the answer was known)."""
    order = await shop.create(KINDS["pickup"])
    tendered = await shop.tender(order.id, tender_type=CARD, card_token="tok_timeout")
    assert tendered.payment.status == payment_pb2.PAYMENT_STATUS_PENDING
    before = await shop.order(order.id)

    with pytest.raises(grpc.aio.AioRpcError) as err:
        await shop.cancel(order.id)
    assert err.value.code() == grpc.StatusCode.FAILED_PRECONDITION
    assert read_error(err.value).reason == "payment_pending"
    after = await shop.order(order.id)
    assert (after.status, after.version) == (order_pb2.ORDER_STATUS_PENDING_PAYMENT, before.version)


async def test_money_refunded_beside_an_exchange_is_not_paid_out_again_at_its_settlement(
    shop: Shop,
) -> None:
    """Two tees sold at a register, exchanged for one: the difference's refund waits at the
    relay while a goodwill refund of everything refundable goes through. The exchange's refund
    is then refused (the money is gone) and its return waits for a person. Settling it as paid
    out of band would have the till pay the customer what the card already gave back: a 409
    naming what is left (nothing), nothing recorded; settled as refused, it completes."""
    made = await shop.orders.CreateOrder(
        order_pb2.CreateOrderRequest(
            request_id=str(uuid.uuid4()),
            channel="register",
            location_id=shop.location,
            lines=[order_pb2.OrderLineRequest(sku="TEE", quantity=2)],
        ),
        metadata=MERCHANT,
        timeout=10,
    )
    await shop.tender(made.order.id, tender_type=CARD, card_token="tok_visa")
    sold = await shop.orders.ConfirmOrder(
        order_pb2.ConfirmOrderRequest(request_id=str(uuid.uuid4()), order_id=made.order.id),
        metadata=MERCHANT,
        timeout=10,
    )
    order = sold.order
    (payment,) = order.payment_ids
    gate = shop.relay.gate("CreateRefund")
    exchange = shop.orders.CreateExchange(
        order_pb2.CreateExchangeRequest(
            request_id=str(uuid.uuid4()),
            order_id=order.id,
            lines=[order_pb2.ReturnLineRequest(line_id="L1", quantity=2, restock=True)],
            new_lines=[order_pb2.ExchangeLine(sku="TEE", quantity=1)],
            reason="wrong_size",
        ),
        metadata=MERCHANT,
        timeout=20,
    )

    def goodwill() -> Awaitable[Any]:
        return shop.payments.CreateRefund(
            payment_pb2.CreateRefundRequest(
                request_id=str(uuid.uuid4()), payment_id=payment, reason="goodwill"
            ),
            metadata=MERCHANT,
            timeout=10,
        )

    refused, refunded = await _beside(gate, exchange, goodwill)
    _refused(refused, "amount_exceeds_refundable")
    return_id = read_error(refused).metadata["return_id"]
    assert sum(r.amount.amount for r in refunded.refunds) > 0

    def settle(outcome: int, **fields: Any) -> Awaitable[Any]:
        return shop.orders.SettleReturn(
            order_pb2.SettleReturnRequest(
                request_id=str(uuid.uuid4()),
                order_id=order.id,
                return_id=return_id,
                outcome=outcome,
                settled_by="stf_till_1",
                **fields,
            ),
            metadata=MERCHANT,
            timeout=20,
        )

    with pytest.raises(grpc.aio.AioRpcError) as err:
        await settle(
            order_pb2.SETTLEMENT_OUTCOME_PAID_OUT_OF_BAND,
            tender_type=payment_pb2.TENDER_TYPE_CASH,
            reason="gave cash",
        )
    _refused(err.value, "amount_exceeds_refundable")
    assert read_error(err.value).metadata["refundable"] == "0"
    (card,) = await shop.payments_of(order.id)
    assert card.paid_out_of_band.amount == 0
    assert card.refunded.amount + card.credited.amount == card.captured.amount

    done = await settle(order_pb2.SETTLEMENT_OUTCOME_REFUSED, reason="refunded by goodwill")
    assert done.order_return.status == "completed"
    assert done.order_return.settlement.outcome == order_pb2.SETTLEMENT_OUTCOME_REFUSED


async def test_a_cancel_beside_a_tender_whose_payment_is_made_but_unanswered_is_done(
    shop: Shop,
) -> None:
    """The payment service made the tender's payment (`tok_timeout`: pending) and its answer is
    held at the relay, so the order has not heard of it when the cancel comes: the cancel goes
    on and answers the order cancelled (it was a 503 `payment_pending` for a cancel carried out
    all the same). The tender, answered then, gives its payment back once it is settled: it
    is the 503 `payment_pending` of a payment whose answer is awaited."""
    order = await shop.create(KINDS["pickup"])
    gate = shop.relay.gate("CreatePayment", after=True)

    tendered, cancelled = await _beside(
        gate,
        shop.tender(order.id, tender_type=CARD, card_token="tok_timeout"),
        lambda: shop.cancel(order.id),
    )

    assert isinstance(cancelled, order_pb2.Order), cancelled
    assert cancelled.status == order_pb2.ORDER_STATUS_CANCELLED
    assert isinstance(tendered, grpc.aio.AioRpcError), tendered
    assert read_error(tendered).reason == "payment_pending"
    after = await shop.order(order.id)
    assert after.status == order_pb2.ORDER_STATUS_CANCELLED
    assert after.fulfillments[0].status == order_pb2.FULFILLMENT_STATUS_CANCELLED


def _till(register: str) -> tuple[tuple[str, str], ...]:
    """A register's calls, a member signed in at it (as the gateway sends them)."""
    return (*MERCHANT, ("x-register-id", register), ("x-staff-id", "stf_cashier"))


async def _open_shift(shop: Shop, till: Any) -> str:
    opened = await shop.shifts.OpenShift(
        shifts_pb2.OpenShiftRequest(
            request_id=str(uuid.uuid4()),
            location_id=shop.location,
            opening_float=money_pb2.Money(amount=10_000, currency="USD"),
        ),
        metadata=till,
        timeout=10,
    )
    return str(opened.shift.id)


async def _cash_refunds(shop: Shop, shift_id: str) -> int:
    found = await shop.shifts.GetShift(
        shifts_pb2.GetShiftRequest(id=shift_id), metadata=MERCHANT, timeout=5
    )
    return int(found.shift.report.cash_refunds.amount)


async def _paid_in_cash(shop: Shop, at: Any = MERCHANT, confirm: bool = True) -> order_pb2.Order:
    """A pickup of one tee (25.00) paid in cash (captured when taken), confirmed or not."""
    fulfillment = order_pb2.FulfillmentRequest(type=KINDS["pickup"], location_id=shop.location)
    created = await shop.orders.CreateOrder(
        order_pb2.CreateOrderRequest(
            request_id=str(uuid.uuid4()),
            channel="web",
            location_id=shop.location,
            lines=[order_pb2.OrderLineRequest(sku="TEE", quantity=1)],
            fulfillments=[fulfillment],
        ),
        metadata=at,
        timeout=10,
    )
    order = created.order
    await shop.orders.AddTender(
        order_pb2.AddTenderRequest(request_id=str(uuid.uuid4()), order_id=order.id,
                                   **TENDERS["cash"]),
        metadata=at,
        timeout=10,
    )  # fmt: skip
    if not confirm:
        return await shop.order(order.id)
    answer = await shop.orders.ConfirmOrder(
        order_pb2.ConfirmOrderRequest(request_id=str(uuid.uuid4()), order_id=order.id),
        metadata=at,
        timeout=10,
    )
    assert answer.order.status == order_pb2.ORDER_STATUS_CONFIRMED
    return answer.order


async def test_a_cancel_giving_cash_back_is_made_at_a_register_with_an_open_shift_only(
    shop: Shop,
) -> None:
    """A pickup paid in cash: cancelling it (the order, or its fulfilment) gives the cash back
    out of a drawer. From the back office, or at a register with no shift open, it is refused
    before anything is written (409 `cash_refund_needs_open_shift` naming `order_id` or
    `fulfillment_id`, as a return refunding cash is): the order as it was, the cash kept. At a
    register with a shift open the cancel is made, and that shift's drawer expects the cash
    gone. A card's cancel from the back office needs no drawer."""
    order = await _paid_in_cash(shop)
    (f,) = order.fulfillments
    till = _till("reg_cancels")

    async def cancel_fulfillment(at: Any) -> order_pb2.Order:
        answer = await shop.orders.CancelFulfillment(
            order_pb2.CancelFulfillmentRequest(
                request_id=str(uuid.uuid4()), order_id=order.id, fulfillment_id=f.id
            ),
            metadata=at,
            timeout=10,
        )
        return answer.order

    async def cancel_order(at: Any) -> order_pb2.Order:
        return await shop.cancel(order.id, at)

    for at, register in ((MERCHANT, ""), (till, "reg_cancels")):
        for cancel, named in ((cancel_order, "order_id"), (cancel_fulfillment, "fulfillment_id")):
            with pytest.raises(grpc.aio.AioRpcError) as err:
                await cancel(at)
            assert err.value.code() == grpc.StatusCode.FAILED_PRECONDITION
            problem = read_error(err.value)
            assert problem.reason == "cash_refund_needs_open_shift"
            assert [v.field for v in problem.violations] == [named]
            assert order.payment_ids[0] in problem.violations[0].description
            assert register in problem.violations[0].description
            after = await shop.order(order.id)
            assert (after.status, after.version) == (order.status, order.version)
            assert await shop.money_held(order.id) == 2500

    shift = await _open_shift(shop, till)
    cancelled = await cancel_fulfillment(till)

    assert cancelled.status == order_pb2.ORDER_STATUS_CANCELLED
    assert await shop.money_held(order.id) == 0
    (payment,) = await shop.payments_of(order.id)
    assert payment.refunded.amount == 2500
    assert await _cash_refunds(shop, shift) == 2500

    card = await shop.confirmed(KINDS["pickup"])
    assert (await shop.cancel(card.id)).status == order_pb2.ORDER_STATUS_CANCELLED


async def test_cash_a_cancel_the_service_makes_gives_back_counts_at_the_sales_register(
    shop: Shop,
) -> None:
    """A sale nobody came back for is cancelled by the service itself (its expiry, moved to
    now rather than waited for): never refused for want of a drawer, its cash goes back as
    from the register the sale was made at, and counts in the shift open there (it counted in
    no shift before)."""
    till = _till("reg_sold_at")
    shift = await _open_shift(shop, till)
    order = await _paid_in_cash(shop, till, confirm=False)
    assert order.status == order_pb2.ORDER_STATUS_PENDING_PAYMENT
    with psycopg.connect(shop.order_db) as conn:
        conn.execute("UPDATE orders SET due_at = now() WHERE id = %s", (order.id,))

    deadline = asyncio.get_running_loop().time() + 30
    while (await shop.order(order.id)).status != order_pb2.ORDER_STATUS_CANCELLED:
        assert asyncio.get_running_loop().time() < deadline, "not cancelled by the resumer"
        await asyncio.sleep(0.1)

    assert await shop.money_held(order.id) == 0
    assert await _cash_refunds(shop, shift) == 2500


async def _expected_cash(shop: Shop, shift_id: str) -> int:
    found = await shop.shifts.GetShift(
        shifts_pb2.GetShiftRequest(id=shift_id), metadata=MERCHANT, timeout=5
    )
    return int(found.shift.report.expected_cash.amount)


@pytest.mark.parametrize("held", ["call", "answer"])
async def test_cash_taken_at_a_register_beside_a_back_office_cancel_goes_back_at_that_drawer(
    shop: Shop, held: str
) -> None:
    """Cash tendered at a register with a shift open (its payment at the relay) while the back
    office cancels the order: the cancel wins, and the tender, a 409 `order_not_pending`,
    gives the cash back at the register it was taken at, so that shift's drawer expects what
    it held before (the cashier hands the money back). Given back as from the back office,
    the refund counted in no shift while the sale counted in this one: the drawer was
    expected to hold cash it never kept."""
    till = _till(f"reg_race_{held}")
    shift = await _open_shift(shop, till)
    order = await shop.create(KINDS["pickup"])
    gate = shop.relay.gate("CreatePayment", after=held == "answer")
    tender = order_pb2.AddTenderRequest(
        request_id=str(uuid.uuid4()), order_id=order.id, **TENDERS["cash"]
    )

    tendered, cancelled = await _beside(
        gate,
        shop.orders.AddTender(tender, metadata=till, timeout=10),
        lambda: shop.cancel(order.id),
    )

    assert isinstance(cancelled, order_pb2.Order), cancelled
    assert cancelled.status == order_pb2.ORDER_STATUS_CANCELLED
    _refused(tendered, "order_not_pending")
    assert await shop.money_held(order.id) == 0
    assert (await shop.order(order.id)).status == order_pb2.ORDER_STATUS_CANCELLED
    assert await _expected_cash(shop, shift) == 10_000


@pytest.mark.parametrize("held", ["call", "answer"])
async def test_a_back_office_cancel_beside_a_register_cash_sale_is_refused(
    shop: Shop, held: str
) -> None:
    """A one-call register sale in cash whose payment is at the relay while the back office
    cancels its order (found in the order list): the sale is being confirmed, so the cancel
    is a 409 `order_confirming` that writes nothing, and the sale completes with its cash in
    that register's shift. Never both: a cancelled order confirmed by the sale's answer."""
    till = _till(f"reg_sale_{held}")
    shift = await _open_shift(shop, till)
    sale = order_pb2.CheckoutRequest(
        request_id=str(uuid.uuid4()),
        location_id=shop.location,
        lines=[order_pb2.CheckoutLine(sku="TEE", quantity=1)],
        tender_type=CASH,
        cash_tendered=money_pb2.Money(amount=3000, currency="USD"),
    )
    gate = shop.relay.gate("AuthorizeAndCapture", after=held == "answer")

    async def cancel_it() -> order_pb2.Order:
        with psycopg.connect(shop.order_db) as conn:
            row = conn.execute("SELECT id FROM orders ORDER BY created_at DESC LIMIT 1")
            (order_id,) = row.fetchone() or ("",)
        return await shop.cancel(order_id)

    sold, cancelled = await _beside(
        gate, shop.orders.Checkout(sale, metadata=till, timeout=10), cancel_it
    )

    _refused(cancelled, "order_confirming")
    assert isinstance(sold, order_pb2.CheckoutResponse), sold
    assert sold.order.status == order_pb2.ORDER_STATUS_COMPLETED
    after = await shop.order(sold.order.id)
    assert after.status == order_pb2.ORDER_STATUS_COMPLETED
    assert await shop.money_held(after.id) == 2500
    assert await _expected_cash(shop, shift) == 12_500


@pytest_asyncio.fixture(loop_scope="session", scope="module")
async def captured_shop(infra: Infra) -> AsyncIterator[Shop]:
    """Pickups captured at confirmation (the order settings' `capture_pickup_at_order`)."""
    async with relayed_shop(infra, capture_pickup_at_order=True) as found:
        yield found


async def test_a_fulfilment_cancel_beside_a_refund_of_its_capture_gives_back_what_is_left(
    captured_shop: Shop,
) -> None:
    """A pickup captured at confirmation and a shipment not yet shipped. The pickup's cancel
    planned its refund (what the payment had left) and its call is at the relay when a
    goodwill refund of all the payment has left goes through. The payment service then refuses
    the planned refund (409 `amount_exceeds_refundable`): the cancel plans it again from what
    the payment has left (nothing) and ends, the pickup cancelled, the shipment kept. The
    refusal used to stop the cancel for good: the pickup stayed `reserved` and `cancelling`,
    its step a 409 `fulfillment_cancelled`, its cancel again and the order's cancel each a
    409, so the order could be neither fulfilled nor cancelled."""
    shop = captured_shop
    pickup = order_pb2.FulfillmentRequest(type=KINDS["pickup"], location_id=shop.location)
    shipment = order_pb2.FulfillmentRequest(
        type=KINDS["shipment"], location_id=shop.location, ship_to="1 Main St"
    )
    created = await shop.orders.CreateOrder(
        order_pb2.CreateOrderRequest(
            request_id=str(uuid.uuid4()),
            channel="web",
            location_id=shop.location,
            lines=[
                order_pb2.OrderLineRequest(sku="TEE", quantity=1, fulfillment=0),
                order_pb2.OrderLineRequest(sku="TEE", quantity=1, fulfillment=1),
            ],
            fulfillments=[pickup, shipment],
        ),
        metadata=MERCHANT,
        timeout=10,
    )
    order = created.order
    await shop.tender(order.id, tender_type=CARD, card_token="tok_visa")
    confirmed = await shop.orders.ConfirmOrder(
        order_pb2.ConfirmOrderRequest(request_id=str(uuid.uuid4()), order_id=order.id),
        metadata=MERCHANT,
        timeout=10,
    )
    picked, shipped = confirmed.order.fulfillments
    assert (picked.captured.amount, shipped.captured.amount) == (2500, 0)
    (payment_id,) = confirmed.order.payment_ids
    gate = shop.relay.gate("CreateRefund")
    cancel = shop.orders.CancelFulfillment(
        order_pb2.CancelFulfillmentRequest(
            request_id=str(uuid.uuid4()), order_id=order.id, fulfillment_id=picked.id
        ),
        metadata=MERCHANT,
        timeout=20,
    )

    def goodwill() -> Awaitable[Any]:
        return shop.payments.CreateRefund(
            payment_pb2.CreateRefundRequest(
                request_id=str(uuid.uuid4()), payment_id=payment_id, reason="goodwill"
            ),
            metadata=MERCHANT,
            timeout=10,
        )

    cancelled, refunded = await _beside(gate, cancel, goodwill)

    assert [r.amount.amount for r in refunded.refunds] == [2500]
    assert isinstance(cancelled, order_pb2.CancelFulfillmentResponse), cancelled
    assert list(cancelled.refunds) == []
    after = await shop.order(order.id)
    assert after.status == order_pb2.ORDER_STATUS_CONFIRMED
    picked, shipped = after.fulfillments
    assert picked.status == order_pb2.FULFILLMENT_STATUS_CANCELLED
    assert (picked.captured.amount, picked.refunded.amount) == (2500, 0)
    assert shipped.status == order_pb2.FULFILLMENT_STATUS_RESERVED
    (payment,) = await shop.payments_of(order.id)
    assert (payment.captured.amount, payment.refunded.amount) == (2500, 2500)
    # The rest of the order goes on: the shipment captures its share when it leaves.
    await shop.orders.UpdateFulfillment(
        order_pb2.UpdateFulfillmentRequest(
            request_id=str(uuid.uuid4()),
            order_id=order.id,
            fulfillment_id=shipped.id,
            status=order_pb2.FULFILLMENT_STATUS_PICKED,
        ),
        metadata=MERCHANT,
        timeout=10,
    )
    sent = await shop.orders.UpdateFulfillment(
        order_pb2.UpdateFulfillmentRequest(
            request_id=str(uuid.uuid4()),
            order_id=order.id,
            fulfillment_id=shipped.id,
            status=order_pb2.FULFILLMENT_STATUS_SHIPPED,
            carrier="UPS",
            tracking_number="1Z999",
        ),
        metadata=MERCHANT,
        timeout=10,
    )
    assert sent.order.fulfillments[1].captured.amount == 2500


async def test_an_order_cancel_beside_a_refund_gives_back_what_is_left(
    captured_shop: Shop,
) -> None:
    """A pickup captured at confirmation: the order's cancel read what its payment had left
    and its refund of it is at the relay when a goodwill refund of 10.00 goes through. The
    payment service refuses the cancel's refund (409 `amount_exceeds_refundable`, 15.00
    refundable): the cancel gives back those 15.00 and answers the order cancelled. It was
    answered with that 409, the order left being cancelled (its step a 409), and then
    cancelled all the same by the resumer: a refusal that was no refusal."""
    shop = captured_shop
    order = await shop.confirmed(KINDS["pickup"])
    assert order.fulfillments[0].captured.amount == 2500
    (payment_id,) = order.payment_ids
    gate = shop.relay.gate("CreateRefund")

    def goodwill() -> Awaitable[Any]:
        return shop.payments.CreateRefund(
            payment_pb2.CreateRefundRequest(
                request_id=str(uuid.uuid4()),
                payment_id=payment_id,
                amount=money_pb2.Money(amount=1000, currency="USD"),
                reason="goodwill",
            ),
            metadata=MERCHANT,
            timeout=10,
        )

    cancelled, refunded = await _beside(gate, shop.cancel(order.id), goodwill)

    assert [r.amount.amount for r in refunded.refunds] == [1000]
    assert isinstance(cancelled, order_pb2.Order), cancelled
    assert cancelled.status == order_pb2.ORDER_STATUS_CANCELLED
    (payment,) = await shop.payments_of(order.id)
    assert (payment.captured.amount, payment.refunded.amount) == (2500, 2500)
    assert await shop.money_held(order.id) == 0
    after = await shop.order(order.id)
    assert after.status == order_pb2.ORDER_STATUS_CANCELLED
    assert after.fulfillments[0].status == order_pb2.FULFILLMENT_STATUS_CANCELLED


async def test_a_refund_naming_units_during_the_orders_confirmation_waits_its_turn(
    captured_shop: Shop,
) -> None:
    """A pickup paid by card, its confirmation's capture at the relay (the confirmation read
    the payments already): a refund naming units of the order (a price adjustment, which holds
    the order without `before_confirmation`) is refused for now, 409
    `confirmation_in_progress`, nothing held, as any refund of it is then. It was held and
    made: the confirmation, having read the payments before it, recorded the order paid in
    full and completed it, while its payment had that money given back."""
    shop = captured_shop
    order = await shop.create(KINDS["pickup"])
    await shop.tender(order.id, tender_type=CARD, card_token="tok_visa")
    gate = shop.relay.gate("CapturePayment")

    def held() -> Awaitable[Any]:
        return shop.orders.HoldOrderForRefund(
            order_pb2.HoldOrderForRefundRequest(request_id=str(uuid.uuid4()), order_id=order.id),
            metadata=MERCHANT,
            timeout=10,
        )

    confirmed, refund = await _beside(
        gate,
        shop.orders.ConfirmOrder(
            order_pb2.ConfirmOrderRequest(request_id=str(uuid.uuid4()), order_id=order.id),
            metadata=MERCHANT,
            timeout=10,
        ),
        held,
    )

    _refused(refund, "confirmation_in_progress")
    assert isinstance(confirmed, order_pb2.ConfirmOrderResponse), confirmed
    assert confirmed.order.status == order_pb2.ORDER_STATUS_CONFIRMED
    # Confirmed, it is held for such a refund as before (a return meanwhile waits its turn).
    hold = order_pb2.HoldOrderForRefundRequest(request_id=str(uuid.uuid4()), order_id=order.id)
    again = await shop.orders.HoldOrderForRefund(hold, metadata=MERCHANT, timeout=10)
    assert again.held
    await shop.orders.ReleaseOrderForRefund(
        order_pb2.ReleaseOrderForRefundRequest(request_id=hold.request_id, order_id=order.id),
        metadata=MERCHANT,
        timeout=10,
    )


async def test_a_refund_beside_a_hand_over_never_lets_refunded_goods_leave(
    captured_shop: Shop,
) -> None:
    """A pickup captured at confirmation, ready. Its hand-over read the payments (nothing
    refunded; their answer held at the relay) when a refund of all the payment holds is made
    as the payments routes make it (the order held for it first, then the refund, then the
    hold released). The hand-over is then a 409 `refund_in_progress` and the goods stay in the
    store: it went on from what it had read and handed over goods whose money had all gone
    back (a refund made before the hand-over read the payments is its 409 `payment_refunded`).
    A refund asked while a hand-over is under way is a 409 `fulfillment_in_progress`."""
    shop = captured_shop
    order = await shop.ready(await shop.confirmed(KINDS["pickup"]))
    (payment_id,) = order.payment_ids
    gate = shop.relay.gate("GetOrderPayments", after=True)

    async def refund_all() -> payment_pb2.CreateRefundResponse:
        hold = order_pb2.HoldOrderForRefundRequest(
            request_id=str(uuid.uuid4()), order_id=order.id, before_confirmation=True
        )
        held = await shop.orders.HoldOrderForRefund(hold, metadata=MERCHANT, timeout=10)
        try:
            return await shop.payments.CreateRefund(  # type: ignore[no-any-return]
                payment_pb2.CreateRefundRequest(
                    request_id=str(uuid.uuid4()), payment_id=payment_id, reason="goodwill"
                ),
                metadata=MERCHANT,
                timeout=10,
            )
        finally:
            if held.held:
                await shop.orders.ReleaseOrderForRefund(
                    order_pb2.ReleaseOrderForRefundRequest(
                        request_id=hold.request_id, order_id=order.id
                    ),
                    metadata=MERCHANT,
                    timeout=10,
                )

    stepped, refunded = await _beside(gate, shop.step(order), refund_all)

    assert [r.amount.amount for r in refunded.refunds] == [2500]
    _refused(stepped, "refund_in_progress")
    after = await shop.order(order.id)
    assert after.fulfillments[0].status == order_pb2.FULFILLMENT_STATUS_READY_FOR_PICKUP
    # Asked again, the hand-over reads the refund: the goods stay in the store.
    with pytest.raises(grpc.aio.AioRpcError) as err:
        await shop.step(order)
    _refused(err.value, "payment_refunded")


async def test_a_refund_while_a_hand_over_is_under_way_waits_its_turn(shop: Shop) -> None:
    """A pickup captured at hand-over: its hand-over's capture is at the relay (the
    fulfilment marked as being handed over) when a refund or void of the order's payments
    holds the order: a 409 `fulfillment_in_progress`, nothing held; the goods leave paid."""
    order = await shop.ready(await shop.confirmed(KINDS["pickup"]))
    gate = shop.relay.gate("CapturePayment")

    def held() -> Awaitable[Any]:
        return shop.orders.HoldOrderForRefund(
            order_pb2.HoldOrderForRefundRequest(
                request_id=str(uuid.uuid4()), order_id=order.id, before_confirmation=True
            ),
            metadata=MERCHANT,
            timeout=10,
        )

    stepped, refund = await _beside(gate, shop.step(order), held)

    _refused(refund, "fulfillment_in_progress")
    assert isinstance(stepped, order_pb2.Order), stepped
    assert stepped.fulfillments[0].status == order_pb2.FULFILLMENT_STATUS_PICKED_UP
    assert stepped.fulfillments[0].captured.amount == 2500


@pytest.mark.parametrize("how", ["sale", "tender"])
async def test_cash_whose_shift_closes_before_it_is_taken_is_refused(shop: Shop, how: str) -> None:
    """Cash at a register with a shift open: the sale (or a tender of an order) read the shift
    open, and its payment is at the relay when that shift is closed. The payment service
    then finds no shift open at the register when it records the cash (the shift's row read
    with a share lock in the transaction that records it, which a close waits for): it is
    refused, a 409 `cash_needs_open_shift`, and no cash is taken, so the closed shift's
    figures stand and no cash counts in no shift. It was taken, in no shift's drawer."""
    till = _till(f"reg_close_{how}")
    shift = await _open_shift(shop, till)
    if how == "sale":
        sale = order_pb2.CheckoutRequest(
            request_id=str(uuid.uuid4()),
            location_id=shop.location,
            lines=[order_pb2.CheckoutLine(sku="TEE", quantity=1)],
            tender_type=CASH,
            cash_tendered=money_pb2.Money(amount=3000, currency="USD"),
        )
        gate = shop.relay.gate("AuthorizeAndCapture")
        taking: Awaitable[Any] = shop.orders.Checkout(sale, metadata=till, timeout=10)
    else:
        order = await shop.create(KINDS["pickup"])
        gate = shop.relay.gate("CreatePayment")
        tender = order_pb2.AddTenderRequest(
            request_id=str(uuid.uuid4()), order_id=order.id, **TENDERS["cash"]
        )
        taking = shop.orders.AddTender(tender, metadata=till, timeout=10)

    def close() -> Awaitable[Any]:
        return shop.shifts.CloseShift(
            shifts_pb2.CloseShiftRequest(
                request_id=str(uuid.uuid4()),
                shift_id=shift,
                counted_cash=money_pb2.Money(amount=10_000, currency="USD"),
            ),
            metadata=till,
            timeout=10,
        )

    taken, closed = await _beside(gate, taking, close)

    assert isinstance(closed, shifts_pb2.CloseShiftResponse), closed
    _refused(taken, "cash_needs_open_shift")
    assert await _expected_cash(shop, shift) == 10_000
    with psycopg.connect(shop.payment_db) as conn:
        loose = conn.execute(
            "SELECT count(*) FROM payments WHERE register_id = %s", (till[1][1],)
        ).fetchone()
    assert loose == (0,)
