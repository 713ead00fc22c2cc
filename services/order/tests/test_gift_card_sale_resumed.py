"""A register sale with gift card lines whose card's answer was lost (`tok_timeout`: 503
`payment_pending`), with the real services and the order service's own resumer running (short
windows: the payment reconciler settles the card within a second, an idle saga is the
resumer's after 1.5 s).

Only the run that activates a card learns its code, and it is stored nowhere: the resumer,
which answers nobody, does not activate the cards. It waits for the till's retry (the same
request id), which activates them and shows their codes as a sale completed at once does;
a sale nobody comes back for by its expiry is cancelled, its payment refunded, and no card is
left live."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from typing import Any

import grpc
import psycopg
import pytest
import pytest_asyncio
from order_shop import CRASH_SETTINGS, crash_stack, serve_order_on, tee_shop
from order_shop import CrashStack as Stack

from pos.common.v1 import money_pb2
from pos.order.v1 import order_pb2, order_pb2_grpc
from pos.payment.v1 import gift_cards_pb2 as G
from pos.payment.v1 import gift_cards_pb2_grpc, payment_pb2, payment_pb2_grpc
from pos_devstack.testing import Infra, until
from pos_kit.grpc_client import read_error

pytestmark = pytest.mark.asyncio(loop_scope="session")

# The sale's own expiry far enough away that the till's retry comes before it.
FAST = {**CRASH_SETTINGS, "hold_seconds": 300}


@pytest_asyncio.fixture(loop_scope="session", scope="module")
async def stack(infra: Infra) -> AsyncIterator[Stack]:
    async with crash_stack(infra) as found:
        yield found


def usd(amount: int) -> money_pb2.Money:
    return money_pb2.Money(amount=amount, currency="USD")


def gift(amount: int, code: str = "") -> order_pb2.CheckoutLine:
    return order_pb2.CheckoutLine(
        quantity=1, gift_card=order_pb2.GiftCardLineRequest(amount=usd(amount), code=code)
    )


TEE = order_pb2.CheckoutLine(sku="TEE", quantity=1)
# Everything the order service keeps of a sale: the order, the stored answers, the events.
KEPT = [
    "SELECT count(*) FROM orders t WHERE t::text LIKE %s",
    "SELECT count(*) FROM processed_requests t WHERE t::text LIKE %s",
    "SELECT count(*) FROM outbox t WHERE t::text LIKE %s",
]


def rows(url: str, query: str, *args: Any) -> list[tuple[Any, ...]]:
    with psycopg.connect(url) as conn:
        return list(conn.execute(query, args).fetchall())  # type: ignore[arg-type]


def seen_captured(stack: Stack, order_id: str) -> bool:
    """The resumer has heard the card was captured (or taken the sale further)."""
    found = rows(
        stack.order_db,
        "SELECT status, saga->'tenders'->0->>'state' FROM orders WHERE id = %s",
        order_id,
    )
    return bool(found) and (found[0][0] != "pending_payment" or found[0][1] == "captured")


async def _retried_after_settling(
    stack: Stack, *lines: order_pb2.CheckoutLine
) -> tuple[order_pb2.CheckoutResponse, tuple[tuple[str, str], ...]]:
    """A sale whose card's answer was lost, left to the payment reconciler and the resumer
    until the resumer has heard the card was captured; then the till's retry."""
    merchant = f"mer_giftresume_{uuid.uuid4().hex[:6]}"
    location = await tee_shop(stack.inventory, merchant)
    meta = (("x-merchant-id", merchant),)
    ports = (stack.nats_url, stack.inventory_port, stack.payment_port)
    async with serve_order_on(stack.order_db, *ports, **FAST) as service:
        stub = order_pb2_grpc.OrderServiceStub(service.channel)
        request = order_pb2.CheckoutRequest(
            request_id=str(uuid.uuid4()),
            location_id=location,
            lines=list(lines),
            tender_type=payment_pb2.TENDER_TYPE_CARD,
            card_token="tok_timeout",
        )
        with pytest.raises(grpc.aio.AioRpcError) as err:
            await stub.Checkout(request, metadata=meta, timeout=30)
        assert read_error(err.value).reason == "payment_pending"
        ((order_id,),) = rows(
            stack.order_db, "SELECT id FROM orders WHERE merchant_id = %s", merchant
        )
        # The payment reconciler captures the card; the resumer hears of it.
        await until(lambda: seen_captured(stack, order_id), limit=30)
        # The till comes back with the same request.
        sale = await stub.Checkout(request, metadata=meta, timeout=30)
    assert sale.order.id == order_id
    return sale, meta


