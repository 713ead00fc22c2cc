"""Bearer credentials (API keys, OAuth access tokens) -> the merchant and scopes of the request.

The merchant is set in the call context here, and only here: every gRPC call the request makes
carries it in metadata, and nothing in a request body can choose it.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from fastapi import Depends, Request
from sqlalchemy import func, or_, select, update
from sqlalchemy.ext.asyncio import AsyncEngine

from pos_gateway import keys, tokens
from pos_gateway.problems import Problem
from pos_gateway.tables import api_keys, oauth_clients, register_sessions, registers
from pos_kit.db import reads

# A looked-up key (or OAuth client) is trusted this long before it is read again, so a
# revocation takes effect within this time; it spares the database one query per request.
CACHE_SECONDS = 10.0
API_KEY_PREFIX = "pos_"


@dataclass(frozen=True)
class Principal:
    merchant_id: str
    key_id: str
    scopes: frozenset[str]
    # A paired register's credential: its register and location, and who is signed in at it.
    register_id: str | None = None
    location_id: str | None = None
    staff_id: str | None = None
    session_id: str | None = None
    # What the credential may mint (routes.credentials.grantable): an API key's own mode; an
    # OAuth access token or a register's credential has none of its own (their clients and
    # registers are made without one), so they count as test: never a way to a live key.
    mode: str = "test"


class KeyStore:
    def __init__(self, engine: AsyncEngine, secret: str) -> None:
        self._engine = engine
        self._secret = secret
        # A looked-up key: until when it is trusted (monotonic), its principal, and the
        # moment (wall clock) a rolled one stops working, held by the cache too.
        self._cache: dict[bytes, tuple[float, Principal | None, float | None]] = {}
        self._clients: dict[str, tuple[float, bool]] = {}
        # What a rolled key's expiry is held to (seconds since the epoch).
        self.clock: Callable[[], float] = time.time

    def forget(self, key_id: str) -> None:
        """Drop a revoked key or client from this replica's cache at once (others within
        CACHE_SECONDS)."""
        for digest, (_, principal, _) in list(self._cache.items()):
            if principal is not None and principal.key_id == key_id:
                del self._cache[digest]
        self._clients.pop(key_id, None)

    async def client_active(self, client_id: str) -> bool:
        """Whether an OAuth client is unrevoked: its access tokens stop within CACHE_SECONDS of
        a revocation instead of living to their expiry."""
        now = time.monotonic()
        hit = self._clients.get(client_id)
        if hit is not None and hit[0] > now:
            return hit[1]
        async with reads(self._engine) as conn:
            found = await conn.scalar(
                select(oauth_clients.c.id).where(
                    oauth_clients.c.id == client_id, oauth_clients.c.revoked_at.is_(None)
                )
            )
        if len(self._clients) > 10_000:
            self._clients.clear()
        self._clients[client_id] = (now + CACHE_SECONDS, found is not None)
        return found is not None

    async def lookup(self, key: str) -> Principal | None:
        digest = keys.keyed_hash(self._secret, key)
        now = time.monotonic()
        hit = self._cache.get(digest)
        if hit is not None and hit[0] > now:
            ends = hit[2]
            return None if ends is not None and ends <= self.clock() else hit[1]
        t = api_keys
        at = datetime.fromtimestamp(self.clock(), UTC)
        async with self._engine.begin() as conn:
            row = (
                await conn.execute(
                    select(t.c.id, t.c.merchant_id, t.c.scopes, t.c.mode, t.c.expires_at).where(
                        t.c.key_hash == digest,
                        t.c.revoked_at.is_(None),
                        or_(t.c.expires_at.is_(None), t.c.expires_at > at),
                    )
                )
            ).first()
            principal = (
                Principal(row.merchant_id, row.id, frozenset(row.scopes), mode=row.mode)
                if row
                else None
            )
            if row is not None:
                await conn.execute(
                    update(api_keys).where(api_keys.c.id == row.id).values(last_used_at=func.now())
                )
        if len(self._cache) > 10_000:
            self._cache.clear()
        ends = row.expires_at.timestamp() if row is not None and row.expires_at else None
        self._cache[digest] = (now + CACHE_SECONDS, principal, ends)
        return principal

    async def register(self, credential: str) -> Principal | None:
        """The principal of a paired register's credential. Read on every request, never
        cached: a retired register (or a re-paired one's old device) stops at once on every
        replica, and who is signed in at the register is always current."""
        r, s = registers, register_sessions
        query = (
            select(r.c.id, r.c.merchant_id, r.c.location_id, s.c.id.label("session"),
                   s.c.staff_id)
            .select_from(r.outerjoin(s, (s.c.register_id == r.c.id) & s.c.ended_at.is_(None)))
            .where(r.c.credential_hash == keys.keyed_hash(self._secret, credential),
                   r.c.status == "paired")
        )  # fmt: skip
        async with reads(self._engine) as conn:
            row = (await conn.execute(query)).first()
        if row is None:
            return None
        return Principal(
            row.merchant_id, row.id, keys.REGISTER_SCOPES, row.id, row.location_id,
            row.staff_id, row.session,
        )  # fmt: skip


def _unauthorized(detail: str) -> Problem:
    return Problem(
        401, "unauthorized", detail, headers={"WWW-Authenticate": 'Bearer realm="omnitill"'}
    )


async def authenticate(request: Request) -> Principal:
    """Resolve the bearer credential of a /v1 request; the edge middleware calls this once.

    An access token from /v1/oauth/token (a JWT) is checked by its signature and claims, then
    its client must still be unrevoked; an API key by its checksum, then by a look-up of its
    keyed hash.
    """
    header = request.headers.get("authorization", "")
    scheme, _, token = header.partition(" ")
    if scheme.lower() != "bearer" or not token:
        raise _unauthorized("an API key is required: Authorization: Bearer <key>")
    token = token.strip()
    store: KeyStore = request.app.state.keys
    if token.startswith(keys.REGISTER_PREFIX):
        device = await store.register(token) if keys.well_formed_register(token) else None
        if device is None:
            raise _unauthorized("the register credential is not valid")
        return device
    if not token.startswith(API_KEY_PREFIX):
        signing: tokens.KeySet = request.app.state.tokens
        claims = signing.verify(token)
        if claims is None or not await store.client_active(claims.client_id):
            raise _unauthorized("the access token is not valid or has expired")
        return Principal(claims.merchant_id, claims.client_id, frozenset(claims.scopes))
    if not keys.well_formed(token):
        raise _unauthorized("the API key is not valid")
    principal = await store.lookup(token)
    if principal is None:
        raise _unauthorized("the API key is not valid")
    return principal


def scope_challenge(scope: str) -> dict[str, str]:
    """The RFC 6750 challenge of a 403 `insufficient_scope`: `scope` is what the request
    needs (several space-separated)."""
    return {"WWW-Authenticate": f'Bearer error="insufficient_scope", scope="{scope}"'}


def insufficient_scope(scope: str) -> Problem:
    return Problem(
        403, "insufficient_scope", f"this credential lacks the {scope} scope",
        headers=scope_challenge(scope),
    )  # fmt: skip


def not_for_a_register(request: Request, detail: str) -> Problem:
    """The 403 `insufficient_scope` of an operation only the back office may ask (what it
    reaches is every store's), to a register's credential: the same challenge as any such
    refusal, naming the scopes the operation requires (`x-required-scopes`, as its document
    says); a register holds them, but no register credential is enough."""
    route = request.scope.get("route")
    scopes = (getattr(route, "openapi_extra", None) or {}).get("x-required-scopes", [])
    headers = scope_challenge(" ".join(scopes)) if scopes else None
    return Problem(403, "insufficient_scope", detail, headers=headers)


def require(scope: str) -> Any:
    """Route dependency: the request's credential must carry `scope`."""

    async def check(request: Request) -> Principal:
        principal: Principal | None = getattr(request.state, "principal", None)
        if principal is None:
            raise _unauthorized("an API key is required: Authorization: Bearer <key>")
        if scope not in principal.scopes:
            raise insufficient_scope(scope)
        return principal

    return Depends(check)
