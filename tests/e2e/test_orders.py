"""Orders through the gateway over HTTP, every service a separate process: pickup (held,
declined then paid, confirmed, ready, picked up and captured at hand-over), ship from store in
two parts each capturing its share, endless aisle, cancellation (holds released, authorisation
voided), bad input, and no oversell under concurrent web orders."""

from __future__ import annotations

import uuid
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta
from typing import Any

import grpc
import httpx
import psycopg
import pytest

from pos.payment.v1 import payment_pb2, payment_pb2_grpc
from pos_devstack.http_checks import (
    available,
    eventually,
    ok,
    open_till,
    polled,
    post,
    post_answered,
    stocked,
)
from pos_devstack.platform import seed_demo_data
from pos_devstack.testing import Running

pytestmark = pytest.mark.e2e


def test_a_pickup_that_would_outlive_its_authorisation_is_captured_at_confirmation(
    platform: Running,
) -> None:
    """The sandbox's authorisations last an hour, a pickup waits a week by default: capturing
    at hand-over could meet an expired authorisation, so it is captured at confirmation."""
    http = platform.http
    sku, (store, _) = stocked(http, "ORD")
    body = {"location_id": store, "lines": [{"sku": sku, "quantity": 1}],
            "fulfillments": [{"type": "pickup", "location_id": store}]}  # fmt: skip
    order = ok(post(http, "/v1/orders", body), 201)
    paid = ok(post(http, f"/v1/orders/{order['id']}/tenders",
                     {"tender_type": "card", "card_token": "tok_visa"}), 201)  # fmt: skip
    confirmed = ok(post(http, f"/v1/orders/{order['id']}/confirm", {}))
    assert confirmed["fulfillments"][0]["captured"] == confirmed["total"]
    payment = ok(http.get(f"/v1/payments/{paid['payment']['id']}"))
    assert payment["captured"]["amount"] == confirmed["total"]["amount"]


def test_a_pickup_is_held_paid_after_a_decline_and_captured_at_hand_over(
    platform: Running,
) -> None:
    with platform.new_merchant("Pickup shop") as http:
        seed_demo_data(platform.platform.gateway_url, http.headers["Authorization"][7:])
        # A pickup waits at most an hour, its authorisation lasts two: captured at hand-over.
        settings = http.patch(
            "/v1/order-settings",
            json={"pickup_expiry_seconds": 3600, "authorization_window_seconds": 7200},
            headers={"Idempotency-Key": str(uuid.uuid4())},
        )
        assert ok(settings)["capture_pickup_at_order"] is False
        assert settings.json()["authorization_window_seconds"] == 7200
        _pickup_flow(http)


def _pickup_flow(http: httpx.Client) -> None:
    sku, (store, _) = stocked(http, "ORD")
    body = {
        "channel": "web",
        "location_id": store,
        "lines": [{"sku": sku, "quantity": 2}],
        "fulfillments": [{"type": "pickup", "location_id": store}],
        "notes": "Collect Saturday",
        "metadata": {"cart_id": "c_1"},
    }
    key = str(uuid.uuid4())
    order = ok(post(http, "/v1/orders", body, key), 201)
    assert ok(post(http, "/v1/orders", body, key), 201)["id"] == order["id"]  # replayed
    assert order["status"] == "pending_payment" and order["channel"] == "web"
    (pickup,) = order["fulfillments"]
    assert (pickup["type"], pickup["status"]) == ("pickup", "reserved")
    assert pickup["reservation_id"] and available(http, sku, store) == 8

    declined = post(http, f"/v1/orders/{order['id']}/tenders",
                     {"tender_type": "card", "card_token": "tok_declined"})  # fmt: skip
    assert declined.status_code == 402, declined.text
    again = ok(http.get(f"/v1/orders/{order['id']}"))
    assert again["status"] == "pending_payment" and available(http, sku, store) == 8

    paid = ok(post(http, f"/v1/orders/{order['id']}/tenders",
                     {"tender_type": "card", "card_token": "tok_visa"}), 201)  # fmt: skip
    assert paid["payment"]["status"] == "authorized"
    confirmed = ok(post(http, f"/v1/orders/{order['id']}/confirm", {}))
    assert confirmed["status"] == "confirmed"
    # Confirmed, the pickup waits for its buyer until a deadline the web shop can tell them
    # (an hour, this merchant's setting).
    waits = datetime.fromisoformat(confirmed["fulfillments"][0]["expires_at"]) - datetime.now(UTC)
    assert timedelta(minutes=55) < waits <= timedelta(hours=1)
    payment = ok(http.get(f"/v1/payments/{paid['payment']['id']}"))
    assert payment["captured"]["amount"] == 0  # captured at hand-over (the default setting)

    step = f"/v1/orders/{order['id']}/fulfillments/{pickup['id']}/steps"
    wrong = post(http, step, {"status": "shipped", "carrier": "UPS", "tracking_number": "1"})
    assert wrong.status_code == 409 and wrong.json()["code"] == "invalid_transition"
    early = post(http, step, {"status": "picked_up"})  # not ready yet: one step at a time
    assert early.status_code == 409 and early.json()["code"] == "invalid_transition"
    assert early.json()["errors"] == [
        {"field": "status", "reason": "must be one of ready_for_pickup"}
    ]
    assert ok(http.get(f"/v1/orders/{order['id']}"))["fulfillments"][0]["status"] == "reserved"
    ready = ok(post(http, step, {"status": "ready_for_pickup"}))
    assert ready["fulfillments"][0]["status"] == "ready_for_pickup"
    done = ok(post(http, step, {"status": "picked_up"}))
    assert done["status"] == "completed"
    assert done["fulfillments"][0]["expires_at"] is None  # collected: no deadline any more
    assert done["fulfillments"][0]["captured"] == done["total"]
    payment = ok(http.get(f"/v1/payments/{paid['payment']['id']}"))
    assert payment["captured"]["amount"] == done["total"]["amount"]
    assert [c["status"] for c in done["timeline"] if ":" not in c["status"]] == [
        "pending_payment",
        "confirmed",
        "completed",
    ]
    listed = ok(http.get("/v1/orders", params={"channel": "web", "status": "completed"}))
    assert order["id"] in [o["id"] for o in listed["data"]]
    collected = ok(http.get("/v1/orders", params={"fulfillment_status": "picked_up",
                                                   "location_id": store}))  # fmt: skip
    assert [o["id"] for o in collected["data"]] == [order["id"]]
    waiting = ok(http.get("/v1/orders", params={"status": "pending_payment"}))
    assert order["id"] not in [o["id"] for o in waiting["data"]]

    def feed() -> list[str]:
        events = http.get("/v1/events", params={"types": "order.*", "limit": 200}).json()["data"]
        return [e["type"] for e in events if e["data"]["object"]["id"] == order["id"]]

    # Until its last event: how many come before it (a tender is two versions) is not the test.
    kinds = eventually(lambda: "order.completed" in (told := feed()) and told)
    assert kinds[0] == "order.created" and "order.confirmed" in kinds
    assert kinds.count("order.fulfillment_updated") == 2 and kinds[-1] == "order.completed"
    # Each step's event says which fulfilment moved, and to what.
    events = http.get("/v1/events", params={"types": "order.fulfillment_updated", "limit": 200})
    moved = [
        (e["data"]["fulfillment_id"], e["data"]["fulfillment_status"])
        for e in events.json()["data"]
        if e["data"]["object"]["id"] == order["id"]
    ]
    assert moved == [(pickup["id"], "ready_for_pickup"), (pickup["id"], "picked_up")]


