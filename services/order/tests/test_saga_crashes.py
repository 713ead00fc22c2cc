"""Never charged without an order: the order service is stopped dead at each step boundary of
the saga, then a new process starts on the same database (nothing of the first one's memory
survives) and its resumer heals what was left. Real PostgreSQL, NATS JetStream, inventory and
payment services in this process.

The stop is the in-process equivalent of a kill: the saga's test hook (SAGA_PAUSE_AT) holds
the request at the boundary until the server is stopped with no grace, which cancels it there;
nothing after the boundary runs, and the kit's claim of the request is left behind as a crash
leaves it. After healing, for the merchant of the case:
- every payment belongs to an order; one of a confirmed or completed order is live, and every
  other one was voided, declined or refunded in full;
- every confirmed or completed order is covered by what its payments hold (its total less
  the shares of its fulfilments cancelled one by one);
- every hold still active belongs to an order still waiting for payment (none after healing),
  and every committed hold to a confirmed or completed order.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from typing import Any

import grpc
import psycopg
import pytest
import pytest_asyncio
from order_shop import CRASH_SETTINGS, crash_stack, serve_order_on, tee_shop
from order_shop import CrashStack as Stack

from pos.order.v1 import events_pb2, order_pb2, order_pb2_grpc
from pos.payment.v1 import payment_pb2
from pos_devstack.testing import Infra, until
from pos_kit.grpc_client import read_error
from pos_order.adapters.events import ORDER_EVENTS
from pos_order.service import saga

pytestmark = pytest.mark.asyncio(loop_scope="session")

FAST = CRASH_SETTINGS  # a case heals in seconds


@pytest_asyncio.fixture(loop_scope="session", scope="module")
async def stack(infra: Infra) -> AsyncIterator[Stack]:
    async with crash_stack(infra) as found:
        yield found


async def _shop(stack: Stack, merchant: str) -> str:
    return await tee_shop(stack.inventory, merchant, stock=10)


async def register_sale(
    order: order_pb2_grpc.OrderServiceStub, merchant: str, location: str
) -> None:
    await order.Checkout(
        order_pb2.CheckoutRequest(
            request_id=str(uuid.uuid4()),
            location_id=location,
            lines=[order_pb2.CheckoutLine(sku="TEE", quantity=1)],
            tender_type=payment_pb2.TENDER_TYPE_CARD,
            card_token="tok_visa",
        ),
        metadata=(("x-merchant-id", merchant),),
        timeout=30,
    )


async def pickup_order(
    order: order_pb2_grpc.OrderServiceStub, merchant: str, location: str, cancel: bool = False
) -> None:
    """A web order collected in store: held, authorised, confirmed (captured at confirmation,
    the merchant's setting, so the capture step is crossed too); or cancelled once paid."""
    meta = (("x-merchant-id", merchant),)
    await order.UpdateOrderSettings(
        order_pb2.UpdateOrderSettingsRequest(
            request_id=str(uuid.uuid4()), capture_pickup_at_order=True
        ),
        metadata=meta,
        timeout=10,
    )
    created = await order.CreateOrder(
        order_pb2.CreateOrderRequest(
            request_id=str(uuid.uuid4()),
            channel="web",
            location_id=location,
            lines=[order_pb2.OrderLineRequest(sku="TEE", quantity=2)],
            fulfillments=[
                order_pb2.FulfillmentRequest(
                    type=order_pb2.FULFILLMENT_TYPE_PICKUP, location_id=location
                )
            ],
        ),
        metadata=meta,
        timeout=30,
    )
    order_id = created.order.id
    await order.AddTender(
        order_pb2.AddTenderRequest(
            request_id=str(uuid.uuid4()),
            order_id=order_id,
            tender_type=payment_pb2.TENDER_TYPE_CARD,
            card_token="tok_visa",
        ),
        metadata=meta,
        timeout=30,
    )
    if cancel:
        await order.CancelOrder(
            order_pb2.CancelOrderRequest(request_id=str(uuid.uuid4()), order_id=order_id),
            metadata=meta,
            timeout=30,
        )
        return
    await order.ConfirmOrder(
        order_pb2.ConfirmOrderRequest(request_id=str(uuid.uuid4()), order_id=order_id),
        metadata=meta,
        timeout=30,
    )


def _rows(url: str, query: str, merchant: str) -> list[tuple[Any, ...]]:
    with psycopg.connect(url) as conn:
        return list(conn.execute(query, (merchant,)).fetchall())


def healed(stack: Stack, merchant: str) -> list[str]:
    """What is still wrong for the merchant; empty once healed."""
    wrong: list[str] = []
    orders = {
        oid: (status, total, saga_state)
        for oid, status, total, saga_state in _rows(
            stack.order_db,
            # What a confirmed order's payments must cover: its total less the shares of its
            # fulfilments cancelled (or expired) one by one, which were given back.
            "SELECT id, status, total - COALESCE((SELECT sum((f->>'amount')::bigint) "
            "FROM jsonb_array_elements(fulfillments) f "
            "WHERE f->>'status' IN ('cancelled', 'expired')), 0), saga_state "
            "FROM orders WHERE merchant_id = %s",
            merchant,
        )
    }
    for oid, (status, _, saga_state) in orders.items():
        if saga_state != "done":
            wrong.append(f"order {oid} {status}: saga {saga_state}")
        if status == "pending_payment":
            wrong.append(f"order {oid} still pending")
    held: dict[str, int] = {}
    for pid, oid, status, authorized, captured, voided, refunded in _rows(
        stack.payment_db,
        "SELECT id, order_id, status, authorized, captured, voided, refunded FROM payments "
        "WHERE merchant_id = %s",
        merchant,
    ):
        order = orders.get(oid)
        if order is None:
            wrong.append(f"payment {pid} ({status}) has no order")
            continue
        if status == "pending":
            wrong.append(f"payment {pid} still pending")
        live = captured - refunded + (authorized - captured - voided if status != "voided" else 0)
        if order[0] in ("confirmed", "completed"):
            held[oid] = held.get(oid, 0) + live
        elif live != 0:
            wrong.append(f"payment {pid} holds {live} for a {order[0]} order")
    for oid, (status, total, _) in orders.items():
        if status in ("confirmed", "completed") and held.get(oid, 0) < total:
            wrong.append(f"order {oid} {status} without its payment ({held.get(oid, 0)}/{total})")
        # A completed order captures what it keeps: nothing more stays authorised for it.
        if status == "completed" and held.get(oid, 0) > total:
            wrong.append(f"order {oid} completed holding {held.get(oid, 0)} for {total}")
    for rid, reference, status in _rows(
        stack.inventory_db,
        "SELECT id, reference, status FROM reservations WHERE merchant_id = %s",
        merchant,
    ):
        order_status = orders.get(reference, ("none",))[0]
        if status == "active" and order_status != "pending_payment":
            wrong.append(f"hold {rid} active for a {order_status} order")
        if status == "committed" and order_status not in ("confirmed", "completed"):
            wrong.append(f"hold {rid} committed for a {order_status} order")
    return wrong


CASES = [
    ("register", "order_saved"),
    ("register", "after_authorization"),
    ("register", "after_confirm_commit"),
    ("pickup", "order_saved"),
    ("pickup", "after_hold"),
    ("pickup", "after_authorization"),
    ("pickup", "holds_committed"),
    ("pickup", "after_capture"),
    ("pickup", "before_confirm_commit"),
    ("pickup", "after_confirm_commit"),
    ("cancel", "compensating"),
]


@pytest.mark.parametrize(("flow", "boundary"), CASES)
async def test_a_process_killed_at_a_saga_boundary_is_healed_after_restart(
    stack: Stack, flow: str, boundary: str
) -> None:
    merchant = f"mer_{flow}_{boundary}_{uuid.uuid4().hex[:6]}"
    location = await _shop(stack, merchant)
    saga.PAUSED.clear()
    ports = (stack.nats_url, stack.inventory_port, stack.payment_port)
    async with serve_order_on(stack.order_db, *ports, saga_pause_at=boundary, **FAST) as doomed:
        stub = order_pb2_grpc.OrderServiceStub(doomed.channel)
        if flow == "register":
            running = asyncio.create_task(register_sale(stub, merchant, location))
        else:
            running = asyncio.create_task(
                pickup_order(stub, merchant, location, cancel=flow == "cancel")
            )
        await until(lambda: boundary in saga.PAUSED or running.done(), limit=30)
        assert boundary in saga.PAUSED, running.exception() if running.done() else "?"
        # Leaving the block stops the process with no grace: the request dies at the boundary.
    running.cancel()
    await asyncio.gather(running, return_exceptions=True)
    if boundary == "after_confirm_commit":
        # Confirmed and committed: only the answer was lost; the sale is whole already.
        assert healed(stack, merchant) == []
    else:
        assert healed(stack, merchant), "the crash left nothing to heal: boundary not hit?"

    async with serve_order_on(stack.order_db, *ports, **FAST):
        await until(lambda: not healed(stack, merchant), limit=30)
    assert healed(stack, merchant) == []


async def test_a_lost_card_answer_confirms_the_sale_once_settled_and_never_declines_it(
    stack: Stack,
) -> None:
    """The known defect: `tok_timeout` (approved, the answer lost) recorded the order declined
    while the payment stayed pending, to be captured later by the payment reconciler."""
    merchant = f"mer_timeout_{uuid.uuid4().hex[:6]}"
    location = await _shop(stack, merchant)
    meta = (("x-merchant-id", merchant),)
    ports = (stack.nats_url, stack.inventory_port, stack.payment_port)
    async with serve_order_on(stack.order_db, *ports, **FAST) as service:
        stub = order_pb2_grpc.OrderServiceStub(service.channel)
        request = order_pb2.CheckoutRequest(
            request_id=str(uuid.uuid4()),
            location_id=location,
            lines=[order_pb2.CheckoutLine(sku="TEE", quantity=1)],
            tender_type=payment_pb2.TENDER_TYPE_CARD,
            card_token="tok_timeout",
        )
        with pytest.raises(grpc.aio.AioRpcError) as err:
            await stub.Checkout(request, metadata=meta, timeout=30)
        assert err.value.code() == grpc.StatusCode.UNAVAILABLE
        assert read_error(err.value).reason == "payment_pending"
        (status,) = _rows(
            stack.order_db, "SELECT status FROM orders WHERE merchant_id = %s", merchant
        )
        assert status == ("pending_payment",)

        # The payment reconciler captures it; the order's resumer then confirms the sale.
        await until(lambda: not healed(stack, merchant), limit=30)
        (status,) = _rows(
            stack.order_db, "SELECT status FROM orders WHERE merchant_id = %s", merchant
        )
        assert status == ("completed",)
        # The till's retry with the same request id gets that sale.
        answer = await stub.Checkout(request, metadata=meta, timeout=30)
        assert answer.order.status == order_pb2.ORDER_STATUS_COMPLETED
        assert answer.payment.status == payment_pb2.PAYMENT_STATUS_CAPTURED


async def test_a_process_killed_while_a_fulfilment_is_cancelled_is_finished_after_restart(
    stack: Stack,
) -> None:
    """Two pickups, both captured at confirmation; the second's cancel dies once its refund and
    restock were asked, before the fulfilment is recorded cancelled. The new process's resumer
    asks them again under the same ids: the share refunded once, the unit restocked once, the
    other pickup untouched."""
    merchant = f"mer_fcancel_{uuid.uuid4().hex[:6]}"
    location = await _shop(stack, merchant)
    meta = (("x-merchant-id", merchant),)
    saga.PAUSED.clear()
    ports = (stack.nats_url, stack.inventory_port, stack.payment_port)
    async with serve_order_on(stack.order_db, *ports, **FAST) as service:
        stub = order_pb2_grpc.OrderServiceStub(service.channel)
        confirmed = await _paid_at_order(
            stub, meta, location,
            [("TEE", 2, 0), ("TEE", 1, 1)],
            [order_pb2.FULFILLMENT_TYPE_PICKUP, order_pb2.FULFILLMENT_TYPE_PICKUP],
        )  # fmt: skip
        order_id = confirmed.order.id
    _, second = confirmed.order.fulfillments
    assert second.captured.amount == second.amount.amount == 2500

    cancel = order_pb2.CancelFulfillmentRequest(
        request_id=str(uuid.uuid4()), order_id=order_id, fulfillment_id=second.id
    )
    pause = "fulfillment_given_back"
    async with serve_order_on(stack.order_db, *ports, saga_pause_at=pause, **FAST) as doomed:
        stub = order_pb2_grpc.OrderServiceStub(doomed.channel)
        call = stub.CancelFulfillment(cancel, metadata=meta, timeout=30)
        running = asyncio.ensure_future(call)
        await until(lambda: pause in saga.PAUSED or running.done(), limit=30)
        assert pause in saga.PAUSED, running.exception() if running.done() else "?"
    running.cancel()
    await asyncio.gather(running, return_exceptions=True)

    def status_of_second() -> tuple[str, str]:
        rows = _rows(
            stack.order_db,
            "SELECT saga_state, fulfillments->1->>'status' FROM orders WHERE merchant_id = %s",
            merchant,
        )
        return rows[0][0], rows[0][1]

    assert status_of_second() == ("running", "reserved")  # given back, not recorded
    async with serve_order_on(stack.order_db, *ports, **FAST) as service:
        await until(lambda: status_of_second() == ("done", "cancelled"), limit=30)
        stub = order_pb2_grpc.OrderServiceStub(service.channel)
        again = order_pb2.CancelFulfillmentRequest(
            request_id=str(uuid.uuid4()), order_id=order_id, fulfillment_id=second.id
        )
        answer = await stub.CancelFulfillment(again, metadata=meta, timeout=30)
    assert answer.order.status == order_pb2.ORDER_STATUS_CONFIRMED
    assert [f.status for f in answer.order.fulfillments] == [
        order_pb2.FULFILLMENT_STATUS_RESERVED,
        order_pb2.FULFILLMENT_STATUS_CANCELLED,
    ]
    assert answer.order.cancelled_total.amount == 2500
    ((captured, refunded),) = _rows(
        stack.payment_db,
        "SELECT captured, refunded FROM payments WHERE merchant_id = %s",
        merchant,
    )
    assert (captured, refunded) == (7500, 2500)
    ((on_hand,),) = _rows(
        stack.inventory_db,
        "SELECT on_hand FROM stock WHERE merchant_id = %s AND sku = 'TEE'",
        merchant,
    )
    assert on_hand == 10 - 2  # the first pickup's two sold, the cancelled one back once
    assert healed(stack, merchant) == []


async def test_a_pickups_share_is_released_before_its_cancel_is_recorded(stack: Stack) -> None:
    """Two pickups, captured at hand-over; the first collected (its share captured), the
    second cancelled. Nothing will capture the second's share any more: it is voided before the
    cancel is recorded, so a process killed just after the record leaves nothing authorised
    (recorded first, the saga was done and no one voided it until the window ran out)."""
    merchant = f"mer_fvoid_{uuid.uuid4().hex[:6]}"
    location = await _shop(stack, merchant)
    meta = (("x-merchant-id", merchant),)
    saga.PAUSED.clear()
    ports = (stack.nats_url, stack.inventory_port, stack.payment_port)
    # Pickups that wait an hour at most: within the authorisation's window, so captured at
    # hand-over as the merchant's setting says (one that would outlive it captures at once).
    async with serve_order_on(
        stack.order_db, *ports, pickup_expiry_seconds=3600, **FAST
    ) as service:
        stub = order_pb2_grpc.OrderServiceStub(service.channel)
        confirmed = await _paid_at_order(
            stub, meta, location,
            [("TEE", 2, 0), ("TEE", 1, 1)],
            [order_pb2.FULFILLMENT_TYPE_PICKUP, order_pb2.FULFILLMENT_TYPE_PICKUP],
            capture_at_order=False,
        )  # fmt: skip
        order_id = confirmed.order.id
        first, second = confirmed.order.fulfillments
        assert first.captured.amount == second.captured.amount == 0  # captured at hand-over
        for status in (
            order_pb2.FULFILLMENT_STATUS_READY_FOR_PICKUP,
            order_pb2.FULFILLMENT_STATUS_PICKED_UP,
        ):
            await stub.UpdateFulfillment(
                order_pb2.UpdateFulfillmentRequest(
                    request_id=str(uuid.uuid4()),
                    order_id=order_id,
                    fulfillment_id=first.id,
                    status=status,
                ),
                metadata=meta,
                timeout=30,
            )

    def payment() -> tuple[str, int, int, int]:
        ((status, authorized, captured, voided),) = _rows(
            stack.payment_db,
            "SELECT status, authorized, captured, voided FROM payments WHERE merchant_id = %s",
            merchant,
        )
        return status, authorized, captured, voided

    assert payment() == ("captured", 7500, 5000, 0)  # the second's share still authorised
    cancel = order_pb2.CancelFulfillmentRequest(
        request_id=str(uuid.uuid4()), order_id=order_id, fulfillment_id=second.id
    )
    pause = "fulfillment_cancelled"
    async with serve_order_on(
        stack.order_db, *ports, saga_pause_at=pause, pickup_expiry_seconds=3600, **FAST
    ) as doomed:
        stub = order_pb2_grpc.OrderServiceStub(doomed.channel)
        running = asyncio.ensure_future(stub.CancelFulfillment(cancel, metadata=meta, timeout=30))
        await until(lambda: pause in saga.PAUSED or running.done(), limit=30)
        assert pause in saga.PAUSED, running.exception() if running.done() else "?"
    running.cancel()
    await asyncio.gather(running, return_exceptions=True)

    ((saga_state, status, second_status),) = _rows(
        stack.order_db,
        "SELECT saga_state, status, fulfillments->1->>'status' FROM orders WHERE merchant_id = %s",
        merchant,
    )
    assert (saga_state, status, second_status) == ("done", "completed", "cancelled")
    assert payment() == ("captured", 7500, 5000, 2500)  # released before the record
    assert healed(stack, merchant) == []


async def test_a_process_killed_while_a_pickup_expires_is_finished_after_restart(
    stack: Stack,
) -> None:
    """An endless-aisle sale (a T-shirt carried out, two for pickup, captured at confirmation)
    whose pickup expires; the resumer's expiry dies once its refund and restock were asked,
    before the pickup is recorded expired. The new process's resumer asks them again under the
    same ids: the pickup's share refunded once, its units restocked once, the order completed
    with the in-store goods sold."""
    merchant = f"mer_fexpire_{uuid.uuid4().hex[:6]}"
    location = await _shop(stack, merchant)
    meta = (("x-merchant-id", merchant),)
    saga.PAUSED.clear()
    ports = (stack.nats_url, stack.inventory_port, stack.payment_port)
    pause = "fulfillment_given_back"
    async with serve_order_on(
        stack.order_db, *ports, saga_pause_at=pause, pickup_expiry_seconds=3600, **FAST
    ) as doomed:
        stub = order_pb2_grpc.OrderServiceStub(doomed.channel)
        confirmed = await _paid_at_order(
            stub, meta, location,
            [("TEE", 1, 0), ("TEE", 2, 1)],
            [order_pb2.FULFILLMENT_TYPE_IN_STORE, order_pb2.FULFILLMENT_TYPE_PICKUP],
        )  # fmt: skip
        order_id = confirmed.order.id
        pickup = confirmed.order.fulfillments[1]
        assert pickup.captured.amount == pickup.amount.amount == 5000

        def overdue(o: Any) -> None:
            # The test hook the lifecycle machine uses: the pickup's wait is over.
            f = o.fulfillment(pickup.id)
            f.expires_at = datetime.now(UTC) - timedelta(seconds=1)

        await saga.change(lambda: doomed.runtime.uow().bind(merchant), order_id, overdue)
        await until(lambda: pause in saga.PAUSED, limit=30)
        # Leaving the block stops the process with no grace: the expiry dies at the boundary.

    def pickup_state() -> tuple[str, str, str]:
        ((state, status, order_status),) = _rows(
            stack.order_db,
            "SELECT saga_state, fulfillments->1->>'status', status FROM orders "
            "WHERE merchant_id = %s",
            merchant,
        )
        return state, status, order_status

    assert pickup_state() == ("running", "reserved", "confirmed")  # given back, not recorded
    async with serve_order_on(stack.order_db, *ports, pickup_expiry_seconds=3600, **FAST):
        await until(lambda: pickup_state() == ("done", "expired", "completed"), limit=30)
    ((captured, refunded),) = _rows(
        stack.payment_db,
        "SELECT captured, refunded FROM payments WHERE merchant_id = %s",
        merchant,
    )
    assert (captured, refunded) == (7500, 5000)
    refunds = _rows(stack.payment_db, "SELECT amount FROM refunds WHERE merchant_id = %s", merchant)
    assert refunds == [(5000,)]

    def on_hand() -> int:
        ((units,),) = _rows(
            stack.inventory_db,
            "SELECT on_hand FROM stock WHERE merchant_id = %s AND sku = 'TEE'",
            merchant,
        )
        return int(units)

    # The T-shirt carried out sold (from the confirmation's event), the pickup's two back once.
    await until(lambda: on_hand() == 10 - 1, limit=30)
    assert healed(stack, merchant) == []


async def test_a_rest_voided_by_the_resumer_after_a_crash_is_announced(
    infra: Infra, stack: Stack
) -> None:
    """Two pickups, captured at hand-over; the second cancelled (its share stays authorised:
    the first's is still to capture from the same card), then the first handed over, its
    process killed once its capture was asked. The new process's resumer records the capture
    and voids what the second's share left authorised (`void_the_rest`): `paid` goes down to
    what was captured, and that version is announced, once. Before, the resumer wrote it with
    no event, and the order's events kept it paid in full. (The order service runs on a NATS
    server of its own: it hears nothing of the payment service's events, `payment.voided`
    among them, which may come before or after the resumer's write.)"""
    merchant = f"mer_frest_{uuid.uuid4().hex[:6]}"
    location = await _shop(stack, merchant)
    meta = (("x-merchant-id", merchant),)
    saga.PAUSED.clear()
    quiet = infra.new_nats()
    try:
        await _rest_voided_after_a_crash(stack, quiet.url, merchant, location, meta)
    finally:
        quiet.stop()


async def _rest_voided_after_a_crash(
    stack: Stack, nats_url: str, merchant: str, location: str, meta: tuple[tuple[str, str], ...]
) -> None:
    ports = (nats_url, stack.inventory_port, stack.payment_port)
    async with serve_order_on(
        stack.order_db, *ports, pickup_expiry_seconds=3600, **FAST
    ) as service:
        stub = order_pb2_grpc.OrderServiceStub(service.channel)
        confirmed = await _paid_at_order(
            stub, meta, location,
            [("TEE", 2, 0), ("TEE", 1, 1)],
            [order_pb2.FULFILLMENT_TYPE_PICKUP, order_pb2.FULFILLMENT_TYPE_PICKUP],
            capture_at_order=False,
        )  # fmt: skip
        order_id = confirmed.order.id
        first, second = confirmed.order.fulfillments
        cancelled = await stub.CancelFulfillment(
            order_pb2.CancelFulfillmentRequest(
                request_id=str(uuid.uuid4()), order_id=order_id, fulfillment_id=second.id
            ),
            metadata=meta,
            timeout=30,
        )
        assert cancelled.order.paid.amount == 7500  # the second's share still authorised
        await stub.UpdateFulfillment(
            order_pb2.UpdateFulfillmentRequest(
                request_id=str(uuid.uuid4()),
                order_id=order_id,
                fulfillment_id=first.id,
                status=order_pb2.FULFILLMENT_STATUS_READY_FOR_PICKUP,
            ),
            metadata=meta,
            timeout=30,
        )
    pause = "after_capture"
    async with serve_order_on(
        stack.order_db, *ports, saga_pause_at=pause, pickup_expiry_seconds=3600, **FAST
    ) as doomed:
        stub = order_pb2_grpc.OrderServiceStub(doomed.channel)
        handed_over = order_pb2.UpdateFulfillmentRequest(
            request_id=str(uuid.uuid4()),
            order_id=order_id,
            fulfillment_id=first.id,
            status=order_pb2.FULFILLMENT_STATUS_PICKED_UP,
        )
        running = asyncio.ensure_future(
            stub.UpdateFulfillment(handed_over, metadata=meta, timeout=30)
        )
        await until(lambda: pause in saga.PAUSED or running.done(), limit=30)
        assert pause in saga.PAUSED, running.exception() if running.done() else "?"
    running.cancel()
    await asyncio.gather(running, return_exceptions=True)

    def payment() -> tuple[str, int, int, int]:
        ((status, authorized, captured, voided),) = _rows(
            stack.payment_db,
            "SELECT status, authorized, captured, voided FROM payments WHERE merchant_id = %s",
            merchant,
        )
        return status, authorized, captured, voided

    def saga_state() -> str:
        ((state,),) = _rows(
            stack.order_db, "SELECT saga_state FROM orders WHERE merchant_id = %s", merchant
        )
        return str(state)

    assert payment() == ("captured", 7500, 5000, 0)  # captured, the rest still authorised
    async with serve_order_on(stack.order_db, *ports, pickup_expiry_seconds=3600, **FAST):
        await until(lambda: saga_state() == "done", limit=30)
    assert payment() == ("captured", 7500, 5000, 2500)
    assert healed(stack, merchant) == []

    since = [(k, o) for k, o in _events(stack, order_id) if o.version > cancelled.order.version]
    voided = [(k, o.status, o.paid.amount) for k, o in since if o.paid.amount < 7500]
    assert voided[:1] == [(events_pb2.OrderUpdated, order_pb2.ORDER_STATUS_CONFIRMED, 5000)]
    told = [(kind, o.version) for kind, o in since]
    assert len(set(told)) == len(told)  # nothing told twice


def _events(stack: Stack, order_id: str) -> list[tuple[Any, order_pb2.Order]]:
    """The order's events written so far (the outbox, any but `order_returned`), in order:
    each one's kind (its message class) and the order it carries."""
    found: list[tuple[Any, order_pb2.Order]] = []
    for event_type, payload in stack.rows(
        stack.order_db,
        "SELECT event_type, payload FROM outbox WHERE position(%s::bytea in payload) > 0 "
        "ORDER BY seq",
        order_id.encode(),
    ):
        kind = ORDER_EVENTS.get(event_type)
        if kind is not None and kind is not events_pb2.OrderReturned:
            message: Any = kind.FromString(bytes(payload))
            if message.order.id == order_id:
                found.append((kind, message.order))
    return found


async def _paid_at_order(
    stub: order_pb2_grpc.OrderServiceStub,
    meta: tuple[tuple[str, str], ...],
    location: str,
    lines: list[tuple[str, int, int]],
    types: list[Any],
    capture_at_order: bool = True,
) -> order_pb2.ConfirmOrderResponse:
    """A web order of `lines` (SKU, quantity, fulfilment) over fulfilments of `types` at
    `location`, with pickups captured at confirmation (or at hand-over), paid by card and
    confirmed."""
    await stub.UpdateOrderSettings(
        order_pb2.UpdateOrderSettingsRequest(
            request_id=str(uuid.uuid4()), capture_pickup_at_order=capture_at_order
        ),
        metadata=meta,
        timeout=10,
    )
    created = await stub.CreateOrder(
        order_pb2.CreateOrderRequest(
            request_id=str(uuid.uuid4()),
            channel="web",
            location_id=location,
            lines=[
                order_pb2.OrderLineRequest(sku=sku, quantity=n, fulfillment=f)
                for sku, n, f in lines
            ],
            fulfillments=[
                order_pb2.FulfillmentRequest(type=t, location_id=location) for t in types
            ],
        ),
        metadata=meta,
        timeout=30,
    )
    await stub.AddTender(
        order_pb2.AddTenderRequest(
            request_id=str(uuid.uuid4()),
            order_id=created.order.id,
            tender_type=payment_pb2.TENDER_TYPE_CARD,
            card_token="tok_visa",
        ),
        metadata=meta,
        timeout=30,
    )
    confirmed: order_pb2.ConfirmOrderResponse = await stub.ConfirmOrder(
        order_pb2.ConfirmOrderRequest(request_id=str(uuid.uuid4()), order_id=created.order.id),
        metadata=meta,
        timeout=30,
    )
    return confirmed
