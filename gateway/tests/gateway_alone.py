"""The real gateway application against its real database, with the services never dialled.

Many gateway tests need only what the gateway answers itself (its edge, its stores, refusals
made before a service would be called): they serve the app in process with every service
address pointing at a port nothing listens on, and a merchant's key made directly in the
gateway's database.
"""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import httpx
import psycopg
from fastapi import FastAPI

from pos.inventory.v1 import inventory_pb2, inventory_pb2_grpc
from pos_devstack.testing import Infra, serve_in_process
from pos_gateway.admin import create_merchant, issue_key
from pos_gateway.app import create_app
from pos_gateway.settings import GatewaySettings
from pos_kit.db import make_engine

NOWHERE = "127.0.0.1:9"  # the discard port: nothing here ever answers
SERVICES = ("inventory", "promotion", "customer", "payment", "order", "dispatcher")


@asynccontextmanager
async def with_a_store(
    infra: Infra, database_url: str, name: str
) -> AsyncIterator[tuple[str, str]]:
    """The inventory service in process, and a store of the merchant of the database's first
    key made there: (the service's address, the store's id). Routes that ask inventory about
    a location (a register's pairing, a rename) then find one."""
    with psycopg.connect(database_url) as conn:
        row = conn.execute("SELECT merchant_id FROM api_keys ORDER BY id LIMIT 1").fetchone()
    assert row is not None
    async with serve_in_process("inventory", infra) as inventory:
        made = await inventory_pb2_grpc.InventoryServiceStub(inventory.channel).CreateLocation(
            inventory_pb2.CreateLocationRequest(
                request_id=str(uuid.uuid4()), name=name, currency="USD"
            ),
            metadata=(("x-merchant-id", row[0]),),
            timeout=10,
        )
        yield f"127.0.0.1:{inventory.port}", made.location.id


def settings(database_url: str, secret: str, **changes: object) -> GatewaySettings:
    """Settings with every service address pointing nowhere; `changes` override the rest."""
    values: dict[str, object] = {
        "database_url": database_url,
        "gateway_secret_key": secret,
        "token_signing_keys": ["signing-" + secret],
        **{f"{service}_addr": NOWHERE for service in SERVICES},
    }
    values.update(changes)
    return GatewaySettings(**values)  # type: ignore[arg-type]


async def merchant_key(
    database_url: str, secret: str, merchant: str, *, role: str = "admin", mode: str = "test"
) -> str:
    """A new merchant's key, made in the gateway's database as the platform would."""
    engine = make_engine(database_url, pool_size=1)
    try:
        merchant_id = await create_merchant(engine, merchant)
        return (await issue_key(engine, secret, merchant_id, role, mode=mode)).key
    finally:
        await engine.dispose()


@asynccontextmanager
async def serve(
    made: GatewaySettings, key: str | None = None
) -> AsyncIterator[tuple[FastAPI, httpx.AsyncClient]]:
    """The app started (its lifespan) and a client speaking to it in process, as `key`."""
    app = create_app(made)
    headers = {"Authorization": f"Bearer {key}"} if key else {}
    async with (
        app.router.lifespan_context(app),
        httpx.AsyncClient(
            transport=httpx.ASGITransport(app=app), base_url="http://gateway", headers=headers
        ) as client,
    ):
        yield app, client
