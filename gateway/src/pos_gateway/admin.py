"""Platform administration: merchants and their API keys (used by the CLI and the devstack)."""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy import insert, select
from sqlalchemy.ext.asyncio import AsyncEngine

from pos_gateway import keys
from pos_gateway.tables import api_keys, merchants
from pos_kit.ids import new_id


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


async def merchant_exists(engine: AsyncEngine, merchant_id: str) -> bool:
    async with engine.connect() as conn:
        row = await conn.execute(select(merchants.c.id).where(merchants.c.id == merchant_id))
        return row.first() is not None


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
