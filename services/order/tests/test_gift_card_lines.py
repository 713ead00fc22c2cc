"""Gift cards sold as order lines, through the saga with the real services (PostgreSQL, NATS,
inventory, payment and order in this process): activated when the order is confirmed, under
request ids derived from the order; the code answered once and kept nowhere; a sale that is
not confirmed leaves no live card and no money taken."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack
from dataclasses import dataclass
from typing import Any

import grpc
import psycopg
import pytest
import pytest_asyncio
from order_shop import serve_order, tee_shop

from pos.common.v1 import money_pb2
from pos.order.v1 import order_pb2, order_pb2_grpc
from pos.payment.v1 import gift_cards_pb2 as G
from pos.payment.v1 import gift_cards_pb2_grpc, payment_pb2, payment_pb2_grpc
from pos_devstack.testing import Infra, serve_in_process
from pos_kit.grpc_client import read_error

pytestmark = pytest.mark.asyncio(loop_scope="session")

MERCHANT = (("x-merchant-id", "mer_giftlines"),)


def usd(amount: int) -> money_pb2.Money:
    return money_pb2.Money(amount=amount, currency="USD")


@dataclass
class Shop:
    orders: order_pb2_grpc.OrderServiceStub
    cards: gift_cards_pb2_grpc.GiftCardServiceStub
    payments: payment_pb2_grpc.PaymentServiceStub
    order_db: str
    payment_db: str
    location_id: str

    def sql(self, query: str, *args: Any, db: str = "") -> list[tuple[Any, ...]]:
        with psycopg.connect(db or self.order_db) as conn:
            return conn.execute(query, args).fetchall()  # type: ignore[arg-type]

    def kept(self) -> tuple[Any, ...]:
        """How many orders, payments and gift cards the merchant has."""
        merchant = MERCHANT[0][1]
        return (
            self.sql("SELECT count(*) FROM orders WHERE merchant_id = %s", merchant),
            self.sql(
                "SELECT count(*) FROM payments WHERE merchant_id = %s", merchant, db=self.payment_db
            ),
            self.sql(
                "SELECT count(*) FROM gift_cards WHERE merchant_id = %s",
                merchant,
                db=self.payment_db,
            ),
        )

    async def checkout(self, *lines: order_pb2.CheckoutLine, card: str = "tok_visa") -> Any:
        request = order_pb2.CheckoutRequest(
            request_id=str(uuid.uuid4()),
            location_id=self.location_id,
            lines=list(lines),
            tender_type=payment_pb2.TENDER_TYPE_CARD,
            card_token=card,
        )
        return request, await self.orders.Checkout(request, metadata=MERCHANT, timeout=20)

    async def lookup(self, code: str) -> G.GiftCard:
        found = await self.cards.LookupGiftCard(
            G.LookupGiftCardRequest(code=code), metadata=MERCHANT, timeout=5
        )
        return found.gift_card


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
            order = await stack.enter_async_context(
                serve_order(infra, server.url, inventory.port, payment.port)
            )
            location_id = await tee_shop(inventory.channel, MERCHANT[0][1])
            yield Shop(
                order_pb2_grpc.OrderServiceStub(order.channel),
                gift_cards_pb2_grpc.GiftCardServiceStub(payment.channel),
                payment_pb2_grpc.PaymentServiceStub(payment.channel),
                order.database_url,
                payment.database_url,
                location_id,
            )
    finally:
        server.stop()


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


async def test_gift_card_lines_are_activated_at_confirmation_and_their_codes_shown_once(
    shop: Shop,
) -> None:
    printed = "PRINTED-" + uuid.uuid4().hex[:12].upper()
    request, sale = await shop.checkout(TEE, gift(5000), gift(2000, printed))

    order = sale.order
    assert order.status == order_pb2.ORDER_STATUS_COMPLETED
    # Stored value is neither discounted nor taxed; it is paid for like goods.
    assert order.subtotal.amount == 2500 + 5000 + 2000
    assert order.total.amount == 9500 and sale.payment.captured.amount == 9500
    cards = {c.line_id: c for c in sale.gift_cards}
    assert set(cards) == {"L2", "L3"}
    assert cards["L3"].code == printed
    generated = cards["L2"].code
    assert generated and generated != printed
    lines = {ln.id: ln for ln in order.lines}
    assert not lines["L1"].HasField("gift_card")
    for line_id, amount, code in (("L2", 5000, generated), ("L3", 2000, printed)):
        card = await shop.lookup(code)
        assert card.id == lines[line_id].gift_card.gift_card_id == cards[line_id].gift_card_id
        assert card.code_last4 == lines[line_id].gift_card.code_last4 == code[-4:]
        assert card.balance.amount == amount and card.status == G.GIFT_CARD_STATUS_ACTIVE
        assert (card.order_id, card.order_line_id, card.reason) == (order.id, line_id, "sale")
        # The card's request id derives from the order: asking again replays the same card.
        again = await shop.cards.IssueGiftCard(
            G.IssueGiftCardRequest(
                request_id=f"{order.id}/gift_card/{line_id}",
                amount=usd(amount),
                code=code if line_id == "L3" else "",
                order_id=order.id,
                order_line_id=line_id,
                reason="sale",
                location_id=order.location_id,
            ),
            metadata=MERCHANT,
            timeout=5,
        )
        assert again.gift_card.id == card.id and again.code_redacted

    # A retry of the same sale replays it: the same order and cards, and no code.
    replay = await shop.orders.Checkout(request, metadata=MERCHANT, timeout=20)
    assert replay.order == order and not replay.gift_cards
    # The codes are kept nowhere in the order service's database.
    for code in (generated, printed):
        for query in KEPT:
            assert shop.sql(query, f"%{code}%") == [(0,)], query


async def test_a_declined_sale_activates_no_gift_card(shop: Shop) -> None:
    printed = "DECLINED-" + uuid.uuid4().hex[:12].upper()
    _, sale = await shop.checkout(gift(3000, printed), card="tok_declined")
    assert sale.order.status == order_pb2.ORDER_STATUS_CANCELLED
    assert sale.order.cancel_reason == "payment_declined" and not sale.gift_cards
    with pytest.raises(grpc.aio.AioRpcError) as err:
        await shop.lookup(printed)
    assert err.value.code() == grpc.StatusCode.NOT_FOUND
    # The code the declined sale reserved was released with it: the card can be sold.
    _, again = await shop.checkout(gift(3000, printed))
    assert again.order.status == order_pb2.ORDER_STATUS_COMPLETED
    assert [c.code for c in again.gift_cards] == [printed]


async def test_a_card_over_the_maximum_balance_is_refused_before_anything_is_charged(
    shop: Shop,
) -> None:
    """The second card is over the merchant's maximum balance (2,000.00 by default). Before,
    it was found only at its activation, after the card tender was charged: the payment was
    refunded and the first card activated then deactivated (counted as sold in the settlement
    report). Now the sale is refused before it is saved, naming the line: no order, no
    payment, no card."""
    first = "FIRSTCARD-" + uuid.uuid4().hex[:12].upper()
    before = shop.kept()
    with pytest.raises(grpc.aio.AioRpcError) as err:
        await shop.checkout(TEE, gift(10000, first), gift(250000))
    assert err.value.code() == grpc.StatusCode.FAILED_PRECONDITION
    problem = read_error(err.value)
    assert problem.reason == "gift_card_balance_limit"
    assert [v.field for v in problem.violations] == ["lines[2].gift_card.amount"]
    assert shop.kept() == before
    with pytest.raises(grpc.aio.AioRpcError) as missing:
        await shop.lookup(first)
    assert missing.value.code() == grpc.StatusCode.NOT_FOUND


async def test_a_pre_printed_code_already_taken_is_refused_before_anything_is_charged(
    shop: Shop,
) -> None:
    """Before, a code another card had was found only at the activation, after the payment:
    refunded, and the sale's other cards activated and deactivated. Now the line is refused
    first (the code written another way finds the same card), and the card that has the code
    is untouched."""
    printed = "TAKEN-" + uuid.uuid4().hex[:12].upper()
    _, sold = await shop.checkout(gift(1500, printed))
    (issued,) = sold.gift_cards
    before = shop.kept()
    again = "-".join(printed[i : i + 4] for i in range(0, len(printed), 4)).lower()
    with pytest.raises(grpc.aio.AioRpcError) as err:
        await shop.checkout(TEE, gift(1000), gift(2000, again))
    assert err.value.code() == grpc.StatusCode.FAILED_PRECONDITION
    problem = read_error(err.value)
    assert problem.reason == "gift_card_code_taken"
    assert [v.field for v in problem.violations] == ["lines[2].gift_card.code"]
    assert printed not in str(problem) and again not in str(problem)
    assert shop.kept() == before
    card = await shop.lookup(printed)
    assert card.id == issued.gift_card_id and card.balance.amount == 1500
    assert card.status == G.GIFT_CARD_STATUS_ACTIVE
    # One sale naming the same code twice is refused the same way, on the second line.
    fresh = "TWICE-" + uuid.uuid4().hex[:12].upper()
    with pytest.raises(grpc.aio.AioRpcError) as err:
        await shop.checkout(gift(1000, fresh), gift(1000, fresh.lower()))
    problem = read_error(err.value)
    assert problem.reason == "gift_card_code_taken"
    assert [v.field for v in problem.violations] == ["lines[1].gift_card.code"]
    assert shop.kept() == before


async def test_a_pre_printed_code_of_fewer_than_8_letters_or_digits_is_refused_on_its_line(
    shop: Shop,
) -> None:
    """Dashes are no secret: a line's code with fewer than 8 letters or digits is a 400 naming
    the line's code (never repeating it), before anything is charged or activated."""
    before = shop.kept()
    for code in ("-------K", "K_______"):
        with pytest.raises(grpc.aio.AioRpcError) as err:
            await shop.checkout(TEE, gift(1000, code))
        assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT
        problem = read_error(err.value)
        assert [v.field for v in problem.violations] == ["lines[1].gift_card.code"]
        assert code not in str(problem)
    assert shop.kept() == before


