"""A fulfilment cancelled after a refund made outside it (goodwill, or a price adjustment naming
units, through the payments API): real PostgreSQL, NATS JetStream, and the inventory, payment
and order services in this process (the shop of test_cancel_races.py, pickups captured at
confirmation)."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator

import grpc
import pytest
import pytest_asyncio
from test_cancel_races import CARD, CASH, KINDS, MERCHANT, Shop, relayed_shop

from pos.common.v1 import money_pb2
from pos.inventory.v1 import inventory_pb2
from pos.order.v1 import order_pb2
from pos.payment.v1 import payment_pb2
from pos_devstack.testing import Infra
from pos_kit.grpc_client import read_error

pytestmark = pytest.mark.asyncio(loop_scope="session")


@pytest_asyncio.fixture(loop_scope="session", scope="module")
async def captured_shop(infra: Infra) -> AsyncIterator[Shop]:
    async with relayed_shop(infra, capture_pickup_at_order=True) as found:
        await _mugs(found)
        yield found


async def _mugs(shop: Shop) -> None:
    """A mug at 25.00 beside the T-shirt, in stock at the shop's location."""
    assert shop.inventory is not None
    await shop.inventory.CreateProduct(
        inventory_pb2.CreateProductRequest(
            request_id=f"{MERCHANT[0][1]}-mug", sku="MUG", name="Mug", price=usd(2500)
        ),
        metadata=MERCHANT,
        timeout=5,
    )
    await shop.inventory.AdjustStock(
        inventory_pb2.AdjustStockRequest(
            request_id=f"{MERCHANT[0][1]}-mugs-received",
            sku="MUG",
            location_id=shop.location,
            delta=1000,
            reason=inventory_pb2.ADJUSTMENT_REASON_RECEIVED,
        ),
        metadata=MERCHANT,
        timeout=5,
    )


def usd(amount: int) -> money_pb2.Money:
    return money_pb2.Money(amount=amount, currency="USD")


async def _pickups_ordered(shop: Shop, skus: tuple[str, str]) -> order_pb2.Order:
    """A web order of one unit of each of `skus`, each its own pickup, not yet paid."""
    pickup = order_pb2.FulfillmentRequest(type=KINDS["pickup"], location_id=shop.location)
    created = await shop.orders.CreateOrder(
        order_pb2.CreateOrderRequest(
            request_id=str(uuid.uuid4()),
            channel="web",
            location_id=shop.location,
            lines=[
                order_pb2.OrderLineRequest(sku=skus[0], quantity=1, fulfillment=0),
                order_pb2.OrderLineRequest(sku=skus[1], quantity=1, fulfillment=1),
            ],
            fulfillments=[pickup, pickup],
        ),
        metadata=MERCHANT,
        timeout=10,
    )
    return created.order


async def _confirmed(shop: Shop, order_id: str) -> order_pb2.Order:
    answer = await shop.orders.ConfirmOrder(
        order_pb2.ConfirmOrderRequest(request_id=str(uuid.uuid4()), order_id=order_id),
        metadata=MERCHANT,
        timeout=10,
    )
    return answer.order


async def _two_pickups(
    shop: Shop, cards: list[int], skus: tuple[str, str] = ("TEE", "TEE")
) -> order_pb2.Order:
    """Two pickups of a T-shirt each (25.00, no tax; or of `skus`, a mug at 25.00 too), paid
    by one card per amount in `cards` and confirmed: each pickup's share captured at once."""
    order = await _pickups_ordered(shop, skus)
    for amount in cards:
        await shop.tender(order.id, tender_type=CARD, card_token="tok_visa", amount=usd(amount))
    confirmed = await _confirmed(shop, order.id)
    assert [f.captured.amount for f in confirmed.fulfillments] == [2500, 2500]
    return confirmed


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


async def _adjust(shop: Shop, payment_id: str, sku: str, amount: int) -> None:
    """A price adjustment: `amount` back on the payment for one unit of `sku`."""
    await shop.payments.CreateRefund(
        payment_pb2.CreateRefundRequest(
            request_id=str(uuid.uuid4()),
            payment_id=payment_id,
            amount=usd(amount),
            reason="price_adjustment",
            lines=[payment_pb2.RefundLine(sku=sku, quantity=1)],
        ),
        metadata=MERCHANT,
        timeout=10,
    )


async def _goodwill(shop: Shop, payment_id: str, amount: int) -> None:
    """Goodwill: `amount` back on the payment, naming no units."""
    await shop.payments.CreateRefund(
        payment_pb2.CreateRefundRequest(
            request_id=str(uuid.uuid4()),
            payment_id=payment_id,
            amount=usd(amount),
            reason="goodwill",
        ),
        metadata=MERCHANT,
        timeout=10,
    )


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
    await _goodwill(shop, card, 1000)
    assert await _cancel(shop, order.id, order.fulfillments[1].id) == {card: 2500}
    assert await _refunded(shop, order.id) == {card: 3500}


