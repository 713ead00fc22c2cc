"""Ship from store through the gateway, every service a separate process: an order whose
shipment names no store is announced with the store sourcing picked (never dead-lettered); one
that no store can ship is refused with a 409 and leaves no order behind, in the lists or in the
feed; and an order kept by an earlier version with a shipment that was never sourced (its store
empty) is read, listed and cancelled like any other."""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable
from typing import Any

import httpx
import psycopg
import pytest
from psycopg.types.json import Jsonb

from pos_devstack.testing import Running

pytestmark = pytest.mark.e2e

DESTINATION = {"latitude": 39.78, "longitude": -89.65}


def _eventually(check: Callable[[], Any], timeout: float = 30.0) -> Any:
    deadline = time.monotonic() + timeout
    while not (value := check()):
        assert time.monotonic() < deadline, "the expected state was not reached in time"
        time.sleep(0.1)
    return value


def _post(http: httpx.Client, path: str, body: dict[str, Any]) -> httpx.Response:
    return http.post(path, json=body, headers={"Idempotency-Key": str(uuid.uuid4())})


def _ok(answer: httpx.Response, status: int = 200) -> Any:
    assert answer.status_code == status, answer.text
    return answer.json()


def _shipment(store: str, sku: str) -> dict[str, Any]:
    return {
        "location_id": store,
        "lines": [{"sku": sku, "quantity": 1}],
        "fulfillments": [{"type": "shipment", "ship_to": "1 Main St, Springfield",
                          "destination": DESTINATION}],
    }  # fmt: skip


def _order_events(http: httpx.Client) -> list[dict[str, Any]]:
    answer = _ok(http.get("/v1/events", params={"types": "order.*", "limit": 200}))
    return list(answer["data"])


def test_ship_from_store_is_announced_with_its_store_and_a_refused_one_leaves_nothing(
    platform: Running,
) -> None:
    # A merchant of its own: its stores, its feed and its orders are this test's alone.
    with platform.new_merchant("Ship from store, refused") as http:
        tag = uuid.uuid4().hex[:6].upper()
        body = {"name": f"Ship {tag}", "currency": "USD", "tax_rate_bps": 0,
                "geo": {"latitude": 39.80, "longitude": -89.64}, "ship_enabled": True}  # fmt: skip
        store = _ok(_post(http, "/v1/locations", body), 201)["id"]
        socks, tee = f"SOCKS-{tag}", f"TEE-{tag}"
        for sku in (socks, tee):
            _ok(_post(http, "/v1/products", {"sku": sku, "name": sku,
                "price": {"amount": 1000, "currency": "USD"}}), 201)  # fmt: skip
        adjustment = {"sku": tee, "location_id": store, "delta": 2, "reason": "received"}
        _ok(_post(http, "/v1/inventory/adjustments", adjustment), 201)

        # No ship-enabled store has socks: refused, and no order is kept.
        refused = _post(http, "/v1/orders", _shipment(store, socks))
        assert refused.status_code == 409, refused.text
        assert refused.json()["code"] == "insufficient_stock"
        assert refused.json()["short"] == [{"sku": socks, "quantity": 1}], refused.text
        assert _ok(http.get("/v1/orders"))["data"] == []

        order = _ok(_post(http, "/v1/orders", _shipment(store, tee)), 201)
        assert [f["location_id"] for f in order["fulfillments"]] == [store]

        # Announced with its store. The refused order's events would have come before it
        # from the same stream: there are none, and nothing of this merchant is poison.
        events = _eventually(lambda: _order_events(http))
        assert [(e["type"], e["data"]["object"]["id"]) for e in events] == [
            ("order.created", order["id"])
        ]
        created = events[0]["data"]["object"]
        assert created["fulfillments"][0]["location_id"] == store
        assert created["fulfillments"][0]["reservation_id"]
        assert _dead_letters(platform, events[0]["merchant_id"]) == []

        # Every list of the merchant's orders answers, with the one order.
        for params in ({}, {"status": "pending_payment"}, {"fulfillment_status": "reserved"}):
            listed = _ok(http.get("/v1/orders", params=params))["data"]
            assert [o["id"] for o in listed] == [order["id"]]


