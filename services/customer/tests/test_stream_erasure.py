"""Erasure reaches the NATS stream: after a customer is erased, no message of POS_CUSTOMER holds
their name, email or phone, nor any dead letter of one in POS_DLQ; the dead letters of their
orders' events lose the shipment address and notes but stay (redacted) to be sent again;
another customer's messages stay. Real PostgreSQL and NATS."""

from __future__ import annotations

import asyncio
import contextlib
import time
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass

import nats
import pytest
import pytest_asyncio
import sqlalchemy as sa
from nats.js import JetStreamContext
from nats.js.api import AckPolicy, ConsumerConfig, DeliverPolicy

from pos.customer.v1 import customer_pb2, customer_pb2_grpc
from pos.customer.v1 import events_pb2 as customer_events
from pos.inventory.v1 import inventory_pb2
from pos.order.v1 import events_pb2 as order_events
from pos.order.v1 import order_pb2
from pos_devstack.natsd import LocalNats
from pos_devstack.testing import Infra, serve_in_process
from pos_kit.dead_letters import CONSUMER, ORIGINAL_SUBJECT
from pos_kit.events import EVENT_ID_HEADER, EVENT_TYPE_HEADER, MERCHANT_HEADER, make_event

pytestmark = pytest.mark.asyncio(loop_scope="session")
MERCHANT = (("x-merchant-id", "mer_erasure"),)


@dataclass
class Running:
    stub: customer_pb2_grpc.CustomerServiceStub
    nats: LocalNats
    runtime: object


@pytest_asyncio.fixture(loop_scope="session")
async def running(infra: Infra) -> AsyncIterator[Running]:
    server = infra.new_nats()
    try:
        async with serve_in_process(
            "customer", infra, server.url, stream_erasure_seconds=0.2
        ) as svc:
            yield Running(customer_pb2_grpc.CustomerServiceStub(svc.channel), server, svc.runtime)
    finally:
        server.stop()


async def _stream(
    url: str, stream: str = "POS_CUSTOMER", subjects: str = "pos.customer.v1.>"
) -> bytes:
    """Every message the customer stream (or another) holds now, payloads joined."""
    nc = await nats.connect(url)
    try:
        js = nc.jetstream()
        config = ConsumerConfig(deliver_policy=DeliverPolicy.ALL, ack_policy=AckPolicy.NONE)
        sub = await js.pull_subscribe(subjects, stream=stream, config=config)
        out = b""
        while True:
            try:
                batch = await sub.fetch(256, timeout=0.5)
            except TimeoutError:  # nats' own, or asyncio's when the deadline ran out first
                return out
            out += b"".join(m.data for m in batch)
            if batch[-1].metadata.num_pending == 0:
                return out
    finally:
        await nc.close()


async def _dead_letter_profiles(url: str) -> None:
    """Copy every message of the customer stream to the dead-letter stream, as a consumer that
    could not apply them would (pos_kit.consumer: the consumer's subject, the original one in
    a header)."""
    nc = await nats.connect(url)
    try:
        js = nc.jetstream()
        config = ConsumerConfig(deliver_policy=DeliverPolicy.ALL, ack_policy=AckPolicy.NONE)
        sub = await js.pull_subscribe("pos.customer.v1.>", stream="POS_CUSTOMER", config=config)
        while True:
            try:
                batch = await sub.fetch(256, timeout=0.5)
            except TimeoutError:  # nats' own, or asyncio's when the deadline ran out first
                return
            for m in batch:
                headers = {
                    **(m.headers or {}),
                    ORIGINAL_SUBJECT: m.subject,
                    "Nats-Msg-Id": f"test-dlq:{m.metadata.sequence.stream}:{uuid.uuid4().hex}",
                }
                await js.publish("pos.dlq.order-customer", m.data, headers=headers)
            if batch[-1].metadata.num_pending == 0:
                return
    finally:
        await nc.close()


async def _publish_erased_snapshot(url: str, customer: str) -> int:
    """A customer_created as the relay sends one an erasure rewrote; its stream sequence."""
    snapshot = customer_pb2.Customer(id=customer, status="erased", version=1)
    nc = await nats.connect(url)
    try:
        ack = await nc.jetstream().publish(
            "pos.customer.v1.customer_created",
            customer_events.CustomerCreated(customer=snapshot).SerializeToString(),
            headers={MERCHANT_HEADER: "mer_erasure", "Nats-Msg-Id": uuid.uuid4().hex},
        )
        return ack.seq
    finally:
        await nc.close()


async def _still_there(url: str, sequence: int) -> bool:
    nc = await nats.connect(url)
    try:
        try:
            await nc.jetstream().get_msg("POS_CUSTOMER", sequence)
        except nats.js.errors.NotFoundError:
            return False
        return True
    finally:
        await nc.close()