async def test_a_pickup_cancelled_after_a_price_adjustment_of_its_units_gives_back_the_rest(
    captured_shop: Shop,
) -> None:
    """A T-shirt picked up with card A (25.00), a mug with card B (25.00), captured at
    confirmation. 10.00 goes back on card B for the mug (a price adjustment naming it). The
    mug's pickup is then cancelled: it gives back what the mug was paid less the adjustment,
    15.00 from card B, and nothing from card A: the customer has 25.00 back for the mug in
    all. It gave back 25.00, the 10.00 its card no longer had taken from card A as if it
    had been goodwill: 35.00 for a 25.00 mug. The mug's pickup reads 25.00 refunded (the
    adjustment and the cancel's 15.00: it keeps nothing); it read 15.00, keeping 10.00 the
    customer had back. The T-shirt's pickup, the last, takes the order with it: its 25.00
    back from card A, all that was captured given back."""
    shop = captured_shop
    order = await _two_pickups(shop, [2500, 2500], ("TEE", "MUG"))
    first_card, second_card = order.payment_ids
    tee, mug = order.fulfillments
    await _adjust(shop, second_card, "MUG", 1000)

    assert await _cancel(shop, order.id, mug.id) == {second_card: 1500}

    assert await _refunded(shop, order.id) == {first_card: 0, second_card: 2500}
    after = await shop.order(order.id)
    assert after.status == order_pb2.ORDER_STATUS_CONFIRMED
    cancelled = after.fulfillments[1]
    assert cancelled.status == order_pb2.FULFILLMENT_STATUS_CANCELLED
    assert (cancelled.captured.amount, cancelled.refunded.amount) == (2500, 2500)
    assert await _cancel(shop, order.id, tee.id) == {first_card: 2500}
    assert await _refunded(shop, order.id) == {first_card: 2500, second_card: 2500}
    assert (await shop.order(order.id)).status == order_pb2.ORDER_STATUS_CANCELLED


async def test_a_pickup_cancelled_after_a_price_adjustment_on_one_card_gives_back_the_rest(
    captured_shop: Shop,
) -> None:
    """One card for both pickups (50.00 captured), 10.00 back on it for the mug: the mug's
    cancel gives back 15.00 (25.00 in all), not 25.00 (35.00 for the mug). The T-shirt's
    cancel then gives back its whole 25.00."""
    shop = captured_shop
    order = await _two_pickups(shop, [5000], ("TEE", "MUG"))
    (card,) = order.payment_ids
    tee, mug = order.fulfillments
    await _adjust(shop, card, "MUG", 1000)

    assert await _cancel(shop, order.id, mug.id) == {card: 1500}
    assert await _refunded(shop, order.id) == {card: 2500}
    cancelled = (await shop.order(order.id)).fulfillments[1]
    assert (cancelled.captured.amount, cancelled.refunded.amount) == (2500, 2500)
    assert await _cancel(shop, order.id, tee.id) == {card: 2500}
    assert await _refunded(shop, order.id) == {card: 5000}
    assert (await shop.order(order.id)).status == order_pb2.ORDER_STATUS_CANCELLED


async def test_a_price_adjustment_of_other_units_takes_nothing_off_a_cancel(
    captured_shop: Shop,
) -> None:
    """10.00 back for the T-shirt on card A: the mug's cancel gives back its whole 25.00
    (card B), and the T-shirt's, the last, what card A has left (15.00)."""
    shop = captured_shop
    order = await _two_pickups(shop, [2500, 2500], ("TEE", "MUG"))
    first_card, second_card = order.payment_ids
    tee, mug = order.fulfillments
    await _adjust(shop, first_card, "TEE", 1000)

    assert await _cancel(shop, order.id, mug.id) == {second_card: 2500}
    assert await _cancel(shop, order.id, tee.id) == {first_card: 1500}
    assert await _refunded(shop, order.id) == {first_card: 2500, second_card: 2500}


async def _one_sku_at_two_prices(shop: Shop) -> order_pb2.Order:
    """An open-price item sold at 5.00 in one pickup, two at 25.00 in the other (one SKU on two
    lines at different prices), one card: confirmed, 55.00 captured at once."""
    assert shop.inventory is not None
    await shop.inventory.CreateProduct(
        inventory_pb2.CreateProductRequest(
            request_id=f"{MERCHANT[0][1]}-open",
            sku="OPEN",
            name="Open",
            price=usd(2500),
            open_price=True,
        ),
        metadata=MERCHANT,
        timeout=5,
    )
    await shop.inventory.AdjustStock(
        inventory_pb2.AdjustStockRequest(
            request_id=f"{MERCHANT[0][1]}-opens-received",
            sku="OPEN",
            location_id=shop.location,
            delta=1000,
            reason=inventory_pb2.ADJUSTMENT_REASON_RECEIVED,
        ),
        metadata=MERCHANT,
        timeout=5,
    )
    pickup = order_pb2.FulfillmentRequest(type=KINDS["pickup"], location_id=shop.location)
    created = await shop.orders.CreateOrder(
        order_pb2.CreateOrderRequest(
            request_id=str(uuid.uuid4()),
            channel="web",
            location_id=shop.location,
            lines=[
                order_pb2.OrderLineRequest(
                    sku="OPEN", quantity=1, fulfillment=0, unit_price=usd(500)
                ),
                order_pb2.OrderLineRequest(
                    sku="OPEN", quantity=2, fulfillment=1, unit_price=usd(2500)
                ),
            ],
            fulfillments=[pickup, pickup],
        ),
        metadata=MERCHANT,
        timeout=10,
    )
    await shop.tender(created.order.id, tender_type=CARD, card_token="tok_visa")
    order = await _confirmed(shop, created.order.id)
    assert [f.captured.amount for f in order.fulfillments] == [500, 5000]
    return order


