"""What guards the credentials: a credential grants only the scopes it holds, the token
exchange (HTTP Basic, RFC 6749 errors, failed authentications throttled), rate-limit and cache
headers on every /v1 answer, and the platform's merchant creation under an Idempotency-Key.

The real gateway application (its routes, edge and stores) against its real database; of the
services only inventory, in process, which says whether a register's location is open before
a pairing code is issued for it.
"""

from __future__ import annotations

import asyncio
import base64
import json
import os
import re
import subprocess
import sys
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

import gateway_alone
import httpx
import psycopg
import pytest_asyncio
from fastapi import FastAPI

from pos_devstack.testing import Infra
from pos_gateway import audit, registers
from pos_gateway.admin import issue_key
from pos_gateway.keys import ALL_SCOPES, REGISTER_SCOPES
from pos_gateway.ratelimit import TokenBuckets
from pos_kit.db import make_engine

SECRET = "credential-guards-secret-0123456789abcdef"
SIGNING = "credential-guards-token-key-0123456789abcdef"
ADMIN = "credential-guards-platform-token-0123456789"
NEVER = 1e-9  # a bucket that does not refill within a test


@dataclass
class Gateway:
    app: FastAPI
    http: httpx.AsyncClient  # as the merchant's first key (every scope)
    database_url: str
    location_id: str  # the merchant's store, open

    async def post(self, path: str, body: dict[str, Any], **headers: str) -> httpx.Response:
        headers.setdefault("Idempotency-Key", str(uuid.uuid4()))
        return await self.http.post(path, json=body, headers=headers)

    async def client(self, scopes: list[str]) -> dict[str, Any]:
        made = await self.post("/v1/oauth-clients", {"name": "guarded", "scopes": scopes})
        assert made.status_code == 201, made.text
        return dict(made.json())

    def scalar(self, query: str, *args: object) -> Any:
        with psycopg.connect(self.database_url) as conn:
            row = conn.execute(query, args).fetchone()
            return None if row is None else row[0]


@pytest_asyncio.fixture(loop_scope="session", scope="module")
async def gateway(infra: Infra) -> AsyncIterator[Gateway]:
    url = infra.service_database("gateway")
    key = await gateway_alone.merchant_key(url, SECRET, "Guarded", role="owner")
    # The other services are never dialled: these routes do not reach them.
    async with gateway_alone.with_a_store(infra, url, "Guarded St") as (inventory, store):
        made = gateway_alone.settings(
            url, SECRET, token_signing_keys=[SIGNING], platform_admin_token=ADMIN,
            inventory_addr=inventory,
        )  # fmt: skip
        async with gateway_alone.serve(made, key) as (app, http):
            yield Gateway(app, http, url, store)


