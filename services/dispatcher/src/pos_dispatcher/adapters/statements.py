"""The hot path's statements as plain SQL, run on the driver's connection.

Claiming, recording and appending run hundreds of times a second. Built with SQLAlchemy, each
call rebuilt the statement, computed its cache key and went through the ORM-less but still
heavy execution layer: about a fifth of the process's CPU at 200 events/s (py-spy,
services/dispatcher/README.md). Here each is one fixed text: psycopg prepares it after a few
runs (its `prepare_threshold`), so PostgreSQL no longer parses or plans it either. Rows travel
as arrays (`unnest`), so a batch of any size is the same statement, and in binary (`%(…)b`):
the text form quotes and escapes every element with a regular expression, and bodies are
JSON, full of quotes (that was a sixth of the ingesting process's CPU).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from psycopg import AsyncConnection as DriverConnection
from psycopg.rows import namedtuple_row
from sqlalchemy.ext.asyncio import AsyncEngine

from pos_kit.uow import restore

# Claim what is due, in one statement and one round trip: lock a window of due deliveries
# (SKIP LOCKED: another replica's claim passes over them), keep at most `most` per endpoint
# counting what this replica already holds (`held_subs`/`held`), at most `free` in all, and
# lease those (`next_attempt_at` moves to the lease's end). The rest of the window is left due
# and unleased; its locks end with the statement.
CLAIM = """
WITH due AS (
    SELECT d.merchant_id, d.id, d.subscription_id, d.next_attempt_at, d.sequence
    FROM deliveries d
    JOIN webhook_subscriptions s ON s.merchant_id = d.merchant_id AND s.id = d.subscription_id
    WHERE d.status = 'pending' AND d.next_attempt_at <= %(now)s AND s.status = 'enabled'
      AND d.subscription_id <> ALL(%(full)b::text[])
    ORDER BY d.next_attempt_at, d.sequence
    LIMIT %(scan)s
    FOR UPDATE OF d SKIP LOCKED
), ranked AS (
    SELECT due.*, row_number() OVER (
        PARTITION BY subscription_id ORDER BY next_attempt_at, sequence) AS n
    FROM due
), taken AS (
    SELECT r.merchant_id, r.id, r.next_attempt_at, r.sequence
    FROM ranked r
    LEFT JOIN unnest(%(held_subs)b::text[], %(held)b::int[]) AS h(sub, count)
        ON h.sub = r.subscription_id
    WHERE r.n + coalesce(h.count, 0) <= %(most)s
    ORDER BY r.next_attempt_at, r.sequence
    LIMIT %(free)s
)
UPDATE deliveries d SET next_attempt_at = %(lease_until)s
FROM taken t, webhook_subscriptions s
WHERE d.merchant_id = t.merchant_id AND d.id = t.id
  AND s.merchant_id = d.merchant_id AND s.id = d.subscription_id
RETURNING d.merchant_id, d.id, d.subscription_id, d.event_id, d.body, d.attempt_count,
    s.url, s.secret, s.previous_secret, s.previous_secret_until,
    s.earlier_secrets, s.earlier_secrets_until,
    t.next_attempt_at AS due_at, t.sequence
"""

# Successful attempts of any merchants' deliveries, in one statement: the deliveries done,
# their attempt rows, and their subscriptions no longer failing. Only deliveries that still
# exist are recorded: one deleted meanwhile (its subscription deleted while the request was
# out) is skipped, never the reason the whole batch fails and every other merchant's
# successes stay leased and go out again. Failures take the slower path
# (DeliveryWorker._record_failures): each schedules its own retry.
RECORD_SUCCESSES = """
WITH done AS (
    UPDATE deliveries d SET status = 'succeeded', attempt_count = d.attempt_count + 1
    FROM unnest(%(merchants)b::text[], %(ids)b::text[], %(numbers)b::int[],
        %(codes)b::int[], %(latencies)b::bigint[], %(excerpts)b::text[])
        AS a(m, i, n, c, l, x)
    WHERE d.merchant_id = a.m AND d.id = a.i
    RETURNING d.merchant_id, d.id, d.subscription_id, a.n, a.c, a.l, a.x
), tried AS (
    INSERT INTO delivery_attempts (merchant_id, delivery_id, number, attempted_at,
        status_code, latency_ms, response_excerpt, error)
    SELECT done.merchant_id, done.id, done.n, %(now)s, done.c, done.l, done.x, ''
    FROM done
)
UPDATE webhook_subscriptions s SET failing_since = NULL
FROM (SELECT DISTINCT merchant_id, subscription_id FROM done) AS o
WHERE s.merchant_id = o.merchant_id AND s.id = o.subscription_id
  AND s.failing_since IS NOT NULL