async def _picked_up(shop: Shop, order_id: str, fulfillment_id: str) -> order_pb2.Order:
    for status in (
        order_pb2.FULFILLMENT_STATUS_READY_FOR_PICKUP,
        order_pb2.FULFILLMENT_STATUS_PICKED_UP,
    ):
        answer = await shop.orders.UpdateFulfillment(
            order_pb2.UpdateFulfillmentRequest(
                request_id=str(uuid.uuid4()),
                order_id=order_id,
                fulfillment_id=fulfillment_id,
                status=status,
            ),
            metadata=MERCHANT,
            timeout=10,
        )
    return answer.order


async def test_a_cancel_of_cheap_units_of_a_sku_adjusted_at_its_dear_price_gives_them_back(
    captured_shop: Shop,
) -> None:
    """One SKU at 5.00 in one pickup and twice at 25.00 in the other, one card. 25.00 goes
    back naming one unit: the most one may take, a dear unit's price, so a dear unit is the
    adjusted one. The cheap unit's pickup cancelled gives back its whole 5.00, and the other
    pickup is still handed over: the card holds 25.00, what is left of its price once the
    adjustment is taken off. Before, the cheap unit was taken to be the adjusted one: its
    cancel gave back nothing, the 20.00 it could not take was lost, and the hand-over was
    refused for 20.00 "refunded"."""
    shop = captured_shop
    order = await _one_sku_at_two_prices(shop)
    (card,) = order.payment_ids
    cheap, dear = order.fulfillments
    await _adjust(shop, card, "OPEN", 2500)

    assert await _cancel(shop, order.id, cheap.id) == {card: 500}
    assert await _refunded(shop, order.id) == {card: 3000}
    after = await _picked_up(shop, order.id, dear.id)
    assert after.fulfillments[1].status == order_pb2.FULFILLMENT_STATUS_PICKED_UP


@pytest.mark.parametrize("together", [False, True])
async def test_returns_of_a_sku_adjusted_at_its_dear_price_take_it_once_however_batched(
    captured_shop: Shop, together: bool
) -> None:
    """The same sale, both pickups handed over, 25.00 back naming one unit (a dear one). The
    cheap unit and a dear one returned, in two returns or in one, refund 5.00 and nothing:
    30.00 back in all with the adjustment, what the two units were paid. Before, the cheap
    unit was taken to be the adjusted one: returned first on its own it refunded nothing and
    the dear one its whole 25.00 (55.00 back for 30.00 of goods); in one return they
    refunded 5.00."""
    shop = captured_shop
    order = await _one_sku_at_two_prices(shop)
    (card,) = order.payment_ids
    for f in order.fulfillments:
        await _picked_up(shop, order.id, f.id)
    await _adjust(shop, card, "OPEN", 2500)
    cheap, dear = order.lines

    def ask(*lines: tuple[str, int]) -> order_pb2.CreateReturnRequest:
        return order_pb2.CreateReturnRequest(
            request_id=str(uuid.uuid4()),
            order_id=order.id,
            lines=[order_pb2.ReturnLineRequest(line_id=i, quantity=q, restock=True)
                   for i, q in lines],
            reason="unwanted",
        )  # fmt: skip

    asks = [[(cheap.id, 1), (dear.id, 1)]] if together else [[(cheap.id, 1)], [(dear.id, 1)]]
    back: dict[str, int] = {}
    for lines in asks:
        made = await shop.orders.CreateReturn(ask(*lines), metadata=MERCHANT, timeout=20)
        for ln in made.order_return.lines:
            back[ln.line_id] = ln.amount.amount
    assert back == {cheap.id: 500, dear.id: 0}
    assert await _refunded(shop, order.id) == {card: 3000}


async def test_a_pickup_cancelled_after_an_adjustment_and_goodwill_takes_only_the_goodwill(
    captured_shop: Shop,
) -> None:
    """10.00 back on card B for the mug, then 5.00 of goodwill on card B too (10.00 left on
    it). The mug's cancel owes 15.00: the 10.00 card B has, and the 5.00 the goodwill took
    from card A. The customer has 25.00 for the mug and the 5.00 of goodwill."""
    shop = captured_shop
    order = await _two_pickups(shop, [2500, 2500], ("TEE", "MUG"))
    first_card, second_card = order.payment_ids
    await _adjust(shop, second_card, "MUG", 1000)
    await _goodwill(shop, second_card, 500)

    refunds = await _cancel(shop, order.id, order.fulfillments[1].id)

    assert refunds == {second_card: 1000, first_card: 500}
    assert await _refunded(shop, order.id) == {first_card: 500, second_card: 2500}


