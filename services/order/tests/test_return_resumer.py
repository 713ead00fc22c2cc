"""A return whose refund's answer was lost is finished by the resumer, refunded once: real
PostgreSQL, NATS, inventory, payment and order services in this process.

Between the order and payment services sits a relay that passes every call through, except
that it drops the answer of the first refund: the money went back, the order service never
learnt it, and the client gave up. The return stays pending with its plan; the resumer asks
the same refund again under the same id (the payment service replays it) and completes it. A
late retry by the client answers the completed return and refunds nothing more.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import AsyncExitStack
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import grpc
import psycopg
import pytest
import pytest_asyncio
from order_shop import serve_order, serve_relay, tee_shop

from pos.common.v1 import money_pb2
from pos.order.v1 import order_pb2, order_pb2_grpc
from pos.payment.v1 import gift_cards_pb2 as G
from pos.payment.v1 import (
    gift_cards_pb2_grpc,
    payment_pb2,
    payment_pb2_grpc,
    shifts_pb2,
    shifts_pb2_grpc,
)
from pos_devstack.testing import Infra, serve_in_process
from pos_kit.grpc_client import read_error

pytestmark = pytest.mark.asyncio(loop_scope="session")

MERCHANT = (("x-merchant-id", "mer_return_resumer"),)


class LosingRelay(grpc.GenericRpcHandler):
    """Every call of the payment process passed through as bytes; the first refund's answer
    is lost after the refund was made."""

    def __init__(self, channel: grpc.aio.Channel) -> None:
        self.channel = channel
        self.refunds = 0
        # While set, every refund fails before it reaches the payment service.
        self.down = False
        # Every refund asked, as it was sent (its request id names the return).
        self.asked: list[bytes] = []

    def service(self, details: grpc.HandlerCallDetails) -> grpc.RpcMethodHandler | None:  # type: ignore[override]
        method: str = details.method  # type: ignore[attr-defined]
        forward = self.channel.unary_unary(method)

        async def handle(request: bytes, context: grpc.aio.ServicerContext) -> Any:
            metadata = [
                (k, v) for k, v in context.invocation_metadata() or () if k.startswith("x-")
            ]
            if method.endswith("/CreateRefund"):
                self.asked.append(request)
            if self.down and method.endswith("/CreateRefund"):
                self.refunds += 1
                await context.abort(grpc.StatusCode.UNAVAILABLE, "payment service down")
            answer = await forward(request, metadata=metadata, timeout=10)
            if method.endswith("/CreateRefund"):
                self.refunds += 1
                if self.refunds == 1:
                    await context.abort(grpc.StatusCode.UNAVAILABLE, "connection reset")
            return answer

        return grpc.unary_unary_rpc_method_handler(handle)  # type: ignore[arg-type]


@dataclass
class Stack:
    orders: order_pb2_grpc.OrderServiceStub
    payments: payment_pb2_grpc.PaymentServiceStub
    relay: LosingRelay
    location_id: str
    database_url: str
    cards: gift_cards_pb2_grpc.GiftCardServiceStub
    shifts: shifts_pb2_grpc.ShiftServiceStub

    def refunds_of(self, return_id: str) -> int:
        """How many times a refund of this return was asked of the payment service."""
        return sum(return_id.encode() in asked for asked in self.relay.asked)


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
            relay = LosingRelay(payment.channel)
            relay_port = await serve_relay(stack, relay)
            # The resumer takes over a return idle for a second, looking every 0.2 s.
            order = await stack.enter_async_context(
                serve_order(
                    infra,
                    server.url,
                    inventory.port,
                    relay_port,
                    # Long enough for a loaded machine (a call past it is answered 503
                    # before its refund is made); the lost answers are the relay's own.
                    payment_timeout_seconds=2.0,
                    saga_abandon_seconds=3.0,
                    saga_sweep_seconds=0.2,
                )
            )
            # Tees in stock: an exchange holds the tees it sells.
            location_id = await tee_shop(inventory.channel, MERCHANT[0][1], stock=20)
            yield Stack(
                order_pb2_grpc.OrderServiceStub(order.channel),
                payment_pb2_grpc.PaymentServiceStub(payment.channel),
                relay,
                location_id,
                order.database_url,
                gift_cards_pb2_grpc.GiftCardServiceStub(payment.channel),
                shifts_pb2_grpc.ShiftServiceStub(payment.channel),
            )
    finally:
        server.stop()


async def _completed_return(stack: Stack, order_id: str) -> Any:
    """The order's completed return, or None while it has none."""
    found = await stack.orders.ListReturns(
        order_pb2.ListReturnsRequest(order_id=order_id), metadata=MERCHANT, timeout=5
    )
    done = [r for r in found.returns if r.status == "completed"]
    return done[0] if done else None


