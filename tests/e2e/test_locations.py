"""A location changes after it is made: its name, address and coordinates, its time zone and its
taxes (the next sale there is taxed at the new rate), never its currency or kind; by version,
field by field; another merchant's is a 404. A merchant of its own, so no other test's stores
are involved."""

from __future__ import annotations

import uuid
from typing import Any

import httpx
import pytest

from pos_devstack.testing import Running

pytestmark = pytest.mark.e2e


def _post(http: httpx.Client, path: str, body: dict[str, Any]) -> httpx.Response:
    return http.post(path, json=body, headers={"Idempotency-Key": str(uuid.uuid4())})


def _ok(answer: httpx.Response, status: int = 200) -> Any:
    assert answer.status_code == status, answer.text
    return answer.json()


def _tax(http: httpx.Client, store: str) -> int:
    cart = {"location_id": store, "lines": [{"sku": "LOC-TEA", "quantity": 1}]}
    return int(_ok(_post(http, "/v1/carts/calculate", cart))["tax_total"]["amount"])


def test_a_location_changes_its_name_address_time_zone_and_taxes(platform: Running) -> None:
    with platform.new_merchant(f"Locations {uuid.uuid4().hex[:8]}") as http:
        geo = {"latitude": 1.0, "longitude": 2.0}
        old = {"name": "Old St", "currency": "USD", "tax_rate_bps": 500, "geo": geo}
        made = _ok(_post(http, "/v1/locations", old), 201)
        store = made["id"]
        _ok(_post(http, "/v1/products", {"sku": "LOC-TEA", "name": "Tea", "tax_category": "food",
            "price": {"amount": 1000, "currency": "USD"}}), 201)  # fmt: skip
        assert _tax(http, store) == 50
        path = f"/v1/locations/{store}"
        changed = http.patch(
            path,
            json={
                "name": "Harbor Store",
                "address": {"line1": "9 Pier Rd", "city": "Portland", "country": "US"},
                "geo": None,
                "time_zone": "America/Los_Angeles",
                "tax_rates_bps": {"food": 200},
            },
            headers={"If-Match": '"1"'},
        )
        location = _ok(changed)
        assert (location["name"], location["address"]["city"], location["geo"]) == (
            "Harbor Store", "Portland", None,
        )  # fmt: skip
        assert (location["time_zone"], location["version"]) == ("America/Los_Angeles", 2)
        assert changed.headers["ETag"] == '"2"'
        assert _ok(http.get(path)) == location
        # The next sale there is taxed at the new rate of its tax category.
        assert _tax(http, store) == 20
        assert _tax(http, store) == 20
        _ok(http.patch(path, json={"taxes": [{"name": "state", "rate_bps": 600},
                                            {"name": "city", "rate_bps": 100}]}))  # fmt: skip
        assert _tax(http, store) == 70
        # Sent as it already is: no new version.
        same = _ok(http.patch(path, json={"name": "Harbor Store"}))
        assert same["version"] == 3
        # Stale, bad, unchangeable, empty: refused, field by field, nothing kept.
        stale = http.patch(path, json={"name": "Late"}, headers={"If-Match": '"1"'})
        assert stale.status_code == 412 and stale.json()["current_version"] == 3
        bad = http.patch(path, json={"name": "", "time_zone": "Mars/Base", "tax_rate_bps": -1})
        assert bad.status_code == 400, bad.text
        assert {e["field"] for e in bad.json()["errors"]} == {"name", "time_zone", "tax_rate_bps"}
        for body in ({"currency": "EUR"}, {"kind": "warehouse"}, {"name": None}, {}):
            refused = http.patch(path, json=body)
            assert refused.status_code == 400, (body, refused.text)
        assert _ok(http.get(path))["version"] == 3
        with platform.new_merchant(f"Other {uuid.uuid4().hex[:8]}") as other:
            theirs = other.patch(path, json={"name": "Mine now"})
            assert theirs.status_code == 404, theirs.text
        assert _ok(http.get(path))["name"] == "Harbor Store"
