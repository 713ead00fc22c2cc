"""The order service and the customer service's data, against real services: PostgreSQL, NATS
JetStream, and the customer, inventory and payment services running in this process (the
fixture of test_customer_ids). Loyalty points redeemed through the checkout saga, and a
customer's erasure reaching their orders.

Points are priced as a discount before the order is saved, held (`<order>/points/hold`) before
anything is charged, redeemed with the confirmation, and given back when the sale fails; more
points than the customer has, or the customer service down, charge nothing.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import Callable
from typing import Any

import grpc
import nats
import psycopg
import pytest
import test_customer_ids
from nats.js.api import AckPolicy, ConsumerConfig, DeliverPolicy
from psycopg import sql
from test_customer_ids import A, Stack, md

from pos.common.v1 import money_pb2
from pos.customer.v1 import customer_pb2, loyalty_pb2
from pos.customer.v1 import events_pb2 as customer_events
from pos.inventory.v1 import inventory_pb2
from pos.order.v1 import events_pb2, order_pb2
from pos.payment.v1 import payment_pb2
from pos_kit import personal
from pos_kit.db import make_engine
from pos_kit.events import EVENT_TYPE_HEADER
from pos_kit.grpc_client import read_error
from pos_kit.streams import stream_name
from pos_order.adapters import repository
from pos_order.adapters.repository import OrderUow
from pos_order.adapters.tables import kit
from pos_order.entrypoints import consumers
from pos_order.service.handlers import drafts

pytestmark = pytest.mark.asyncio(loop_scope="session")
stack = test_customer_ids.stack  # the services, in this process, for each test
CARD = "tok_visa"


async def _points(stack: Stack, customer_id: str) -> tuple[int, int]:
    """The customer's balance and what open orders hold of it."""
    found = await stack.customers.GetCustomer(
        customer_pb2.GetCustomerRequest(id=customer_id), metadata=md(A), timeout=5
    )
    return found.customer.loyalty_points, found.customer.points_held


async def _redeemed(stack: Stack, customer_id: str) -> list[tuple[str, int]]:
    history = await stack.customers.ListPointsHistory(
        loyalty_pb2.ListPointsHistoryRequest(customer_id=customer_id, page_size=50),
        metadata=md(A),
        timeout=5,
    )
    return [(e.order_id, e.points) for e in history.entries if e.kind == "redeemed"]


async def _sale(
    stack: Stack, customer_id: str, points: int, card_token: str = CARD
) -> order_pb2.CheckoutResponse:
    request = order_pb2.CheckoutRequest(
        request_id=uuid.uuid4().hex,
        location_id=stack.location_id,
        customer_id=customer_id,
        lines=[order_pb2.CheckoutLine(sku="TEE", quantity=2)],  # 50.00
        tender_type=payment_pb2.TENDER_TYPE_CARD,
        card_token=card_token,
        redeem_points=points,
    )
    answer: order_pb2.CheckoutResponse = await stack.order.Checkout(
        request, metadata=md(A), timeout=15
    )
    return answer


async def _orders(stack: Stack, customer_id: str) -> list[order_pb2.Order]:
    found = await stack.order.ListOrders(
        order_pb2.ListOrdersRequest(customer_id=customer_id, page_size=50),
        metadata=md(A),
        timeout=5,
    )
    return list(found.orders)