async def _eventually(check: Callable[[], Awaitable[Any]], within: float = 30.0) -> Any:
    deadline = time.monotonic() + within
    while not (value := await check()):
        assert time.monotonic() < deadline, "the expected state was not reached in time"
        await asyncio.sleep(0.1)
    return value


async def test_a_return_whose_refund_answer_was_lost_is_finished_once(stack: Stack) -> None:
    sale = await stack.orders.Checkout(
        order_pb2.CheckoutRequest(
            request_id=str(uuid.uuid4()),
            location_id=stack.location_id,
            lines=[order_pb2.CheckoutLine(sku="TEE", quantity=2)],
            tender_type=payment_pb2.TENDER_TYPE_CARD,
            card_token="tok_visa",
        ),
        metadata=MERCHANT,
        timeout=20,
    )
    order = sale.order
    request = order_pb2.CreateReturnRequest(
        request_id=str(uuid.uuid4()),
        order_id=order.id,
        lines=[order_pb2.ReturnLineRequest(line_id="L1", quantity=1, restock=True)],
        reason="unwanted",
    )
    with pytest.raises(grpc.aio.AioRpcError) as err:
        await stack.orders.CreateReturn(request, metadata=MERCHANT, timeout=20)
    assert err.value.code() == grpc.StatusCode.UNAVAILABLE

    ret = await _eventually(lambda: _completed_return(stack, order.id))
    assert ret.amount.amount == 2500 and [r.amount.amount for r in ret.refunds] == [2500]
    assert stack.relay.refunds >= 2  # asked again by the resumer, under the same id

    async def refunded() -> int:
        found = await stack.payments.GetOrderPayments(
            payment_pb2.GetOrderPaymentsRequest(order_id=order.id), metadata=MERCHANT, timeout=5
        )
        return sum(p.refunded.amount for p in found.payments)

    assert await refunded() == 2500
    late = await stack.orders.CreateReturn(request, metadata=MERCHANT, timeout=20)
    assert late.order_return.id == ret.id and late.order_return.status == "completed"
    assert await refunded() == 2500


async def _sold_then_return_stranded(stack: Stack, md: Any) -> Any:
    """A card sale of one tee, then its return, whose refund fails while the payment service
    is away (the caller has set `stack.relay.down`, and sets it back): the return stays
    pending for the resumer. The sale's answer."""
    stack.relay.down = False
    sale = await stack.orders.Checkout(
        order_pb2.CheckoutRequest(
            request_id=str(uuid.uuid4()),
            location_id=stack.location_id,
            lines=[order_pb2.CheckoutLine(sku="TEE", quantity=1)],
            tender_type=payment_pb2.TENDER_TYPE_CARD,
            card_token="tok_visa",
        ),
        metadata=md,
        timeout=20,
    )
    stack.relay.down = True
    with pytest.raises(grpc.aio.AioRpcError):
        await stack.orders.CreateReturn(
            order_pb2.CreateReturnRequest(
                request_id=str(uuid.uuid4()),
                order_id=sale.order.id,
                lines=[order_pb2.ReturnLineRequest(line_id="L1", quantity=1)],
                reason="unwanted",
            ),
            metadata=md,
            timeout=20,
        )
    return sale