def test_a_shipment_is_never_sourced_from_a_store_selling_in_another_currency(
    platform: Running,
) -> None:
    """One order, one currency: a store named to ship is refused when it sells in another, and
    sourcing held one picked by distance in any currency (a dollar sale shipped from a euro
    store, taxed and paid in a currency not its own). Now it picks among the order's stores,
    and a shipment only another currency's store could fill is refused, holding nothing."""
    with platform.new_merchant("Ship in one currency") as http:
        tag = uuid.uuid4().hex[:6].upper()
        sku = f"MUG-{tag}"
        _ok(_post(http, "/v1/products", {"sku": sku, "name": sku,
            "price": {"amount": 1000, "currency": "USD"}}), 201)  # fmt: skip
        stores = {}
        for name, currency, geo in (
            ("Seller", "USD", {"latitude": 47.0, "longitude": -122.0}),
            ("Near", "EUR", DESTINATION),  # where the parcel goes: the nearest by far
            ("Far", "USD", {"latitude": 30.0, "longitude": -97.0}),
        ):
            body = {"name": f"{name} {tag}", "currency": currency, "geo": geo,
                    "ship_enabled": True}  # fmt: skip
            stores[name] = _ok(_post(http, "/v1/locations", body), 201)["id"]
        for name in ("Near", "Far"):
            received = {"sku": sku, "location_id": stores[name], "delta": 1, "reason": "received"}
            _ok(_post(http, "/v1/inventory/adjustments", received), 201)

        def available(store: str) -> int:
            levels = _ok(http.get("/v1/inventory", params={"sku": sku, "location_id": store}))
            return int(levels["data"][0]["available"])

        order = _ok(_post(http, "/v1/orders", _shipment(stores["Seller"], sku)), 201)
        assert [f["location_id"] for f in order["fulfillments"]] == [stores["Far"]]
        assert (available(stores["Near"]), available(stores["Far"])) == (1, 0)

        # Only the euro store has one left: no store of the order's currency can ship it.
        refused = _post(http, "/v1/orders", _shipment(stores["Seller"], sku))
        assert refused.status_code == 409, refused.text
        assert refused.json()["code"] == "insufficient_stock"
        assert available(stores["Near"]) == 1