def test_a_split_shipment_captures_each_share_at_shipment(platform: Running) -> None:
    http = platform.http
    sku, (first, second) = stocked(http, "ORD")
    body = {
        "channel": "web",
        "location_id": first,
        "lines": [
            {"sku": sku, "quantity": 1, "fulfillment": 0},
            {"sku": sku, "quantity": 3, "fulfillment": 1},
        ],
        "fulfillments": [
            {"type": "shipment", "location_id": first, "ship_to": "1 Main St, Springfield"},
            {"type": "shipment", "location_id": second, "ship_to": "1 Main St, Springfield"},
        ],
    }
    order = ok(post(http, "/v1/orders", body), 201)
    paid = ok(post(http, f"/v1/orders/{order['id']}/tenders",
                     {"tender_type": "card", "card_token": "tok_visa"}), 201)  # fmt: skip
    ok(post(http, f"/v1/orders/{order['id']}/confirm", {}))
    shares = [f["amount"]["amount"] for f in order["fulfillments"]]
    assert sum(shares) == order["total"]["amount"]
    assert [f["expires_at"] for f in order["fulfillments"]] == [None, None]  # pickups only

    ids = [f["id"] for f in order["fulfillments"]]
    ship = {"status": "shipped", "carrier": "UPS", "tracking_number": "1Z999AA10123456784"}
    first_step = f"/v1/orders/{order['id']}/fulfillments/{ids[0]}/steps"
    skipped = post(http, first_step, ship)  # not picked yet: `reserved -> picked -> shipped`
    assert skipped.status_code == 409 and skipped.json()["code"] == "invalid_transition"
    assert ok(http.get(f"/v1/payments/{paid['payment']['id']}"))["captured"]["amount"] == 0
    ok(post(http, first_step, {"status": "picked"}))
    shipped = ok(post(http, first_step, ship))
    assert shipped["fulfillments"][0]["tracking_number"] == "1Z999AA10123456784"
    payment = ok(http.get(f"/v1/payments/{paid['payment']['id']}"))
    assert payment["captured"]["amount"] == shares[0]  # a partial capture: its share only
    ok(post(http, f"/v1/orders/{order['id']}/fulfillments/{ids[1]}/steps", {"status": "picked"}))
    ok(post(http, f"/v1/orders/{order['id']}/fulfillments/{ids[1]}/steps", ship))
    payment = ok(http.get(f"/v1/payments/{paid['payment']['id']}"))
    assert payment["captured"]["amount"] == order["total"]["amount"]
    for fid in ids:
        last = ok(post(http, f"/v1/orders/{order['id']}/fulfillments/{fid}/steps",
                         {"status": "delivered"}))  # fmt: skip
    assert last["status"] == "completed"


def test_a_cancelled_order_releases_its_holds_and_voids_its_authorisation(
    platform: Running,
) -> None:
    http = platform.http
    sku, (store, _) = stocked(http, "ORD")
    body = {
        "location_id": store,
        "lines": [{"sku": sku, "quantity": 4}],
        "fulfillments": [{"type": "pickup", "location_id": store}],
    }
    order = ok(post(http, "/v1/orders", body), 201)
    # No tender yet: nothing taken, the whole total due (not a 404 for an order that exists).
    unpaid = ok(http.get(f"/v1/orders/{order['id']}/payments"))
    assert unpaid["payments"] == [] and unpaid["balance_due"] == order["total"]
    paid = ok(post(http, f"/v1/orders/{order['id']}/tenders",
                     {"tender_type": "card", "card_token": "tok_visa"}), 201)  # fmt: skip
    assert available(http, sku, store) == 6
    cancelled = ok(post(http, f"/v1/orders/{order['id']}/cancel", {}))
    assert cancelled["paid"]["amount"] == 0
    assert ok(http.get(f"/v1/orders/{order['id']}/payments"))["balance_due"]["amount"] == 0
    assert cancelled["status"] == "cancelled" and cancelled["cancel_reason"] == "requested"
    assert cancelled["fulfillments"][0]["status"] == "cancelled"
    assert available(http, sku, store) == 10
    payment = ok(http.get(f"/v1/payments/{paid['payment']['id']}"))
    assert payment["status"] == "voided"
    late = post(http, f"/v1/orders/{order['id']}/tenders", {"tender_type": "card",
                 "card_token": "tok_visa"})  # fmt: skip
    assert late.status_code == 409


def _till(platform: Running, http: httpx.Client, store: str) -> httpx.Client:
    """A paired register of `store` with a manager signed in and a shift open."""
    return open_till(platform.platform.gateway_url, http, store).device