async def _check_cards(
    stack: Stack,
    sale: order_pb2.CheckoutResponse,
    meta: tuple[tuple[str, str], ...],
    amounts: dict[str, int],
) -> dict[str, str]:
    """The cards shown are live, hold their lines' value, and their codes are kept nowhere in
    the order service; the card was charged once and kept. Answers the codes by line."""
    assert sale.order.status == order_pb2.ORDER_STATUS_COMPLETED
    shown = {c.line_id: c for c in sale.gift_cards}
    assert set(shown) == set(amounts)
    lines = {ln.id: ln for ln in sale.order.lines}
    async with grpc.aio.insecure_channel(f"127.0.0.1:{stack.payment_port}") as channel:
        cards = gift_cards_pb2_grpc.GiftCardServiceStub(channel)
        for line_id, amount in amounts.items():
            found = await cards.LookupGiftCard(
                G.LookupGiftCardRequest(code=shown[line_id].code), metadata=meta, timeout=5
            )
            card = found.gift_card
            assert card.id == shown[line_id].gift_card_id
            assert card.id == lines[line_id].gift_card.gift_card_id
            assert card.balance.amount == amount
            assert card.status == G.GIFT_CARD_STATUS_ACTIVE
        payments = payment_pb2_grpc.PaymentServiceStub(channel)
        paid = await payments.GetOrderPayments(
            payment_pb2.GetOrderPaymentsRequest(order_id=sale.order.id), metadata=meta, timeout=5
        )
    (payment,) = paid.payments
    assert payment.captured.amount == sale.order.total.amount and payment.refunded.amount == 0
    for card in shown.values():
        for query in KEPT:
            assert rows(stack.order_db, query, f"%{card.code}%") == [(0,)], query
    return {line_id: c.code for line_id, c in shown.items()}


async def test_the_tills_retry_after_the_card_settled_shows_the_gift_cards_code(
    stack: Stack,
) -> None:
    """The defect: the resumer activated the card once the payment settled, and the retry
    answered the completed sale with no card: paid for, its code seen by nobody."""
    sale, meta = await _retried_after_settling(stack, TEE, gift(5000))
    await _check_cards(stack, sale, meta, {"L2": 5000})


async def test_the_tills_retry_activates_a_pre_printed_card_the_resumer_could_not(
    stack: Stack,
) -> None:
    """Before, the resumer, without the code, cancelled the paid sale (`confirmation_failed`)
    and the retry carrying the code heard `sale_cancelled`."""
    printed = "RESUMED-" + uuid.uuid4().hex[:12].upper()
    sale, meta = await _retried_after_settling(stack, gift(2000, printed), gift(1500))
    codes = await _check_cards(stack, sale, meta, {"L1": 2000, "L2": 1500})
    assert codes["L1"] == printed and codes["L2"] != printed


