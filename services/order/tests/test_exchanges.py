"""Exchanges with the real services (PostgreSQL, NATS, inventory, payment and order in this
process): units returned and new lines sold in one saga, only the difference charged or
refunded, to the cent; the new lines sold once, the returned units restocked once; a retry
applies once; bad input (and short stock, and a difference due without a tender) writes
nothing and moves no money."""

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
from order_shop import serve_all, serve_order

from pos.common.v1 import money_pb2
from pos.inventory.v1 import inventory_pb2, inventory_pb2_grpc
from pos.order.v1 import events_pb2, order_pb2, order_pb2_grpc
from pos.payment.v1 import gift_cards_pb2 as G
from pos.payment.v1 import (
    gift_cards_pb2_grpc,
    payment_pb2,
    payment_pb2_grpc,
    shifts_pb2,
    shifts_pb2_grpc,
)
from pos_devstack.testing import Infra
from pos_kit.grpc_client import read_error
from pos_order.adapters.events import ORDER_EVENTS
from pos_order.entrypoints.fingerprints import CodePrinter

pytestmark = pytest.mark.asyncio(loop_scope="session")

MERCHANT = (("x-merchant-id", "mer_exchanges"),)
OTHER = (("x-merchant-id", "mer_exchanges_other"),)
# TEE and CAP cost the same, so one for the other is an even exchange; HAT is scarce.
PRICES = {"TEE": 2500, "CAP": 2500, "MUG": 1200, "HAT": 4000}
STOCK = {"TEE": 50, "CAP": 50, "MUG": 50, "HAT": 1}


def usd(amount: int) -> money_pb2.Money:
    return money_pb2.Money(amount=amount, currency="USD")


async def eventually(check: Callable[[], Awaitable[bool]], limit: float = 20.0) -> None:
    deadline = time.monotonic() + limit
    while not await check():
        assert time.monotonic() < deadline, "condition not met before the deadline"
        await asyncio.sleep(0.05)


@dataclass
class Shop:
    orders: order_pb2_grpc.OrderServiceStub
    payments: payment_pb2_grpc.PaymentServiceStub
    catalog: inventory_pb2_grpc.InventoryServiceStub
    order_db: str
    store: str  # sells, 8.25 % tax
    cards: gift_cards_pb2_grpc.GiftCardServiceStub
    shifts: shifts_pb2_grpc.ShiftServiceStub

    def sql(self, query: str, *args: Any) -> list[tuple[Any, ...]]:
        with psycopg.connect(self.order_db) as conn:
            return conn.execute(query, args).fetchall()  # type: ignore[arg-type]

    async def sale(self, **skus: int) -> order_pb2.Order:
        answer = await self.orders.Checkout(
            order_pb2.CheckoutRequest(
                request_id=str(uuid.uuid4()),
                location_id=self.store,
                lines=[order_pb2.CheckoutLine(sku=s, quantity=q) for s, q in skus.items()],
                tender_type=payment_pb2.TENDER_TYPE_CARD,
                card_token="tok_visa",
            ),
            metadata=MERCHANT,
            timeout=20,
        )
        return answer.order

    def ask(
        self,
        order_id: str,
        back: list[tuple[str, int]],
        new: list[tuple[str, int]],
        card: bool = True,
        **extra: Any,
    ) -> order_pb2.CreateExchangeRequest:
        return order_pb2.CreateExchangeRequest(
            request_id=extra.get("request_id", str(uuid.uuid4())),
            order_id=order_id,
            lines=[
                order_pb2.ReturnLineRequest(line_id=i, quantity=q, restock=True) for i, q in back
            ],
            new_lines=[order_pb2.ExchangeLine(sku=s, quantity=q) for s, q in new],
            reason="wrong_size",
            override_reason=extra.get("override", ""),
            location_id=extra.get("location_id", ""),
            tenders=[
                order_pb2.ExchangeTender(
                    tender_type=payment_pb2.TENDER_TYPE_CARD, card_token="tok_mastercard"
                )
            ]
            if card
            else [],
        )

    async def give_back(self, order_id: str, *lines: tuple[str, int]) -> order_pb2.Return:
        """A plain return of units of an order."""
        answer = await self.orders.CreateReturn(
            order_pb2.CreateReturnRequest(
                request_id=str(uuid.uuid4()),
                order_id=order_id,
                lines=[
                    order_pb2.ReturnLineRequest(line_id=i, quantity=q, restock=True)
                    for i, q in lines
                ],
                reason="unwanted",
            ),
            metadata=MERCHANT,
            timeout=20,
        )
        return answer.order_return

    async def order(self, order_id: str) -> order_pb2.Order:
        got = await self.orders.GetOrder(
            order_pb2.GetOrderRequest(id=order_id), metadata=MERCHANT, timeout=5
        )
        return got.order

    async def exchange(self, request: Any) -> order_pb2.CreateExchangeResponse:
        return await self.orders.CreateExchange(request, metadata=MERCHANT, timeout=30)

    async def refused(self, request: Any, metadata: Any = MERCHANT) -> grpc.aio.AioRpcError:
        with pytest.raises(grpc.aio.AioRpcError) as err:
            await self.orders.CreateExchange(request, metadata=metadata, timeout=30)
        return err.value

    async def money(self, order_id: str) -> tuple[int, int]:
        """What the order's payments captured and refunded, together."""
        try:
            found = await self.payments.GetOrderPayments(
                payment_pb2.GetOrderPaymentsRequest(order_id=order_id),
                metadata=MERCHANT,
                timeout=5,
            )
        except grpc.aio.AioRpcError as exc:
            if exc.code() != grpc.StatusCode.NOT_FOUND:
                raise
            return (0, 0)  # no payment was ever taken for it
        return (
            sum(p.captured.amount for p in found.payments),
            sum(p.refunded.amount for p in found.payments),
        )

    async def on_hand(self, sku: str) -> int:
        found = await self.catalog.GetStockLevels(
            inventory_pb2.GetStockLevelsRequest(skus=[sku], location_id=self.store),
            metadata=MERCHANT,
            timeout=5,
        )
        return sum(level.on_hand for level in found.levels)

    async def returns_of(self, order_id: str) -> list[order_pb2.Return]:
        found = await self.orders.ListReturns(
            order_pb2.ListReturnsRequest(order_id=order_id), metadata=MERCHANT, timeout=5
        )
        return list(found.returns)


@pytest_asyncio.fixture(loop_scope="session", scope="module")
async def shop(infra: Infra) -> AsyncIterator[Shop]:
    server = infra.new_nats()
    try:
        async with AsyncExitStack() as stack:
            inventory, payment = await serve_all(stack, infra, server.url, "inventory", "payment")
            order = await stack.enter_async_context(
                serve_order(infra, server.url, inventory.port, payment.port)
            )
            catalog = inventory_pb2_grpc.InventoryServiceStub(inventory.channel)
            made = await catalog.CreateLocation(
                inventory_pb2.CreateLocationRequest(
                    request_id="exchanges-store",
                    name="Main St",
                    currency="USD",
                    tax_rate_bps=825,
                    pickup_enabled=True,
                    ship_enabled=True,
                ),
                metadata=MERCHANT,
                timeout=5,
            )
            store = made.location.id
            for sku, price in PRICES.items():
                await catalog.CreateProduct(
                    inventory_pb2.CreateProductRequest(
                        request_id=f"exchanges-{sku}", sku=sku, name=sku.title(), price=usd(price)
                    ),
                    metadata=MERCHANT,
                    timeout=5,
                )
                await catalog.AdjustStock(
                    inventory_pb2.AdjustStockRequest(
                        request_id=f"exchanges-{sku}-received",
                        sku=sku,
                        location_id=store,
                        delta=STOCK[sku],
                        reason=inventory_pb2.ADJUSTMENT_REASON_RECEIVED,
                    ),
                    metadata=MERCHANT,
                    timeout=5,
                )
            yield Shop(
                order_pb2_grpc.OrderServiceStub(order.channel),
                payment_pb2_grpc.PaymentServiceStub(payment.channel),
                catalog,
                order.database_url,
                store,
                gift_cards_pb2_grpc.GiftCardServiceStub(payment.channel),
                shifts_pb2_grpc.ShiftServiceStub(payment.channel),
            )
    finally:
        server.stop()