async def test_points_are_held_priced_and_redeemed_and_a_failed_sale_gives_them_back(
    stack: Stack,
) -> None:
    customer = (await stack.customer(A)).id
    await stack.customers.AdjustPoints(
        loyalty_pb2.AdjustPointsRequest(
            request_id=uuid.uuid4().hex, customer_id=customer, points=500, reason="welcome"
        ),
        metadata=md(A),
        timeout=5,
    )

    # One point takes 0.01 off (the default program): 300 points are 3.00 off 50.00.
    sold = await _sale(stack, customer, 300)
    assert sold.order.status == order_pb2.ORDER_STATUS_COMPLETED
    assert sold.order.points_redeemed == 300
    assert (sold.order.discount_total.amount, sold.order.total.amount) == (300, 4700)
    assert sold.payment.amount.amount == 4700
    # Redeemed once, for this order (what the sale earns may follow any moment: 47 points).
    assert await _redeemed(stack, customer) == [(sold.order.id, -300)]
    balance, held = await _points(stack, customer)
    assert balance in (200, 247) and held == 0

    # More than it has (the sale's own points may have been earned by now: 247 at most):
    # refused before anything is charged or announced, so the sale is withdrawn: no order, no
    # event (partners never heard of it), no payment.
    before = stack.written()
    with pytest.raises(grpc.aio.AioRpcError) as refused:
        await _sale(stack, customer, 1000)
    assert read_error(refused.value).reason == "insufficient_points"
    assert stack.written() == before
    balance, held = await _points(stack, customer)
    assert balance >= 200 and held == 0
    assert not [o for o in await _orders(stack, customer) if o.cancel_reason]

    # Held, then the card is declined: the compensation releases them, none is redeemed.
    declined = await _sale(stack, customer, 200, card_token="tok_declined")
    assert declined.order.status == order_pb2.ORDER_STATUS_CANCELLED
    assert declined.order.cancel_reason == "payment_declined"
    after, held = await _points(stack, customer)
    assert after >= balance and held == 0
    assert await _redeemed(stack, customer) == [(sold.order.id, -300)]

    # A token the processor never issued: refused before anything is taken, so the sale never
    # happened: no order stays, and the points it held are free again.
    orders_before = len(await _orders(stack, customer))
    with pytest.raises(grpc.aio.AioRpcError) as unknown:
        await _sale(stack, customer, 100, card_token="tok_never_issued")
    assert unknown.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert len(await _orders(stack, customer)) == orders_before
    assert (await _points(stack, customer))[1] == 0

    # Worth more than the sale, or without a customer: bad input, nothing written.
    written = stack.written()
    for customer_id, points, field in ((customer, 5001, "redeem_points"), ("", 5, "redeem_points")):
        with pytest.raises(grpc.aio.AioRpcError) as bad:
            await _sale(stack, customer_id, points)
        assert bad.value.code() == grpc.StatusCode.INVALID_ARGUMENT
        assert field in {v.field for v in read_error(bad.value).violations}
    assert stack.written() == written


async def test_a_sale_refused_a_card_token_is_retried_as_a_new_sale_that_holds_its_points(
    stack: Stack,
) -> None:
    """A token the processor never issued withdraws the sale with its request's start: the
    request, corrected, is a new sale under a new order id. Under the first id the customer
    service would answer the points hold again as held, though the refusal released it."""
    customer = (await stack.customer(A)).id
    await _give(stack, customer, 500)
    request = order_pb2.CheckoutRequest(
        request_id=uuid.uuid4().hex,
        location_id=stack.location_id,
        customer_id=customer,
        lines=[order_pb2.CheckoutLine(sku="TEE", quantity=2)],
        tender_type=payment_pb2.TENDER_TYPE_CARD,
        card_token="tok_never_issued",
        redeem_points=300,
    )
    before = stack.written()
    with pytest.raises(grpc.aio.AioRpcError) as unknown:
        await stack.order.Checkout(request, metadata=md(A), timeout=15)
    assert unknown.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert stack.written() == before
    assert await _points(stack, customer) == (500, 0)

    request.card_token = CARD
    sold = await stack.order.Checkout(request, metadata=md(A), timeout=15)

    assert sold.order.status == order_pb2.ORDER_STATUS_COMPLETED
    assert sold.order.points_redeemed == 300
    assert await _redeemed(stack, customer) == [(sold.order.id, -300)]
    balance, held = await _points(stack, customer)
    assert balance in (200, 247) and held == 0
    assert [o.id for o in await _orders(stack, customer)] == [sold.order.id]


async def test_an_order_waiting_for_its_holds_whose_points_are_refused_is_withdrawn_unheld(
    stack: Stack,
) -> None:
    """A pickup order is announced once its stock is held, and its points are held before its
    stock: refused points withdraw it as short stock does (no order, no event), and inventory
    is never asked for the hold it never needed (asked then released, before)."""
    customer = (await stack.customer(A)).id
    await _give(stack, customer, 10)
    await stack.receive(1)  # what the hold would find, were it asked
    request = order_pb2.CreateOrderRequest(
        request_id=uuid.uuid4().hex,
        channel="web",
        location_id=stack.location_id,
        customer_id=customer,
        lines=[order_pb2.OrderLineRequest(sku="TEE", quantity=1, fulfillment=0)],
        fulfillments=[order_pb2.FulfillmentRequest(type=order_pb2.FULFILLMENT_TYPE_PICKUP,
                                                   location_id=stack.location_id)],
        redeem_points=50,
    )  # fmt: skip
    before, holds = stack.written(), _holds(stack)

    with pytest.raises(grpc.aio.AioRpcError) as refused:
        await stack.order.CreateOrder(request, metadata=md(A), timeout=15)

    assert read_error(refused.value).reason == "insufficient_points"
    assert stack.written() == before
    assert _holds(stack) == holds
    assert await _points(stack, customer) == (10, 0)
    assert await _orders(stack, customer) == []


