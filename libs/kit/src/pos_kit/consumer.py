"""Durable JetStream consumers with an inbox: each event's effect is applied exactly once.

The event id goes into the `inbox` table in the same transaction as the handler's effect; a
redelivered event finds its id there and is only acknowledged. A handler that fails is nak'ed
with a growing delay; after `max_deliver` attempts, or at once when the payload cannot be
decoded, the message is copied to the dead-letter stream and acknowledged.

An `ordered` consumer never applies a message before an earlier one: it stops at a failure and
starts again from its first unacknowledged message (`_rewind_if_needed`).

A typed consumer (`handlers_by_type`) is what services write: the kit decodes the payload into
the protobuf type its subject carries (a payload that does not decode is poison), binds the unit
of work to the event's merchant, and calls `handler(uow, message)`.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, replace
from typing import Any

from google.protobuf.message import DecodeError, Message
from nats.aio.msg import Msg
from nats.errors import TimeoutError as NatsTimeout
from nats.js import JetStreamContext
from nats.js.api import AckPolicy, ConsumerConfig, DeliverPolicy
from nats.js.errors import NotFoundError
from opentelemetry import trace
from opentelemetry.propagate import extract
from sqlalchemy import ARRAY, Table, Text, bindparam, func, select
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.sql.expression import ClauseElement

from pos_kit.dead_letters import CONSUMER, DELIVERIES, ERROR, ORIGINAL_SUBJECT, REDRIVE_FOR
from pos_kit.events import EVENT_ID_HEADER, EVENT_TYPE_HEADER, MERCHANT_HEADER, subject_for
from pos_kit.streams import DLQ_PREFIX, ensure_stream, stream_config, stream_name
from pos_kit.uow import UnitOfWork, compiled_sql

log = logging.getLogger(__name__)
MAX_RETRY_DELAY = 60.0
tracer = trace.get_tracer("pos_kit.consumer")


class PoisonMessage(Exception):
    """The message can never be processed (undecodable, missing headers): dead-letter it now."""


class _Rewind(Exception):
    """Ordered consumer: a message failed; after `delay`, start again from the first message
    not yet acknowledged."""

    def __init__(self, delay: float) -> None:
        super().__init__(f"rewind in {delay:.1f}s")
        self.delay = delay


@dataclass(frozen=True, slots=True)
class IncomingEvent:
    event_id: str
    subject: str
    event_type: str
    merchant_id: str
    data: bytes
    delivery: int
    # The decoded payload, for a consumer that declared its message types.
    message: Any = None


Handler = Callable[[UnitOfWork, IncomingEvent], Awaitable[None]]
# Applies several events of one merchant, in order, in the caller's transaction.
BatchHandler = Callable[[UnitOfWork, list[IncomingEvent]], Awaitable[None]]
TypedHandler = Callable[[Any, Any], Awaitable[None]]
# Whether an event needs this consumer at all; one that does not is acknowledged with no
# transaction (no inbox row, no commit): most events of a busy subject may need nothing (a
# sale with no customer earns no points), and each would otherwise cost a commit.
Relevance = Callable[[IncomingEvent], bool]


class Consumer:
    def __init__(
        self,
        js: JetStreamContext,
        uow_factory: Callable[[], UnitOfWork],
        *,
        name: str,
        source_service: str,
        subjects: list[str],
        handler: Handler,
        max_deliver: int = 5,
        batch_size: int = 64,
        base_delay: float = 0.5,
        ack_wait: float = 30.0,
        relevant: Relevance | None = None,
        message_types: Mapping[str, type[Message]] | None = None,
        ordered: bool = False,
        batch_handler: BatchHandler | None = None,
        group: CommitGroup | None = None,
    ) -> None:
        self._js = js
        # Ordered: never apply a message before one that came earlier (see `_run_batch`).
        self.ordered = ordered
        # A fetched batch applied in one transaction per merchant when it can be
        # (`_apply_together`), message by message when it cannot. Ordered: only with a batch
        # handler. Unordered: always, the handler called for each event in turn: one commit,
        # one inbox statement and one outbox write for the batch instead of one each. Batches
        # are what had piled up when the fetch came (it waits for no more), so they grow with
        # the load and cost no latency.
        self._batch_handler = batch_handler if ordered else (batch_handler or self._each_in_turn)
        self._types = message_types or {}
        self._uow_factory = uow_factory
        self.name = name
        self._source = source_service
        self._subjects = subjects
        self._handler = handler
        self.max_deliver = max_deliver
        self._batch = batch_size
        self._base_delay = base_delay
        self._ack_wait = ack_wait
        self._relevant = relevant
        # Batches of several consumers of one service committed together (`CommitGroup`).
        self._group = group
        self.applied = 0
        self.duplicates = 0
        self.dead_lettered = 0
        self.skipped = 0
        self.rewinds = 0
        # Ordered only: failed attempts per stream sequence. A rewind makes a new server-side
        # consumer, whose delivery count starts again at 1, so the count is kept here.
        self._attempts: dict[int, int] = {}
        # Ordered only: the consumer sequence the next message must carry. The server numbers
        # every delivery of a consumer 1, 2, 3 …; a gap means a delivery was lost in flight.
        self._next_delivery: int | None = None

    def _config(self, start_after: int | None = None) -> ConsumerConfig:
        return ConsumerConfig(
            durable_name=self.name,
            ack_policy=AckPolicy.EXPLICIT,
            deliver_policy=(
                DeliverPolicy.ALL if start_after is None else DeliverPolicy.BY_START_SEQUENCE
            ),
            opt_start_seq=None if start_after is None else start_after + 1,
            ack_wait=self._ack_wait,
            # We dead-letter ourselves after max_deliver; the server must not drop first.
            max_deliver=-1,
            filter_subjects=self._subjects,
            max_ack_pending=self._batch if self.ordered else None,
        )

    async def _subscribe(self) -> JetStreamContext.PullSubscription:
        await ensure_stream(self._js, stream_config(self._source))
        stream = stream_name(self._source)
        if self.ordered:
            await self._rewind_if_needed(stream)
        else:
            await self._js.add_consumer(stream, self._config())
        return await self._js.pull_subscribe_bind(durable=self.name, stream=stream)

    async def _rewind_if_needed(self, stream: str) -> None:
        """An ordered consumer starts from its first unacknowledged message.

        The server redelivers an unacknowledged message only when its ack wait runs out (or
        its nak delay), and meanwhile hands out newer ones: after a crash, a lost connection or
        a failed message, a later event would be applied before an earlier one. So whenever
        anything is left unacknowledged, the consumer is made again from just after its ack
        floor (messages are acknowledged in stream order, so everything up to the floor is
        applied): the first message handed out is the oldest unapplied one. A message applied
        but whose ack was lost comes again and the inbox skips it."""
        try:
            info = await self._js.consumer_info(stream, self.name)
        except NotFoundError:
            await self._js.add_consumer(stream, self._config())
            self._next_delivery = 1
            return
        # A new release may read more event types than the consumer was made for: kept as it
        # was, it would never hand out the new ones. Made again from the same point instead.
        was = info.config.filter_subjects or (
            [info.config.filter_subject] if info.config.filter_subject else []
        )
        same_filter = sorted(was) == sorted(self._subjects)
        if not info.num_ack_pending and same_filter:
            self._next_delivery = (info.delivered.consumer_seq if info.delivered else 0) + 1
            return
        self._next_delivery = 1
        floor = info.ack_floor.stream_seq if info.ack_floor else 0
        await self._js.delete_consumer(stream, self.name)
        await self._js.add_consumer(stream, self._config(start_after=floor))
        if same_filter:
            self.rewinds += 1
        log.info("consumer %s: starting again after stream sequence %d", self.name, floor)

    async def run(self, stop: asyncio.Event) -> None:
        sub: JetStreamContext.PullSubscription | None = None
        backoff = 0.2
        while not stop.is_set():
            try:
                if sub is None:
                    sub = await self._subscribe()
                try:
                    msgs = await sub.fetch(self._batch, timeout=1.0)
                except (NatsTimeout, TimeoutError):
                    continue
                if self.ordered:
                    await self._run_batch(msgs)
                elif not (self._together(msgs) and await self._apply_together(msgs)):
                    for msg in msgs:
                        await self.handle(msg)
                backoff = 0.2
            except asyncio.CancelledError:
                raise
            except _Rewind as rewind:
                await self._drop(sub)
                sub = None
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(stop.wait(), rewind.delay)
            except Exception as exc:
                log.warning("consumer %s: %s; retrying", self.name, exc.__class__.__name__)
                if self.ordered:
                    # Whatever this subscription had fetched may be lost in flight.
                    await self._drop(sub)
                    sub = None
                await asyncio.sleep(backoff)
                backoff = min(backoff * 2, 5.0)

    @staticmethod
    async def _drop(sub: JetStreamContext.PullSubscription | None) -> None:
        if sub is not None:
            with contextlib.suppress(Exception):
                await sub.unsubscribe()
        return None

    async def _run_batch(self, msgs: list[Msg]) -> None:
        """In order, stopping at the first failure: the consumer then starts again from that
        message after a delay (`_Rewind`, `_rewind_if_needed`), so no message is applied
        before an earlier one."""
        for i, msg in enumerate(msgs):
            delivered = msg.metadata.sequence.consumer if msg.metadata else None
            if self._next_delivery is not None and delivered != self._next_delivery + i:
                log.info("consumer %s: a delivery was lost in flight", self.name)
                raise _Rewind(0.0)
        self._next_delivery = (
            None if self._next_delivery is None else self._next_delivery + len(msgs)
        )
        if self._together(msgs) and await self._apply_together(msgs):
            self._attempts.clear()
            return
        for msg in msgs:
            seq = _stream_seq(msg)
            if not await self.handle(msg):
                failed = self._delivery(msg)
                self._attempts[seq] = failed
                raise _Rewind(self._retry_delay(failed))
            self._attempts.pop(seq, None)

    def _together(self, msgs: list[Msg]) -> bool:
        """Whether the fast path is worth it: several messages, or one that may share its
        group's transaction; and a batch handler to apply them (an ordered consumer may have
        none)."""
        return self._batch_handler is not None and (len(msgs) > 1 or self._group is not None)

    async def _apply_together(self, msgs: list[Msg]) -> bool:
        """The fast path of a batch: each merchant's events in one transaction (one
        commit for many events; merchants are independent, so grouping them keeps every
        merchant's order). Anything unusual (a redrive, a message that does not decode, a
        failing handler) rolls back and returns False: the batch then goes message by
        message, which knows how to skip, dead-letter and retry each one."""
        assert self._batch_handler is not None
        by_merchant: dict[str, list[IncomingEvent]] = {}
        try:
            for msg in msgs:
                headers = msg.headers or {}
                if headers.get(REDRIVE_FOR) is not None:
                    return False
                event = IncomingEvent(
                    event_id=_header(headers, EVENT_ID_HEADER),
                    subject=msg.subject,
                    event_type=_header(headers, EVENT_TYPE_HEADER),
                    merchant_id=_header(headers, MERCHANT_HEADER),
                    data=msg.data,
                    delivery=self._delivery(msg),
                )
                if self._types:
                    event = replace(event, message=self._decode(event))
                if self._relevant is None or self._relevant(event):
                    by_merchant.setdefault(event.merchant_id, []).append(event)
            if not by_merchant:
                pass  # nothing here needs this consumer: acknowledged with no transaction
            elif self._group is not None:
                await self._group.commit(self, by_merchant)
            else:
                await commit_batches(self._uow_factory, [(self, by_merchant)])
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            # Merchants committed before the failure are in the inbox: the slow path finds
            # them there and only acknowledges them.
            log.info("consumer %s: batch fell back (%s)", self.name, exc.__class__.__name__)
            return False
        self.skipped += len(msgs) - sum(len(v) for v in by_merchant.values())
        for msg in msgs:
            await msg.ack()
        return True

    async def _each_in_turn(self, uow: UnitOfWork, events: list[IncomingEvent]) -> None:
        for event in events:
            await self._handler(uow, event)

    def _retry_delay(self, delivery: int) -> float:
        # Capped: a consumer allowed many deliveries (to outlast an outage) still retries
        # every minute, not once a day.
        return float(min(self._base_delay * 2 ** (delivery - 1), MAX_RETRY_DELAY))

    def _delivery(self, msg: Msg) -> int:
        if self.ordered:
            return self._attempts.get(_stream_seq(msg), 0) + 1
        return msg.metadata.num_delivered if msg.metadata else 1

    async def handle(self, msg: Msg) -> bool:
        """Apply, skip or dead-letter the message; False when it was nak'ed for a retry."""
        headers = msg.headers or {}
        target = headers.get(REDRIVE_FOR)
        if target is not None and target != self.name:
            # Sent again for another consumer that had dead-lettered it (dead_letters.py).
            self.skipped += 1
            await msg.ack()
            return True
        delivery = self._delivery(msg)
        ctx = extract(headers)
        with tracer.start_as_current_span(
            f"consume {msg.subject}", context=ctx, kind=trace.SpanKind.CONSUMER
        ) as span:
            try:
                event = IncomingEvent(
                    event_id=_header(headers, EVENT_ID_HEADER),
                    subject=msg.subject,
                    event_type=_header(headers, EVENT_TYPE_HEADER),
                    merchant_id=_header(headers, MERCHANT_HEADER),
                    data=msg.data,
                    delivery=delivery,
                )
                span.set_attribute("messaging.message.id", event.event_id)
                if self._types:
                    event = replace(event, message=self._decode(event))
                if self._relevant is not None and not self._relevant(event):
                    self.skipped += 1
                    await msg.ack()
                    return True
                applied = await self._apply(event)
            except PoisonMessage as exc:
                await self._dead_letter(msg, delivery, f"poison: {exc}")
                return True
            except Exception as exc:
                if delivery >= self.max_deliver:
                    await self._dead_letter(msg, delivery, exc.__class__.__name__)
                    return True
                else:
                    log.warning(
                        "consumer %s: delivery %d failed (%s); will retry",
                        self.name,
                        delivery,
                        exc.__class__.__name__,
                    )
                    if not self.ordered:  # an ordered consumer rewinds instead
                        await msg.nak(delay=self._retry_delay(delivery))
                return False
        if applied:
            self.applied += 1
        else:
            self.duplicates += 1
        await msg.ack()
        return True

    def _decode(self, event: IncomingEvent) -> Message:
        kind = self._types.get(event.subject)
        if kind is None:
            raise PoisonMessage(f"{event.subject} is not a subject this consumer reads")
        try:
            return kind.FromString(event.data)
        except DecodeError as exc:
            raise PoisonMessage(f"not a {kind.DESCRIPTOR.name} payload") from exc

    async def _apply(self, event: IncomingEvent) -> bool:
        async with self._uow_factory().bind(event.merchant_id) as uow:
            # With the transaction's BEGIN, in one round trip.
            first = await uow.first_row(
                compiled_sql(uow.tables.inbox, "inbox", _inbox_entry),
                {"consumer": self.name, "event_id": event.event_id},
            )
            if first is None:
                return False  # already applied: a redelivery
            await self._handler(uow, event)
            await uow.commit()
            return True

    async def _dead_letter(self, msg: Msg, delivery: int, reason: str) -> None:
        headers = dict(msg.headers or {})
        original_id = headers.get(EVENT_ID_HEADER, f"seq-{msg.metadata.sequence.stream}")
        headers.pop(REDRIVE_FOR, None)
        # Deduplicated per dead-lettering: a letter redriven and failed again is a new letter.
        attempt = msg.metadata.sequence.stream if msg.metadata else 0
        headers.update(
            {
                "Nats-Msg-Id": f"{self.name}:{original_id}:{attempt}",
                ORIGINAL_SUBJECT: msg.subject,
                CONSUMER: self.name,
                DELIVERIES: str(delivery),
                ERROR: reason[:200],
            }
        )
        await self._js.publish(f"{DLQ_PREFIX}.{self.name}", msg.data, headers=headers)
        self.dead_lettered += 1
        log.error("consumer %s: dead-lettered %s (%s)", self.name, original_id, reason)
        await msg.ack()


