"""End to end through the gateway over HTTP: every service a separate process."""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable
from typing import Any

import httpx
import pytest

from pos_devstack.http_checks import polled
from pos_devstack.testing import Running

pytestmark = pytest.mark.e2e


def _eventually(check: Callable[[], Any], timeout: float = 30.0) -> Any:
    """Poll until `check` returns something truthy (events cross the bus asynchronously)."""
    deadline = time.monotonic() + timeout
    while True:
        value = check()
        if value:
            return value
        assert time.monotonic() < deadline, "the expected state was not reached in time"
        time.sleep(0.1)


def _location(http: httpx.Client, name: str) -> str:
    found = [x for x in http.get("/v1/locations").json()["data"] if x["name"] == name]
    return str(found[0]["id"])


def _on_hand(http: httpx.Client, sku: str, location_id: str) -> int:
    levels = http.get("/v1/inventory", params={"sku": sku, "location_id": location_id}).json()
    return int(levels["data"][0]["on_hand"])


def _checkout(
    http: httpx.Client, key: str, location_id: str, customer_id: str, **over: Any
) -> httpx.Response:
    body: dict[str, Any] = {
        "location_id": location_id,
        "customer_id": customer_id,
        "lines": [{"sku": "TEE-BLK-M", "quantity": 2}, {"sku": "MUG-LOGO", "quantity": 1}],
        "tender_type": "card",
        "card_token": "tok_visa",
    }
    body.update(over)
    return http.post("/v1/checkouts", json=body, headers={"Idempotency-Key": key})


def test_requests_without_a_valid_key_are_401_problems(platform: Running) -> None:
    anonymous = httpx.get(platform.platform.gateway_url + "/v1/products")
    assert anonymous.status_code == 401
    assert anonymous.headers["content-type"] == "application/problem+json"
    assert anonymous.json()["code"] == "unauthorized"
    forged = httpx.get(
        platform.platform.gateway_url + "/v1/products",
        headers={"Authorization": "Bearer pos_test_" + "a" * 38},
    )
    assert forged.status_code == 401


def test_the_sandbox_merchant_has_demo_data(platform: Running) -> None:
    products = platform.http.get("/v1/products").json()["data"]
    assert {p["sku"] for p in products} >= {"TEE-BLK-M", "MUG-LOGO", "CAP-NAVY", "SOCKS-3PK"}
    tee = next(p for p in products if p["sku"] == "TEE-BLK-M")
    assert tee["price"] == {"amount": 2500, "currency": "USD"}
    assert len(platform.http.get("/v1/locations").json()["data"]) == 2


def test_checkout_confirms_then_stock_and_loyalty_follow_from_the_event(platform: Running) -> None:
    http = platform.http
    downtown = _location(http, "Downtown Store")
    customer = http.post(
        "/v1/customers",
        json={"email": f"{uuid.uuid4().hex[:8]}@example.com", "given_name": "Grace"},
        headers={"Idempotency-Key": str(uuid.uuid4())},
    ).json()
    before = _on_hand(http, "TEE-BLK-M", downtown)
    key = str(uuid.uuid4())
    answer = _checkout(http, key, downtown, customer["id"])
    assert answer.status_code == 201, answer.text
    order = answer.json()["order"]
    # 2 x 25.00 + 12.00 = 62.00; 10 % off over 50.00 = 6.20; tax 8.25 % of 55.80 = 4.60
    assert order["subtotal"]["amount"] == 6200
    assert order["discount_total"]["amount"] == 620
    assert order["tax_total"]["amount"] == 460
    assert order["total"]["amount"] == 6040
    assert order["status"] == "completed"  # sold and handed over at once
    assert answer.json()["payment"]["status"] == "captured"

    _eventually(lambda: _on_hand(http, "TEE-BLK-M", downtown) == before - 2)
    points = _eventually(
        lambda: http.get(f"/v1/customers/{customer['id']}").json()["loyalty_points"]
    )
    # One point per whole unit spent before tax (the loyalty program's default): 55.80 -> 55.
    assert points == 55

    # The same Idempotency-Key replays the sale instead of selling again.
    replay = _checkout(http, key, downtown, customer["id"])
    assert replay.status_code == 201
    assert replay.json()["order"]["id"] == order["id"]
    fetched = http.get(f"/v1/orders/{order['id']}").json()
    assert fetched["total"]["amount"] == 6040
    assert _on_hand(http, "TEE-BLK-M", downtown) == before - 2
    assert http.get(f"/v1/customers/{customer['id']}").json()["loyalty_points"] == 55


def test_a_declined_card_is_a_402_problem(platform: Running) -> None:
    downtown = _location(platform.http, "Downtown Store")
    answer = _checkout(platform.http, str(uuid.uuid4()), downtown, "", card_token="tok_declined")
    assert answer.status_code == 402
    problem = answer.json()
    assert problem["code"] == "payment_declined"
    # The sale is saved before the card is charged; declined, it is cancelled with its reason.
    assert problem["order"]["status"] == "cancelled"
    assert problem["order"]["cancel_reason"] == "payment_declined"


