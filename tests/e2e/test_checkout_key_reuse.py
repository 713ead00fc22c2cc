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

from pos_devstack.http_checks import available, eventually, ok, post, stocked
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


def test_a_clients_key_never_names_a_step_of_the_saga(platform: Running) -> None:
    """The saga's own steps have request ids derived from the order (`<order>/release/<f>`, a
    public pattern). A client's Idempotency-Key spelled like one is set apart from them: the
    stock adjustment sent under it is the client's own, and the order's cancel still releases
    its hold and voids its card (before, the saga's release was answered 422 as a reused id,
    the cancel answered 422 and the order was left half cancelled)."""
    with platform.new_merchant("Keys apart") as http:
        ok(
            post(
                http,
                "/v1/locations",
                {"name": "Keys St", "currency": "USD", "pickup_enabled": True},
            ),
            201,
        )
        sku, [store] = stocked(http, "KEY")
        body = {"location_id": store, "lines": [{"sku": sku, "quantity": 1}],
                "fulfillments": [{"type": "pickup", "location_id": store}]}  # fmt: skip
        order = ok(post(http, "/v1/orders", body), 201)
        (pickup,) = order["fulfillments"]
        paid = ok(post(http, f"/v1/orders/{order['id']}/tenders",
                       {"tender_type": "card", "card_token": "tok_visa"}), 201)  # fmt: skip
        assert available(http, sku, store) == 9

        added = {"sku": sku, "location_id": store, "delta": 1, "reason": "received"}
        ok(post(http, "/v1/inventory/adjustments", added, f"{order['id']}/release/{pickup['id']}"),
           201)  # fmt: skip
        cancelled = ok(post(http, f"/v1/orders/{order['id']}/cancel", {"reason": "requested"}))

        assert cancelled["status"] == "cancelled"
        assert ok(http.get(f"/v1/payments/{paid['payment']['id']}"))["status"] == "voided"
        assert eventually(lambda: available(http, sku, store) == 11)


def test_a_key_refused_as_not_found_may_carry_the_corrected_request(platform: Running) -> None:
    """A sale or an order naming an unknown SKU is a 404 and keeps nothing: the corrected
    request under the same key goes through (before, the kept start made it a 422)."""
    with platform.new_merchant("Corrected") as http:
        ok(post(http, "/v1/locations", {"name": "Fix St", "currency": "USD",
                                        "pickup_enabled": True}), 201)  # fmt: skip
        sku, [store] = stocked(http, "FIX")
        sale = {"location_id": store, "lines": [{"sku": "NO-SUCH", "quantity": 1}],
                "tender_type": "card", "card_token": "tok_visa"}  # fmt: skip
        order = {"location_id": store, "lines": [{"sku": "NO-SUCH", "quantity": 1}],
                 "fulfillments": [{"type": "pickup", "location_id": store}]}  # fmt: skip
        for path, body, status in (("/v1/checkouts", sale, 201), ("/v1/orders", order, 201)):
            key = str(uuid.uuid4())
            refused = post(http, path, body, key)
            assert refused.status_code == 404, refused.text
            corrected = {**body, "lines": [{"sku": sku, "quantity": 1}]}
            made = ok(post(http, path, corrected, key), status)
            assert ok(post(http, path, corrected, key), status) == made  # replayed


def test_a_sale_without_gift_cards_is_stored_and_replayed_by_the_gateway(
    platform: Running,
) -> None:
    """Its answer says `secret_redacted: false` with no gift card code in it: the stored
    answers' guard took that marker for a secret kept, so no checkout, tender or confirm was
    ever stored, and each retry ran again at the order service."""
    with platform.new_merchant("Plain sales replayed") as http:
        store = ok(post(http, "/v1/locations", {"name": "Plain St", "currency": "USD",
                                                 "pickup_enabled": True}), 201)  # fmt: skip
        ok(post(http, "/v1/products", {"sku": "MUG", "name": "Mug",
            "price": {"amount": 1200, "currency": "USD"}}), 201)  # fmt: skip
        ok(post(http, "/v1/inventory/adjustments", {"sku": "MUG", "location_id": store["id"],
            "delta": 5, "reason": "received"}), 201)  # fmt: skip
        sale = {"location_id": store["id"], "lines": [{"sku": "MUG", "quantity": 1}],
                "tender_type": "card", "card_token": "tok_visa"}  # fmt: skip
        web = {"channel": "web", "location_id": store["id"],
               "lines": [{"sku": "MUG", "quantity": 1}],
               "fulfillments": [{"type": "pickup", "location_id": store["id"]}]}  # fmt: skip
        order = ok(post(http, "/v1/orders", web), 201)
        tender = {"tender_type": "card", "card_token": "tok_visa"}
        for path, body in (
            ("/v1/checkouts", sale),
            (f"/v1/orders/{order['id']}/tenders", tender),
            (f"/v1/orders/{order['id']}/confirm", {}),
        ):
            key = str(uuid.uuid4())
            first = post(http, path, body, key)
            assert first.status_code in (200, 201), first.text
            assert first.json().get("secret_redacted", False) is False
            again = post(http, path, body, key)
            assert again.headers.get("idempotent-replayed") == "true", path
            assert (again.status_code, again.content) == (first.status_code, first.content)