async def _give(stack: Stack, customer_id: str, points: int) -> None:
    await stack.customers.AdjustPoints(
        loyalty_pb2.AdjustPointsRequest(
            request_id=uuid.uuid4().hex, customer_id=customer_id, points=points, reason="welcome"
        ),
        metadata=md(A),
        timeout=5,
    )


def _holds(stack: Stack) -> int:
    """Every stock hold inventory ever made for the merchant, released ones too."""
    with psycopg.connect(stack.inventory_db) as conn:
        row = conn.execute(
            "SELECT count(*) FROM reservations WHERE merchant_id = %s", (A,)
        ).fetchone()
    assert row is not None
    return int(row[0])


async def test_redeeming_while_the_customer_service_is_down_is_503_and_charges_nothing(
    stack: Stack,
) -> None:
    customer = (await stack.customer(A)).id
    await stack.wait_known(A, customer)  # the sale itself would need no call
    await stack.stop_customer_service.aclose()
    before = stack.written()

    with pytest.raises(grpc.aio.AioRpcError) as err:
        await _sale(stack, customer, 10)

    assert err.value.code() == grpc.StatusCode.UNAVAILABLE
    assert read_error(err.value).reason == "customer_unavailable"
    assert stack.written() == before
    # Without points the same customer's sale goes on.
    plain = order_pb2.CheckoutRequest(
        request_id=uuid.uuid4().hex,
        location_id=stack.location_id,
        customer_id=customer,
        lines=[order_pb2.CheckoutLine(sku="TEE", quantity=1)],
        tender_type=payment_pb2.TENDER_TYPE_CASH,
        cash_tendered=money_pb2.Money(amount=10_000, currency="USD"),
    )
    sold = await stack.order.Checkout(plain, metadata=md(A), timeout=10)
    assert sold.order.status == order_pb2.ORDER_STATUS_COMPLETED


async def test_an_erased_customers_orders_lose_their_addresses_and_notes(stack: Stack) -> None:
    """The customer service's customer_erased reaches the order service (consumer
    order-erasures): the customer's orders keep the id, lines and money, and lose the
    shipment address, its destination and the notes, here and in this service's stored
    answers and published events; the id is no longer known."""
    customer = (await stack.customer(A)).id
    await stack.wait_known(A, customer)
    address, note = f"{uuid.uuid4().hex[:8]} Erasure Lane", f"call {uuid.uuid4().hex[:8]}"
    request = order_pb2.CreateOrderRequest(
        request_id=uuid.uuid4().hex,
        channel="web",
        location_id=stack.location_id,
        customer_id=customer,
        lines=[order_pb2.OrderLineRequest(sku="TEE", quantity=1, fulfillment=1),
               order_pb2.OrderLineRequest(sku="TEE", quantity=1, fulfillment=0)],
        fulfillments=[
            order_pb2.FulfillmentRequest(type=order_pb2.FULFILLMENT_TYPE_IN_STORE,
                                         location_id=stack.location_id),
            order_pb2.FulfillmentRequest(type=order_pb2.FULFILLMENT_TYPE_SHIPMENT,
                                         location_id=stack.location_id, ship_to=address),
        ],
        notes=note,
    )  # fmt: skip
    # The unit it ships (an order refused for want of stock is not kept).
    await stack.receive(1)
    made = await stack.order.CreateOrder(request, metadata=md(A), timeout=10)
    order_id = made.order.id
    assert address in _dump(stack) and note in _dump(stack)

    await stack.customers.EraseCustomer(
        customer_pb2.EraseCustomerRequest(request_id=uuid.uuid4().hex, id=customer),
        metadata=md(A),
        timeout=5,
    )

    deadline = time.monotonic() + 20
    while address in _dump(stack) or note in _dump(stack):
        assert time.monotonic() < deadline, "the erasure never reached the order service"
        await asyncio.sleep(0.1)
    kept = await stack.order.GetOrder(
        order_pb2.GetOrderRequest(id=order_id), metadata=md(A), timeout=5
    )
    assert kept.order.customer_id == customer and kept.order.total.amount == 5000
    assert {f.ship_to for f in kept.order.fulfillments} == {""} and kept.order.notes == ""
    # Nothing the contract marks personal is left in the order (what the events' copies lose).
    assert not personal.blank(kept.order)
    assert not stack.known(A, customer)


