"""Erasure reaches the NATS stream: the customer_created, customer_updated and customer_merged
messages that hold an erased customer's profile are deleted from POS_CUSTOMER by sequence (one
a durable consumer has not read yet is first sent again with the erased snapshot, so no reader
misses the event), and so are their copies a consumer dead-lettered (POS_DLQ, kept 30 days;
`pos_kit.dead_letters`).
The order events of the customer's orders lose the fields the contract marks personal
(`pos_kit.personal`: the notes, the metadata, each fulfilment's `ship_to` and `destination`,
as the order service erases them from the orders), in POS_ORDER as in
their dead letters: a dead letter is replaced by a redacted copy, so that it can still be sent
again to the consumer that failed (the order's lines, money and ids are no personal data, and that
consumer still needs them); an event in POS_ORDER is deleted, and first sent again redacted
(under its event id) when a durable reader has not read it yet.

Why deletes by sequence rather than per-customer subjects and a purge by subject: every
consumer of this stream (the order service's, the dispatcher's) filters on the event's subject
as it is today, and a durable consumer's filters are fixed when it is made; new subjects would
need every consumer remade. A scan of the stream finds the messages instead. It is rare (one
pass per batch of erasures) and bounded by the stream's retention.

Durable: an erasure is recorded (table `erasures`) in the transaction that erases the customer;
a background task (every replica may run it; a message deleted twice is deleted once) scans
the stream for each recorded erasure not yet purged, deletes what it finds, then stamps the
erasure `stream_purged_at`. NATS down: it tries again next round. A message published after the
scan cannot hold the customer's personal data: in its own transaction the erasure deleted the
published outbox rows holding their profile and rewrote the unpublished ones with the erased
snapshot (`repository.purge_copies`), waiting for the relay's lock on a row being published;
such a rewritten message is left in the stream (its readers still need it).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable
from typing import Any

from google.protobuf.message import DecodeError, Message
from nats.aio.msg import Msg
from nats.js import JetStreamContext
from nats.js.api import AckPolicy, ConsumerConfig, DeliverPolicy
from nats.js.errors import NotFoundError
from sqlalchemy import func, select, update

from pos.customer.v1 import events_pb2 as customer_events
from pos.order.v1 import events_pb2 as order_events
from pos_customer.adapters import events
from pos_customer.adapters.repository import CustomerUow
from pos_customer.adapters.tables import erasures
from pos_customer.domain.model import ERASED
from pos_kit import personal
from pos_kit.dead_letters import ORIGINAL_SUBJECT
from pos_kit.events import MERCHANT_HEADER, subject_for
from pos_kit.grpc_server import BackgroundTask
from pos_kit.runtime import ServiceRuntime
from pos_kit.streams import DLQ_PREFIX, DLQ_STREAM, stream_name

log = logging.getLogger(__name__)

STREAM = stream_name("customer")
ORDER_STREAM = stream_name("order")
BATCH = 100
# The messages that carry a profile, and where in each its customer's id is.
PROFILES: dict[str, tuple[type[Message], str]] = {
    "pos.customer.v1.customer_created": (customer_events.CustomerCreated, "customer"),
    "pos.customer.v1.customer_updated": (customer_events.CustomerUpdated, "customer"),
    "pos.customer.v1.customer_merged": (customer_events.CustomerMerged, "winner"),
}
# The order events that carry the order (`order`, with the customer's id), by subject.
ORDERS: dict[str, type[Message]] = {
    subject_for(kind()): kind
    for kind in (
        order_events.OrderCreated,
        order_events.OrderConfirmed,
        order_events.OrderUpdated,
        order_events.OrderCancelled,
        order_events.OrderCompleted,
        order_events.OrderFulfillmentUpdated,
        order_events.OrderReturned,
    )
}


def stream_erasure(runtime: ServiceRuntime[CustomerUow], interval_seconds: float) -> BackgroundTask:
    """A task for ServiceRuntime.background: waits for the runtime's NATS, then sweeps."""

    async def run(stop: asyncio.Event) -> None:
        waiting = asyncio.ensure_future(runtime.ready.wait())
        stopping = asyncio.ensure_future(stop.wait())
        await asyncio.wait({waiting, stopping}, return_when="FIRST_COMPLETED")
        waiting.cancel()
        stopping.cancel()
        while not stop.is_set():
            try:
                if runtime.js is not None:
                    await purge_erased(runtime.uow, runtime.js)
            except Exception as exc:  # NATS or the database away: next round
                log.warning("stream erasure sweep failed: %s", exc.__class__.__name__)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), interval_seconds)

    return run


