"""Platform administration: merchants and their API keys (used by the CLI and the devstack)."""

from __future__ import annotations

import hmac
import secrets
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import Table, func, insert, select, true, update
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from pos_gateway import audit, keys
from pos_gateway.tables import api_keys, merchants, oauth_clients
from pos_kit.db import reads
from pos_kit.ids import new_id

FIRST_KEY_NAME = "default"
# What the platform's requests make for a merchant (a key it issues, the audit entry of a key
# it gives) is kept under request ids of their own: the platform's Idempotency-Keys are its
# own, as its stored answers are (the tenant `platform`), and `api_keys.request_id` and the
# audit log's entries are one per merchant and request id. Without the prefix a merchant
# sending the key the platform used to issue it a key was refused as reusing it, or answered
# the platform's key and made none. No merchant's request id begins so: a key holding a '/'
# reaches the gateway as `key:<key>` (edge.service_request_id).
PLATFORM_REQUEST = "platform/"


def platform_request_id(request_id: str) -> str:
    """The request id under which a platform request's effects on a merchant are kept."""
    return PLATFORM_REQUEST + request_id


class RequestReused(Exception):
    """The request id already made a credential with other settings."""


@dataclass(frozen=True)
class IssuedKey:
    merchant_id: str
    key_id: str
    key: str  # shown once; only its keyed hash is stored


async def create_merchant(engine: AsyncEngine, name: str) -> str:
    merchant_id = new_id("mer")
    async with engine.begin() as conn:
        await conn.execute(insert(merchants).values(id=merchant_id, name=name))
    return merchant_id


async def create_merchant_once(
    engine: AsyncEngine, secret: str, name: str, request_id: str | None
) -> tuple[str, str | None]:
    """(merchant id, its first key) made by this request, the merchant, its key and the key's
    audit entry in one transaction. The key (every scope, test mode) is None when an earlier
    attempt of the same request made the merchant: only its hash was kept (as
    issue_key_once). RequestReused when that request named another merchant. Without a
    request id (the command line) every call makes a merchant.

    The key is in the merchant's audit log as `api_key.created` by no credential of the
    merchant's (`issued_by: platform`), as a key the platform issues later is: the first key
    can do anything, and the merchant sees where it came from."""
    merchant_id = new_id("mer")
    key = keys.generate("test")
    async with engine.begin() as conn:
        made = await conn.execute(
            pg_insert(merchants)
            .values(id=merchant_id, name=name, request_id=request_id)
            .on_conflict_do_nothing(index_elements=["request_id"])
            .returning(merchants.c.id)
        )
        if made.first() is None:
            row = (
                await conn.execute(
                    select(merchants.c.id, merchants.c.name).where(
                        merchants.c.request_id == request_id
                    )
                )
            ).one()
            if row.name != name:
                raise RequestReused()
            return str(row.id), None
        key_id = new_id("key")
        await conn.execute(
            insert(api_keys).values(
                id=key_id, merchant_id=merchant_id, name=FIRST_KEY_NAME,
                key_hash=keys.keyed_hash(secret, key), key_hint=keys.hint(key), mode="test",
                scopes=list(keys.ALL_SCOPES),
            )
        )  # fmt: skip
        details = {"name": FIRST_KEY_NAME, "scopes": list(keys.ALL_SCOPES), "mode": "test",
                   "issued_by": "platform"}  # fmt: skip
        entry = None if request_id is None else platform_request_id(request_id)
        await audit.record(
            conn, merchant_id, "api_key.created", audit.Actor(), ("api_key", key_id), details,
            entry,
        )  # fmt: skip
    return merchant_id, key


async def issue_key(
    engine: AsyncEngine,
    secret: str,
    merchant_id: str,
    name: str,
    scopes: tuple[str, ...] = keys.ALL_SCOPES,
    mode: str = "test",
) -> IssuedKey:
    unknown = set(scopes) - set(keys.ALL_SCOPES)
    if unknown:
        raise ValueError(f"unknown scopes: {sorted(unknown)}")
    key = keys.generate(mode)
    key_id = new_id("key")
    async with engine.begin() as conn:
        await conn.execute(
            insert(api_keys).values(
                id=key_id,
                merchant_id=merchant_id,
                name=name,
                key_hash=keys.keyed_hash(secret, key),
                key_hint=keys.hint(key),
                mode=mode,
                scopes=list(scopes),
            )
        )
    return IssuedKey(merchant_id, key_id, key)