async def _until(check: object, what: str) -> None:
    deadline = time.monotonic() + 20
    while not await check():  # type: ignore[operator]
        assert time.monotonic() < deadline, what
        await asyncio.sleep(0.1)


async def test_an_erased_customers_profile_messages_leave_the_stream(running: Running) -> None:
    tag = uuid.uuid4().hex[:10]
    email, other_email = f"gone-{tag}@example.com", f"stays-{tag}@example.com"
    made = await running.stub.CreateCustomer(
        customer_pb2.CreateCustomerRequest(
            request_id=uuid.uuid4().hex,
            profile=customer_pb2.ProfileFields(
                email=email, given_name=f"Ada{tag}", phone="+14155550142"
            ),
        ),
        metadata=MERCHANT,
        timeout=5,
    )
    customer = made.customer.id
    await running.stub.UpdateCustomer(
        customer_pb2.UpdateCustomerRequest(
            request_id=uuid.uuid4().hex, id=customer, family_name=f"Lovelace{tag}"
        ),
        metadata=MERCHANT,
        timeout=5,
    )
    await running.stub.CreateCustomer(
        customer_pb2.CreateCustomerRequest(request_id=uuid.uuid4().hex, email=other_email),
        metadata=MERCHANT,
        timeout=5,
    )
    personal = [email.encode(), f"Ada{tag}".encode(), f"Lovelace{tag}".encode(), b"4155550142"]

    async def published() -> bool:
        held = await _stream(running.nats.url)
        return all(p in held for p in personal) and other_email.encode() in held

    await _until(published, "the profile messages never reached the stream")
    await _dead_letter_profiles(running.nats.url)
    # An event the erasure rewrote in the outbox reaches the stream with the erased snapshot:
    # it holds nothing personal, and its readers still need it, so it stays.
    rewritten = await _publish_erased_snapshot(running.nats.url, customer)

    await running.stub.EraseCustomer(
        customer_pb2.EraseCustomerRequest(request_id=uuid.uuid4().hex, id=customer),
        metadata=MERCHANT,
        timeout=5,
    )

    async def purged() -> bool:
        held = await _stream(running.nats.url)
        return not any(p in held for p in personal)

    await _until(purged, "the erased customer's messages are still in the stream")

    async def no_dead_letter() -> bool:
        held = await _stream(running.nats.url, "POS_DLQ", "pos.dlq.>")
        return not any(p in held for p in personal)

    await _until(no_dead_letter, "the erased customer's dead letters are still kept")
    assert other_email.encode() in await _stream(running.nats.url, "POS_DLQ", "pos.dlq.>")
    held = await _stream(running.nats.url)
    assert other_email.encode() in held  # nobody else's message was touched
    assert customer.encode() in held  # the erasure's own tombstone: the id only
    assert await _still_there(running.nats.url, rewritten)
    engine = running.runtime.engine  # type: ignore[attr-defined]
    async with engine.connect() as conn:
        stamped = await conn.execute(
            sa.text("SELECT stream_purged_at FROM erasures WHERE customer_id = :c"),
            {"c": customer},
        )
        assert stamped.scalar_one() is not None


async def _dead_letter_order(url: str, customer_id: str, ship_to: str, notes: str) -> str:
    """A confirmed shipment order of the customer, dead-lettered by the dispatcher's consumer
    of POS_ORDER as pos_kit.consumer does it; the order's id."""
    order = order_pb2.Order(
        id=f"ord_{uuid.uuid4().hex[:12]}",
        customer_id=customer_id,
        notes=notes,
        metadata={"contact": f"{notes} by phone", "gift": "1"},
        fulfillments=[
            order_pb2.Fulfillment(
                id="ful_1",
                ship_to=ship_to,
                destination=inventory_pb2.GeoPoint(latitude=51.5, longitude=-0.12),
            )
        ],
    )
    event = make_event(order_events.OrderConfirmed(order=order), "mer_erasure")
    nc = await nats.connect(url)
    try:
        await nc.jetstream().publish(
            "pos.dlq.dispatcher-order",
            event.payload,
            headers={
                "Nats-Msg-Id": f"dispatcher-order:{event.event_id}:1",
                EVENT_ID_HEADER: event.event_id,
                EVENT_TYPE_HEADER: event.event_type,
                MERCHANT_HEADER: "mer_erasure",
                ORIGINAL_SUBJECT: event.subject,
                CONSUMER: "dispatcher-order",
            },
        )
    finally:
        await nc.close()
    return order.id


