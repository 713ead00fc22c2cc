"""Token buckets shared by every gateway replica, in the gateway's own PostgreSQL.

One statement per decision: an UPSERT that refills the bucket for the time since its last
use, takes a token if there is one and returns what is left, atomically under the row lock,
so two replicas spending one credential's budget at the same moment both count. The database
clock is the only clock, so replicas with skewed clocks still agree.

The table is UNLOGGED: a bucket is worth nothing after a crash (an empty table is all buckets
full, where every credential starts anyway), and skipping the WAL means a decision does not
wait for a disk flush, which is most of a commit's cost here. A standby does not have the
table's rows, so a failover also starts every bucket full.

A bucket left alone for as long as its budget takes to fill is full: the same as no row. So
every replica deletes such rows in the background (`purge_idle_buckets`, every minute, at most
PURGE_BATCHES statements of PURGE_BATCH rows each, skipping rows another statement holds): the
table holds the buckets in use, not one row for every credential, address and code budget
ever seen. The table is shared by every budget (the API's, gift card code look-ups', the token
exchange's), so the horizon is the slowest of them to fill: a purge never hands back a token
that a budget was still refilling.

Fail open, per replica: when the database does not answer within TIMEOUT_SECONDS, the
request is decided by this replica's own in-memory buckets instead. A limiter exists to
protect capacity; refusing every request because the limiter's store is down would turn a
database blip into an outage of the whole API, while the local fallback still bounds each
credential to one budget per replica until the store is back.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Sequence

from psycopg_pool import AsyncConnectionPool

from pos_gateway.ratelimit import Decision, TokenBuckets, decision, header, policy
from pos_kit.cancel import stop_if_cancelled

log = logging.getLogger(__name__)

TIMEOUT_SECONDS = 0.25
# At most one warning per this many seconds while the store is failing: no log flood.
WARN_EVERY_SECONDS = 30.0

# Seconds since the bucket's last use; never negative, since a statement that waited for the
# row lock may have started before the one that held it.
_ELAPSED = "greatest(0, extract(epoch FROM now() - b.updated_at))"
_REFILLED = f"least(%(burst)s::double precision, b.tokens + {_ELAPSED} * %(rate)s)"
TAKE = f"""
    INSERT INTO rate_limit_buckets AS b (credential_id, tokens, allowed, updated_at)
    VALUES (%(key)s, %(burst)s::double precision - 1, true, now())
    ON CONFLICT (credential_id) DO UPDATE SET
        tokens = CASE WHEN {_REFILLED} >= 1 THEN {_REFILLED} - 1 ELSE {_REFILLED} END,
        allowed = {_REFILLED} >= 1,
        updated_at = greatest(b.updated_at, now())
    RETURNING tokens, allowed
"""  # noqa: S608 - the interpolated parts are constants above, values are bound

# A token given back (the request it was taken for turned out not to count), never past the
# burst.
REFUND = """
    UPDATE rate_limit_buckets SET tokens = least(%(burst)s::double precision, tokens + 1)
    WHERE credential_id = %(key)s
"""


# Rows idle past the horizon, a batch at a time. Locked rows (a decision on them under way)
# are passed over, and the time is checked again on the row deleted: a bucket used since it
# was picked stays.
PURGE = """
    DELETE FROM rate_limit_buckets
    WHERE credential_id IN (
        SELECT credential_id FROM rate_limit_buckets
        WHERE updated_at < now() - make_interval(secs => %(idle)s)
        LIMIT %(batch)s
        FOR UPDATE SKIP LOCKED
    ) AND updated_at < now() - make_interval(secs => %(idle)s)
