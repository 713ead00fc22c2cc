"""A 404 for something named in a request's body names the field in `errors[]`, as a 400
does: an order, a register checkout and a cart preview naming an unknown SKU, store or
customer. Another merchant's is the same answer, word for word, as a made-up one."""

from __future__ import annotations

import json
import uuid
from functools import partial
from typing import Any

import httpx
import pytest

from pos_devstack.http_checks import available, ok, post, stocked
from pos_devstack.testing import Running

pytestmark = pytest.mark.e2e


def _missing(answer: httpx.Response) -> dict[str, Any]:
    assert answer.status_code == 404, answer.text
    problem: dict[str, Any] = answer.json()
    assert problem["code"] == "resource_missing"
    return problem


def _fields(problem: dict[str, Any]) -> list[str]:
    return [e["field"] for e in problem.get("errors", [])]


def _bodies(store: str, sku: str) -> dict[str, dict[str, Any]]:
    lines = [{"sku": sku, "quantity": 1}]
    return {
        "/v1/orders": {"location_id": store, "lines": lines,
                       "fulfillments": [{"type": "pickup", "location_id": store}]},
        "/v1/checkouts": {"location_id": store, "lines": lines, "tender_type": "card",
                          "card_token": "tok_visa"},
        "/v1/carts/calculate": {"location_id": store, "lines": lines},
    }  # fmt: skip


FIELDS = {"lines[1].sku": "sku", "location_id": "store", "customer_id": "customer"}


def _naming(body: dict[str, Any], what: str, value: str) -> dict[str, Any]:
    """The body naming `value` as a second line's SKU, the store (selling in store: no
    fulfilment naming the store given) or the customer."""
    if what == "sku":
        return {**body, "lines": [*body["lines"], {"sku": value, "quantity": 1}]}
    if what == "store":
        return {**{k: v for k, v in body.items() if k != "fulfillments"}, "location_id": value}
    return {**body, "customer_id": value}


def test_a_missing_sku_store_or_customer_in_the_body_is_a_404_naming_the_field(
    platform: Running,
) -> None:
    http = platform.http
    sku, (store, _) = stocked(http, "REF")
    with platform.new_merchant("Reference shop") as other:
        theirs_sku, _ = stocked(other, "THEIRS")
        theirs_store = ok(post(other, "/v1/locations", {"name": "Theirs", "currency": "USD"}),
                          201)["id"]  # fmt: skip
        theirs_customer = ok(post(other, "/v1/customers", {"email": "t@example.com"}), 201)["id"]
    made_up = {"sku": "NO-SUCH-SKU", "store": "loc_nosuchstore", "customer": "cus_nosuchone"}
    theirs = {"sku": theirs_sku, "store": theirs_store, "customer": theirs_customer}
    for path, body in _bodies(store, sku).items():
        for field, what in FIELDS.items():
            ask = partial(_naming, body, what)
            mine = _missing(post(http, path, ask(made_up[what])))
            assert _fields(mine) == [field], (path, mine)
            # Whose it is, is not told: the same problem but for the id it quotes.
            foreign = json.dumps(_missing(post(http, path, ask(theirs[what]))))
            assert foreign.replace(theirs[what], made_up[what]) == json.dumps(mine), path
    # An order's other store to fulfil from is named by its fulfilment.
    order = _bodies(store, sku)["/v1/orders"]
    order["fulfillments"] = [{"type": "pickup", "location_id": theirs_store}]
    assert _fields(_missing(post(http, "/v1/orders", order))) == ["fulfillments[0].location_id"]
    assert available(http, sku, store) == 10  # nothing was held or sold by any of them


def test_a_register_naming_another_store_in_the_body_is_told_the_field(
    platform: Running,
) -> None:
    """A register works at its own store only: another of the merchant's is refused at the
    edge as missing, with the field that named it, as the services name a made-up one."""
    http = platform.http
    sku, (here, there) = stocked(http, "TILL")
    register = ok(post(http, "/v1/registers", {"location_id": here, "name": "Till R"}), 201)
    code = ok(post(http, f"/v1/registers/{register['id']}/pairing-codes", {}), 201)["code"]
    paired = ok(httpx.post(platform.platform.gateway_url + "/v1/registers/pair",
                           json={"code": code}), 201)  # fmt: skip
    headers = {"Authorization": f"Bearer {paired['credential']}"}
    with httpx.Client(base_url=platform.platform.gateway_url, headers=headers) as device:
        for path, body in _bodies(there, sku).items():
            body.pop("fulfillments", None)
            answer = device.post(path, json=body, headers={"Idempotency-Key": str(uuid.uuid4())})
            assert _fields(_missing(answer)) == ["location_id"], path


