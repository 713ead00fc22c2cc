"""A pickup not collected in time, beside goods already handed over: real PostgreSQL, NATS
JetStream, and the inventory, payment and order services in this process; the order service's
own resumer expires it.

The pickup's wait is cut short by the test hook the lifecycle machine uses: its `expires_at`
moved into the past (`saga.change`, on the service's own database). Pickups wait an hour at
most here (`pickup_expiry_seconds`), within a card's authorisation, so a pickup captures at
hand-over unless the merchant says at confirmation.

An expiring pickup ends exactly as one cancelled on its own (`CancelFulfillment`), with the
state `expired`: its units back in stock once, its captured share refunded (one refund per
payment), its uncaptured share voided once nothing else of the order will capture,
`cancelled_total` counting it, `order.fulfillment_updated` published. The order is cancelled
whole only if nothing of it was handed over; otherwise it completes.
"""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import grpc
import psycopg
import pytest
import pytest_asyncio
from order_shop import CRASH_SETTINGS, crash_stack, serve_order_on, tee_shop
from order_shop import CrashStack as Stack
from psycopg.pq import TransactionStatus

from pos.common.v1 import money_pb2
from pos.inventory.v1 import inventory_pb2, inventory_pb2_grpc
from pos.order.v1 import events_pb2, order_pb2, order_pb2_grpc
from pos.payment.v1 import payment_pb2, payment_pb2_grpc
from pos_devstack.testing import Infra, InProcessService, until
from pos_order.domain.model import Capture, FulfillmentType, Order
from pos_order.service import saga

pytestmark = pytest.mark.asyncio(loop_scope="session")

PICKUP = order_pb2.FULFILLMENT_TYPE_PICKUP
IN_STORE = order_pb2.FULFILLMENT_TYPE_IN_STORE
F = order_pb2


@dataclass
class Shop:
    stack: Stack
    service: InProcessService
    stub: order_pb2_grpc.OrderServiceStub


@pytest_asyncio.fixture(loop_scope="session", scope="module")
async def shop(infra: Infra) -> AsyncIterator[Shop]:
    async with crash_stack(infra) as stack:
        ports = (stack.nats_url, stack.inventory_port, stack.payment_port)
        async with serve_order_on(
            stack.order_db, *ports, pickup_expiry_seconds=3600, **CRASH_SETTINGS
        ) as service:
            yield Shop(stack, service, order_pb2_grpc.OrderServiceStub(service.channel))


async def _stores(shop: Shop, merchant: str) -> tuple[str, str]:
    """The merchant's till (`here`) and another store that hands over pickups (`there`), ten
    T-shirts in each."""
    here = await tee_shop(shop.stack.inventory, merchant)
    meta = (("x-merchant-id", merchant),)
    inventory = inventory_pb2_grpc.InventoryServiceStub(shop.stack.inventory)
    there = (
        await inventory.CreateLocation(
            inventory_pb2.CreateLocationRequest(
                request_id=f"{merchant}-there",
                name="Elm St",
                currency="USD",
                tax_rate_bps=0,
                pickup_enabled=True,
            ),
            metadata=meta,
            timeout=5,
        )
    ).location.id
    for location in (here, there):
        await inventory.AdjustStock(
            inventory_pb2.AdjustStockRequest(
                request_id=f"{merchant}-{location}-received",
                sku="TEE",
                location_id=location,
                delta=10,
                reason=inventory_pb2.ADJUSTMENT_REASON_RECEIVED,
            ),
            metadata=meta,
            timeout=5,
        )
    return here, there


