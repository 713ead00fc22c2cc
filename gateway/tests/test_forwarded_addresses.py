"""A request's address behind the edge proxies: the limits that count by address (requests
without a credential, failed token requests) count each client, not the proxy every client
comes through, and a client cannot pick its address by writing X-Forwarded-For.

The real gateway application (its edge and stores) against its real database."""

from __future__ import annotations

from collections.abc import AsyncIterator

import gateway_alone
import httpx
import pytest
import pytest_asyncio
from fastapi import FastAPI
from pydantic import ValidationError

from pos_devstack.testing import Infra
from pos_gateway.app import create_app
from pos_gateway.ratelimit import TokenBuckets
from pos_gateway.settings import GatewaySettings

SECRET = "forwarded-addresses-secret-0123456789abcdef"
SIGNING = "forwarded-addresses-token-key-0123456789abcd"
NEVER = 1e-9  # a bucket that does not refill within a test
PROXY = ("10.4.0.9", 40000)  # an edge proxy's pod, in the trusted pod network


def _settings(url: str, **changes: object) -> GatewaySettings:
    # The services are never dialled: no request here reaches them.
    return gateway_alone.settings(url, SECRET, token_signing_keys=[SIGNING], **changes)


@pytest_asyncio.fixture(loop_scope="session", scope="module")
async def app(infra: Infra) -> AsyncIterator[FastAPI]:
    made = create_app(_settings(infra.service_database("gateway"), trusted_proxies="10.0.0.0/8"))
    async with made.router.lifespan_context(made):
        yield made


def _from(app: FastAPI, peer: tuple[str, int]) -> httpx.AsyncClient:
    return httpx.AsyncClient(
        transport=httpx.ASGITransport(app=app, client=peer), base_url="http://gateway"
    )


async def _statuses(http: httpx.AsyncClient, *forwarded: str) -> list[int]:
    answers = [
        await http.get("/v1/products", headers={"X-Forwarded-For": xff} if xff else {})
        for xff in forwarded
    ]
    return [a.status_code for a in answers]


def _tight(app: FastAPI) -> None:
    """One request without a credential per address, for the rest of the module."""
    layer = app.middleware_stack
    while type(layer).__name__ != "EdgeMiddleware":
        layer = layer.app  # type: ignore[union-attr]
    layer.limits = TokenBuckets(NEVER, 1)  # type: ignore[union-attr]


async def test_behind_a_trusted_proxy_each_client_has_its_own_budget(app: FastAPI) -> None:
    async with _from(app, PROXY) as http:
        await http.get("/v1/products")  # builds the middleware stack
        _tight(app)
        # Two clients through one proxy: each its own bucket.
        assert await _statuses(http, "203.0.113.5", "203.0.113.5") == [401, 429]
        assert await _statuses(http, "203.0.113.6") == [401]
        # A client writing an address of its own before the one the proxy added gains nothing:
        # the last address no trusted proxy added is the client's.
        assert await _statuses(http, "198.51.100.1, 203.0.113.5") == [429]
        # A chain of trusted proxies is looked through to the client.
        assert await _statuses(http, "203.0.113.6, 10.9.9.9") == [429]


async def test_a_peer_outside_the_trusted_proxies_is_counted_as_itself(app: FastAPI) -> None:
    async with _from(app, ("192.0.2.50", 50000)) as http:
        await http.get("/v1/products")
        _tight(app)
        # What it says in X-Forwarded-For is ignored: every request is this peer's.
        assert await _statuses(http, "203.0.113.77", "203.0.113.78") == [401, 429]


def test_trusting_every_peer_or_a_misspelt_network_is_refused_at_start_up() -> None:
    for value in ("*", "10.0.0.0/33", "proxy.internal"):
        with pytest.raises(ValidationError, match="TRUSTED_PROXIES"):
            _settings("postgresql://unused/db", trusted_proxies=value)
    parsed = _settings("postgresql://unused/db", trusted_proxies="10.0.0.0/8, fd00::/8")
    assert parsed.trusted_proxies == ["10.0.0.0/8", "fd00::/8"]