def test_bad_input_is_a_400_problem_with_field_errors(platform: Running) -> None:
    answer = platform.http.post(
        "/v1/products",
        json={"sku": "", "name": "x", "price": {"amount": -1, "currency": "usd"}},
        headers={"Idempotency-Key": str(uuid.uuid4())},
    )
    assert answer.status_code == 400
    problem = answer.json()
    assert answer.headers["content-type"] == "application/problem+json"
    fields = {e["field"] for e in problem["errors"]}
    assert {"sku", "price.amount", "price.currency"} <= fields
    unknown = platform.http.get("/v1/nothing-here")
    assert unknown.status_code == 404
    assert unknown.json()["code"] == "route_not_found"


def test_another_merchants_resources_are_404(platform: Running) -> None:
    http = platform.http
    downtown = _location(http, "Downtown Store")
    order = _checkout(http, str(uuid.uuid4()), downtown, "").json()["order"]
    product = http.get("/v1/products").json()["data"][0]
    with platform.new_merchant("Other Shop") as other:
        assert other.get(f"/v1/orders/{order['id']}").status_code == 404
        assert other.get(f"/v1/products/{product['id']}").status_code == 404
        assert other.get("/v1/products").json()["data"] == []
        missing = other.get("/v1/orders/ord_doesnotexist")
        assert missing.status_code == 404
        assert missing.json()["code"] == other.get(f"/v1/orders/{order['id']}").json()["code"]


def test_checkout_goes_on_at_list_price_when_promotion_is_down(platform: Running) -> None:
    http = platform.http
    downtown = _location(http, "Downtown Store")
    platform.platform.stop_process("promotion")
    try:
        answer = _checkout(http, str(uuid.uuid4()), downtown, "")
        assert answer.status_code == 201, answer.text
        order = answer.json()["order"]
        assert order["discounts_applied"] is False
        assert order["discount_total"]["amount"] == 0
        assert order["total"]["amount"] == 6200 + 512  # 8.25 % of 62.00 = 5.115 -> 5.12
        # The order says so with a warning (architecture: "When a service is down"), and so
        # does every later read of it and the preview of the same cart.
        assert [w["code"] for w in order["warnings"]] == ["discounts_unavailable"]
        assert order["warnings"][0]["message"]
        again = http.get(f"/v1/orders/{order['id']}").json()
        assert again["warnings"] == order["warnings"]
        lines = [{"sku": "TEE-BLK-M", "quantity": 2}, {"sku": "MUG-LOGO", "quantity": 1}]
        quote = http.post("/v1/carts/calculate", json={"location_id": downtown, "lines": lines})
        assert quote.status_code == 200, quote.text
        assert quote.json()["discounts_applied"] is False
        assert [w["code"] for w in quote.json()["warnings"]] == ["discounts_unavailable"]
    finally:
        platform.platform.restart_process("promotion")


def test_an_idempotency_key_replays_the_first_answer_byte_for_byte(platform: Running) -> None:
    http = platform.http
    key = str(uuid.uuid4())
    body = {"email": f"{key[:8]}@example.com", "given_name": "Linus"}
    first = http.post("/v1/customers", json=body, headers={"Idempotency-Key": key})
    assert first.status_code == 201
    assert "Idempotent-Replayed" not in first.headers
    again = http.post("/v1/customers", json=body, headers={"Idempotency-Key": key})
    assert again.status_code == 201
    assert again.headers["Idempotent-Replayed"] == "true"
    assert again.content == first.content
    other = http.post(
        "/v1/customers", json={**body, "given_name": "Other"}, headers={"Idempotency-Key": key}
    )
    assert other.status_code == 422
    assert other.json()["code"] == "idempotency_key_reused"
    # The key is the merchant's own: another merchant may use the same one freely.
    with platform.new_merchant("Key Reuser") as stranger:
        theirs = stranger.post("/v1/customers", json=body, headers={"Idempotency-Key": key})
        assert theirs.status_code == 201
        assert theirs.json()["id"] != first.json()["id"]


def test_every_v1_answer_carries_rate_limit_and_request_id_headers(platform: Running) -> None:
    answer = platform.http.get("/v1/products", headers={"X-Request-Id": "trace-me-123"})
    assert answer.headers["X-Request-Id"] == "trace-me-123"
    assert answer.headers["RateLimit-Policy"].startswith('"default";q=')
    assert answer.headers["RateLimit"].startswith('"default";r=')


def test_metrics_count_requests_per_route_template(platform: Running) -> None:
    platform.http.get("/v1/orders/ord_doesnotexist")
    text = httpx.get(platform.platform.gateway_url + "/metrics").text
    assert 'route="/v1/orders/{order_id}"' in text
    assert "ord_doesnotexist" not in text  # ids never become label values
    assert "omnitill_http_request_duration_seconds_bucket" in text


def test_the_docs_page_needs_no_network(platform: Running) -> None:
    base = platform.platform.gateway_url
    page = httpx.get(base + "/docs").text
    assert "https://" not in page.replace("https://docs.omnitill.dev", "")
    script = httpx.get(base + "/swagger/swagger-ui-bundle.js")
    assert script.status_code == 200 and len(script.content) > 100_000


