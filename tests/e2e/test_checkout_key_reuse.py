"""An Idempotency-Key reused with another checkout body after a failed first attempt, through
the gateway, every service a separate process.

The gateway keeps nothing under a key whose request failed (a 503), so only the order service,
which keeps the sale's start under the key, can tell the second body from a retry: it answers the
API's 422 `idempotency_key_reused`, charges nothing, and leaves the first sale for the first
body's retry. Before, the second body's card paid for the first body's cart."""

from __future__ import annotations

import uuid

import httpx
import pytest

from pos_devstack.http_checks import eventually, ok, post
from pos_devstack.testing import Running

pytestmark = pytest.mark.e2e


def test_a_key_reused_with_another_cart_after_a_failure_is_a_422_and_charges_nothing(
    platform: Running,
) -> None:
    running = platform.platform
    with platform.new_merchant("Checkout key reused") as http:
        store = ok(post(http, "/v1/locations", {"name": "Reuse St", "currency": "USD"}), 201)
        ok(post(http, "/v1/products", {"sku": "CAP", "name": "Cap",
            "price": {"amount": 1500, "currency": "USD"}}), 201)  # fmt: skip
        key = str(uuid.uuid4())
        first = {"location_id": store["id"], "lines": [{"sku": "CAP", "quantity": 1}],
                 "tender_type": "card", "card_token": "tok_visa"}  # fmt: skip
        other = {**first, "lines": [{"sku": "CAP", "quantity": 3}],
                 "card_token": "tok_mastercard"}  # fmt: skip

        # The order is saved, then the payment service is away: nothing is charged.
        running.stop_process("payment")
        try:
            down = post(http, "/v1/checkouts", first, key)
            assert down.status_code == 503, down.text
        finally:
            running.restart_process("payment")
        pending = ok(http.get("/v1/orders", params={"status": "pending_payment"}), 200)["data"]
        assert [(ln["sku"], ln["quantity"]) for o in pending for ln in o["lines"]] == [("CAP", 1)]
        saved = pending[0]

        reused = post(http, "/v1/checkouts", other, key)

        assert reused.status_code == 422, reused.text
        assert reused.json()["code"] == "idempotency_key_reused"
        assert ok(http.get(f"/v1/orders/{saved['id']}"), 200) == saved
        assert ok(http.get(f"/v1/orders/{saved['id']}/payments"), 200)["payments"] == []

        # The first body's retry under the same key sells its own cart, once. The order
        # service's channel to the restarted payment service may still be backing off: a 503
        # says retry (Retry-After), as a client would, with the same key.
        def retried() -> httpx.Response | None:
            answer: httpx.Response = post(http, "/v1/checkouts", first, key)
            return None if answer.status_code == 503 else answer

        sold = ok(eventually(retried), 201)
        assert sold["order"]["id"] == saved["id"]
        assert sold["order"]["status"] == "completed"
        assert [(ln["sku"], ln["quantity"]) for ln in sold["order"]["lines"]] == [("CAP", 1)]
        assert sold["payment"]["amount"] == {"amount": 1500, "currency": "USD"}
        payments = ok(http.get(f"/v1/orders/{saved['id']}/payments"), 200)["payments"]
        assert [p["id"] for p in payments] == [sold["payment"]["id"]]
        replay = post(http, "/v1/checkouts", first, key)
        assert replay.status_code == 201 and replay.headers["idempotent-replayed"] == "true"
        # The other body is still refused, now by the gateway's own store.
        assert post(http, "/v1/checkouts", other, key).status_code == 422