def test_cash_given_back_before_the_confirmation_is_due_again(platform: Running) -> None:
    """GET /orders/{id}/payments counts a refund made while the order is still open: the
    customer took that money back, so it is owed again (and the order cannot be confirmed)."""
    http = platform.http
    sku, (store, _) = stocked(http, "ORD")
    body = {
        "location_id": store,
        "lines": [{"sku": sku, "quantity": 1}],
        "fulfillments": [{"type": "pickup", "location_id": store}],
    }
    order = ok(post(http, "/v1/orders", body), 201)
    total, currency = order["total"]["amount"], order["total"]["currency"]
    cash = ok(post(http, f"/v1/orders/{order['id']}/tenders",
                     {"tender_type": "cash", "cash_tendered": order["total"]}), 201)  # fmt: skip
    assert ok(http.get(f"/v1/orders/{order['id']}/payments"))["balance_due"]["amount"] == 0
    back = {"amount": {"amount": 400, "currency": currency}, "reason": "changed their mind"}
    # Cash handed back leaves a drawer: at a register with its shift open (a manager signed
    # in, who may refund), not from the back office.
    device = _till(platform, http, store)
    try:
        ok(post(device, f"/v1/payments/{cash['payment']['id']}/refunds", back), 201)
    finally:
        device.close()
    # The order hears of the refund from the payment service's event.
    eventually(lambda: ok(http.get(f"/v1/orders/{order['id']}"))["paid"]["amount"] == total - 400)

    summary = ok(http.get(f"/v1/orders/{order['id']}/payments"))

    assert summary["refunded"]["amount"] == 400
    assert summary["balance_due"]["amount"] == 400
    refused = post(http, f"/v1/orders/{order['id']}/confirm", {})
    assert refused.status_code == 409 and refused.json()["code"] == "balance_due"


def test_endless_aisle_sells_in_store_and_ships_from_another_store(platform: Running) -> None:
    http = platform.http
    sku, (here, there) = stocked(http, "ORD")
    body = {
        "channel": "register",
        "location_id": here,
        "lines": [
            {"sku": sku, "quantity": 1, "fulfillment": 0},
            {"sku": sku, "quantity": 2, "fulfillment": 1},
        ],
        "fulfillments": [
            {"type": "in_store", "location_id": here},
            {"type": "shipment", "location_id": there, "ship_to": "2 Elm St"},
        ],
    }
    order = ok(post(http, "/v1/orders", body), 201)
    assert available(http, sku, there) == 8  # the remote store's units are held
    paid = ok(post(http, f"/v1/orders/{order['id']}/tenders",
                     {"tender_type": "card", "card_token": "tok_visa"}), 201)  # fmt: skip
    confirmed = ok(post(http, f"/v1/orders/{order['id']}/confirm", {}))
    in_store, shipment = confirmed["fulfillments"]
    assert (in_store["status"], shipment["status"]) == ("fulfilled", "reserved")
    payment = ok(http.get(f"/v1/payments/{paid['payment']['id']}"))
    assert payment["captured"]["amount"] == in_store["amount"]["amount"]
    # The in-store unit leaves the shelf with the order's event; the held ones with their hold.
    eventually(lambda: available(http, sku, here) == 9)
    assert available(http, sku, there) == 8
    # Each store's list holds it: sold at one, shipped from the other (whose till ships it).
    # The feed stops at the oldest transaction open in the order database (the relay's, a
    # consumer's), so the confirmation may show a moment after it is made: each read is asked
    # again until it holds the order.
    since = {"updated_since": order["created_at"], "limit": 200}

    def listed_at(store: str, **params: str) -> list[str]:
        def read() -> list[str]:
            listed = ok(http.get("/v1/orders", params={**since, "location_id": store, **params}))
            return [o["id"] for o in listed["data"]]

        return polled(read, lambda ids: order["id"] in ids)

    for store in (here, there):
        assert order["id"] in listed_at(store), store
    assert order["id"] in listed_at(there, fulfillment_status="reserved")
    elsewhere = [loc["id"] for loc in http.get("/v1/locations").json()["data"][2:3]]
    for store in elsewhere:
        listed = ok(http.get("/v1/orders", params={**since, "location_id": store}))
        assert order["id"] not in [o["id"] for o in listed["data"]]


def test_bad_orders_are_problems_naming_the_field_and_write_nothing(platform: Running) -> None:
    http = platform.http
    sku, (store, _) = stocked(http, "ORD")
    before = ok(http.get("/v1/orders", params={"limit": 200}))["data"]
    for body, field in [
        ({"location_id": store, "lines": []}, "lines"),
        ({"location_id": store, "lines": [{"sku": sku, "quantity": 1, "fulfillment": 1}]},
         "lines[0].fulfillment"),
        ({"location_id": store, "lines": [{"sku": sku, "quantity": 1}],
          "fulfillments": [{"type": "shipment", "location_id": store}]},
         "fulfillments[0].ship_to"),
    ]:  # fmt: skip
        answer = post(http, "/v1/orders", body)
        assert answer.status_code == 400, answer.text
        assert field in {e["field"] for e in answer.json()["errors"]}, answer.text
    after = ok(http.get("/v1/orders", params={"limit": 200}))["data"]
    assert len(after) == len(before)