async def test_concurrent_sales_of_one_pre_printed_code_charge_only_the_one_that_sells_it(
    shop: Shop,
) -> None:
    """Five tills sell the same pre-printed card at once. Before, each one's check found the
    code free, each card was charged, and all but one lost at the activation: refunded, the
    customers saw a charge and a refund. Now the code is reserved for the sale's order at the
    payment service before anything is charged (atomically: one reservation per code): one
    sale is charged and sells the card, the others are refused first with the 409 the taken
    code gets, and nothing of theirs is kept (no order, no payment)."""
    printed = "RACE-" + uuid.uuid4().hex[:12].upper()
    refunds = "SELECT count(*) FROM refunds WHERE merchant_id = %s"
    before, refunded = shop.kept(), shop.sql(refunds, MERCHANT[0][1], db=shop.payment_db)
    answers = await asyncio.gather(
        *(shop.checkout(TEE, gift(2000, printed)) for _ in range(5)), return_exceptions=True
    )
    sold = [a for a in answers if not isinstance(a, BaseException)]
    refused = [a for a in answers if isinstance(a, BaseException)]
    assert len(sold) == 1, answers
    (_, sale) = sold[0]
    assert sale.order.status == order_pb2.ORDER_STATUS_COMPLETED
    assert [c.code for c in sale.gift_cards] == [printed]
    for err in refused:
        assert isinstance(err, grpc.aio.AioRpcError), err
        assert err.code() == grpc.StatusCode.FAILED_PRECONDITION
        problem = read_error(err)
        assert problem.reason == "gift_card_code_taken"
        assert [v.field for v in problem.violations] == ["lines[1].gift_card.code"]
        assert printed not in str(problem)
    # One order, one payment (charged once, nothing refunded), one card.
    assert tuple(n[0][0] for n in shop.kept()) == tuple(n[0][0] + 1 for n in before)
    assert shop.sql(refunds, MERCHANT[0][1], db=shop.payment_db) == refunded
    card = await shop.lookup(printed)
    assert card.order_id == sale.order.id and card.balance.amount == 2000
    assert card.status == G.GIFT_CARD_STATUS_ACTIVE