def test_a_sourced_shipment_is_taxed_where_it_leaves_from_as_a_named_one_is(
    platform: Running,
) -> None:
    """Sold at a store charging 10 %, shipped from one charging 5 % (the only one with the
    goods): sourcing's pick taxes the order as naming that store does; it was taxed at the
    selling store's 10 %, and a line split over both stores at 10 % throughout."""
    with platform.new_merchant("Ship from store, taxed") as http:
        tag = uuid.uuid4().hex[:6].upper()
        stores = {}
        for name, rate, geo in (
            ("Seller", 1000, {"latitude": 47.0, "longitude": -122.0}),
            ("Shipper", 500, {"latitude": 39.80, "longitude": -89.64}),
        ):
            body = {"name": f"{name} {tag}", "currency": "USD", "tax_rate_bps": rate,
                    "geo": geo, "ship_enabled": True}  # fmt: skip
            stores[name] = _ok(_post(http, "/v1/locations", body), 201)["id"]
        sku = f"MUG-{tag}"
        _ok(_post(http, "/v1/products", {"sku": sku, "name": sku,
            "price": {"amount": 1000, "currency": "USD"}}), 201)  # fmt: skip
        received = {"sku": sku, "location_id": stores["Shipper"], "delta": 4, "reason": "received"}
        _ok(_post(http, "/v1/inventory/adjustments", received), 201)

        def taxed(order: dict[str, Any]) -> list[Any]:
            return [
                order["tax_total"]["amount"], order["total"]["amount"],
                [(f["location_id"], f["amount"]["amount"]) for f in order["fulfillments"]],
                [(ln["quantity"], [(t["amount"]["amount"], t["rate_bps"]) for t in ln["taxes"]])
                 for ln in order["lines"]],
            ]  # fmt: skip

        body = {**_shipment(stores["Seller"], sku), "lines": [{"sku": sku, "quantity": 2}]}
        sourced = _ok(_post(http, "/v1/orders", body), 201)
        named = dict(body, fulfillments=[{"type": "shipment", "ship_to": "1 Main St, Springfield",
                                          "location_id": stores["Shipper"]}])  # fmt: skip
        expected = [100, 2100, [(stores["Shipper"], 2100)], [(2, [(100, 500)])]]
        by_name = _ok(_post(http, "/v1/orders", named), 201)
        assert taxed(sourced) == taxed(by_name) == expected
        _ok(_post(http, f"/v1/orders/{by_name['id']}/cancel", {}))  # its two mugs back
        assert taxed(_ok(http.get(f"/v1/orders/{sourced['id']}"))) == expected
        # Announced with that tax: partners hear what the order is paid with.
        created = _eventually(lambda: [
            e["data"]["object"] for e in _order_events(http)
            if e["type"] == "order.created" and e["data"]["object"]["id"] == sourced["id"]
        ])  # fmt: skip
        assert taxed(created[0]) == expected
        # Paid at that total: its card is authorised for 21.00, not 22.00.
        paid = _ok(_post(http, f"/v1/orders/{sourced['id']}/tenders",
                         {"tender_type": "card", "card_token": "tok_visa"}), 201)  # fmt: skip
        payment = _ok(http.get(f"/v1/payments/{paid['payment']['id']}"))
        assert payment["amount"]["amount"] == 2100, payment

        # Three mugs, the shipper has two left and the seller one: split over both stores,
        # each part taxed at its own store's rate and each store's share with its own tax.
        more = {"sku": sku, "location_id": stores["Seller"], "delta": 1, "reason": "received"}
        _ok(_post(http, "/v1/inventory/adjustments", more), 201)
        body["lines"] = [{"sku": sku, "quantity": 3}]
        split = taxed(_ok(_post(http, "/v1/orders", body), 201))
        assert split[:2] == [200, 3200]
        assert sorted(split[2]) == sorted([(stores["Shipper"], 2100), (stores["Seller"], 1100)])
        assert sorted(split[3]) == [(1, [(100, 1000)]), (2, [(100, 500)])]


def _dead_letters(platform: Running, merchant_id: str) -> list[dict[str, Any]]:
    running = platform.platform
    token = running._secrets()["platform_admin_token"]
    found: list[dict[str, Any]] = []
    with httpx.Client(base_url=running.gateway_url, timeout=15,
                      headers={"Authorization": f"Bearer {token}"}) as admin:  # fmt: skip
        cursor: str | None = None
        while True:
            params: dict[str, Any] = {"consumer": "dispatcher-order", "limit": 200}
            if cursor:
                params["cursor"] = cursor
            page = _ok(admin.get("/v1/admin/dead-letters", params=params))
            found += [x for x in page["data"] if x["merchant_id"] == merchant_id]
            cursor = page["next_cursor"]
            if cursor is None:
                return found


def test_an_order_kept_with_a_shipment_never_sourced_reads_lists_and_cancels(
    platform: Running,
) -> None:
    """What an earlier version kept of a refused ship-from-store order: cancelled, its
    shipment with no store and no hold. Reading it once made every list of the merchant's
    orders, the order itself and its cancel a 500."""
    with platform.new_merchant("Ship from store, kept") as http:
        tag = uuid.uuid4().hex[:6].upper()
        body = {"name": f"Ship {tag}", "currency": "USD", "tax_rate_bps": 0,
                "geo": {"latitude": 39.80, "longitude": -89.64}, "ship_enabled": True}  # fmt: skip
        store = _ok(_post(http, "/v1/locations", body), 201)["id"]
        sku = f"SOCKS-{tag}"
        _ok(_post(http, "/v1/products", {"sku": sku, "name": sku,
            "price": {"amount": 1000, "currency": "USD"}}), 201)  # fmt: skip
        adjustment = {"sku": sku, "location_id": store, "delta": 1, "reason": "received"}
        _ok(_post(http, "/v1/inventory/adjustments", adjustment), 201)
        order = _ok(_post(http, "/v1/orders", _shipment(store, sku)), 201)
        cancelled = _ok(_post(http, f"/v1/orders/{order['id']}/cancel", {}))
        assert cancelled["status"] == "cancelled"
        _as_kept_when_refused(platform, order["id"])

        for params in ({}, {"status": "cancelled"}, {"fulfillment_status": "cancelled"},
                       {"location_id": store}):  # fmt: skip
            listed = _ok(http.get("/v1/orders", params=params))["data"]
            assert [o["id"] for o in listed] == [order["id"]], params
        read = _ok(http.get(f"/v1/orders/{order['id']}"))
        (shipment,) = read["fulfillments"]
        assert (shipment["location_id"], shipment["reservation_id"]) == ("", "")
        again = _ok(_post(http, f"/v1/orders/{order['id']}/cancel", {}))
        assert again["status"] == "cancelled"
        assert _ok(http.get(f"/v1/orders/{order['id']}/receipt"))["order_id"] == order["id"]


