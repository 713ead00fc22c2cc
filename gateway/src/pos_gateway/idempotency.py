"""Idempotency-Key on every POST: the first answer is stored and replayed byte for byte.

The key is scoped to the merchant. The same key with a different request is a 422; a retry
while the first is still running is a 409. The key also becomes the services' request_id, so
even if the gateway dies between the service's commit and storing the answer here, the retry
does not apply the effect twice: the service replays it.

A secret shown once (an API key, a client secret) is never stored with the answer: the route
names those fields (routes.common.op's `shown_once`, kept as the operation's `x-shown-once`),
`complete` stores the answer with them null and `secret_redacted: true`, and a replay returns
that: the same resource, no secret, and says so.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import re
from collections.abc import Callable, Collection, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import parse_qsl, urlencode

import psycopg
from sqlalchemy import (
    Interval,
    LargeBinary,
    Table,
    Text,
    and_,
    bindparam,
    case,
    delete,
    exists,
    func,
    literal_column,
    select,
    update,
)
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.ext.asyncio import AsyncEngine
from sqlalchemy.sql.expression import ClauseElement, Executable

from pos_gateway.problems import PROBLEM_JSON, customer_erased, problem_response
from pos_gateway.tables import customer_erasures
from pos_gateway.tables import idempotency_keys as keys_table
from pos_kit.uow import compiled_sql

RETENTION = timedelta(hours=24)
# A first attempt that has not finished by then is taken to have died; a retry may take over.
LOCK = timedelta(seconds=60)
MAX_KEY_LENGTH = 255
# The answer field that tells a replay's shown-once secrets were removed.
REDACTED = "secret_redacted"


@dataclass(frozen=True)
class Stored:
    status_code: int
    content_type: str
    body: bytes
    # The answer's ETag, replayed with it: it feeds the client's next If-Match.
    etag: str = ""


# What an answer stored under an Idempotency-Key becomes when a customer it holds is erased.
ERASED_ANSWER = Stored(410, PROBLEM_JSON, bytes(problem_response(customer_erased()).body))


@dataclass(frozen=True)
class Claim:
    """The outcome of presenting a key: go ahead, replay, conflict or mismatch."""

    proceed: bool = False
    replay: Stored | None = None
    in_progress: bool = False
    mismatch: bool = False


# Where a route names its shown-once fields: an extension of its operation in the OpenAPI
# document, so what partners read is exactly what the store leaves out.
SHOWN_ONCE = "x-shown-once"
# Where an operation names the scopes it requires (op(), the route dependency checks them).
REQUIRED_SCOPES = "x-required-scopes"


def declared(
    document: Mapping[str, Any], member: str = ""
) -> list[tuple[re.Pattern[str], str, tuple[str, ...]]]:
    """(path pattern, method, fields) of every operation the document says has shown-once
    secrets (or, with `member`, that names values under that member); a `{parameter}` in a
    path matches one segment."""
    member = member or SHOWN_ONCE
    found = []
    for path, operations in document.get("paths", {}).items():
        for method, operation in operations.items():
            fields = operation.get(member) if isinstance(operation, dict) else None
            if fields:
                parts = re.split(r"\{[^/}]+\}", path)
                pattern = re.compile("[^/]+".join(re.escape(part) for part in parts))
                found.append((pattern, method.upper(), tuple(fields)))
    return found


def shown_once(scope: Mapping[str, Any]) -> tuple[str, ...]:
    """The shown-once fields the operation of this request declares (none by default).

    Taken from the declaration, not from running the route, so a replay (which runs no route)
    is redacted too: even an answer stored by an older gateway never shows its secret again.
    """
    return _declared_for(scope, SHOWN_ONCE)


def required_scopes(scope: Mapping[str, Any]) -> tuple[str, ...]:
    """The scopes the operation of this request requires (`x-required-scopes`), read from the
    declaration as `shown_once` is: a replay runs no route, so its scope check is made here."""
    return _declared_for(scope, REQUIRED_SCOPES)


def _declared_for(scope: Mapping[str, Any], member: str) -> tuple[str, ...]:
    """What the operation of this request names under `member` in the app's document (none by
    default); each member's table is built once, as the document does not change while
    serving."""
    app = scope.get("app")
    state = getattr(app, "state", None)
    if state is None:
        return ()
    tables: dict[str, Any] | None = getattr(state, "declared_operations", None)
    if tables is None:
        tables = state.declared_operations = {}
    table = tables.get(member)
    if table is None:
        build = getattr(app, "openapi", None)
        table = tables[member] = declared(build(), member) if callable(build) else []
    for pattern, method, values in table:
        if method == scope.get("method") and pattern.fullmatch(scope.get("path", "")):
            return tuple(values)
    return ()


def redact(body: bytes, fields: Collection[str]) -> bytes:
    """The answer as it may be kept: each of `fields` null and `secret_redacted` true.

    An answer holding none of them (a problem, say) is kept as it is. One that is not a JSON
    object, from a route that declared secrets, is not kept at all: no guessing where a secret
    might be in it.
    """
    if not fields:
        return body
    try:
        data = json.loads(body)
    except ValueError:
        data = None
    if not isinstance(data, dict):
        return json.dumps({REDACTED: True}).encode()
    # A secret field that is absent or null holds no secret: such an answer is kept as it is
    # (a checkout that sold no gift card replays byte for byte).
    if not any(data.get(field) is not None for field in fields):
        return body
    data.update(dict.fromkeys((f for f in fields if f in data), None))
    data[REDACTED] = True
    # As Starlette's JSONResponse writes it, so a replay reads like the first answer.
    return json.dumps(data, ensure_ascii=False, allow_nan=False, separators=(",", ":")).encode()


def fingerprint(
    method: str,
    path: str,
    body: bytes,
    key: bytes = b"",
    register_id: str | None = None,
    query: bytes = b"",
) -> bytes:
    """Which request a key was used with: its method, path, query (`canonical_query`) and
    body. Keyed (HMAC-SHA256): a body may carry a bearer secret (a gift card's code), and a
    plain hash of it could be searched for a short code by anyone who reads the table; without
    the gateway's secret, this one cannot. A request without a query is fingerprinted as it was
    before the query counted, so a key claimed then still matches it."""
    target = path.encode() + (b"?" + query if query else b"")
    message = method.encode() + b" " + target + b"\n" + body
    if register_id is not None:
        message = b"register " + register_id.encode() + b"\n" + message
    return hmac.new(key, message, hashlib.sha256).digest()


def canonical_query(query: bytes) -> bytes:
    """The query as its meaning, not its bytes: each parameter decoded, then encoded again in
    one way, ordered by name (the values given one name keep their order, which may matter),
    so `?b=2&a=%41` is the same request as `?a=A&b=2`, while `?consumer=B` after `?consumer=A`
    is another one. Lossless: bytes that are not UTF-8 go back as they came."""
    pairs = parse_qsl(
        query.decode("latin-1"), keep_blank_values=True, encoding="utf-8",
        errors="surrogateescape",
    )  # fmt: skip
    pairs.sort(key=lambda pair: pair[0])
    return urlencode(pairs, encoding="utf-8", errors="surrogateescape").encode()


def canonical(body: bytes) -> bytes:
    """The body as its meaning, not its bytes: a JSON body with its members sorted and no
    whitespace, so a client that serialises its request again when it retries (another key
    order, indentation) sends the same request. Anything not JSON is taken byte for byte."""
    try:
        data = json.loads(body)
        return json.dumps(
            data, ensure_ascii=False, allow_nan=False, sort_keys=True, separators=(",", ":")
        ).encode()
    except (ValueError, RecursionError):
        # Not JSON, or JSON no route takes (NaN, a lone surrogate, nesting past any schema):
        # byte for byte, and the route answers its 400.
        return body


def fingerprints(
    method: str,
    path: str,
    body: bytes,
    key: bytes = b"",
    register_id: str | None = None,
    query: bytes = b"",
) -> tuple[bytes, ...]:
    """The request's fingerprint (of its canonical body) first, then, when they differ, the
    one of its bytes as they came: the fingerprint a key claimed before bodies were compared
    by meaning holds, so a retry across that upgrade is still the same request. Both hold the
    query (`canonical_query`): without it, the same key, path and body with another query
    (`?consumer=B` after `?consumer=A`) replayed the first one's answer, and never ran.

    A register's request is fingerprinted with the register: its credential sees only its own
    location, and a replay runs no route, so another till (or an API key) sending the same
    key and body must not be handed this register's stored answer (a shift's cash report, a
    sale it never made): for them it is another request, a 422."""
    query = canonical_query(query)
    if register_id is not None:
        return (fingerprint(method, path, canonical(body), key, register_id, query),)
    mine = fingerprint(method, path, canonical(body), key, query=query)
    raw = fingerprint(method, path, body, key, query=query)
    return (mine,) if raw == mine else (mine, raw)


def fingerprint_key(secret: str) -> bytes:
    """The fingerprints' key, derived from GATEWAY_SECRET_KEY (never used as is elsewhere)."""
    return hashlib.sha256(b"omnitill idempotency fingerprint\0" + secret.encode()).digest()