def test_a_pickup_or_shipment_from_a_store_that_does_not_offer_it_is_refused(
    platform: Running,
) -> None:
    """A merchant of its own (the sandbox merchant's two stores are counted elsewhere): a shop
    that hands over pickups and ships, and a back office that does neither."""
    with platform.new_merchant("Back office merchant") as http:
        shop = ok(post(http, "/v1/locations", {"name": "Shop", "currency": "USD",
                   "pickup_enabled": True, "ship_enabled": True}), 201)  # fmt: skip
        office = ok(post(http, "/v1/locations", {"name": "Back office", "currency": "USD"}), 201)
        ok(post(http, "/v1/products", {"sku": "BOX", "name": "Box",
            "price": {"amount": 1000, "currency": "USD"}}), 201)  # fmt: skip
        for at in (shop, office):
            stock = {"sku": "BOX", "location_id": at["id"], "delta": 5, "reason": "received"}
            ok(post(http, "/v1/inventory/adjustments", stock), 201)
        line = [{"sku": "BOX", "quantity": 1}]
        # The office offers neither; a store keeping its books in another currency fulfils
        # none of this order whatever it offers.
        paris = ok(post(http, "/v1/locations", {"name": "Paris", "currency": "EUR",
                   "pickup_enabled": True, "ship_enabled": True}), 201)  # fmt: skip
        for store, why in ((office, "does not"), (paris, "EUR")):
            for fulfillment in (
                {"type": "pickup", "location_id": store["id"]},
                {"type": "shipment", "location_id": store["id"], "ship_to": "1 Main St"},
            ):
                body = {"location_id": shop["id"], "lines": line, "fulfillments": [fulfillment]}
                answer = post(http, "/v1/orders", body)
                assert answer.status_code == 400, answer.text
                (error,) = answer.json()["errors"]
                assert error["field"] == "fulfillments[0].location_id"
                assert why in error["reason"]
        assert ok(http.get("/v1/orders"))["data"] == []
        levels = ok(http.get("/v1/inventory", params={"sku": "BOX"}))["data"]
        assert {lv["available"] for lv in levels} == {5}
        # The shop itself takes both; so does the office once the merchant says so.
        stale = http.patch(f"/v1/locations/{office['id']}", json={"pickup_enabled": True},
                           headers={"If-Match": '"7"'})  # fmt: skip
        assert stale.status_code == 412, stale.text
        changed = http.patch(f"/v1/locations/{office['id']}", json={"pickup_enabled": True,
                             "ship_enabled": True}, headers={"If-Match": '"1"'})  # fmt: skip
        assert ok(changed)["pickup_enabled"] and changed.json()["version"] == 2
        assert changed.headers["ETag"] == '"2"'
        read = http.get(f"/v1/locations/{office['id']}")
        assert ok(read) == changed.json() and read.headers["ETag"] == '"2"'
        assert http.get("/v1/locations/loc_nope").status_code == 404
        assert http.patch(f"/v1/locations/{office['id']}", json={}).status_code == 400
        for at, fulfillment in (
            (shop, {"type": "pickup", "location_id": shop["id"]}),
            (shop, {"type": "shipment", "location_id": shop["id"], "ship_to": "1 Main St"}),
            (office, {"type": "pickup", "location_id": office["id"]}),
            (office, {"type": "shipment", "location_id": office["id"], "ship_to": "1 Main St"}),
        ):
            body = {"location_id": at["id"], "lines": line, "fulfillments": [fulfillment]}
            ok(post(http, "/v1/orders", body), 201)


def test_concurrent_web_orders_never_oversell(platform: Running) -> None:
    """Scaled down from 1,000 orders on 100 units to 120 on 12 (the shared 2-core machine):
    the holds are what stops an oversell, at any scale."""
    http = platform.http
    sku, (store, _) = stocked(http, "ORD", units=12)
    body = {
        "location_id": store,
        "lines": [{"sku": sku, "quantity": 1}],
        "fulfillments": [{"type": "pickup", "location_id": store}],
    }

    def buy(_: int) -> tuple[int, Any]:
        # Sixteen at once on a busy machine: a step may answer 503 (a deadline, the pool's
        # wait), which a shop retries with the same key (post_answered), as here.
        with httpx.Client(base_url=str(http.base_url), headers=http.headers, timeout=60) as c:
            answer = post_answered(c, "/v1/orders", body)
            if answer.status_code != 201:
                return answer.status_code, answer.json()
            order = answer.json()
            ok(post_answered(c, f"/v1/orders/{order['id']}/tenders",
                             {"tender_type": "card", "card_token": "tok_visa"}), 201)  # fmt: skip
            return 200, ok(post_answered(c, f"/v1/orders/{order['id']}/confirm", {}))

    with ThreadPoolExecutor(max_workers=16) as pool:
        results = list(pool.map(buy, range(120)))
    confirmed = [r for s, r in results if s == 200 and r["status"] == "confirmed"]
    refused = [r for s, r in results if s == 409]
    assert len(confirmed) == 12
    assert len(refused) == 108
    assert all(r["code"] == "insufficient_stock" for r in refused)
    assert all([e["field"] for e in r["errors"]] == ["lines[0].quantity"] for r in refused)
    assert available(http, sku, store) == 0


def test_a_shipment_without_a_store_is_sourced_and_split_over_two_stores(
    platform: Running,
) -> None:
    """Ship from store: no store named, a destination given; the nearer store has three of
    the five units, a farther one the rest: two fulfilments, each held, each its share."""
    # A merchant of its own: the sandbox merchant's two stores are counted elsewhere.
    with platform.new_merchant("Ship from store") as http:
        _sourced_split(http)


def _sourced_split(http: httpx.Client) -> None:
    tag = uuid.uuid4().hex[:6]
    stores = []
    for name, lat in (("near", 39.80), ("far", 41.88)):
        body = {"name": f"Ship {name} {tag}", "currency": "USD", "tax_rate_bps": 0,
                "geo": {"latitude": lat, "longitude": -89.64}, "ship_enabled": True}  # fmt: skip
        stores.append(ok(post(http, "/v1/locations", body), 201)["id"])
    sku = f"SRC-{tag.upper()}"
    ok(post(http, "/v1/products", {"sku": sku, "name": "Sourced",
        "price": {"amount": 1000, "currency": "USD"}}), 201)  # fmt: skip
    for store in stores:
        adjustment = {"sku": sku, "location_id": store, "delta": 3, "reason": "received"}
        ok(post(http, "/v1/inventory/adjustments", adjustment), 201)
    order = ok(post(http, "/v1/orders", {
        "location_id": stores[0],
        "lines": [{"sku": sku, "quantity": 5}],
        "fulfillments": [{"type": "shipment", "ship_to": "1 Main St, Springfield",
                          "destination": {"latitude": 39.78, "longitude": -89.65}}],
    }), 201)  # fmt: skip
    parts = order["fulfillments"]
    assert len(parts) == 2 and {f["location_id"] for f in parts} == set(stores)
    assert all(f["reservation_id"] and f["status"] == "reserved" for f in parts)
    assert sum(f["amount"]["amount"] for f in parts) == order["total"]["amount"]
    held = {f["location_id"]: sum(ln["quantity"] for ln in order["lines"]
            if ln["fulfillment_id"] == f["id"]) for f in parts}  # fmt: skip
    assert sorted(held.values()) == [2, 3]
    assert all(available(http, sku, s) == 3 - held[s] for s in stores)