async def test_an_adjustment_a_cancel_took_is_not_taken_again_from_the_units_kept(
    captured_shop: Shop,
) -> None:
    """A T-shirt in each pickup, one card each; 10.00 back on card B for one T-shirt. Which
    one is not known: the first to come back, the second pickup's cancelled, is taken to be
    it, and its cancel gives back 15.00. The T-shirt kept was given back nothing: a refund
    naming it may give back its whole 25.00 (before, the adjustment was counted against it
    again, 15.00 at most), and its cancel gives back all card A holds."""
    shop = captured_shop
    order = await _two_pickups(shop, [2500, 2500])
    first_card, second_card = order.payment_ids
    first, second = order.fulfillments
    await _adjust(shop, second_card, "TEE", 1000)

    assert await _cancel(shop, order.id, second.id) == {second_card: 1500}

    checked = await shop.orders.CheckRefundUnits(
        order_pb2.CheckRefundUnitsRequest(
            order_id=order.id,
            lines=[payment_pb2.RefundLine(sku="TEE", quantity=1)],
            amount=usd(2500),
        ),
        metadata=MERCHANT,
        timeout=10,
    )
    assert checked.at_most.amount == 2500
    assert await _cancel(shop, order.id, first.id) == {first_card: 2500}
    assert await _refunded(shop, order.id) == {first_card: 2500, second_card: 2500}


async def test_the_adjusted_pickup_cancelled_last_or_the_order_cancelled_gives_back_the_rest(
    captured_shop: Shop,
) -> None:
    """10.00 back on card B for the mug. The T-shirt's pickup cancelled first gives back its
    25.00 (card A); the mug's, the last, takes the order with it and gives back 15.00 (card
    B): 50.00 back in all, what was captured. An order cancelled whole after the same
    adjustment gives back what each card has left: 25.00 and 15.00."""
    shop = captured_shop
    order = await _two_pickups(shop, [2500, 2500], ("TEE", "MUG"))
    first_card, second_card = order.payment_ids
    tee, mug = order.fulfillments
    await _adjust(shop, second_card, "MUG", 1000)
    assert await _cancel(shop, order.id, tee.id) == {first_card: 2500}
    assert await _cancel(shop, order.id, mug.id) == {second_card: 1500}
    assert await _refunded(shop, order.id) == {first_card: 2500, second_card: 2500}
    assert (await shop.order(order.id)).status == order_pb2.ORDER_STATUS_CANCELLED

    whole = await _two_pickups(shop, [2500, 2500], ("TEE", "MUG"))
    first_card, second_card = whole.payment_ids
    await _adjust(shop, second_card, "MUG", 1000)
    cancelled = await shop.orders.CancelOrder(
        order_pb2.CancelOrderRequest(request_id=str(uuid.uuid4()), order_id=whole.id),
        metadata=MERCHANT,
        timeout=20,
    )
    assert cancelled.order.status == order_pb2.ORDER_STATUS_CANCELLED
    assert {r.payment_id: r.amount.amount for r in cancelled.refunds} == {
        first_card: 2500,
        second_card: 1500,
    }
    assert await _refunded(shop, whole.id) == {first_card: 2500, second_card: 2500}


async def _pickup_and_shipment(shop: Shop) -> order_pb2.Order:
    """A T-shirt picked up (25.00, captured at confirmation) and a mug shipped (25.00, only
    authorised until it ships), one card for both (50.00), confirmed."""
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
                order_pb2.OrderLineRequest(sku="MUG", quantity=1, fulfillment=1),
            ],
            fulfillments=[pickup, shipment],
        ),
        metadata=MERCHANT,
        timeout=10,
    )
    await shop.tender(created.order.id, tender_type=CARD, card_token="tok_visa")
    confirmed = await shop.orders.ConfirmOrder(
        order_pb2.ConfirmOrderRequest(request_id=str(uuid.uuid4()), order_id=created.order.id),
        metadata=MERCHANT,
        timeout=10,
    )
    assert [f.captured.amount for f in confirmed.order.fulfillments] == [2500, 0]
    return confirmed.order


async def _ship(shop: Shop, order_id: str, fulfillment_id: str) -> order_pb2.Order:
    for status in (order_pb2.FULFILLMENT_STATUS_PICKED, order_pb2.FULFILLMENT_STATUS_SHIPPED):
        answer = await shop.orders.UpdateFulfillment(
            order_pb2.UpdateFulfillmentRequest(
                request_id=str(uuid.uuid4()),
                order_id=order_id,
                fulfillment_id=fulfillment_id,
                status=status,
                carrier="UPS" if status == order_pb2.FULFILLMENT_STATUS_SHIPPED else "",
                tracking_number="1Z999" if status == order_pb2.FULFILLMENT_STATUS_SHIPPED else "",
            ),
            metadata=MERCHANT,
            timeout=10,
        )
    return answer.order


async def test_a_pickup_cancelled_after_goodwill_takes_the_shortfall_off_the_shipment(
    captured_shop: Shop,
) -> None:
    """The T-shirt's pickup captured at confirmation (25.00), the mug's shipment only
    authorised (25.00), one card. 5.00 of goodwill goes back from what the card captured; the
    pickup is then cancelled: the card has only 20.00 captured left, and no other payment has
    captured money, so the cancel gives back those 20.00 and the 5.00 it cannot give back is
    taken off what the order captures later: the shipment captures 20.00, and what is left of
    the authorisation (5.00) is voided. The customer paid 20.00 for the 25.00 mug, the
    goodwill kept. The 5.00 was dropped, and the shipment captured its whole 25.00: the
    customer paid 25.00 net for it, the goodwill taken back."""
    shop = captured_shop
    order = await _pickup_and_shipment(shop)
    (card,) = order.payment_ids
    tee, mug = order.fulfillments
    await shop.payments.CreateRefund(
        payment_pb2.CreateRefundRequest(
            request_id=str(uuid.uuid4()), order_id=order.id, amount=usd(500), reason="goodwill"
        ),
        metadata=MERCHANT,
        timeout=10,
    )

    assert await _cancel(shop, order.id, tee.id) == {card: 2000}
    after = await shop.order(order.id)
    assert after.status == order_pb2.ORDER_STATUS_CONFIRMED
    assert after.fulfillments[1].status == order_pb2.FULFILLMENT_STATUS_RESERVED

    shipped = await _ship(shop, order.id, mug.id)

    assert shipped.fulfillments[1].status == order_pb2.FULFILLMENT_STATUS_SHIPPED
    assert shipped.fulfillments[1].captured.amount == 2000
    (payment,) = await shop.payments_of(order.id)
    assert (payment.captured.amount, payment.refunded.amount) == (4500, 2500)
    # Nothing more is held for the order: the authorisation's rest was released.
    assert await shop.money_held(order.id) == 2000
    final = await shop.order(order.id)
    assert final.paid.amount == 2000


