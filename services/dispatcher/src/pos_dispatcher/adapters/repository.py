"""The dispatcher's unit of work and its repositories, each bound to the unit's merchant."""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import ARRAY, Row, Text, cast, delete, func, insert, or_, select, update
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.ext.asyncio import AsyncConnection

from pos_dispatcher.adapters import statements
from pos_dispatcher.adapters.network import NetworkRules
from pos_dispatcher.adapters.secrets import SecretBox
from pos_dispatcher.adapters.snapshots import ORDER_EVENT_OBJECT, ORDER_EVENT_PARTS, PublicEvent
from pos_dispatcher.adapters.tables import (
    attempts,
    deliveries,
    events,
    merchant_sequences,
    subscriptions,
)
from pos_dispatcher.domain.model import Status, Subscription, matches
from pos_kit import personal
from pos_kit.changes import list_page
from pos_kit.ids import new_id
from pos_kit.paging import PageRequest
from pos_kit.uow import UnitOfWork


@dataclass(frozen=True, slots=True)
class StoredEvent:
    id: str
    type: str
    sequence: int
    merchant_id: str
    occurred_at: datetime
    data: dict[str, Any]

    def body(self) -> str:
        """The webhook body: the public event, exactly as the feed answers it."""
        return self.body_with(compact_json(self.data))

    def body_with(self, data_json: str) -> str:
        """The body around `data` already serialized (`compact_json(self.data)`): the append
        serializes each snapshot once, for the feed's row and every delivery's body alike."""
        head = compact_json(
            {
                "id": self.id,
                "type": self.type,
                "sequence": self.sequence,
                "merchant_id": self.merchant_id,
                "occurred_at": self.occurred_at.strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z",
            }
        )
        return f'{head[:-1]},"data":{data_json}}}'


def compact_json(value: Any) -> str:
    return json.dumps(value, separators=(",", ":"))


def _event(row: Row[Any]) -> StoredEvent:
    m = row._mapping
    return StoredEvent(
        m["id"], m["type"], m["sequence"], m["merchant_id"], m["occurred_at"], m["data"]
    )


# Secrets earlier rotations retired that sign beside the current and the previous one: with
# them at most five signatures go with a delivery, however often it is rotated in a week.
MAX_EARLIER_SECRETS = 3


def _subscription(row: Row[Any]) -> Subscription:
    m = row._mapping
    return Subscription(
        id=m["id"],
        url=m["url"],
        event_types=list(m["event_types"]),
        description=m["description"],
        status=Status(m["status"]),
        disabled_reason=m["disabled_reason"],
        version=m["version"],
        created_at=m["created_at"],
        updated_at=m["updated_at"],
        failing_since=m["failing_since"],
    )


class CursorAhead(Exception):
    """A cursor past the merchant's newest event (the sequence given)."""

    def __init__(self, last: int) -> None:
        super().__init__(last)
        self.last = last


class CursorExpired(Exception):
    pass


async def run_in(
    uow: UnitOfWork, sql: str, params: Mapping[str, Any], *, defer: bool = False
) -> None:
    """A statement of the hot path in the unit of work's transaction, on its driver
    connection; `defer`: sent with the COMMIT instead, in the same round trip."""
    if defer:
        uow.execute_with_commit(sql, params)
        return
    driver = await uow.driver()
    await driver.execute(sql, params)