async def settled(shop: Shop) -> None:
    """Inventory sells in-store lines from `order.confirmed`, a moment after the sale: a
    register sale of a marker unit (a mug), and its decrement seen, means every earlier sale
    event was consumed too (one consumer, in order)."""
    mugs = await shop.on_hand("MUG")
    await shop.sale(MUG=1)
    await eventually(lambda: _is(shop.on_hand("MUG"), mugs - 1))


async def _is(found: Awaitable[int], expected: int) -> bool:
    return await found == expected


async def test_an_even_exchange_moves_no_money_and_sells_and_restocks_once(shop: Shop) -> None:
    # 2 x 25.00 + 8.25 % = 54.13; one tee paid 27.06 (floored); a cap: 25.00 + 2.06 = 27.06.
    order = await shop.sale(TEE=2)
    await settled(shop)
    tees, caps = await shop.on_hand("TEE"), await shop.on_hand("CAP")
    request = shop.ask(order.id, [("L1", 1)], [("CAP", 1)])

    answer = await shop.exchange(request)

    ret, new = answer.order_return, answer.order
    assert (
        ret.amount.amount == 2706 == new.total.amount
        and answer.charged.amount == answer.refunded.amount == 0
    )
    assert ret.status == "completed" and not ret.refunds and ret.credited.amount == 2706
    assert ret.exchange_order_id == new.id and new.exchange_of == order.id
    assert new.exchange_return_id == ret.id and new.exchange_credit.amount == 2706
    assert new.status == order_pb2.ORDER_STATUS_COMPLETED and not new.payment_ids
    assert new.paid.amount == new.total.amount
    assert await shop.money(order.id) == (5413, 0) and await shop.money(new.id) == (0, 0)
    assert [r.id for r in await shop.returns_of(order.id)] == [ret.id]
    # The cap left stock when its hold was committed, the tee came back: once each, even
    # after inventory consumed the new order's `confirmed`.
    assert (await shop.on_hand("TEE"), await shop.on_hand("CAP")) == (tees + 1, caps - 1)
    await settled(shop)
    assert (await shop.on_hand("TEE"), await shop.on_hand("CAP")) == (tees + 1, caps - 1)

    again = await shop.exchange(request)
    assert again.order_return == ret and again.order.id == new.id
    assert (await shop.on_hand("TEE"), await shop.on_hand("CAP")) == (tees + 1, caps - 1)
    # Announced as any order is: created (once its stock is held), then confirmed, once each.
    events = shop.sql(
        "SELECT subject FROM outbox WHERE position(%s::bytea in payload) > 0 "
        "AND subject LIKE 'pos.order.v1.order_c%%' ORDER BY seq",
        new.id.encode(),
    )
    assert [e[0] for e in events][:2] == [
        "pos.order.v1.order_created",
        "pos.order.v1.order_confirmed",
    ]
    assert [e[0] for e in events].count("pos.order.v1.order_created") == 1


async def test_an_exchange_at_another_store_restocks_the_returned_units_there(
    shop: Shop,
) -> None:
    """The units are handed in where the exchange is made, not where they were sold; a line
    naming its own store still goes there."""
    made = await shop.catalog.CreateLocation(
        inventory_pb2.CreateLocationRequest(
            request_id=str(uuid.uuid4()), name="Harbour", currency="USD", tax_rate_bps=825
        ),
        metadata=MERCHANT,
        timeout=5,
    )
    harbour = made.location.id
    await shop.catalog.AdjustStock(
        inventory_pb2.AdjustStockRequest(
            request_id=str(uuid.uuid4()),
            sku="CAP",
            location_id=harbour,
            delta=5,
            reason=inventory_pb2.ADJUSTMENT_REASON_RECEIVED,
        ),
        metadata=MERCHANT,
        timeout=5,
    )
    order = await shop.sale(TEE=2)
    request = shop.ask(order.id, [("L1", 1)], [("CAP", 1)])
    request.location_id = harbour
    answer = await shop.exchange(request)
    assert answer.order.location_id == harbour
    assert [ln.location_id for ln in answer.order_return.lines] == [harbour]
    found = await shop.catalog.GetStockLevels(
        inventory_pb2.GetStockLevelsRequest(skus=["TEE"], location_id=harbour),
        metadata=MERCHANT,
        timeout=5,
    )
    assert sum(level.on_hand for level in found.levels) == 1

    named = shop.ask(order.id, [("L1", 1)], [("CAP", 1)])
    named.location_id = harbour
    named.lines[0].location_id = shop.store
    answer = await shop.exchange(named)
    assert [ln.location_id for ln in answer.order_return.lines] == [shop.store]


async def test_a_dearer_exchange_charges_only_the_difference(shop: Shop) -> None:
    order = await shop.sale(TEE=1, MUG=1)
    request = shop.ask(order.id, [("L2", 1)], [("HAT", 1), ("MUG", 1)])

    answer = await shop.exchange(request)

    ret, new = answer.order_return, answer.order
    due = new.total.amount - ret.amount.amount
    assert due > 0 and (answer.charged.amount, answer.refunded.amount) == (due, 0)
    assert ret.credited.amount == ret.amount.amount and not ret.refunds
    # The sum of money moved is the new total less the returned units' paid value.
    assert await shop.money(new.id) == (due, 0)
    assert await shop.money(order.id) == (order.total.amount, 0)
    assert new.paid.amount == new.total.amount and len(new.payment_ids) == 1
    assert answer.original_order.paid.amount == order.total.amount  # nothing went back

    again = await shop.exchange(request)
    assert again.order.id == new.id and await shop.money(new.id) == (due, 0)

    # The new order's lines back: its own card refunded first, then the credit back to the
    # original order's card; together exactly the new order's total.
    back = await shop.give_back(new.id, *((ln.id, ln.quantity) for ln in new.lines))
    assert back.amount.amount == new.total.amount
    assert await shop.money(new.id) == (due, due)
    assert await shop.money(order.id) == (order.total.amount, ret.credited.amount)
    # Neither order counts what went back: the new one keeps nothing of its credit.
    assert (await shop.order(new.id)).paid.amount == 0
    assert (await shop.order(order.id)).paid.amount == order.total.amount - ret.credited.amount


async def test_a_cheaper_exchange_refunds_only_the_difference(shop: Shop) -> None:
    order = await shop.sale(TEE=3)
    request = shop.ask(order.id, [("L1", 2)], [("MUG", 1)], card=False)

    answer = await shop.exchange(request)

    ret, new = answer.order_return, answer.order
    owed = ret.amount.amount - new.total.amount
    assert owed > 0 and (answer.charged.amount, answer.refunded.amount) == (0, owed)
    assert [r.amount.amount for r in ret.refunds] == [owed]
    assert ret.credited.amount == new.total.amount
    assert await shop.money(order.id) == (order.total.amount, owed)
    assert await shop.money(new.id) == (0, 0)
    assert answer.original_order.paid.amount == order.total.amount - owed

    # The last tee, returned plainly: all of the order's returns together took back exactly
    # what it paid for the tees (the credited part stays with the new order).
    last = await shop.give_back(order.id, ("L1", 1))
    assert ret.amount.amount + last.amount.amount == order.total.amount
    # The mug of the new order back: it had no payment, so its credit goes back to the tees'
    # card, which has then given back all it took.
    mug = await shop.give_back(new.id, ("L1", 1))
    assert mug.amount.amount == new.total.amount
    assert [r.payment_id for r in mug.refunds] == list(order.payment_ids)
    assert await shop.money(order.id) == (order.total.amount, order.total.amount)
    assert (await shop.order(new.id)).paid.amount == 0
    assert (await shop.order(order.id)).paid.amount == 0