async def test_a_return_the_resumer_cannot_finish_waits_behind_the_others(stack: Stack) -> None:
    """A failed attempt puts the return back at the end of the resumer's queue (its window
    starts again): the oldest failures, first on every pass, would otherwise fill the pass
    and starve every pending return behind them. Once the refund goes through, it completes."""
    stack.relay.down = True
    try:
        sale = await _sold_then_return_stranded(stack, MERCHANT)
        asked = stack.relay.refunds

        async def stamps() -> tuple[datetime, datetime, str]:
            async with await psycopg.AsyncConnection.connect(stack.database_url) as conn:
                cur = await conn.execute(
                    "SELECT created_at, touched_at, status FROM order_returns"
                    " WHERE merchant_id = %s AND order_id = %s",
                    (MERCHANT[0][1], sale.order.id),
                )
                row = await cur.fetchone()
            assert row is not None
            return row  # type: ignore[no-any-return]

        # The resumer tried it (a refund asked again) and put it back: its stamp moved.
        await _eventually(lambda: _true(stack.relay.refunds > asked))
        created, updated, status = await _eventually(lambda: _when(stamps(), lambda r: r[1] > r[0]))
        assert status == "pending" and updated > created
    finally:
        stack.relay.down = False

    async def completed() -> bool:
        return (await stamps())[2] == "completed"

    await _eventually(completed)


async def _true(value: bool) -> bool:
    return value


async def _when(read: Awaitable[Any], ok: Callable[[Any], bool]) -> Any:
    value = await read
    return value if ok(value) else None


async def test_a_return_whose_refund_was_refused_for_good_is_not_retried(stack: Stack) -> None:
    """Part of the refund refused at the processor (a gift card whose spend its own refund
    gave back since: `gift_card_refund_exceeds_spent`): the return waits for a person, and
    the resumer leaves it alone, while it does retry a return that failed for a passing
    reason (the payment service away) and was left pending after it. A person's settlement
    then completes it."""
    md = MERCHANT
    stack.relay.refunds = max(stack.relay.refunds, 1)  # no answer of this test's is lost
    issued = await stack.cards.IssueGiftCard(
        G.IssueGiftCardRequest(
            request_id=str(uuid.uuid4()), amount=money_pb2.Money(amount=10_000, currency="USD")
        ),
        metadata=md,
        timeout=10,
    )
    made = await stack.orders.CreateOrder(
        order_pb2.CreateOrderRequest(
            request_id=str(uuid.uuid4()),
            channel="register",
            location_id=stack.location_id,
            lines=[order_pb2.OrderLineRequest(sku="TEE", quantity=2)],
        ),
        metadata=md,
        timeout=10,
    )
    for tender in (
        {
            "tender_type": payment_pb2.TENDER_TYPE_GIFT_CARD,
            "gift_card_code": issued.code,
            "amount": money_pb2.Money(amount=1000, currency="USD"),
        },
        {"tender_type": payment_pb2.TENDER_TYPE_CARD, "card_token": "tok_visa"},
    ):
        await stack.orders.AddTender(
            order_pb2.AddTenderRequest(
                request_id=str(uuid.uuid4()), order_id=made.order.id, **tender
            ),
            metadata=md,
            timeout=10,
        )
    await stack.orders.ConfirmOrder(
        order_pb2.ConfirmOrderRequest(request_id=str(uuid.uuid4()), order_id=made.order.id),
        metadata=md,
        timeout=10,
    )
    await stack.cards.RefundToGiftCard(
        G.RefundToGiftCardRequest(
            request_id=str(uuid.uuid4()),
            id=issued.gift_card.id,
            amount=money_pb2.Money(amount=1000, currency="USD"),
        ),
        metadata=md,
        timeout=10,
    )
    asked = order_pb2.CreateReturnRequest(
        request_id=str(uuid.uuid4()),
        order_id=made.order.id,
        lines=[order_pb2.ReturnLineRequest(line_id="L1", quantity=2, restock=True)],
        reason="unwanted",
    )
    for _ in range(3):
        with pytest.raises(grpc.aio.AioRpcError) as err:
            await stack.orders.CreateReturn(asked, metadata=md, timeout=20)
        # On a loaded machine the call may pass its deadline: the same request id again
        # finishes (or replays) the same return, as a till's retry does.
        if err.value.code() not in (
            grpc.StatusCode.DEADLINE_EXCEEDED,
            grpc.StatusCode.UNAVAILABLE,
        ):
            break
    assert err.value.code() == grpc.StatusCode.FAILED_PRECONDITION, err.value
    held = read_error(err.value).metadata["return_id"]
    assert stack.refunds_of(held) == 1

    # A return made after it, whose refund fails while the payment service is away.
    stack.relay.down = True
    try:
        sale = await _sold_then_return_stranded(stack, md)
        found = await stack.orders.ListReturns(
            order_pb2.ListReturnsRequest(order_id=sale.order.id), metadata=md, timeout=5
        )
        (passing,) = found.returns
        # The resumer has asked the later one again: it passed the older one by.
        await _eventually(lambda: _true(stack.refunds_of(passing.id) >= 2))
    finally:
        stack.relay.down = False
    assert stack.refunds_of(held) == 1
    listed = await stack.orders.ListReturns(
        order_pb2.ListReturnsRequest(order_id=made.order.id), metadata=md, timeout=5
    )
    (ret,) = listed.returns
    assert (ret.id, ret.status, ret.refusal_code) == (held, "pending", "refund_partly_failed")

    answer = await stack.orders.SettleReturn(
        order_pb2.SettleReturnRequest(
            request_id=str(uuid.uuid4()),
            order_id=made.order.id,
            return_id=held,
            outcome=order_pb2.SETTLEMENT_OUTCOME_PAID_OUT_OF_BAND,
            tender_type=payment_pb2.TENDER_TYPE_EXTERNAL,
            reference="bank transfer 88-1204",
            reason="the gift card was lost: its part paid by transfer",
            settled_by="stf_back_office",
        ),
        metadata=md,
        timeout=20,
    )
    assert answer.order_return.status == "completed"
    assert answer.order_return.settlement.amount.amount == 1000
    assert stack.refunds_of(held) == 1