async def _dead_orders(url: str) -> dict[str, order_pb2.Order]:
    """The orders in the dead letters of order events, by id."""
    nc = await nats.connect(url)
    try:
        js = nc.jetstream()
        config = ConsumerConfig(deliver_policy=DeliverPolicy.ALL, ack_policy=AckPolicy.NONE)
        sub = await js.pull_subscribe("pos.dlq.>", stream="POS_DLQ", config=config)
        found: dict[str, order_pb2.Order] = {}
        while True:
            try:
                batch = await sub.fetch(256, timeout=0.5)
            except TimeoutError:  # nats' own, or asyncio's when the deadline ran out first
                return found
            for m in batch:
                if (m.headers or {}).get(ORIGINAL_SUBJECT) == "pos.order.v1.order_confirmed":
                    order = order_events.OrderConfirmed.FromString(m.data).order
                    found[order.id] = order
            if batch[-1].metadata.num_pending == 0:
                return found
    finally:
        await nc.close()


async def test_an_erased_customers_order_dead_letters_lose_the_address_and_stay(
    running: Running,
) -> None:
    tag = uuid.uuid4().hex[:10]
    ids = []
    for email in (f"ships-{tag}@example.com", f"keeps-{tag}@example.com"):
        made = await running.stub.CreateCustomer(
            customer_pb2.CreateCustomerRequest(request_id=uuid.uuid4().hex, email=email),
            metadata=MERCHANT,
            timeout=5,
        )
        ids.append(made.customer.id)
    customer, other = ids
    address, other_address = f"12 Hidden Lane {tag}", f"3 Open Road {tag}"
    gone = await _dead_letter_order(running.nats.url, customer, address, f"ring twice {tag}")
    kept = await _dead_letter_order(running.nats.url, other, other_address, f"leave {tag}")

    await running.stub.EraseCustomer(
        customer_pb2.EraseCustomerRequest(request_id=uuid.uuid4().hex, id=customer),
        metadata=MERCHANT,
        timeout=5,
    )

    async def redacted() -> bool:
        held = await _stream(running.nats.url, "POS_DLQ", "pos.dlq.>")
        return not [p for p in (address, f"ring twice {tag}") if p.encode() in held]

    await _until(redacted, "the erased customer's order dead letters still hold the address")
    orders = await _dead_orders(running.nats.url)
    # Still there to be sent again, the order whole but for what the erasure takes.
    assert gone in orders
    assert orders[gone].customer_id == customer
    assert orders[gone].notes == "" and dict(orders[gone].metadata) == {}
    assert [f.ship_to for f in orders[gone].fulfillments] == [""]
    assert not orders[gone].fulfillments[0].HasField("destination")
    # Another customer's order is untouched.
    assert orders[kept].fulfillments[0].ship_to == other_address
    assert orders[kept].notes == f"leave {tag}"
    assert orders[kept].metadata["contact"] == f"leave {tag} by phone"


async def test_a_reader_behind_gets_the_erased_customers_events_redacted(running: Running) -> None:
    """A durable consumer that has not read a customer's creation when the customer is erased
    (the dispatcher down, say) still gets it, as the erased snapshot, under its event id."""
    tag = uuid.uuid4().hex[:10]
    await asyncio.wait_for(running.runtime.ready.wait(), 20)  # type: ignore[attr-defined]
    nc = await nats.connect(running.nats.url)
    try:
        js = nc.jetstream()
        behind = await js.pull_subscribe(
            "pos.customer.v1.customer_created",
            durable=f"behind-{tag}",
            stream="POS_CUSTOMER",
            config=ConsumerConfig(deliver_policy=DeliverPolicy.NEW, ack_policy=AckPolicy.EXPLICIT),
        )
        made = await running.stub.CreateCustomer(
            customer_pb2.CreateCustomerRequest(
                request_id=uuid.uuid4().hex,
                profile=customer_pb2.ProfileFields(email=f"late-{tag}@example.com"),
            ),
            metadata=MERCHANT,
            timeout=5,
        )
        customer = made.customer.id

        async def published() -> bool:
            return f"late-{tag}".encode() in await _stream(running.nats.url)

        await _until(published, "the customer's creation never reached the stream")
        await running.stub.EraseCustomer(
            customer_pb2.EraseCustomerRequest(request_id=uuid.uuid4().hex, id=customer),
            metadata=MERCHANT,
            timeout=5,
        )

        async def purged() -> bool:
            return f"late-{tag}".encode() not in await _stream(running.nats.url)

        await _until(purged, "the erased customer's creation is still in the stream")
        got: list[tuple[str, customer_pb2.Customer]] = []
        while True:
            try:
                batch = await behind.fetch(64, timeout=0.5)
            except TimeoutError:  # nats' own, or asyncio's when the deadline ran out first
                break
            for m in batch:
                await m.ack()
                created = customer_events.CustomerCreated.FromString(m.data).customer
                if created.id == customer:
                    got.append(((m.headers or {}).get(EVENT_ID_HEADER, ""), created))
        assert len(got) == 1, got
        event_id, snapshot = got[0]
        assert event_id  # the original event's id, so a reader that had it skips the copy
        assert (snapshot.status, snapshot.email, snapshot.version) == ("erased", "", 1)
        await js.delete_consumer("POS_CUSTOMER", f"behind-{tag}")
    finally:
        await nc.close()