def _dump(stack: Stack) -> str:
    """Every row of the order service's tables that could hold what an order was given."""
    with psycopg.connect(stack.order_db) as conn:
        rows = [
            repr(row)
            for table in ("orders", "processed_requests", "outbox")
            for row in conn.execute(sql.SQL("SELECT * FROM {}").format(sql.Identifier(table)))
        ]
    return "\n".join(rows)


async def test_an_erased_customers_orders_lose_their_metadata_and_no_one_elses_copies_go(
    stack: Stack,
) -> None:
    """Metadata a partner set on an order may name the buyer: the erasure blanks it as it
    blanks the notes, and deletes this service's stored answers and published events that
    hold it. Metadata values and notes are short and common ("1", "gift wrap"): another order
    holding the same value keeps its stored answer (deleting it would let a retry of that
    request run again)."""
    customer, other = (await stack.customer(A)).id, (await stack.customer(A)).id
    await stack.wait_known(A, customer)
    await stack.wait_known(A, other)
    email = f"{uuid.uuid4().hex[:10]}@example.com"

    async def create(customer_id: str, metadata: dict[str, str]) -> order_pb2.Order:
        request = order_pb2.CreateOrderRequest(
            request_id=uuid.uuid4().hex, channel="web", location_id=stack.location_id,
            customer_id=customer_id, lines=[order_pb2.OrderLineRequest(sku="TEE", quantity=1)],
            metadata=metadata, notes="gift wrap",
        )  # fmt: skip
        return (await stack.order.CreateOrder(request, metadata=md(A), timeout=10)).order

    gone = await create(customer, {"buyer_email": email, "gift": "1"})
    kept = await create(other, {"gift": "1"})
    # Published first: an outbox row the relay has not sent yet is left to go out.
    deadline = time.monotonic() + 20
    while _unpublished(stack, email):
        assert time.monotonic() < deadline, "the order's events were never published"
        await asyncio.sleep(0.05)
    assert email in _dump(stack) and _answers(stack, kept.id) == 1

    await stack.customers.EraseCustomer(
        customer_pb2.EraseCustomerRequest(request_id=uuid.uuid4().hex, id=customer),
        metadata=md(A),
        timeout=5,
    )

    deadline = time.monotonic() + 20
    while email in _dump(stack):
        assert time.monotonic() < deadline, "the erasure never reached the order's metadata"
        await asyncio.sleep(0.1)
    erased = await stack.order.GetOrder(
        order_pb2.GetOrderRequest(id=gone.id), metadata=md(A), timeout=5
    )
    assert dict(erased.order.metadata) == {} and erased.order.total == gone.total
    assert erased.order.version > gone.version
    other_order = await stack.order.GetOrder(
        order_pb2.GetOrderRequest(id=kept.id), metadata=md(A), timeout=5
    )
    assert dict(other_order.order.metadata) == {"gift": "1"}
    assert other_order.order.notes == "gift wrap" and erased.order.notes == ""
    assert _answers(stack, kept.id) == 1


async def test_an_order_event_not_yet_published_at_the_erasure_goes_out_without_the_personal_data(
    stack: Stack,
) -> None:
    """An order event still in the outbox when the erasure runs (the relay held back) is
    rewritten in the erasure's transaction, not deleted: it reaches the stream under its own
    event id, with the order's lines, without its address, destination, notes and metadata.
    Another customer's order event goes out as it was."""
    customer, other = (await stack.customer(A)).id, (await stack.customer(A)).id
    await stack.wait_known(A, customer)
    await stack.wait_known(A, other)
    await stack.receive(2)  # the units the two orders ship
    tag = uuid.uuid4().hex[:8]
    release = await _hold_relay(stack)
    try:
        gone = await _shipped(stack, customer, f"gone {tag}")
        kept = await _shipped(stack, other, f"kept {tag}")
        held = _outbox(stack, gone.id)
        pending = held | _outbox(stack, kept.id)
        assert held and all(published is None for published in pending.values())
        engine = make_engine(stack.order_db)
        try:
            await _erase(engine, customer)
        finally:
            await engine.dispose()
        assert _outbox(stack, gone.id) == held  # the same events, still to go out
    finally:
        release()

    sent = await _on_stream(stack, set(pending))
    for event_type, payload in sent.values():
        order = _event(event_type, payload).order
        assert order.id in (gone.id, kept.id) and len(order.lines) == 1
        if order.id == gone.id:
            assert f"gone {tag}".encode() not in payload, event_type
            assert order.notes == "" and dict(order.metadata) == {}
            assert [(f.ship_to, f.HasField("destination")) for f in order.fulfillments] == [
                ("", False)
            ]
            assert order.customer_id == customer
        else:
            assert order.notes == f"call kept {tag}"
            assert dict(order.metadata) == {"buyer": f"kept {tag}"}
            assert [f.ship_to for f in order.fulfillments] == [f"kept {tag} Lane"]
            assert order.fulfillments[0].destination.latitude == 52.5
    assert f"gone {tag}" not in _dump(stack)