def _usd(amount: int) -> money_pb2.Money:
    return money_pb2.Money(amount=amount, currency="USD")


def _till(register: str) -> tuple[tuple[str, str], ...]:
    """A register's calls, a member signed in at it (as the gateway sends them)."""
    return (*MERCHANT, ("x-register-id", register), ("x-staff-id", "stf_cashier"))


async def _open_shift(stack: Stack, till: Any, opening_float: int) -> str:
    opened = await stack.shifts.OpenShift(
        shifts_pb2.OpenShiftRequest(
            request_id=str(uuid.uuid4()),
            location_id=stack.location_id,
            opening_float=_usd(opening_float),
        ),
        metadata=till,
        timeout=10,
    )
    return str(opened.shift.id)


async def _shift(stack: Stack, shift_id: str) -> shifts_pb2.Shift:
    found = await stack.shifts.GetShift(
        shifts_pb2.GetShiftRequest(id=shift_id), metadata=MERCHANT, timeout=5
    )
    return found.shift


async def _cash_sale(stack: Stack, till: Any) -> order_pb2.Order:
    """One tee (25.00) sold at the register for cash."""
    sale = await stack.orders.Checkout(
        order_pb2.CheckoutRequest(
            request_id=str(uuid.uuid4()),
            location_id=stack.location_id,
            lines=[order_pb2.CheckoutLine(sku="TEE", quantity=1)],
            tender_type=payment_pb2.TENDER_TYPE_CASH,
            cash_tendered=_usd(2500),
        ),
        metadata=till,
        timeout=20,
    )
    return sale.order


def _return_of(order_id: str) -> order_pb2.CreateReturnRequest:
    return order_pb2.CreateReturnRequest(
        request_id=str(uuid.uuid4()),
        order_id=order_id,
        lines=[order_pb2.ReturnLineRequest(line_id="L1", quantity=1, restock=True)],
        reason="unwanted",
    )