async def test_goodwill_beyond_what_the_shipment_captures_leaves_it_nothing_to_capture(
    captured_shop: Shop,
) -> None:
    """24.00 of goodwill (1.00 left captured), then the pickup's cancel: 1.00 back, and 24.00
    off the mug's 25.00 capture, which captures 1.00. Shipped twice over (the step asked again
    with the same ids by another request), nothing more is taken: the cut is taken once."""
    shop = captured_shop
    order = await _pickup_and_shipment(shop)
    (card,) = order.payment_ids
    tee, mug = order.fulfillments
    await _goodwill(shop, card, 2400)
    assert await _cancel(shop, order.id, tee.id) == {card: 100}
    # Cancelled again (another request): answered unchanged, nothing more planned.
    assert await _cancel(shop, order.id, tee.id) == {card: 100}

    shipped = await _ship(shop, order.id, mug.id)

    assert shipped.fulfillments[1].captured.amount == 100
    (payment,) = await shop.payments_of(order.id)
    assert (payment.captured.amount, payment.refunded.amount) == (2600, 2500)
    assert await shop.money_held(order.id) == 100


async def _hand_over(shop: Shop, order_id: str, fulfillment_id: str) -> order_pb2.Order:
    for status in (
        order_pb2.FULFILLMENT_STATUS_READY_FOR_PICKUP,
        order_pb2.FULFILLMENT_STATUS_PICKED_UP,
    ):
        answer = await shop.orders.UpdateFulfillment(
            order_pb2.UpdateFulfillmentRequest(
                request_id=str(uuid.uuid4()),
                order_id=order_id,
                fulfillment_id=fulfillment_id,
                status=status,
            ),
            metadata=MERCHANT,
            timeout=10,
        )
    return answer.order


async def test_an_uncaptured_shipment_cancelled_after_a_price_adjustment_takes_it_back(
    captured_shop: Shop,
) -> None:
    """The T-shirt's pickup captured at confirmation (25.00), the mug's shipment only
    authorised (25.00), one card. 10.00 goes back for the mug (a price adjustment naming it),
    from what the card captured for the T-shirt. The mug's shipment is then cancelled: nothing
    was captured for it, yet the customer holds 10.00 given back for it. The cancel captures
    those 10.00 from the mug's authorisation before the rest is voided, so the T-shirt, kept,
    is paid 25.00 net (35.00 captured, 10.00 refunded). Before, the cancel captured nothing
    and the adjustment stayed given: the T-shirt was sold for 15.00."""
    shop = captured_shop
    order = await _pickup_and_shipment(shop)
    (card,) = order.payment_ids
    tee, mug = order.fulfillments
    await _adjust(shop, card, "MUG", 1000)

    assert await _cancel(shop, order.id, mug.id) == {}

    (payment,) = await shop.payments_of(order.id)
    assert (payment.captured.amount, payment.refunded.amount) == (3500, 1000)
    # Nothing is held any more beyond the T-shirt's price: the rest was voided.
    assert await shop.money_held(order.id) == 2500
    after = await shop.order(order.id)
    assert after.status == order_pb2.ORDER_STATUS_CONFIRMED
    cancelled = after.fulfillments[1]
    assert cancelled.status == order_pb2.FULFILLMENT_STATUS_CANCELLED
    # What it captured went back as the adjustment: it keeps nothing.
    assert (cancelled.captured.amount, cancelled.refunded.amount) == (1000, 1000)
    # Cancelled again (another request): answered unchanged, nothing more captured.
    assert await _cancel(shop, order.id, mug.id) == {}

    handed = await _hand_over(shop, order.id, tee.id)

    assert handed.status == order_pb2.ORDER_STATUS_COMPLETED
    (payment,) = await shop.payments_of(order.id)
    assert payment.captured.amount - payment.refunded.amount == 2500
    assert await shop.money_held(order.id) == 2500


async def test_an_uncaptured_shipment_cut_for_the_adjustment_is_not_taken_twice(
    captured_shop: Shop,
) -> None:
    """10.00 back for the mug (shipment, only authorised) from what the card captured for
    the T-shirt (pickup). The T-shirt's pickup is cancelled first: the card has 15.00 left,
    which go back, and the 10.00 it lacks are taken off the mug's capture. The mug's cancel,
    the last, captures nothing (the cut stood for the adjustment already) and takes the order
    with it: all that was captured given back, nothing held."""
    shop = captured_shop
    order = await _pickup_and_shipment(shop)
    (card,) = order.payment_ids
    tee, mug = order.fulfillments
    await _adjust(shop, card, "MUG", 1000)
    assert await _cancel(shop, order.id, tee.id) == {card: 1500}

    assert await _cancel(shop, order.id, mug.id) == {}

    (payment,) = await shop.payments_of(order.id)
    assert (payment.captured.amount, payment.refunded.amount) == (2500, 2500)
    assert await shop.money_held(order.id) == 0
    assert (await shop.order(order.id)).status == order_pb2.ORDER_STATUS_CANCELLED