async def _sold(
    shop: Shop,
    merchant: str,
    fulfillments: list[order_pb2.FulfillmentRequest],
    quantities: list[int],
    capture_at_order: bool,
) -> order_pb2.Order:
    """An order of `quantities[i]` T-shirts for `fulfillments[i]`, paid by one card and
    confirmed."""
    meta = (("x-merchant-id", merchant),)
    await shop.stub.UpdateOrderSettings(
        order_pb2.UpdateOrderSettingsRequest(
            request_id=str(uuid.uuid4()), capture_pickup_at_order=capture_at_order
        ),
        metadata=meta,
        timeout=10,
    )
    created = await shop.stub.CreateOrder(
        order_pb2.CreateOrderRequest(
            request_id=str(uuid.uuid4()),
            channel="web",
            location_id=fulfillments[0].location_id,
            lines=[
                order_pb2.OrderLineRequest(sku="TEE", quantity=q, fulfillment=i)
                for i, q in enumerate(quantities)
            ],
            fulfillments=fulfillments,
        ),
        metadata=meta,
        timeout=30,
    )
    await shop.stub.AddTender(
        order_pb2.AddTenderRequest(
            request_id=str(uuid.uuid4()),
            order_id=created.order.id,
            tender_type=payment_pb2.TENDER_TYPE_CARD,
            card_token="tok_visa",
        ),
        metadata=meta,
        timeout=30,
    )
    confirmed = await shop.stub.ConfirmOrder(
        order_pb2.ConfirmOrderRequest(request_id=str(uuid.uuid4()), order_id=created.order.id),
        metadata=meta,
        timeout=30,
    )
    return confirmed.order


def _uow(shop: Shop, merchant: str) -> Any:
    return lambda: shop.service.runtime.uow().bind(merchant)


async def _collected(shop: Shop, merchant: str, order_id: str, fulfillment_id: str) -> None:
    """The pickup made ready, then handed over: one step at a time, as the machine goes."""
    for status in (F.FULFILLMENT_STATUS_READY_FOR_PICKUP, F.FULFILLMENT_STATUS_PICKED_UP):
        await shop.stub.UpdateFulfillment(
            order_pb2.UpdateFulfillmentRequest(
                request_id=str(uuid.uuid4()),
                order_id=order_id,
                fulfillment_id=fulfillment_id,
                status=status,
            ),
            metadata=(("x-merchant-id", merchant),),
            timeout=30,
        )


async def _overdue(shop: Shop, merchant: str, order_id: str, fulfillment_id: str) -> None:
    """The test hook: the pickup's wait is over (the resumer looks at it on its next pass)."""

    def past(o: Order) -> None:
        f = o.fulfillment(fulfillment_id)
        assert f is not None and f.type is FulfillmentType.PICKUP
        f.expires_at = datetime.now(UTC) - timedelta(seconds=1)

    await saga.change(_uow(shop, merchant), order_id, past)


async def _order(shop: Shop, merchant: str, order_id: str) -> order_pb2.Order:
    got = await shop.stub.GetOrder(
        order_pb2.GetOrderRequest(id=order_id), metadata=(("x-merchant-id", merchant),), timeout=5
    )
    return got.order


def _status_of(shop: Shop, order_id: str, index: int) -> str:
    """The fulfilment's status, the saga's state, and what the order recorded voided of its
    payment."""
    rows = shop.stack.rows(
        shop.stack.order_db,
        "SELECT fulfillments->%s->>'status', saga_state, "
        "COALESCE((saga->'tenders'->0->>'voided')::bigint, 0) FROM orders WHERE id = %s",
        index,
        order_id,
    )
    status, saga_state, voided = rows[0]
    return f"{status}/{saga_state}/{voided}"


async def _expired(
    shop: Shop, merchant: str, order_id: str, index: int, voided: int = 0
) -> order_pb2.Order:
    """The order once its pickup is recorded expired and, when a share is to be released,
    once the void that follows the record is done and recorded."""
    await until(lambda: _status_of(shop, order_id, index) == f"expired/done/{voided}", limit=30)
    return await _order(shop, merchant, order_id)


def _payment(shop: Shop, order_id: str) -> tuple[int, int, int, int]:
    """The order's one payment: authorised, captured, voided, refunded."""
    ((authorized, captured, voided, refunded),) = shop.stack.rows(
        shop.stack.payment_db,
        "SELECT authorized, captured, voided, refunded FROM payments WHERE order_id = %s",
        order_id,
    )
    return authorized, captured, voided, refunded


def _refunds(shop: Shop, order_id: str) -> list[int]:
    rows = shop.stack.rows(
        shop.stack.payment_db,
        "SELECT amount FROM refunds WHERE order_id = %s ORDER BY amount",
        order_id,
    )
    return [r[0] for r in rows]