async def test_an_erasure_waits_for_an_order_event_the_relay_is_sending(stack: Stack) -> None:
    """The relay claims its rows FOR UPDATE: an erasure meeting a row of the customer's being
    sent waits for it, finds it published (out as it was: the customer service's pass over the
    stream takes that copy) and deletes it, rather than leaving it in the outbox with the
    address and notes."""
    customer = (await stack.customer(A)).id
    await stack.wait_known(A, customer)
    await stack.receive(1)
    tag = uuid.uuid4().hex[:8]
    release = await _hold_relay(stack)
    try:
        gone = await _shipped(stack, customer, f"gone {tag}")
        assert set(_outbox(stack, gone.id).values()) == {None}
        async with await psycopg.AsyncConnection.connect(stack.order_db) as sending:
            # What the relay's claim does, then its publish in flight.
            await sending.execute(
                "SELECT seq FROM outbox WHERE published_at IS NULL ORDER BY seq"
                " FOR UPDATE SKIP LOCKED"
            )
            engine = make_engine(stack.order_db)
            try:
                erasure = asyncio.ensure_future(_erase(engine, customer))
                await _until_waiting_for_a_lock(stack)
                assert not erasure.done()
                await sending.execute("UPDATE outbox SET published_at = now()")
                await sending.commit()
                await asyncio.wait_for(erasure, 10)
            finally:
                await engine.dispose()
        assert _outbox(stack, gone.id) == {}
        assert f"gone {tag}" not in _dump(stack)
    finally:
        release()


async def _erase(engine: Any, customer_id: str) -> None:
    """What consumer order-erasures runs on the customer service's customer_erased."""
    async with OrderUow(engine, kit).bind(A) as uow:
        await consumers.on_customer_erased(
            uow, customer_events.CustomerErased(customer_id=customer_id)
        )
        await uow.commit()


async def _until_waiting_for_a_lock(stack: Stack) -> None:
    deadline = time.monotonic() + 10
    while True:
        with psycopg.connect(stack.order_db) as conn:
            row = conn.execute(
                "SELECT 1 FROM pg_stat_activity WHERE datname = current_database()"
                " AND wait_event_type = 'Lock' AND query LIKE '%outbox%'"
            ).fetchone()
        if row is not None:
            return
        assert time.monotonic() < deadline, "the erasure never waited for the relay's lock"
        await asyncio.sleep(0.02)


async def _shipped(stack: Stack, customer_id: str, who: str) -> order_pb2.Order:
    """A web order of one shipped tee, its address, destination, notes and metadata naming
    `who`."""
    request = order_pb2.CreateOrderRequest(
        request_id=uuid.uuid4().hex, channel="web", location_id=stack.location_id,
        customer_id=customer_id,
        lines=[order_pb2.OrderLineRequest(sku="TEE", quantity=1, fulfillment=0)],
        fulfillments=[order_pb2.FulfillmentRequest(
            # No store named: sourcing picks one nearest the destination.
            type=order_pb2.FULFILLMENT_TYPE_SHIPMENT, ship_to=f"{who} Lane",
            destination=inventory_pb2.GeoPoint(latitude=52.5, longitude=13.4),
        )],
        notes=f"call {who}", metadata={"buyer": who},
    )  # fmt: skip
    return (await stack.order.CreateOrder(request, metadata=md(A), timeout=10)).order


