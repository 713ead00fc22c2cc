"""A store lists all its stock by `location_id` alone, in pages by SKU (as Square counts
inventory by location); with neither a SKU nor a location the list is a 400 naming `sku`."""

from __future__ import annotations

import pytest

from pos_devstack.http_checks import ok, post
from pos_devstack.testing import Running

pytestmark = pytest.mark.e2e


def test_a_location_lists_all_its_stock_in_pages(platform: Running) -> None:
    http = platform.new_merchant("Stock by location e2e")
    here = ok(post(http, "/v1/locations", {"name": "Here", "currency": "USD"}), 201)["id"]
    there = ok(post(http, "/v1/locations", {"name": "There", "currency": "USD"}), 201)["id"]
    skus = ["LOC-A", "LOC-B", "LOC-C"]
    for sku in skus:
        ok(
            post(
                http,
                "/v1/products",
                {"sku": sku, "name": sku, "price": {"amount": 100, "currency": "USD"}},
            ),
            201,
        )
        ok(
            post(
                http,
                "/v1/inventory/adjustments",
                {"sku": sku, "location_id": here, "delta": 4, "reason": "received"},
            ),
            201,
        )
    ok(
        post(
            http,
            "/v1/inventory/adjustments",
            {"sku": "LOC-B", "location_id": there, "delta": 9, "reason": "received"},
        ),
        201,
    )

    first = ok(http.get("/v1/inventory", params={"location_id": here, "limit": 2}))
    assert [(lv["sku"], lv["location_id"], lv["on_hand"]) for lv in first["data"]] == [
        ("LOC-A", here, 4),
        ("LOC-B", here, 4),
    ]
    assert first["next_cursor"]
    rest = ok(
        http.get(
            "/v1/inventory",
            params={"location_id": here, "limit": 2, "cursor": first["next_cursor"]},
        )
    )
    assert [lv["sku"] for lv in rest["data"]] == ["LOC-C"] and rest["next_cursor"] is None
    # The cursor is this list's: with another location it is refused, not read.
    moved = http.get("/v1/inventory", params={"location_id": there, "cursor": first["next_cursor"]})
    assert [e["field"] for e in moved.json()["errors"]] == ["cursor"]
    whole = ok(http.get("/v1/inventory", params={"location_id": there}))
    assert [(lv["sku"], lv["on_hand"]) for lv in whole["data"]] == [("LOC-B", 9)]

    neither = http.get("/v1/inventory")
    assert neither.status_code == 400, neither.text
    assert [e["field"] for e in neither.json()["errors"]] == ["sku"]
    missing = http.get("/v1/inventory", params={"location_id": "loc_nothing"})
    assert (missing.status_code, missing.json()["code"]) == (404, "resource_missing")
    # By SKU, as ever: unpaged.
    by_sku = ok(http.get("/v1/inventory", params={"sku": "LOC-B"}))
    assert sorted(lv["on_hand"] for lv in by_sku["data"]) == [4, 9]
