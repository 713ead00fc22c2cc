"""`If-Match: *` (RFC 9110, 13.1.1) is true of whatever version is current and false when there
is none: the change goes ahead at any version, a missing resource is still a 404, and an
upsert under it changes an existing customer but never makes one."""

from __future__ import annotations

import uuid

import httpx
import pytest

from pos_devstack.testing import Running

pytestmark = pytest.mark.e2e

ANY = {"If-Match": "*"}


def _key() -> dict[str, str]:
    return {"Idempotency-Key": str(uuid.uuid4())}


def _ok(answer: httpx.Response, status: int = 200) -> dict[str, object]:
    assert answer.status_code == status, answer.text
    body: dict[str, object] = answer.json()
    return body


def test_a_change_under_if_match_star_goes_ahead_at_any_version(platform: Running) -> None:
    http = platform.new_merchant("If-Match any e2e")
    tee = {"sku": "ANY-TEE", "name": "Tee", "price": {"amount": 2000, "currency": "USD"}}
    made = _ok(http.post("/v1/products", headers=_key(), json=tee), 201)
    path = f"/v1/products/{made['id']}"
    _ok(http.patch(path, json={"name": "Tee II"}))
    renamed = http.patch(path, json={"name": "Tee III"}, headers=ANY)
    assert (_ok(renamed)["version"], renamed.headers["ETag"]) == (3, '"3"')
    # Still a 404 where nothing is current.
    missing = http.patch("/v1/products/prod_nothing", json={"name": "x"}, headers=ANY)
    assert (missing.status_code, missing.json()["code"]) == (404, "resource_missing")

    location = _ok(http.post("/v1/locations", headers=_key(),
                             json={"name": "Here", "currency": "USD"}), 201)  # fmt: skip
    path = f"/v1/locations/{location['id']}"
    picking = http.patch(path, json={"pickup_enabled": True}, headers=ANY)
    assert _ok(picking)["pickup_enabled"] is True


def test_an_upsert_under_if_match_star_changes_but_never_creates(platform: Running) -> None:
    http = platform.new_merchant("If-Match any upsert e2e")
    body = {"external_id": "crm-any", "given_name": "Ada"}
    refused = http.post("/v1/customers/upsert", json=body, headers={**ANY, **_key()})
    assert refused.status_code == 412, refused.text
    assert (refused.json()["code"], refused.json()["current_version"]) == ("version_mismatch", 0)
    found = http.get("/v1/customers/search", params={"external_id": "crm-any"})
    assert found.json()["data"] == []

    made = _ok(http.post("/v1/customers/upsert", json=body, headers=_key()))
    customer = made["customer"]
    assert isinstance(customer, dict)
    _ok(http.patch(f"/v1/customers/{customer['id']}", json={"family_name": "King"}))
    changed = _ok(http.post("/v1/customers/upsert", json={**body, "given_name": "Augusta"},
                            headers={**ANY, **_key()}))  # fmt: skip
    assert changed["created"] is False
    assert changed["customer"]["version"] == 3  # type: ignore[index]
    patched = http.patch(
        f"/v1/customers/{customer['id']}", json={"family_name": "Lovelace"}, headers=ANY
    )
    assert _ok(patched)["version"] == 4


def test_a_list_of_versions_holds_when_any_one_is_current(platform: Running) -> None:
    """`If-Match: "1", "2"` (RFC 9110 lists entity tags): the change goes ahead when any
    listed version is current, through a service's check as through the gateway's own; when
    none is, the 412 names the current one and nothing changes."""
    http = platform.new_merchant("If-Match list e2e")
    tee = {"sku": "LIST-TEE", "name": "Tee", "price": {"amount": 2000, "currency": "USD"}}
    made = _ok(http.post("/v1/products", headers=_key(), json=tee), 201)
    path = f"/v1/products/{made['id']}"
    _ok(http.patch(path, json={"name": "Tee II"}))
    listed = http.patch(path, json={"name": "Tee III"}, headers={"If-Match": '"1", "2"'})
    assert (_ok(listed)["version"], listed.headers["ETag"]) == (3, '"3"')
    stale = http.patch(path, json={"name": "Lost"}, headers={"If-Match": '"1", W/"2"'})
    assert (stale.status_code, stale.json()["current_version"]) == (412, 3), stale.text
    assert _ok(http.get(path))["name"] == "Tee III"
    bad = http.patch(path, json={"name": "x"}, headers={"If-Match": '"3", *'})
    assert (bad.status_code, bad.json()["code"]) == (400, "invalid_if_match"), bad.text

    offer = {"name": "Listed", "percent_off_bps": 500}
    promo = _ok(http.post("/v1/promotions", headers=_key(), json=offer), 201)
    paused = http.post(
        f"/v1/promotions/{promo['id']}/pause", headers={**_key(), "If-Match": '"7", "1"'}
    )
    assert (_ok(paused)["status"], paused.json()["version"]) == ("paused", 2)