async def test_an_exchange_credits_no_more_than_the_tenders_have_left(shop: Shop) -> None:
    """10.00 of a tee's 27.06 refunded through the payments API just before: exchanging the
    tee would credit (or refund) money already given back, so it is refused as a plain return
    of it would be, whether or not the refund's event reached the order yet."""
    order = await shop.sale(TEE=1)
    (payment,) = order.payment_ids
    await shop.payments.CreateRefund(
        payment_pb2.CreateRefundRequest(
            request_id=str(uuid.uuid4()),
            payment_id=payment,
            amount=money_pb2.Money(amount=1000, currency="USD"),
            reason="goodwill",
        ),
        metadata=MERCHANT,
        timeout=10,
    )
    caps = await shop.on_hand("CAP")
    for new_lines in ([("CAP", 1)], [("MUG", 1)], [("HAT", 1)]):  # even, cheaper, dearer
        refused = await shop.refused(shop.ask(order.id, [("L1", 1)], new_lines))
        assert refused.code() == grpc.StatusCode.FAILED_PRECONDITION
        problem = read_error(refused)
        assert problem.reason == "amount_exceeds_refundable"
        assert problem.metadata["refundable"] == str(order.total.amount - 1000)
    assert await shop.returns_of(order.id) == []
    assert await shop.money(order.id) == (order.total.amount, 1000)
    assert await shop.on_hand("CAP") == caps


async def test_a_refund_of_the_original_cannot_take_the_money_of_an_exchange_credit(
    shop: Shop,
) -> None:
    """The returned tee's 27.06 pays for the cap: it stays on the original order's card, set
    aside there. A goodwill refund of the original order (through the payments API, by order
    or by payment) gives back at most the rest (a 409 naming `amount` past it, nothing
    refunded), a later exchange of the other tee is refused before anything is written when the
    rest is short, and only a return of the cap gives its credit back to the card."""
    order = await shop.sale(TEE=2)  # 54.13: a tee paid 27.06, the other 27.07
    (payment,) = order.payment_ids
    made = await shop.exchange(shop.ask(order.id, [("L1", 1)], [("CAP", 1)]))
    new, credit = made.order, made.order_return.credited.amount
    assert credit == 2706 and made.refunded.amount == 0

    async def the_card() -> payment_pb2.Payment:
        got = await shop.payments.GetPayment(
            payment_pb2.GetPaymentRequest(id=payment), metadata=MERCHANT, timeout=5
        )
        return got.payment

    assert (await the_card()).credited.amount == credit

    def goodwill(amount: int | None = None, **target: str) -> payment_pb2.CreateRefundRequest:
        request = payment_pb2.CreateRefundRequest(
            request_id=str(uuid.uuid4()), reason="goodwill", **target
        )
        if amount is not None:
            request.amount.CopyFrom(usd(amount))
        return request

    for target in ({"order_id": order.id}, {"payment_id": payment}):
        with pytest.raises(grpc.aio.AioRpcError) as err:
            await shop.payments.CreateRefund(
                goodwill(order.total.amount, **target), metadata=MERCHANT, timeout=10
            )
        assert err.value.code() == grpc.StatusCode.FAILED_PRECONDITION
        problem = read_error(err.value)
        assert problem.reason == "amount_exceeds_refundable"
        assert problem.metadata["refundable"] == str(order.total.amount - credit)
        ((field, why),) = [(v.field, v.description) for v in problem.violations]
        assert field == "amount" and "exchange" in why
        assert await shop.money(order.id) == (order.total.amount, 0)

    # 20.00 back by goodwill: 7.07 of the card is left to refund, less than the other tee is
    # worth, so exchanging it is refused before any new order or return is written.
    await shop.payments.CreateRefund(
        goodwill(2000, order_id=order.id), metadata=MERCHANT, timeout=10
    )
    refused = await shop.refused(shop.ask(order.id, [("L1", 1)], [("CAP", 1)]))
    assert read_error(refused).reason == "amount_exceeds_refundable"
    assert read_error(refused).metadata["refundable"] == str(order.total.amount - credit - 2000)
    exchanges = shop.sql("SELECT count(*) FROM orders WHERE saga->>'exchange_of' = %s", order.id)
    assert exchanges == [(1,)] and len(await shop.returns_of(order.id)) == 1

    # All that is left, by goodwill: the credit is still there.
    rest = await shop.payments.CreateRefund(
        goodwill(payment_id=payment), metadata=MERCHANT, timeout=10
    )
    assert [r.amount.amount for r in rest.refunds] == [order.total.amount - credit - 2000]
    card = await the_card()
    assert (card.refunded.amount, card.credited.amount) == (order.total.amount - credit, credit)

    # The cap back: its credit goes back to the card, which has then given back all it took.
    cap = await shop.give_back(new.id, ("L1", 1))
    assert cap.amount.amount == credit and [r.payment_id for r in cap.refunds] == [payment]
    card = await the_card()
    assert (card.refunded.amount, card.credited.amount) == (order.total.amount, 0)


async def test_an_exchange_whose_refund_is_refused_waits_for_a_person(shop: Shop) -> None:
    """Paid by a gift card whose spend its own refund gave back since: the mug is sold, but the
    difference owed cannot go back to the card (the processor declines it). The return stays
    pending with its refusal (the request's 409 names it), nothing retries it, and a person
    closes it: here the difference is refused (the card was given it back already). It is
    then completed with that settlement and the tee is restocked once."""
    issued = await shop.cards.IssueGiftCard(
        G.IssueGiftCardRequest(request_id=str(uuid.uuid4()), amount=usd(10_000)),
        metadata=MERCHANT,
        timeout=10,
    )
    made = await shop.orders.CreateOrder(
        order_pb2.CreateOrderRequest(
            request_id=str(uuid.uuid4()),
            channel="register",
            location_id=shop.store,
            lines=[order_pb2.OrderLineRequest(sku="TEE", quantity=1)],
        ),
        metadata=MERCHANT,
        timeout=10,
    )
    await shop.orders.AddTender(
        order_pb2.AddTenderRequest(
            request_id=str(uuid.uuid4()),
            order_id=made.order.id,
            tender_type=payment_pb2.TENDER_TYPE_GIFT_CARD,
            gift_card_code=issued.code,
        ),
        metadata=MERCHANT,
        timeout=10,
    )
    order = (
        await shop.orders.ConfirmOrder(
            order_pb2.ConfirmOrderRequest(request_id=str(uuid.uuid4()), order_id=made.order.id),
            metadata=MERCHANT,
            timeout=10,
        )
    ).order
    await shop.cards.RefundToGiftCard(
        G.RefundToGiftCardRequest(
            request_id=str(uuid.uuid4()), id=issued.gift_card.id, amount=usd(order.total.amount)
        ),
        metadata=MERCHANT,
        timeout=10,
    )
    await settled(shop)
    tees = await shop.on_hand("TEE")
    request = shop.ask(order.id, [("L1", 1)], [("MUG", 1)], card=False)

    refused = await shop.refused(request)

    problem = read_error(refused)
    assert refused.code() == grpc.StatusCode.FAILED_PRECONDITION
    assert problem.reason == "refund_failed"
    (ret,) = await shop.returns_of(order.id)
    assert problem.metadata["return_id"] == ret.id
    assert (ret.status, ret.refusal_code) == ("pending", "refund_failed")
    assert [r.status for r in ret.refunds] == ["failed"]
    new = await shop.order(ret.exchange_order_id)
    assert new.status == order_pb2.ORDER_STATUS_COMPLETED  # the mug is sold
    owed = ret.amount.amount - new.total.amount
    assert owed > 0 and await shop.money(order.id) == (order.total.amount, 0)
    assert await shop.on_hand("TEE") == tees
    assert read_error(await shop.refused(request)).reason == "refund_failed"  # the same again

    answer = await shop.orders.SettleReturn(
        order_pb2.SettleReturnRequest(
            request_id=str(uuid.uuid4()),
            order_id=order.id,
            return_id=ret.id,
            outcome=order_pb2.SETTLEMENT_OUTCOME_REFUSED,
            reason="the gift card was reported lost",
            settled_by="key:key_backoffice",
        ),
        metadata=MERCHANT,
        timeout=20,
    )

    done = answer.order_return
    assert done.status == "completed" and done.exchange_order_id == new.id
    assert done.settlement.outcome == order_pb2.SETTLEMENT_OUTCOME_REFUSED
    assert (done.settlement.amount.amount, done.settlement.tender_type) == (owed, 0)
    assert done.settlement.settled_by == "key:key_backoffice"
    assert await shop.on_hand("TEE") == tees + 1
    assert await shop.money(order.id) == (order.total.amount, 0)
    # The request that made the exchange, retried now, answers the exchange as it ended.
    again = await shop.exchange(request)
    assert again.order_return == done and again.order.id == new.id
    assert await shop.on_hand("TEE") == tees + 1