def test_an_orders_payment_and_hold_are_the_orders_to_settle(platform: Running) -> None:
    """An order's hold is sold by its confirmation and given back by its cancel, and its
    payment captured by its steps: through the reservation and payment routes each is a 409
    naming the order, and nothing moves (a hold committed behind a pending order's back was
    gone with no sale when the order was then cancelled; a capture made beside the order's
    own left it stuck, or charging twice)."""
    http = platform.http
    sku, (store, _) = stocked(http, "ORD")
    body = {"location_id": store, "lines": [{"sku": sku, "quantity": 2}],
            "fulfillments": [{"type": "pickup", "location_id": store}]}  # fmt: skip
    order = ok(post(http, "/v1/orders", body), 201)
    (pickup,) = order["fulfillments"]
    held = pickup["reservation_id"]
    for action in ("commit", "release"):
        refused = post(http, f"/v1/reservations/{held}/{action}", {})
        assert refused.status_code == 409, refused.text
        assert refused.json()["code"] == "reservation_managed_by_order"
        assert refused.json()["order_id"] == order["id"]
    assert ok(http.get(f"/v1/reservations/{held}"))["status"] == "active"
    assert available(http, sku, store) == 8

    paid = ok(post(http, f"/v1/orders/{order['id']}/tenders",
                     {"tender_type": "card", "card_token": "tok_visa"}), 201)  # fmt: skip
    payment = paid["payment"]["id"]
    refused = post(http, f"/v1/payments/{payment}/capture", {})
    assert (refused.status_code, refused.json()["code"]) == (409, "payment_managed_by_order")
    assert ok(http.get(f"/v1/payments/{payment}"))["captured"]["amount"] == 0
    cancelled = ok(post(http, f"/v1/orders/{order['id']}/cancel", {}))
    assert cancelled["status"] == "cancelled"
    assert available(http, sku, store) == 10
    assert ok(http.get(f"/v1/payments/{payment}"))["status"] == "voided"

    # A hold of the caller's own, whatever its reference looks like, is still theirs.
    own = {"location_id": store, "lines": [{"sku": sku, "quantity": 1}],
           "reference": "ord_not_an_order_of_ours"}  # fmt: skip
    mine = ok(post(http, "/v1/reservations", own), 201)
    assert ok(post(http, f"/v1/reservations/{mine['id']}/commit", {}))["status"] == "committed"


def test_goods_do_not_leave_once_their_authorisation_is_voided(platform: Running) -> None:
    """The card's authorisation voided after the confirmation (by hand here; the end of its
    window does the same): shipping is a 409 and nothing moves, at once (the order not yet
    told of the void: the capture is refused, and the step is not left half done) and once it
    knows (refused before anything is asked). The order can still be cancelled whole."""
    http = platform.http
    sku, (store, _) = stocked(http, "ORD")
    body = {"channel": "web", "location_id": store, "lines": [{"sku": sku, "quantity": 2}],
            "fulfillments": [{"type": "shipment", "location_id": store,
                              "ship_to": "1 Main St, Springfield"}]}  # fmt: skip
    order = ok(post(http, "/v1/orders", body), 201)
    paid = ok(post(http, f"/v1/orders/{order['id']}/tenders",
                     {"tender_type": "card", "card_token": "tok_visa"}), 201)  # fmt: skip
    ok(post(http, f"/v1/orders/{order['id']}/confirm", {}))
    payment = paid["payment"]["id"]
    assert ok(post(http, f"/v1/payments/{payment}/void", {}))["status"] == "voided"
    (shipment,) = order["fulfillments"]
    step = f"/v1/orders/{order['id']}/fulfillments/{shipment['id']}/steps"
    ship = {"status": "shipped", "carrier": "UPS", "tracking_number": "1Z999AA10123456784"}
    ok(post(http, step, {"status": "picked"}))  # captures nothing
    first = post(http, step, ship)
    assert first.status_code == 409, first.text

    def refused_up_front() -> Any:
        answer = post(http, step, ship)
        assert answer.status_code == 409, answer.text
        return answer.json() if answer.json()["code"] == "payment_required" else None

    problem = eventually(refused_up_front)
    assert int(problem["amount_due"]) == order["total"]["amount"]
    now = ok(http.get(f"/v1/orders/{order['id']}"))
    assert now["fulfillments"][0]["status"] == "picked"
    assert now["fulfillments"][0]["captured"]["amount"] == 0
    assert ok(http.get(f"/v1/payments/{payment}"))["captured"]["amount"] == 0
    cancelled = ok(post(http, f"/v1/orders/{order['id']}/cancel", {}))
    assert cancelled["status"] == "cancelled"
    assert available(http, sku, store) == 10


def _shipment_whose_authorisation_was_voided(
    http: httpx.Client,
) -> tuple[str, str, dict[str, Any], str, str]:
    """A shipment of two units paid by card, confirmed, picked, then its authorisation voided
    through the payments API: its SKU, store, the order, the voided payment and the step
    path, once shipping is refused as unpaid (`payment_required`, all of it due)."""
    sku, (store, _) = stocked(http, "ORD")
    body = {"channel": "web", "location_id": store, "lines": [{"sku": sku, "quantity": 2}],
            "fulfillments": [{"type": "shipment", "location_id": store,
                              "ship_to": "1 Main St, Springfield"}]}  # fmt: skip
    order = ok(post(http, "/v1/orders", body), 201)
    paid = ok(post(http, f"/v1/orders/{order['id']}/tenders",
                     {"tender_type": "card", "card_token": "tok_visa"}), 201)  # fmt: skip
    ok(post(http, f"/v1/orders/{order['id']}/confirm", {}))
    voided = paid["payment"]["id"]
    assert ok(post(http, f"/v1/payments/{voided}/void", {}))["status"] == "voided"
    step = f"/v1/orders/{order['id']}/fulfillments/{order['fulfillments'][0]['id']}/steps"
    ok(post(http, step, {"status": "picked"}))
    refused = post(http, step, SHIP)
    assert refused.status_code == 409, refused.text
    assert refused.json()["code"] == "payment_required", refused.text
    assert int(refused.json()["amount_due"]) == order["total"]["amount"]
    return sku, store, order, voided, step


SHIP = {"status": "shipped", "carrier": "UPS", "tracking_number": "1Z999AA10123456784"}


