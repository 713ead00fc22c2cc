"""Idempotency-Key on every POST: the first answer is stored and replayed byte for byte.

The key is scoped to the merchant. The same key with a different request is a 422; a retry
while the first is still running is a 409. The key also becomes the services' request_id, so
even if the gateway dies between the service's commit and storing the answer here, the retry
does not apply the effect twice: the service replays it.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from sqlalchemy import delete, select, update
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.ext.asyncio import AsyncEngine

from pos_gateway.tables import idempotency_keys as keys_table

RETENTION = timedelta(hours=24)
# A first attempt that has not finished by then is taken to have died; a retry may take over.
LOCK = timedelta(seconds=60)
MAX_KEY_LENGTH = 255


@dataclass(frozen=True)
class Stored:
    status_code: int
    content_type: str
    body: bytes


@dataclass(frozen=True)
class Claim:
    """The outcome of presenting a key: go ahead, replay, conflict or mismatch."""

    proceed: bool = False
    replay: Stored | None = None
    in_progress: bool = False
    mismatch: bool = False


def fingerprint(method: str, path: str, body: bytes) -> bytes:
    return hashlib.sha256(method.encode() + b" " + path.encode() + b"\n" + body).digest()


class IdempotencyStore:
    def __init__(self, engine: AsyncEngine) -> None:
        self._engine = engine

    async def claim(self, merchant_id: str, key: str, print_: bytes) -> Claim:
        now = datetime.now(UTC)
        t = keys_table
        async with self._engine.begin() as conn:
            inserted = await conn.execute(
                pg_insert(t)
                .values(
                    merchant_id=merchant_id,
                    key=key,
                    fingerprint=print_,
                    state="in_progress",
                    locked_until=now + LOCK,
                )
                .on_conflict_do_nothing()
                .returning(t.c.key)
            )
            if inserted.first() is not None:
                return Claim(proceed=True)
            row = (
                await conn.execute(select(t).where(t.c.merchant_id == merchant_id, t.c.key == key))
            ).one()
            if row.fingerprint != print_:
                return Claim(mismatch=True)
            if row.state == "done":
                return Claim(
                    replay=Stored(row.status_code, row.content_type or "", bytes(row.body))
                )
            # Still in progress: take it over only if its holder's lock has run out.
            taken = await conn.execute(
                update(t)
                .where(
                    t.c.merchant_id == merchant_id,
                    t.c.key == key,
                    t.c.state == "in_progress",
                    t.c.locked_until < now,
                )
                .values(locked_until=now + LOCK)
                .returning(t.c.key)
            )
            if taken.first() is not None:
                return Claim(proceed=True)
            return Claim(in_progress=True)

    async def complete(self, merchant_id: str, key: str, answer: Stored) -> None:
        async with self._engine.begin() as conn:
            await conn.execute(
                update(keys_table)
                .where(keys_table.c.merchant_id == merchant_id, keys_table.c.key == key)
                .values(
                    state="done",
                    status_code=answer.status_code,
                    content_type=answer.content_type,
                    body=answer.body,
                )
            )

    async def release(self, merchant_id: str, key: str) -> None:
        """Forget a key whose attempt failed on our side (5xx), so the client may retry it."""
        async with self._engine.begin() as conn:
            await conn.execute(
                delete(keys_table).where(
                    keys_table.c.merchant_id == merchant_id, keys_table.c.key == key
                )
            )

    async def purge_expired(self) -> int:
        cutoff = datetime.now(UTC) - RETENTION
        async with self._engine.begin() as conn:
            result = await conn.execute(delete(keys_table).where(keys_table.c.created_at < cutoff))
        return int(result.rowcount or 0)