def test_large_answers_are_gzipped_on_request(platform: Running) -> None:
    answer = httpx.get(platform.platform.gateway_url + "/openapi.json",
                       headers={"Accept-Encoding": "gzip"})  # fmt: skip
    assert answer.headers["content-encoding"] == "gzip"
    assert answer.json()["info"]["title"] == "Omnitill API"


def test_readiness_survives_a_service_being_down(platform: Running) -> None:
    running = platform.platform
    running.stop_process("customer")
    try:
        ready = httpx.get(running.gateway_url + "/readyz")
        assert ready.status_code == 200
        assert ready.json()["checks"]["customer"] == "unavailable"
        answer = platform.http.get("/v1/customers")
        assert answer.status_code == 503
        assert answer.json()["code"] == "service_unavailable"
        assert int(answer.headers["retry-after"]) > 0  # when to try again, as a 429 says
    finally:
        running.restart_process("customer")


def test_if_match_guards_updates_with_the_version(platform: Running) -> None:
    http = platform.http
    made = http.post(
        "/v1/customers",
        json={"email": f"{uuid.uuid4().hex[:8]}@example.com", "given_name": "Ann"},
        headers={"Idempotency-Key": str(uuid.uuid4())},
    ).json()
    path = f"/v1/customers/{made['id']}"
    etag = http.get(path).headers["ETag"]
    assert etag == '"1"'
    first = http.patch(path, json={"given_name": "Anne"}, headers={"If-Match": etag})
    assert first.status_code == 200
    assert first.json()["given_name"] == "Anne" and first.json()["version"] == 2
    stale = http.patch(path, json={"given_name": "Annie"}, headers={"If-Match": etag})
    assert stale.status_code == 412
    assert stale.json()["current_version"] == 2
    assert http.get(path).json()["given_name"] == "Anne"
    bad = http.patch(path, json={"given_name": "X"}, headers={"If-Match": "yesterday"})
    assert bad.status_code == 400
    with platform.new_merchant("Patcher") as other:
        assert other.patch(path, json={"given_name": "Mallory"}).status_code == 404


def test_a_partner_polls_changes_with_updated_since_and_misses_nothing(
    platform: Running,
) -> None:
    with platform.new_merchant("Poller") as http:
        made = [
            http.post(
                "/v1/customers",
                json={"email": f"p{i}-{uuid.uuid4().hex[:6]}@example.com"},
                headers={"Idempotency-Key": str(uuid.uuid4())},
            ).json()
            for i in range(3)
        ]
        since = made[0]["updated_at"]

        def walk() -> list[str]:
            seen: list[str] = []
            cursor = None
            while True:  # two pages of at most two
                params = {"updated_since": since, "limit": 2,
                          **({"cursor": cursor} if cursor else {})}  # fmt: skip
                body = http.get("/v1/customers", params=params).json()
                seen += [c["id"] for c in body["data"]]
                cursor = body["next_cursor"]
                if cursor is None:
                    return seen

        # The feed stops at the oldest transaction open in the customer database (the relay's,
        # say), so what was just made may show a moment later: walked again until it does.
        assert polled(walk, lambda seen: len(seen) >= 3) == [c["id"] for c in made]
        # A change moves a customer to the end of the feed, after the last time seen.
        last_seen = http.get(f"/v1/customers/{made[-1]['id']}").json()["updated_at"]
        changed = http.patch(f"/v1/customers/{made[0]['id']}", json={"given_name": "Changed"})
        assert changed.status_code == 200
        fresh = polled(
            lambda: [c["id"] for c in
                     http.get("/v1/customers", params={"updated_since": last_seen}).json()["data"]],
            lambda ids: made[0]["id"] in ids,
        )  # fmt: skip
        assert fresh[-1] == made[0]["id"]
        naive = http.get("/v1/customers", params={"updated_since": "2026-01-01T00:00:00"})
        assert naive.status_code == 400
        # A cursor that is not one is named as the API names it, not as the services do.
        bad = http.get("/v1/customers", params={"updated_since": since, "cursor": "\u00ff\u00fe"})
        assert bad.status_code == 400
        assert [e["field"] for e in bad.json()["errors"]] == ["cursor"]


def test_a_promotion_can_be_read_by_its_merchant_only(platform: Running) -> None:
    # A merchant of its own: a promotion on the sandbox merchant would change other tests' sales.
    with platform.new_merchant("Promo Owner") as owner, platform.new_merchant("Peeker") as other:
        made = owner.post(
            "/v1/promotions",
            json={"name": "Five off", "percent_off_bps": 500},
            headers={"Idempotency-Key": str(uuid.uuid4())},
        ).json()
        got = owner.get(f"/v1/promotions/{made['id']}")
        assert got.status_code == 200 and got.json()["percent_off_bps"] == 500
        assert other.get(f"/v1/promotions/{made['id']}").status_code == 404