async def _pickup_and_two_shipments(shop: Shop) -> order_pb2.Order:
    """A T-shirt picked up (25.00, captured at confirmation), then a mug and a T-shirt each
    shipped on its own (25.00 each, only authorised until shipped), one card for all three
    (75.00), confirmed."""
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
                order_pb2.OrderLineRequest(sku="MUG", quantity=1, fulfillment=1),
                order_pb2.OrderLineRequest(sku="TEE", quantity=1, fulfillment=2),
            ],
            fulfillments=[pickup, shipment, shipment],
        ),
        metadata=MERCHANT,
        timeout=10,
    )
    await shop.tender(created.order.id, tender_type=CARD, card_token="tok_visa")
    confirmed = await shop.orders.ConfirmOrder(
        order_pb2.ConfirmOrderRequest(request_id=str(uuid.uuid4()), order_id=created.order.id),
        metadata=MERCHANT,
        timeout=10,
    )
    assert [f.captured.amount for f in confirmed.order.fulfillments] == [2500, 0, 0]
    return confirmed.order


def _kept_by_fulfillments(order: order_pb2.Order) -> int:
    return sum(f.captured.amount - f.refunded.amount for f in order.fulfillments)


async def test_a_shipment_cut_for_goodwill_and_then_cancelled_passes_the_cut_on(
    captured_shop: Shop,
) -> None:
    """A pickup captured at confirmation and two shipments only authorised, one card (75.00);
    5.00 of goodwill back from what it captured. The pickup's cancel gives back 20.00 and
    takes the 5.00 no captured money can give back off the mug's shipment. The mug's
    shipment is then cancelled too: the cut goes on to the T-shirt's shipment, which captures
    20.00 when shipped; the customer pays 20.00 for it, the goodwill kept, and what each
    fulfilment kept (captured less refunded) comes to what the card kept. Before, the mug's
    cancel dropped the cut: the T-shirt's shipment captured its whole 25.00, the goodwill
    taken back, and the pickup read as keeping 5.00 the card no longer held."""
    shop = captured_shop
    order = await _pickup_and_two_shipments(shop)
    (card,) = order.payment_ids
    tee, mug, shirt = order.fulfillments
    await _goodwill(shop, card, 500)
    assert await _cancel(shop, order.id, tee.id) == {card: 2000}
    after = await shop.order(order.id)
    assert (after.fulfillments[0].captured.amount, after.fulfillments[0].refunded.amount) == (
        2500,
        2500,
    )
    (payment,) = await shop.payments_of(order.id)
    assert _kept_by_fulfillments(after) == payment.captured.amount - payment.refunded.amount == 0

    assert await _cancel(shop, order.id, mug.id) == {}
    # Cancelled again (another request): answered unchanged, the cut passed on once.
    assert await _cancel(shop, order.id, mug.id) == {}

    shipped = await _ship(shop, order.id, shirt.id)

    assert shipped.fulfillments[2].status == order_pb2.FULFILLMENT_STATUS_SHIPPED
    assert shipped.fulfillments[2].captured.amount == 2000
    (payment,) = await shop.payments_of(order.id)
    assert (payment.captured.amount, payment.refunded.amount) == (4500, 2500)
    assert await shop.money_held(order.id) == 2000
    final = await shop.order(order.id)
    assert final.paid.amount == 2000
    assert _kept_by_fulfillments(final) == 2000


async def test_a_shipment_cut_for_goodwill_cancelled_after_the_rest_shipped_refunds_the_cut(
    captured_shop: Shop,
) -> None:
    """As above, but the T-shirt's shipment ships (25.00 captured: the cut is the mug's)
    before the mug's shipment is cancelled. Nothing is left to capture the cut off, so the
    mug's cancel gives those 5.00 back from what the card captured (so it needs the `refund`
    permission): the customer pays 20.00 for the T-shirt, the goodwill kept. Before, the cut
    was dropped and they paid 25.00."""
    shop = captured_shop
    order = await _pickup_and_two_shipments(shop)
    (card,) = order.payment_ids
    tee, mug, shirt = order.fulfillments
    await _goodwill(shop, card, 500)
    assert await _cancel(shop, order.id, tee.id) == {card: 2000}
    shipped = await _ship(shop, order.id, shirt.id)
    assert shipped.fulfillments[2].captured.amount == 2500
    # It gives money back: a caller who may not is refused, nothing written.
    with pytest.raises(grpc.aio.AioRpcError) as err:
        await _cancel_unpermitted(shop, order.id, mug.id)
    assert read_error(err.value).reason == "permission_required"
    assert await _refunded(shop, order.id) == {card: 2500}

    assert await _cancel(shop, order.id, mug.id) == {card: 500}
    assert await _cancel(shop, order.id, mug.id) == {card: 500}

    final = await shop.order(order.id)
    assert final.fulfillments[1].status == order_pb2.FULFILLMENT_STATUS_CANCELLED
    assert (final.fulfillments[1].captured.amount, final.fulfillments[1].refunded.amount) == (0, 0)
    (payment,) = await shop.payments_of(order.id)
    assert (payment.captured.amount, payment.refunded.amount) == (5000, 3000)
    assert await shop.money_held(order.id) == 2000
    assert final.paid.amount == 2000