def _due(http: httpx.Client, order_id: str) -> int:
    due: int = ok(http.get(f"/v1/orders/{order_id}/payments"))["balance_due"]["amount"]
    return due


def test_a_confirmed_order_whose_authorisation_was_voided_takes_a_tender_and_ships(
    platform: Running,
) -> None:
    """The card's authorisation voided after the confirmation: shipping is a 409
    `payment_required`, and the order takes a new tender for what is due (no more: a 400 on
    `amount`; a decline is a 402 and leaves it due; the same Idempotency-Key replays it), so
    the shipment goes and captures its share from the new card. Then nothing is due: another
    tender is a 409 `payment_not_required`. Before, a confirmed order took no tender (409
    `order_not_pending`): cancelled and sold again."""
    http = platform.http
    _, _, order, voided, step = _shipment_whose_authorisation_was_voided(http)
    total = order["total"]["amount"]
    tenders = f"/v1/orders/{order['id']}/tenders"
    assert _due(http, order["id"]) == total

    more = {"amount": total + 1, "currency": "USD"}
    too_much = post(
        http, tenders, {"tender_type": "card", "card_token": "tok_visa", "amount": more}
    )
    assert too_much.status_code == 400, too_much.text
    assert [e["field"] for e in too_much.json()["errors"]] == ["amount"]
    declined = post(http, tenders, {"tender_type": "card", "card_token": "tok_declined"})
    assert declined.status_code == 402, declined.text
    assert ok(http.get(f"/v1/orders/{order['id']}"))["status"] == "confirmed"
    assert post(http, step, SHIP).json()["code"] == "payment_required"
    key = str(uuid.uuid4())
    card = {"tender_type": "card", "card_token": "tok_mastercard"}
    paid = ok(post(http, tenders, card, key), 201)
    assert ok(post(http, tenders, card, key), 201)["payment"]["id"] == paid["payment"]["id"]
    assert paid["payment"]["status"] == "authorized"
    assert paid["payment"]["amount"]["amount"] == total
    assert paid["order"]["status"] == "confirmed"
    assert _due(http, order["id"]) == 0

    shipped = ok(post(http, step, SHIP))

    assert shipped["fulfillments"][0]["status"] == "shipped"
    assert shipped["fulfillments"][0]["captured"]["amount"] == total
    new = ok(http.get(f"/v1/payments/{paid['payment']['id']}"))
    assert new["captured"]["amount"] == total
    assert ok(http.get(f"/v1/payments/{voided}"))["captured"]["amount"] == 0
    again = post(http, tenders, {"tender_type": "card", "card_token": "tok_visa"})
    assert again.status_code == 409, again.text
    assert again.json()["code"] == "payment_not_required"
    payments = ok(http.get(f"/v1/orders/{order['id']}/payments"))["payments"]
    assert len(payments) == 3  # the voided, the declined and the new one: nothing more taken


def _void_in_the_payment_service(platform: Running, payment_id: str) -> None:
    """Void what is left of a payment straight at the payment service, as its sweep voids an
    authorisation past its window."""
    url = platform.platform.env_for("payment")["DATABASE_URL"].replace("+psycopg", "")
    with psycopg.connect(url) as conn:
        row = conn.execute("SELECT merchant_id FROM payments WHERE id = %s", (payment_id,))
        (merchant,) = row.fetchone() or ("",)
    address = f"127.0.0.1:{platform.platform.ports.services['payment']}"
    with grpc.insecure_channel(address) as channel:
        payment_pb2_grpc.PaymentServiceStub(channel).VoidPayment(
            payment_pb2.VoidPaymentRequest(
                request_id=uuid.uuid4().hex, payment_id=payment_id, release_uncaptured_rest=True
            ),
            metadata=(("x-merchant-id", merchant),),
            timeout=10,
        )


def test_a_second_shipment_whose_share_was_voided_takes_a_tender_for_that_share(
    platform: Running,
) -> None:
    """Two shipments on one card: the first shipped (its share captured), then what the card
    had left voided (the payments API refuses a captured payment's void, 409
    `payment_captured`: voided here as the payment service voids a lapsed authorisation). The
    second is refused as unpaid for its own share only; a tender for the balance takes
    exactly that, and the second shipment captures it from the new card (the first card
    keeps the first share)."""
    http = platform.http
    sku, (store, _) = stocked(http, "ORD")
    where = {"type": "shipment", "location_id": store, "ship_to": "1 Main St, Springfield"}
    body = {"channel": "web", "location_id": store, "fulfillments": [where, where],
            "lines": [{"sku": sku, "quantity": 1, "fulfillment": 0},
                      {"sku": sku, "quantity": 2, "fulfillment": 1}]}  # fmt: skip
    order = ok(post(http, "/v1/orders", body), 201)
    tenders = f"/v1/orders/{order['id']}/tenders"
    first_card = ok(post(http, tenders, {"tender_type": "card", "card_token": "tok_visa"}), 201)
    ok(post(http, f"/v1/orders/{order['id']}/confirm", {}))
    first, second = order["fulfillments"]
    steps = [f"/v1/orders/{order['id']}/fulfillments/{f['id']}/steps" for f in (first, second)]
    for path, step in ((steps[0], {"status": "picked"}), (steps[0], SHIP),
                       (steps[1], {"status": "picked"})):  # fmt: skip
        ok(post(http, path, step))
    old = first_card["payment"]["id"]
    by_api = post(http, f"/v1/payments/{old}/void", {})
    assert (by_api.status_code, by_api.json()["code"]) == (409, "payment_captured")
    _void_in_the_payment_service(platform, old)
    refused = post(http, steps[1], SHIP)
    assert refused.status_code == 409 and refused.json()["code"] == "payment_required"
    share = second["amount"]["amount"]
    assert int(refused.json()["amount_due"]) == share

    paid = ok(post(http, tenders, {"tender_type": "card", "card_token": "tok_visa"}), 201)

    assert paid["payment"]["amount"]["amount"] == share
    shipped = ok(post(http, steps[1], SHIP))
    assert [f["status"] for f in shipped["fulfillments"]] == ["shipped", "shipped"]
    assert ok(http.get(f"/v1/payments/{paid['payment']['id']}"))["captured"]["amount"] == share
    kept = ok(http.get(f"/v1/payments/{old}"))["captured"]["amount"]
    assert kept == first["amount"]["amount"] and kept + share == order["total"]["amount"]


