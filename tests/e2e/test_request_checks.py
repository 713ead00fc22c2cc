"""Requests checked as a whole: a query parameter that takes one value is given once (a
repeated one is a 400 naming it, never the last value read as if nothing were odd; a list
parameter takes every value), and a body's field errors are all named at once."""

from __future__ import annotations

import pytest

from pos_devstack.testing import Running

pytestmark = pytest.mark.e2e


def _refused(answer: object, field: str) -> None:
    status = answer.status_code
    problem = answer.json()
    assert status == 400, problem
    assert problem["code"] == "invalid_request"
    assert [e["field"] for e in problem["errors"]] == [field]


def test_a_single_valued_parameter_given_twice_is_a_400_naming_it(platform: Running) -> None:
    http = platform.http
    here, there = (loc["id"] for loc in http.get("/v1/locations").json()["data"][:2])
    stock = "/v1/inventory?sku=TEE-BLK-M"
    _refused(http.get(f"{stock}&location_id={here}&location_id={there}"), "location_id")
    _refused(http.get("/v1/products?limit=1&limit=2"), "limit")
    # The same value twice is still two values of a parameter that takes one.
    _refused(http.get(f"{stock}&location_id={here}&location_id={here}"), "location_id")
    # Given once, it reads as always.
    once = http.get(f"{stock}&location_id={here}")
    assert once.status_code == 200, once.text
    assert {row["location_id"] for row in once.json()["data"]} <= {here}


def test_a_list_parameter_takes_every_value(platform: Running) -> None:
    http = platform.http
    skus = ["MUG-LOGO", "TEE-BLK-M"]
    both = http.get("/v1/inventory", params=[("sku", skus[0]), ("sku", skus[1])])
    assert both.status_code == 200, both.text
    assert {row["sku"] for row in both.json()["data"]} == set(skus)


def test_a_location_with_many_bad_fields_names_every_one(platform: Running) -> None:
    """Every field error at once, the time zone's beside the schema's."""
    body = {"name": "", "currency": "DOLLARS", "tax_rate_bps": -1, "kind": "moon",
            "time_zone": "Mars/Olympus"}  # fmt: skip
    answer = platform.http.post(
        "/v1/locations", json=body, headers={"Idempotency-Key": "bad-location-fields"}
    )
    assert answer.status_code == 400, answer.text
    named = {e["field"] for e in answer.json()["errors"]}
    assert named == {"name", "currency", "tax_rate_bps", "kind", "time_zone"}
    # A zone alone is still the service's own check.
    alone = platform.http.post(
        "/v1/locations",
        json={"name": "Zone", "currency": "USD", "time_zone": "../etc/passwd"},
        headers={"Idempotency-Key": "bad-location-zone"},
    )
    assert [e["field"] for e in alone.json()["errors"]] == ["time_zone"]