Part = tuple[Consumer, dict[str, list[IncomingEvent]]]


async def commit_batches(uow_factory: Callable[[], UnitOfWork], parts: list[Part]) -> None:
    """Fetched batches of one or more consumers: per merchant, one transaction holding every
    consumer's events (each consumer's in its own order), counted in each consumer once
    committed. A failure raises after the merchants already committed (their events are in
    the inbox, so the callers' slow paths only acknowledge them)."""
    merchants = list(dict.fromkeys(m for _, by_merchant in parts for m in by_merchant))
    for merchant in merchants:
        async with uow_factory().bind(merchant) as uow:
            present = [(c, bm[merchant]) for c, bm in parts if merchant in bm]
            # One statement for every consumer's events, compiled once for any batch size,
            # sent with the BEGIN.
            rows = await uow.all_rows(
                compiled_sql(uow.tables.inbox, "inbox_batch", _inbox_entries),
                {
                    "consumers": [c.name for c, events in present for _ in events],
                    "event_ids": [e.event_id for _, events in present for e in events],
                },
            )
            new = {(row[0], row[1]) for row in rows}
            # Consumers sharing a batch handler are handed their events in one call.
            calls: dict[BatchHandler, list[IncomingEvent]] = {}
            counts = []
            for consumer, events in present:
                fresh = []
                for e in events:  # once each, even if a batch holds the same event twice
                    if (consumer.name, e.event_id) in new:
                        new.discard((consumer.name, e.event_id))
                        fresh.append(e)
                counts.append((consumer, len(fresh), len(events) - len(fresh)))
                if fresh:
                    assert consumer._batch_handler is not None
                    calls.setdefault(consumer._batch_handler, []).extend(fresh)
            for handler, fresh in calls.items():
                await handler(uow, fresh)
            await uow.commit()
        for consumer, applied, duplicates in counts:
            consumer.applied += applied
            consumer.duplicates += duplicates


