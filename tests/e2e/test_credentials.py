"""Credentials end to end: API keys, OAuth client credentials, scopes, the admin API."""

from __future__ import annotations

import uuid

import httpx
import pytest

from pos_devstack.testing import Running

pytestmark = pytest.mark.e2e


def _post(http: httpx.Client, path: str, body: dict[str, object]) -> httpx.Response:
    return http.post(path, json=body, headers={"Idempotency-Key": str(uuid.uuid4())})


def test_an_api_key_is_shown_once_scoped_and_revocable(platform: Running) -> None:
    http = platform.http
    body = {"name": "reader", "scopes": ["catalog:read"]}
    retry = {"Idempotency-Key": str(uuid.uuid4())}
    made = http.post("/v1/api-keys", json=body, headers=retry)
    assert made.status_code == 201
    key = made.json()["key"]
    assert key.startswith("pos_test_")
    # A retry gets the same key back without its secret, and says so; nothing new is made.
    replay = http.post("/v1/api-keys", json=body, headers=retry)
    assert replay.headers["idempotent-replayed"] == "true"
    assert replay.json()["id"] == made.json()["id"]
    assert replay.json()["key"] is None and replay.json()["secret_redacted"] is True
    log = platform.platform.home / "logs" / "gateway.log"
    assert key not in log.read_text(errors="replace")
    listed = http.get("/v1/api-keys").json()["data"]
    mine = next(k for k in listed if k["id"] == made.json()["id"])
    assert "key" not in mine and key not in str(listed)
    assert mine["key_hint"] == key[:13] + "…"

    reader = httpx.Client(
        base_url=platform.platform.gateway_url, headers={"Authorization": f"Bearer {key}"}
    )
    assert reader.get("/v1/products").status_code == 200
    denied = reader.get("/v1/orders")
    assert denied.status_code == 403
    assert denied.json()["code"] == "insufficient_scope"
    assert 'error="insufficient_scope"' in denied.headers["www-authenticate"]
    # The key that made it, replayed by a credential without the scope, is refused as a new
    # request would be: no stored answer of another credential's is shown.
    borrowed = reader.post("/v1/api-keys", json=body, headers=retry)
    assert (borrowed.status_code, borrowed.json()["code"]) == (403, "insufficient_scope")
    assert "idempotent-replayed" not in borrowed.headers
    assert http.get("/v1/api-keys").json()["data"] != []
    assert next(k for k in http.get("/v1/api-keys").json()["data"] if k["id"] == mine["id"])[
        "last_used_at"
    ]

    revoked = http.delete(f"/v1/api-keys/{mine['id']}")
    assert revoked.status_code == 200 and revoked.json()["revoked_at"]
    assert reader.get("/v1/products").status_code == 401
    with platform.new_merchant("Someone Else") as other:
        assert other.delete(f"/v1/api-keys/{mine['id']}").status_code == 404


def test_client_credentials_give_a_scoped_short_lived_token(platform: Running) -> None:
    http = platform.http
    client = _post(
        http, "/v1/oauth-clients", {"name": "accounting", "scopes": ["orders:read", "catalog:read"]}
    ).json()
    log = platform.platform.home / "logs" / "gateway.log"
    assert client["client_secret"] not in log.read_text(errors="replace")
    base = platform.platform.gateway_url
    form = {
        "grant_type": "client_credentials",
        "client_id": client["client_id"],
        "client_secret": client["client_secret"],
        "scope": "catalog:read",
    }
    granted = httpx.post(base + "/v1/oauth/token", data=form)
    assert granted.status_code == 200
    token = granted.json()
    assert token["token_type"] == "Bearer" and token["expires_in"] == 900
    assert token["scope"] == "catalog:read"
    bearer = {"Authorization": f"Bearer {token['access_token']}"}
    assert httpx.get(base + "/v1/products", headers=bearer).status_code == 200
    assert httpx.get(base + "/v1/orders", headers=bearer).status_code == 403

    wrong = httpx.post(base + "/v1/oauth/token", data={**form, "client_secret": "nope"})
    assert wrong.status_code == 401 and wrong.json()["error"] == "invalid_client"
    greedy = httpx.post(base + "/v1/oauth/token", data={**form, "scope": "payments:write"})
    assert greedy.status_code == 400 and greedy.json()["error"] == "invalid_scope"
    tampered = token["access_token"][:-2] + (
        "AA" if not token["access_token"].endswith("AA") else "BB"
    )
    forged = httpx.get(base + "/v1/products", headers={"Authorization": f"Bearer {tampered}"})
    assert forged.status_code == 401


def test_the_admin_api_needs_the_platform_credential(platform: Running) -> None:
    base = platform.platform.gateway_url
    body = {"name": "New Shop"}
    assert httpx.post(base + "/v1/admin/merchants", json=body).status_code == 401
    admin = platform.platform._secrets()["platform_admin_token"]
    made = httpx.post(
        base + "/v1/admin/merchants", json=body, headers={"Authorization": f"Bearer {admin}"}
    )
    assert made.status_code == 201
    key = made.json()["api_key"]
    products = httpx.get(base + "/v1/products", headers={"Authorization": f"Bearer {key}"})
    assert products.status_code == 200 and products.json()["data"] == []


def test_a_credential_named_only_by_spaces_is_refused(platform: Running) -> None:
    """An API key's or an OAuth client's name is what the merchant tells them apart by (the
    list, the audit log): spaces only are a 400 naming `name`, as for a register, a member
    or a role, and nothing is made."""
    with platform.new_merchant(f"Blank names {uuid.uuid4().hex[:8]}") as http:
        for path, blank in (("/v1/api-keys", "   "), ("/v1/oauth-clients", "\t \u3000")):
            before = http.get(path).json()["data"]
            refused = _post(http, path, {"name": blank, "scopes": ["catalog:read"]})
            assert refused.status_code == 400, refused.text
            assert [e["field"] for e in refused.json()["errors"]] == ["name"]
            assert http.get(path).json()["data"] == before