async def _hold_relay(stack: Stack) -> Callable[[], None]:
    """Hold the order service's relay back (NATS up: nothing is sent, nothing half-sent)
    until the returned function is called. Returns once the relay waits in its next batch,
    so that no batch begun before can claim what is written from now on."""
    relay = stack.order_runtime.relay
    publish, waiting, go = relay.publish_batch, asyncio.Event(), asyncio.Event()

    async def held() -> int:
        waiting.set()
        await go.wait()
        return int(await publish())

    relay.publish_batch = held
    stack.order_runtime.wake_relay()
    await asyncio.wait_for(waiting.wait(), 10)

    def release() -> None:
        relay.publish_batch = publish
        go.set()

    return release


def _outbox(stack: Stack, order_id: str) -> dict[str, object]:
    """The order's outbox rows: event id -> when it was published (None: not yet)."""
    with psycopg.connect(stack.order_db) as conn:
        rows = conn.execute(
            "SELECT event_id, published_at FROM outbox"
            " WHERE position(convert_to(%s, 'UTF8') in payload) > 0",
            (order_id,),
        ).fetchall()
    return {event_id: published for event_id, published in rows}


async def _on_stream(stack: Stack, event_ids: set[str]) -> dict[str, tuple[str, bytes]]:
    """The events in POS_ORDER under these ids (Nats-Msg-Id), once all are there: each one's
    type and bytes; each id's meta.event_id is its own."""
    nc = await nats.connect(stack.nats.url)
    found: dict[str, tuple[str, bytes]] = {}
    try:
        config = ConsumerConfig(
            deliver_policy=DeliverPolicy.ALL, ack_policy=AckPolicy.NONE, inactive_threshold=30
        )
        sub = await nc.jetstream().pull_subscribe(
            "pos.order.v1.>", stream=stream_name("order"), config=config
        )
        deadline = time.monotonic() + 30
        while not event_ids <= found.keys():
            assert time.monotonic() < deadline, f"never published: {event_ids - found.keys()}"
            try:
                batch = await sub.fetch(100, timeout=1.0)
            except TimeoutError:
                continue
            for msg in batch:
                headers = msg.headers or {}
                event_id = headers.get("Nats-Msg-Id", "")
                if event_id in event_ids:
                    event_type = headers[EVENT_TYPE_HEADER]
                    found[event_id] = (event_type, msg.data)
                    assert _event(event_type, msg.data).meta.event_id == event_id
    finally:
        await nc.close()
    return found


def _event(event_type: str, payload: bytes) -> Any:
    """An order event (pos.order.v1.OrderCreated …) from its bytes."""
    return getattr(events_pb2, event_type.rpartition(".")[2]).FromString(payload)


def _unpublished(stack: Stack, value: str) -> bool:
    with psycopg.connect(stack.order_db) as conn:
        row = conn.execute(
            "SELECT 1 FROM outbox WHERE published_at IS NULL"
            " AND position(convert_to(%s, 'UTF8') in payload) > 0",
            (value,),
        ).fetchone()
    return row is not None


def _answers(stack: Stack, order_id: str) -> int:
    """The stored answers that hold the order."""
    with psycopg.connect(stack.order_db) as conn:
        row = conn.execute(
            "SELECT count(*) FROM processed_requests"
            " WHERE position(convert_to(%s, 'UTF8') in response) > 0",
            (order_id,),
        ).fetchone()
    assert row is not None
    return int(row[0])


async def test_an_order_written_beside_the_erasure_is_blanked_with_the_others(
    stack: Stack, monkeypatch: pytest.MonkeyPatch
) -> None:
    """An order naming the customer whose transaction is still open when the erasure comes
    (saved, not committed: held there by hand) is not missed: the erasure waits on the
    customer's row of the read model, which the order's transaction holds, and blanks the
    order once it is committed. Before, the erasure did not see the uncommitted order, which
    then kept its address, notes and metadata for good."""
    customer = (await stack.customer(A)).id
    await stack.wait_known(A, customer)
    await stack.receive(1)
    tag = uuid.uuid4().hex[:8]
    saved, go = asyncio.Event(), asyncio.Event()
    add = repository.SqlOrderRepository.add

    async def held(self: repository.SqlOrderRepository, order: Any) -> bool:
        added = await add(self, order)
        if order.notes == f"call {tag}":
            saved.set()
            await go.wait()  # the order's transaction stays open here
        return added

    monkeypatch.setattr(repository.SqlOrderRepository, "add", held)
    made = asyncio.ensure_future(_shipped(stack, customer, tag))
    engine = make_engine(stack.order_db)
    try:
        await asyncio.wait_for(saved.wait(), 10)
        erasure = asyncio.ensure_future(_erase(engine, customer))
        await _until_erased_or_waiting(stack, erasure, "known_customers")
        go.set()
        await asyncio.wait_for(erasure, 10)
        order = (await asyncio.wait_for(made, 15)).id
    finally:
        go.set()
        await engine.dispose()
    kept = await stack.order.GetOrder(
        order_pb2.GetOrderRequest(id=order), metadata=md(A), timeout=5
    )
    assert kept.order.customer_id == customer and kept.order.notes == ""
    assert dict(kept.order.metadata) == {}
    assert [f.ship_to for f in kept.order.fulfillments] == [""]


