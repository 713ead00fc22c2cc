"""Secrets shown once (API keys, OAuth client secrets) are never kept with a stored answer.

The real gateway application (its routes, edge and Idempotency-Key store) against its real
database; the services are not needed by the credential routes and are never called.
"""

from __future__ import annotations

import base64
import json
import logging
import re
import time
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass

import gateway_alone
import httpx
import psycopg
import pytest
import pytest_asyncio
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from pos_devstack.testing import Infra
from pos_gateway import tokens
from pos_gateway.admin import create_merchant, issue_key
from pos_gateway.auth import KeyStore
from pos_gateway.edge import EdgeMiddleware
from pos_gateway.idempotency import IdempotencyStore, redact
from pos_gateway.ratelimit import TokenBuckets
from pos_kit.db import make_engine

SECRET = "shown-once-test-secret-0123456789abcdef"
SIGNING = "shown-once-test-token-key-0123456789abcdef"


@dataclass
class Gateway:
    http: httpx.AsyncClient
    database_url: str

    def forget_answer(self, idempotency_key: str) -> None:
        """As if the gateway had stopped between making the credential and storing the answer
        (or had failed after making it): the retry finds no stored answer."""
        with psycopg.connect(self.database_url) as conn:
            conn.execute("DELETE FROM idempotency_keys WHERE key = %s", (idempotency_key,))

    def stored_bodies(self) -> list[bytes]:
        """Every stored answer, read with plain SQL as anyone with the table would."""
        with psycopg.connect(self.database_url) as conn:
            rows = conn.execute("SELECT body FROM idempotency_keys WHERE body IS NOT NULL")
            return [bytes(row[0]) for row in rows]


@pytest_asyncio.fixture(loop_scope="session")
async def gateway(infra: Infra) -> AsyncIterator[Gateway]:
    url = infra.service_database("gateway")
    # Live: the tests make live keys, which only a live credential may.
    key = await gateway_alone.merchant_key(url, SECRET, "Shown Once", mode="live")
    # The services are never dialled: the credential routes do not reach them.
    made = gateway_alone.settings(url, SECRET, token_signing_keys=[SIGNING])
    async with gateway_alone.serve(made, key) as (_, http):
        yield Gateway(http, url)


async def _names(gw: Gateway, path: str) -> list[str]:
    listed = await gw.http.get(path)
    assert listed.status_code == 200
    return [item["name"] for item in listed.json()["data"]]


async def test_a_replayed_api_key_creation_is_the_same_key_without_its_secret(
    gateway: Gateway,
) -> None:
    name = f"till-{uuid.uuid4().hex[:8]}"
    body = {"name": name, "scopes": ["catalog:read"]}
    headers = {"Idempotency-Key": str(uuid.uuid4())}
    first = await gateway.http.post("/v1/api-keys", json=body, headers=headers)
    assert first.status_code == 201
    made = first.json()
    assert made["key"].startswith("pos_test_") and made["secret_redacted"] is False

    replay = await gateway.http.post("/v1/api-keys", json=body, headers=headers)
    assert replay.status_code == 201
    assert replay.headers["idempotent-replayed"] == "true"
    again = replay.json()
    assert again["key"] is None and again["secret_redacted"] is True
    assert made["key"] not in replay.text
    # The same resource, field for field, but for the secret and the marker.
    assert {**again, "key": made["key"], "secret_redacted": False} == made
    assert (await _names(gateway, "/v1/api-keys")).count(name) == 1

    # The key shown the first time is the one that works.
    own = {"Authorization": f"Bearer {made['key']}"}
    assert (await gateway.http.get("/v1/api-keys", headers=own)).status_code == 403