class Feed:
    def __init__(self, conn: AsyncConnection, merchant_id: str) -> None:
        self._conn = conn
        self._merchant = merchant_id

    async def redact(self, resource_id: str, types: Sequence[str]) -> int:
        """Replace the snapshots of these events of one resource (and the bodies of their
        deliveries) by the id alone: what an erasure leaves of a customer in the feed."""
        kept = {"object": {"id": resource_id, "redacted": True}}
        rows = (
            await self._conn.execute(
                update(events)
                .where(
                    events.c.merchant_id == self._merchant,
                    events.c.resource_id == resource_id,
                    events.c.type.in_(list(types)),
                )
                .values(data=kept)
                .returning(events)
            )
        ).all()
        for row in rows:
            await self._conn.execute(
                update(deliveries)
                .where(deliveries.c.merchant_id == self._merchant, deliveries.c.event_id == row.id)
                .values(body=_event(row).body())
            )
        return len(rows)

    async def blank_reasons(self, customer_id: str, types: Sequence[str]) -> int:
        """The customer's events of these types whose object (a points entry) has a `reason`
        keep the entry and lose the reason (and so do their deliveries' bodies)."""
        reason = events.c.data["object"]["reason"].astext
        rows = (
            await self._conn.execute(
                update(events)
                .where(
                    events.c.merchant_id == self._merchant,
                    events.c.resource_id == customer_id,
                    events.c.type.in_(list(types)),
                    reason != "",
                )
                .values(
                    data=func.jsonb_set(
                        events.c.data,
                        cast(["object", "reason"], ARRAY(Text)),
                        cast("", JSONB),
                    )
                )
                .returning(events)
            )
        ).all()
        for row in rows:
            await self._conn.execute(
                update(deliveries)
                .where(deliveries.c.merchant_id == self._merchant, deliveries.c.event_id == row.id)
                .values(body=_event(row).body())
            )
        return len(rows)

    async def erase_from_orders(self, customer_id: str) -> int:
        """The customer's order events keep the order (its id, lines, money and the customer's
        id) but lose the fields the contract marks personal (`pos_kit.personal`: each
        fulfilment's `ship_to` and `destination`, the notes and the metadata), wherever the
        event's data holds the order: its object, or beside a return (and so do their
        deliveries' bodies)."""
        data = events.c.data
        found = (
            await self._conn.execute(
                select(events.c.id, events.c.type, data).where(
                    events.c.merchant_id == self._merchant,
                    events.c.type.startswith("order."),
                    or_(
                        data["object"]["customer_id"].astext == customer_id,
                        data["order"]["customer_id"].astext == customer_id,
                    ),
                )
            )
        ).all()
        changed = 0
        for event_id, event_type, stored in found:
            blanked = dict(stored)
            parts = ORDER_EVENT_PARTS.get(event_type, ORDER_EVENT_OBJECT)
            hit = False
            for key, descriptor in parts.items():
                if isinstance(blanked.get(key), dict):
                    blanked[key] = dict(blanked[key])
                    hit = personal.blank_json(blanked[key], descriptor) or hit
            if not hit:
                continue
            row = (
                await self._conn.execute(
                    update(events)
                    .where(events.c.merchant_id == self._merchant, events.c.id == event_id)
                    .values(data=blanked)
                    .returning(events)
                )
            ).one()
            await self._conn.execute(
                update(deliveries)
                .where(deliveries.c.merchant_id == self._merchant, deliveries.c.event_id == row.id)
                .values(body=_event(row).body())
            )
            changed += 1
        return changed

    async def append(
        self, new: Sequence[PublicEvent], uow: UnitOfWork, *, defer: bool = False
    ) -> list[tuple[StoredEvent, str]]:
        """Give the events the merchant's next sequences and store them; each with its data
        serialized (for the deliveries' bodies). The sequence row stays locked until this
        transaction ends: the next append of this merchant waits, so sequences commit in order
        and a rolled-back append leaves no gap. `defer`: the rows go with the COMMIT (one round
        trip less while the row is locked), for a caller that reads none of them back."""
        if not new:
            return []
        # Serialized before the row is taken: only the bodies' heads wait for the sequence.
        serialized = [compact_json(e.data) for e in new]
        taken = await uow.first_row(
            statements.TAKE_SEQUENCES, {"merchant": self._merchant, "n": len(new)}
        )
        assert taken is not None
        last = int(taken[0])
        stored = [
            (
                StoredEvent(
                    e.id, e.type, last - len(new) + 1 + i, self._merchant, e.occurred_at, e.data
                ),
                data,
            )
            for i, (e, data) in enumerate(zip(new, serialized, strict=True))
        ]
        params = {
            "merchant": self._merchant,
            "sequences": [s.sequence for s, _ in stored],
            "ids": [e.id for e in new],
            "types": [e.type for e in new],
            "resources": [e.resource_id for e in new],
            "occurred": [e.occurred_at for e in new],
            "data": [data for _, data in stored],
        }
        await run_in(uow, statements.INSERT_EVENTS, params, defer=defer)
        return stored

    async def after(
        self, sequence: int, types: list[str], limit: int
    ) -> tuple[int, list[StoredEvent], int]:
        """Up to `limit` events past `sequence`, oldest first; filtered by type patterns after
        reading, so a page's scan is bounded whatever the filter. With the sequence they come
        after: `sequence`, or for 0 (from the start) the last one retention took, if any: the
        start of what is kept, never a cursor older than retention (CursorExpired), which is
        one the purge went past; and the merchant's newest sequence (its committed events')."""
        known = (
            await self._conn.execute(
                select(
                    merchant_sequences.c.purged_through, merchant_sequences.c.last_sequence
                ).where(merchant_sequences.c.merchant_id == self._merchant)
            )
        ).first()
        purged, last = (int(known[0]), int(known[1])) if known else (0, 0)
        if sequence == 0:
            sequence = purged
        elif sequence < purged:
            raise CursorExpired()
        if sequence > last:
            # Never given out: a page past it would answer it back as `next_after`, and the
            # client would wait there while every new event went by below it.
            raise CursorAhead(last)
        rows = (
            await self._conn.execute(
                select(events)
                .where(events.c.merchant_id == self._merchant, events.c.sequence > sequence)
                .order_by(events.c.sequence)
                .limit(limit)
            )
        ).all()
        return sequence, [_event(r) for r in rows], last

    async def get(self, event_id: str) -> StoredEvent | None:
        row = (
            await self._conn.execute(
                select(events).where(
                    events.c.merchant_id == self._merchant, events.c.id == event_id
                )
            )
        ).first()
        return _event(row) if row else None

    @staticmethod
    def filtered(found: list[StoredEvent], types: list[str]) -> list[StoredEvent]:
        return [e for e in found if not types or matches(types, e.type)]


