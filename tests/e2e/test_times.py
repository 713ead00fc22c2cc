"""Times the API takes are from 1970 to the end of year 9999: an earlier one (a year typed as
0999, an offset that pushes year 1 before its start, or 1970 as written with an offset east of
UTC, which is 1969) is a 400 naming the field, and nothing is written; before, such a time was
applied, answered with a 500, and every later page holding it failed too."""

from __future__ import annotations

import uuid
from typing import Any

import httpx
import pytest

from pos_devstack.testing import Running

pytestmark = pytest.mark.e2e

# The last is 1970 as written, but 1969 in UTC: the bound is the instant, whatever the offset.
TOO_EARLY = (
    "0999-06-01T00:00:00Z",
    "1969-12-31T23:59:59Z",
    "0001-01-01T00:00:00+01:00",
    "1970-01-01T00:00:00+14:00",
)


def _post(http: httpx.Client, path: str, body: dict[str, Any]) -> httpx.Response:
    return http.post(path, json=body, headers={"Idempotency-Key": str(uuid.uuid4())})


def test_a_time_before_1970_is_refused_and_writes_nothing(platform: Running) -> None:
    with platform.new_merchant("Old Times") as http:
        made = _post(http, "/v1/locations", {"name": "Old Town", "currency": "USD"})
        assert made.status_code == 201, made.text
        location = made.json()["id"]
        product = {"sku": "OLD-1", "name": "Old", "price": {"amount": 500, "currency": "USD"}}
        assert _post(http, "/v1/products", product).status_code == 201
        for at in TOO_EARLY:
            adjusted = _post(http, "/v1/inventory/adjustments", {
                "sku": "OLD-1", "location_id": location, "delta": 7, "reason": "received",
                "occurred_at": at,
            })  # fmt: skip
            assert adjusted.status_code == 400, adjusted.text
            assert [e["field"] for e in adjusted.json()["errors"]] == ["occurred_at"]
            consent = {"granted": True, "given_at": at, "channel": "email"}
            customer = _post(http, "/v1/customers", {"email": "old@example.com",
                                                     "marketing_consent": consent})  # fmt: skip
            assert customer.status_code == 400, customer.text
            fields = [e["field"] for e in customer.json()["errors"]]
            assert fields == ["marketing_consent.given_at"], customer.text
        levels = http.get("/v1/inventory", params={"sku": "OLD-1"}).json()["data"]
        assert all(level["on_hand"] == 0 for level in levels)
        history = http.get("/v1/inventory/history", params={"sku": "OLD-1"})
        assert history.status_code == 200 and history.json()["data"] == []
        assert http.get("/v1/customers").json()["data"] == []
        # The first second of 1970 is a time like any other.
        first = _post(http, "/v1/inventory/adjustments", {
            "sku": "OLD-1", "location_id": location, "delta": 1, "reason": "received",
            "occurred_at": "1970-01-01T00:00:00Z",
        })  # fmt: skip
        assert first.status_code == 201, first.text
        assert first.json()["entry"]["occurred_at"].startswith("1970-01-01T00:00:00")
        for at in ("0999-01-01T00:00:00Z", "1970-01-01T00:59:59+01:00"):
            since = http.get("/v1/customers", params={"updated_since": at})
            assert since.status_code == 400, (at, since.text)
            assert [e["field"] for e in since.json()["errors"]] == ["updated_since"]