# How often a claim runs again when the key it found is let go before it could read it.
CLAIM_ATTEMPTS = 3


class IdempotencyStore:
    """Every request with a key costs this store a claim and a completion; each is one
    statement on its own (autocommit: one round trip, where a transaction would take three),
    compiled once and run on the driver's connection. Only a key seen before takes a
    transaction, to decide between replay, conflict and take-over."""

    def __init__(self, engine: AsyncEngine, fingerprint_key: bytes = b"") -> None:
        self._engine = engine
        self.fingerprint_key = fingerprint_key
        self._autocommit = engine.execution_options(isolation_level="AUTOCOMMIT")

    async def _one_statement(self, sql: str, params: dict[str, Any]) -> bool:
        """Run `sql` on its own; whether it returned (or changed) a row."""
        async with self._autocommit.connect() as conn:
            driver = (await conn.get_raw_connection()).driver_connection
            assert isinstance(driver, psycopg.AsyncConnection)
            cursor = await driver.execute(sql, params)
            return bool(cursor.rowcount and cursor.rowcount > 0)

    async def withdraw_answers_naming(
        self,
        merchant_id: str,
        resource_id: str,
        instead: Stored,
        keep: Callable[[int, bytes], bytes | None] | None = None,
    ) -> int:
        """Replace every stored answer that holds this resource by `instead` (a problem):
        an erased customer's personal data must not wait out the replay window here, and the
        key stays spent, so a retry under it (a partner's queued one) is answered `instead`,
        as a replay, and never runs again to bring the customer back. The key's fingerprint
        (keyed, see `fingerprint`) stays: the same key with another request is still a 422.
        `keep`: given an answer's status and body, the body to keep replaying in its place
        (none of the resource's personal data left), or None to withdraw it."""
        t = keys_table
        naming = and_(
            t.c.merchant_id == merchant_id,
            t.c.state == "done",
            func.strpos(func.encode(t.c.body, "escape"), resource_id) > 0,
        )
        withdrawn = update(t).values(
            status_code=instead.status_code, content_type=instead.content_type, body=instead.body
        )
        async with self._engine.begin() as conn:
            if keep is None:
                result = await conn.execute(withdrawn.where(naming))
                return int(result.rowcount or 0)
            held = await conn.execute(
                select(t.c.key, t.c.status_code, t.c.body).where(naming).with_for_update()
            )
            changed = 0
            for key, status_code, body in held.all():
                kept = keep(int(status_code or 0), bytes(body))
                this = and_(t.c.merchant_id == merchant_id, t.c.key == key)
                if kept is None:
                    await conn.execute(withdrawn.where(this))
                else:
                    await conn.execute(update(t).where(this).values(body=kept))
                changed += 1
        return changed

    async def claim(self, merchant_id: str, key: str, prints: Sequence[bytes]) -> Claim:
        """`prints`: the request's fingerprints (`fingerprints`); a new key keeps the first,
        and a key seen before is the same request when it holds any of them."""
        now = datetime.now(UTC)
        t = keys_table
        fresh = {
            "merchant_id": merchant_id,
            "key": key,
            "fingerprint": prints[0],
            "locked_until": now + LOCK,
        }
        claim_sql = compiled_sql(t, "claim", _new_key)
        if await self._one_statement(claim_sql, {**fresh, "state": "in_progress"}):
            return Claim(proceed=True)
        new_key = (
            pg_insert(t)
            .values(state="in_progress", **fresh)
            .on_conflict_do_nothing()
            .returning(t.c.key)
        )
        for _ in range(CLAIM_ATTEMPTS):
            claim = await self._claim_seen(merchant_id, key, prints, new_key, now)
            if claim is not None:
                return claim
        return Claim(in_progress=True)

    async def _claim_seen(
        self,
        merchant_id: str,
        key: str,
        prints: Sequence[bytes],
        new_key: Executable,
        now: datetime,
    ) -> Claim | None:
        """A key seen before: None when it was let go between the two statements (its
        request refused as it came, or failed): claimed again by the next attempt."""
        t = keys_table
        async with self._engine.begin() as conn:
            # Claimed again in this transaction: the row may have been released meanwhile.
            if (await conn.execute(new_key)).first() is not None:
                return Claim(proceed=True)
            row = (
                await conn.execute(select(t).where(t.c.merchant_id == merchant_id, t.c.key == key))
            ).first()
            if row is None:
                return None
            if bytes(row.fingerprint) not in prints:
                return Claim(mismatch=True)
            if row.state == "done":
                return Claim(
                    replay=Stored(
                        row.status_code, row.content_type or "", bytes(row.body), row.etag or ""
                    )
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

    async def complete(
        self, merchant_id: str, key: str, answer: Stored, shown_once: Collection[str] = ()
    ) -> None:
        """Keep the answer for replays, without the fields `shown_once` names. One naming a
        customer erased in the last day is kept as the erasure's 410 (`ERASED_ANSWER`), as
        the erasure's withdrawal would have made it had it been stored before: an order the
        order service accepted before it heard of the erasure, answered a moment later."""
        await self._one_statement(
            compiled_sql(keys_table, "complete", _answer),
            {
                "merchant_id": merchant_id,
                "key": key,
                "state": "done",
                "status_code": answer.status_code,
                "content_type": answer.content_type,
                "body": redact(answer.body, shown_once),
                "etag": answer.etag or None,
                "retention": RETENTION,
                "erased_status": ERASED_ANSWER.status_code,
                "erased_type": ERASED_ANSWER.content_type,
                "erased_body": ERASED_ANSWER.body,
            },
        )

    async def record_erasures(self, merchant_id: str, customer_ids: Sequence[str]) -> None:
        """These customers were erased: answers stored from now on naming them are kept as
        the erasure's 410 (`complete`). Recorded before the withdrawal of the answers stored
        so far, so that every answer is either withdrawn or kept so."""
        if not customer_ids:
            return
        e = customer_erasures
        async with self._engine.begin() as conn:
            await conn.execute(
                pg_insert(e)
                .values([{"merchant_id": merchant_id, "customer_id": c} for c in customer_ids])
                .on_conflict_do_update(
                    index_elements=[e.c.merchant_id, e.c.customer_id],
                    set_={"erased_at": func.now()},
                )
            )

    async def release(self, merchant_id: str, key: str) -> None:
        """Forget a key whose attempt failed on our side (5xx), so the client may retry it."""
        async with self._autocommit.connect() as conn:
            await conn.execute(
                delete(keys_table).where(
                    keys_table.c.merchant_id == merchant_id, keys_table.c.key == key
                )
            )

    async def purge_expired(self) -> int:
        cutoff = datetime.now(UTC) - RETENTION
        async with self._engine.begin() as conn:
            result = await conn.execute(delete(keys_table).where(keys_table.c.created_at < cutoff))
            e = customer_erasures
            await conn.execute(delete(e).where(e.c.erased_at < cutoff))
        return int(result.rowcount or 0)


def _new_key(t: Table) -> ClauseElement:
    return (
        pg_insert(t)
        .values(
            merchant_id=bindparam("merchant_id"),
            key=bindparam("key"),
            fingerprint=bindparam("fingerprint"),
            state=bindparam("state"),
            locked_until=bindparam("locked_until"),
        )
        .on_conflict_do_nothing()
    )


def _answer(t: Table) -> ClauseElement:
    e = customer_erasures
    body = bindparam("body", type_=LargeBinary)
    # A customer erased in the last day that the answer names (its id in the body, as the
    # erasure's withdrawal finds it): none at all for nearly every merchant, an index probe.
    erased = exists().where(
        e.c.merchant_id == bindparam("merchant_id"),
        e.c.erased_at > func.now() - bindparam("retention", type_=Interval),
        func.strpos(func.encode(body, literal_column("'escape'")), e.c.customer_id)
        > literal_column("0"),
    )
    return (
        update(t)
        .where(t.c.merchant_id == bindparam("merchant_id"), t.c.key == bindparam("key"))
        .values(
            state=bindparam("state"),
            status_code=case((erased, bindparam("erased_status")), else_=bindparam("status_code")),
            content_type=case(
                (erased, bindparam("erased_type", type_=Text)),
                else_=bindparam("content_type", type_=Text),
            ),
            body=case((erased, bindparam("erased_body", type_=LargeBinary)), else_=body),
            etag=case((erased, None), else_=bindparam("etag", type_=Text)),
        )
    )