class Subscriptions:
    def __init__(self, conn: AsyncConnection, merchant_id: str, box: SecretBox) -> None:
        self._conn = conn
        self._merchant = merchant_id
        self._box = box

    def _where(self, subscription_id: str) -> Any:
        return (subscriptions.c.merchant_id == self._merchant) & (
            subscriptions.c.id == subscription_id
        )

    async def add(self, sub: Subscription, secret: str) -> Subscription:
        row = (
            await self._conn.execute(
                insert(subscriptions)
                .values(
                    merchant_id=self._merchant,
                    id=sub.id,
                    url=sub.url,
                    event_types=sub.event_types,
                    description=sub.description,
                    secret=self._box.seal(secret, self._merchant, sub.id),
                )
                .returning(subscriptions)
            )
        ).one()
        return _subscription(row)

    async def count_for_adding(self) -> int:
        """How many the merchant has, with the merchant's adds serialised until the
        transaction ends (two at once cannot both be the last one allowed)."""
        await self._conn.execute(
            select(func.pg_advisory_xact_lock(func.hashtextextended(
                "webhook_subscriptions:" + self._merchant, 0)))
        )  # fmt: skip
        found = await self._conn.scalar(
            select(func.count())
            .select_from(subscriptions)
            .where(subscriptions.c.merchant_id == self._merchant)
        )
        return int(found or 0)

    async def get(self, subscription_id: str, lock: bool = False) -> Subscription | None:
        query = select(subscriptions).where(self._where(subscription_id))
        if lock:
            query = query.with_for_update()
        row = (await self._conn.execute(query)).first()
        return _subscription(row) if row else None

    async def page(self, page: PageRequest) -> list[Subscription]:
        """By id, or with `page.since` the change feed (oldest change first)."""
        s = subscriptions.c
        query = select(subscriptions).where(s.merchant_id == self._merchant)
        rows = await list_page(self._conn, query, s.updated_at, s.id, page)
        return [_subscription(r) for r in rows]

    async def save(self, sub: Subscription) -> Subscription:
        row = (
            await self._conn.execute(
                update(subscriptions)
                .where(self._where(sub.id))
                .values(
                    url=sub.url,
                    event_types=sub.event_types,
                    description=sub.description,
                    status=sub.status.value,
                    disabled_reason=sub.disabled_reason,
                    # Enabling again starts the failure clock afresh.
                    failing_since=sub.failing_since,
                    # updated_at: stamped by the trigger, as the version changes.
                    version=subscriptions.c.version + 1,
                )
                .returning(subscriptions)
            )
        ).one()
        return _subscription(row)

    async def rotate(
        self, subscription_id: str, secret: str, now: datetime, overlap_until: datetime
    ) -> None:
        """`secret` signs from now on; the one it replaces beside it until `overlap_until`.
        A secret an earlier rotation retired whose overlap has not ended keeps signing to that
        end (the rotation that retired it promised so), at most MAX_EARLIER_SECRETS of them,
        the newest; one whose overlap ended is dropped."""
        t = subscriptions
        row = (
            await self._conn.execute(
                select(t.c.secret, t.c.previous_secret, t.c.previous_secret_until,
                       t.c.earlier_secrets, t.c.earlier_secrets_until)
                .where(self._where(subscription_id))
            )
        ).one()  # fmt: skip
        earlier = list(zip(row.earlier_secrets, row.earlier_secrets_until, strict=True))
        if row.previous_secret is not None:
            earlier.insert(0, (row.previous_secret, row.previous_secret_until))
        kept = [(sealed, until) for sealed, until in earlier if until > now]
        kept = kept[:MAX_EARLIER_SECRETS]
        await self._conn.execute(
            update(t)
            .where(self._where(subscription_id))
            .values(
                secret=self._box.seal(secret, self._merchant, subscription_id),
                previous_secret=row.secret,
                previous_secret_until=overlap_until,
                earlier_secrets=[sealed for sealed, _ in kept],
                earlier_secrets_until=[until for _, until in kept],
                version=t.c.version + 1,
            )
        )

    async def remove(self, subscription_id: str) -> bool:
        done = await self._conn.execute(delete(subscriptions).where(self._where(subscription_id)))
        return bool(done.rowcount)

    async def enabled(self, uow: UnitOfWork) -> list[tuple[str, list[str]]]:
        """(id, event type patterns) of each enabled subscription: who gets new events."""
        driver = await uow.driver()
        cursor = await driver.execute(
            statements.ENABLED_SUBSCRIPTIONS, {"merchant": self._merchant}
        )
        return [(row[0], list(row[1])) for row in await cursor.fetchall()]