class CommitGroup:
    """Consumers of one service whose fetched batches are committed together (group commit):
    at most one transaction every `interval` seconds, holding every batch that waits for it.
    Idle, an event is committed as soon as it comes; under load, each consumer's next batch
    holds what arrived while it waited, and a service reading several streams (the dispatcher
    reads five) pays one commit for what would have been one per stream and per event. A
    failure fails every batch of that transaction; each consumer then goes its own slow way,
    message by message."""

    def __init__(self, uow_factory: Callable[[], UnitOfWork], interval: float = 0.0) -> None:
        self._uow_factory = uow_factory
        self._interval = interval
        self._waiting: list[tuple[Part, asyncio.Future[None]]] = []
        self._lock = asyncio.Lock()
        self._last = 0.0
        self.commits = 0

    async def commit(self, consumer: Consumer, by_merchant: dict[str, list[IncomingEvent]]) -> None:
        done: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._waiting.append(((consumer, by_merchant), done))
        async with self._lock:
            if not done.done():
                loop = asyncio.get_running_loop()
                wait = self._last + self._interval - loop.time()
                if wait > 0:
                    await asyncio.sleep(wait)  # the others' batches join this one meanwhile
                taken, self._waiting = self._waiting, []
                self._last = loop.time()
                try:
                    await commit_batches(self._uow_factory, [p for p, _ in taken])
                    self.commits += 1
                    for _, fut in taken:
                        fut.set_result(None)
                except BaseException as exc:
                    # Every batch of the transaction fails with it, even if this task was
                    # cancelled: the others must not wait for an answer that never comes.
                    for _, fut in taken:
                        if not fut.done():
                            fut.set_exception(
                                exc if isinstance(exc, Exception) else RuntimeError("stopped")
                            )
                    if not isinstance(exc, Exception):
                        raise
        done.result()