async def _insert_once(
    conn: AsyncConnection, table: Table, values: dict[str, Any], same: tuple[str, ...]
) -> str | None:
    """Insert a credential row made by values["request_id"]; None when it is new, else the id
    of the row an earlier attempt of that request made (RequestReused if its `same` columns
    differ: the key was used for another request)."""
    made = await conn.execute(
        pg_insert(table)
        .values(**values)
        .on_conflict_do_nothing(index_elements=["merchant_id", "request_id"])
        .returning(table.c.id)
    )
    if made.first() is not None:
        return None
    row = (
        await conn.execute(
            select(table).where(
                table.c.merchant_id == values["merchant_id"],
                table.c.request_id == values["request_id"],
            )
        )
    ).one()
    if any(getattr(row, column) != values[column] for column in same):
        raise RequestReused()
    return str(row.id)


async def merchant_exists(engine: AsyncEngine, merchant_id: str) -> bool:
    async with reads(engine) as conn:
        found = await conn.execute(select(merchants.c.id).where(merchants.c.id == merchant_id))
        return found.first() is not None


async def issue_key_once(
    engine: AsyncEngine,
    secret: str,
    merchant_id: str,
    name: str,
    scopes: tuple[str, ...],
    mode: str,
    request_id: str,
) -> tuple[str, str | None]:
    """(id, key) of the key this request made. The key is None when an earlier attempt of the
    same request made it: only its hash was kept, so a retry never makes a second key and
    never sees the first one's secret again. The platform's requests pass
    platform_request_id's id, never a merchant's."""
    key = keys.generate(mode)
    key_id = new_id("key")
    values: dict[str, Any] = {
        "id": key_id,
        "merchant_id": merchant_id,
        "name": name,
        "key_hash": keys.keyed_hash(secret, key),
        "key_hint": keys.hint(key),
        "mode": mode,
        "scopes": list(scopes),
        "request_id": request_id,
    }
    async with engine.begin() as conn:
        earlier = await _insert_once(conn, api_keys, values, ("name", "scopes", "mode"))
    return (key_id, key) if earlier is None else (earlier, None)


@dataclass(frozen=True)
class KeyInfo:
    id: str
    name: str
    key_hint: str
    mode: str
    scopes: list[str]
    created_at: datetime
    last_used_at: datetime | None
    revoked_at: datetime | None
    expires_at: datetime | None  # a rolled key's end


async def list_keys(
    engine: AsyncEngine, merchant_id: str, before: str = "", limit: int | None = None
) -> list[KeyInfo]:
    """The merchant's keys, revoked ones too, newest first (ids are time-ordered): the
    `limit` next after id `before`, or the newest."""
    t = api_keys
    async with reads(engine) as conn:
        rows = await conn.execute(
            select(t.c.id, t.c.name, t.c.key_hint, t.c.mode, t.c.scopes, t.c.created_at,
                   t.c.last_used_at, t.c.revoked_at, t.c.expires_at)
            .where(t.c.merchant_id == merchant_id, t.c.id < before if before else true())
            .order_by(t.c.id.desc())
            .limit(limit)
        )  # fmt: skip
        return [KeyInfo(*row) for row in rows]


async def get_key(engine: AsyncEngine, merchant_id: str, key_id: str) -> KeyInfo | None:
    t = api_keys
    columns = (t.c.id, t.c.name, t.c.key_hint, t.c.mode, t.c.scopes, t.c.created_at,
               t.c.last_used_at, t.c.revoked_at, t.c.expires_at)  # fmt: skip
    query = select(*columns).where(t.c.merchant_id == merchant_id, t.c.id == key_id)
    async with reads(engine) as conn:
        row = (await conn.execute(query)).first()
        return None if row is None else KeyInfo(*row)


async def revoke_key(
    engine: AsyncEngine, merchant_id: str, key_id: str
) -> tuple[KeyInfo | None, bool]:
    """The credential as it is now, and whether this call revoked it (a second revocation
    changes nothing)."""
    async with engine.begin() as conn:
        result = await conn.execute(
            update(api_keys)
            .where(
                api_keys.c.merchant_id == merchant_id,
                api_keys.c.id == key_id,
                api_keys.c.revoked_at.is_(None),
            )
            .values(revoked_at=func.now())
        )
    return await get_key(engine, merchant_id, key_id), bool(result.rowcount)


class KeyRevoked(Exception):
    """The key to roll is revoked."""


class KeyRolled(Exception):
    """The key to roll was rolled already."""


