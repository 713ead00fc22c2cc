"""Payment down: a register's cash sale goes on (the money is in the drawer), and its payment is
recorded once the payment service is back, exactly once, in the register's shift. Real
PostgreSQL, NATS JetStream, inventory, payment and order services in this process.

Between the order and payment services sits a relay that passes every call through while the
payment service is "up", and answers UNAVAILABLE without reaching it while it is "down" (as a
stopped process is answered): the payment service itself stays up for the test to read it.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import AsyncExitStack
from dataclasses import dataclass
from typing import Any

import grpc
import psycopg
import pytest
import pytest_asyncio
from order_shop import payments_for, serve_order, serve_relay, tee_shop

from pos.common.v1 import money_pb2
from pos.inventory.v1 import inventory_pb2, inventory_pb2_grpc
from pos.order.v1 import events_pb2, order_pb2, order_pb2_grpc
from pos.payment.v1 import payment_pb2, payment_pb2_grpc, shifts_pb2, shifts_pb2_grpc
from pos_devstack.testing import Infra, serve_in_process
from pos_kit.grpc_client import read_error
from pos_order.adapters.events import ORDER_EVENTS

pytestmark = pytest.mark.asyncio(loop_scope="session")

MERCHANT_ID = "mer_payment_down"
REGISTER = "reg_front"
AT_TILL = (("x-merchant-id", MERCHANT_ID), ("x-register-id", REGISTER), ("x-staff-id", "stf_1"))
MERCHANT = (("x-merchant-id", MERCHANT_ID),)

# Every call the order service makes to the payment service passes the relay and three
# servers sharing this process's one event loop; on a loaded machine one took more than 0.5 s,
# and the return after the payment service was back was answered `payment_unavailable` (503).
# The payment deadline must stay under the abandon window (bootstrap.Settings), so both are
# wider, as in the return resumer's stack (test_return_resumer.py).
PAYMENT_TIMEOUT_SECONDS = 2.0
ABANDON_SECONDS = 3.0


class SwitchedRelay(grpc.GenericRpcHandler):
    """The payment service as the order service reaches it: passed through, or away."""

    def __init__(self, channel: grpc.aio.Channel) -> None:
        self.channel = channel
        self.down = False
        # The methods passed through, in order (what the order service asked of payment).
        self.passed: list[str] = []
        self.bodies: list[bytes] = []

    def service(self, details: grpc.HandlerCallDetails) -> grpc.RpcMethodHandler | None:  # type: ignore[override]
        method: str = details.method  # type: ignore[attr-defined]
        forward = self.channel.unary_unary(method)

        async def handle(request: bytes, context: grpc.aio.ServicerContext) -> Any:
            if self.down:
                await context.abort(grpc.StatusCode.UNAVAILABLE, "connection refused")
            self.passed.append(method.rsplit("/", 1)[-1])
            self.bodies.append(request)
            metadata = [
                (k, v) for k, v in context.invocation_metadata() or () if k.startswith("x-")
            ]
            try:
                return await forward(request, metadata=metadata, timeout=10)
            except grpc.aio.AioRpcError as err:  # the service's refusal, as it gave it
                await context.abort(
                    err.code(), err.details() or "", tuple(err.trailing_metadata() or ())
                )

        return grpc.unary_unary_rpc_method_handler(handle)  # type: ignore[arg-type]


@dataclass
class Stack:
    orders: order_pb2_grpc.OrderServiceStub
    payments: payment_pb2_grpc.PaymentServiceStub
    shifts: shifts_pb2_grpc.ShiftServiceStub
    levels: inventory_pb2_grpc.InventoryServiceStub
    relay: SwitchedRelay
    location_id: str
    payment_db: str
    order_db: str


@pytest_asyncio.fixture(loop_scope="session", scope="module")
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
            relay = SwitchedRelay(payment.channel)
            relay_port = await serve_relay(stack, relay)
            # The resumer looks every 0.2 s.
            order = await stack.enter_async_context(
                serve_order(
                    infra,
                    server.url,
                    inventory.port,
                    relay_port,
                    payment_timeout_seconds=PAYMENT_TIMEOUT_SECONDS,
                    saga_abandon_seconds=ABANDON_SECONDS,
                    saga_sweep_seconds=0.2,
                )
            )
            location_id = await tee_shop(inventory.channel, MERCHANT_ID, stock=10)
            yield Stack(
                order_pb2_grpc.OrderServiceStub(order.channel),
                payment_pb2_grpc.PaymentServiceStub(payment.channel),
                shifts_pb2_grpc.ShiftServiceStub(payment.channel),
                inventory_pb2_grpc.InventoryServiceStub(inventory.channel),
                relay,
                location_id,
                payment.database_url,
                order.database_url,
            )
    finally:
        server.stop()


async def told(stack: Stack, order_id: str) -> list[tuple[str, int]]:
    """The order's events written so far (its outbox, oldest first), each as its type and the
    order's version it carries."""
    with psycopg.connect(stack.order_db) as conn:
        rows = conn.execute(
            "SELECT event_type, payload FROM outbox WHERE position(%s::bytea in payload) > 0 "
            "ORDER BY seq",
            (order_id.encode(),),
        ).fetchall()
    found = []
    for event_type, payload in rows:
        kind = ORDER_EVENTS.get(event_type)
        if kind is not None and kind is not events_pb2.OrderReturned:
            message = kind.FromString(bytes(payload))
            found.append((event_type.rsplit(".", 1)[-1], message.order.version))  # type: ignore[attr-defined]
    return found