def _on_hand(shop: Shop, merchant: str, location: str) -> int:
    ((units,),) = shop.stack.rows(
        shop.stack.inventory_db,
        "SELECT on_hand FROM stock WHERE merchant_id = %s AND sku = 'TEE' AND location_id = %s",
        merchant,
        location,
    )
    return int(units)


def _fulfillment_events(shop: Shop, merchant: str, order_id: str) -> list[order_pb2.Order]:
    """The `order.fulfillment_updated` events of the order, as written to the outbox."""
    rows = shop.stack.rows(
        shop.stack.order_db,
        "SELECT payload FROM outbox WHERE merchant_id = %s AND subject LIKE %s ORDER BY seq",
        merchant,
        "%order_fulfillment_updated",
    )
    found = [events_pb2.OrderFulfillmentUpdated.FromString(bytes(r[0])) for r in rows]
    return [e.order for e in found if e.order.id == order_id]


def _expired_events(shop: Shop, merchant: str, order_id: str, index: int) -> int:
    return sum(
        1
        for o in _fulfillment_events(shop, merchant, order_id)
        if o.fulfillments[index].status == F.FULFILLMENT_STATUS_EXPIRED
    )


@pytest.mark.parametrize("capture_at_order", [False, True], ids=["at_hand_over", "at_order"])
async def test_an_endless_aisle_pickup_expires_and_the_in_store_goods_stay_sold(
    shop: Shop, capture_at_order: bool
) -> None:
    """In-store lines handed over at the sale and a pickup from another store that nobody
    collects. The whole-order cancel refuses an order whose goods left the store, so sending
    the expiry there left the pickup waiting for ever, its units aside and its share held."""
    merchant = f"mer_exp_aisle_{uuid.uuid4().hex[:6]}"
    here, there = await _stores(shop, merchant)
    order = await _sold(
        shop,
        merchant,
        [
            order_pb2.FulfillmentRequest(type=IN_STORE, location_id=here),
            order_pb2.FulfillmentRequest(type=PICKUP, location_id=there),
        ],
        [1, 2],
        capture_at_order,
    )
    in_store, pickup = order.fulfillments
    assert (in_store.amount.amount, pickup.amount.amount) == (2500, 5000)
    assert pickup.captured.amount == (5000 if capture_at_order else 0)
    assert _on_hand(shop, merchant, there) == 8  # its hold committed at confirmation

    await _overdue(shop, merchant, order.id, pickup.id)
    after = await _expired(shop, merchant, order.id, 1, voided=0 if capture_at_order else 5000)

    # Something was handed over: the order completes, it is not cancelled.
    assert after.status == F.ORDER_STATUS_COMPLETED
    assert [f.status for f in after.fulfillments] == [
        F.FULFILLMENT_STATUS_FULFILLED,
        F.FULFILLMENT_STATUS_EXPIRED,
    ]
    assert after.cancelled_total.amount == 5000
    assert after.paid.amount == 2500
    assert f"{pickup.id}:expired" in [c.status for c in after.timeline]
    expired = after.fulfillments[1]
    assert (expired.captured.amount, expired.refunded.amount) == (
        (5000, 5000) if capture_at_order else (0, 0)
    )
    authorized, captured, voided, refunded = _payment(shop, order.id)
    assert authorized == 7500
    if capture_at_order:
        assert (captured, voided, refunded) == (7500, 0, 5000)
        assert _refunds(shop, order.id) == [5000]
    else:
        # Never captured, and nothing else of the order will capture: released.
        assert (captured, voided, refunded) == (2500, 5000, 0)
    assert captured - refunded == 2500  # the customer pays for what they carried out
    assert _on_hand(shop, merchant, there) == 10  # the pickup's units back, once
    assert _expired_events(shop, merchant, order.id, 1) == 1