async def test_bad_exchanges_are_refused_and_write_nothing(shop: Shop) -> None:
    order = await shop.sale(TEE=2)
    hats = await shop.on_hand("HAT")

    async def unchanged() -> None:
        assert await shop.returns_of(order.id) == []
        assert await shop.money(order.id) == (order.total.amount, 0)
        assert await shop.on_hand("HAT") == hats

    more = await shop.refused(shop.ask(order.id, [("L1", 3)], [("MUG", 1)]))
    assert more.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert [f.field for f in read_error(more).violations] == ["lines[0].quantity"]
    unknown = await shop.refused(shop.ask(order.id, [("L1", 1)], [("NOPE", 1)]))
    assert unknown.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert [f.field for f in read_error(unknown).violations] == ["new_lines[0].sku"]
    broke = await shop.refused(shop.ask(order.id, [("L1", 1)], [("HAT", 1)], card=False))
    assert [f.field for f in read_error(broke).violations] == ["tenders"]
    foreign = await shop.refused(shop.ask(order.id, [("L1", 1)], [("MUG", 1)]), OTHER)
    assert foreign.code() == grpc.StatusCode.NOT_FOUND
    # A store the merchant does not have is a 404 naming the exchange's own fields (pricing
    # names the checkout's: `location_id`, one fulfilment per store).
    elsewhere = shop.ask(order.id, [("L1", 1)], [("MUG", 1), ("HAT", 1)])
    elsewhere.new_lines[1].location_id = "loc_nope"
    nowhere = await shop.refused(elsewhere)
    assert nowhere.code() == grpc.StatusCode.NOT_FOUND
    assert [f.field for f in read_error(nowhere).violations] == ["new_lines[1].location_id"]
    moved = shop.ask(order.id, [("L1", 1)], [("MUG", 1)], location_id="loc_nope")
    nowhere = await shop.refused(moved)
    assert nowhere.code() == grpc.StatusCode.NOT_FOUND
    assert [f.field for f in read_error(nowhere).violations] == ["location_id"]
    await unchanged()

    # Short stock for the new lines (a difference to pay: tenders given): 409, nothing
    # charged or refunded, the returned units free again, and the new order withdrawn as a
    # refused checkout's is: never announced, neither kept nor cancelled. The same request
    # again answers the same.
    short = shop.ask(order.id, [("L1", 2)], [("HAT", hats + 1)])
    refused = await shop.refused(short)
    assert refused.code() == grpc.StatusCode.FAILED_PRECONDITION
    assert read_error(refused).reason == "insufficient_stock"
    assert [v.field for v in read_error(refused).violations] == ["new_lines[0].quantity"]
    await unchanged()
    assert read_error(await shop.refused(short)).reason == "insufficient_stock"
    assert shop.sql("SELECT id FROM orders WHERE saga->>'exchange_of' = %s", order.id) == []
    announced = shop.sql(
        "SELECT subject FROM outbox WHERE position(%s::bytea in payload) > 0 "
        "AND subject IN ('pos.order.v1.order_created', 'pos.order.v1.order_cancelled')",
        order.id.encode(),
    )
    assert announced == []

    # A token the processor never issued: a 400 naming the exchange's own field.
    bogus = shop.ask(order.id, [("L1", 1)], [("CAP", 2)], card=False)
    bogus.tenders.add(tender_type=payment_pb2.TENDER_TYPE_CARD, card_token="tok_nonsense")
    refused = await shop.refused(bogus)
    assert refused.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert [v.field for v in read_error(refused).violations] == ["tenders[0].card_token"]
    await unchanged()

    # Gift cards that cannot pay the difference are refused as their redemptions are (409),
    # and a code no card has is a gift card's 404, each naming the exchange's own field.
    low = await shop.cards.IssueGiftCard(
        G.IssueGiftCardRequest(request_id=str(uuid.uuid4()), amount=usd(100)),
        metadata=MERCHANT,
        timeout=10,
    )
    lost = await shop.cards.IssueGiftCard(
        G.IssueGiftCardRequest(request_id=str(uuid.uuid4()), amount=usd(10_000)),
        metadata=MERCHANT,
        timeout=10,
    )
    await shop.cards.DeactivateGiftCard(
        G.DeactivateGiftCardRequest(request_id=str(uuid.uuid4()), id=lost.gift_card.id),
        metadata=MERCHANT,
        timeout=10,
    )
    for code, status, reason, field in (
        (low.code, grpc.StatusCode.FAILED_PRECONDITION, "insufficient_funds", "amount.amount"),
        (lost.code, grpc.StatusCode.FAILED_PRECONDITION, "gift_card_inactive", "gift_card_code"),
        ("NOSUCH-CARD-0000", grpc.StatusCode.NOT_FOUND, "resource_missing", "gift_card_code"),
    ):
        gift = shop.ask(order.id, [("L1", 1)], [("CAP", 2)], card=False)
        gift.tenders.add(tender_type=payment_pb2.TENDER_TYPE_GIFT_CARD, gift_card_code=code)
        refused = await shop.refused(gift)
        assert (refused.code(), read_error(refused).reason) == (status, reason)
        assert [v.field for v in read_error(refused).violations] == [f"tenders[0].{field}"]
        await unchanged()

    # A tender's amount in another currency: a 400 naming that currency.
    euros = shop.ask(order.id, [("L1", 1)], [("CAP", 2)], card=False)
    euros.tenders.add(
        tender_type=payment_pb2.TENDER_TYPE_CARD,
        card_token="tok_visa",
        amount=money_pb2.Money(amount=1, currency="EUR"),
    )
    refused = await shop.refused(euros)
    assert refused.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "tenders[0].amount.currency" in [v.field for v in read_error(refused).violations]
    await unchanged()

    # Cash handed over in another currency, or short of the tender: each named on its own.
    for tendered, field in ((money_pb2.Money(amount=100_000, currency="EUR"), "currency"),
                            (usd(1), "amount")):  # fmt: skip
        cash = shop.ask(order.id, [("L1", 1)], [("CAP", 2)], card=False)
        cash.tenders.add(tender_type=payment_pb2.TENDER_TYPE_CASH, cash_tendered=tendered)
        refused = await shop.refused(cash)
        assert refused.code() == grpc.StatusCode.INVALID_ARGUMENT
        named = [v.field for v in read_error(refused).violations]
        assert named == [f"tenders[0].cash_tendered.{field}"], named
        await unchanged()

    # A declined card for the difference: 409, the caps' hold released, nothing refunded.
    caps = await shop.on_hand("CAP")
    declined = shop.ask(order.id, [("L1", 1)], [("CAP", 2)], card=False)
    declined.tenders.add(tender_type=payment_pb2.TENDER_TYPE_CARD, card_token="tok_declined")
    refused = await shop.refused(declined)
    assert read_error(refused).reason == "payment_declined"
    await unchanged()
    available = await shop.catalog.GetStockLevels(
        inventory_pb2.GetStockLevelsRequest(skus=["CAP"], location_id=shop.store),
        metadata=MERCHANT,
        timeout=5,
    )
    assert sum(level.reserved for level in available.levels) == 0
    assert await shop.on_hand("CAP") == caps

    # Past the window (0 days): refused without an override.
    await shop.orders.UpdateOrderSettings(
        order_pb2.UpdateOrderSettingsRequest(request_id=str(uuid.uuid4()), return_window_days=0),
        metadata=MERCHANT,
        timeout=5,
    )
    try:
        late = await shop.refused(shop.ask(order.id, [("L1", 1)], [("CAP", 1)]))
        assert read_error(late).reason == "return_window_closed"
        await unchanged()
        taken = await shop.exchange(
            shop.ask(order.id, [("L1", 1)], [("CAP", 1)], override="manager agreed")
        )
        assert taken.order_return.override_reason == "manager agreed"
    finally:
        await shop.orders.UpdateOrderSettings(
            order_pb2.UpdateOrderSettingsRequest(
                request_id=str(uuid.uuid4()), return_window_days=30
            ),
            metadata=MERCHANT,
            timeout=5,
        )