async def test_a_shipment_cut_for_goodwill_cancelled_with_the_rest_gives_everything_back(
    captured_shop: Shop,
) -> None:
    """The pickup cancelled (the cut on the mug's shipment), then the mug's shipment (the cut
    passed on to the T-shirt's), then the T-shirt's: the last takes the order with it, all
    that was captured given back, nothing held, each fulfilment keeping nothing."""
    shop = captured_shop
    order = await _pickup_and_two_shipments(shop)
    (card,) = order.payment_ids
    tee, mug, shirt = order.fulfillments
    await _goodwill(shop, card, 500)
    assert await _cancel(shop, order.id, tee.id) == {card: 2000}
    assert await _cancel(shop, order.id, mug.id) == {}
    assert await _cancel(shop, order.id, shirt.id) == {}

    final = await shop.order(order.id)
    assert final.status == order_pb2.ORDER_STATUS_CANCELLED
    (payment,) = await shop.payments_of(order.id)
    assert (payment.captured.amount, payment.refunded.amount) == (2500, 2500)
    assert await shop.money_held(order.id) == 0
    assert _kept_by_fulfillments(final) == 0


@pytest_asyncio.fixture(loop_scope="session", scope="module")
async def authorised_shop(infra: Infra) -> AsyncIterator[Shop]:
    """Pickups captured when they are handed over: only authorised until then."""
    async with relayed_shop(infra) as found:
        await _mugs(found)
        yield found


async def test_an_authorised_pickup_cancelled_after_a_price_adjustment_takes_it_back(
    authorised_shop: Shop,
) -> None:
    """A T-shirt's pickup and a mug's, one card (50.00), captured when handed over. The
    T-shirt is picked up (25.00 captured); 10.00 goes back for the mug (a price adjustment
    naming it), from that capture. The mug's pickup is cancelled, the last live one, with the
    T-shirt handed over: the order completes, and the cancel captured the 10.00 from the mug's
    authorisation before voiding the rest. The T-shirt is paid 25.00 net. Before, 15.00."""
    shop = authorised_shop
    order = await _pickups_ordered(shop, ("TEE", "MUG"))
    await shop.tender(order.id, tender_type=CARD, card_token="tok_visa")
    confirmed = await _confirmed(shop, order.id)
    assert [f.captured.amount for f in confirmed.fulfillments] == [0, 0]
    (card,) = confirmed.payment_ids
    tee, mug = confirmed.fulfillments
    await _hand_over(shop, order.id, tee.id)
    await _adjust(shop, card, "MUG", 1000)

    assert await _cancel(shop, order.id, mug.id) == {}

    after = await shop.order(order.id)
    assert after.status == order_pb2.ORDER_STATUS_COMPLETED
    assert after.fulfillments[1].status == order_pb2.FULFILLMENT_STATUS_CANCELLED
    (payment,) = await shop.payments_of(order.id)
    assert (payment.captured.amount, payment.refunded.amount) == (3500, 1000)
    assert await shop.money_held(order.id) == 2500


async def _cash_then_card(shop: Shop) -> order_pb2.Order:
    """A T-shirt's pickup paid in cash (25.00, taken first: the T-shirt's) and a mug's paid by
    card (25.00, captured at confirmation), confirmed."""
    order = await _pickups_ordered(shop, ("TEE", "MUG"))
    await shop.tender(order.id, tender_type=CASH, amount=usd(2500), cash_tendered=usd(2500))
    await shop.tender(order.id, tender_type=CARD, card_token="tok_visa", amount=usd(2500))
    confirmed = await _confirmed(shop, order.id)
    assert [f.captured.amount for f in confirmed.fulfillments] == [2500, 2500]
    return confirmed


async def _heard(shop: Shop, order_id: str, paid: int) -> None:
    """Until the order has heard of a refund made through the payments API (its event): what
    it counts as paid comes to `paid`."""
    deadline = asyncio.get_running_loop().time() + 30
    while (await shop.order(order_id)).paid.amount != paid:
        assert asyncio.get_running_loop().time() < deadline, "the refund never reached the order"
        await asyncio.sleep(0.05)


async def test_a_cancel_paid_back_by_card_after_a_price_adjustment_needs_no_drawer(
    captured_shop: Shop,
) -> None:
    """The T-shirt paid in cash, the mug by card; 10.00 back on the card for the mug (a price
    adjustment naming it). The mug's cancel gives back 15.00, all from the card: no cash, so
    the back office may make it. Its drawer check planned the cancel without the adjustment
    (25.00 owed, the 10.00 the card no longer has from the cash) and refused it, 409
    `cash_refund_needs_open_shift`, for cash it would never pay out. The same cancel after
    10.00 of goodwill on the card (naming no units) does reach the cash, and is refused."""
    shop = captured_shop
    order = await _cash_then_card(shop)
    cash, card = order.payment_ids
    await _adjust(shop, card, "MUG", 1000)
    await _heard(shop, order.id, 4000)

    assert await _cancel(shop, order.id, order.fulfillments[1].id) == {card: 1500}
    assert await _refunded(shop, order.id) == {cash: 0, card: 2500}

    goodwill = await _cash_then_card(shop)
    cash, card = goodwill.payment_ids
    await _goodwill(shop, card, 1000)
    await _heard(shop, goodwill.id, 4000)
    with pytest.raises(grpc.aio.AioRpcError) as err:
        await _cancel(shop, goodwill.id, goodwill.fulfillments[1].id)
    assert read_error(err.value).reason == "cash_refund_needs_open_shift"
    assert await _refunded(shop, goodwill.id) == {cash: 0, card: 1000}