async def roll_key(
    engine: AsyncEngine,
    secret: str,
    merchant_id: str,
    key_id: str,
    expires_in: timedelta,
    request_id: str,
) -> tuple[str, str | None] | None:
    """Replace a key: (id, key) of a new key of the same name, scopes and mode, the old one
    working until `expires_in` from now (revoked now when that is zero), in one transaction.
    None when the merchant has no such key. As issue_key_once, the new key is made once per
    request id: a retry of a roll that was made gets its key's id and None for the secret
    (RequestReused if the request id made anything else). KeyRevoked or KeyRolled when the
    old key is revoked or was rolled already."""
    t = api_keys
    async with engine.begin() as conn:
        old = (
            await conn.execute(
                select(t.c.name, t.c.mode, t.c.scopes, t.c.revoked_at, t.c.rolled_to)
                .where(t.c.merchant_id == merchant_id, t.c.id == key_id)
                .with_for_update()
            )
        ).first()
        if old is None:
            return None
        key = keys.generate(old.mode)
        new_key_id = new_id("key")
        values: dict[str, Any] = {
            "id": new_key_id,
            "merchant_id": merchant_id,
            "name": old.name,
            "key_hash": keys.keyed_hash(secret, key),
            "key_hint": keys.hint(key),
            "mode": old.mode,
            "scopes": list(old.scopes),
            "request_id": request_id,
        }
        earlier = await _insert_once(conn, t, values, ("name", "scopes", "mode"))
        if earlier is not None:
            if old.rolled_to != earlier:
                raise RequestReused()
            return earlier, None
        if old.revoked_at is not None:
            raise KeyRevoked()
        if old.rolled_to is not None:
            raise KeyRolled()
        ends = func.now() + expires_in
        await conn.execute(
            update(t)
            .where(t.c.id == key_id)
            .values(
                expires_at=ends,
                rolled_to=new_key_id,
                **({"revoked_at": func.now()} if not expires_in else {}),
            )
        )
    return new_key_id, key


@dataclass(frozen=True)
class ClientInfo:
    id: str
    name: str
    scopes: list[str]
    created_at: datetime
    revoked_at: datetime | None


async def create_client(
    engine: AsyncEngine,
    secret: str,
    merchant_id: str,
    name: str,
    scopes: tuple[str, ...],
    request_id: str,
) -> tuple[str, str | None]:
    """(client id, secret) of the client this request made; the secret is shown once and
    stored only as a keyed hash, so it is None when an earlier attempt of the same request
    made the client (as issue_key_once)."""
    client_secret = "pos_cs_" + secrets.token_urlsafe(32)
    client_id = new_id("cli")
    values: dict[str, Any] = {
        "id": client_id,
        "merchant_id": merchant_id,
        "name": name,
        "secret_hash": keys.keyed_hash(secret, client_secret),
        "scopes": list(scopes),
        "request_id": request_id,
    }
    async with engine.begin() as conn:
        earlier = await _insert_once(conn, oauth_clients, values, ("name", "scopes"))
    return (client_id, client_secret) if earlier is None else (earlier, None)


async def list_clients(
    engine: AsyncEngine, merchant_id: str, before: str = "", limit: int | None = None
) -> list[ClientInfo]:
    """The merchant's clients, revoked ones too, newest first (ids are time-ordered): the
    `limit` next after id `before`, or the newest."""
    t = oauth_clients
    async with reads(engine) as conn:
        rows = await conn.execute(
            select(t.c.id, t.c.name, t.c.scopes, t.c.created_at, t.c.revoked_at)
            .where(t.c.merchant_id == merchant_id, t.c.id < before if before else true())
            .order_by(t.c.id.desc())
            .limit(limit)
        )
        return [ClientInfo(*row) for row in rows]


async def get_client(engine: AsyncEngine, merchant_id: str, client_id: str) -> ClientInfo | None:
    t = oauth_clients
    async with reads(engine) as conn:
        row = (
            await conn.execute(
                select(t.c.id, t.c.name, t.c.scopes, t.c.created_at, t.c.revoked_at).where(
                    t.c.merchant_id == merchant_id, t.c.id == client_id
                )
            )
        ).first()
        return None if row is None else ClientInfo(*row)


async def revoke_client(
    engine: AsyncEngine, merchant_id: str, client_id: str
) -> tuple[ClientInfo | None, bool]:
    """The credential as it is now, and whether this call revoked it (a second revocation
    changes nothing)."""
    async with engine.begin() as conn:
        result = await conn.execute(
            update(oauth_clients)
            .where(
                oauth_clients.c.merchant_id == merchant_id,
                oauth_clients.c.id == client_id,
                oauth_clients.c.revoked_at.is_(None),
            )
            .values(revoked_at=func.now())
        )
    return await get_client(engine, merchant_id, client_id), bool(result.rowcount)


async def client_for_secret(
    engine: AsyncEngine, secret: str, client_id: str, client_secret: str
) -> tuple[str, list[str]] | None:
    """(merchant, scopes) of a live client whose secret matches, else None."""
    t = oauth_clients
    async with reads(engine) as conn:
        row = (
            await conn.execute(
                select(t.c.merchant_id, t.c.scopes, t.c.secret_hash).where(
                    t.c.id == client_id, t.c.revoked_at.is_(None)
                )
            )
        ).first()
    if row is None:
        return None
    if not hmac.compare_digest(bytes(row.secret_hash), keys.keyed_hash(secret, client_secret)):
        return None
    return row.merchant_id, list(row.scopes)
