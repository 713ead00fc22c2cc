"""The shared rate-limit store: two gateway app instances on one real database spend one
credential's budget together, keep merchants apart, and fall back to their own buckets when
the store is unreachable."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from types import SimpleNamespace
from typing import Any

import gateway_alone
import httpx
import psycopg
import pytest
from fastapi import FastAPI
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from pos_devstack.natsd import free_port
from pos_devstack.testing import Infra
from pos_gateway import problems
from pos_gateway.admin import create_merchant, issue_key
from pos_gateway.auth import KeyStore
from pos_gateway.edge import EdgeMiddleware
from pos_gateway.idempotency import IdempotencyStore
from pos_gateway.routes.gift_cards import CodeBudget
from pos_gateway.shared_ratelimit import SharedBuckets, plain_url
from pos_kit.db import make_engine

SECRET = "shared-limit-test-secret-0123456789ab"
# A bucket of 3 that refills one token every ~3 hours: within a test nothing refills, so every
# count below is exact without depending on how fast the test runs.
RATE, BURST = 0.0001, 3
# The store's answer is awaited this long before a replica decides alone: far longer than any
# decision takes, so a slow machine never turns a shared decision into a local one here.
PATIENT = 30.0


async def _ok(request: Request) -> JSONResponse:
    return JSONResponse({"ok": True})


@asynccontextmanager
async def _replica(url: str, limits: SharedBuckets) -> AsyncIterator[httpx.AsyncClient]:
    """One gateway replica: the real edge and its own pools, on the database at `url`."""
    engine = make_engine(url, pool_size=2)
    app = Starlette(routes=[Route("/v1/thing", _ok)])
    app.state.keys = KeyStore(engine, SECRET)
    app.state.idempotency = IdempotencyStore(engine)
    app.add_middleware(EdgeMiddleware, limits=limits, max_body=1000)
    await limits.start()
    try:
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://gw") as client:
            yield client
    finally:
        await limits.close()
        await engine.dispose()


async def _key(url: str, name: str) -> str:
    engine = make_engine(url, pool_size=1)
    try:
        return (await issue_key(engine, SECRET, await create_merchant(engine, name), name)).key
    finally:
        await engine.dispose()


def _bearer(key: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}"}


@pytest.fixture(scope="module")
def database(infra: Infra) -> str:
    return infra.service_database("gateway")


async def test_two_replicas_spend_one_budget_and_merchants_stay_apart(database: str) -> None:
    shop, other = await _key(database, "Shop"), await _key(database, "Other")
    async with (
        _replica(database, SharedBuckets(database, RATE, BURST, PATIENT)) as one,
        _replica(database, SharedBuckets(database, RATE, BURST, PATIENT)) as two,
    ):
        first = await one.get("/v1/thing", headers=_bearer(shop))
        second = await one.get("/v1/thing", headers=_bearer(shop))
        assert [first.status_code, second.status_code] == [200, 200]
        assert second.headers["ratelimit"].startswith('"default";r=1;')
        # The other replica sees what the first one spent: one token left, then none.
        third = await two.get("/v1/thing", headers=_bearer(shop))
        assert third.status_code == 200
        assert third.headers["ratelimit"].startswith('"default";r=0;')
        refused = await two.get("/v1/thing", headers=_bearer(shop))
        assert refused.status_code == 429
        assert refused.json()["code"] == "rate_limited"
        assert int(refused.headers["retry-after"]) >= 1
        assert (await one.get("/v1/thing", headers=_bearer(shop))).status_code == 429
        # Another merchant's credential has its own full bucket, on either replica.
        theirs = [await r.get("/v1/thing", headers=_bearer(other)) for r in (one, two, one)]
        assert [a.status_code for a in theirs] == [200, 200, 200]


async def test_concurrent_requests_on_two_replicas_never_overspend(database: str) -> None:
    key = await _key(database, "Busy")
    async with (
        _replica(database, SharedBuckets(database, RATE, BURST, PATIENT)) as one,
        _replica(database, SharedBuckets(database, RATE, BURST, PATIENT)) as two,
    ):
        answers = await asyncio.gather(
            *(r.get("/v1/thing", headers=_bearer(key)) for r in (one, two) * 5)
        )
    assert sorted(a.status_code for a in answers) == [200] * BURST + [429] * (10 - BURST)


async def test_an_unreachable_store_falls_back_to_this_replicas_buckets(database: str) -> None:
    key = await _key(database, "Offline")
    nowhere = f"postgresql://nobody:nothing@127.0.0.1:{free_port()}/none"
    async with _replica(database, SharedBuckets(nowhere, RATE, BURST)) as alone:
        answers = [await alone.get("/v1/thing", headers=_bearer(key)) for _ in range(BURST + 1)]
    # Open, but still bounded: the local bucket of the same size decides.
    assert [a.status_code for a in answers] == [200] * BURST + [429]


def _code_replica(limits: SharedBuckets) -> FastAPI:
    """The gift card routes' code budget on a replica of its own, for credential `key_1`."""
    app = FastAPI()
    app.state.code_lookups = limits

    @app.middleware("http")
    async def as_credential(request: Request, call_next: Any) -> Any:
        request.state.principal = SimpleNamespace(key_id="key_1")
        return await call_next(request)

    @app.post("/v1/gift-cards/lookup")
    async def look_up(_: CodeBudget) -> dict[str, bool]:
        return {"ok": True}

    problems.install(app)
    return app