def test_a_cancel_after_a_tender_for_what_was_due_voids_the_new_tender(platform: Running) -> None:
    """Cancelled instead of shipped, the order gives back everything it holds, the new
    tender's authorisation included, and its units are back in stock."""
    http = platform.http
    sku, store, order, _, _ = _shipment_whose_authorisation_was_voided(http)
    paid = ok(post(http, f"/v1/orders/{order['id']}/tenders",
                     {"tender_type": "card", "card_token": "tok_visa"}), 201)  # fmt: skip

    cancelled = ok(post(http, f"/v1/orders/{order['id']}/cancel", {}))

    assert cancelled["status"] == "cancelled"
    assert ok(http.get(f"/v1/payments/{paid['payment']['id']}"))["status"] == "voided"
    assert available(http, sku, store) == 10


def test_a_tender_is_replaced_by_voiding_it_then_adding_another(platform: Running) -> None:
    """A shopper changes card before the order is confirmed: the first card's payment voided
    through the payments API, the new card is taken at once (the order asks the payment
    service instead of waiting for the void's event), and the order is confirmed on it."""
    http = platform.http
    sku, (store, _) = stocked(http, "ORD")
    body = {"channel": "web", "location_id": store, "lines": [{"sku": sku, "quantity": 1}],
            "fulfillments": [{"type": "pickup", "location_id": store}]}  # fmt: skip
    order = ok(post(http, "/v1/orders", body), 201)
    tenders = f"/v1/orders/{order['id']}/tenders"
    first = ok(post(http, tenders, {"tender_type": "card", "card_token": "tok_visa"}), 201)
    covered = post(http, tenders, {"tender_type": "card", "card_token": "tok_mastercard"})
    assert covered.status_code == 409 and covered.json()["code"] == "balance_covered"
    voided = ok(post(http, f"/v1/payments/{first['payment']['id']}/void", {}))
    assert voided["status"] == "voided"

    second = ok(post(http, tenders, {"tender_type": "card", "card_token": "tok_mastercard"}), 201)

    assert second["payment"]["status"] == "authorized"
    assert second["payment"]["amount"] == order["total"]
    assert second["order"]["paid"] == order["total"]
    assert second["order"]["payment_ids"] == [first["payment"]["id"], second["payment"]["id"]]
    confirmed = ok(post(http, f"/v1/orders/{order['id']}/confirm", {}))
    assert confirmed["status"] == "confirmed"
    taken = ok(http.get(f"/v1/orders/{order['id']}/payments"))
    payments = {p["id"]: p["status"] for p in taken["payments"]}
    assert taken["balance_due"]["amount"] == 0
    assert payments[first["payment"]["id"]] == "voided"
    assert payments[second["payment"]["id"]] in ("authorized", "captured")


def test_an_in_store_fulfilment_at_another_store_is_refused_and_holds_nothing(
    platform: Running,
) -> None:
    """A web order selling five units "in store" at another store, which has two: in store is
    where the sale is made, so another store is a 400 naming the fulfilment's location and
    nothing is sold (it was confirmed, and that store's on hand went below zero)."""
    http = platform.http
    sku, (here, there) = stocked(http, "ORD", units=2)
    body = {"channel": "web", "location_id": here, "lines": [{"sku": sku, "quantity": 5}],
            "fulfillments": [{"type": "in_store", "location_id": there}]}  # fmt: skip

    refused = post(http, "/v1/orders", body)

    assert refused.status_code == 400, refused.text
    assert [e["field"] for e in refused.json()["errors"]] == ["fulfillments[0].location_id"]
    assert available(http, sku, there) == 2 and available(http, sku, here) == 2
    listed = ok(http.get("/v1/orders", params={"location_id": here, "limit": 100}))["data"]
    assert not [o for o in listed if o["lines"][0]["sku"] == sku]


def _confirmed_pickup(http: httpx.Client) -> tuple[str, dict[str, Any], str, str]:
    """A pickup of two units paid by card and confirmed at the demo merchant (captured at
    confirmation: it would outlive its authorisation): its SKU, the order, the payment and
    the fulfilment's step path."""
    sku, (store, _) = stocked(http, "ORD")
    body = {"channel": "web", "location_id": store, "lines": [{"sku": sku, "quantity": 2}],
            "fulfillments": [{"type": "pickup", "location_id": store}]}  # fmt: skip
    order = ok(post(http, "/v1/orders", body), 201)
    paid = ok(post(http, f"/v1/orders/{order['id']}/tenders",
                     {"tender_type": "card", "card_token": "tok_visa"}), 201)  # fmt: skip
    confirmed = ok(post(http, f"/v1/orders/{order['id']}/confirm", {}))
    assert confirmed["fulfillments"][0]["captured"] == confirmed["total"]
    step = f"/v1/orders/{order['id']}/fulfillments/{order['fulfillments'][0]['id']}/steps"
    ok(post(http, step, {"status": "ready_for_pickup"}))
    return sku, confirmed, paid["payment"]["id"], step


