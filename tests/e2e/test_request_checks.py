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


def test_a_filter_naming_what_does_not_exist_is_a_404_naming_the_parameter(
    platform: Running,
) -> None:
    """A list filtered by an id the merchant does not have (never made, or another
    merchant's) is the 404 it always was, with `errors[]` naming the query parameter, as a
    body field naming such an id is named; a path's id needs none."""
    http = platform.http
    other = platform.new_merchant("filter-owner")
    theirs = other.post(
        "/v1/customers", json={"given_name": "Theirs"}, headers={"Idempotency-Key": "f-1"}
    ).json()["id"]
    for path, name, value, resource in [
        ("/v1/orders", "customer_id", "cus_01j9x6q7r8s9t0v1w2x3y4z5ab", "customer"),
        ("/v1/orders", "customer_id", theirs, "customer"),
        ("/v1/payments", "location_id", "loc_01j9x6q7r8s9t0v1w2x3y4z5ab", "location"),
        ("/v1/gift-cards", "customer_id", theirs, "customer"),
        ("/v1/customers", "group_id", "cgrp_01j9x6q7r8s9t0v1w2x3y4z5ab", "group"),
        ("/v1/orders", "register_id", "reg_01j9x6q7r8s9t0v1w2x3y4z5ab", "register"),
    ]:
        answer = http.get(path, params={name: value})
        assert answer.status_code == 404, (path, answer.text)
        problem = answer.json()
        assert problem["code"] == "resource_missing"
        assert problem["errors"] == [{"field": name, "reason": f"no such {resource}"}], path
    # A resource named by the path is not a parameter's fault: nothing more is named.
    missing = http.get("/v1/orders/ord_01j9x6q7r8s9t0v1w2x3y4z5ab")
    assert missing.status_code == 404 and "errors" not in missing.json()
