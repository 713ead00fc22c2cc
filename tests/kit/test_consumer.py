"""Durable consumers with an inbox: duplicates applied once, poison dead-lettered."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from sqlalchemy import func, select

from pos_customer.adapters.tables import kit
from pos_devstack.testing import Bus, until
from pos_kit.consumer import CommitGroup, Consumer, IncomingEvent
from pos_kit.events import EVENT_ID_HEADER, EVENT_TYPE_HEADER, MERCHANT_HEADER
from pos_kit.streams import DLQ_STREAM, ensure_service_streams
from pos_kit.uow import UnitOfWork

pytestmark = pytest.mark.asyncio(loop_scope="session")
SUBJECT = "pos.order.v1.order_confirmed"


def _headers(event_id: str, msg_id: str) -> dict[str, str]:
    return {
        "Nats-Msg-Id": msg_id,
        EVENT_ID_HEADER: event_id,
        EVENT_TYPE_HEADER: "pos.order.v1.OrderConfirmed",
        MERCHANT_HEADER: "mer_a",
    }


async def test_a_duplicate_delivery_is_applied_once(bus: Bus) -> None:
    js, engine = bus.js, bus.engine
    applied: list[str] = []

    async def handler(uow: UnitOfWork, event: IncomingEvent) -> None:
        applied.append(event.event_id)

    consumer = Consumer(
        js,
        lambda: UnitOfWork(engine, kit),
        name="test-dedupe",
        source_service="order",
        subjects=[SUBJECT],
        handler=handler,
    )
    stop = asyncio.Event()
    await ensure_service_streams(js, "order")
    # The same event twice, under two transport ids, as a re-publish would produce.
    await js.publish(SUBJECT, b"", headers=_headers("evt_same", "one"))
    await js.publish(SUBJECT, b"", headers=_headers("evt_same", "two"))
    await js.publish(SUBJECT, b"", headers=_headers("evt_other", "three"))
    task = asyncio.create_task(consumer.run(stop))
    await until(lambda: consumer.applied + consumer.duplicates == 3)
    stop.set()
    await task
    assert applied == ["evt_same", "evt_other"]
    assert consumer.duplicates == 1
    async with engine.connect() as conn:
        rows = await conn.scalar(select(func.count()).select_from(kit.inbox))
    assert rows == 2


async def test_a_backlog_is_applied_a_transaction_per_merchant_and_a_failure_alone_retried(
    bus: Bus,
) -> None:
    """Events that piled up are applied many to a transaction (one commit for a merchant's
    events of a fetch), each once; one failing event sends its batch message by message, where
    only it is retried, and nothing of the failed batch transaction stays."""
    js, engine = bus.js, bus.engine
    applied: list[tuple[str, str, int]] = []  # (merchant, event, transaction id)
    failed_once: set[str] = set()

    async def handler(uow: UnitOfWork, event: IncomingEvent) -> None:
        if event.event_id == "evt_a7" and event.event_id not in failed_once:
            failed_once.add(event.event_id)
            raise RuntimeError("not yet")
        txid = (await uow.conn.execute(select(func.txid_current()))).scalar_one()
        applied.append((event.merchant_id, event.event_id, txid))

    consumer = Consumer(
        js,
        lambda: UnitOfWork(engine, kit),
        name="test-backlog",
        source_service="order",
        subjects=[SUBJECT],
        handler=handler,
        base_delay=0.05,
    )
    await ensure_service_streams(js, "order")
    sent = []
    for n in range(12):
        merchant = "mer_a" if n % 2 else "mer_b"
        event_id = f"evt_{merchant[-1]}{n}"
        headers = {**_headers(event_id, f"backlog-{n}"), MERCHANT_HEADER: merchant}
        await js.publish(SUBJECT, b"", headers=headers)
        sent.append(event_id)
    stop = asyncio.Event()
    task = asyncio.create_task(consumer.run(stop))
    await until(lambda: consumer.applied == 12)
    stop.set()
    await task
    async with engine.connect() as conn:
        status = {
            txid: (await conn.execute(select(func.txid_status(txid)))).scalar_one()
            for txid in {t for _, _, t in applied}
        }
    # What committed: each event once (the failed one too); the batch that failed left nothing.
    kept = [(m, e, t) for m, e, t in applied if status[t] == "committed"]
    assert sorted(e for _, e, _ in kept) == sorted(sent)
    assert failed_once == {"evt_a7"}
    assert "aborted" in status.values()  # the failure's batch was rolled back, not half-kept
    # Batched: fewer transactions than events, and never two merchants in one.
    transactions = {t for _, _, t in kept}
    assert len(transactions) < 12
    for txid in transactions:
        assert len({m for m, _, t in kept if t == txid}) == 1
    async with engine.connect() as conn:
        inbox = kit.inbox
        mine = select(func.count()).select_from(inbox).where(inbox.c.consumer == "test-backlog")
        assert await conn.scalar(mine) == 12


async def test_a_failing_message_is_retried_then_dead_lettered(bus: Bus) -> None:
    js, engine = bus.js, bus.engine
    attempts: list[int] = []

    async def handler(uow: UnitOfWork, event: IncomingEvent) -> None:
        attempts.append(event.delivery)
        raise RuntimeError("downstream is broken")

    consumer = Consumer(
        js,
        lambda: UnitOfWork(engine, kit),
        name="test-dlq",
        source_service="order",
        subjects=[SUBJECT],
        handler=handler,
        max_deliver=3,
        base_delay=0.05,
    )
    stop = asyncio.Event()
    await ensure_service_streams(js, "order")
    await js.publish(SUBJECT, b"payload", headers=_headers("evt_bad", "bad"))
    task = asyncio.create_task(consumer.run(stop))
    await until(lambda: consumer.dead_lettered == 1)
    stop.set()
    await task
    assert attempts == [1, 2, 3]
    dead = await js.get_last_msg(DLQ_STREAM, "pos.dlq.test-dlq")
    assert dead.data == b"payload"
    assert dead.headers is not None
    assert dead.headers["Omnitill-Original-Subject"] == SUBJECT
    assert dead.headers["Omnitill-Deliveries"] == "3"
    # Nothing was recorded as processed: the failed attempts rolled back.
    async with engine.connect() as conn:
        assert await conn.scalar(select(func.count()).select_from(kit.inbox)) == 0


async def test_a_message_without_event_headers_is_dead_lettered_at_once(bus: Bus) -> None:
    js, engine = bus.js, bus.engine
    calls: list[str] = []

    async def handler(uow: UnitOfWork, event: IncomingEvent) -> None:
        calls.append(event.event_id)

    consumer = Consumer(
        js,
        lambda: UnitOfWork(engine, kit),
        name="test-poison",
        source_service="order",
        subjects=[SUBJECT],
        handler=handler,
    )
    stop = asyncio.Event()
    await ensure_service_streams(js, "order")
    await js.publish(SUBJECT, b"junk")
    task = asyncio.create_task(consumer.run(stop))
    await until(lambda: consumer.dead_lettered == 1)
    stop.set()
    await task
    assert calls == []


async def test_an_event_the_consumer_does_not_need_is_acked_without_a_transaction(bus: Bus) -> None:
    js, engine = bus.js, bus.engine
    applied: list[str] = []

    async def handler(uow: UnitOfWork, event: IncomingEvent) -> None:
        applied.append(event.event_id)

    consumer = Consumer(
        js,
        lambda: UnitOfWork(engine, kit),
        name="test-relevant",
        source_service="order",
        subjects=[SUBJECT],
        handler=handler,
        relevant=lambda event: event.data == b"wanted",
    )
    stop = asyncio.Event()
    await ensure_service_streams(js, "order")
    await js.publish(SUBJECT, b"other", headers=_headers("evt_skip", "s1"))
    await js.publish(SUBJECT, b"wanted", headers=_headers("evt_keep", "s2"))
    task = asyncio.create_task(consumer.run(stop))
    await until(lambda: consumer.applied + consumer.skipped == 2)
    stop.set()
    await task
    assert applied == ["evt_keep"] and consumer.skipped == 1
    async with engine.connect() as conn:
        ids = (await conn.execute(select(kit.inbox.c.event_id))).scalars().all()
    assert ids == ["evt_keep"]  # no inbox row, so no commit, for the skipped event
    # Acknowledged, not left to be redelivered.
    info = await js.consumer_info("POS_ORDER", "test-relevant")
    assert info.num_ack_pending == 0 and info.num_pending == 0


def _ordered(bus: Bus, name: str, handler, **kw) -> Consumer:  # type: ignore[no-untyped-def]
    return Consumer(
        bus.js,
        lambda: UnitOfWork(bus.engine, kit),
        name=name,
        source_service="order",
        subjects=[SUBJECT],
        handler=handler,
        ordered=True,
        **kw,
    )


async def test_an_ordered_consumer_restarted_after_a_crash_keeps_the_stream_order(
    bus: Bus,
) -> None:
    """A replica fetched events and died before acknowledging them. The server would hand
    those out again only after their ack wait, and newer events at once; the next replica must
    still apply them first."""
    applied: list[str] = []

    async def handler(uow: UnitOfWork, event: IncomingEvent) -> None:
        applied.append(event.event_id)

    await ensure_service_streams(bus.js, "order")
    for n in range(1, 4):
        await bus.js.publish(SUBJECT, b"", headers=_headers(f"evt_{n}", f"crash-{n}"))
    crashed = _ordered(bus, "test-ordered-crash", handler, ack_wait=3.0)
    sub = await crashed._subscribe()
    fetched = await sub.fetch(2, timeout=5.0)  # and then the process was killed
    assert [m.headers["Omnitill-Event-Id"] for m in fetched if m.headers] == ["evt_1", "evt_2"]
    await sub.unsubscribe()
    for n in range(4, 7):
        await bus.js.publish(SUBJECT, b"", headers=_headers(f"evt_{n}", f"crash-{n}"))

    after = _ordered(bus, "test-ordered-crash", handler, ack_wait=3.0)
    stop = asyncio.Event()
    task = asyncio.create_task(after.run(stop))
    await until(lambda: len(applied) >= 6)
    stop.set()
    await task
    assert applied == [f"evt_{n}" for n in range(1, 7)]
    assert after.rewinds == 1


async def test_an_ordered_consumer_reads_the_event_types_a_new_release_adds(bus: Bus) -> None:
    """A release that reads one more event type starts the same durable consumer with one
    more subject: its events (those published since the last one applied, and later ones)
    are handed out, in stream order, and nothing applied before comes again."""
    applied: list[str] = []
    added = "pos.order.v1.order_updated"

    async def handler(uow: UnitOfWork, event: IncomingEvent) -> None:
        applied.append(event.event_id)

    await ensure_service_streams(bus.js, "order")
    await bus.js.publish(SUBJECT, b"", headers=_headers("evt_1", "filter-1"))
    before = _ordered(bus, "test-ordered-filter", handler)
    stop = asyncio.Event()
    task = asyncio.create_task(before.run(stop))
    await until(lambda: applied == ["evt_1"])
    stop.set()
    await task
    await bus.js.publish(added, b"", headers=_headers("evt_new_1", "filter-2"))
    await bus.js.publish(SUBJECT, b"", headers=_headers("evt_2", "filter-3"))
    await bus.js.publish(added, b"", headers=_headers("evt_new_2", "filter-4"))

    after = Consumer(
        bus.js,
        lambda: UnitOfWork(bus.engine, kit),
        name="test-ordered-filter",
        source_service="order",
        subjects=[SUBJECT, added],
        handler=handler,
        ordered=True,
    )
    stop = asyncio.Event()
    task = asyncio.create_task(after.run(stop))
    await until(lambda: "evt_new_2" in applied)
    stop.set()
    await task
    assert applied == ["evt_1", "evt_new_1", "evt_2", "evt_new_2"]
    info = await bus.js.consumer_info("POS_ORDER", "test-ordered-filter")
    assert sorted(info.config.filter_subjects or []) == sorted([SUBJECT, added])


async def test_an_ordered_consumer_retries_a_failing_event_before_any_later_one(bus: Bus) -> None:
    applied: list[str] = []
    failures = {"evt_2": 2}

    async def handler(uow: UnitOfWork, event: IncomingEvent) -> None:
        if failures.get(event.event_id, 0) > 0:
            failures[event.event_id] -= 1
            raise RuntimeError("downstream hiccup")
        applied.append(event.event_id)

    await ensure_service_streams(bus.js, "order")
    for n in range(1, 7):
        await bus.js.publish(SUBJECT, b"", headers=_headers(f"evt_{n}", f"retry-{n}"))
    consumer = _ordered(bus, "test-ordered-retry", handler, batch_size=2, base_delay=0.05)
    stop = asyncio.Event()
    task = asyncio.create_task(consumer.run(stop))
    await until(lambda: len(applied) >= 6)
    stop.set()
    await task
    assert applied == [f"evt_{n}" for n in range(1, 7)]
    assert failures == {"evt_2": 0}
    assert consumer.dead_lettered == 0


async def test_an_ordered_batch_applies_each_new_event_once_in_one_transaction(bus: Bus) -> None:
    """The batch path (`batch_handler`): the batch's inbox rows go in one statement; an event
    already in the inbox, and one the batch holds twice, are applied once, in stream order."""
    subject = "pos.order.v1.batch_test"
    calls: list[list[str]] = []

    async def one(uow: UnitOfWork, event: IncomingEvent) -> None:
        calls.append([event.event_id])

    async def many(uow: UnitOfWork, events: list[IncomingEvent]) -> None:
        calls.append([e.event_id for e in events])

    await ensure_service_streams(bus.js, "order")
    async with bus.engine.begin() as conn:
        await conn.execute(kit.inbox.insert().values(consumer="test-batch", event_id="evt_b2"))
    for n, event in enumerate(["evt_b1", "evt_b2", "evt_b3", "evt_b3", "evt_b4"]):
        await bus.js.publish(subject, b"", headers=_headers(event, f"batch-{n}"))
    consumer = Consumer(
        bus.js,
        lambda: UnitOfWork(bus.engine, kit),
        name="test-batch",
        source_service="order",
        subjects=[subject],
        handler=one,
        ordered=True,
        batch_handler=many,
    )
    stop = asyncio.Event()
    task = asyncio.create_task(consumer.run(stop))
    await until(lambda: consumer.applied + consumer.duplicates == 5)
    stop.set()
    await task
    # One call, so one transaction: the batch path, not message by message.
    assert calls == [["evt_b1", "evt_b3", "evt_b4"]]
    assert consumer.duplicates == 2
    async with bus.engine.connect() as conn:
        mine = await conn.scalars(
            select(kit.inbox.c.event_id)
            .where(kit.inbox.c.consumer == "test-batch")
            .order_by(kit.inbox.c.event_id)
        )
        assert list(mine) == ["evt_b1", "evt_b2", "evt_b3", "evt_b4"]


OTHER_SUBJECT = "pos.inventory.v1.stock_changed"


async def _grouped(
    bus: Bus, prefix: str, fail: set[str]
) -> tuple[list[tuple[str, str, int]], asyncio.Event, list[asyncio.Task[None]]]:
    """Two consumers of two streams in one commit group; `fail`: events that fail once."""
    js, engine = bus.js, bus.engine
    applied: list[tuple[str, str, int]] = []  # (consumer, event, transaction id)

    def handler(name: str) -> Any:
        async def handle(uow: UnitOfWork, event: IncomingEvent) -> None:
            txid = (await uow.conn.execute(select(func.txid_current()))).scalar_one()
            applied.append((name, event.event_id, txid))
            if event.event_id in fail:
                fail.discard(event.event_id)
                raise RuntimeError("not yet")

        return handle

    group = CommitGroup(lambda: UnitOfWork(engine, kit), interval=0.5)
    consumers = [
        Consumer(
            js,
            lambda: UnitOfWork(engine, kit),
            name=f"{prefix}-{source}",
            source_service=source,
            subjects=[subject],
            handler=handler(source),
            base_delay=0.05,
            group=group,
        )
        for source, subject in (("order", SUBJECT), ("inventory", OTHER_SUBJECT))
    ]
    await ensure_service_streams(js, "order")
    await ensure_service_streams(js, "inventory")
    stop = asyncio.Event()
    tasks = [asyncio.create_task(c.run(stop)) for c in consumers]
    # A first event, committed at once (the group was idle): the next commit is due in 0.5 s,
    # and whatever both streams bring until then goes into it.
    await js.publish(SUBJECT, b"", headers=_headers(f"{prefix}_first", f"{prefix}-first"))
    await until(lambda: consumers[0].applied == 1)
    for n in range(3):
        await js.publish(SUBJECT, b"", headers=_headers(f"{prefix}_o{n}", f"{prefix}-o{n}"))
        await js.publish(OTHER_SUBJECT, b"", headers=_headers(f"{prefix}_i{n}", f"{prefix}-i{n}"))
    await until(lambda: sum(c.applied for c in consumers) == 7)
    assert not fail
    return applied, stop, tasks


async def _status(bus: Bus, txids: set[int]) -> dict[int, str]:
    async with bus.engine.connect() as conn:
        return {t: (await conn.execute(select(func.txid_status(t)))).scalar_one() for t in txids}


async def test_a_commit_group_applies_several_streams_in_one_transaction(bus: Bus) -> None:
    applied, stop, tasks = await _grouped(bus, "grp", fail=set())
    stop.set()
    await asyncio.gather(*tasks)
    assert sorted(e for _, e, _ in applied) == sorted(
        ["grp_first"] + [f"grp_{k}{n}" for k in "oi" for n in range(3)]
    )
    # The streams' events after the first went into transactions together (each consumer's
    # next fetch waited for the group's commit: two or three transactions, not six).
    later = {t for _, e, t in applied if e != "grp_first"}
    assert len(later) < 6
    assert any({c for c, _, t in applied if t == txid} == {"order", "inventory"} for txid in later)
    assert set((await _status(bus, later)).values()) == {"committed"}


async def test_a_failure_in_a_commit_group_rolls_back_every_batch_then_each_goes_alone(
    bus: Bus,
) -> None:
    """One stream's failing event fails the group's transaction for both streams; each
    consumer then applies its batch message by message, every event once."""
    applied, stop, tasks = await _grouped(bus, "grf", fail={"grf_i1"})
    stop.set()
    await asyncio.gather(*tasks)
    status = await _status(bus, {t for _, _, t in applied})
    kept = [(c, e) for c, e, t in applied if status[t] == "committed"]
    assert sorted(e for _, e in kept) == sorted(
        ["grf_first"] + [f"grf_{k}{n}" for k in "oi" for n in range(3)]
    )
    # Whatever the failed transaction had applied before the failure was rolled back with it.
    assert "aborted" in status.values()
    assert all(len({e for _, e, t in applied if t == txid}) == len(
        [e for _, e, t in applied if t == txid]) for txid in status)  # fmt: skip