async def test_a_refused_exchange_sent_again_answers_as_it_first_did(shop: Shop) -> None:
    """An exchange whose tender was refused once its new order was made (the order cancelled,
    the return dropped), sent again with the same request id: the same refusal, word for word
    (status, code, message, the fields it named and its members), so the gateway's answer to
    the retry is the first one. Until 2026-12-05 a retry answered `payment_declined` ("this
    exchange was not made") whatever the first answer was: a 402 with no payment after a
    gift card code no card has (a 404, which the gateway keeps nothing of, so the retry
    reached this service), and another message after a declined card."""
    order = await shop.sale(TEE=1)
    lost = await shop.cards.IssueGiftCard(
        G.IssueGiftCardRequest(request_id=str(uuid.uuid4()), amount=usd(10_000)),
        metadata=MERCHANT,
        timeout=10,
    )
    await shop.cards.DeactivateGiftCard(
        G.DeactivateGiftCardRequest(request_id=str(uuid.uuid4()), id=lost.gift_card.id),
        metadata=MERCHANT,
        timeout=10,
    )
    card, gift = payment_pb2.TENDER_TYPE_CARD, payment_pb2.TENDER_TYPE_GIFT_CARD
    for tender in (
        order_pb2.ExchangeTender(tender_type=card, card_token="tok_declined"),
        order_pb2.ExchangeTender(tender_type=gift, gift_card_code="NOSUCH-CARD-0000"),
        order_pb2.ExchangeTender(tender_type=gift, gift_card_code=lost.code),
    ):
        ask = shop.ask(order.id, [("L1", 1)], [("CAP", 2)], card=False)
        ask.tenders.append(tender)
        answers = []
        for _ in range(2):
            refused = await shop.refused(ask)
            problem = read_error(refused)
            answers.append(
                (
                    refused.code(),
                    problem.reason,
                    problem.message,
                    [(v.field, v.description) for v in problem.violations],
                    dict(problem.metadata),
                )
            )
        assert answers[1] == answers[0], tender
        assert await shop.returns_of(order.id) == []
    assert answers[0][1] == "gift_card_inactive"


async def test_an_exchange_refused_as_it_came_is_made_when_sent_corrected_under_its_request_id(
    shop: Shop,
) -> None:
    """An exchange refused with a 404 once its new order was made (a gift card code no card
    has: the order cancelled, its hold released, the return dropped) is kept nothing of by the
    gateway, so the client sends the corrected body under the same Idempotency-Key: the
    exchange is made once, with ids of its own, and the refused attempt left nothing charged
    or held. The refused body sent again still answers its refusal. Until 2026-12-05 the
    corrected body was refused as the request id reused (422 `idempotency_key_reused`)."""
    order = await shop.sale(TEE=1)
    card = await shop.cards.IssueGiftCard(
        G.IssueGiftCardRequest(request_id=str(uuid.uuid4()), amount=usd(10_000)),
        metadata=MERCHANT,
        timeout=10,
    )
    gift = payment_pb2.TENDER_TYPE_GIFT_CARD
    caps = await shop.on_hand("CAP")
    ask = shop.ask(order.id, [("L1", 1)], [("CAP", 2)], card=False)
    ask.tenders.add(tender_type=gift, gift_card_code="NOSUCH-CARD-0000")
    refused = await shop.refused(ask)
    assert refused.code() == grpc.StatusCode.NOT_FOUND
    assert [v.field for v in read_error(refused).violations] == ["tenders[0].gift_card_code"]

    corrected = order_pb2.CreateExchangeRequest()
    corrected.CopyFrom(ask)
    corrected.tenders[0].gift_card_code = card.code
    made = await shop.exchange(corrected)
    again = await shop.exchange(corrected)  # a retry of the corrected body: the same exchange
    assert again.order.id == made.order.id
    assert again.order_return.id == made.order_return.id
    # The refused body, sent after: its key now names the corrected request.
    reused = await shop.refused(ask)
    assert read_error(reused).reason == "idempotency_key_reused"

    assert [r.id for r in await shop.returns_of(order.id)] == [made.order_return.id]
    captured, refunded = await shop.money(made.order.id)
    assert captured > 0 and refunded == 0
    now = await shop.cards.GetGiftCard(
        G.GetGiftCardRequest(id=card.gift_card.id), metadata=MERCHANT, timeout=5
    )
    assert now.gift_card.balance.amount == 10_000 - captured  # taken once
    assert await shop.on_hand("CAP") == caps - 2  # sold once
    available = await shop.catalog.GetStockLevels(
        inventory_pb2.GetStockLevelsRequest(skus=["CAP"], location_id=shop.store),
        metadata=MERCHANT,
        timeout=5,
    )
    assert sum(level.reserved for level in available.levels) == 0  # nothing left held


async def test_a_gift_card_code_tendered_enters_the_stored_fingerprint_keyed() -> None:
    request = order_pb2.CreateExchangeRequest(
        request_id="x",
        tenders=[order_pb2.ExchangeTender(gift_card_code="GIFT-1234-5678")],
    )
    printer = CodePrinter("a key of the service")
    printed = printer.exchange(request)
    assert b"GIFT-1234-5678" not in printed.SerializeToString()
    assert printer.exchange(request) == printed  # a retry matches the first request
    assert request.tenders[0].gift_card_code == "GIFT-1234-5678"


async def test_an_exchange_of_an_exchange_gives_every_cent_back_when_its_goods_return(
    shop: Shop,
) -> None:
    """A tee exchanged for a tee and a mug (the mug charged to a second card), then both for a
    cap alone (the mug's money back to the second card; the cap paid by the first tee's credit,
    carried through the middle order), then the cap returned: each card has given back all it
    took."""
    first = await shop.sale(TEE=1)
    middle = (await shop.exchange(shop.ask(first.id, [("L1", 1)], [("TEE", 1), ("MUG", 1)]))).order
    assert len(middle.payment_ids) == 1
    made = await shop.exchange(
        shop.ask(middle.id, [(ln.id, ln.quantity) for ln in middle.lines], [("CAP", 1)], card=False)
    )
    last = made.order
    assert made.refunded.amount == middle.total.amount - last.total.amount
    assert await shop.money(middle.id) == (middle.paid.amount - first.total.amount,) * 2

    back = await shop.give_back(last.id, ("L1", 1))

    assert back.amount.amount == last.total.amount
    assert [r.payment_id for r in back.refunds] == list(first.payment_ids)
    assert await shop.money(first.id) == (first.total.amount, first.total.amount)
    assert (await shop.order(last.id)).paid.amount == 0