async def test_a_pickup_expiring_beside_one_collected_voids_its_share(shop: Shop) -> None:
    """Two pickups captured at hand-over; the first is collected (its share captured), the
    second expires: its share was left authorised until the authorisation ran out."""
    merchant = f"mer_exp_void_{uuid.uuid4().hex[:6]}"
    here, _ = await _stores(shop, merchant)
    pickup = order_pb2.FulfillmentRequest(type=PICKUP, location_id=here)
    order = await _sold(shop, merchant, [pickup, pickup], [1, 2], capture_at_order=False)
    first, second = order.fulfillments
    await _collected(shop, merchant, order.id, first.id)
    assert _payment(shop, order.id) == (7500, 2500, 0, 0)

    await _overdue(shop, merchant, order.id, second.id)
    after = await _expired(shop, merchant, order.id, 1, voided=5000)

    assert after.status == F.ORDER_STATUS_COMPLETED
    assert after.cancelled_total.amount == 5000 and after.paid.amount == 2500
    assert _payment(shop, order.id) == (7500, 2500, 5000, 0)
    assert _on_hand(shop, merchant, here) == 9
    assert _expired_events(shop, merchant, order.id, 1) == 1


async def test_a_pickup_captured_in_two_parts_from_one_payment_is_refunded_once_in_all(
    shop: Shop,
) -> None:
    """A pickup whose share was captured from one payment in two captures expires: one
    refund of their sum per payment (`<order>/refund/<fulfilment>/<payment>`), as a cancel
    refunds. Refunding each capture under that one id asked it twice with two amounts: the
    second was refused as a reused key, and the pickup never expired."""
    merchant = f"mer_exp_parts_{uuid.uuid4().hex[:6]}"
    here, _ = await _stores(shop, merchant)
    pickup = order_pb2.FulfillmentRequest(type=PICKUP, location_id=here)
    order = await _sold(shop, merchant, [pickup, pickup], [1, 2], capture_at_order=True)
    first, second = order.fulfillments
    assert second.captured.amount == 5000
    await _collected(shop, merchant, order.id, first.id)

    def in_two_parts(o: Order) -> None:
        # The second pickup's 50.00 recorded as two captures from its one payment (30 + 20):
        # what the payment service captured is unchanged, only how it was recorded.
        (whole,) = [c for c in o.saga.captures if c.fulfillment_id == second.id]
        whole.amount = 3000
        o.saga.captures.append(
            Capture(f"{whole.request_id}/b", whole.payment_id, 2000, second.id, done=True)
        )

    await saga.change(_uow(shop, merchant), order.id, in_two_parts)
    await _overdue(shop, merchant, order.id, second.id)
    after = await _expired(shop, merchant, order.id, 1)

    assert after.status == F.ORDER_STATUS_COMPLETED
    assert after.paid.amount == 2500
    assert _refunds(shop, order.id) == [5000]
    assert _payment(shop, order.id) == (7500, 7500, 0, 5000)
    assert _on_hand(shop, merchant, here) == 9


async def test_a_pickup_expiring_after_goodwill_takes_the_shortfall_off_the_shipment(
    shop: Shop,
) -> None:
    """A pickup captured at confirmation (25.00) and a shipment only authorised (25.00), one
    card; 5.00 of goodwill goes back from what was captured. The pickup expires: its refund
    gives back the 20.00 the card has captured, and the 5.00 no captured money can give back
    is taken off the shipment's capture (20.00), as a cancel does: the customer pays 20.00 for
    the shipped T-shirt, the goodwill kept. The expiry dropped the 5.00, and the shipment
    captured its whole 25.00."""
    merchant = f"mer_exp_goodwill_{uuid.uuid4().hex[:6]}"
    meta = (("x-merchant-id", merchant),)
    here, _ = await _stores(shop, merchant)
    pickup = order_pb2.FulfillmentRequest(type=PICKUP, location_id=here)
    shipment = order_pb2.FulfillmentRequest(
        type=order_pb2.FULFILLMENT_TYPE_SHIPMENT, location_id=here, ship_to="1 Main St"
    )
    order = await _sold(shop, merchant, [pickup, shipment], [1, 1], capture_at_order=True)
    first, second = order.fulfillments
    assert (first.captured.amount, second.captured.amount) == (2500, 0)
    channel = grpc.aio.insecure_channel(f"127.0.0.1:{shop.stack.payment_port}")
    try:
        await payment_pb2_grpc.PaymentServiceStub(channel).CreateRefund(
            payment_pb2.CreateRefundRequest(
                request_id=str(uuid.uuid4()),
                order_id=order.id,
                amount=money_pb2.Money(amount=500, currency="USD"),
                reason="goodwill",
            ),
            metadata=meta,
            timeout=10,
        )
    finally:
        await channel.close()

    await _overdue(shop, merchant, order.id, first.id)
    await _expired(shop, merchant, order.id, 0)
    assert _refunds(shop, order.id) == [500, 2000]
    for status in (F.FULFILLMENT_STATUS_PICKED, F.FULFILLMENT_STATUS_SHIPPED):
        await shop.stub.UpdateFulfillment(
            order_pb2.UpdateFulfillmentRequest(
                request_id=str(uuid.uuid4()),
                order_id=order.id,
                fulfillment_id=second.id,
                status=status,
                carrier="UPS" if status == F.FULFILLMENT_STATUS_SHIPPED else "",
                tracking_number="1Z999" if status == F.FULFILLMENT_STATUS_SHIPPED else "",
            ),
            metadata=meta,
            timeout=30,
        )

    after = await _order(shop, merchant, order.id)
    assert after.fulfillments[1].captured.amount == 2000
    assert _payment(shop, order.id) == (5000, 4500, 500, 2500)
    assert after.paid.amount == 2000