async def test_a_gift_card_sale_nobody_comes_back_for_is_refunded_and_leaves_no_card(
    stack: Stack,
) -> None:
    merchant = f"mer_giftleft_{uuid.uuid4().hex[:6]}"
    location = await tee_shop(stack.inventory, merchant)
    meta = (("x-merchant-id", merchant),)
    ports = (stack.nats_url, stack.inventory_port, stack.payment_port)
    payment_channel = grpc.aio.insecure_channel(f"127.0.0.1:{stack.payment_port}")
    payments = payment_pb2_grpc.PaymentServiceStub(payment_channel)
    try:
        async with serve_order_on(stack.order_db, *ports, **FAST) as service:
            stub = order_pb2_grpc.OrderServiceStub(service.channel)
            request = order_pb2.CheckoutRequest(
                request_id=str(uuid.uuid4()),
                location_id=location,
                lines=[gift(3000)],
                tender_type=payment_pb2.TENDER_TYPE_CARD,
                card_token="tok_timeout",
            )
            with pytest.raises(grpc.aio.AioRpcError) as err:
                await stub.Checkout(request, metadata=meta, timeout=30)
            assert read_error(err.value).reason == "payment_pending"
            ((order_id,),) = rows(
                stack.order_db, "SELECT id FROM orders WHERE merchant_id = %s", merchant
            )
            await until(lambda: seen_captured(stack, order_id), limit=30)
            # Nobody came back by the sale's expiry (moved to now rather than waited for).
            with psycopg.connect(stack.order_db) as conn:
                conn.execute("UPDATE orders SET due_at = now() WHERE id = %s", (order_id,))

            def ended() -> bool:
                found = rows(stack.order_db, "SELECT status FROM orders WHERE id = %s", order_id)
                return found == [("cancelled",)]

            await until(ended, limit=30)
            paid = await payments.GetOrderPayments(
                payment_pb2.GetOrderPaymentsRequest(order_id=order_id), metadata=meta, timeout=5
            )
            (payment,) = paid.payments
            assert payment.captured.amount == payment.refunded.amount == 3000
            # No card was made for it (none could have been shown to anyone).
            live = rows(
                stack.payment_db,
                "SELECT count(*) FROM gift_cards WHERE order_id = %s AND status = 'active'",
                order_id,
            )
            assert live == [(0,)]
            # The till's retry after that is told the sale was cancelled, not sold.
            with pytest.raises(grpc.aio.AioRpcError) as err:
                await stub.Checkout(request, metadata=meta, timeout=30)
            assert read_error(err.value).reason == "sale_cancelled"
    finally:
        await payment_channel.close()


async def test_a_code_held_by_a_sale_in_progress_is_sold_again_once_that_sale_is_abandoned(
    stack: Stack,
) -> None:
    """A sale whose card's answer was lost holds its pre-printed code: another till selling
    the same card meanwhile is refused before its card is charged (before, it was charged and
    then refunded, or the first sale was). Nobody comes back for the first sale: the resumer
    cancels it, and its compensation releases the code, which the next sale sells."""
    merchant = f"mer_giftheld_{uuid.uuid4().hex[:6]}"
    location = await tee_shop(stack.inventory, merchant)
    meta = (("x-merchant-id", merchant),)
    ports = (stack.nats_url, stack.inventory_port, stack.payment_port)
    printed = "HELD-" + uuid.uuid4().hex[:12].upper()

    def sale(card_token: str, *lines: order_pb2.CheckoutLine) -> order_pb2.CheckoutRequest:
        return order_pb2.CheckoutRequest(
            request_id=str(uuid.uuid4()),
            location_id=location,
            lines=list(lines),
            tender_type=payment_pb2.TENDER_TYPE_CARD,
            card_token=card_token,
        )

    def payments() -> list[tuple[Any, ...]]:
        return rows(
            stack.payment_db,
            "SELECT order_id, status FROM payments WHERE merchant_id = %s ORDER BY created_at",
            merchant,
        )

    async with serve_order_on(stack.order_db, *ports, **FAST) as service:
        stub = order_pb2_grpc.OrderServiceStub(service.channel)
        with pytest.raises(grpc.aio.AioRpcError) as err:
            await stub.Checkout(sale("tok_timeout", gift(2500, printed)), metadata=meta, timeout=30)
        assert read_error(err.value).reason == "payment_pending"
        ((held_by,),) = rows(
            stack.order_db, "SELECT id FROM orders WHERE merchant_id = %s", merchant
        )

        with pytest.raises(grpc.aio.AioRpcError) as err:
            await stub.Checkout(
                sale("tok_visa", TEE, gift(2500, printed.lower())), metadata=meta, timeout=30
            )
        assert err.value.code() == grpc.StatusCode.FAILED_PRECONDITION
        problem = read_error(err.value)
        assert problem.reason == "gift_card_code_taken"
        assert [v.field for v in problem.violations] == ["lines[1].gift_card.code"]
        assert printed not in str(problem) and printed.lower() not in str(problem)
        # Nothing of the refused sale was kept or charged: the one order, its one payment.
        assert rows(stack.order_db, "SELECT id FROM orders WHERE merchant_id = %s", merchant) == [
            (held_by,)
        ]
        assert [order_id for order_id, _ in payments()] == [held_by]

        # Nobody comes back for the first sale by its expiry (moved to now).
        await until(lambda: seen_captured(stack, held_by), limit=30)
        with psycopg.connect(stack.order_db) as conn:
            conn.execute("UPDATE orders SET due_at = now() WHERE id = %s", (held_by,))

        def ended() -> bool:
            found = rows(stack.order_db, "SELECT status FROM orders WHERE id = %s", held_by)
            return found == [("cancelled",)]

        await until(ended, limit=30)
        sold = await stub.Checkout(sale("tok_visa", gift(2500, printed)), metadata=meta, timeout=30)
    assert sold.order.status == order_pb2.ORDER_STATUS_COMPLETED
    assert [c.code for c in sold.gift_cards] == [printed]
    live = rows(
        stack.payment_db,
        "SELECT order_id FROM gift_cards WHERE merchant_id = %s AND status = 'active'",
        merchant,
    )
    assert live == [(sold.order.id,)]