async def test_a_cash_refund_is_refused_up_front_without_a_registers_open_shift(
    stack: Stack,
) -> None:
    """Cash given back leaves a drawer, so a return refunding a cash payment is taken at a
    register with a shift open. From the back office (no register), or at a register whose
    shift is closed, it is refused before anything is written: no return, no refund asked.
    Taken at the register while its shift is open, it goes through and the shift counts it.
    A card refund needs no drawer, and is made from the back office as before."""
    stack.relay.refunds = max(stack.relay.refunds, 1)  # no answer of this test's is lost
    till = _till("reg_refusing")
    shift = await _open_shift(stack, till, 10_000)
    order = await _cash_sale(stack, till)

    async def refused(metadata: Any, request: order_pb2.CreateReturnRequest) -> Any:
        with pytest.raises(grpc.aio.AioRpcError) as err:
            await stack.orders.CreateReturn(request, metadata=metadata, timeout=20)
        assert err.value.code() == grpc.StatusCode.FAILED_PRECONDITION
        return read_error(err.value)

    back_office = await refused(MERCHANT, _return_of(order.id))
    assert back_office.reason == "cash_refund_needs_open_shift"
    assert [v.field for v in back_office.violations] == ["tender_amounts"]
    # Naming the cash payment itself: that entry is the field at fault.
    named = _return_of(order.id)
    named.tender_amounts.add(payment_id=order.payment_id, amount=_usd(2500))
    by_name = await refused(MERCHANT, named)
    assert by_name.reason == "cash_refund_needs_open_shift"
    assert [v.field for v in by_name.violations] == ["tender_amounts[0].payment_id"]

    await stack.shifts.CloseShift(
        shifts_pb2.CloseShiftRequest(
            request_id=str(uuid.uuid4()), shift_id=shift, counted_cash=_usd(12_500)
        ),
        metadata=till,
        timeout=10,
    )
    no_shift = await refused(till, _return_of(order.id))
    assert no_shift.reason == "cash_refund_needs_open_shift"
    assert "reg_refusing" in no_shift.violations[0].description
    listed = await stack.orders.ListReturns(
        order_pb2.ListReturnsRequest(order_id=order.id), metadata=MERCHANT, timeout=5
    )
    assert list(listed.returns) == []
    assert not any(order.id.encode() in asked for asked in stack.relay.asked)

    again = await _open_shift(stack, till, 5000)
    taken = await stack.orders.CreateReturn(_return_of(order.id), metadata=till, timeout=20)
    ret = taken.order_return
    assert ret.status == "completed" and [r.status for r in ret.refunds] == ["succeeded"]
    assert (ret.register_id, ret.staff_id, ret.shift_id) == ("reg_refusing", "stf_cashier", again)
    report = (await _shift(stack, again)).report
    assert report.cash_refunds == _usd(2500) and report.expected_cash == _usd(2500)

    # Only cash needs a drawer: a card sale is returned from the back office as before.
    sale = await stack.orders.Checkout(
        order_pb2.CheckoutRequest(
            request_id=str(uuid.uuid4()),
            location_id=stack.location_id,
            lines=[order_pb2.CheckoutLine(sku="TEE", quantity=1)],
            tender_type=payment_pb2.TENDER_TYPE_CARD,
            card_token="tok_visa",
        ),
        metadata=till,
        timeout=20,
    )
    card = await stack.orders.CreateReturn(_return_of(sale.order.id), metadata=MERCHANT, timeout=20)
    assert card.order_return.status == "completed"
    assert (card.order_return.register_id, card.order_return.shift_id) == ("", "")