async def test_a_replayed_oauth_client_creation_is_the_same_client_without_its_secret(
    gateway: Gateway,
) -> None:
    name = f"sync-{uuid.uuid4().hex[:8]}"
    body = {"name": name, "scopes": ["orders:read"]}
    headers = {"Idempotency-Key": str(uuid.uuid4())}
    made = (await gateway.http.post("/v1/oauth-clients", json=body, headers=headers)).json()
    assert made["client_secret"] and made["secret_redacted"] is False

    replay = await gateway.http.post("/v1/oauth-clients", json=body, headers=headers)
    assert replay.status_code == 201 and replay.headers["idempotent-replayed"] == "true"
    again = replay.json()
    assert again["client_secret"] is None and again["secret_redacted"] is True
    assert again["client_id"] == made["client_id"]
    assert made["client_secret"] not in replay.text
    assert (await _names(gateway, "/v1/oauth-clients")).count(name) == 1

    form = {
        "grant_type": "client_credentials",
        "client_id": made["client_id"],
        "client_secret": made["client_secret"],
    }
    granted = await gateway.http.post("/v1/oauth/token", data=form)
    assert granted.status_code == 200


async def test_an_answer_stored_with_its_secret_by_an_older_gateway_replays_without_it(
    gateway: Gateway,
) -> None:
    body = {"name": "upgrade", "scopes": ["catalog:read"]}
    retry = {"Idempotency-Key": str(uuid.uuid4())}
    made = (await gateway.http.post("/v1/api-keys", json=body, headers=retry)).json()
    # The table refuses such an answer now (its check): kept as a gateway did before it had
    # one, the check put back for rows written from then on.
    with psycopg.connect(gateway.database_url) as conn:
        conn.execute("ALTER TABLE idempotency_keys DROP CONSTRAINT idempotency_keys_no_secrets")
        conn.execute(
            "UPDATE idempotency_keys SET body = %s WHERE key = %s",
            (json.dumps(made).encode(), retry["Idempotency-Key"]),
        )
        conn.execute(
            "ALTER TABLE idempotency_keys ADD CONSTRAINT idempotency_keys_no_secrets"
            " CHECK (NOT stored_answer_shows_a_secret(body)) NOT VALID"
        )

    try:
        replay = await gateway.http.post("/v1/api-keys", json=body, headers=retry)
        assert replay.headers["idempotent-replayed"] == "true"
        assert made["key"] not in replay.text
        assert replay.json() == {**made, "key": None, "secret_redacted": True}
    finally:
        with psycopg.connect(gateway.database_url) as conn:
            conn.execute("DELETE FROM idempotency_keys WHERE key = %s", (retry["Idempotency-Key"],))
            conn.execute(
                "ALTER TABLE idempotency_keys VALIDATE CONSTRAINT idempotency_keys_no_secrets"
            )


@pytest.mark.parametrize(
    ("path", "secret", "body"),
    [
        ("/v1/api-keys", "key", {"scopes": ["catalog:read"], "mode": "live"}),
        ("/v1/oauth-clients", "client_secret", {"scopes": ["orders:read"]}),
    ],
)
async def test_a_retry_whose_answer_was_never_stored_makes_no_second_credential(
    gateway: Gateway, path: str, secret: str, body: dict[str, object]
) -> None:
    name = f"lost-{uuid.uuid4().hex[:8]}"
    retry = {"Idempotency-Key": str(uuid.uuid4())}
    first = await gateway.http.post(path, json={**body, "name": name}, headers=retry)
    assert first.status_code == 201 and first.json()[secret]
    gateway.forget_answer(retry["Idempotency-Key"])

    again = await gateway.http.post(path, json={**body, "name": name}, headers=retry)
    assert again.status_code == 201
    assert "idempotent-replayed" not in again.headers  # the route answered, not the store
    assert again.json() == {**first.json(), secret: None, "secret_redacted": True}
    assert (await _names(gateway, path)).count(name) == 1

    gateway.forget_answer(retry["Idempotency-Key"])
    changed = f"{name}-changed"
    other = await gateway.http.post(path, json={**body, "name": changed}, headers=retry)
    assert other.status_code == 422 and other.json()["code"] == "idempotency_key_reused"
    assert changed not in await _names(gateway, path)


