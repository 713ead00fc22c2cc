"""Loyalty points redeemed at a register checkout through the gateway over HTTP: priced as a
discount and redeemed with the sale; bad input is a 400 and more points than the customer
has a 409, neither charging anything."""

from __future__ import annotations

import time
import uuid
from typing import Any

import httpx
import psycopg
import pytest

from pos_devstack.testing import Running

pytestmark = pytest.mark.e2e


def _post(http: httpx.Client, path: str, body: dict[str, Any]) -> httpx.Response:
    return http.post(path, json=body, headers={"Idempotency-Key": str(uuid.uuid4())})


def test_a_register_sale_redeems_points_as_a_discount(platform: Running) -> None:
    http = platform.http
    location = http.get("/v1/locations").json()["data"][0]["id"]
    made = _post(http, "/v1/customers", {"email": f"{uuid.uuid4().hex[:10]}@example.com"})
    assert made.status_code == 201, made.text
    customer = made.json()["id"]
    adjusted = _post(
        http, f"/v1/customers/{customer}/points/adjustments", {"points": 100, "reason": "gift"}
    )
    assert adjusted.status_code == 201, adjusted.text
    sale = {"location_id": location, "customer_id": customer, "tender_type": "card",
            "card_token": "tok_visa", "lines": [{"sku": "MUG-LOGO", "quantity": 1}]}  # fmt: skip
    plain = _post(http, "/v1/checkouts", sale).json()["order"]

    sold = _post(http, "/v1/checkouts", {**sale, "redeem_points": 80})
    assert sold.status_code == 201, sold.text
    order = sold.json()["order"]
    assert order["points_redeemed"] == 80
    # One point is worth 0.01 (the default program): 0.80 more off than the same sale without.
    assert order["discount_total"]["amount"] == plain["discount_total"]["amount"] + 80
    assert sold.json()["payment"]["amount"]["amount"] == order["total"]["amount"]
    history = http.get(f"/v1/customers/{customer}/points").json()["data"]
    # What the sale earns arrives a moment later, by its event; what it redeemed is there now.
    mine = [(e["kind"], e["points"]) for e in history
            if e["order_id"] == order["id"] and e["kind"] != "earned"]  # fmt: skip
    assert mine == [("redeemed", -80)]

    payments = len(http.get("/v1/payments", params={"limit": 200}).json()["data"])
    # Without a customer, or worth more than the sale: a 400 naming the field.
    for bad in ({**sale, "customer_id": "", "redeem_points": 5},
                {**sale, "redeem_points": 1_000_000}):  # fmt: skip
        answer = _post(http, "/v1/checkouts", bad)
        assert answer.status_code == 400, answer.text
        assert [e["field"] for e in answer.json()["errors"]] == ["redeem_points"]
    # More than the customer has (20 left, perhaps a few earned since): a 409, nothing charged.
    short = _post(http, "/v1/checkouts", {**sale, "redeem_points": 500})
    assert (short.status_code, short.json()["code"]) == (409, "insufficient_points")
    assert len(http.get("/v1/payments", params={"limit": 200}).json()["data"]) == payments


def _merge_known(platform: Running, duplicate: str) -> str | None:
    """Where the order service's read model says the duplicate went (None: not learnt yet)."""
    url = platform.platform.env_for("order")["DATABASE_URL"].replace("+psycopg", "")
    with psycopg.connect(url) as conn:
        row = conn.execute(
            "SELECT merged_into FROM known_customers WHERE customer_id = %s", (duplicate,)
        ).fetchone()
    return row[0] if row else None


def _wait(what: str, done: Any) -> Any:
    deadline = time.monotonic() + 30
    while not (found := done()):
        assert time.monotonic() < deadline, what
        time.sleep(0.1)
    return found


