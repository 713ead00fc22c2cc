"""An Idempotency-Key reused with another checkout body after a failed first attempt, through
the gateway, every service a separate process.

The gateway keeps nothing under a key whose request failed (a 503), so only the order service,
which keeps the sale's start under the key, can tell the second body from a retry: it answers the
API's 422 `idempotency_key_reused`, charges nothing, and leaves the first sale for the first
body's retry. Before, the second body's card paid for the first body's cart."""

from __future__ import annotations

import uuid
from typing import Any

import httpx
import pytest

from pos_devstack.testing import Running

pytestmark = pytest.mark.e2e


def _ok(answer: httpx.Response, status: int) -> Any:
    assert answer.status_code == status, answer.text
    return answer.json()


def _post(http: httpx.Client, path: str, body: dict[str, Any], key: str | None = None) -> Any:
    return http.post(path, json=body, headers={"Idempotency-Key": key or str(uuid.uuid4())})


def test_a_key_reused_with_another_cart_after_a_failure_is_a_422_and_charges_nothing(
    platform: Running,
) -> None:
    running = platform.platform
    with platform.new_merchant("Checkout key reused") as http:
        store = _ok(_post(http, "/v1/locations", {"name": "Reuse St", "currency": "USD"}), 201)
        _ok(_post(http, "/v1/products", {"sku": "CAP", "name": "Cap",
            "price": {"amount": 1500, "currency": "USD"}}), 201)  # fmt: skip
        key = str(uuid.uuid4())
        first = {"location_id": store["id"], "lines": [{"sku": "CAP", "quantity": 1}],
                 "tender_type": "card", "card_token": "tok_visa"}  # fmt: skip
        other = {**first, "lines": [{"sku": "CAP", "quantity": 3}],
                 "card_token": "tok_mastercard"}  # fmt: skip

        # The order is saved, then the payment service is away: nothing is charged.
        running.stop_process("payment")
        try:
            down = _post(http, "/v1/checkouts", first, key)
            assert down.status_code == 503, down.text
        finally:
            running.restart_process("payment")
        pending = _ok(http.get("/v1/orders", params={"status": "pending_payment"}), 200)["data"]
        assert [(ln["sku"], ln["quantity"]) for o in pending for ln in o["lines"]] == [("CAP", 1)]
        saved = pending[0]

        reused = _post(http, "/v1/checkouts", other, key)

        assert reused.status_code == 422, reused.text
        assert reused.json()["code"] == "idempotency_key_reused"
        assert _ok(http.get(f"/v1/orders/{saved['id']}"), 200) == saved
        assert _ok(http.get(f"/v1/orders/{saved['id']}/payments"), 200)["payments"] == []

        # The first body's retry under the same key sells its own cart, once.
        sold = _ok(_post(http, "/v1/checkouts", first, key), 201)
        assert sold["order"]["id"] == saved["id"]
        assert sold["order"]["status"] == "completed"
        assert [(ln["sku"], ln["quantity"]) for ln in sold["order"]["lines"]] == [("CAP", 1)]
        assert sold["payment"]["amount"] == {"amount": 1500, "currency": "USD"}
        payments = _ok(http.get(f"/v1/orders/{saved['id']}/payments"), 200)["payments"]
        assert [p["id"] for p in payments] == [sold["payment"]["id"]]
        replay = _post(http, "/v1/checkouts", first, key)
        assert replay.status_code == 201 and replay.headers["idempotent-replayed"] == "true"
        # The other body is still refused, now by the gateway's own store.
        assert _post(http, "/v1/checkouts", other, key).status_code == 422