async def test_the_stored_answers_and_logs_hold_no_key_or_client_secret(
    gateway: Gateway, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    shown: list[str] = []
    for n in range(3):
        key = await gateway.http.post(
            "/v1/api-keys",
            json={"name": f"k{n}", "scopes": ["orders:read"], "mode": "live" if n else "test"},
            headers={"Idempotency-Key": str(uuid.uuid4())},
        )
        client = await gateway.http.post(
            "/v1/oauth-clients",
            json={"name": f"c{n}", "scopes": ["orders:read"]},
            headers={"Idempotency-Key": str(uuid.uuid4())},
        )
        assert key.status_code == client.status_code == 201
        shown += [key.json()["key"], client.json()["client_secret"]]

    stored = gateway.stored_bodies()
    assert len(stored) >= 6
    everything = b"\n".join(stored)
    for secret in shown:
        assert secret.encode() not in everything
    # Nor any other secret of those kinds, from any earlier test (a hint is only a prefix).
    assert (
        re.search(rb"pos_(test|live)_[A-Za-z0-9]{38}|pos_cs_[A-Za-z0-9_-]{16}", everything) is None
    )
    assert everything.count(b'"secret_redacted":true') >= 6

    logged = "\n".join(f"{r.getMessage()} {r.args!r} {r.exc_text or ''}" for r in caplog.records)
    for secret in shown:
        assert secret not in logged


async def test_a_token_signed_with_an_unknown_key_or_none_is_a_401(gateway: Gateway) -> None:
    made = await gateway.http.post(
        "/v1/oauth-clients",
        json={"name": "bearer", "scopes": ["credentials:manage"]},
        headers={"Idempotency-Key": str(uuid.uuid4())},
    )
    client = made.json()
    form = {
        "grant_type": "client_credentials",
        "client_id": client["client_id"],
        "client_secret": client["client_secret"],
    }
    granted = (await gateway.http.post("/v1/oauth/token", data=form)).json()
    assert granted["expires_in"] == tokens.TOKEN_SECONDS

    def call(token: str) -> httpx.Request:
        return gateway.http.build_request(
            "GET", "/v1/api-keys", headers={"Authorization": f"Bearer {token}"}
        )

    assert (await gateway.http.send(call(granted["access_token"]))).status_code == 200
    ours = tokens.KeySet([SIGNING]).verify(granted["access_token"])
    assert ours is not None
    claims = tokens.Claims(ours.merchant_id, ours.client_id, ours.scopes, int(time.time()) + 600)
    foreign = tokens.KeySet(["another-deployment-key-0123456789abcdef"]).issue(claims)
    answer = await gateway.http.send(call(foreign))
    assert answer.status_code == 401 and answer.json()["code"] == "unauthorized"
    # The same claims, unsigned, with `alg: none` and our key's kid.
    payload = granted["access_token"].split(".")[1]
    none = {"alg": "none", "typ": "at+jwt", "kid": tokens.key_id(SIGNING)}
    unsigned = _b64(json.dumps(none).encode()) + "." + payload + "."
    assert (await gateway.http.send(call(unsigned))).status_code == 401

    # Revoking the client ends its tokens now, not at their expiry.
    revoked = await gateway.http.delete(f"/v1/oauth-clients/{client['client_id']}")
    assert revoked.status_code == 200
    assert (await gateway.http.send(call(granted["access_token"]))).status_code == 401


def _b64(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def test_redact_blanks_declared_fields_and_keeps_everything_else() -> None:
    body = json.dumps({"id": "wh_1", "secret": "whsec_abc", "url": "https://x"}).encode()
    kept = json.loads(redact(body, ("secret",)))
    assert kept == {"id": "wh_1", "secret": None, "url": "https://x", "secret_redacted": True}
    problem = b'{"code":"invalid_request","detail":"bad"}'
    assert redact(problem, ("secret",)) == problem  # holds no such field: kept as it is
    assert redact(body, ()) == body  # a route without secrets is stored byte for byte
    # Not a JSON object from a route with secrets: nothing of it is kept.
    assert json.loads(redact(b"whsec_abc", ("secret",))) == {"secret_redacted": True}
    assert json.loads(redact(b'["whsec_abc"]', ("secret",))) == {"secret_redacted": True}


async def test_an_undeclared_secret_is_refused_by_the_table_and_never_logged(
    infra: Infra, caplog: pytest.LogCaptureFixture
) -> None:
    """A route that forgot to declare its secret: the client still gets its answer, the table
    refuses the copy (check constraint), the log does not quote it, and the key is free again."""
    url = infra.service_database("gateway")
    engine = make_engine(url, pool_size=2)
    merchant = await create_merchant(engine, "Forgetful")
    key = (await issue_key(engine, SECRET, merchant, "edge")).key
    leaked = "pos_cs_" + uuid.uuid4().hex
    calls = []

    async def forgetful(request: Request) -> JSONResponse:
        calls.append(1)
        return JSONResponse({"id": "cli_1", "client_secret": leaked}, status_code=201)

    app = Starlette(routes=[Route("/v1/forgetful", forgetful, methods=["POST"])])
    app.state.keys = KeyStore(engine, SECRET)
    app.state.idempotency = IdempotencyStore(engine)
    app.add_middleware(EdgeMiddleware, limits=TokenBuckets(100.0, 100), max_body=1000)
    caplog.set_level(logging.DEBUG)
    headers = {"Authorization": f"Bearer {key}", "Idempotency-Key": "forgot-1"}
    async with httpx.AsyncClient(
        transport=httpx.ASGITransport(app=app), base_url="http://edge"
    ) as http:
        first = await http.post("/v1/forgetful", json={}, headers=headers)
        assert first.status_code == 201 and first.json()["client_secret"] == leaked
        again = await http.post("/v1/forgetful", json={}, headers=headers)
        assert again.status_code == 201 and "idempotent-replayed" not in again.headers
    await engine.dispose()
    assert len(calls) == 2  # nothing was kept to replay
    with psycopg.connect(url) as conn:
        assert conn.execute("SELECT count(*) FROM idempotency_keys").fetchone() == (0,)
    assert any("could not store the answer" in r.getMessage() for r in caplog.records)
    logged = "\n".join(f"{r.getMessage()} {r.exc_text or ''}" for r in caplog.records)
    assert leaked not in logged


async def test_a_merchants_metadata_naming_secret_fields_is_stored_and_replayed(
    infra: Infra,
) -> None:
    """The table's guard reads the answer's own fields: metadata of the merchant's that names
    `client_secret`, `key` or `secret_redacted` is data, stored and replayed byte for byte."""
    url = infra.service_database("gateway")
    engine = make_engine(url, pool_size=2)
    merchant = await create_merchant(engine, "Metadata Names")
    key = (await issue_key(engine, SECRET, merchant, "edge")).key
    calls = []
    answer = {
        "id": "ord_1",
        "metadata": {"client_secret": "hello", "key": "pos_test_hello", "secret_redacted": False},
        "lines": [{"key": "pos_live_x", "client_secret": "y"}],
    }

    async def order(request: Request) -> JSONResponse:
        calls.append(1)
        return JSONResponse(answer, status_code=201)

    app = Starlette(routes=[Route("/v1/orders-like", order, methods=["POST"])])
    app.state.keys = KeyStore(engine, SECRET)
    app.state.idempotency = IdempotencyStore(engine)
    app.add_middleware(EdgeMiddleware, limits=TokenBuckets(100.0, 100), max_body=1000)
    headers = {"Authorization": f"Bearer {key}", "Idempotency-Key": "meta-1"}
    async with httpx.AsyncClient(
        transport=httpx.ASGITransport(app=app), base_url="http://edge"
    ) as http:
        first = await http.post("/v1/orders-like", json={}, headers=headers)
        again = await http.post("/v1/orders-like", json={}, headers=headers)
    await engine.dispose()
    assert first.status_code == again.status_code == 201
    assert again.headers.get("idempotent-replayed") == "true"
    assert again.content == first.content and again.json() == answer
    assert len(calls) == 1