def test_stock_routes_name_the_missing_sku_or_store_in_the_body(platform: Running) -> None:
    """Adjustments, counts, transfers and thresholds name the body field of a SKU or store
    the merchant does not have, made up or another merchant's alike; nothing moves."""
    http = platform.http
    sku, (here, there) = stocked(http, "STK")
    with platform.new_merchant("Stock reference shop") as other:
        theirs_store = ok(post(other, "/v1/locations", {"name": "Theirs", "currency": "USD"}),
                          201)["id"]  # fmt: skip
        theirs_sku, _ = stocked(other, "THEIRS")
    adjust = {"sku": sku, "location_id": here, "delta": 1, "reason": "received"}
    count = {"sku": sku, "location_id": here, "quantity": 3}
    move = {"from_location_id": here, "to_location_id": there,
            "lines": [{"sku": sku, "quantity": 1}, {"sku": sku + "-2", "quantity": 1}]}  # fmt: skip
    cases = [
        ("/v1/inventory/adjustments", {**adjust, "sku": "{sku}"}, ["sku"]),
        ("/v1/inventory/adjustments", {**adjust, "location_id": "{store}"}, ["location_id"]),
        ("/v1/inventory/counts", {**count, "sku": "{sku}"}, ["sku"]),
        ("/v1/inventory/counts", {**count, "location_id": "{store}"}, ["location_id"]),
        ("/v1/inventory/transfers", {**move, "to_location_id": "{store}"}, ["to_location_id"]),
        ("/v1/inventory/transfers", {**move, "from_location_id": "{store}"},
         ["from_location_id"]),
        ("/v1/inventory/low-stock-thresholds", {"sku": "{sku}", "threshold": 2}, ["sku"]),
    ]  # fmt: skip
    for path, template, fields in cases:
        made_up = {"sku": "NO-SUCH-SKU", "store": "loc_nosuchstore"}
        theirs = {"sku": theirs_sku, "store": theirs_store}
        for ids in (made_up, theirs):
            body = json.loads(json.dumps(template).replace("{sku}", ids["sku"])
                              .replace("{store}", ids["store"]))  # fmt: skip
            assert _fields(_missing(post(http, path, body))) == fields, (path, body)
    # The second line's SKU of a transfer, which no product sells: the line that named it.
    missing_line = _missing(post(http, "/v1/inventory/transfers", move))
    assert _fields(missing_line) == ["lines[1].sku"]
    assert available(http, sku, here) == 10 and available(http, sku, there) == 10


def test_returns_and_gift_cards_name_the_missing_store_customer_or_order_in_the_body(
    platform: Running,
) -> None:
    """A return's or an exchange's line taking units back at a store, a return without a
    receipt's store, and a gift card's customer or order: each a 404 naming the field that
    named it, made up or another merchant's alike, with nothing returned, refunded or issued.
    Before, these 404s named no field (an order's, a checkout's and a cart's did)."""
    http = platform.http
    sku, (store, _) = stocked(http, "RET")
    with platform.new_merchant("Return reference shop") as other:
        theirs_store = ok(post(other, "/v1/locations", {"name": "Theirs", "currency": "USD"}),
                          201)["id"]  # fmt: skip
        theirs_customer = ok(post(other, "/v1/customers", {"email": "r@example.com"}), 201)["id"]
        theirs_sku, _ = stocked(other, "THEIRS")
        theirs_order = ok(post(other, "/v1/orders", {"location_id": theirs_store,
                          "lines": [{"sku": theirs_sku, "quantity": 1}]}), 201)["id"]  # fmt: skip
    sale = ok(post(http, "/v1/checkouts", {"location_id": store, "tender_type": "card",
              "card_token": "tok_visa", "lines": [{"sku": sku, "quantity": 2}]}), 201)  # fmt: skip
    order = sale["order"]["id"]
    customer = ok(post(http, "/v1/customers", {"email": "ret@example.com"}), 201)["id"]
    back = {"line_id": "L1", "quantity": 1, "location_id": "{store}"}
    usd = {"amount": 500, "currency": "USD"}
    cases = [
        (f"/v1/orders/{order}/returns", {"lines": [back], "reason": "unwanted"},
         ["lines[0].location_id"]),
        (f"/v1/orders/{order}/exchanges", {"lines": [back], "reason": "unwanted",
         "new_lines": [{"sku": sku, "quantity": 1}]}, ["lines[0].location_id"]),
        ("/v1/returns", {"location_id": "{store}", "customer_id": customer, "reason": "unwanted",
         "lines": [{"sku": sku, "quantity": 1}]}, ["location_id"]),
        ("/v1/gift-cards", {"amount": usd, "customer_id": "{customer}"}, ["customer_id"]),
        ("/v1/gift-cards", {"amount": usd, "order_id": "{order}"}, ["order_id"]),
    ]  # fmt: skip
    made_up = {"store": "loc_nosuchstore", "customer": "cus_nosuchone", "order": "ord_nosuch"}
    theirs = {"store": theirs_store, "customer": theirs_customer, "order": theirs_order}
    for path, template, fields in cases:
        answers = []
        for ids in (made_up, theirs):
            text = json.dumps(template)
            for what, value in ids.items():
                text = text.replace("{" + what + "}", value)
            problem = _missing(post(http, path, json.loads(text)))
            assert _fields(problem) == fields, (path, problem)
            answers.append(json.dumps(problem).replace(theirs_store, made_up["store"])
                           .replace(theirs_customer, made_up["customer"])
                           .replace(theirs_order, made_up["order"]))  # fmt: skip
        assert answers[0] == answers[1], path  # whose it is, is not told
    assert ok(http.get(f"/v1/orders/{order}/returns"))["data"] == []
    assert ok(http.get(f"/v1/orders/{order}/payments"))["refunded"]["amount"] == 0
    assert ok(http.get("/v1/gift-cards", params={"customer_id": customer}))["data"] == []
    assert available(http, sku, store) == 8