"""

# Whether a subscription is still enabled and where it sends (None: deleted).
SUBSCRIPTION_NOW = """
SELECT url, status = 'enabled' AS enabled FROM webhook_subscriptions
WHERE merchant_id = %(merchant)s AND id = %(id)s
"""

# Deliveries taken out of the local queue (their subscription changed) due again at once,
# unless another claim has them by now.
RELEASE = """
UPDATE deliveries SET next_attempt_at = %(now)s
WHERE merchant_id = %(merchant)s AND id = %(id)s AND status = 'pending'
  AND next_attempt_at = %(lease_until)s
"""

# Who wants the merchant's new events: (id, event type patterns) of its enabled subscriptions.
ENABLED_SUBSCRIPTIONS = """
SELECT id, event_types FROM webhook_subscriptions
WHERE merchant_id = %(merchant)s AND status = 'enabled'
"""

# A merchant's next `n` sequences: the row stays locked until the transaction ends, so the
# merchant's next append waits and sequences commit in order (a rollback leaves no gap).
TAKE_SEQUENCES = """
INSERT INTO merchant_sequences (merchant_id, last_sequence) VALUES (%(merchant)s, %(n)s)
ON CONFLICT (merchant_id) DO UPDATE
SET last_sequence = merchant_sequences.last_sequence + excluded.last_sequence
RETURNING last_sequence
"""

INSERT_EVENTS = """
INSERT INTO events (merchant_id, sequence, id, type, resource_id, occurred_at, data)
SELECT %(merchant)s, e.s, e.i, e.t, e.r, e.o, e.d::jsonb
FROM unnest(%(sequences)b::bigint[], %(ids)b::text[], %(types)b::text[],
    %(resources)b::text[], %(occurred)b::timestamptz[], %(data)b::text[]) AS e(s, i, t, r, o, d)
"""

INSERT_DELIVERIES = """
INSERT INTO deliveries (merchant_id, id, subscription_id, event_id, event_type, sequence,
    body, next_attempt_at, created_at)
SELECT %(merchant)s, d.i, d.sub, d.e, d.t, d.s, d.b, %(now)s, %(now)s
FROM unnest(%(ids)b::text[], %(subs)b::text[], %(events)b::text[], %(types)b::text[],
    %(sequences)b::bigint[], %(bodies)b::text[]) AS d(i, sub, e, t, s, b)
"""


async def run_alone(engine: AsyncEngine, sql: str, params: Mapping[str, Any]) -> Sequence[Any]:
    """One statement in a transaction of its own (autocommit: no BEGIN or COMMIT round trip),
    on a pooled connection's driver; its rows, as named tuples."""
    async with engine.connect() as conn:
        raw = await conn.get_raw_connection()
        driver = raw.driver_connection
        assert isinstance(driver, DriverConnection)
        try:
            await driver.set_autocommit(True)  # idle: no round trip
            async with driver.cursor(row_factory=namedtuple_row) as cursor:
                await cursor.execute(sql, params)
                return await cursor.fetchall() if cursor.description else []
        finally:
            try:
                await restore(driver)
            except Exception:
                # Not a connection to hand out again (the statement's error is the one to see).
                await conn.invalidate()