async def test_a_returned_gift_card_line_deactivates_its_card_unless_it_was_spent(
    shop: Shop,
) -> None:
    _, sale = await shop.checkout(TEE, gift(3000), gift(4000))
    order, codes = sale.order, {c.line_id: c.code for c in sale.gift_cards}
    # The second card is spent a little: it can no longer be returned.
    await shop.cards.RedeemGiftCard(
        G.RedeemGiftCardRequest(
            request_id=str(uuid.uuid4()), code=codes["L3"], amount=usd(100), reference="coffee"
        ),
        metadata=MERCHANT,
        timeout=5,
    )

    def back(line_id: str) -> order_pb2.CreateReturnRequest:
        return order_pb2.CreateReturnRequest(
            request_id=str(uuid.uuid4()),
            order_id=order.id,
            lines=[order_pb2.ReturnLineRequest(line_id=line_id, quantity=1, restock=True)],
            reason="unwanted",
        )

    with pytest.raises(grpc.aio.AioRpcError) as err:
        await shop.orders.CreateReturn(back("L3"), metadata=MERCHANT, timeout=20)
    assert [v.field for v in read_error(err.value).violations] == ["lines[0].line_id"]
    assert (await shop.lookup(codes["L3"])).balance.amount == 3900

    returned = await shop.orders.CreateReturn(back("L2"), metadata=MERCHANT, timeout=20)
    ret = returned.order_return
    assert ret.amount.amount == 3000 and not ret.lines[0].restock
    card = await shop.lookup(codes["L2"])
    assert card.status == G.GIFT_CARD_STATUS_DEACTIVATED and card.balance.amount == 0
    paid = await shop.payments.GetOrderPayments(
        payment_pb2.GetOrderPaymentsRequest(order_id=order.id), metadata=MERCHANT, timeout=5
    )
    assert paid.payments[0].refunded.amount == 3000