"""
PURGE_BATCH = 1000
PURGE_BATCHES = 20
PURGE_EVERY_SECONDS = 60.0
# Beyond the slowest budget's time to fill, for a decision's rounding.
PURGE_MARGIN_SECONDS = 60.0


def plain_url(url: str) -> str:
    """The libpq URL: without the driver suffix SQLAlchemy URLs may carry."""
    return url.replace("postgresql+psycopg://", "postgresql://", 1)


class SharedBuckets:
    def __init__(
        self,
        database_url: str,
        rate_per_second: float,
        burst: int,
        timeout: float = TIMEOUT_SECONDS,
    ) -> None:
        self.timeout = timeout
        self.rate = rate_per_second
        self.burst = burst
        self.policy = policy(rate_per_second, burst)
        self.fallback = TokenBuckets(rate_per_second, burst)
        # psycopg's own pool, not SQLAlchemy: a decision is one prepared statement in
        # autocommit (no BEGIN/COMMIT), measured at about a third of the same statement's cost
        # through SQLAlchemy. A pool of its own: a burst of API calls never waits behind key
        # look-ups or idempotency writes for a connection.
        self._pool = AsyncConnectionPool(
            plain_url(database_url),
            min_size=1,
            max_size=4,
            kwargs={"autocommit": True, "prepare_threshold": 0},
            open=False,
            timeout=timeout,
        )
        self._warned_at = -WARN_EVERY_SECONDS

    @property
    def full_after(self) -> float:
        """Seconds an emptied bucket takes to fill again: one unused for that long is full."""
        return self.burst / self.rate

    def header(self, decision: Decision) -> str:
        return header(decision)

    async def purge_idle(
        self, idle_seconds: float, batch: int = PURGE_BATCH, batches: int = PURGE_BATCHES
    ) -> int:
        """Delete up to `batches` times `batch` rows unused for `idle_seconds`, one statement
        per batch (each short: no long lock, no long transaction); how many went."""
        deleted = 0
        for _ in range(batches):
            async with self._pool.connection() as conn:
                done = await conn.execute(PURGE, {"idle": idle_seconds, "batch": batch})
            deleted += done.rowcount
            if done.rowcount < batch:
                break
        return deleted

    async def start(self) -> None:
        # Not waiting for the first connection: a store that is down at start-up is the same
        # fail-open case as one that goes down later.
        await self._pool.open(wait=False)

    async def close(self) -> None:
        await self._pool.close()

    async def decide(self, key: str) -> Decision:
        try:
            async with asyncio.timeout(self.timeout):
                return await self._take(key)
        except Exception as exc:
            self._warn(exc)
            return self.fallback.take(key)

    async def refund(self, key: str) -> None:
        try:
            async with asyncio.timeout(self.timeout):
                async with self._pool.connection() as conn:
                    await conn.execute(REFUND, {"key": key, "burst": self.burst})
        except Exception as exc:
            self._warn(exc)
        self.fallback.give_back(key)

    async def _take(self, key: str) -> Decision:
        params = {"key": key, "burst": self.burst, "rate": self.rate}
        async with self._pool.connection() as conn:
            row = await (await conn.execute(TAKE, params)).fetchone()
        if row is None:
            raise RuntimeError("the bucket statement returned no row")
        tokens, allowed = row
        return decision(bool(allowed), float(tokens), self.rate, self.burst)

    def _warn(self, exc: Exception) -> None:
        now = time.monotonic()
        if now - self._warned_at >= WARN_EVERY_SECONDS:
            self._warned_at = now
            # The exception's type only: its text may carry the database URL.
            log.warning(
                "shared rate-limit store unavailable (%s); deciding per replica",
                type(exc).__name__,
            )


async def purge_idle_buckets(
    limiters: Sequence[object], every: float = PURGE_EVERY_SECONDS
) -> None:
    """Forever: the rows of buckets idle past the slowest shared budget's time to fill go
    (nothing to do when no budget is shared). A failure is tried again next time."""
    shared = [limiter for limiter in limiters if isinstance(limiter, SharedBuckets)]
    if not shared:
        return
    horizon = max(limiter.full_after for limiter in shared) + PURGE_MARGIN_SECONDS
    while True:
        try:
            await shared[0].purge_idle(horizon)
        except Exception as exc:
            # The exception's type only, as above.
            log.warning("could not purge idle rate-limit buckets (%s)", type(exc).__name__)
        stop_if_cancelled()
        await asyncio.sleep(every)