@dataclass(frozen=True, slots=True)
class DeliveryRow:
    id: str
    subscription_id: str
    event_id: str
    event_type: str
    sequence: int
    status: str
    attempt_count: int
    next_attempt_at: datetime
    created_at: datetime
    attempts: list[dict[str, Any]]


class Deliveries:
    def __init__(self, conn: AsyncConnection, merchant_id: str) -> None:
        self._conn = conn
        self._merchant = merchant_id

    async def enqueue(self, targets: Sequence[tuple[str, StoredEvent]], now: datetime) -> list[str]:
        """One pending delivery per (subscription id, event), due at once."""
        ids = [new_id("msg") for _ in targets]
        if targets:
            await self._conn.execute(
                insert(deliveries),
                [
                    {
                        "merchant_id": self._merchant,
                        "id": delivery_id,
                        "subscription_id": sub_id,
                        "event_id": e.id,
                        "event_type": e.type,
                        "sequence": e.sequence,
                        "body": e.body(),
                        "next_attempt_at": now,
                        "created_at": now,
                    }
                    for delivery_id, (sub_id, e) in zip(ids, targets, strict=True)
                ],
            )
        return ids

    async def fan_out(
        self,
        stored: Sequence[tuple[StoredEvent, str]],
        subs: Sequence[tuple[str, list[str]]],
        now: datetime,
        uow: UnitOfWork,
        *,
        defer: bool = False,
    ) -> int:
        """A pending delivery of each new event to each subscription that wants it; the body
        is built once per event, around its data already serialized."""
        rows = []
        for e, data_json in stored:
            wanting = [sub_id for sub_id, types in subs if matches(types, e.type)]
            if wanting:
                body = e.body_with(data_json)
                rows += [(sub_id, e, body) for sub_id in wanting]
        if rows:
            params = {
                "merchant": self._merchant,
                "now": now,
                "ids": [new_id("msg") for _ in rows],
                "subs": [sub_id for sub_id, _, _ in rows],
                "events": [e.id for _, e, _ in rows],
                "types": [e.type for _, e, _ in rows],
                "sequences": [e.sequence for _, e, _ in rows],
                "bodies": [body for _, _, body in rows],
            }
            await run_in(uow, statements.INSERT_DELIVERIES, params, defer=defer)
        return len(rows)

    async def copy(self, delivery_ids: Sequence[str], now: datetime) -> list[str]:
        """New pending deliveries of the same bodies (a replay), due at once."""
        if not delivery_ids:
            return []
        d = deliveries.c
        rows = (
            await self._conn.execute(
                select(d.id, d.subscription_id, d.event_id, d.event_type, d.sequence, d.body)
                .where(d.merchant_id == self._merchant, d.id.in_(delivery_ids))
                .order_by(d.id)
            )
        ).all()
        ids = [new_id("msg") for _ in rows]
        await self._conn.execute(
            insert(deliveries),
            [
                {
                    "merchant_id": self._merchant,
                    "id": new,
                    "subscription_id": r.subscription_id,
                    "event_id": r.event_id,
                    "event_type": r.event_type,
                    "sequence": r.sequence,
                    "body": r.body,
                    "next_attempt_at": now,
                    "created_at": now,
                }
                for new, r in zip(ids, rows, strict=True)
            ],
        )
        return ids

    async def to_replay(
        self,
        subscription_id: str,
        created_after: datetime | None,
        created_before: datetime | None,
        limit: int,
    ) -> list[str]:
        """The failed deliveries of a window worth sending again, oldest first: one per event
        (its first), and none of an event delivered to the subscription since, or on its way
        again (a pending delivery of it, a copy made by an earlier replay)."""
        d, o = deliveries.alias("d"), deliveries.alias("o")
        delivered = (
            select(o.c.id)
            .where(
                o.c.merchant_id == self._merchant,
                o.c.subscription_id == subscription_id,
                o.c.event_id == d.c.event_id,
                o.c.status.in_(["succeeded", "pending"]),
            )
            .exists()
        )
        failed = select(d.c.event_id, func.min(d.c.id).label("id")).where(
            d.c.merchant_id == self._merchant,
            d.c.subscription_id == subscription_id,
            d.c.status == "failed",
            ~delivered,
        )
        if created_after is not None:
            failed = failed.where(d.c.created_at >= created_after)
        if created_before is not None:
            failed = failed.where(d.c.created_at < created_before)
        firsts = failed.group_by(d.c.event_id).subquery()
        query = select(firsts.c.id).order_by(firsts.c.id).limit(limit)
        return list((await self._conn.execute(query)).scalars())

    async def get(self, subscription_id: str, delivery_id: str) -> DeliveryRow | None:
        found = await self.list(subscription_id, ids=[delivery_id], limit=1)
        return found[0] if found else None

    async def body(self, delivery_id: str) -> Row[Any] | None:
        return (
            await self._conn.execute(
                select(deliveries).where(
                    deliveries.c.merchant_id == self._merchant, deliveries.c.id == delivery_id
                )
            )
        ).first()

    async def list(
        self,
        subscription_id: str,
        *,
        ids: list[str] | None = None,
        status: str | None = None,
        event_id: str | None = None,
        created_after: datetime | None = None,
        created_before: datetime | None = None,
        after_id: str | None = None,
        limit: int = 50,
    ) -> list[DeliveryRow]:
        d = deliveries.c
        query = select(deliveries).where(
            d.merchant_id == self._merchant, d.subscription_id == subscription_id
        )
        if ids is not None:
            query = query.where(d.id.in_(ids))
        if status:
            query = query.where(d.status == status)
        if event_id:
            query = query.where(d.event_id == event_id)
        if created_after is not None:
            query = query.where(d.created_at >= created_after)
        if created_before is not None:
            query = query.where(d.created_at < created_before)
        if after_id:
            query = query.where(d.id > after_id)
        rows = (await self._conn.execute(query.order_by(d.id).limit(limit))).all()
        found_ids = [r.id for r in rows]
        tried: dict[str, list[dict[str, Any]]] = {i: [] for i in found_ids}
        if found_ids:
            for a in (
                await self._conn.execute(
                    select(attempts)
                    .where(
                        attempts.c.merchant_id == self._merchant,
                        attempts.c.delivery_id.in_(found_ids),
                    )
                    .order_by(attempts.c.delivery_id, attempts.c.number)
                )
            ).all():
                tried[a.delivery_id].append(dict(a._mapping))
        return [
            DeliveryRow(
                r.id,
                r.subscription_id,
                r.event_id,
                r.event_type,
                r.sequence,
                r.status,
                r.attempt_count,
                r.next_attempt_at,
                r.created_at,
                tried[r.id],
            )
            for r in rows
        ]