async def test_a_returned_card_holding_more_than_its_line_is_not_wiped_out(shop: Shop) -> None:
    """A card sold for 2,000 and loaded with 500 since: its return would refund 2,000 and
    deactivate 2,500. The deactivation is only made while the card holds what the line refunds
    (checked under the card's lock, so a spend racing the return is caught the same way): the
    return is refused, nothing is refunded, and the card keeps its 2,500."""
    _, sale = await shop.checkout(gift(2000))
    order, (issued,) = sale.order, sale.gift_cards
    card = await shop.lookup(issued.code)
    await shop.cards.LoadGiftCard(
        G.LoadGiftCardRequest(request_id=str(uuid.uuid4()), id=card.id, amount=usd(500)),
        metadata=MERCHANT,
        timeout=5,
    )
    back = order_pb2.CreateReturnRequest(
        request_id=str(uuid.uuid4()),
        order_id=order.id,
        lines=[order_pb2.ReturnLineRequest(line_id=issued.line_id, quantity=1)],
        reason="unwanted",
    )
    with pytest.raises(grpc.aio.AioRpcError) as err:
        await shop.orders.CreateReturn(back, metadata=MERCHANT, timeout=20)
    assert read_error(err.value).reason == "gift_card_balance_changed"
    card = await shop.lookup(issued.code)
    assert card.status == G.GIFT_CARD_STATUS_ACTIVE and card.balance.amount == 2500
    paid = await shop.payments.GetOrderPayments(
        payment_pb2.GetOrderPaymentsRequest(order_id=order.id), metadata=MERCHANT, timeout=5
    )
    assert paid.payments[0].refunded.amount == 0
    # Dropped, not left for a person or the resumer: its units can be returned later.
    assert shop.sql("SELECT count(*) FROM order_returns WHERE order_id = %s", order.id) == [(0,)]


