"""Async SQLAlchemy engines on psycopg 3."""

from __future__ import annotations

import os
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine, create_async_engine

from pos_kit.direct import DirectEngine


def async_url(url: str) -> str:
    """postgresql:// as given by operators -> the psycopg async driver SQLAlchemy needs."""
    for prefix in ("postgresql+psycopg://", "postgresql://", "postgres://"):
        if url.startswith(prefix):
            return "postgresql+psycopg://" + url[len(prefix) :]
    raise ValueError("not a PostgreSQL URL")


def make_engine(
    url: str, pool_size: int = 10, max_overflow: int | None = None, pool_timeout: float = 10
) -> AsyncEngine:
    """`max_overflow`: connections beyond `pool_size` at a peak, closed after (default: as many)."""
    engine = create_async_engine(
        async_url(url),
        pool_size=pool_size,
        max_overflow=pool_size if max_overflow is None else max_overflow,
        # No pre-ping: it costs a round trip on every checkout from the pool; a connection
        # that died is replaced on its first failure, and recycling bounds their age.
        pool_recycle=1800,
        # Every unit of work is short; a long wait for a connection means overload, not patience.
        pool_timeout=pool_timeout,
    )
    # Statements sent on the driver's connection (pos_kit.direct): a checkout costs the
    # platform about a sixth less CPU that way (docs/performance.md, "Statements on the
    # driver's connection"). SQL_DIRECT=0 runs SQLAlchemy's own execution, to compare.
    if os.environ.get("SQL_DIRECT", "1") != "0":
        return DirectEngine(engine.sync_engine)
    return engine


@asynccontextmanager
async def reads(engine: AsyncEngine) -> AsyncIterator[AsyncConnection]:
    """A pooled connection for reads outside a unit of work, each statement a transaction of
    its own. A plain `engine.connect()` begins a transaction at the first statement and rolls
    it back at the end, and psycopg answers every ROLLBACK by dropping all of the connection's
    prepared statements (DEALLOCATE ALL): the units of work that use it next parse and plan
    everything again. A background pass reading every second did that to a pool's connections
    all day (docs/performance.md, "Reads that end in a rollback")."""
    async with engine.connect() as conn:
        yield await conn.execution_options(isolation_level="AUTOCOMMIT")


# PostgreSQL's answers to a transaction that lost to another one (deadlock_detected,
# serialization_failure): nothing of it was applied, and running it again is safe.
LOST_TO_ANOTHER = frozenset({"40P01", "40001"})


def lost_to_another_transaction(exc: BaseException) -> bool:
    """Whether `exc` (psycopg's error, or SQLAlchemy's wrapping it) is PostgreSQL aborting the
    transaction for another's sake."""
    error = getattr(exc, "orig", None) or exc
    return getattr(error, "sqlstate", None) in LOST_TO_ANOTHER