def usd(amount: int) -> money_pb2.Money:
    return money_pb2.Money(amount=amount, currency="USD")


def cash_sale(stack: Stack, quantity: int = 2) -> order_pb2.CheckoutRequest:
    return order_pb2.CheckoutRequest(
        request_id=str(uuid.uuid4()),
        location_id=stack.location_id,
        lines=[order_pb2.CheckoutLine(sku="TEE", quantity=quantity)],
        tender_type=payment_pb2.TENDER_TYPE_CASH,
        cash_tendered=usd(6000),
    )


async def on_hand(stack: Stack) -> int:
    found = await stack.levels.GetStockLevels(
        inventory_pb2.GetStockLevelsRequest(skus=["TEE"], location_id=stack.location_id),
        metadata=MERCHANT,
        timeout=5,
    )
    return int(found.levels[0].on_hand)


async def get_order(stack: Stack, order_id: str) -> order_pb2.Order:
    found = await stack.orders.GetOrder(
        order_pb2.GetOrderRequest(id=order_id), metadata=MERCHANT, timeout=5
    )
    return found.order


async def test_a_cash_sale_goes_on_while_payment_is_down_and_is_recorded_once_after(
    stack: Stack,
) -> None:
    opened = await stack.shifts.OpenShift(
        shifts_pb2.OpenShiftRequest(
            request_id=str(uuid.uuid4()), location_id=stack.location_id, opening_float=usd(10000)
        ),
        metadata=AT_TILL,
        timeout=10,
    )
    before = await on_hand(stack)
    stack.relay.down = True
    request = cash_sale(stack)

    sold = await stack.orders.Checkout(request, metadata=AT_TILL, timeout=10)

    # Confirmed and handed over at once, as any cash sale, change computed here.
    order = sold.order
    assert order.status == order_pb2.ORDER_STATUS_COMPLETED
    assert not sold.HasField("payment")
    assert order.paid == usd(5000) and list(order.payment_ids) == [] and order.payment_id == ""
    (taken,) = order.tenders_to_record
    assert (taken.tender_type, taken.amount, taken.cash_tendered, taken.change_due) == (
        "cash", usd(5000), usd(6000), usd(1000),
    )  # fmt: skip
    assert order.register_id == REGISTER
    # The order's events went out as usual: inventory sold the units from `order_confirmed`.
    await until_async(lambda: on_hand_is(stack, before - 2))

    # The till retries (a lost answer): the same sale, nothing new.
    again = await stack.orders.Checkout(request, metadata=AT_TILL, timeout=10)
    assert again.order.id == order.id and again.order.status == order.status

    # Nothing breaks meanwhile: the order reads honestly, a return is refused for now
    # (retryable), a cancel is refused as for any sale handed over.
    seen = await get_order(stack, order.id)
    assert list(seen.tenders_to_record) == [taken] and list(seen.payment_ids) == []
    with pytest.raises(grpc.aio.AioRpcError) as refused:
        await stack.orders.CreateReturn(
            order_pb2.CreateReturnRequest(
                request_id=str(uuid.uuid4()),
                order_id=order.id,
                lines=[order_pb2.ReturnLineRequest(line_id="L1", quantity=1, restock=True)],
                reason="unwanted",
            ),
            metadata=AT_TILL,
            timeout=10,
        )
    assert refused.value.code() == grpc.StatusCode.FAILED_PRECONDITION
    assert read_error(refused.value).reason == "payment_not_recorded"
    with pytest.raises(grpc.aio.AioRpcError) as final:
        await stack.orders.CancelOrder(
            order_pb2.CancelOrderRequest(request_id=str(uuid.uuid4()), order_id=order.id),
            metadata=AT_TILL,
            timeout=10,
        )
    assert read_error(final.value).reason == "order_final"

    # A card is still refused while the payment service is away.
    card = cash_sale(stack, 1)
    card.tender_type, card.card_token = payment_pb2.TENDER_TYPE_CARD, "tok_visa"
    card.ClearField("cash_tendered")
    with pytest.raises(grpc.aio.AioRpcError) as down:
        await stack.orders.Checkout(card, metadata=AT_TILL, timeout=10)
    assert read_error(down.value).reason == "payment_unavailable"
    assert payments_for(stack.payment_db, order.id) == 0

    # Back: the resumer records the cash, once, under the sale's own request id, in the shift.
    stack.relay.down = False

    async def recorded() -> bool:
        return bool((await get_order(stack, order.id)).payment_ids)

    await until_async(recorded)
    settled = await get_order(stack, order.id)
    assert list(settled.tenders_to_record) == []
    assert list(settled.tender_types) == ["cash"] and list(settled.tender_amounts) == [5000]
    assert settled.fulfillments[0].captured == usd(5000)
    (payment,) = (
        await stack.payments.GetOrderPayments(
            payment_pb2.GetOrderPaymentsRequest(order_id=order.id), metadata=MERCHANT, timeout=5
        )
    ).payments
    assert payment.id == settled.payment_id
    assert payment.status == payment_pb2.PAYMENT_STATUS_CAPTURED
    assert payment.change_due == usd(1000)
    shift = (
        await stack.shifts.GetShift(
            shifts_pb2.GetShiftRequest(id=opened.shift.id), metadata=AT_TILL, timeout=5
        )
    ).shift
    assert shift.report.cash_sales == usd(5000)
    assert shift.report.expected_cash == usd(15000)

    # A retry after: still the same sale and the one payment; the return now goes through.
    late = await stack.orders.Checkout(request, metadata=AT_TILL, timeout=10)
    assert late.order.id == order.id
    await stack.orders.CreateReturn(
        order_pb2.CreateReturnRequest(
            request_id=str(uuid.uuid4()),
            order_id=order.id,
            lines=[order_pb2.ReturnLineRequest(line_id="L1", quantity=1, restock=True)],
            reason="unwanted",
        ),
        metadata=AT_TILL,
        timeout=10,
    )
    assert payments_for(stack.payment_db, order.id) == 1


