"""request_id idempotency for mutating RPCs: the effect and the stored answer commit together.

`once` runs an operation inside one transaction; `once_across_calls` is for an operation that
calls other services, which must not hold a transaction (or a pooled connection) meanwhile.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Protocol, TypeVar

from google.protobuf.message import Message
from sqlalchemy import ColumnElement, Table, and_, bindparam, delete, func, select
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.sql.expression import ClauseElement

from pos_kit.db import lost_to_another_transaction
from pos_kit.errors import (
    AnswerWithdrawn,
    FieldViolation,
    InvalidArgument,
    RequestIdReused,
    RequestInProgress,
)
from pos_kit.ids import derived_id
from pos_kit.uow import UnitOfWork, claim_statement, compiled_sql, request_fingerprint

R = TypeVar("R", bound=Message)


class HasRequestId(Protocol):
    request_id: str

    def SerializeToString(self, *, deterministic: bool = ...) -> bytes: ...


def request_fingerprint_of(operation: str, request: HasRequestId) -> bytes:
    """The fingerprint the kit stores with the request's claim (`uow.request_fingerprint`)."""
    return request_fingerprint(operation, request.SerializeToString(deterministic=True))


async def once(
    uow: UnitOfWork,
    operation: str,
    request: HasRequestId,
    response_type: type[R],
    work: Callable[[], Awaitable[R]],
) -> R:
    """Run `work` and commit, or replay the stored answer of the same earlier request.

    A failed attempt rolls back its claim with everything else, so it may be retried. An
    answer withdrawn since (`AnswerWithdrawn`: it held personal data now erased) is raised, and
    the work never runs again under that request id.
    """
    stored = await uow.claim_request(
        uow.merchant_id,
        request.request_id,
        operation,
        request.SerializeToString(deterministic=True),
    )
    if stored is not None:
        return response_type.FromString(stored)
    response = await work()
    await uow.store_response(uow.merchant_id, request.request_id, response.SerializeToString())
    await uow.commit()
    return response


# --- operations that call other services ---------------------------------------------------

U = TypeVar("U", bound=UnitOfWork)
P = TypeVar("P")
T = TypeVar("T")

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Claim:
    """A request id claimed for one operation, held by no transaction while the calls run."""

    merchant_id: str
    request_id: str
    # When the request was first claimed; a re-run after an expired claim sees the same time.
    claimed_at: datetime
    # A random value stored with the start the ids derive from (read back by every re-run of
    # it), so that a start made anew under the same request id (its first one withdrawn) derives
    # new ids even within the same millisecond. Empty: a start kept from before nonces, whose
    # ids derive from its time and the request id alone, as they did then.
    nonce: str = ""

    def derived_id(self, prefix: str) -> str:
        """The operation's own id (an order id, ...), the same on every run of this request, so
        a re-run hands the other services the same ids and they replay instead of refusing."""
        millis = int(self.claimed_at.timestamp() * 1000)
        if self.nonce:
            return derived_id(prefix, millis, self.merchant_id, self.request_id, self.nonce)
        return derived_id(prefix, millis, self.merchant_id, self.request_id)


