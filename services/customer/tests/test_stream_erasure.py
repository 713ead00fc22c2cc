"""Erasure reaches the NATS stream: after a customer is erased, no message of POS_CUSTOMER holds
their name, email or phone, nor any dead letter of one in POS_DLQ; another customer's messages
stay. Real PostgreSQL and NATS."""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass

import nats
import pytest
import pytest_asyncio
import sqlalchemy as sa
from nats.js.api import AckPolicy, ConsumerConfig, DeliverPolicy

from pos.customer.v1 import customer_pb2, customer_pb2_grpc
from pos_devstack.natsd import LocalNats
from pos_devstack.testing import Infra, serve_in_process
from pos_kit.dead_letters import ORIGINAL_SUBJECT

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
            except nats.errors.TimeoutError:
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
            except nats.errors.TimeoutError:
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
    engine = running.runtime.engine  # type: ignore[attr-defined]
    async with engine.connect() as conn:
        stamped = await conn.execute(
            sa.text("SELECT stream_purged_at FROM erasures WHERE customer_id = :c"),
            {"c": customer},
        )
        assert stamped.scalar_one() is not None