async def test_a_pre_printed_card_whose_answer_was_lost_is_deactivated_with_its_sale(
    stack: Stack,
) -> None:
    """The card was made with its code, its answer lost (held at a relay past the order
    service's deadline); nobody came back, so the sale is cancelled and refunded at its expiry.
    Asked again without its code (the resumer never has it), the issue is another request to
    the payment service: the card is found by its order line and deactivated (it stayed live,
    before: refunded money and a card holding it)."""
    from test_cancel_races import Relay

    merchant = f"mer_giftlost_{uuid.uuid4().hex[:6]}"
    location = await tee_shop(stack.inventory, merchant)
    meta = (("x-merchant-id", merchant),)
    payment_channel = grpc.aio.insecure_channel(f"127.0.0.1:{stack.payment_port}")
    relay = Relay(payment_channel)
    relay_server = grpc.aio.server()
    relay_server.add_generic_rpc_handlers((relay,))
    relay_port = relay_server.add_insecure_port("127.0.0.1:0")
    await relay_server.start()
    ports = (stack.nats_url, stack.inventory_port, relay_port)
    try:
        async with serve_order_on(stack.order_db, *ports, **FAST) as service:
            stub = order_pb2_grpc.OrderServiceStub(service.channel)
            gate = relay.gate("IssueGiftCard", after=True)
            request = order_pb2.CheckoutRequest(
                request_id=str(uuid.uuid4()),
                location_id=location,
                lines=[gift(3000, code=f"PRE-{uuid.uuid4().hex[:10]}")],
                tender_type=payment_pb2.TENDER_TYPE_CARD,
                card_token="tok_visa",
            )
            with pytest.raises(grpc.aio.AioRpcError):
                await stub.Checkout(request, metadata=meta, timeout=30)
            assert gate.arrived.is_set()  # the card was made; its answer never came back
            gate.opened.set()
            ((order_id,),) = rows(
                stack.order_db, "SELECT id FROM orders WHERE merchant_id = %s", merchant
            )
            made = rows(
                stack.payment_db, "SELECT status FROM gift_cards WHERE order_id = %s", order_id
            )
            assert made == [("active",)]
            with psycopg.connect(stack.order_db) as conn:
                conn.execute("UPDATE orders SET due_at = now() WHERE id = %s", (order_id,))

            def ended() -> bool:
                found = rows(stack.order_db, "SELECT status FROM orders WHERE id = %s", order_id)
                return found == [("cancelled",)]

            await until(ended, limit=30)
            await until(
                lambda: (
                    rows(
                        stack.payment_db,
                        "SELECT status FROM gift_cards WHERE order_id = %s",
                        order_id,
                    )
                    != [("active",)]
                ),
                limit=10,
            )
        payments = payment_pb2_grpc.PaymentServiceStub(payment_channel)
        paid = await payments.GetOrderPayments(
            payment_pb2.GetOrderPaymentsRequest(order_id=order_id), metadata=meta, timeout=5
        )
        (payment,) = paid.payments
        assert payment.captured.amount == payment.refunded.amount == 3000
        ((status, balance),) = rows(
            stack.payment_db,
            "SELECT status, balance FROM gift_cards WHERE order_id = %s",
            order_id,
        )
        assert (status, balance) != ("active", 3000)
        assert balance == 0
    finally:
        await relay_server.stop(None)
        await payment_channel.close()