async def test_an_order_written_after_the_erasure_began_is_refused(stack: Stack) -> None:
    """The erasure's transaction holds the customer's row of the read model from its start:
    an order naming the customer written meanwhile (its customer read as known before the
    erasure committed) waits for it and is then refused as a customer the merchant does not
    have (NOT_FOUND), nothing of it kept. Before, it was saved with its address, notes and
    metadata once the erasure had blanked the others."""
    customer = (await stack.customer(A)).id
    await stack.wait_known(A, customer)
    await stack.receive(1)
    tag = uuid.uuid4().hex[:8]
    engine = make_engine(stack.order_db)
    try:
        async with OrderUow(engine, kit).bind(A) as uow:
            await consumers.on_customer_erased(
                uow, customer_events.CustomerErased(customer_id=customer)
            )
            made = asyncio.ensure_future(_shipped(stack, customer, tag))
            await _until_erased_or_waiting(stack, made, "known_customers")
            await uow.commit()
    finally:
        await engine.dispose()
    with pytest.raises(grpc.aio.AioRpcError) as refused:
        await asyncio.wait_for(made, 15)
    assert refused.value.code() == grpc.StatusCode.NOT_FOUND
    assert read_error(refused.value).metadata.get("resource") == "customer"
    assert tag not in _dump(stack)


async def test_an_answer_recorded_after_the_erasure_holds_nothing_it_blanked(
    stack: Stack, monkeypatch: pytest.MonkeyPatch
) -> None:
    """An order saved before the erasure whose request is answered after it (held by hand
    between its calls and the transaction that stores its answer) answers the order as the
    erasure left it, and its stored answer holds none of the address, notes and metadata.
    Before, the answer was made from the order as the request had it in memory and stored
    after the erasure had deleted the stored copies: the address and notes stayed in it, and
    a retry of the request replayed them."""
    customer = (await stack.customer(A)).id
    await stack.wait_known(A, customer)
    await stack.receive(1)
    tag = uuid.uuid4().hex[:8]
    called, go = asyncio.Event(), asyncio.Event()
    call = drafts.CreateOrder.call

    async def held(self: drafts.CreateOrder[Any], claim: Any, started: Any) -> Any:
        order = await call(self, claim, started)
        if order.notes == f"call {tag}":
            called.set()
            await go.wait()  # before the transaction that stores the answer
        return order

    monkeypatch.setattr(drafts.CreateOrder, "call", held)
    made = asyncio.ensure_future(_shipped(stack, customer, tag))
    engine = make_engine(stack.order_db)
    try:
        await asyncio.wait_for(called.wait(), 10)
        await _erase(engine, customer)
    finally:
        go.set()
        await engine.dispose()
    answered = await asyncio.wait_for(made, 15)
    assert answered.customer_id == customer and answered.notes == ""
    assert dict(answered.metadata) == {}
    assert [f.ship_to for f in answered.fulfillments] == [""]
    assert tag not in _dump(stack)


async def _until_erased_or_waiting(stack: Stack, task: asyncio.Future[Any], table: str) -> None:
    """Until `task` is done or a transaction waits for a lock in a statement naming `table`."""
    deadline = time.monotonic() + 10
    while not task.done():
        with psycopg.connect(stack.order_db) as conn:
            row = conn.execute(
                "SELECT 1 FROM pg_stat_activity WHERE datname = current_database()"
                " AND wait_event_type = 'Lock' AND query LIKE %s",
                (f"%{table}%",),
            ).fetchone()
        if row is not None:
            return
        assert time.monotonic() < deadline, "neither done nor waiting"
        await asyncio.sleep(0.02)