async def on_hand_is(stack: Stack, units: int) -> bool:
    return await on_hand(stack) == units


async def until_async(check: Callable[[], Awaitable[bool]], limit: float = 20.0) -> None:
    """Wait for an async condition (a background task's doing); fail past `limit` seconds."""
    deadline = time.monotonic() + limit
    while not await check():
        assert time.monotonic() < deadline, "condition not met before the deadline"
        await asyncio.sleep(0.05)


async def test_cash_recorded_after_its_shift_closed_counts_in_the_shift_open_then(
    stack: Stack,
) -> None:
    """The payment service attaches money to the register's shift open when the money is
    recorded: cash sold in a shift that closed before the payment service came back lands in
    the register's next shift (the closed one counted it in its drawer: over by that much)."""
    at_back = (("x-merchant-id", MERCHANT_ID), ("x-register-id", "reg_back"), ("x-staff-id", "s"))

    async def open_shift() -> str:
        opened = await stack.shifts.OpenShift(
            shifts_pb2.OpenShiftRequest(
                request_id=str(uuid.uuid4()), location_id=stack.location_id, opening_float=usd(0)
            ),
            metadata=at_back,
            timeout=10,
        )
        return str(opened.shift.id)

    first = await open_shift()
    stack.relay.down = True
    sold = await stack.orders.Checkout(cash_sale(stack), metadata=at_back, timeout=10)
    assert sold.order.status == order_pb2.ORDER_STATUS_COMPLETED
    closed = await stack.shifts.CloseShift(
        shifts_pb2.CloseShiftRequest(
            request_id=str(uuid.uuid4()), shift_id=first, counted_cash=usd(5000)
        ),
        metadata=at_back,
        timeout=10,
    )
    assert closed.shift.report.cash_sales == usd(0) and closed.shift.over_short == 5000
    second = await open_shift()
    stack.relay.down = False

    async def recorded() -> bool:
        return bool((await get_order(stack, sold.order.id)).payment_ids)

    await until_async(recorded)
    shift = (
        await stack.shifts.GetShift(
            shifts_pb2.GetShiftRequest(id=second), metadata=at_back, timeout=5
        )
    ).shift
    assert shift.report.cash_sales == usd(5000)
    assert payments_for(stack.payment_db, sold.order.id) == 1