def test_a_sale_naming_a_merged_duplicate_is_the_survivors(platform: Running) -> None:
    http = platform.http
    location = http.get("/v1/locations").json()["data"][0]["id"]
    made = [_post(http, "/v1/customers", {"email": f"{uuid.uuid4().hex[:10]}@example.com"})
            for _ in range(2)]  # fmt: skip
    survivor, duplicate = (m.json()["id"] for m in made)
    gift = {"points": 100, "reason": "gift"}
    assert _post(http, f"/v1/customers/{duplicate}/points/adjustments", gift).status_code == 201
    merged = _post(http, f"/v1/customers/{survivor}/merge", {"duplicate_id": duplicate})
    assert merged.status_code == 200, merged.text
    _wait("the order service never learnt the merge",
          lambda: _merge_known(platform, duplicate) == survivor)  # fmt: skip

    lines = [{"sku": "MUG-LOGO", "quantity": 1}]
    # The preview prices the survivor's points (the duplicate's went to them with the merge).
    quote = http.post(
        "/v1/carts/calculate",
        json={"location_id": location, "customer_id": duplicate, "redeem_points": 50,
              "lines": lines},
    )  # fmt: skip
    assert quote.status_code == 200, quote.text
    sale = {"location_id": location, "customer_id": duplicate, "tender_type": "card",
            "card_token": "tok_visa", "lines": lines, "redeem_points": 50}  # fmt: skip
    sold = _post(http, "/v1/checkouts", sale)
    assert sold.status_code == 201, sold.text
    order = sold.json()["order"]
    assert order["customer_id"] == survivor and order["points_redeemed"] == 50
    assert order["total"]["amount"] == quote.json()["total"]["amount"]
    assert http.get(f"/v1/orders/{order['id']}").json()["customer_id"] == survivor

    # What the sale earns, and its place in the history, are the survivor's.
    def earned() -> list[Any]:
        entries = http.get(f"/v1/customers/{survivor}/points").json()["data"]
        return [e for e in entries if e["order_id"] == order["id"] and e["kind"] == "earned"]

    _wait("the sale never earned the survivor points", earned)
    history = http.get(f"/v1/customers/{survivor}/orders").json()["data"]
    assert order["id"] in [h["order_id"] for h in history]
    theirs = http.get(f"/v1/customers/{duplicate}/points").json()["data"]
    assert [e for e in theirs if e["order_id"] == order["id"]] == []


def test_store_credit_for_a_merged_duplicate_is_the_survivors(platform: Running) -> None:
    """A return without a receipt naming a duplicate merged away credits the survivor, as a
    sale naming it is theirs: the return and its store credit card name the survivor."""
    http = platform.http
    location = http.get("/v1/locations").json()["data"][0]["id"]
    made = [_post(http, "/v1/customers", {"email": f"{uuid.uuid4().hex[:10]}@example.com"})
            for _ in range(2)]  # fmt: skip
    survivor, duplicate = (m.json()["id"] for m in made)
    merged = _post(http, f"/v1/customers/{survivor}/merge", {"duplicate_id": duplicate})
    assert merged.status_code == 200, merged.text
    _wait("the order service never learnt the merge",
          lambda: _merge_known(platform, duplicate) == survivor)  # fmt: skip
    lines = [{"sku": "MUG-LOGO", "quantity": 1}]
    sale = {"location_id": location, "tender_type": "card", "card_token": "tok_visa",
            "lines": lines}  # fmt: skip
    assert _post(http, "/v1/checkouts", sale).status_code == 201  # the price it is credited at

    body = {"location_id": location, "customer_id": duplicate, "lines": lines,
            "reason": "no_receipt"}  # fmt: skip
    credited = _post(http, "/v1/returns", body)

    assert credited.status_code == 201, credited.text
    ret, card = credited.json()["order_return"], credited.json()["store_credit"]
    assert ret["customer_id"] == survivor
    assert http.get(f"/v1/returns/{ret['id']}").json()["customer_id"] == survivor
    cards = http.get("/v1/gift-cards", params={"customer_id": survivor}).json()["data"]
    assert card["gift_card_id"] in [c["id"] for c in cards]


def test_more_points_than_the_customer_has_is_a_409_naming_redeem_points(
    platform: Running,
) -> None:
    """A checkout, an order and a cart preview redeeming more points than the customer has
    available: the 409 `insufficient_points` names `redeem_points` in `errors[]` (as its 400s
    do), with `available`, and charges or holds nothing. Before, it named no field."""
    http = platform.http
    location = http.get("/v1/locations").json()["data"][0]["id"]
    made = _post(http, "/v1/customers", {"email": f"{uuid.uuid4().hex[:10]}@example.com"})
    customer = made.json()["id"]
    gift = {"points": 100, "reason": "gift"}
    assert _post(http, f"/v1/customers/{customer}/points/adjustments", gift).status_code == 201
    lines = [{"sku": "MUG-LOGO", "quantity": 1}]
    ask = {"location_id": location, "customer_id": customer, "lines": lines, "redeem_points": 500}
    sale = {**ask, "tender_type": "card", "card_token": "tok_visa"}
    payments = len(http.get("/v1/payments", params={"limit": 200}).json()["data"])
    for path, body in (("/v1/checkouts", sale), ("/v1/orders", ask), ("/v1/carts/calculate", ask)):
        short = _post(http, path, body)
        assert (short.status_code, short.json()["code"]) == (409, "insufficient_points"), path
        assert [e["field"] for e in short.json()["errors"]] == ["redeem_points"], short.text
        assert short.json()["available"] == 100, short.text
    assert len(http.get("/v1/payments", params={"limit": 200}).json()["data"]) == payments
    # Nothing sold: an order announced before its points were refused is cancelled.
    orders = http.get("/v1/orders", params={"customer_id": customer}).json()["data"]
    assert {(o["status"], o["cancel_reason"]) for o in orders} <= {
        ("cancelled", "insufficient_points")
    }, orders