async def test_a_pickup_only_order_expires_whole(shop: Shop) -> None:
    """Nothing of it was handed over: the order is cancelled (reason `expired`), its pickup
    expired, the authorisation voided, the units back."""
    merchant = f"mer_exp_whole_{uuid.uuid4().hex[:6]}"
    here, _ = await _stores(shop, merchant)
    pickup = order_pb2.FulfillmentRequest(type=PICKUP, location_id=here)
    order = await _sold(shop, merchant, [pickup], [2], capture_at_order=False)

    await _overdue(shop, merchant, order.id, order.fulfillments[0].id)
    await until(
        lambda: (
            shop.stack.rows(
                shop.stack.order_db, "SELECT status FROM orders WHERE id = %s", order.id
            )
            == [("cancelled",)]
        ),
        limit=30,
    )
    after = await _order(shop, merchant, order.id)

    assert after.cancel_reason == "expired"
    assert after.fulfillments[0].status == F.FULFILLMENT_STATUS_EXPIRED
    assert after.cancelled_total.amount == after.total.amount == 5000
    assert _payment(shop, order.id) == (5000, 0, 5000, 0)
    assert _on_hand(shop, merchant, here) == 10
    assert _expired_events(shop, merchant, order.id, 0) == 1


async def test_a_pickup_sold_ends_no_transaction_of_the_order_service_in_a_rollback(
    shop: Shop, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Reads that change nothing end with COMMIT (`UnitOfWork.reading`): psycopg answers every
    ROLLBACK by dropping the connection's prepared statements (DEALLOCATE ALL), so each web
    order (create, tender, confirm) made the order service's connections parse and plan again
    (three a web order until 2026-12-05: the order read before a tender's claim, and the order
    and settings reads of the confirmation). Counted at the driver, for the order database."""
    merchant = f"m-{uuid.uuid4().hex[:8]}"
    here, _ = await _stores(shop, merchant)
    order_db = shop.service.database_url.rsplit("/", 1)[1]
    rollbacks: list[str] = []
    IDLE = TransactionStatus.IDLE
    rollback = psycopg.AsyncConnection.rollback

    async def counted(conn: psycopg.AsyncConnection[Any]) -> None:
        # One with no transaction open sends nothing (the pool's reset of a connection).
        if conn.info.dbname == order_db and conn.info.transaction_status != IDLE:
            rollbacks.append(conn.info.dbname)
        await rollback(conn)

    monkeypatch.setattr(psycopg.AsyncConnection, "rollback", counted)
    order = await _sold(shop, merchant, [F.FulfillmentRequest(type=PICKUP, location_id=here)],
                        [1], capture_at_order=False)  # fmt: skip
    assert order.status == F.ORDER_STATUS_CONFIRMED
    assert rollbacks == []