async def test_an_exchange_of_an_order_paid_by_credit_alone_refunds_the_first_card(
    shop: Shop,
) -> None:
    """A tee exchanged for a cap (even: the cap has no payment of its own), then the cap for a
    mug: the difference goes back to the tee's card, drawn on the cap's credit; the mug back,
    the card has given back all it took and sets nothing aside any more."""
    first = await shop.sale(TEE=1)
    middle = (await shop.exchange(shop.ask(first.id, [("L1", 1)], [("CAP", 1)], card=False))).order
    assert not middle.payment_ids

    made = await shop.exchange(shop.ask(middle.id, [("L1", 1)], [("MUG", 1)], card=False))

    owed = middle.total.amount - made.order.total.amount
    assert made.refunded.amount == owed
    assert [r.payment_id for r in made.order_return.refunds] == list(first.payment_ids)
    assert await shop.money(first.id) == (first.total.amount, owed)

    back = await shop.give_back(made.order.id, ("L1", 1))
    assert back.amount.amount == made.order.total.amount
    assert await shop.money(first.id) == (first.total.amount, first.total.amount)
    (payment,) = first.payment_ids
    card = await shop.payments.GetPayment(
        payment_pb2.GetPaymentRequest(id=payment), metadata=MERCHANT, timeout=5
    )
    assert (card.payment.refunded.amount, card.payment.credited.amount) == (first.total.amount, 0)
    assert (await shop.order(made.order.id)).paid.amount == 0


async def test_an_exchange_of_an_exchange_not_made_leaves_the_credit_where_it_was(
    shop: Shop,
) -> None:
    """The cap (paid by the tee's credit alone) exchanged for two caps with a declined card:
    refused, and the credit it would have carried on is the cap's again; returning the cap
    then gives the tee's card everything back."""
    first = await shop.sale(TEE=1)
    middle = (await shop.exchange(shop.ask(first.id, [("L1", 1)], [("CAP", 1)], card=False))).order
    (payment,) = first.payment_ids

    declined = shop.ask(middle.id, [("L1", 1)], [("CAP", 2)], card=False)
    declined.tenders.add(tender_type=payment_pb2.TENDER_TYPE_CARD, card_token="tok_declined")
    refused = await shop.refused(declined)

    assert read_error(refused).reason == "payment_declined"
    back = await shop.give_back(middle.id, ("L1", 1))
    assert back.amount.amount == middle.total.amount
    assert [r.payment_id for r in back.refunds] == [payment]
    assert await shop.money(first.id) == (first.total.amount, first.total.amount)


async def test_after_goodwill_the_last_units_of_an_exchange_take_what_is_left(
    shop: Shop,
) -> None:
    """A tee exchanged for a tee and a mug (the mug's difference charged to a card), then 5.00
    of that card given back by goodwill: returning everything of the new order refunds what
    its card and its credit still hold, and every card has given back all it took."""
    first = await shop.sale(TEE=1)
    made = await shop.exchange(shop.ask(first.id, [("L1", 1)], [("TEE", 1), ("MUG", 1)]))
    middle = made.order
    (card,) = middle.payment_ids
    await shop.payments.CreateRefund(
        payment_pb2.CreateRefundRequest(
            request_id=str(uuid.uuid4()), payment_id=card, amount=usd(500), reason="goodwill"
        ),
        metadata=MERCHANT,
        timeout=10,
    )

    back = await shop.give_back(middle.id, *((ln.id, ln.quantity) for ln in middle.lines))

    assert back.amount.amount == middle.total.amount - 500
    assert await shop.money(first.id) == (first.total.amount, first.total.amount)
    charged = made.charged.amount
    assert await shop.money(middle.id) == (charged, charged)


async def test_an_open_price_product_is_exchanged_for_at_the_price_entered(shop: Shop) -> None:
    """An exchange's new lines take an entered price as a checkout's or an order's lines do:
    required for an open-price product (sold at it), refused for any other; each refusal a
    400 naming the line's `unit_price`, and nothing written."""
    sku = f"REPAIR-{uuid.uuid4().hex[:6].upper()}"
    await shop.catalog.CreateProduct(
        inventory_pb2.CreateProductRequest(
            request_id=str(uuid.uuid4()), sku=sku, name="Repair", price=usd(100), open_price=True
        ),
        metadata=MERCHANT,
        timeout=5,
    )
    await shop.catalog.AdjustStock(
        inventory_pb2.AdjustStockRequest(
            request_id=str(uuid.uuid4()),
            sku=sku,
            location_id=shop.store,
            delta=5,
            reason=inventory_pb2.ADJUSTMENT_REASON_RECEIVED,
        ),
        metadata=MERCHANT,
        timeout=5,
    )
    order = await shop.sale(TEE=2)

    unpriced = await shop.refused(shop.ask(order.id, [("L1", 1)], [(sku, 1)]))
    assert unpriced.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert [v.field for v in read_error(unpriced).violations] == ["new_lines[0].unit_price"]
    fixed = shop.ask(order.id, [("L1", 1)], [("MUG", 1)])
    fixed.new_lines[0].unit_price.CopyFrom(usd(1))
    refused = await shop.refused(fixed)
    assert refused.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert [v.field for v in read_error(refused).violations] == ["new_lines[0].unit_price"]
    odd = shop.ask(order.id, [("L1", 1)], [(sku, 1)])
    odd.new_lines[0].unit_price.CopyFrom(money_pb2.Money(amount=100, currency="EUR"))
    refused = await shop.refused(odd)
    assert [v.field for v in read_error(refused).violations] == ["new_lines[0].unit_price"]
    assert await shop.returns_of(order.id) == []

    # 40.00 + 8.25 % = 43.30 for the repair; the tee returned paid 27.06: 16.24 due.
    priced = shop.ask(order.id, [("L1", 1)], [(sku, 1)])
    priced.new_lines[0].unit_price.CopyFrom(usd(4000))
    answer = await shop.exchange(priced)
    line = answer.order.lines[0]
    assert (line.sku, line.unit_price.amount) == (sku, 4000)
    assert answer.order.total.amount == 4330
    assert answer.charged.amount == 4330 - answer.order_return.amount.amount == 1624
    again = await shop.exchange(priced)
    assert again.order.id == answer.order.id and again.charged == answer.charged


async def test_an_exchange_selling_below_cost_by_hand_needs_sell_below_cost(shop: Shop) -> None:
    """A new line whose entered price is below its product's unit cost is judged as a
    checkout's line is: a caller who may not sell below cost is refused (403
    `permission_required` naming `sell_below_cost` and the new line), nothing written; one who
    may sells it, and the answer says a line was sold below cost."""
    sku = f"SERVICE-{uuid.uuid4().hex[:6].upper()}"
    await shop.catalog.CreateProduct(
        inventory_pb2.CreateProductRequest(
            request_id=str(uuid.uuid4()), sku=sku, name="Service", price=usd(100),
            open_price=True, unit_cost=usd(5000),
        ),
        metadata=MERCHANT,
        timeout=5,
    )  # fmt: skip
    await shop.catalog.AdjustStock(
        inventory_pb2.AdjustStockRequest(
            request_id=str(uuid.uuid4()),
            sku=sku,
            location_id=shop.store,
            delta=5,
            reason=inventory_pb2.ADJUSTMENT_REASON_RECEIVED,
        ),
        metadata=MERCHANT,
        timeout=5,
    )
    order = await shop.sale(TEE=2)
    stock = await shop.on_hand(sku)

    def below(**extra: Any) -> order_pb2.CreateExchangeRequest:
        # A tee (27.06 paid) for the service at 10.00 (10.83 with tax), which costs 50.00.
        ask = shop.ask(order.id, [("L1", 1)], [("MUG", 1), (sku, 1)], **extra)
        ask.new_lines[1].unit_price.CopyFrom(usd(1000))
        return ask

    refused_ask = below()
    refused_ask.below_cost_not_permitted = True
    refused = await shop.refused(refused_ask)
    assert refused.code() == grpc.StatusCode.PERMISSION_DENIED
    assert read_error(refused).reason == "permission_required"
    assert read_error(refused).metadata["permission"] == "sell_below_cost"
    assert [v.field for v in read_error(refused).violations] == ["new_lines[1]"]
    assert await shop.returns_of(order.id) == []
    assert shop.sql("SELECT id FROM orders WHERE saga->>'exchange_of' = %s", order.id) == []
    assert await shop.money(order.id) == (order.total.amount, 0)
    assert await shop.on_hand(sku) == stock

    # Within the cost, no permission is needed; a caller who may sells below it.
    within = shop.ask(order.id, [("L1", 1)], [(sku, 1)])
    within.new_lines[0].unit_price.CopyFrom(usd(5000))
    within.below_cost_not_permitted = True
    fair = await shop.exchange(within)
    assert not fair.sold_below_cost
    # The same request a manager's override allows is the same exchange (its key kept).
    allowed = replace_request(refused_ask, below_cost_not_permitted=False)
    answer = await shop.exchange(allowed)
    assert answer.sold_below_cost
    [(lines,)] = shop.sql("SELECT lines FROM orders WHERE id = %s", answer.order.id)
    assert [ln.get("below_cost", False) for ln in lines] == [False, True]
    assert answer.order.lines[1].unit_price.amount == 1000