def test_a_refunded_pickup_is_not_handed_over(platform: Running) -> None:
    """The card captured at confirmation, then refunded through the payments API (in part,
    then in full): the hand-over is a 409 `payment_refunded` naming what is no longer paid,
    at once (the order not yet told of the refund by its event) and nothing changes; the
    order can still be cancelled, its units back in stock."""
    http = platform.http
    sku, order, payment, step = _confirmed_pickup(http)
    store = order["location_id"]
    total = order["total"]["amount"]
    refund = {"amount": {"amount": 500, "currency": "USD"}, "reason": "goodwill"}
    ok(post(http, f"/v1/payments/{payment}/refunds", refund), 201)
    before = ok(http.get(f"/v1/orders/{order['id']}"))

    refused = post(http, step, {"status": "picked_up"})
    assert refused.status_code == 409, refused.text
    problem = refused.json()
    assert problem["code"] == "payment_refunded" and int(problem["amount_due"]) == 500
    now = ok(http.get(f"/v1/orders/{order['id']}"))
    assert now["fulfillments"][0]["status"] == "ready_for_pickup"
    assert now["status"] == "confirmed" and now["timeline"] == before["timeline"]
    assert now["fulfillments"][0]["captured"] == before["fulfillments"][0]["captured"]

    ok(post(http, f"/v1/payments/{payment}/refunds", {"reason": "the rest"}), 201)
    again = post(http, step, {"status": "picked_up"})
    assert again.status_code == 409, again.text
    assert again.json()["code"] == "payment_refunded"
    assert int(again.json()["amount_due"]) == total
    assert ok(http.get(f"/v1/payments/{payment}"))["refunded"]["amount"] == total
    assert available(http, sku, store) == 8  # still kept aside for the buyer

    def heard_of_refunds() -> dict[str, Any] | None:
        got = ok(http.get(f"/v1/orders/{order['id']}"))
        return got if got["paid"]["amount"] == 0 else None

    eventually(heard_of_refunds)  # the refunds' events reached the order: refused the same
    assert post(http, step, {"status": "picked_up"}).json()["code"] == "payment_refunded"
    cancelled = ok(post(http, f"/v1/orders/{order['id']}/cancel", {}))
    assert cancelled["status"] == "cancelled"
    assert cancelled["fulfillments"][0]["status"] == "cancelled"
    assert ok(http.get(f"/v1/payments/{payment}"))["refunded"]["amount"] == total
    assert available(http, sku, store) == 10


def test_a_price_adjustment_on_a_pickup_still_hands_it_over(platform: Running) -> None:
    """A refund naming the units it is for (a price adjustment) lowers what the goods are
    sold for: the pickup is handed over."""
    http = platform.http
    sku, _, payment, step = _confirmed_pickup(http)
    adjust = {"amount": {"amount": 300, "currency": "USD"}, "reason": "scuffed box",
              "lines": [{"sku": sku, "quantity": 1}]}  # fmt: skip
    ok(post(http, f"/v1/payments/{payment}/refunds", adjust), 201)
    done = ok(post(http, step, {"status": "picked_up"}))
    assert done["status"] == "completed"
    assert done["fulfillments"][0]["status"] == "picked_up"


def test_orders_are_listed_by_when_they_were_created(platform: Running) -> None:
    with platform.new_merchant(f"Created {uuid.uuid4().hex[:8]}") as http:
        for name in ("Day St", "Night St"):
            ok(post(http, "/v1/locations", {"name": name, "currency": "USD"}), 201)
        sku, (store, _) = stocked(http, "DAY")
        body = {"location_id": store, "lines": [{"sku": sku, "quantity": 1}]}
        first = ok(post(http, "/v1/orders", body), 201)
        second = ok(post(http, "/v1/orders", body), 201)
        assert second["created_at"] > first["created_at"]

        def listed(**window: str) -> list[str]:
            return [o["id"] for o in ok(http.get("/v1/orders", params=window))["data"]]

        assert listed(created_since=second["created_at"]) == [second["id"]]
        assert listed(created_before=second["created_at"]) == [first["id"]]
        assert listed(created_since=first["created_at"], created_before=second["created_at"]) == [
            first["id"]
        ]
        for window, field in (
            ({"created_since": second["created_at"], "created_before": first["created_at"]},
             "created_before"),
            ({"created_since": "yesterday"}, "created_since"),
            ({"created_before": "2026-12-01T00:00:00"}, "created_before"),
        ):  # fmt: skip
            refused = http.get("/v1/orders", params=window)
            assert refused.status_code == 400, refused.text
            assert [e["field"] for e in refused.json()["errors"]] == [field], refused.text


def test_a_shipment_needs_an_address_carrier_and_tracking_number_that_are_not_blank(
    platform: Running,
) -> None:
    """A shipment's `ship_to`, and the `carrier` and `tracking_number` of its `shipped` step,
    are required: spaces alone are a 400 naming each, with nothing held, captured or moved,
    and what is sent is kept trimmed. Before, a blank tracking number shipped the goods for
    good (captured), and the real one was then refused as `fulfillment_already_shipped`."""
    http = platform.http
    sku, (store, _) = stocked(http, "SHIP")
    shipment = {"type": "shipment", "location_id": store, "ship_to": "  "}
    blank = {"location_id": store, "lines": [{"sku": sku, "quantity": 1}],
             "fulfillments": [shipment]}  # fmt: skip
    nowhere = post(http, "/v1/orders", blank)
    assert nowhere.status_code == 400, nowhere.text
    assert [e["field"] for e in nowhere.json()["errors"]] == ["fulfillments[0].ship_to"]
    assert available(http, sku, store) == 10

    body = {**blank, "fulfillments": [{**shipment, "ship_to": " 1 Main St "}]}
    order = ok(post(http, "/v1/orders", body), 201)
    assert order["fulfillments"][0]["ship_to"] == "1 Main St"
    ok(post(http, f"/v1/orders/{order['id']}/tenders",
            {"tender_type": "card", "card_token": "tok_visa"}), 201)  # fmt: skip
    ok(post(http, f"/v1/orders/{order['id']}/confirm", {}))
    step = f"/v1/orders/{order['id']}/fulfillments/{order['fulfillments'][0]['id']}/steps"
    ok(post(http, step, {"status": "picked"}))
    refused = post(http, step, {"status": "shipped", "carrier": " ", "tracking_number": "\t"})
    assert refused.status_code == 400, refused.text
    fields = [e["field"] for e in refused.json()["errors"]]
    assert fields == ["carrier", "tracking_number"]
    after = ok(http.get(f"/v1/orders/{order['id']}"))["fulfillments"][0]
    assert (after["status"], after["captured"]["amount"]) == ("picked", 0)

    shipped = ok(post(http, step, {"status": "shipped", "carrier": " UPS",
                                   "tracking_number": "1Z999 "}))["fulfillments"][0]  # fmt: skip
    assert (shipped["status"], shipped["carrier"], shipped["tracking_number"]) == (
        "shipped", "UPS", "1Z999")  # fmt: skip
    # Asked again as it was sent, it is the step it is at: the order unchanged.
    again = post(http, step, {"status": "shipped", "carrier": "UPS ", "tracking_number": "1Z999"})
    assert ok(again)["fulfillments"][0]["tracking_number"] == "1Z999"