async def purge_erased(uow: Callable[[], CustomerUow], js: JetStreamContext) -> int:
    """Delete the stream's profile messages of every erasure not purged yet; the count."""
    async with uow().reading() as reader:
        rows = (
            await reader.conn.execute(
                select(erasures.c.merchant_id, erasures.c.customer_id)
                .where(erasures.c.stream_purged_at.is_(None))
                .order_by(erasures.c.erased_at)
                .limit(BATCH)
            )
        ).all()
    if not rows:
        return 0
    wanted = {(r.merchant_id, r.customer_id) for r in rows}
    profiles = await _matching(
        js, STREAM, "pos.customer.v1.>", lambda m: _names(m, m.subject, wanted)
    )
    # A message a consumer has not read yet (past its ack floor) is sent again with the erased
    # snapshot before it goes: that reader still gets the customer's creation or merge, later
    # than it was first sent; one that read it already has its event id and skips the copy.
    floors = await _ack_floors(js, STREAM)
    found = []
    for msg in profiles:
        sequence = msg.metadata.sequence.stream
        if any(sequence > floor and _covers(f, msg.subject) for f, floor in floors):
            headers = dict(msg.headers or {})
            headers["Nats-Msg-Id"] = f"{headers.get('Nats-Msg-Id', sequence)}:erased"
            kind, field = PROFILES[msg.subject]
            snapshot = getattr(kind.FromString(msg.data), field)
            copy = events.erased_in_event(kind.DESCRIPTOR.full_name, msg.data, snapshot.id)
            await js.publish(msg.subject, copy, headers=headers)
        found.append((STREAM, sequence))
    # A dead letter is a copy of the message under the consumer's subject; the original
    # subject rides in a header. A profile's goes; an order event's is replaced by a copy
    # without the personal data, published before the original is deleted (a pass that dies
    # in between leaves the original, found again next round; the copy is deduplicated).
    dead = await _matching(
        js,
        DLQ_STREAM,
        f"{DLQ_PREFIX}.>",
        lambda m: _names(m, _dead_subject(m), wanted) or _redacted_order(m, wanted) is not None,
    )
    for msg in dead:
        sequence = msg.metadata.sequence.stream
        redacted = _redacted_order(msg, wanted)
        if redacted is not None:
            headers = dict(msg.headers or {})
            headers["Nats-Msg-Id"] = f"{headers.get('Nats-Msg-Id', sequence)}:erased"
            await js.publish(msg.subject, redacted, headers=headers)
        found.append((DLQ_STREAM, sequence))
    # The order stream's own events of their orders go the same way as the dead letters: a
    # reader behind gets the redacted copy (under the event's id), and the original goes.
    orders = await _order_events(js, wanted)
    order_floors = await _ack_floors(js, ORDER_STREAM) if orders else []
    for msg in orders:
        sequence = msg.metadata.sequence.stream
        if any(sequence > floor and _covers(f, msg.subject) for f, floor in order_floors):
            redacted = _redacted_order(msg, wanted, msg.subject)
            assert redacted is not None
            headers = dict(msg.headers or {})
            headers["Nats-Msg-Id"] = f"{headers.get('Nats-Msg-Id', sequence)}:erased"
            await js.publish(msg.subject, redacted, headers=headers)
        found.append((ORDER_STREAM, sequence))
    deleted = 0
    for stream, seq in found:
        with contextlib.suppress(Exception):  # already gone (another replica, or aged out)
            if await js.delete_msg(stream, seq):
                deleted += 1
    async with uow() as writer:
        for merchant_id, customer_id in wanted:
            await writer.conn.execute(
                update(erasures)
                .where(erasures.c.merchant_id == merchant_id, erasures.c.customer_id == customer_id)
                .values(stream_purged_at=func.now())
            )
        await writer.commit()
    if deleted:
        log.info("deleted %d stream messages of %d erased customers", deleted, len(wanted))
    return deleted