def _inbox_entry(inbox: Table) -> ClauseElement:
    """The event's row in the inbox; no row back if it was there already (a redelivery)."""
    return (
        pg_insert(inbox)
        .values(consumer=bindparam("consumer"), event_id=bindparam("event_id"))
        .on_conflict_do_nothing()
        .returning(inbox.c.event_id)
    )


def _inbox_entries(inbox: Table) -> ClauseElement:
    """A batch's rows in the inbox, from arrays of consumer names and event ids (pairwise);
    back come the pairs that were not there already (a pair twice comes back once)."""
    consumers = func.unnest(bindparam("consumers", type_=ARRAY(Text)))
    ids = func.unnest(bindparam("event_ids", type_=ARRAY(Text)))
    return (
        pg_insert(inbox)
        .from_select(["consumer", "event_id"], select(consumers, ids))
        .on_conflict_do_nothing()
        .returning(inbox.c.consumer, inbox.c.event_id)
    )


def _stream_seq(msg: Msg) -> int:
    return msg.metadata.sequence.stream if msg.metadata else 0


def _header(headers: dict[str, str], name: str) -> str:
    value = headers.get(name)
    if not value:
        raise PoisonMessage(f"missing header {name}")
    return value


def handlers_by_type(
    handlers: Mapping[type[Message], TypedHandler],
) -> tuple[list[str], dict[str, type[Message]], Handler]:
    """Subjects, their message types, and one handler that dispatches on the decoded type."""
    by_type = dict(handlers)
    subjects = {subject_for(kind()): kind for kind in by_type}

    async def dispatch(uow: UnitOfWork, event: IncomingEvent) -> None:
        await by_type[type(event.message)](uow, event.message)

    return list(subjects), subjects, dispatch
