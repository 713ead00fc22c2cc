"""A fulfilment cancelled after a refund made outside it (goodwill, through the payments API):
real PostgreSQL, NATS JetStream, and the inventory, payment and order services in this process
(the shop of test_cancel_races.py, pickups captured at confirmation)."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator

import pytest
import pytest_asyncio
from test_cancel_races import CARD, KINDS, MERCHANT, Shop, relayed_shop

from pos.common.v1 import money_pb2
from pos.order.v1 import order_pb2
from pos.payment.v1 import payment_pb2
from pos_devstack.testing import Infra

pytestmark = pytest.mark.asyncio(loop_scope="session")


@pytest_asyncio.fixture(loop_scope="session", scope="module")
async def captured_shop(infra: Infra) -> AsyncIterator[Shop]:
    async with relayed_shop(infra, capture_pickup_at_order=True) as found:
        yield found


def usd(amount: int) -> money_pb2.Money:
    return money_pb2.Money(amount=amount, currency="USD")


async def _two_pickups(shop: Shop, cards: list[int]) -> order_pb2.Order:
    """Two pickups of a T-shirt each (25.00, no tax), paid by one card per amount in `cards`
    and confirmed: each pickup's share captured at once."""
    pickup = order_pb2.FulfillmentRequest(type=KINDS["pickup"], location_id=shop.location)
    created = await shop.orders.CreateOrder(
        order_pb2.CreateOrderRequest(
            request_id=str(uuid.uuid4()),
            channel="web",
            location_id=shop.location,
            lines=[
                order_pb2.OrderLineRequest(sku="TEE", quantity=1, fulfillment=0),
                order_pb2.OrderLineRequest(sku="TEE", quantity=1, fulfillment=1),
            ],
            fulfillments=[pickup, pickup],
        ),
        metadata=MERCHANT,
        timeout=10,
    )
    order = created.order
    for amount in cards:
        await shop.tender(order.id, tender_type=CARD, card_token="tok_visa", amount=usd(amount))
    confirmed = await shop.orders.ConfirmOrder(
        order_pb2.ConfirmOrderRequest(request_id=str(uuid.uuid4()), order_id=order.id),
        metadata=MERCHANT,
        timeout=10,
    )
    assert [f.captured.amount for f in confirmed.order.fulfillments] == [2500, 2500]
    return confirmed.order


async def _cancel(shop: Shop, order_id: str, fulfillment_id: str) -> dict[str, int]:
    answer = await shop.orders.CancelFulfillment(
        order_pb2.CancelFulfillmentRequest(
            request_id=str(uuid.uuid4()), order_id=order_id, fulfillment_id=fulfillment_id
        ),
        metadata=MERCHANT,
        timeout=20,
    )
    return {r.payment_id: r.amount.amount for r in answer.refunds}


async def _refunded(shop: Shop, order_id: str) -> dict[str, int]:
    return {p.id: p.refunded.amount for p in await shop.payments_of(order_id)}


async def test_a_pickup_cancelled_after_goodwill_gives_back_its_price_and_keeps_the_goodwill(
    captured_shop: Shop,
) -> None:
    """Two pickups, each paid by a card of its own (25.00 each), captured at confirmation.
    10.00 goes back by goodwill (a refund of the order naming no units: from the last card
    taken). The second pickup is then cancelled: its 25.00 go back, 15.00 from the card it
    was captured from (all it has left) and 10.00 from the other card, so the customer has the
    goodwill and the cancelled pickup's price back (35.00 of the 50.00 captured). The cancel
    gave back only what its own card had left (15.00): with the goodwill, 25.00, as if the
    goodwill had never been given. The first pickup's cancel then gives back what is left."""
    shop = captured_shop
    order = await _two_pickups(shop, [2500, 2500])
    first_card, second_card = order.payment_ids
    first, second = order.fulfillments
    goodwill = await shop.payments.CreateRefund(
        payment_pb2.CreateRefundRequest(
            request_id=str(uuid.uuid4()), order_id=order.id, amount=usd(1000), reason="goodwill"
        ),
        metadata=MERCHANT,
        timeout=10,
    )
    assert [(r.payment_id, r.amount.amount) for r in goodwill.refunds] == [(second_card, 1000)]

    refunds = await _cancel(shop, order.id, second.id)

    assert refunds == {second_card: 1500, first_card: 1000}
    assert await _refunded(shop, order.id) == {first_card: 1000, second_card: 2500}
    after = await shop.order(order.id)
    assert after.status == order_pb2.ORDER_STATUS_CONFIRMED
    cancelled = after.fulfillments[1]
    assert cancelled.status == order_pb2.FULFILLMENT_STATUS_CANCELLED
    assert (cancelled.captured.amount, cancelled.refunded.amount) == (2500, 2500)
    # The last pickup cancelled takes the order with it: all that is left goes back, never
    # more than was captured.
    assert await _cancel(shop, order.id, first.id) == {first_card: 1500}
    assert await _refunded(shop, order.id) == {first_card: 2500, second_card: 2500}
    assert (await shop.order(order.id)).status == order_pb2.ORDER_STATUS_CANCELLED


async def test_a_pickup_cancelled_after_goodwill_on_one_card_gives_back_its_price(
    captured_shop: Shop,
) -> None:
    """One card for both pickups (50.00 captured), 10.00 back by goodwill: the cancel of one
    pickup gives back its 25.00 (35.00 refunded in all)."""
    shop = captured_shop
    order = await _two_pickups(shop, [5000])
    (card,) = order.payment_ids
    await shop.payments.CreateRefund(
        payment_pb2.CreateRefundRequest(
            request_id=str(uuid.uuid4()), payment_id=card, amount=usd(1000), reason="goodwill"
        ),
        metadata=MERCHANT,
        timeout=10,
    )
    assert await _cancel(shop, order.id, order.fulfillments[1].id) == {card: 2500}
    assert await _refunded(shop, order.id) == {card: 3500}