async def _cancel_unpermitted(shop: Shop, order_id: str, fulfillment_id: str) -> dict[str, int]:
    """`_cancel` asked for a caller who may not give money back (a register's member without
    the `refund` permission, no manager's override)."""
    answer = await shop.orders.CancelFulfillment(
        order_pb2.CancelFulfillmentRequest(
            request_id=str(uuid.uuid4()),
            order_id=order_id,
            fulfillment_id=fulfillment_id,
            refund_not_permitted=True,
        ),
        metadata=MERCHANT,
        timeout=20,
    )
    return {r.payment_id: r.amount.amount for r in answer.refunds}


async def test_a_pickup_adjusted_in_full_is_cancelled_without_the_refund_permission(
    captured_shop: Shop,
) -> None:
    """A T-shirt picked up with card A, a mug with card B (25.00 each, captured at
    confirmation); the mug's whole 25.00 back on card B (a price adjustment naming it). Its
    cancel gives nothing back, so a caller without the `refund` permission may make it: the
    mug's units go back to stock, its pickup reads 25.00 refunded, the T-shirt's waits. The
    permission check judged the cancel by what was captured for the mug (25.00), not by what
    the cancel gives back, and refused it, `permission_required`."""
    shop = captured_shop
    order = await _two_pickups(shop, [2500, 2500], ("TEE", "MUG"))
    first_card, second_card = order.payment_ids
    await _adjust(shop, second_card, "MUG", 2500)

    assert await _cancel_unpermitted(shop, order.id, order.fulfillments[1].id) == {}

    assert await _refunded(shop, order.id) == {first_card: 0, second_card: 2500}
    after = await shop.order(order.id)
    assert after.status == order_pb2.ORDER_STATUS_CONFIRMED
    tee, mug = after.fulfillments
    assert tee.status == order_pb2.FULFILLMENT_STATUS_RESERVED
    assert mug.status == order_pb2.FULFILLMENT_STATUS_CANCELLED
    assert (mug.captured.amount, mug.refunded.amount) == (2500, 2500)


async def test_a_pickup_adjusted_in_part_still_needs_the_refund_permission(
    captured_shop: Shop,
) -> None:
    """As above with 10.00 of the mug's 25.00 given back: its cancel gives back 15.00, and a
    caller without the `refund` permission is refused (`permission_required`, naming what the
    cancel gives back), nothing changed. Made with the permission, it gives back the 15.00."""
    shop = captured_shop
    order = await _two_pickups(shop, [2500, 2500], ("TEE", "MUG"))
    first_card, second_card = order.payment_ids
    mug = order.fulfillments[1]
    await _adjust(shop, second_card, "MUG", 1000)

    with pytest.raises(grpc.aio.AioRpcError) as err:
        await _cancel_unpermitted(shop, order.id, mug.id)
    refused = read_error(err.value)
    assert (refused.reason, refused.metadata["permission"]) == ("permission_required", "refund")
    assert "gives 1500 back" in err.value.details()
    assert await _refunded(shop, order.id) == {first_card: 0, second_card: 1000}
    kept = await shop.order(order.id)
    assert [f.status for f in kept.fulfillments] == [order_pb2.FULFILLMENT_STATUS_RESERVED] * 2

    assert await _cancel(shop, order.id, mug.id) == {second_card: 1500}


async def test_an_exchange_of_the_cheap_unit_of_a_sku_adjusted_at_its_dear_price_credits_it(
    captured_shop: Shop,
) -> None:
    """The same sale, handed over, 25.00 back naming one unit (a dear one). The cheap unit
    exchanged for a T-shirt (25.00) is credited its whole 5.00 (20.00 to pay). Before, it was
    taken to be the adjusted unit and credited nothing."""
    shop = captured_shop
    order = await _one_sku_at_two_prices(shop)
    (card,) = order.payment_ids
    for f in order.fulfillments:
        await _picked_up(shop, order.id, f.id)
    await _adjust(shop, card, "OPEN", 2500)
    cheap = order.lines[0]

    made = await shop.orders.CreateExchange(
        order_pb2.CreateExchangeRequest(
            request_id=str(uuid.uuid4()),
            order_id=order.id,
            lines=[order_pb2.ReturnLineRequest(line_id=cheap.id, quantity=1, restock=True)],
            new_lines=[order_pb2.ExchangeLine(sku="TEE", quantity=1)],
            reason="unwanted",
            tenders=[order_pb2.ExchangeTender(tender_type=CARD, card_token="tok_visa")],
        ),
        metadata=MERCHANT,
        timeout=30,
    )

    assert made.order_return.amount.amount == 500
    assert made.order.total.amount == 2500