async def test_cash_refused_for_another_currencys_shift_is_held_for_a_person(
    stack: Stack,
) -> None:
    """Cash sold while the payment service was away, and by the time it is back the register's
    open shift counts another currency: the payment service refuses to put the sale's cash in
    that drawer (`shift_currency_mismatch`). The order holds the tender for a person, with the
    refusal shown on it, and the resumer stops asking (before, it asked again on every pass,
    for ever, and a return was told to retry shortly). A return says why it cannot be made.
    Nothing is lost: the sale stands, its cash counted in `paid`."""
    at_side = (("x-merchant-id", MERCHANT_ID), ("x-register-id", "reg_side"), ("x-staff-id", "s"))

    async def open_shift(money: money_pb2.Money) -> str:
        opened = await stack.shifts.OpenShift(
            shifts_pb2.OpenShiftRequest(
                request_id=str(uuid.uuid4()), location_id=stack.location_id, opening_float=money
            ),
            metadata=at_side,
            timeout=10,
        )
        return str(opened.shift.id)

    async def close(shift: str, counted: money_pb2.Money) -> None:
        await stack.shifts.CloseShift(
            shifts_pb2.CloseShiftRequest(
                request_id=str(uuid.uuid4()), shift_id=shift, counted_cash=counted
            ),
            metadata=at_side,
            timeout=10,
        )

    first = await open_shift(usd(0))
    stack.relay.down = True
    request = cash_sale(stack, quantity=1)
    sold = await stack.orders.Checkout(request, metadata=at_side, timeout=10)
    assert sold.order.status == order_pb2.ORDER_STATUS_COMPLETED
    await close(first, usd(2500))
    euros = await open_shift(money_pb2.Money(amount=0, currency="EUR"))  # the currency changed
    stack.relay.passed.clear()
    stack.relay.bodies.clear()
    stack.relay.down = False

    async def held() -> bool:
        found = await get_order(stack, sold.order.id)
        return any(t.refusal for t in found.tenders_to_record)

    await until_async(held)
    order = await get_order(stack, sold.order.id)
    (taken,) = order.tenders_to_record
    assert taken.refusal == "shift_currency_mismatch"
    assert list(order.payment_ids) == [] and order.paid == usd(2500)
    # Held after the sale was announced: that version is announced (`order_updated`), as is
    # the settling's below (until 2026-12-05 neither was).
    assert (await told(stack, sold.order.id))[-1] == ("OrderUpdated", order.version)

    def ours() -> list[str]:  # the calls naming this sale (others' orders have their own)
        named = zip(stack.relay.passed, stack.relay.bodies, strict=True)
        return [m for m, body in named if sold.order.id.encode() in body]

    asked = ours()
    assert asked and asked[-1] == "AuthorizeAndCapture"
    await asyncio.sleep(2 * ABANDON_SECONDS + 0.5)  # past the abandon window twice
    assert ours() == asked
    with pytest.raises(grpc.aio.AioRpcError) as err:
        await stack.orders.CreateReturn(
            order_pb2.CreateReturnRequest(
                request_id=str(uuid.uuid4()),
                order_id=sold.order.id,
                lines=[order_pb2.ReturnLineRequest(line_id="L1", quantity=1, restock=True)],
                reason="unwanted",
            ),
            metadata=MERCHANT,
            timeout=10,
        )
    assert read_error(err.value).reason == "payment_record_refused"
    assert payments_for(stack.payment_db, sold.order.id) == 0

    # A person settles it (before, nothing could: the sale read as held for ever): the cash is
    # recorded as from the back office, in no shift (the closed one counted it as over), once.
    async def settle(key: str) -> order_pb2.Order:
        answer = await stack.orders.RecordHeldTenders(
            order_pb2.RecordHeldTendersRequest(request_id=key, order_id=sold.order.id),
            metadata=MERCHANT,
            timeout=10,
        )
        return answer.order

    key = str(uuid.uuid4())
    settled = await settle(key)
    assert list(settled.tenders_to_record) == []
    assert len(settled.payment_ids) == 1 and settled.paid == usd(2500)
    assert (await told(stack, sold.order.id))[-1] == (
        "OrderUpdated",
        settled.version,
    )
    assert (await settle(key)).payment_ids == settled.payment_ids  # its retry
    again = await settle(str(uuid.uuid4()))  # nothing held any more: the order as it is
    assert again.payment_ids == settled.payment_ids and again.version == settled.version
    assert payments_for(stack.payment_db, sold.order.id) == 1
    shift = await stack.shifts.GetShift(
        shifts_pb2.GetShiftRequest(id=euros), metadata=MERCHANT, timeout=5
    )
    assert shift.shift.report.cash_sales.amount == 0
    with pytest.raises(grpc.aio.AioRpcError) as missing:
        await stack.orders.RecordHeldTenders(
            order_pb2.RecordHeldTendersRequest(request_id=key + "x", order_id="ord_nope"),
            metadata=MERCHANT,
            timeout=10,
        )
    assert missing.value.code() == grpc.StatusCode.NOT_FOUND