def replace_request(
    request: order_pb2.CreateExchangeRequest, **fields: Any
) -> order_pb2.CreateExchangeRequest:
    copy = order_pb2.CreateExchangeRequest()
    copy.CopyFrom(request)
    for name, value in fields.items():
        setattr(copy, name, value)
    return copy


async def test_whether_the_caller_may_sell_below_cost_is_not_in_the_fingerprint() -> None:
    request = order_pb2.CreateExchangeRequest(request_id="x", below_cost_not_permitted=True)
    printer = CodePrinter("a key of the service")
    allowed = replace_request(request, below_cost_not_permitted=False)
    assert printer.exchange(request) == printer.exchange(allowed)
    assert request.below_cost_not_permitted


def _till(register: str) -> tuple[tuple[str, str], ...]:
    """A register's calls, a member signed in at it (as the gateway sends them)."""
    return (*MERCHANT, ("x-register-id", register), ("x-staff-id", "stf_cashier"))


async def _open_shift(shop: Shop, till: Any, opening_float: int) -> str:
    opened = await shop.shifts.OpenShift(
        shifts_pb2.OpenShiftRequest(
            request_id=str(uuid.uuid4()), location_id=shop.store, opening_float=usd(opening_float)
        ),
        metadata=till,
        timeout=10,
    )
    return str(opened.shift.id)


async def _cash_report(shop: Shop, shift_id: str) -> shifts_pb2.ShiftReport:
    found = await shop.shifts.GetShift(
        shifts_pb2.GetShiftRequest(id=shift_id), metadata=MERCHANT, timeout=5
    )
    return found.shift.report


async def test_an_exchange_giving_cash_back_is_made_at_a_register_with_an_open_shift_only(
    shop: Shop,
) -> None:
    """Two tees sold for cash at a register, exchanged for a mug: the difference goes back to
    the cash payment, out of a drawer. From the back office, or at a register with no shift
    open, the exchange is refused before anything is written (409
    `cash_refund_needs_open_shift` naming `new_lines`, as a return refunding cash is): no
    return, no new order, nothing held, refunded or restocked. At the register with a shift
    open it is made, and that shift's drawer expects the cash gone. An even exchange moves no
    money and needs no drawer."""
    till = _till("reg_exchanges")
    first = await _open_shift(shop, till, 10_000)
    sold = await shop.orders.Checkout(
        order_pb2.CheckoutRequest(
            request_id=str(uuid.uuid4()),
            location_id=shop.store,
            lines=[order_pb2.CheckoutLine(sku="TEE", quantity=3)],
            tender_type=payment_pb2.TENDER_TYPE_CASH,
            cash_tendered=usd(10_000),
        ),
        metadata=till,
        timeout=20,
    )
    order = sold.order
    await settled(shop)
    tees, mugs = await shop.on_hand("TEE"), await shop.on_hand("MUG")

    async def unchanged() -> None:
        assert await shop.returns_of(order.id) == []
        assert await shop.money(order.id) == (order.total.amount, 0)
        assert shop.sql("SELECT id FROM orders WHERE saga->>'exchange_of' = %s", order.id) == []
        assert (await shop.on_hand("TEE"), await shop.on_hand("MUG")) == (tees, mugs)

    cheaper = shop.ask(order.id, [("L1", 2)], [("MUG", 1)], card=False)
    back_office = await shop.refused(cheaper)
    assert back_office.code() == grpc.StatusCode.FAILED_PRECONDITION
    problem = read_error(back_office)
    assert problem.reason == "cash_refund_needs_open_shift"
    assert [v.field for v in problem.violations] == ["new_lines"]
    assert order.payment_ids[0] in problem.violations[0].description
    await unchanged()
    # Refused before the claim's writes: the same request again is refused the same way.
    assert read_error(await shop.refused(cheaper)).reason == "cash_refund_needs_open_shift"

    await shop.shifts.CloseShift(
        shifts_pb2.CloseShiftRequest(
            request_id=str(uuid.uuid4()),
            shift_id=first,
            counted_cash=usd(10_000 + order.total.amount),
        ),
        metadata=till,
        timeout=10,
    )
    no_shift = read_error(await shop.refused(cheaper, till))
    assert no_shift.reason == "cash_refund_needs_open_shift"
    assert "reg_exchanges" in no_shift.violations[0].description
    await unchanged()

    # An even exchange gives nothing back: made from the back office as before.
    even = await shop.exchange(shop.ask(order.id, [("L1", 1)], [("CAP", 1)], card=False))
    assert even.order_return.status == "completed" and even.order_return.shift_id == ""

    second = await _open_shift(shop, till, 5000)
    made = await shop.orders.CreateExchange(cheaper, metadata=till, timeout=30)
    ret, new = made.order_return, made.order
    owed = ret.amount.amount - new.total.amount
    assert owed > 0 and made.refunded.amount == owed
    assert ret.status == "completed" and [r.amount.amount for r in ret.refunds] == [owed]
    assert (ret.register_id, ret.staff_id, ret.shift_id) == ("reg_exchanges", "stf_cashier", second)
    report = await _cash_report(shop, second)
    assert report.cash_refunds == usd(owed) and report.expected_cash == usd(5000 - owed)


async def test_cash_an_exchange_credit_gives_back_needs_a_register_with_an_open_shift(
    shop: Shop,
) -> None:
    """Two tees sold for cash at a register, exchanged evenly for two caps (no money moves:
    made from the back office). The caps' order was paid by the exchange credit alone, whose
    money is the tees' cash payment: a return of a cap, or an exchange of the caps for a
    cheaper mug, gives that cash back. From the back office both are refused before anything
    is written (409 `cash_refund_needs_open_shift`, naming `tender_amounts` and `new_lines`);
    at the register with its shift open the return is made and counted in that shift."""
    till = _till("reg_credit_cash")
    shift = await _open_shift(shop, till, 10_000)
    sold = await shop.orders.Checkout(
        order_pb2.CheckoutRequest(
            request_id=str(uuid.uuid4()),
            location_id=shop.store,
            lines=[order_pb2.CheckoutLine(sku="TEE", quantity=2)],
            tender_type=payment_pb2.TENDER_TYPE_CASH,
            cash_tendered=usd(10_000),
        ),
        metadata=till,
        timeout=20,
    )
    order = sold.order
    even = await shop.exchange(shop.ask(order.id, [("L1", 2)], [("CAP", 2)], card=False))
    caps = even.order
    assert even.refunded.amount == 0 and caps.exchange_credit.amount == caps.total.amount
    cap_back = order_pb2.CreateReturnRequest(
        request_id=str(uuid.uuid4()),
        order_id=caps.id,
        lines=[order_pb2.ReturnLineRequest(line_id="L1", quantity=1, restock=True)],
        reason="unwanted",
    )

    with pytest.raises(grpc.aio.AioRpcError) as err:
        await shop.orders.CreateReturn(cap_back, metadata=MERCHANT, timeout=20)
    assert err.value.code() == grpc.StatusCode.FAILED_PRECONDITION
    returned = read_error(err.value)
    assert returned.reason == "cash_refund_needs_open_shift"
    assert [v.field for v in returned.violations] == ["tender_amounts"]
    assert order.payment_ids[0] in returned.violations[0].description
    exchanged = read_error(
        await shop.refused(shop.ask(caps.id, [("L1", 2)], [("MUG", 1)], card=False))
    )
    assert exchanged.reason == "cash_refund_needs_open_shift"
    assert [v.field for v in exchanged.violations] == ["new_lines"]
    assert await shop.returns_of(caps.id) == []
    assert await shop.money(order.id) == (order.total.amount, 0)

    taken = await shop.orders.CreateReturn(cap_back, metadata=till, timeout=20)
    ret = taken.order_return
    assert ret.status == "completed" and [r.payment_id for r in ret.refunds] == [
        order.payment_ids[0]
    ]
    assert (ret.register_id, ret.shift_id) == ("reg_credit_cash", shift)
    report = await _cash_report(shop, shift)
    assert report.cash_refunds == ret.amount