async def once_across_calls(
    new_uow: Callable[[], U],
    operation: str,
    request: HasRequestId,
    response_type: type[R],
    read: Callable[[U], Awaitable[P]],
    call: Callable[[Claim, P], Awaitable[T]],
    record: Callable[[U, T], Awaitable[R]],
    lease_seconds: float = 60.0,
) -> R:
    """Run an operation that calls other services once per request_id, holding no database
    connection while they answer.

    1. One short transaction claims the request id (a row with no answer yet) and runs `read`
       (what the calls depend on, e.g. a read model); an earlier answer is replayed instead.
    2. `call` runs the other services' calls with no connection held. Their request ids derive
       from this one, so they are idempotent on their side.
    3. One short transaction runs `record` (the effect and its outbox rows) and stores the
       answer beside them.

    `new_uow` gives a fresh unit of work bound to the merchant, one per transaction. The same
    request while the first is in flight gets `RequestInProgress` (ABORTED, 409 at the gateway),
    never a second effect. A call that fails drops its claim, so it may be retried at once
    (a failure is taken to have had no effect elsewhere; a decline is an answer, not one). A
    claim left behind by a crash (or a cancelled call) expires after `lease_seconds`; a retry
    after that runs again, with the same `claimed_at`, and whichever run records first wins: the
    other finds the answer stored and replays it.
    """
    if not request.request_id:
        raise InvalidArgument(
            "request_id is required on every mutation",
            [FieldViolation("request_id", "is required")],
        )
    fingerprint = request_fingerprint_of(operation, request)
    table = new_uow().tables.requests

    async with new_uow() as uow:
        merchant = uow.merchant_id
        where = and_(table.c.merchant_id == merchant, table.c.request_id == request.request_id)
        claimed = await uow.first_row(
            compiled_sql(table, "claim", claim_statement),
            {
                "merchant_id": merchant,
                "request_id": request.request_id,
                "operation": operation,
                "fingerprint": fingerprint,
            },
        )
        fresh = claimed is not None
        if claimed is not None:
            claimed_at: datetime = claimed[0]
        else:
            expired = table.c.created_at < func.now() - timedelta(seconds=lease_seconds)
            row = (
                await uow.conn.execute(
                    select(
                        table.c.fingerprint,
                        table.c.response,
                        table.c.created_at,
                        expired.label("expired"),
                    ).where(where)
                )
            ).one()
            AnswerWithdrawn.raise_if_stored(row.response)
            if row.fingerprint != fingerprint:
                raise RequestIdReused()
            if row.response is not None:
                return response_type.FromString(row.response)
            if not row.expired:
                raise RequestInProgress()
            claimed_at = row.created_at
        read_result = await read(uow)
        await uow.commit()

    claim = Claim(merchant, request.request_id, claimed_at)
    try:
        outcome = await call(claim, read_result)
    except Exception:
        if fresh:
            # Nothing was recorded: let a retry run again at once rather than after the lease.
            # A re-run's claim stays; it expires, keeping its claimed_at for the next run.
            await _drop_claim(new_uow, where, claimed_at)
        raise

    # A failure from here on keeps the claim: the calls have taken effect, so a retry waits for
    # the lease and runs again with the same derived ids, which the other services replay.
    # A record that lost to another transaction (a deadlock PostgreSQL broke, say) applied
    # nothing: it runs again at once, rather than leaving the caller a failure and a claim
    # that holds the request until its lease ends.
    for attempt in range(1, RECORD_ATTEMPTS + 1):
        try:
            return await _record(
                new_uow, table, merchant, request.request_id, operation, fingerprint,
                response_type, outcome, record,
            )  # fmt: skip
        except Exception as exc:
            if attempt == RECORD_ATTEMPTS or not lost_to_another_transaction(exc):
                raise
            log.warning("%s %s: recording lost to another transaction; again", operation,
                        request.request_id)  # fmt: skip
    raise AssertionError("unreachable")


# How many times the recording transaction runs when it keeps losing to others.
RECORD_ATTEMPTS = 3


async def _record(
    new_uow: Callable[[], U],
    table: Table,
    merchant: str,
    request_id: str,
    operation: str,
    fingerprint: bytes,
    response_type: type[R],
    outcome: T,
    record: Callable[[U, T], Awaitable[R]],
) -> R:
    async with new_uow() as uow:
        # The row lock orders this run against any other run of the same request.
        current = await uow.first_row(
            compiled_sql(table, "lock", _lock_request),
            {"merchant_id": merchant, "request_id": request_id},
        )
        if current is not None and current[0] is not None:
            AnswerWithdrawn.raise_if_stored(current[0])
            return response_type.FromString(current[0])
        response = await record(uow, outcome)
        answer = response.SerializeToString()
        if current is None:
            # Dropped meanwhile by a failed run beside this one (after the lease): claim again,
            # unless yet another run has claimed it since; that one will record.
            again = await uow.conn.execute(
                pg_insert(table)
                .values(
                    merchant_id=merchant,
                    request_id=request_id,
                    operation=operation,
                    fingerprint=fingerprint,
                    response=answer,
                )
                .on_conflict_do_nothing()
                .returning(table.c.request_id)
            )
            if again.first() is None:
                raise RequestInProgress()
        else:
            await uow.store_response(merchant, request_id, answer)
        await uow.commit()
    return response


def _lock_request(requests: Table) -> ClauseElement:
    """The request's answer, if any, with its row locked until the commit."""
    return (
        select(requests.c.response)
        .where(
            requests.c.merchant_id == bindparam("merchant_id"),
            requests.c.request_id == bindparam("request_id"),
        )
        .with_for_update()
    )


async def _drop_claim(new_uow: Callable[[], U], where: ColumnElement[bool], at: datetime) -> None:
    try:
        async with new_uow() as uow:
            table = uow.tables.requests
            await uow.conn.execute(
                delete(table).where(where, table.c.response.is_(None), table.c.created_at == at)
            )
            await uow.commit()
    except Exception as exc:
        # The claim then simply expires: the caller's own error is the one to report.
        log.warning("could not drop a failed request's claim: %s", exc.__class__.__name__)