async def test_gift_card_code_lookups_spend_one_budget_across_replicas(database: str) -> None:
    one_limits = SharedBuckets(database, RATE, BURST, PATIENT)
    two_limits = SharedBuckets(database, RATE, BURST, PATIENT)
    api_budget = SharedBuckets(database, RATE, BURST, PATIENT)
    for limits in (one_limits, two_limits, api_budget):
        await limits.start()
    try:
        clients = [
            httpx.AsyncClient(
                transport=httpx.ASGITransport(app=_code_replica(x)), base_url="http://gw"
            )
            for x in (one_limits, two_limits)
        ]
        answers = [await clients[n % 2].post("/v1/gift-cards/lookup") for n in range(BURST + 1)]
        assert [a.status_code for a in answers] == [200] * BURST + [429]
        assert answers[-1].json()["code"] == "code_lookups_limited"
        assert int(answers[-1].headers["retry-after"]) >= 1
        # The credential's API budget is another bucket: untouched by the look-ups.
        assert (await api_budget.decide("key_1")).remaining == BURST - 1
        for client in clients:
            await client.aclose()
    finally:
        for limits in (one_limits, two_limits, api_budget):
            await limits.close()


async def _rows(database: str, keys: list[str]) -> dict[str, float]:
    async with await psycopg.AsyncConnection.connect(plain_url(database)) as conn:
        found = await conn.execute(
            "SELECT credential_id, tokens FROM rate_limit_buckets WHERE credential_id = ANY(%s)",
            (keys,),
        )
        return {key: tokens for key, tokens in await found.fetchall()}


async def _idle_for(database: str, keys: list[str], seconds: float) -> None:
    """The buckets of `keys` last used `seconds` ago."""
    async with await psycopg.AsyncConnection.connect(plain_url(database), autocommit=True) as c:
        await c.execute(
            "UPDATE rate_limit_buckets SET updated_at = now() - make_interval(secs => %s)"
            " WHERE credential_id = ANY(%s)",
            (seconds, keys),
        )


async def test_idle_buckets_are_purged_in_batches_and_live_ones_stay(database: str) -> None:
    """A row per credential, address and code budget stayed forever: the table only grew. A
    bucket left alone for as long as the slowest budget takes to fill is full, the same as no
    row, so it goes, a bounded batch at a time; one in use, or still filling under any budget
    sharing the table, stays as it is."""
    run = uuid.uuid4().hex[:8]
    fast = SharedBuckets(database, 1.0, 2, PATIENT)  # full again 2 s after its last use
    slow = SharedBuckets(database, RATE, BURST, PATIENT)  # 30,000 s
    idle = [f"purge-{run}-idle-{n}" for n in range(5)]
    filling, live = f"purge-{run}-filling", f"purge-{run}-live"
    await fast.start()
    await slow.start()
    try:
        for key in (*idle, filling):
            assert (await fast.decide(key)).allowed
        assert (await slow.decide(live)).allowed
        await _idle_for(database, idle, 2 * BURST / RATE)
        # Idle for far longer than the fast budget takes to fill, but not the slow one's: a
        # code look-up's bucket may be refilling still.
        await _idle_for(database, [filling], 600)
        horizon = max(fast.full_after, slow.full_after)
        assert horizon == BURST / RATE
        assert await slow.purge_idle(horizon, batch=2, batches=1) == 2
        assert len(await _rows(database, idle)) == 3
        assert await slow.purge_idle(horizon, batch=2, batches=10) == 3
        left = await _rows(database, [*idle, filling, live])
        assert left == {filling: 1.0, live: BURST - 1.0}, left
        # A purged bucket is a full one: the next request starts it again.
        assert (await fast.decide(idle[0])).remaining == 1
    finally:
        await fast.close()
        await slow.close()


async def test_the_gateway_purges_idle_buckets_while_it_serves(database: str) -> None:
    """The purge runs in the background of every replica with the shared store, with the
    slowest of its budgets (the token exchange's, 100 s) as the horizon."""
    run = uuid.uuid4().hex[:8]
    gone, kept = f"bg-{run}-gone", f"bg-{run}-kept"
    async with await psycopg.AsyncConnection.connect(plain_url(database), autocommit=True) as c:
        await c.execute(
            "INSERT INTO rate_limit_buckets (credential_id, tokens, allowed, updated_at)"
            " VALUES (%s, 0, false, now() - interval '1 day'),"
            " (%s, 0, false, now() - interval '90 seconds')",
            (gone, kept),
        )
    made = gateway_alone.settings(database, SECRET, rate_limit_store="postgres")
    async with gateway_alone.serve(made):
        for _ in range(200):
            if gone not in await _rows(database, [gone]):
                break
            await asyncio.sleep(0.05)
    assert await _rows(database, [gone, kept]) == {kept: 0.0}