async def test_an_exchange_paid_in_cash_is_made_at_a_register_with_an_open_shift_only(
    shop: Shop,
) -> None:
    """A tee sold by card, exchanged at a register for a cap and a mug: the difference is paid
    in cash, which goes in the register's drawer. With no shift open there the exchange is a
    409 `cash_needs_open_shift` naming the cash tender's `tender_type` (as a cash checkout or
    cash tender there is), before anything is written: no return, no new order, no payment,
    nothing held. An even exchange there takes no cash and needs no shift. With a shift open
    the same request is made, its cash counted in that shift."""
    till = _till("reg_exchange_cash")
    order = await shop.sale(TEE=2)
    caps, mugs = await shop.on_hand("CAP"), await shop.on_hand("MUG")
    dearer = shop.ask(order.id, [("L1", 1)], [("CAP", 1), ("MUG", 1)], card=False)
    dearer.tenders.add(tender_type=payment_pb2.TENDER_TYPE_CASH, cash_tendered=usd(5000))

    refused = await shop.refused(dearer, till)
    assert refused.code() == grpc.StatusCode.FAILED_PRECONDITION
    problem = read_error(refused)
    assert problem.reason == "cash_needs_open_shift", problem
    assert [v.field for v in problem.violations] == ["tenders[0].tender_type"]
    assert problem.metadata["register_id"] == "reg_exchange_cash"
    assert await shop.returns_of(order.id) == []
    assert shop.sql("SELECT id FROM orders WHERE saga->>'exchange_of' = %s", order.id) == []
    assert await shop.money(order.id) == (order.total.amount, 0)
    assert (await shop.on_hand("CAP"), await shop.on_hand("MUG")) == (caps, mugs)

    even = shop.ask(order.id, [("L1", 1)], [("CAP", 1)], card=False)
    even.tenders.add(tender_type=payment_pb2.TENDER_TYPE_CASH, cash_tendered=usd(5000))
    made = await shop.orders.CreateExchange(even, metadata=till, timeout=30)
    assert (made.charged.amount, made.refunded.amount) == (0, 0)

    shift = await _open_shift(shop, till, 0)
    answer = await shop.orders.CreateExchange(dearer, metadata=till, timeout=30)
    due = answer.order.total.amount - answer.order_return.amount.amount
    assert due > 0 and answer.charged.amount == due
    assert (await _cash_report(shop, shift)).cash_sales == usd(due)


async def test_a_return_beside_an_exchange_still_being_made_is_not_the_last(
    shop: Shop,
) -> None:
    """Two tees and a mug; both tees exchanged for three caps, the difference on a card whose
    answer is lost (`tok_timeout`: 503 `payment_pending`, the exchange's return pending: the
    payment may yet fail and the exchange be undone); 10.00 given back by goodwill. The mug,
    worth more than the card still holds, is refused (409 `amount_exceeds_refundable`, with
    what is `refundable`; nothing written), as it would be without the exchange: until the
    exchange is done, the mug is not the order's last units. Before, the pending exchange's
    units counted as back, and the mug was refunded what was left.

    At the end of this module: the exchange is left to its saga (the reconciler and the resumer
    finish it a minute later), and it sells caps and restocks tees then."""
    order = await shop.sale(TEE=2, MUG=1)
    assert [(ln.id, ln.sku) for ln in order.lines] == [("L1", "TEE"), ("L2", "MUG")]
    (payment,) = order.payment_ids
    swap = shop.ask(order.id, [("L1", 2)], [("CAP", 3)], card=False)
    swap.tenders.add(tender_type=payment_pb2.TENDER_TYPE_CARD, card_token="tok_timeout")
    assert read_error(await shop.refused(swap)).reason == "payment_pending"
    await shop.payments.CreateRefund(
        payment_pb2.CreateRefundRequest(
            request_id=str(uuid.uuid4()), payment_id=payment, amount=usd(1000), reason="goodwill"
        ),
        metadata=MERCHANT,
        timeout=10,
    )
    (pending,) = await shop.returns_of(order.id)
    assert pending.status == "pending" and pending.credited.amount > 0
    refundable = order.total.amount - pending.credited.amount - 1000
    mug = next(ln for ln in order.lines if ln.sku == "MUG")
    assert 0 < refundable < mug.line_total.amount

    with pytest.raises(grpc.aio.AioRpcError) as err:
        await shop.give_back(order.id, ("L2", 1))

    problem = read_error(err.value)
    assert problem.reason == "amount_exceeds_refundable", problem
    assert problem.metadata["refundable"] == str(refundable)
    assert [v.field for v in problem.violations] == ["lines"]
    assert [r.id for r in await shop.returns_of(order.id)] == [pending.id]
    assert await shop.money(order.id) == (order.total.amount, 1000)


def _announced(shop: Shop, order_id: str) -> tuple[int, order_pb2.Order | None]:
    """How many events of the order its outbox has (any but `order_returned`), and the order
    as the last of them carries it (None while it has none)."""
    rows = shop.sql(
        "SELECT event_type, payload FROM outbox WHERE position(%s::bytea in payload) > 0 "
        "ORDER BY seq",
        order_id.encode(),
    )
    count, last = 0, None
    for event_type, payload in rows:
        kind = ORDER_EVENTS.get(event_type)
        if kind is not None and kind is not events_pb2.OrderReturned:
            message: Any = kind.FromString(bytes(payload))
            if message.order.id == order_id:
                count, last = count + 1, message.order
    return count, last


async def test_an_exchanges_pending_payment_is_announced_and_a_retry_writes_nothing(
    shop: Shop,
) -> None:
    """A tee exchanged for two caps, the difference on a card whose answer is lost
    (`tok_timeout`: 503 `payment_pending`). The new order, announced once its stock was held,
    now has the card's payment (`payment_ids`, `tender_types`): that version is announced, its
    last event carrying the order as `GetOrder` answers it. The till's retries with the same
    request, while the payment is still pending, change nothing: no new version, no event.
    Before, the tenders were written with no event, and each retry wrote a new version.

    At the end of this module: the exchange is left to its saga (the reconciler and the
    resumer finish it a minute later)."""
    order = await shop.sale(TEE=1)
    request = shop.ask(order.id, [("L1", 1)], [("CAP", 2)], card=False)
    request.tenders.add(tender_type=payment_pb2.TENDER_TYPE_CARD, card_token="tok_timeout")
    assert read_error(await shop.refused(request)).reason == "payment_pending"
    ((new_id,),) = shop.sql("SELECT id FROM orders WHERE saga->>'exchange_of' = %s", order.id)
    pending = await shop.order(new_id)
    assert pending.status == order_pb2.ORDER_STATUS_PENDING_PAYMENT
    assert len(pending.payment_ids) == 1 and list(pending.tender_types) == ["card"]
    events, announced = _announced(shop, new_id)
    assert announced is not None
    assert (announced.version, list(announced.payment_ids)) == (
        pending.version, list(pending.payment_ids),
    )  # fmt: skip
    assert announced == pending

    for _ in range(2):
        assert read_error(await shop.refused(request)).reason == "payment_pending"
        again = await shop.order(new_id)
        assert again.version == pending.version and again == pending
        assert _announced(shop, new_id) == (events, pending)