async def test_a_gift_card_line_with_a_discount_or_an_entered_price_is_refused(
    shop: Shop,
) -> None:
    """A gift card is sold at its value, never discounted: a `manual` discount or an entered
    `unit_price` on its line is a 400 naming that field and nothing is sold. Before, both were
    accepted and dropped without a word (the card sold at full value, 201)."""
    before = shop.kept()
    line = gift(2500)
    line.manual.CopyFrom(order_pb2.ManualAdjustment(kind="percent", value=5000, reason="promo"))
    priced = gift(2500)
    priced.unit_price.CopyFrom(usd(100))
    with pytest.raises(grpc.aio.AioRpcError) as err:
        await shop.checkout(TEE, line, priced)
    assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    fields = [v.field for v in read_error(err.value).violations]
    assert fields == ["lines[1].manual", "lines[2].unit_price"]
    assert shop.kept() == before


async def test_a_cancelled_orders_line_card_is_found_when_the_line_has_another_card(
    shop: Shop,
) -> None:
    """The order's line had a card already, issued for another amount under another request
    (the payment service keeps one card a line: its issue is refused `gift_card_line_issued`,
    and so is the recovery's ask). The confirmation fails and the order is cancelled and
    refunded; its recovery finds the line's card by its order line and deactivates it, as it
    does when the payment service answers `idempotency_key_reused`. Before, only that answer
    was looked up: the card stayed live beside a refunded sale."""
    created = await shop.orders.CreateOrder(
        order_pb2.CreateOrderRequest(
            request_id=str(uuid.uuid4()),
            channel="web",
            location_id=shop.location_id,
            lines=[
                order_pb2.OrderLineRequest(
                    quantity=1, gift_card=order_pb2.GiftCardLineRequest(amount=usd(4000))
                )
            ],
        ),
        metadata=MERCHANT,
        timeout=10,
    )
    order = created.order
    (line,) = order.lines
    other = await shop.cards.IssueGiftCard(
        G.IssueGiftCardRequest(
            request_id=str(uuid.uuid4()),
            amount=usd(1000),
            order_id=order.id,
            order_line_id=line.id,
            reason="sale",
            location_id=shop.location_id,
        ),
        metadata=MERCHANT,
        timeout=5,
    )
    assert other.gift_card.status == G.GIFT_CARD_STATUS_ACTIVE
    tendered = await shop.orders.AddTender(
        order_pb2.AddTenderRequest(
            request_id=str(uuid.uuid4()),
            order_id=order.id,
            tender_type=payment_pb2.TENDER_TYPE_CARD,
            card_token="tok_visa",
        ),
        metadata=MERCHANT,
        timeout=20,
    )
    assert tendered.order.paid.amount == 4000
    with pytest.raises(grpc.aio.AioRpcError) as err:
        await shop.orders.ConfirmOrder(
            order_pb2.ConfirmOrderRequest(request_id=str(uuid.uuid4()), order_id=order.id),
            metadata=MERCHANT,
            timeout=20,
        )
    assert read_error(err.value).reason == "gift_card_line_issued"
    got = await shop.orders.GetOrder(
        order_pb2.GetOrderRequest(id=order.id), metadata=MERCHANT, timeout=5
    )
    assert got.order.status == order_pb2.ORDER_STATUS_CANCELLED
    paid = await shop.payments.GetOrderPayments(
        payment_pb2.GetOrderPaymentsRequest(order_id=order.id), metadata=MERCHANT, timeout=5
    )
    assert [p.refunded.amount for p in paid.payments] == [4000]
    (card,) = (
        await shop.cards.ListGiftCards(
            G.ListGiftCardsRequest(order_id=order.id), metadata=MERCHANT, timeout=5
        )
    ).gift_cards
    assert card.id == other.gift_card.id and card.order_line_id == line.id
    assert card.status != G.GIFT_CARD_STATUS_ACTIVE and card.balance.amount == 0