def _bearer(credential: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {credential}"}


def _basic(client_id: str, secret: str) -> dict[str, str]:
    return {"Authorization": "Basic " + base64.b64encode(f"{client_id}:{secret}".encode()).decode()}


# --- scopes --------------------------------------------------------------------------------


async def test_a_credential_grants_only_the_scopes_it_holds(gateway: Gateway) -> None:
    made = await gateway.post(
        "/v1/api-keys", {"name": "manager", "scopes": ["credentials:manage", "catalog:read"]}
    )
    assert made.status_code == 201
    manager = {**_bearer(made.json()["key"]), "Idempotency-Key": str(uuid.uuid4())}
    keys_before = gateway.scalar("SELECT count(*) FROM api_keys")
    clients_before = gateway.scalar("SELECT count(*) FROM oauth_clients")

    body = {"name": "escalated", "scopes": ["payments:write", "orders:write", "catalog:read"]}
    refused = await gateway.http.post("/v1/api-keys", json=body, headers=manager)
    assert refused.status_code == 403, refused.text
    problem = refused.json()
    assert problem["code"] == "scope_not_grantable"
    assert "payments:write, orders:write" in problem["detail"]
    assert problem["errors"] == [
        {"field": "scopes", "reason": "not held by this credential: payments:write, orders:write"}
    ]
    client_body = {"name": "escalated", "scopes": ["payments:write"]}
    refused = await gateway.http.post(
        "/v1/oauth-clients", json=client_body, headers={**manager, "Idempotency-Key": "c-1"}
    )
    assert refused.status_code == 403 and refused.json()["code"] == "scope_not_grantable"
    assert refused.json()["errors"][0]["field"] == "scopes"
    # Nothing was made, and both attempts are in the audit log, naming the credential.
    assert gateway.scalar("SELECT count(*) FROM api_keys") == keys_before
    assert gateway.scalar("SELECT count(*) FROM oauth_clients") == clients_before
    log = await gateway.http.get("/v1/audit-log", params={"action": "credential.refused"})
    entries = [e for e in log.json()["data"] if e["credential_id"] == made.json()["id"]]
    assert [(e["details"]["kind"], e["details"]["not_held"]) for e in entries] == [
        ("oauth_client", ["payments:write"]),
        ("api_key", ["payments:write", "orders:write"]),
    ]

    # What it holds, it may grant; the merchant's first key (every scope) grants anything.
    own = {"name": "reader", "scopes": ["catalog:read"]}
    granted = await gateway.http.post(
        "/v1/api-keys", json=own, headers={**manager, "Idempotency-Key": "k-2"}
    )
    assert granted.status_code == 201
    assert (await gateway.post("/v1/api-keys", body)).status_code == 201
    assert (await gateway.post("/v1/oauth-clients", client_body)).status_code == 201


async def test_an_access_token_grants_only_the_scopes_it_carries(gateway: Gateway) -> None:
    client = await gateway.client(["credentials:manage"])
    form = {"grant_type": "client_credentials", "client_id": client["client_id"],
            "client_secret": client["client_secret"]}  # fmt: skip
    token = (await gateway.http.post("/v1/oauth/token", data=form)).json()["access_token"]
    body = {"name": "escalated", "scopes": ["payments:write"]}
    for path in ("/v1/api-keys", "/v1/oauth-clients"):
        headers = {**_bearer(token), "Idempotency-Key": str(uuid.uuid4())}
        refused = await gateway.http.post(path, json=body, headers=headers)
        assert refused.status_code == 403 and refused.json()["code"] == "scope_not_grantable"


async def test_a_credential_revokes_only_credentials_within_its_own_scopes(
    gateway: Gateway,
) -> None:
    """`credentials:manage` is no way past one's own scopes: revoking a key or client that
    holds a scope the caller lacks is a 403 `insufficient_scope` naming those scopes, the
    credential stays, and the attempt is in the audit log (`credential.refused`). Within its
    own scopes a credential revokes as ever; an unknown id is still a 404."""
    made = await gateway.post(
        "/v1/api-keys", {"name": "manager", "scopes": ["credentials:manage", "catalog:read"]}
    )
    assert made.status_code == 201, made.text
    manager = made.json()
    wide = {"name": "wide", "scopes": ["catalog:read", "payments:write", "orders:write"]}
    wide_key = (await gateway.post("/v1/api-keys", wide)).json()
    wide_client = await gateway.client(wide["scopes"])
    narrow = {"name": "narrow", "scopes": ["catalog:read"]}
    narrow_key = (await gateway.post("/v1/api-keys", narrow)).json()
    narrow_client = await gateway.client(narrow["scopes"])
    # An access token of a client holding `credentials:manage` is held the same way.
    client = await gateway.client(["credentials:manage", "catalog:read", "payments:write"])
    form = {"grant_type": "client_credentials", "client_id": client["client_id"],
            "client_secret": client["client_secret"]}  # fmt: skip
    token = (await gateway.http.post("/v1/oauth/token", data=form)).json()["access_token"]

    revoked_at = "SELECT revoked_at FROM {} WHERE id = %s"
    cases = [
        (manager["key"], "api-keys", "api_keys", wide_key["id"], "payments:write orders:write"),
        (manager["key"], "oauth-clients", "oauth_clients", wide_client["id"],
         "payments:write orders:write"),
        (token, "api-keys", "api_keys", wide_key["id"], "orders:write"),
        (token, "oauth-clients", "oauth_clients", wide_client["id"], "orders:write"),
    ]  # fmt: skip
    for credential, path, table, ident, missing in cases:
        refused = await gateway.http.delete(f"/v1/{path}/{ident}", headers=_bearer(credential))
        assert refused.status_code == 403, (path, refused.text)
        problem = refused.json()
        assert problem["code"] == "insufficient_scope", problem
        assert missing.replace(" ", ", ") in problem["detail"]
        assert refused.headers["www-authenticate"] == (
            f'Bearer error="insufficient_scope", scope="{missing}"'
        )
        assert gateway.scalar(revoked_at.format(table), ident) is None
    # The wide credentials still work.
    still = await gateway.http.get("/v1/api-keys", headers=_bearer(wide_key["key"]))
    assert still.status_code == 403 and still.json()["code"] == "insufficient_scope"
    form = {"grant_type": "client_credentials", "client_id": wide_client["client_id"],
            "client_secret": wide_client["client_secret"]}  # fmt: skip
    assert (await gateway.http.post("/v1/oauth/token", data=form)).status_code == 200
    log = await gateway.http.get("/v1/audit-log", params={"action": "credential.refused"})
    refusals = [
        (e["credential_id"], e["resource_id"], e["details"]["not_held"])
        for e in log.json()["data"]
        if e["details"].get("action") == "revoke"
    ]
    assert sorted(refusals) == sorted(
        (who, ident, missing.split(" "))
        for who, (_, _, _, ident, missing) in zip(
            [manager["id"], manager["id"], client["client_id"], client["client_id"]],
            cases,
            strict=True,
        )
    )

    # Within its own scopes it revokes; an unknown id is a 404 before anything else.
    for path, ident in (("api-keys", narrow_key["id"]), ("oauth-clients", narrow_client["id"])):
        done = await gateway.http.delete(f"/v1/{path}/{ident}", headers=_bearer(manager["key"]))
        assert done.status_code == 200, done.text
        assert done.json()["revoked_at"] is not None
    for path in ("api-keys", "oauth-clients"):
        missing_one = await gateway.http.delete(
            f"/v1/{path}/key_nosuch", headers=_bearer(manager["key"])
        )
        assert missing_one.status_code == 404, missing_one.text
    # A credential holding every scope the target holds (the merchant's first key) revokes it.
    for path, ident in (("api-keys", wide_key["id"]), ("oauth-clients", wide_client["id"])):
        done = await gateway.http.delete(f"/v1/{path}/{ident}")
        assert done.status_code == 200, done.text


async def test_the_scopes_a_refusal_names_fit_the_published_header(gateway: Gateway) -> None:
    """Revoking or rolling a key that holds every scope, with a credential holding only
    `credentials:manage` and `catalog:read`, names all the others in `WWW-Authenticate`: the
    longest such header the gateway sends fits the schema it publishes for it."""
    made = await gateway.post(
        "/v1/api-keys", {"name": "manager", "scopes": ["credentials:manage", "catalog:read"]}
    )
    assert made.status_code == 201, made.text
    manager = _bearer(made.json()["key"])
    every = await gateway.post("/v1/api-keys", {"name": "every", "scopes": list(ALL_SCOPES)})
    assert every.status_code == 201, every.text
    ident = every.json()["id"]
    schema = gateway.app.openapi()["components"]["headers"]["WWW-Authenticate-Scope"]["schema"]
    beyond = " ".join(s for s in ALL_SCOPES if s not in ("credentials:manage", "catalog:read"))
    for refused in (
        await gateway.http.delete(f"/v1/api-keys/{ident}", headers=manager),
        await gateway.http.post(
            f"/v1/api-keys/{ident}/roll", json={},
            headers={**manager, "Idempotency-Key": str(uuid.uuid4())},
        ),
    ):  # fmt: skip
        assert refused.status_code == 403, refused.text
        assert refused.json()["code"] == "insufficient_scope"
        header = refused.headers["www-authenticate"]
        assert header == f'Bearer error="insufficient_scope", scope="{beyond}"'
        assert len(header) <= schema["maxLength"], (len(header), schema["maxLength"])
        assert re.fullmatch(schema["pattern"], header)


async def test_a_credentials_own_entries_say_what_the_platforms_do(gateway: Gateway) -> None:
    """A key a merchant's credential makes is `api_key.created` with its name, scopes and
    mode, as one the platform issues is; a revocation is `api_key.revoked` (or
    `oauth_client.revoked`) naming what was revoked: its name and scopes, and a key's mode.
    Until 2026-12-05 the merchant's `api_key.created` had no mode and the revocations' details
    were empty. A refusal to revoke says what it is in English: `an API key`, `an OAuth
    client` (it said `a api key`)."""
    body = {"name": "entries", "scopes": ["catalog:read"], "mode": "test"}
    key = (await gateway.post("/v1/api-keys", body)).json()
    client = await gateway.client(["catalog:read"])
    assert (await gateway.http.delete(f"/v1/api-keys/{key['id']}")).status_code == 200
    assert (await gateway.http.delete(f"/v1/oauth-clients/{client['id']}")).status_code == 200

    async def details(action: str, ident: str) -> Any:
        log = await gateway.http.get(
            "/v1/audit-log", params={"action": action, "resource_id": ident}
        )
        (entry,) = log.json()["data"]
        return entry["details"]

    assert await details("api_key.created", key["id"]) == body
    assert await details("api_key.revoked", key["id"]) == body
    assert await details("oauth_client.revoked", client["id"]) == {
        "name": "guarded",
        "scopes": ["catalog:read"],
    }

    narrow = (await gateway.post(
        "/v1/api-keys", {"name": "narrow", "scopes": ["credentials:manage"]}
    )).json()  # fmt: skip
    wide = (await gateway.post("/v1/api-keys", {"name": "w", "scopes": ["orders:read"]})).json()
    wide_client = await gateway.client(["orders:read"])
    for path, ident, kind in (
        ("api-keys", wide["id"], "an API key"),
        ("oauth-clients", wide_client["id"], "an OAuth client"),
    ):
        refused = await gateway.http.delete(f"/v1/{path}/{ident}", headers=_bearer(narrow["key"]))
        assert refused.status_code == 403, refused.text
        assert f"cannot act on {kind} holding scopes it lacks" in refused.json()["detail"]


async def _register(gateway: Gateway) -> str:
    """An unpaired register of the fixture's merchant at its store, made directly."""
    merchant = gateway.scalar("SELECT merchant_id FROM api_keys ORDER BY id LIMIT 1")
    engine = make_engine(gateway.database_url, pool_size=1)
    try:
        made = await registers.create(
            engine, merchant, gateway.location_id, "Till", audit.Actor(), str(uuid.uuid4())
        )
    finally:
        await engine.dispose()
    return made.id


async def test_a_pairing_code_needs_every_scope_its_register_will_carry(gateway: Gateway) -> None:
    """The device redeeming a code gets every register scope: `registers:manage` alone is no
    way to them. Refused as a key asking for more than it holds is, and nothing is written."""
    register = await _register(gateway)
    path = f"/v1/registers/{register}/pairing-codes"
    selling = [s for s in ALL_SCOPES if s in REGISTER_SCOPES]
    manager = await gateway.post(
        "/v1/api-keys", {"name": "registers only", "scopes": ["registers:manage"]}
    )
    assert manager.status_code == 201, manager.text
    client = await gateway.client(["registers:manage", "catalog:read", "orders:write"])
    form = {"grant_type": "client_credentials", "client_id": client["client_id"],
            "client_secret": client["client_secret"]}  # fmt: skip
    token = (await gateway.http.post("/v1/oauth/token", data=form)).json()["access_token"]
    audit_before = gateway.scalar("SELECT count(*) FROM audit_log")
    key = str(uuid.uuid4())

    held_by_client = ("catalog:read", "orders:write")
    cases = [
        (manager.json()["key"], selling),
        (token, [s for s in selling if s not in held_by_client]),
    ]
    for credential, missing in cases:
        refused = await gateway.http.post(
            path, headers={**_bearer(credential), "Idempotency-Key": key}
        )
        assert refused.status_code == 403, refused.text
        problem = refused.json()
        names = ", ".join(missing)
        assert problem["code"] == "scope_not_grantable" and names in problem["detail"]
        assert problem["errors"] == [
            {"field": "scopes", "reason": f"not held by this credential: {names}"}
        ]
    # No code, no audit entry, and the Idempotency-Key kept nothing.
    count = "SELECT count(*) FROM register_pairing_codes WHERE register_id = %s"
    assert gateway.scalar(count, register) == 0
    assert gateway.scalar("SELECT count(*) FROM audit_log") == audit_before

    # Holding every register scope is enough; the merchant's full key may as ever, and its
    # retry of the refused requests' Idempotency-Key is a first attempt.
    seller = await gateway.post(
        "/v1/api-keys", {"name": "pairs tills", "scopes": ["registers:manage", *selling]}
    )
    for credential, idempotency_key in ((seller.json()["key"], str(uuid.uuid4())), (None, key)):
        headers = {"Idempotency-Key": idempotency_key}
        if credential is not None:
            headers.update(_bearer(credential))
        issued = await gateway.http.post(path, headers=headers)
        assert issued.status_code == 201, issued.text
        assert issued.headers.get("idempotent-replayed") is None and issued.json()["code"]
    paired = await gateway.http.post(
        "/v1/registers/pair", json={"code": issued.json()["code"]}, headers={"Authorization": ""}
    )
    assert paired.status_code == 201, paired.text
    assert sorted(paired.json()["scopes"]) == sorted(REGISTER_SCOPES)

    # The operation's description names every scope the register credential carries.
    document = gateway.app.openapi()
    described = document["paths"]["/v1/registers/{register_id}/pairing-codes"]["post"]
    assert all(f"`{s}`" in described["description"] for s in REGISTER_SCOPES)


async def _paired(gateway: Gateway) -> str:
    """The credential of a register paired at the fixture's store."""
    register = await _register(gateway)
    issued = await gateway.http.post(
        f"/v1/registers/{register}/pairing-codes", headers={"Idempotency-Key": str(uuid.uuid4())}
    )
    assert issued.status_code == 201, issued.text
    paired = await gateway.http.post(
        "/v1/registers/pair", json={"code": issued.json()["code"]}, headers={"Authorization": ""}
    )
    assert paired.status_code == 201, paired.text
    return str(paired.json()["credential"])


# What only the back office does, asked with a body each that is valid (so the refusal is
# what answers): every store's settings, groups, returns and a customer's export.
BACK_OFFICE_ONLY = [
    ("PUT", "/v1/payment-settings", "/v1/payment-settings",
     {"authorization_window_seconds": 7200}),
    ("PUT", "/v1/gift-card-settings", "/v1/gift-card-settings", {"max_balance": 90_000}),
    ("PATCH", "/v1/order-settings", "/v1/order-settings", {"return_window_days": 365}),
    ("PUT", "/v1/loyalty-program", "/v1/loyalty-program",
     {"enabled": True, "points_per_unit": 1, "point_value_minor": 1000}),
    ("POST", "/v1/customer-groups", "/v1/customer-groups", {"name": "Staff"}),
    ("PATCH", "/v1/customer-groups/{group_id}", "/v1/customer-groups/grp_x", {"name": "Gold"}),
    ("DELETE", "/v1/customer-groups/{group_id}", "/v1/customer-groups/grp_x", None),
    ("POST", "/v1/customer-groups/{group_id}/members", "/v1/customer-groups/grp_x/members",
     {"customer_ids": ["cus_x"]}),
    ("POST", "/v1/customer-groups/{group_id}/members/remove",
     "/v1/customer-groups/grp_x/members/remove", {"customer_ids": ["cus_x"]}),
    ("GET", "/v1/returns", "/v1/returns", None),
    ("GET", "/v1/customers/{customer_id}/export", "/v1/customers/cus_x/export", None),
]  # fmt: skip


async def test_a_register_refused_the_back_office_s_operations_is_told_the_scope(
    gateway: Gateway,
) -> None:
    """A register's credential holds the scopes these operations ask for, but what they reach
    is every store's: each is a 403 `insufficient_scope` with the RFC 6750 challenge every
    other such refusal carries, naming the scopes the operation requires (as its document
    does)."""
    device = _bearer(await _paired(gateway))
    document = gateway.app.openapi()
    for method, template, path, body in BACK_OFFICE_ONLY:
        required = document["paths"][template][method.lower()]["x-required-scopes"]
        headers = {**device, "Idempotency-Key": str(uuid.uuid4())}
        refused = await gateway.http.request(method, path, json=body, headers=headers)
        assert refused.status_code == 403, (path, refused.text)
        assert refused.json()["code"] == "insufficient_scope", (path, refused.text)
        assert refused.headers.get("www-authenticate") == (
            f'Bearer error="insufficient_scope", scope="{" ".join(required)}"'
        ), path


async def test_a_register_naming_another_store_in_a_filter_is_answered_as_a_made_up_one(
    gateway: Gateway,
) -> None:
    """A register's list filter naming another of the merchant's stores is the 404 the
    merchant's key gets for a location it does not have, word for word: `errors[]` naming the
    parameter, so nothing tells another store from a made-up id."""
    device = _bearer(await _paired(gateway))
    made = await gateway.post(
        "/v1/locations", {"name": "Elsewhere St", "currency": "USD", "tax_rate_bps": 0}
    )
    assert made.status_code == 201, made.text
    other, made_up = made.json()["id"], "loc_made_up_0123456789"
    for path in ("/v1/orders", "/v1/inventory", "/v1/shifts", "/v1/payments", "/v1/registers"):
        key = await gateway.http.get(path, params={"location_id": made_up})
        assert key.status_code == 404, (path, key.text)
        assert key.json()["errors"] == [{"field": "location_id", "reason": "no such location"}]
        till = await gateway.http.get(path, params={"location_id": other}, headers=device)
        assert till.status_code == 404, (path, till.text)
        assert till.json() == json.loads(key.text.replace(made_up, other)), path


async def _live_key(gateway: Gateway, scopes: tuple[str, ...]) -> str:
    """A live key of the fixture's merchant, made as the platform would (nothing on /v1 may
    make the first one)."""
    merchant = gateway.scalar("SELECT merchant_id FROM api_keys ORDER BY id LIMIT 1")
    engine = make_engine(gateway.database_url, pool_size=1)
    try:
        return (await issue_key(engine, SECRET, merchant, "live", scopes, "live")).key
    finally:
        await engine.dispose()


async def test_a_test_credential_never_makes_a_live_key(gateway: Gateway) -> None:
    keys_before = gateway.scalar("SELECT count(*) FROM api_keys")
    live = {"name": "escalated", "scopes": ["catalog:read"], "mode": "live"}
    # The merchant's first key is a test key, however many scopes it holds.
    refused = await gateway.post("/v1/api-keys", live)
    assert refused.status_code == 403, refused.text
    problem = refused.json()
    assert problem["code"] == "mode_not_grantable"
    reason = "a test credential makes test keys only"
    assert problem["errors"] == [{"field": "mode", "reason": reason}]
    # An access token has no mode of its own: it counts as test, whichever key made its client.
    client = await gateway.client(["credentials:manage", "catalog:read"])
    form = {"grant_type": "client_credentials", "client_id": client["client_id"],
            "client_secret": client["client_secret"]}  # fmt: skip
    token = (await gateway.http.post("/v1/oauth/token", data=form)).json()["access_token"]
    headers = {**_bearer(token), "Idempotency-Key": str(uuid.uuid4())}
    by_token = await gateway.http.post("/v1/api-keys", json=live, headers=headers)
    assert by_token.status_code == 403 and by_token.json()["code"] == "mode_not_grantable"
    assert gateway.scalar("SELECT count(*) FROM api_keys") == keys_before
    log = await gateway.http.get("/v1/audit-log", params={"action": "credential.refused"})
    modes = [(e["credential_id"], e["details"].get("mode"), e["details"].get("held_mode"))
             for e in log.json()["data"] if e["details"]["name"] == "escalated"]  # fmt: skip
    assert (client["client_id"], "live", "test") in modes
    assert sum(1 for _, mode, held in modes if (mode, held) == ("live", "test")) == 2

    # A test key may make test keys; a live key may make both.
    assert (await gateway.post("/v1/api-keys", {**live, "mode": "test"})).status_code == 201
    owner = _bearer(await _live_key(gateway, ("credentials:manage", "catalog:read")))
    for mode in ("live", "test"):
        made = await gateway.http.post(
            "/v1/api-keys", json={**live, "name": f"by live: {mode}", "mode": mode},
            headers={**owner, "Idempotency-Key": str(uuid.uuid4())},
        )  # fmt: skip
        assert made.status_code == 201, made.text
        assert made.json()["mode"] == mode and made.json()["key"].startswith(f"pos_{mode}_")


async def test_a_test_credential_never_revokes_a_live_key(gateway: Gateway) -> None:
    """As it makes no live key, a test credential (a test key, an access token) revokes none:
    a 403 `mode_not_grantable`, the key stays and works, and the attempt is in the audit log
    (`credential.refused` on that key). A live key revokes live keys; a test key test ones."""
    live = await _live_key(gateway, ("catalog:read",))
    live_id = gateway.scalar(
        "SELECT id FROM api_keys WHERE mode = 'live' ORDER BY created_at DESC, id DESC LIMIT 1"
    )
    made = await gateway.post(
        "/v1/api-keys", {"name": "test manager", "scopes": ["credentials:manage", "catalog:read"]}
    )
    manager = made.json()
    client = await gateway.client(["credentials:manage", "catalog:read"])
    form = {"grant_type": "client_credentials", "client_id": client["client_id"],
            "client_secret": client["client_secret"]}  # fmt: skip
    token = (await gateway.http.post("/v1/oauth/token", data=form)).json()["access_token"]
    for credential, who in ((manager["key"], manager["id"]), (token, client["client_id"]),
                            (None, None)):  # fmt: skip
        # None: the merchant's first key, a test key of every scope.
        headers = _bearer(credential) if credential else {}
        refused = await gateway.http.delete(f"/v1/api-keys/{live_id}", headers=headers)
        assert refused.status_code == 403, refused.text
        assert refused.json()["code"] == "mode_not_grantable", refused.json()
        assert gateway.scalar("SELECT revoked_at FROM api_keys WHERE id = %s", live_id) is None
        if who is not None:
            log = await gateway.http.get("/v1/audit-log", params={"action": "credential.refused"})
            entries = [e for e in log.json()["data"]
                       if e["credential_id"] == who and e["resource_id"] == live_id]  # fmt: skip
            assert [(e["details"]["action"], e["details"]["mode"], e["details"]["held_mode"])
                    for e in entries] == [("revoke", "live", "test")]  # fmt: skip
    still = await gateway.http.get("/v1/products", headers=_bearer(live))
    assert still.status_code != 401, still.text

    # A live key revokes a live key; a test key revokes a test key.
    owner = _bearer(await _live_key(gateway, ("credentials:manage", "catalog:read")))
    done = await gateway.http.delete(f"/v1/api-keys/{live_id}", headers=owner)
    assert done.status_code == 200 and done.json()["revoked_at"] is not None, done.text
    narrow = (await gateway.post("/v1/api-keys", {"name": "t", "scopes": ["catalog:read"]})).json()
    done = await gateway.http.delete(
        f"/v1/api-keys/{narrow['id']}", headers=_bearer(manager["key"])
    )
    assert done.status_code == 200, done.text


async def test_the_platform_takes_a_merchant_live_with_a_key_of_every_scope(
    gateway: Gateway,
) -> None:
    """A merchant's own credentials make no live key: the platform issues it. Shown once; a
    retry with the same Idempotency-Key makes no second key; an unknown merchant is a 404
    and a merchant's own key is no platform credential."""
    made = await gateway.http.post(
        "/v1/admin/merchants", json={"name": "Going Live"}, headers=_bearer(ADMIN)
    )
    merchant, first = made.json()["id"], made.json()["api_key"]
    headers = {**_bearer(ADMIN), "Idempotency-Key": str(uuid.uuid4())}
    path = f"/v1/admin/merchants/{merchant}/api-keys"
    issued = await gateway.http.post(path, json={"name": "live"}, headers=headers)
    assert issued.status_code == 201, issued.text
    key = issued.json()
    assert key["mode"] == "live" and key["key"].startswith("pos_live_")
    assert sorted(key["scopes"]) == sorted(ALL_SCOPES) and key["secret_redacted"] is False
    replay = await gateway.http.post(path, json={"name": "live"}, headers=headers)
    assert replay.status_code == 201
    assert replay.json() == {**key, "key": None, "secret_redacted": True}
    count = "SELECT count(*) FROM api_keys WHERE merchant_id = %s AND mode = 'live'"
    assert gateway.scalar(count, merchant) == 1

    # The live key is the merchant's, and may make live keys of its own.
    live = _bearer(key["key"])
    own = await gateway.http.get("/v1/api-keys", headers=live)
    assert sorted(k["mode"] for k in own.json()["data"]) == ["live", "test"]
    more = await gateway.http.post(
        "/v1/api-keys", json={"name": "till", "scopes": ["orders:write"], "mode": "live"},
        headers={**live, "Idempotency-Key": str(uuid.uuid4())},
    )  # fmt: skip
    assert more.status_code == 201 and more.json()["mode"] == "live", more.text

    unknown = await gateway.http.post(
        "/v1/admin/merchants/mer_nosuch/api-keys", json={"name": "live"}, headers=_bearer(ADMIN)
    )
    assert unknown.status_code == 404 and unknown.json()["code"] == "resource_missing"
    by_merchant = await gateway.http.post(path, json={"name": "x"}, headers=_bearer(first))
    assert by_merchant.status_code == 401
    assert gateway.scalar(count, merchant) == 2


# --- rolling a key ----------------------------------------------------------------------


async def _roll(
    gateway: Gateway, key_id: str, body: dict[str, Any], credential: str | None = None, **h: str
) -> httpx.Response:
    headers = {**(_bearer(credential) if credential else {}), **h}
    headers.setdefault("Idempotency-Key", str(uuid.uuid4()))
    return await gateway.http.post(f"/v1/api-keys/{key_id}/roll", json=body, headers=headers)


async def test_rolling_a_key_keeps_the_old_one_working_until_its_expiry(gateway: Gateway) -> None:
    """A rolled key is replaced by a new one of the same name, scopes and mode (its secret in
    this answer only); the old one works until `expires_in_seconds` from now, on every path
    (the gateway's cache too), and is refused after. A retry under the same Idempotency-Key
    answers the same key without its secret and makes no second one; the roll is one
    `api_key.rolled` entry, and neither secret is stored or logged."""
    body = {"name": "till to roll", "scopes": ["credentials:manage", "catalog:read"]}
    old = (await gateway.post("/v1/api-keys", body)).json()
    works = await gateway.http.get("/v1/api-keys", headers=_bearer(old["key"]))
    assert works.status_code == 200, works.text

    rolled = await _roll(
        gateway, old["id"], {"expires_in_seconds": 3600}, **{"Idempotency-Key": "roll-1"}
    )
    assert rolled.status_code == 201, rolled.text
    new = rolled.json()
    assert new["id"] != old["id"] and new["key"] != old["key"]
    assert (new["name"], new["scopes"], new["mode"]) == (old["name"], old["scopes"], "test")
    assert new["key"].startswith("pos_test_") and new["secret_redacted"] is False
    assert new["expires_at"] is None and new["revoked_at"] is None
    assert new["rolled_from"]["id"] == old["id"]
    assert new["rolled_from"]["expires_at"] is not None
    assert new["rolled_from"]["revoked_at"] is None
    again = await _roll(
        gateway, old["id"], {"expires_in_seconds": 3600}, **{"Idempotency-Key": "roll-1"}
    )
    assert again.status_code == 201, again.text
    assert again.json() == {**new, "key": None, "secret_redacted": True}
    # Its stored answer gone (past 24 hours), a retry still finds the key it made.
    with psycopg.connect(gateway.database_url) as conn:
        conn.execute("DELETE FROM idempotency_keys WHERE key = 'roll-1'")
    late = await _roll(
        gateway, old["id"], {"expires_in_seconds": 3600}, **{"Idempotency-Key": "roll-1"}
    )
    assert late.status_code == 201, late.text
    assert late.json() == {**new, "key": None, "secret_redacted": True}
    count = "SELECT count(*) FROM api_keys WHERE name = %s"
    assert gateway.scalar(count, body["name"]) == 2

    # Both work until the old one's expiry.
    for key in (old["key"], new["key"]):
        works = await gateway.http.get("/v1/api-keys", headers=_bearer(key))
        assert works.status_code == 200, works.text
    listed = {k["id"]: k for k in works.json()["data"]}
    assert listed[old["id"]]["expires_at"] == new["rolled_from"]["expires_at"]
    # An hour on, the old one is refused: from the cache that holds it, then from the table.
    store = gateway.app.state.keys
    real = store.clock
    store.clock = lambda: real() + 3601
    try:
        refused = await gateway.http.get("/v1/api-keys", headers=_bearer(old["key"]))
        assert refused.status_code == 401, refused.text
        store.forget(old["id"])
        refused = await gateway.http.get("/v1/api-keys", headers=_bearer(old["key"]))
        assert refused.status_code == 401, refused.text
        works = await gateway.http.get("/v1/api-keys", headers=_bearer(new["key"]))
        assert works.status_code == 200, works.text
    finally:
        store.clock = real
    # Rolled once, it cannot be rolled again.
    twice = await _roll(gateway, old["id"], {})
    assert twice.status_code == 409 and twice.json()["code"] == "api_key_rolled", twice.text

    # expires_in_seconds 0: the old key stops at once (the cache that held it too).
    now = await _roll(gateway, new["id"], {"expires_in_seconds": 0}, new["key"])
    assert now.status_code == 201, now.text
    assert now.json()["rolled_from"]["revoked_at"] is not None
    refused = await gateway.http.get("/v1/api-keys", headers=_bearer(new["key"]))
    assert refused.status_code == 401, refused.text
    newest = now.json()["key"]
    assert (await gateway.http.get("/v1/api-keys", headers=_bearer(newest))).status_code == 200
    # A revoked key is not rolled either; bounds are checked.
    revoked = await _roll(gateway, new["id"], {})
    assert revoked.status_code == 409 and revoked.json()["code"] == "api_key_revoked", revoked.text
    for wrong in (-1, 7 * 24 * 3600 + 1):
        bad = await _roll(gateway, now.json()["id"], {"expires_in_seconds": wrong})
        assert bad.status_code == 400, bad.text
    # A default: a day.
    default = await _roll(gateway, now.json()["id"], {})
    assert default.status_code == 201, default.text
    assert default.json()["rolled_from"]["expires_at"] is not None

    log = await gateway.http.get("/v1/audit-log", params={"action": "api_key.rolled"})
    entries = [e for e in log.json()["data"] if e["details"]["name"] == body["name"]]
    # Which kind of key was rolled, as a creation's and a revocation's entries say.
    assert {e["details"]["mode"] for e in entries} == {"test"}
    assert sorted((e["resource_id"], e["details"]["new_key_id"]) for e in entries) == sorted(
        [(old["id"], new["id"]), (new["id"], now.json()["id"]),
         (now.json()["id"], default.json()["id"])]
    )  # fmt: skip
    for secret in (old["key"], new["key"], newest, default.json()["key"]):
        assert secret not in log.text
        stored = "SELECT count(*) FROM idempotency_keys WHERE position(%s::bytea in body) > 0"
        assert gateway.scalar(stored, secret.encode()) == 0


async def test_rolling_is_held_as_revoking(gateway: Gateway) -> None:
    """Only a key within the caller's scopes (403 `insufficient_scope`) and mode (403
    `mode_not_grantable`) is rolled, each refusal in the audit log; another merchant's key
    is a 404; a live key rolls into a live key."""
    made = await gateway.post(
        "/v1/api-keys", {"name": "roller", "scopes": ["credentials:manage", "catalog:read"]}
    )
    manager = made.json()
    wide_body = {"name": "wide roll", "scopes": ["catalog:read", "orders:write"]}
    wide = (await gateway.post("/v1/api-keys", wide_body)).json()
    await _live_key(gateway, ("catalog:read",))
    live_id = gateway.scalar(
        "SELECT id FROM api_keys WHERE mode = 'live' AND revoked_at IS NULL"
        " ORDER BY created_at DESC, id DESC LIMIT 1"
    )
    before = gateway.scalar("SELECT count(*) FROM api_keys")
    refused = await _roll(gateway, wide["id"], {}, manager["key"])
    assert refused.status_code == 403 and refused.json()["code"] == "insufficient_scope"
    assert "orders:write" in refused.json()["detail"]
    refused = await _roll(gateway, live_id, {}, manager["key"])
    assert refused.status_code == 403 and refused.json()["code"] == "mode_not_grantable"
    assert gateway.scalar("SELECT count(*) FROM api_keys") == before
    assert (
        gateway.scalar(
            "SELECT count(*) FROM api_keys WHERE id IN (%s, %s) AND expires_at IS NOT NULL",
            wide["id"],
            live_id,
        )
        == 0
    )
    log = await gateway.http.get("/v1/audit-log", params={"action": "credential.refused"})
    rolls = sorted(
        e["resource_id"]
        for e in log.json()["data"]
        if e["credential_id"] == manager["id"] and e["details"]["action"] == "roll"
    )
    assert rolls == sorted([wide["id"], live_id])

    other = await gateway.http.post(
        "/v1/admin/merchants", json={"name": "Other Roller"}, headers=_bearer(ADMIN)
    )
    theirs = other.json()["api_key"]
    their_id = (await gateway.http.get("/v1/api-keys", headers=_bearer(theirs))).json()["data"][0]
    for ident in (their_id["id"], "key_nosuch"):
        missing = await _roll(gateway, ident, {})
        assert missing.status_code == 404 and missing.json()["code"] == "resource_missing"
    assert (await gateway.http.get("/v1/api-keys", headers=_bearer(theirs))).status_code == 200

    owner = await _live_key(gateway, ("credentials:manage", "catalog:read"))
    rolled = await _roll(gateway, live_id, {}, owner)
    assert rolled.status_code == 201, rolled.text
    assert rolled.json()["mode"] == "live" and rolled.json()["key"].startswith("pos_live_")


async def test_a_key_the_platform_issues_is_in_the_merchants_audit_log(gateway: Gateway) -> None:
    """A key issued by the platform (every scope, live) is an `api_key.created` entry in the
    merchant's audit log, as one its own credentials make is, by no credential of the
    merchant's (`credential_id` null, `issued_by: platform`): the merchant sees who gave it a
    key that can do anything. A retry of the request adds none. None was written."""
    made = await gateway.http.post(
        "/v1/admin/merchants", json={"name": "Audited Live"}, headers=_bearer(ADMIN)
    )
    first = _bearer(made.json()["api_key"])
    path = f"/v1/admin/merchants/{made.json()['id']}/api-keys"
    headers = {**_bearer(ADMIN), "Idempotency-Key": str(uuid.uuid4())}
    issued = await gateway.http.post(path, json={"name": "go live"}, headers=headers)
    assert issued.status_code == 201, issued.text
    again = await gateway.http.post(path, json={"name": "go live"}, headers=headers)
    assert again.status_code == 201, again.text
    key = issued.json()
    log = await gateway.http.get("/v1/audit-log", params={"resource_id": key["id"]}, headers=first)
    assert log.status_code == 200, log.text
    assert [
        (e["action"], e["credential_id"], e["staff_id"], e["resource_type"], e["details"])
        for e in log.json()["data"]
    ] == [
        ("api_key.created", None, None, "api_key",
         {"name": "go live", "scopes": key["scopes"], "mode": "live", "issued_by": "platform"}),
    ]  # fmt: skip
    assert key["key"] not in log.text


async def test_the_platforms_idempotency_keys_are_not_the_merchants(gateway: Gateway) -> None:
    """The platform's Idempotency-Keys are its own (its answers are kept under the tenant
    `platform`), and so are the request ids of what its requests make: a merchant using the
    key the platform used to issue it a key (or to create it) makes its own key, rolls its
    own, and has its own audit entry, and the platform using a key the merchant used issues
    its key. Until 2026-12-05 both sides' request ids were one space: the second was a 422
    `idempotency_key_reused`, or, with the same name, scopes and mode, answered the first's
    key with `key` null and made nothing, its audit entry dropped."""
    created = str(uuid.uuid4())
    made = await gateway.http.post(
        "/v1/admin/merchants", json={"name": "Two Key Spaces"},
        headers={**_bearer(ADMIN), "Idempotency-Key": created},
    )  # fmt: skip
    assert made.status_code == 201, made.text
    merchant, first = made.json()["id"], _bearer(made.json()["api_key"])
    (first_key,) = (await gateway.http.get("/v1/api-keys", headers=first)).json()["data"]
    path = f"/v1/admin/merchants/{merchant}/api-keys"
    every = {"name": "same", "scopes": list(ALL_SCOPES), "mode": "test"}

    async def own(key: str, body: dict[str, Any], where: str = "/v1/api-keys") -> Any:
        made = await gateway.http.post(where, json=body, headers={**first, "Idempotency-Key": key})
        assert made.status_code == 201, made.text
        assert made.json()["key"] is not None and made.json()["secret_redacted"] is False
        return made.json()

    async def platform(key: str, body: dict[str, Any]) -> Any:
        made = await gateway.http.post(
            path, json=body, headers={**_bearer(ADMIN), "Idempotency-Key": key}
        )
        assert made.status_code == 201, made.text
        assert made.json()["key"] is not None and made.json()["secret_redacted"] is False
        return made.json()

    # The platform first, then the merchant with the same key: the same body, another body,
    # and a roll.
    same, other, roll = str(uuid.uuid4()), str(uuid.uuid4()), str(uuid.uuid4())
    issued = {k: await platform(k, {"name": "same", "mode": "test"}) for k in (same, other, roll)}
    mine = await own(same, every)
    assert mine["id"] != issued[same]["id"]
    till = await own(other, {"name": "till", "scopes": ["catalog:read"]})
    rolled = await own(roll, {"expires_in_seconds": 0}, f"/v1/api-keys/{mine['id']}/roll")
    assert rolled["rolled_from"]["id"] == mine["id"]
    # The merchant first, then the platform with the same key and a body that matches.
    before = str(uuid.uuid4())
    theirs = await own(before, every)
    given = await platform(before, {"name": "same", "mode": "test"})
    assert given["id"] != theirs["id"]
    # The key the platform created the merchant with is the merchant's to use too.
    again = await own(created, every)

    # Each key made has its `api_key.created` entry: by the platform (no credential) or by
    # the merchant's first key; a roll is `api_key.rolled` on the old key.
    log = await gateway.http.get(
        "/v1/audit-log", params={"action": "api_key.created", "limit": 100}, headers=first
    )
    entries = sorted((e["resource_id"], e["credential_id"] or "") for e in log.json()["data"])
    by_platform = [first_key, *issued.values(), given]
    by_merchant = [mine, till, theirs, again]
    assert entries == sorted([(k["id"], "") for k in by_platform]
                             + [(k["id"], first_key["id"]) for k in by_merchant])  # fmt: skip
    listed = await gateway.http.get("/v1/api-keys", params={"limit": 100}, headers=first)
    assert len(listed.json()["data"]) == len(by_platform) + len(by_merchant) + 1
    rolls = await gateway.http.get(
        "/v1/audit-log", params={"action": "api_key.rolled"}, headers=first
    )
    assert [e["resource_id"] for e in rolls.json()["data"]] == [mine["id"]]


async def test_a_missing_credential_or_merchant_is_named_by_its_kind(gateway: Gateway) -> None:
    """A 404 `resource_missing` of the credential and platform routes says the kind of what
    is missing in `resource`, as every other 404 does (docs/problems.md; until 2026-12-05
    these had none)."""
    admin = {**_bearer(ADMIN), "Idempotency-Key": str(uuid.uuid4())}
    for method, path, body, headers, kind in (
        ("DELETE", "/v1/api-keys/key_nosuch", None, {}, "api key"),
        ("POST", "/v1/api-keys/key_nosuch/roll", {}, {"Idempotency-Key": "roll-none"}, "api key"),
        ("DELETE", "/v1/oauth-clients/cli_nosuch", None, {}, "oauth client"),
        ("POST", "/v1/admin/merchants/mer_nosuch/api-keys", {"name": "live"}, admin, "merchant"),
    ):
        missing = await gateway.http.request(method, path, json=body, headers=headers)
        assert missing.status_code == 404, missing.text
        assert missing.json()["code"] == "resource_missing"
        assert missing.json()["resource"] == kind, missing.text


async def _first_key_entries(gateway: Gateway, key: str) -> list[tuple[Any, ...]]:
    """The `api_key.created` entries of the merchant of `key` (its first), read with it."""
    first = _bearer(key)
    (listed,) = (await gateway.http.get("/v1/api-keys", headers=first)).json()["data"]
    log = await gateway.http.get(
        "/v1/audit-log", params={"action": "api_key.created"}, headers=first
    )
    assert log.status_code == 200, log.text
    assert key not in log.text
    return [
        (e["credential_id"], e["staff_id"], e["resource_type"], e["resource_id"], e["details"])
        for e in log.json()["data"]
    ] + [("listed", listed["id"])]


async def test_a_new_merchants_first_key_is_in_its_audit_log(gateway: Gateway) -> None:
    """The key a merchant is created with (every scope, test) is an `api_key.created` entry in
    its audit log, as every later key is, by no credential of the merchant's (`issued_by:
    platform`): from the platform route (once, however often the request is retried) and from
    `python -m pos_gateway create-merchant` alike. Until 2026-12-05 it was not recorded."""
    details = {"name": "default", "scopes": list(ALL_SCOPES), "mode": "test",
               "issued_by": "platform"}  # fmt: skip
    headers = {**_bearer(ADMIN), "Idempotency-Key": str(uuid.uuid4())}
    made = await gateway.http.post("/v1/admin/merchants", json={"name": "First"}, headers=headers)
    assert made.status_code == 201, made.text
    again = await gateway.http.post("/v1/admin/merchants", json={"name": "First"}, headers=headers)
    assert again.status_code == 201 and again.json()["id"] == made.json()["id"], again.text

    env = {
        **os.environ,
        "DATABASE_URL": gateway.database_url,
        "GATEWAY_SECRET_KEY": SECRET,
        "TOKEN_SIGNING_KEYS": SIGNING,
        **{f"{s.upper()}_ADDR": gateway_alone.NOWHERE for s in gateway_alone.SERVICES},
    }
    out = await asyncio.to_thread(
        subprocess.run,
        [sys.executable, "-m", "pos_gateway", "create-merchant", "First by hand"],
        env=env, capture_output=True, text=True, check=True,
    )  # fmt: skip
    by_hand = json.loads(out.stdout)["api_key"]

    for key in (made.json()["api_key"], by_hand):
        *entries, (_, key_id) = await _first_key_entries(gateway, key)
        assert entries == [(None, None, "api_key", key_id, details)]


async def test_the_platform_keeps_names_trimmed_and_refuses_blank_ones(gateway: Gateway) -> None:
    """A merchant's and a live key's names made by the platform read as every other name
    does (`routes.common.Name`): without their leading and trailing spaces, and one of spaces
    only is a 400 naming `name` (until 2026-12-05 both were kept as sent)."""
    made = await gateway.http.post(
        "/v1/admin/merchants", json={"name": "  Corner Shop  "}, headers=_bearer(ADMIN)
    )
    assert made.status_code == 201 and made.json()["name"] == "Corner Shop", made.text
    path = f"/v1/admin/merchants/{made.json()['id']}/api-keys"
    issued = await gateway.http.post(path, json={"name": " live "}, headers=_bearer(ADMIN))
    assert issued.status_code == 201 and issued.json()["name"] == "live", issued.text
    for where, body in (("/v1/admin/merchants", {"name": "   "}), (path, {"name": " \t "})):
        blank = await gateway.http.post(where, json=body, headers=_bearer(ADMIN))
        assert blank.status_code == 400, blank.text
        assert [e["field"] for e in blank.json()["errors"]] == ["name"]


async def test_the_platform_routes_ask_for_the_platform_credential_before_reading_anything(
    gateway: Gateway,
) -> None:
    """Without the platform credential every /v1/admin/ route is a 401, whatever the request
    holds: a malformed body, path or query is not read first (its 400 told a caller with no
    credential what the route takes, as no merchant route does), and a credential that is not
    ASCII is refused as any other (it was a 500)."""
    merchant = await gateway.http.post(
        "/v1/admin/merchants", json={"name": "Checked First"}, headers=_bearer(ADMIN)
    )
    assert merchant.status_code == 201, merchant.text
    keys = f"/v1/admin/merchants/{merchant.json()['id']}/api-keys"
    json_type = {"content-type": "application/json"}
    malformed: list[tuple[str, str, dict[str, Any]]] = [
        ("POST", "/v1/admin/merchants", {"json": {}}),
        ("POST", "/v1/admin/merchants", {"content": b"{", "headers": json_type}),
        ("POST", keys, {"json": {"name": "live", "mode": "neither"}}),
        ("GET", "/v1/admin/dead-letters", {"params": {"limit": "0", "consumer": "a b"}}),
        ("POST", "/v1/admin/dead-letters/0/redrive", {}),
        ("POST", "/v1/admin/dead-letters/redrive", {"params": {"consumer": "a b"}}),
    ]

    async def send(
        method: str, path: str, who: dict[str, Any], request: dict[str, Any]
    ) -> httpx.Response:
        extra = {k: v for k, v in request.items() if k != "headers"}
        headers = {**who, **request.get("headers", {})}
        return await gateway.http.request(method, path, headers=headers, **extra)

    first_key = merchant.json()["api_key"]
    not_ascii: dict[str, Any] = {"Authorization": b"Bearer \xe9" + ADMIN.encode()}
    for who in ({"Authorization": ""}, _bearer(first_key), _bearer(ADMIN + "x"), not_ascii):
        for method, path, request in malformed:
            answer = await send(method, path, who, request)
            assert answer.status_code == 401, (method, path, answer.text)
            assert answer.json()["code"] == "unauthorized"
            assert answer.headers["www-authenticate"] == 'Bearer realm="omnitill-admin"'
    # With it, the same requests are read and refused for what they hold.
    for method, path, request in malformed:
        answer = await send(method, path, _bearer(ADMIN), request)
        assert answer.status_code == 400, (method, path, answer.text)


# --- rate-limit and cache headers ----------------------------------------------------------


def _counted(answer: httpx.Response) -> None:
    assert answer.headers["ratelimit-policy"].startswith('"default";q=')
    assert answer.headers["ratelimit"].startswith('"default";r=')


async def test_answers_without_a_credential_are_counted_too(gateway: Gateway) -> None:
    anonymous = {"Authorization": ""}
    unauthorized = await gateway.http.get("/v1/products", headers=anonymous)
    assert unauthorized.status_code == 401
    _counted(unauthorized)
    bad_key = await gateway.http.get("/v1/products", headers=_bearer("pos_test_nope"))
    assert bad_key.status_code == 401
    _counted(bad_key)
    token = await gateway.http.post(
        "/v1/oauth/token", data={"grant_type": "client_credentials"}, headers=anonymous
    )
    assert token.status_code == 400
    _counted(token)
    pair = await gateway.http.post(
        "/v1/registers/pair", json={"code": "ABCDEFGHJK"}, headers=anonymous
    )
    assert pair.status_code == 401
    _counted(pair)
    admin = await gateway.http.post("/v1/admin/merchants", json={"name": "x"}, headers=anonymous)
    assert admin.status_code == 401
    _counted(admin)
    listed = await gateway.http.get("/v1/admin/dead-letters", headers=_bearer(ADMIN + "x"))
    assert listed.status_code == 401
    _counted(listed)


async def test_past_its_budget_an_address_without_a_credential_gets_429(
    gateway: Gateway,
) -> None:
    edge = _edge(gateway.app)
    kept, edge.limits = edge.limits, TokenBuckets(NEVER, 2)
    try:
        answers = [
            await gateway.http.get("/v1/products", headers={"Authorization": ""}) for _ in range(3)
        ]
    finally:
        edge.limits = kept
    assert [a.status_code for a in answers] == [401, 401, 429]
    assert answers[2].json()["code"] == "rate_limited"
    assert int(answers[2].headers["retry-after"]) >= 1
    _counted(answers[2])


def _edge(app: FastAPI) -> Any:
    """The running app's edge middleware (built on the first request)."""
    layer: Any = app.middleware_stack
    while layer is not None:
        if type(layer).__name__ == "EdgeMiddleware":
            return layer
        layer = getattr(layer, "app", None)
    raise AssertionError("no edge middleware")


async def test_secrets_and_tokens_are_never_cached(gateway: Gateway) -> None:
    key = await gateway.post("/v1/api-keys", {"name": "cached?", "scopes": ["catalog:read"]})
    assert key.status_code == 201 and key.headers["cache-control"] == "no-store"
    client = await gateway.post("/v1/oauth-clients", {"name": "c", "scopes": ["catalog:read"]})
    assert client.status_code == 201 and client.headers["cache-control"] == "no-store"
    form = {"grant_type": "client_credentials", "client_id": client.json()["client_id"],
            "client_secret": client.json()["client_secret"]}  # fmt: skip
    token = await gateway.http.post("/v1/oauth/token", data=form)
    assert token.status_code == 200
    assert token.headers["cache-control"] == "no-store" and token.headers["pragma"] == "no-cache"
    _counted(token)
    refused = await gateway.http.post("/v1/oauth/token", data={**form, "client_secret": "no"})
    assert refused.status_code == 401 and refused.headers["cache-control"] == "no-store"
    merchant = await gateway.http.post(
        "/v1/admin/merchants", json={"name": "No Store"}, headers=_bearer(ADMIN)
    )
    assert merchant.status_code == 201 and merchant.headers["cache-control"] == "no-store"
    # An ordinary answer is not marked.
    assert "cache-control" not in (await gateway.http.get("/v1/api-keys")).headers


# --- the token exchange --------------------------------------------------------------------


async def test_a_client_may_authenticate_with_http_basic(gateway: Gateway) -> None:
    client = await gateway.client(["catalog:read", "orders:read"])
    basic = _basic(client["client_id"], client["client_secret"])
    grant = {"grant_type": "client_credentials"}
    granted = await gateway.http.post("/v1/oauth/token", data=grant, headers=basic)
    assert granted.status_code == 200, granted.text
    assert granted.json()["scope"] == "catalog:read orders:read"
    narrowed = await gateway.http.post(
        "/v1/oauth/token", data={**grant, "scope": "orders:read"}, headers=basic
    )
    assert narrowed.status_code == 200 and narrowed.json()["scope"] == "orders:read"
    access = _bearer(granted.json()["access_token"])
    assert (await gateway.http.get("/v1/api-keys", headers=access)).status_code == 403

    wrong = await gateway.http.post(
        "/v1/oauth/token", data=grant, headers=_basic(client["client_id"], "pos_cs_wrong")
    )
    assert wrong.status_code == 401 and wrong.json()["error"] == "invalid_client"
    assert wrong.headers["www-authenticate"] == 'Basic realm="omnitill"'
    # One method per request (RFC 6749 section 2.3).
    both = await gateway.http.post(
        "/v1/oauth/token",
        data={**grant, "client_secret": client["client_secret"]},
        headers=basic,
    )
    assert both.status_code == 400 and both.json()["error"] == "invalid_request"
    garbled = await gateway.http.post(
        "/v1/oauth/token", data=grant, headers={"Authorization": "Basic %%%"}
    )
    assert garbled.status_code == 400 and garbled.json()["error"] == "invalid_request"


async def test_every_refusal_of_the_token_exchange_names_its_rfc_6749_error(
    gateway: Gateway,
) -> None:
    client = await gateway.client(["catalog:read"])
    creds = {"client_id": client["client_id"], "client_secret": client["client_secret"]}
    cases: list[tuple[dict[str, str], str]] = [
        ({}, "invalid_request"),  # nothing at all
        (creds, "invalid_request"),  # no grant_type
        ({"grant_type": "client_credentials"}, "invalid_request"),  # no client
        ({"grant_type": "client_credentials", "client_id": creds["client_id"]},
         "invalid_request"),  # no secret
        ({**creds, "grant_type": "client_credentials", "client_id": "x" * 65},
         "invalid_request"),  # past a bound
        ({**creds, "grant_type": "password"}, "unsupported_grant_type"),
        ({**creds, "grant_type": "client_credentials", "scope": "payments:write"},
         "invalid_scope"),
        # A scope naming nothing grants nothing useful: refused, as are tabs between names.
        ({**creds, "grant_type": "client_credentials", "scope": "   "}, "invalid_scope"),
        ({**creds, "grant_type": "client_credentials", "scope": "catalog:read\tcatalog:read"},
         "invalid_scope"),
    ]  # fmt: skip
    for form, error in cases:
        answer = await gateway.http.post(
            "/v1/oauth/token", data=form, headers={"Authorization": ""}
        )
        assert answer.status_code == 400, (form, answer.text)
        problem = answer.json()
        assert problem["error"] == error, (form, problem)
        assert problem["error_description"] == problem["detail"]
    as_json = await gateway.http.post(
        "/v1/oauth/token", json={**creds, "grant_type": "client_credentials"},
        headers={"Authorization": ""},
    )  # fmt: skip
    assert as_json.status_code == 400 and as_json.json()["error"] == "invalid_request"
    # A scope named twice is granted once.
    twice = {**creds, "grant_type": "client_credentials", "scope": " catalog:read  catalog:read"}
    granted = await gateway.http.post("/v1/oauth/token", data=twice, headers={"Authorization": ""})
    assert granted.status_code == 200, granted.text
    assert granted.json()["scope"] == "catalog:read"


async def test_the_token_exchange_names_the_parameter_at_fault(gateway: Gateway) -> None:
    """A scope the client was not given is an `invalid_scope` naming `scope` in `errors[]`,
    as a malformed one is; a parameter sent twice (RFC 6749 section 3.2: parameters must not
    be included more than once) is an `invalid_request` naming it, whatever its values (it
    was read as the last one). Until 2026-12-05 neither named its field, and the second
    was no refusal at all."""
    client = await gateway.client(["catalog:read"])
    creds = f"client_id={client['client_id']}&client_secret={client['client_secret']}"
    form = {"content-type": "application/x-www-form-urlencoded", "Authorization": ""}
    for body, error, field in (
        (f"{creds}&grant_type=client_credentials&scope=catalog:read%20payments:write",
         "invalid_scope", "scope"),
        (f"{creds}&grant_type=client_credentials&grant_type=password", "invalid_request",
         "grant_type"),
        (f"{creds}&grant_type=password&grant_type=client_credentials", "invalid_request",
         "grant_type"),
        (f"{creds}&grant_type=client_credentials&scope=catalog:read&scope=catalog:read",
         "invalid_request", "scope"),
        (f"{creds}&client_id=other&grant_type=client_credentials", "invalid_request",
         "client_id"),
    ):  # fmt: skip
        answer = await gateway.http.post("/v1/oauth/token", content=body, headers=form)
        assert answer.status_code == 400, (body, answer.text)
        problem = answer.json()
        assert problem["error"] == error, (body, problem)
        assert [e["field"] for e in problem["errors"]] == [field], (body, problem)
    once = f"{creds}&grant_type=client_credentials&scope=catalog:read"
    granted = await gateway.http.post("/v1/oauth/token", content=once, headers=form)
    assert granted.status_code == 200, granted.text


async def test_failed_client_authentications_are_throttled_per_client(gateway: Gateway) -> None:
    from pos_gateway.routes.credentials import CLIENT_AUTH_BURST

    client = await gateway.client(["catalog:read"])
    kept = gateway.app.state.client_auth
    gateway.app.state.client_auth = TokenBuckets(NEVER, CLIENT_AUTH_BURST)
    try:
        await _throttled_per_client(gateway, client, CLIENT_AUTH_BURST)
    finally:
        gateway.app.state.client_auth = kept


async def _throttled_per_client(gateway: Gateway, client: dict[str, Any], burst: int) -> None:
    good = {"grant_type": "client_credentials", "client_id": client["client_id"],
            "client_secret": client["client_secret"]}  # fmt: skip
    # A client that knows its secret spends nothing.
    for _ in range(burst + 2):
        assert (await gateway.http.post("/v1/oauth/token", data=good)).status_code == 200
    wrong = {**good, "client_secret": "pos_cs_guess"}
    answers = [await gateway.http.post("/v1/oauth/token", data=wrong) for _ in range(60)]
    statuses = [a.status_code for a in answers]
    assert statuses == [401] * burst + [429] * (60 - burst)
    limited = answers[-1]
    assert limited.json()["code"] == "rate_limited"
    assert limited.json()["error"] == "temporarily_unavailable"
    assert int(limited.headers["retry-after"]) >= 1
    # Refused before the secret is checked: the right one waits too.
    assert (await gateway.http.post("/v1/oauth/token", data=good)).status_code == 429
    # Other clients are not held up by this one.
    other = await gateway.client(["catalog:read"])
    form = {**good, "client_id": other["client_id"], "client_secret": other["client_secret"]}
    assert (await gateway.http.post("/v1/oauth/token", data=form)).status_code == 200


async def test_failed_client_authentications_are_throttled_per_address(gateway: Gateway) -> None:
    kept = gateway.app.state.address_auth
    gateway.app.state.address_auth = TokenBuckets(NEVER, 3)
    try:
        answers = [
            await gateway.http.post(
                "/v1/oauth/token",
                data={
                    "grant_type": "client_credentials",
                    "client_id": f"cli_{n}",
                    "client_secret": "pos_cs_guess",
                },
            )
            for n in range(5)
        ]
    finally:
        gateway.app.state.address_auth = kept
    # Each its own client, all from one address.
    assert [a.status_code for a in answers] == [401, 401, 401, 429, 429]


# --- the platform's merchants --------------------------------------------------------------


async def test_creating_a_merchant_honours_the_idempotency_key(gateway: Gateway) -> None:
    name = f"Shop {uuid.uuid4().hex[:8]}"
    headers = {**_bearer(ADMIN), "Idempotency-Key": str(uuid.uuid4())}
    first = await gateway.http.post("/v1/admin/merchants", json={"name": name}, headers=headers)
    assert first.status_code == 201, first.text
    made = first.json()
    assert made["api_key"].startswith("pos_test_") and made["secret_redacted"] is False

    replay = await gateway.http.post("/v1/admin/merchants", json={"name": name}, headers=headers)
    assert replay.status_code == 201 and replay.headers["idempotent-replayed"] == "true"
    assert replay.json() == {**made, "api_key": None, "secret_redacted": True}
    assert gateway.scalar("SELECT count(*) FROM merchants WHERE name = %s", name) == 1
    assert gateway.scalar("SELECT count(*) FROM api_keys WHERE merchant_id = %s", made["id"]) == 1
    stored = gateway.scalar(
        "SELECT body FROM idempotency_keys WHERE key = %s", headers["Idempotency-Key"]
    )
    assert made["api_key"].encode() not in bytes(stored)

    # The answer lost (the gateway stopped before storing it): the retry makes nothing either.
    with psycopg.connect(gateway.database_url) as conn:
        conn.execute("DELETE FROM idempotency_keys WHERE key = %s", (headers["Idempotency-Key"],))
    again = await gateway.http.post("/v1/admin/merchants", json={"name": name}, headers=headers)
    assert again.status_code == 201 and "idempotent-replayed" not in again.headers
    assert again.json() == {**made, "api_key": None, "secret_redacted": True}
    assert gateway.scalar("SELECT count(*) FROM merchants WHERE name = %s", name) == 1

    other = await gateway.http.post(
        "/v1/admin/merchants", json={"name": name + " 2"}, headers=headers
    )
    assert other.status_code == 422 and other.json()["code"] == "idempotency_key_reused"
    # The key shown the first time is the merchant's.
    own = await gateway.http.get("/v1/api-keys", headers=_bearer(made["api_key"]))
    assert own.status_code == 200 and len(own.json()["data"]) == 1


async def test_a_request_without_the_platform_credential_spends_no_idempotency_key(
    gateway: Gateway,
) -> None:
    key = str(uuid.uuid4())
    body = {"name": f"Shop {key[:8]}"}
    refused = await gateway.http.post(
        "/v1/admin/merchants", json={"name": "Squatter"},
        headers={**_bearer("not-the-platform"), "Idempotency-Key": key},
    )  # fmt: skip
    assert refused.status_code == 401
    made = await gateway.http.post(
        "/v1/admin/merchants", json=body, headers={**_bearer(ADMIN), "Idempotency-Key": key}
    )
    assert made.status_code == 201 and made.json()["api_key"]


async def test_the_document_lists_idempotency_key_on_the_platform_posts(gateway: Gateway) -> None:
    document = gateway.app.openapi()
    operation = document["paths"]["/v1/admin/merchants"]["post"]
    assert {"$ref": "#/components/parameters/Idempotency-Key"} in operation["parameters"]
    assert operation["x-shown-once"] == ["api_key"]
    token = document["paths"]["/v1/oauth/token"]["post"]
    assert "429" in token["responses"]
    assert "RateLimit" in token["responses"]["200"]["headers"]
    assert "Cache-Control" in token["responses"]["200"]["headers"]


async def test_a_client_id_never_spends_an_address_budget(gateway: Gateway) -> None:
    """The client's and the address's budgets are named apart: a client id spelled like an
    address's bucket spends its own, not that address's (with the shared store both kinds
    are rows of one table, here one store for both)."""
    kept = gateway.app.state.client_auth, gateway.app.state.address_auth
    shared = TokenBuckets(NEVER, 3)
    gateway.app.state.client_auth = gateway.app.state.address_auth = shared
    try:
        answers = [
            await gateway.http.post(
                "/v1/oauth/token",
                data={
                    "grant_type": "client_credentials",
                    "client_id": "address:127.0.0.1",
                    "client_secret": "pos_cs_guess",
                },
            )
            for _ in range(4)
        ]
    finally:
        gateway.app.state.client_auth, gateway.app.state.address_auth = kept
    # Each failure spends one token of the client's bucket and one of the address's.
    assert [a.status_code for a in answers] == [401, 401, 401, 429]