async def _published_order(js: JetStreamContext, customer_id: str, ship_to: str) -> str:
    """A confirmed shipment order of the customer in POS_ORDER, as the order service's relay
    publishes it; the event's id."""
    order = order_pb2.Order(
        id=f"ord_{uuid.uuid4().hex[:12]}",
        customer_id=customer_id,
        notes=f"notes of {ship_to}",
        metadata={"contact": f"phone of {ship_to}"},
        fulfillments=[order_pb2.Fulfillment(id="ful_1", ship_to=ship_to)],
    )
    event = make_event(order_events.OrderConfirmed(order=order), "mer_erasure")
    await js.publish(
        event.subject,
        event.payload,
        headers={
            "Nats-Msg-Id": event.event_id,
            EVENT_ID_HEADER: event.event_id,
            EVENT_TYPE_HEADER: event.event_type,
            MERCHANT_HEADER: "mer_erasure",
        },
    )
    return event.event_id


async def test_an_erased_customers_order_events_lose_the_address_in_the_order_stream(
    running: Running,
) -> None:
    """The order service erases a customer's shipment addresses and notes from its orders; the
    events in POS_ORDER that carried them go too, and a durable reader behind (a consumer
    down) still gets each, redacted, under its event id. Another customer's stay whole."""
    tag = uuid.uuid4().hex[:10]
    await asyncio.wait_for(running.runtime.ready.wait(), 20)  # type: ignore[attr-defined]
    ids = []
    for email in (f"orders-{tag}@example.com", f"stays-{tag}@example.com"):
        made = await running.stub.CreateCustomer(
            customer_pb2.CreateCustomerRequest(request_id=uuid.uuid4().hex, email=email),
            metadata=MERCHANT,
            timeout=5,
        )
        ids.append(made.customer.id)
    customer, other = ids
    address, other_address = f"9 Secret Row {tag}", f"4 Public Way {tag}"
    nc = await nats.connect(running.nats.url)
    try:
        js = nc.jetstream()
        with contextlib.suppress(nats.js.errors.BadRequestError):
            await js.add_stream(name="POS_ORDER", subjects=["pos.order.v1.>"])
        behind = await js.pull_subscribe(
            "pos.order.v1.order_confirmed",
            durable=f"behind-{tag}",
            stream="POS_ORDER",
            config=ConsumerConfig(deliver_policy=DeliverPolicy.NEW, ack_policy=AckPolicy.EXPLICIT),
        )
        gone = await _published_order(js, customer, address)
        await _published_order(js, other, other_address)
        await running.stub.EraseCustomer(
            customer_pb2.EraseCustomerRequest(request_id=uuid.uuid4().hex, id=customer),
            metadata=MERCHANT,
            timeout=5,
        )

        async def purged() -> bool:
            held = await _stream(running.nats.url, "POS_ORDER", "pos.order.v1.>")
            gone = (address, f"notes of {address}", f"phone of {address}")
            return not [p for p in gone if p.encode() in held]

        await _until(purged, "the erased customer's order events still hold the address")
        assert other_address.encode() in await _stream(
            running.nats.url, "POS_ORDER", "pos.order.v1.>"
        )
        got: dict[str, order_pb2.Order] = {}
        while True:
            try:
                batch = await behind.fetch(64, timeout=0.5)
            except TimeoutError:  # nats' own, or asyncio's when the deadline ran out first
                break
            for m in batch:
                await m.ack()
                event_id = (m.headers or {}).get(EVENT_ID_HEADER, "")
                got[event_id] = order_events.OrderConfirmed.FromString(m.data).order
        # The reader gets the erased customer's order, redacted, under the event's own id.
        assert got[gone].customer_id == customer
        assert (got[gone].notes, got[gone].fulfillments[0].ship_to) == ("", "")
        assert dict(got[gone].metadata) == {}
        assert other_address in [o.fulfillments[0].ship_to for o in got.values()]
        await js.delete_consumer("POS_ORDER", f"behind-{tag}")
    finally:
        await nc.close()
