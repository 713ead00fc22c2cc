"""Dead letters can be seen and sent again, to the consumer that failed them only."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys

import pytest
from nats.js.api import ConsumerConfig
from nats.js.errors import NotFoundError

from pos_customer.adapters.tables import kit
from pos_devstack.testing import Bus, until
from pos_kit.consumer import Consumer, IncomingEvent
from pos_kit.dead_letters import (
    UnknownConsumer,
    Unroutable,
    consumer_known,
    list_dead_letters,
    redrive,
    redrive_all,
)
from pos_kit.events import EVENT_ID_HEADER, EVENT_TYPE_HEADER, MERCHANT_HEADER
from pos_kit.streams import ensure_service_streams
from pos_kit.uow import UnitOfWork

pytestmark = pytest.mark.asyncio(loop_scope="session")
SUBJECT = "pos.order.v1.order_confirmed"


async def test_a_dead_letter_is_listed_then_redriven_to_its_consumer_alone(bus: Bus) -> None:
    js, engine = bus.js, bus.engine
    fixed = False
    applied: dict[str, list[str]] = {"fails": [], "other": []}

    async def fails_until_fixed(uow: UnitOfWork, event: IncomingEvent) -> None:
        if not fixed:
            raise RuntimeError("a bug, fixed later")
        applied["fails"].append(event.event_id)

    async def other(uow: UnitOfWork, event: IncomingEvent) -> None:
        applied["other"].append(event.event_id)

    def consumer(name: str, handler) -> Consumer:  # type: ignore[no-untyped-def]
        return Consumer(
            js,
            lambda: UnitOfWork(engine, kit),
            name=name,
            source_service="order",
            subjects=[SUBJECT],
            handler=handler,
            max_deliver=2,
            base_delay=0.01,
        )

    failing, bystander = consumer("test-fails", fails_until_fixed), consumer("test-other", other)
    stop = asyncio.Event()
    tasks = []
    try:
        await ensure_service_streams(js, "order")
        headers = {
            EVENT_ID_HEADER: "evt_1",
            EVENT_TYPE_HEADER: "pos.order.v1.OrderConfirmed",
            MERCHANT_HEADER: "mer_a",
        }
        await js.publish(SUBJECT, b"payload", headers=headers)
        tasks = [asyncio.create_task(c.run(stop)) for c in (failing, bystander)]
        await until(lambda: failing.dead_lettered == 1 and bystander.applied == 1)

        # Seen from the command line an operator uses.
        shown = await asyncio.to_thread(
            subprocess.run,
            [sys.executable, "-m", "pos_kit.dead_letters", "list"],
            env={**os.environ, "NATS_URL": bus.nats_url},
            capture_output=True,
            text=True,
            check=True,
            timeout=60,
        )
        (line,) = shown.stdout.splitlines()
        letter = json.loads(line)
        assert (letter["consumer"], letter["subject"], letter["event_id"]) == (
            "test-fails",
            SUBJECT,
            "evt_1",
        )
        assert (letter["deliveries"], letter["error"]) == (2, "RuntimeError")
        assert letter["merchant_id"] == "mer_a"

        fixed = True
        (sent,) = await redrive_all(js)
        assert sent.sequence == letter["sequence"]
        await until(lambda: failing.applied == 1 and bystander.skipped == 1)
        # Only the consumer that failed applied it again; the other saw and skipped it.
        assert applied == {"fails": ["evt_1"], "other": ["evt_1"]}
        assert await list_dead_letters(js) == []
        with pytest.raises(NotFoundError):
            await redrive(js, letter["sequence"])  # sent once: the letter is gone
    finally:
        stop.set()
        await asyncio.gather(*tasks)


async def test_a_letter_that_names_no_consumer_stays_and_the_others_are_sent(bus: Bus) -> None:
    """A message on the dead-letter stream that does not say its consumer and subject (put
    there by hand) cannot be sent again: it is refused alone (`Unroutable`) and stays listed,
    and a redrive of every letter sends the others (it stopped at it, having sent part, and
    the platform API answered a 500)."""
    js = bus.js
    await ensure_service_streams(js, "order")
    consumer = "test-unroutable"
    await js.publish(f"pos.dlq.{consumer}", b"by hand")
    routable = {
        "Omnitill-Original-Subject": "pos.order.v1.test_unroutable",
        "Omnitill-Consumer": consumer,
        EVENT_ID_HEADER: "evt_2",
    }
    await js.publish(f"pos.dlq.{consumer}", b"payload", headers=routable)
    by_hand, sendable = await list_dead_letters(js, consumer)
    with pytest.raises(Unroutable):
        await redrive(js, by_hand.sequence)
    sent = await redrive_all(js, consumer)
    assert [x.sequence for x in sent] == [sendable.sequence]
    assert [x.sequence for x in await list_dead_letters(js, consumer)] == [by_hand.sequence]


async def test_a_redrive_of_a_consumer_there_is_not_is_refused(bus: Bus) -> None:
    """A consumer that is neither a durable consumer of a stream nor one with dead letters (a
    typo) is UnknownConsumer, not an empty redrive; one that is a stream's consumer, with no
    letters, is an empty one."""
    js = bus.js
    await ensure_service_streams(js, "order")
    await js.add_consumer("POS_ORDER", ConsumerConfig(durable_name="test-known"))
    assert await consumer_known(js, "test-known")
    assert await redrive_all(js, "test-known") == []
    assert not await consumer_known(js, "test-knwon")
    with pytest.raises(UnknownConsumer):
        await redrive_all(js, "test-knwon")