def utc_now() -> datetime:
    return datetime.now(UTC)


class DispatcherUow(UnitOfWork):
    """Bootstrap subclasses it with the process's ports set (`bound_uow_class`)."""

    # The key ring that seals and opens webhook secrets.
    box: SecretBox | None = None
    network: NetworkRules = NetworkRules()
    # The time as the dispatcher sees it: tests run three days of retries on a fake clock.
    clock: Callable[[], datetime] = staticmethod(utc_now)
    # Called after a commit that enqueued deliveries: the delivery worker starts at once.
    on_deliveries: Callable[[], None] | None = None
    deliveries_enqueued = False

    def now(self) -> datetime:
        return self.clock()

    async def commit(self) -> None:
        await super().commit()
        if self.deliveries_enqueued:
            self.deliveries_enqueued = False
            if self.on_deliveries is not None:
                self.on_deliveries()

    @property
    def feed(self) -> Feed:
        return Feed(self.conn, self.merchant_id)

    @property
    def subscriptions(self) -> Subscriptions:
        if self.box is None:
            raise RuntimeError("the dispatcher's secret box is not configured")
        return Subscriptions(self.conn, self.merchant_id, self.box)

    @property
    def deliveries(self) -> Deliveries:
        return Deliveries(self.conn, self.merchant_id)


def bound_uow_class(
    box: SecretBox,
    network: NetworkRules,
    clock: Callable[[], datetime] = utc_now,
    on_deliveries: Callable[[], None] | None = None,
) -> type[DispatcherUow]:
    """The unit of work class of one dispatcher process, its ports fixed."""
    return type(
        "BoundDispatcherUow",
        (DispatcherUow,),
        {
            "box": box,
            "network": network,
            "clock": staticmethod(clock),
            "on_deliveries": staticmethod(on_deliveries) if on_deliveries else None,
        },
    )