async def _order_events(js: JetStreamContext, wanted: set[tuple[str, str]]) -> list[Msg]:
    """The events in POS_ORDER holding personal data of the customers' orders; none while the
    order service has not made its stream yet (nothing of theirs can be in it)."""
    try:
        await js.stream_info(ORDER_STREAM)
    except NotFoundError:
        return []
    return await _matching(
        js,
        ORDER_STREAM,
        "pos.order.v1.>",
        lambda m: _redacted_order(m, wanted, m.subject) is not None,
    )


async def _ack_floors(js: JetStreamContext, stream: str) -> list[tuple[str, int]]:
    """Each durable consumer's filters, with the last stream sequence it has read (acked)
    every message up to; a passing scan's ephemeral consumers are not readers."""
    consumers: list[Any] = []
    while True:  # the server lists 256 a page
        page = await js.consumers_info(stream, offset=len(consumers) or None)
        consumers += page
        if len(page) < 256:
            break
    floors = []
    for info in consumers:
        config = info.config
        if not config.durable_name:
            continue
        filters = config.filter_subjects or [config.filter_subject or ">"]
        floor = info.ack_floor.stream_seq if info.ack_floor is not None else 0
        floors += [(f, floor or 0) for f in filters]
    return floors


def _covers(pattern: str, subject: str) -> bool:
    """A NATS subject filter (`*` one token, `>` the rest) matches the subject."""
    wanted, parts = pattern.split("."), subject.split(".")
    for i, part in enumerate(wanted):
        if part == ">":
            return len(parts) > i
        if i >= len(parts) or part not in ("*", parts[i]):
            return False
    return len(wanted) == len(parts)


def _dead_subject(msg: Msg) -> str:
    return (msg.headers or {}).get(ORIGINAL_SUBJECT, "")


async def _matching(
    js: JetStreamContext, stream: str, subjects: str, wanted: Callable[[Msg], bool]
) -> list[Msg]:
    """The messages in `stream` (on `subjects`) that `wanted` picks, read once to the end."""
    config = ConsumerConfig(
        deliver_policy=DeliverPolicy.ALL,
        ack_policy=AckPolicy.NONE,
        inactive_threshold=30.0,  # the server drops it if this pass dies half-way
        max_ack_pending=-1,
    )
    sub = await js.pull_subscribe(subjects, stream=stream, config=config)
    found: list[Msg] = []
    try:
        while True:
            try:
                batch = await sub.fetch(256, timeout=1.0)
            except TimeoutError:  # nats' own, or asyncio's when the deadline ran out first
                break
            found += [msg for msg in batch if wanted(msg)]
            if batch and batch[-1].metadata.num_pending == 0:
                break
    finally:
        with contextlib.suppress(Exception):
            info = await sub.consumer_info()
            await js.delete_consumer(stream, info.name)
        with contextlib.suppress(Exception):
            await sub.unsubscribe()
    return found


def _names(msg: Msg, subject: str, wanted: set[tuple[str, str]]) -> bool:
    """A profile message of one of the (merchant, customer) pairs."""
    kind = PROFILES.get(subject)
    if kind is None:
        return False
    message_type, field = kind
    try:
        message: Any = message_type.FromString(msg.data)
    except DecodeError:
        return False
    merchant = (msg.headers or {}).get(MERCHANT_HEADER) or message.meta.merchant_id
    snapshot = getattr(message, field)
    # A snapshot already erased holds no personal data: the event an erasure rewrote in the
    # outbox (sent after it), which its readers still need.
    return (merchant, snapshot.id) in wanted and snapshot.status != ERASED


def _redacted_order(
    msg: Msg, wanted: set[tuple[str, str]], subject: str | None = None
) -> bytes | None:
    """An order event (a dead letter of one, by default: its original `subject` from its
    header) of one of the customers, without its fields the contract marks personal
    (`pos_kit.personal`); None if it is none of theirs or holds none of them."""
    message_type = ORDERS.get(_dead_subject(msg) if subject is None else subject)
    if message_type is None:
        return None
    message: Any = message_type()
    try:
        message.ParseFromString(msg.data)
    except DecodeError:
        return None
    order = message.order
    merchant = (msg.headers or {}).get(MERCHANT_HEADER) or message.meta.merchant_id
    if (merchant, order.customer_id) not in wanted:
        return None
    if not personal.blank(message):
        return None
    return bytes(message.SerializeToString())