def _as_kept_when_refused(platform: Running, order_id: str) -> None:
    """The order's row as an earlier version left a refused one: cancelled for want of stock,
    its shipment never sourced (no store, no hold, still its destination)."""
    with psycopg.connect(platform.platform.database_urls["order"]) as conn:
        (fulfillments, saga) = conn.execute(
            "SELECT fulfillments, saga FROM orders WHERE id = %s", (order_id,)
        ).fetchone() or (None, None)
        assert fulfillments and saga
        for f in fulfillments:
            f.update(location_id="", reservation_id="", hold="released")
        saga["cancel_reason"] = "insufficient_stock"
        conn.execute(
            "UPDATE orders SET fulfillments = %s, saga = %s WHERE id = %s",
            (Jsonb(fulfillments), Jsonb(saga), order_id),
        )


def test_a_receipt_compounds_a_shipped_line_s_tax_as_its_store_does(platform: Running) -> None:
    """Sold at a store whose city 10 % is plain, shipped from one whose city 10 % compounds on
    its state 6 %: the line's city tax is 10 % of 90.00 + 5.40, and the receipt says it was
    charged on 95.40 (it read the selling store's taxes: 90.00)."""
    with platform.new_merchant("Receipt, compounded elsewhere") as http:
        tag = uuid.uuid4().hex[:6].upper()
        stores = {}
        for name, compound in (("Seller", False), ("Shipper", True)):
            taxes = [{"name": "state", "rate_bps": 600},
                     {"name": "city", "rate_bps": 1000, "compound": compound}]  # fmt: skip
            body = {"name": f"{name} {tag}", "currency": "USD", "tax_rate_bps": 0,
                    "taxes": taxes, "ship_enabled": True}  # fmt: skip
            stores[name] = _ok(_post(http, "/v1/locations", body), 201)["id"]
        sku = f"LAMP-{tag}"
        _ok(_post(http, "/v1/products", {"sku": sku, "name": sku,
            "price": {"amount": 9000, "currency": "USD"}}), 201)  # fmt: skip
        received = {"sku": sku, "location_id": stores["Shipper"], "delta": 1, "reason": "received"}
        _ok(_post(http, "/v1/inventory/adjustments", received), 201)
        body = {"location_id": stores["Seller"], "lines": [{"sku": sku, "quantity": 1}],
                "fulfillments": [{"type": "shipment", "ship_to": "1 Main St, Springfield",
                                  "location_id": stores["Shipper"]}]}  # fmt: skip
        order = _ok(_post(http, "/v1/orders", body), 201)
        taxes = [(t["name"], t["amount"]["amount"]) for t in order["lines"][0]["taxes"]]
        assert taxes == [("state", 540), ("city", 954)]
        receipt = _ok(http.get(f"/v1/orders/{order['id']}/receipt"))
        rows = [(t["name"], t["compound"], t["taxable"]["amount"], t["amount"]["amount"])
                for t in receipt["taxes"]]  # fmt: skip
        assert rows == [("state 6%", False, 9000, 540), ("city 10%", True, 9540, 954)]