async def test_a_resumed_cash_refund_lands_in_the_registers_next_shift(stack: Stack) -> None:
    """A cash return taken at a register whose refund did not go through (the payment service
    away): the resumer finishes it later, with no register of its own, after the shift it was
    taken in was closed. The return is not dropped: its refund is made as from its register
    (kept with the return) and counts in the shift open there when it is paid, the
    register's next one. The closed shift's count stays as it was counted."""
    stack.relay.refunds = max(stack.relay.refunds, 1)
    till = _till("reg_resumed")
    first = await _open_shift(stack, till, 10_000)
    order = await _cash_sale(stack, till)
    stack.relay.down = True
    try:
        with pytest.raises(grpc.aio.AioRpcError) as err:
            await stack.orders.CreateReturn(_return_of(order.id), metadata=till, timeout=20)
        assert err.value.code() == grpc.StatusCode.UNAVAILABLE
        closed = await stack.shifts.CloseShift(
            shifts_pb2.CloseShiftRequest(
                request_id=str(uuid.uuid4()), shift_id=first, counted_cash=_usd(12_500)
            ),
            metadata=till,
            timeout=10,
        )
        assert closed.shift.over_short == 0
        second = await _open_shift(stack, till, 5000)
    finally:
        stack.relay.down = False

    ret = await _eventually(lambda: _completed_return(stack, order.id))
    assert [r.status for r in ret.refunds] == ["succeeded"]
    assert (ret.register_id, ret.staff_id, ret.shift_id) == ("reg_resumed", "stf_cashier", first)
    now_open = (await _shift(stack, second)).report
    assert now_open.cash_refunds == _usd(2500) and now_open.expected_cash == _usd(2500)
    was = await _shift(stack, first)
    assert was.report.cash_refunds == _usd(0) and was.over_short == 0


async def test_a_resumed_exchange_gives_its_cash_back_in_the_registers_next_shift(
    stack: Stack,
) -> None:
    """Two tees sold for cash at a register, exchanged there for one: the new tee is sold,
    then the refund of the difference does not go through (the payment service away). The
    resumer finishes it after the shift it was taken in was closed, with no register of its
    own: as a return's, the refund is made as from the exchange's register and counts in the
    shift open there when it is paid. The exchange keeps its register, member and shift."""
    stack.relay.refunds = max(stack.relay.refunds, 1)
    till = _till("reg_exchange_resumed")
    first = await _open_shift(stack, till, 10_000)
    sale = await stack.orders.Checkout(
        order_pb2.CheckoutRequest(
            request_id=str(uuid.uuid4()),
            location_id=stack.location_id,
            lines=[order_pb2.CheckoutLine(sku="TEE", quantity=2)],
            tender_type=payment_pb2.TENDER_TYPE_CASH,
            cash_tendered=_usd(5000),
        ),
        metadata=till,
        timeout=20,
    )
    order = sale.order
    exchange = order_pb2.CreateExchangeRequest(
        request_id=str(uuid.uuid4()),
        order_id=order.id,
        lines=[order_pb2.ReturnLineRequest(line_id="L1", quantity=2, restock=True)],
        new_lines=[order_pb2.ExchangeLine(sku="TEE", quantity=1)],
        reason="unwanted",
    )
    stack.relay.down = True
    try:
        with pytest.raises(grpc.aio.AioRpcError) as err:
            await stack.orders.CreateExchange(exchange, metadata=till, timeout=30)
        assert err.value.code() == grpc.StatusCode.UNAVAILABLE
        await stack.shifts.CloseShift(
            shifts_pb2.CloseShiftRequest(
                request_id=str(uuid.uuid4()), shift_id=first, counted_cash=_usd(15_000)
            ),
            metadata=till,
            timeout=10,
        )
        second = await _open_shift(stack, till, 5000)
    finally:
        stack.relay.down = False

    ret = await _eventually(lambda: _completed_return(stack, order.id))
    assert ret.exchange_order_id and [r.amount for r in ret.refunds] == [_usd(2500)]
    assert [r.status for r in ret.refunds] == ["succeeded"]
    assert (ret.register_id, ret.staff_id, ret.shift_id) == (
        "reg_exchange_resumed", "stf_cashier", first,
    )  # fmt: skip
    now_open = (await _shift(stack, second)).report
    assert now_open.cash_refunds == _usd(2500) and now_open.expected_cash == _usd(2500)
    assert (await _shift(stack, first)).report.cash_refunds == _usd(0)