async def test_cash_at_a_register_with_no_shift_open_is_refused_before_anything_is_saved(
    stack: Stack,
) -> None:
    """Cash taken at a register goes in its drawer, which the shift open there counts: with
    none open, a cash sale or a cash tender there is a `cash_needs_open_shift` conflict naming
    `tender_type` (as a gift card sold for cash there is), and no order, payment or hold is
    kept; the same request goes through once a shift is open, and counts in it. A card there
    needs no shift (the payment is the register's, in no shift's drawer)."""
    at_shut = (("x-merchant-id", MERCHANT_ID), ("x-register-id", "reg_shut"), ("x-staff-id", "s"))

    async def refused(call: Awaitable[Any]) -> None:
        with pytest.raises(grpc.aio.AioRpcError) as err:
            await call
        assert err.value.code() == grpc.StatusCode.FAILED_PRECONDITION
        problem = read_error(err.value)
        assert problem.reason == "cash_needs_open_shift", problem
        assert [f.field for f in problem.violations] == ["tender_type"]
        assert problem.metadata["register_id"] == "reg_shut"

    async def sold_there() -> list[order_pb2.Order]:
        found = await stack.orders.ListOrders(
            order_pb2.ListOrdersRequest(register_id="reg_shut"), metadata=MERCHANT, timeout=5
        )
        return list(found.orders)

    request = cash_sale(stack, quantity=1)
    await refused(stack.orders.Checkout(request, metadata=at_shut, timeout=10))
    assert await sold_there() == []

    card = cash_sale(stack, quantity=1)
    card.tender_type, card.card_token = payment_pb2.TENDER_TYPE_CARD, "tok_visa"
    card.ClearField("cash_tendered")
    by_card = await stack.orders.Checkout(card, metadata=at_shut, timeout=10)
    assert by_card.order.status == order_pb2.ORDER_STATUS_COMPLETED

    made = await stack.orders.CreateOrder(
        order_pb2.CreateOrderRequest(
            request_id=str(uuid.uuid4()),
            channel="register",
            location_id=stack.location_id,
            lines=[order_pb2.OrderLineRequest(sku="TEE", quantity=1)],
        ),
        metadata=at_shut,
        timeout=10,
    )
    cash = order_pb2.AddTenderRequest(
        request_id=str(uuid.uuid4()),
        order_id=made.order.id,
        tender_type=payment_pb2.TENDER_TYPE_CASH,
        cash_tendered=usd(3000),
    )
    await refused(stack.orders.AddTender(cash, metadata=at_shut, timeout=10))
    pending = await get_order(stack, made.order.id)
    assert (list(pending.payment_ids), pending.paid.amount) == ([], 0)
    assert payments_for(stack.payment_db, made.order.id) == 0

    opened = await stack.shifts.OpenShift(
        shifts_pb2.OpenShiftRequest(
            request_id=str(uuid.uuid4()), location_id=stack.location_id, opening_float=usd(0)
        ),
        metadata=at_shut,
        timeout=10,
    )
    sold = await stack.orders.Checkout(request, metadata=at_shut, timeout=10)
    assert sold.order.status == order_pb2.ORDER_STATUS_COMPLETED
    await stack.orders.AddTender(cash, metadata=at_shut, timeout=10)
    shift = (
        await stack.shifts.GetShift(
            shifts_pb2.GetShiftRequest(id=opened.shift.id), metadata=at_shut, timeout=5
        )
    ).shift
    assert shift.report.cash_sales == usd(5000)
