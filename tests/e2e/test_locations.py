"""A location changes after it is made: its name, address and coordinates, its time zone and its
taxes (the next sale there is taxed at the new rate), never its currency or kind; by version,
field by field; another merchant's is a 404. A merchant of its own, so no other test's stores
are involved."""

from __future__ import annotations

import uuid
from typing import Any

import httpx
import pytest

from pos_devstack.testing import Running

pytestmark = pytest.mark.e2e


def _post(http: httpx.Client, path: str, body: dict[str, Any]) -> httpx.Response:
    return http.post(path, json=body, headers={"Idempotency-Key": str(uuid.uuid4())})


def _ok(answer: httpx.Response, status: int = 200) -> Any:
    assert answer.status_code == status, answer.text
    return answer.json()


def _tax(http: httpx.Client, store: str) -> int:
    cart = {"location_id": store, "lines": [{"sku": "LOC-TEA", "quantity": 1}]}
    return int(_ok(_post(http, "/v1/carts/calculate", cart))["tax_total"]["amount"])


def test_a_location_changes_its_name_address_time_zone_and_taxes(platform: Running) -> None:
    with platform.new_merchant(f"Locations {uuid.uuid4().hex[:8]}") as http:
        geo = {"latitude": 1.0, "longitude": 2.0}
        old = {"name": "Old St", "currency": "USD", "tax_rate_bps": 500, "geo": geo}
        made = _ok(_post(http, "/v1/locations", old), 201)
        store = made["id"]
        _ok(_post(http, "/v1/products", {"sku": "LOC-TEA", "name": "Tea", "tax_category": "food",
            "price": {"amount": 1000, "currency": "USD"}}), 201)  # fmt: skip
        assert _tax(http, store) == 50
        path = f"/v1/locations/{store}"
        changed = http.patch(
            path,
            json={
                "name": "Harbor Store",
                "address": {"line1": "9 Pier Rd", "city": "Portland", "country": "US"},
                "geo": None,
                "time_zone": "America/Los_Angeles",
                "tax_rates_bps": {"food": 200},
            },
            headers={"If-Match": '"1"'},
        )
        location = _ok(changed)
        assert (location["name"], location["address"]["city"], location["geo"]) == (
            "Harbor Store", "Portland", None,
        )  # fmt: skip
        assert (location["time_zone"], location["version"]) == ("America/Los_Angeles", 2)
        assert changed.headers["ETag"] == '"2"'
        assert _ok(http.get(path)) == location
        # The next sale there is taxed at the new rate of its tax category.
        assert _tax(http, store) == 20
        assert _tax(http, store) == 20
        _ok(http.patch(path, json={"taxes": [{"name": "state", "rate_bps": 600},
                                            {"name": "city", "rate_bps": 100}]}))  # fmt: skip
        assert _tax(http, store) == 70
        # Sent as it already is: no new version.
        same = _ok(http.patch(path, json={"name": "Harbor Store"}))
        assert same["version"] == 3
        # Stale, bad, unchangeable, empty: refused, field by field, nothing kept.
        stale = http.patch(path, json={"name": "Late"}, headers={"If-Match": '"1"'})
        assert stale.status_code == 412 and stale.json()["current_version"] == 3
        bad = http.patch(path, json={"name": "", "time_zone": "Mars/Base", "tax_rate_bps": -1})
        assert bad.status_code == 400, bad.text
        assert {e["field"] for e in bad.json()["errors"]} == {"name", "time_zone", "tax_rate_bps"}
        for body in ({"currency": "EUR"}, {"kind": "warehouse"}, {"name": None}, {}):
            refused = http.patch(path, json=body)
            assert refused.status_code == 400, (body, refused.text)
        assert _ok(http.get(path))["version"] == 3
        with platform.new_merchant(f"Other {uuid.uuid4().hex[:8]}") as other:
            theirs = other.patch(path, json={"name": "Mine now"})
            assert theirs.status_code == 404, theirs.text
        assert _ok(http.get(path))["name"] == "Harbor Store"


def _store(http: httpx.Client, name: str, lat: float, stock: dict[str, int]) -> str:
    body = {"name": name, "currency": "USD", "geo": {"latitude": lat, "longitude": -87.6},
            "pickup_enabled": True, "ship_enabled": True}  # fmt: skip
    store = str(_ok(_post(http, "/v1/locations", body), 201)["id"])
    for sku, units in stock.items():
        adjustment = {"sku": sku, "location_id": store, "delta": units, "reason": "received"}
        _ok(_post(http, "/v1/inventory/adjustments", adjustment), 201)
    return store


def _closed(answer: httpx.Response, field: str) -> None:
    """A 409 `location_inactive` naming the request field that chose the closed store."""
    assert answer.status_code == 409, answer.text
    problem = answer.json()
    assert problem["code"] == "location_inactive", problem
    assert [e["field"] for e in problem["errors"]] == [field], problem


def test_an_inactive_location_sells_holds_and_receives_no_more(platform: Running) -> None:
    """A store closed for good (`status: inactive`): a checkout, an order, a cart, a hold or a
    transfer into it is a 409 naming the field that chose it, an order's pickup there a 400;
    nearby stock and sourcing pass it by. Goods brought back there (`returned`) are a 409
    too. Its stock can still be moved out, written off and corrected; reopened, it sells
    again."""
    with platform.new_merchant(f"Closing {uuid.uuid4().hex[:8]}") as http:
        _ok(_post(http, "/v1/products", {"sku": "CL-MUG", "name": "Mug",
            "price": {"amount": 900, "currency": "USD"}}), 201)  # fmt: skip
        closing = _store(http, "Closing St", 41.90, {"CL-MUG": 5})
        open_ = _store(http, "Open St", 41.00, {"CL-MUG": 5})
        path = f"/v1/locations/{closing}"
        assert _ok(http.get(path))["status"] == "active"
        closed = http.patch(path, json={"status": "inactive"}, headers={"If-Match": '"1"'})
        assert (_ok(closed)["status"], closed.json()["version"]) == ("inactive", 2)
        assert _ok(http.get(path))["status"] == "inactive"
        for status, ids in (("inactive", [closing]), ("active", [open_])):
            listed = _ok(http.get("/v1/locations", params={"status": status}))["data"]
            assert [x["id"] for x in listed] == ids, status
        # The change feed is every status: one of `active` would never show this one leave.
        feed = http.get(
            "/v1/locations", params={"status": "active", "updated_since": "2026-01-01T00:00:00Z"}
        )
        assert feed.status_code == 400, feed.text
        assert [e["field"] for e in feed.json()["errors"]] == ["status"], feed.text
        everything = _ok(
            http.get("/v1/locations", params={"updated_since": "2026-01-01T00:00:00Z"})
        )
        assert {x["id"] for x in everything["data"]} == {closing, open_}

        line = [{"sku": "CL-MUG", "quantity": 1}]
        checkout = {"location_id": closing, "lines": line, "tender_type": "card",
                    "card_token": "tok_visa"}  # fmt: skip
        _closed(_post(http, "/v1/checkouts", checkout), "location_id")
        _closed(_post(http, "/v1/carts/calculate", {"location_id": closing, "lines": line}),
                "location_id")  # fmt: skip
        web = {"channel": "web", "location_id": closing, "lines": line,
               "fulfillments": [{"type": "pickup", "location_id": closing}]}  # fmt: skip
        _closed(_post(http, "/v1/orders", web), "location_id")
        pickup = {**web, "location_id": open_}
        refused = _post(http, "/v1/orders", pickup)
        assert refused.status_code == 400, refused.text
        assert [e["field"] for e in refused.json()["errors"]] == ["fulfillments[0].location_id"]
        _closed(_post(http, "/v1/reservations", {"location_id": closing, "lines": line}),
                "location_id")  # fmt: skip
        till = {"location_id": closing, "name": "Till 9"}
        _closed(_post(http, "/v1/registers", till), "location_id")
        into = {"from_location_id": open_, "to_location_id": closing, "lines": line}
        _closed(_post(http, "/v1/inventory/transfers", into), "to_location_id")
        at = {"lines": line, "pickup_location_id": closing, "dry_run": True}
        _closed(_post(http, "/v1/sourcing", at), "pickup_location_id")
        near = {"sku": "CL-MUG:1", "latitude": 41.9, "longitude": -87.6}
        listed = _ok(http.get("/v1/inventory/nearby", params=near))["data"]
        assert [x["location"]["id"] for x in listed] == [open_]
        shipped = {"lines": line, "destination": {"latitude": 41.9, "longitude": -87.6},
                   "dry_run": True}  # fmt: skip
        proposal = _ok(_post(http, "/v1/sourcing", shipped))
        assert [a["location_id"] for a in proposal["allocations"]] == [open_]
        # Nothing was held or moved by the refusals; its stock can still go out.
        levels = {"sku": "CL-MUG", "location_id": closing}
        (level,) = _ok(http.get("/v1/inventory", params=levels))["data"]
        assert (level["on_hand"], level["reserved"]) == (5, 0)
        out = {"from_location_id": closing, "to_location_id": open_, "lines": line}
        _ok(_post(http, "/v1/inventory/transfers", out), 201)
        loss = {"sku": "CL-MUG", "location_id": closing, "delta": -1, "reason": "damaged"}
        _ok(_post(http, "/v1/inventory/adjustments", loss), 201)
        back = {**loss, "delta": 2, "reason": "returned"}
        _closed(_post(http, "/v1/inventory/adjustments", back), "location_id")
        _ok(_post(http, "/v1/inventory/adjustments", {**back, "reason": "correction"}), 201)
        (level,) = _ok(http.get("/v1/inventory", params=levels))["data"]
        assert level["on_hand"] == 5

        reopened = _ok(http.patch(path, json={"status": "active"}))
        assert (reopened["status"], reopened["version"]) == ("active", 3)
        _ok(_post(http, "/v1/checkouts", checkout), 201)
        _ok(_post(http, "/v1/registers", till), 201)
        bad = http.patch(path, json={"status": "closed"})
        assert bad.status_code == 400 and [e["field"] for e in bad.json()["errors"]] == ["status"]


def test_an_inactive_location_sells_and_loads_no_gift_cards(platform: Running) -> None:
    """Value is not sold or taken at a closed store: a gift card issued, loaded or redeemed
    naming it is a 409 `location_inactive` on `location_id`, and the card's balance stays;
    the card itself still works elsewhere, and reads of it still answer."""
    with platform.new_merchant(f"Closed cards {uuid.uuid4().hex[:8]}") as http:
        closing = _store(http, "Closing St", 41.90, {})
        open_ = _store(http, "Open St", 41.00, {})
        value = {"amount": 2000, "currency": "USD"}
        sold = _ok(_post(http, "/v1/gift-cards", {"amount": value, "location_id": closing}), 201)
        card, code = sold["gift_card"]["id"], sold["code"]
        _ok(http.patch(f"/v1/locations/{closing}", json={"status": "inactive"}))

        _closed(_post(http, "/v1/gift-cards", {"amount": value, "location_id": closing}),
                "location_id")  # fmt: skip
        load = {"amount": {"amount": 500, "currency": "USD"}, "location_id": closing}
        _closed(_post(http, f"/v1/gift-cards/{card}/loads", load), "location_id")
        redeem = {"code": code, "amount": {"amount": 300, "currency": "USD"},
                  "location_id": closing}  # fmt: skip
        _closed(_post(http, "/v1/gift-cards/redeem", redeem), "location_id")
        assert _ok(http.get(f"/v1/gift-cards/{card}"))["balance"]["amount"] == 2000

        _ok(_post(http, f"/v1/gift-cards/{card}/loads", {**load, "location_id": open_}), 201)
        _ok(_post(http, "/v1/gift-cards/redeem", {**redeem, "location_id": open_}))
        assert _ok(http.get(f"/v1/gift-cards/{card}"))["balance"]["amount"] == 2200


def test_an_inactive_location_takes_no_units_back(platform: Running) -> None:
    """A closed store receives no stock: a return restocking units there (named on its line)
    or a return without a receipt there is a 409 `location_inactive` naming the field that
    chose it, and nothing is returned, credited or restocked; the same return restocked at an
    open store goes through."""
    with platform.new_merchant(f"Closed returns {uuid.uuid4().hex[:8]}") as http:
        _ok(_post(http, "/v1/products", {"sku": "CL-CUP", "name": "Cup",
            "price": {"amount": 800, "currency": "USD"}}), 201)  # fmt: skip
        closing = _store(http, "Closing St", 41.90, {"CL-CUP": 5})
        open_ = _store(http, "Open St", 41.00, {"CL-CUP": 5})
        sale = {"location_id": open_, "lines": [{"sku": "CL-CUP", "quantity": 2}],
                "tender_type": "card", "card_token": "tok_visa"}  # fmt: skip
        order = _ok(_post(http, "/v1/checkouts", sale), 201)["order"]
        customer = _ok(_post(http, "/v1/customers", {"given_name": "Ada"}), 201)["id"]
        _ok(http.patch(f"/v1/locations/{closing}", json={"status": "inactive"}))

        back = {"lines": [{"line_id": order["lines"][0]["id"], "quantity": 1, "restock": True,
                           "location_id": closing}], "reason": "wrong_size"}  # fmt: skip
        _closed(_post(http, f"/v1/orders/{order['id']}/returns", back), "lines[0].location_id")
        receiptless = {"location_id": closing, "customer_id": customer, "reason": "no_receipt",
                       "lines": [{"sku": "CL-CUP", "quantity": 1, "restock": True}]}  # fmt: skip
        _closed(_post(http, "/v1/returns", receiptless), "location_id")
        levels = {"sku": "CL-CUP", "location_id": closing}
        (level,) = _ok(http.get("/v1/inventory", params=levels))["data"]
        assert level["on_hand"] == 5
        assert _ok(http.get(f"/v1/orders/{order['id']}/returns"))["data"] == []
        assert _ok(http.get("/v1/gift-cards", params={"customer_id": customer}))["data"] == []

        back["lines"][0]["location_id"] = open_
        _ok(_post(http, f"/v1/orders/{order['id']}/returns", back), 201)
        _ok(_post(http, "/v1/returns", {**receiptless, "location_id": open_}), 201)


def test_an_exchange_names_the_inactive_store_it_was_refused_for(platform: Running) -> None:
    """An exchange at a closed store is a 409 `location_inactive` on `location_id`, as a sale
    there is; a new line sent from a closed store is a 400 naming that line's `location_id`
    (the exchange has no `fulfillments`). Nothing is returned by either."""
    with platform.new_merchant(f"Closed exchanges {uuid.uuid4().hex[:8]}") as http:
        _ok(_post(http, "/v1/products", {"sku": "CL-HAT", "name": "Hat",
            "price": {"amount": 1500, "currency": "USD"}}), 201)  # fmt: skip
        closing = _store(http, "Closing St", 41.90, {"CL-HAT": 5})
        open_ = _store(http, "Open St", 41.00, {"CL-HAT": 5})
        sale = {"location_id": open_, "lines": [{"sku": "CL-HAT", "quantity": 2}],
                "tender_type": "card", "card_token": "tok_visa"}  # fmt: skip
        order = _ok(_post(http, "/v1/checkouts", sale), 201)["order"]
        _ok(http.patch(f"/v1/locations/{closing}", json={"status": "inactive"}))

        swap = {"lines": [{"line_id": order["lines"][0]["id"], "quantity": 1, "restock": True}],
                "new_lines": [{"sku": "CL-HAT", "quantity": 1}], "reason": "wrong_size",
                "tenders": [{"tender_type": "card", "card_token": "tok_visa"}]}  # fmt: skip
        exchanges = f"/v1/orders/{order['id']}/exchanges"
        _closed(_post(http, exchanges, {**swap, "location_id": closing}), "location_id")
        sent = {**swap, "new_lines": [{"sku": "CL-HAT", "quantity": 1, "location_id": closing}]}
        refused = _post(http, exchanges, sent)
        assert refused.status_code == 400, refused.text
        assert [e["field"] for e in refused.json()["errors"]] == ["new_lines[0].location_id"]
        assert _ok(http.get(f"/v1/orders/{order['id']}/returns"))["data"] == []
        _ok(_post(http, exchanges, swap), 201)


def _conflicted(answer: httpx.Response, location: str) -> None:
    """A 409 `location_inactive` for a closed store no field of the request named (the
    register's own): it says which store, and names no field."""
    assert answer.status_code == 409, answer.text
    problem = answer.json()
    assert problem["code"] == "location_inactive", problem
    assert problem["location_id"] == location and not problem.get("errors"), problem


def test_an_inactive_location_pairs_and_renames_no_registers(platform: Running) -> None:
    """A register of a closed store gets no pairing code, is not paired with a code issued
    before the store closed (the code is not spent by the refusal), and is not renamed: each a
    409 `location_inactive` with the store's id. Reopened, the same code pairs it."""
    with platform.new_merchant(f"Closed tills {uuid.uuid4().hex[:8]}") as http:
        closing = _store(http, "Closing St", 41.90, {})
        till = _ok(_post(http, "/v1/registers", {"location_id": closing, "name": "Till 1"}), 201)
        path = f"/v1/registers/{till['id']}"
        code = _ok(_post(http, f"{path}/pairing-codes", {}), 201)["code"]
        _ok(http.patch(f"/v1/locations/{closing}", json={"status": "inactive"}))

        _conflicted(_post(http, f"{path}/pairing-codes", {}), closing)
        pair = platform.platform.gateway_url + "/v1/registers/pair"
        _conflicted(httpx.post(pair, json={"code": code}), closing)
        _conflicted(http.patch(path, json={"name": "Till 9"}), closing)
        register = _ok(http.get(path))
        assert (register["name"], register["status"], register["version"]) == (
            "Till 1", "unpaired", 1,
        )  # fmt: skip

        _ok(http.patch(f"/v1/locations/{closing}", json={"status": "active"}))
        assert _ok(httpx.post(pair, json={"code": code}), 201)["register"]["status"] == "paired"
        assert _ok(http.patch(path, json={"name": "Till 9"}))["name"] == "Till 9"


def test_a_register_of_an_inactive_location_signs_no_one_in(platform: Running) -> None:
    """A register paired before its store closed signs no member in there: a 409
    `location_inactive` with the store's id, naming no field, before the PIN is checked (no
    session starts, no wrong PIN counts); the member signed in before the close sells nothing
    there (the sale's own 409). Reopened, the same register signs them in again."""
    with platform.new_merchant(f"Closed sign-ins {uuid.uuid4().hex[:8]}") as http:
        _ok(_post(http, "/v1/products", {"sku": "CL-PEN", "name": "Pen",
            "price": {"amount": 300, "currency": "USD"}}), 201)  # fmt: skip
        closing = _store(http, "Closing St", 41.90, {"CL-PEN": 5})
        till = _ok(_post(http, "/v1/registers", {"location_id": closing, "name": "Till 1"}), 201)
        code = _ok(_post(http, f"/v1/registers/{till['id']}/pairing-codes", {}), 201)["code"]
        pair = platform.platform.gateway_url + "/v1/registers/pair"
        credential = _ok(httpx.post(pair, json={"code": code}), 201)["credential"]
        device = httpx.Client(base_url=platform.platform.gateway_url, timeout=15.0,
                              headers={"Authorization": f"Bearer {credential}"})  # fmt: skip
        member = {"name": "Drew", "role": "cashier", "location_ids": [closing], "pin": "2580"}
        cashier = _ok(_post(http, "/v1/staff", member), 201)["id"]
        _ok(_post(device, "/v1/register-sessions", {"staff_id": cashier, "pin": "2580"}), 201)
        _ok(http.patch(f"/v1/locations/{closing}", json={"status": "inactive"}))

        _conflicted(_post(device, "/v1/register-sessions", {"staff_id": cashier, "pin": "2580"}),
                    closing)  # fmt: skip
        _conflicted(_post(device, "/v1/register-sessions", {"staff_id": cashier, "pin": "1111"}),
                    closing)  # fmt: skip
        sale = {"location_id": closing, "lines": [{"sku": "CL-PEN", "quantity": 1}],
                "tender_type": "card", "card_token": "tok_visa"}  # fmt: skip
        _closed(_post(device, "/v1/checkouts", sale), "location_id")
        assert _ok(http.get(f"/v1/staff/{cashier}"))["locked_until"] is None
        actions = [e["action"] for e in _ok(http.get("/v1/audit-log",
                   params={"staff_id": cashier, "limit": 200}))["data"]]  # fmt: skip
        assert actions.count("staff.signed_in") == 1 and "staff.pin_failed" not in actions

        _ok(http.patch(f"/v1/locations/{closing}", json={"status": "active"}))
        _ok(_post(device, "/v1/register-sessions", {"staff_id": cashier, "pin": "2580"}), 201)
        _ok(_post(device, "/v1/checkouts", sale), 201)


def test_a_register_of_an_inactive_location_grants_no_override(platform: Running) -> None:
    """A register of a store closed while a member was signed in there grants no manager's
    override: a 409 `location_inactive` with the store's id, naming no field, before the
    manager's PIN is checked (no override granted or audited, no wrong PIN counted), as it
    signs no one in there. Reopened, the same override is granted."""
    with platform.new_merchant(f"Closed overrides {uuid.uuid4().hex[:8]}") as http:
        closing = _store(http, "Closing St", 41.90, {})
        till = _ok(_post(http, "/v1/registers", {"location_id": closing, "name": "Till 1"}), 201)
        code = _ok(_post(http, f"/v1/registers/{till['id']}/pairing-codes", {}), 201)["code"]
        pair = platform.platform.gateway_url + "/v1/registers/pair"
        credential = _ok(httpx.post(pair, json={"code": code}), 201)["credential"]
        device = httpx.Client(base_url=platform.platform.gateway_url, timeout=15.0,
                              headers={"Authorization": f"Bearer {credential}"})  # fmt: skip
        cashier = _ok(_post(http, "/v1/staff", {"name": "Drew", "role": "cashier",
                      "location_ids": [closing], "pin": "2580"}), 201)["id"]  # fmt: skip
        manager = _ok(_post(http, "/v1/staff", {"name": "Max", "role": "manager",
                      "location_ids": [closing], "pin": "9753"}), 201)["id"]  # fmt: skip
        _ok(_post(device, "/v1/register-sessions", {"staff_id": cashier, "pin": "2580"}), 201)
        _ok(http.patch(f"/v1/locations/{closing}", json={"status": "inactive"}))

        override = {"manager_id": manager, "pin": "9753", "permission": "refund"}
        _conflicted(_post(device, "/v1/overrides", override), closing)
        _conflicted(_post(device, "/v1/overrides", {**override, "pin": "1111"}), closing)
        assert _ok(http.get(f"/v1/staff/{manager}"))["locked_until"] is None
        actions = [e["action"] for e in _ok(http.get("/v1/audit-log",
                   params={"register_id": till["id"], "limit": 200}))["data"]]  # fmt: skip
        assert "override.granted" not in actions and "staff.pin_failed" not in actions, actions

        _ok(http.patch(f"/v1/locations/{closing}", json={"status": "active"}))
        _ok(_post(device, "/v1/register-sessions", {"staff_id": cashier, "pin": "2580"}), 201)
        granted = _ok(_post(device, "/v1/overrides", override), 201)
        assert (granted["requested_by"], granted["approved_by"]) == (cashier, manager)


def test_an_inactive_location_gets_no_new_promotions(platform: Running) -> None:
    """An offer limited to a closed store could never apply: made or changed naming one, it
    is a 409 `location_inactive` naming `conditions.location_ids[i]`, and nothing is made or
    changed. One that named the store before it closed is still changed in its other fields."""
    with platform.new_merchant(f"Closed offers {uuid.uuid4().hex[:8]}") as http:
        closing = _store(http, "Closing St", 41.90, {})
        open_ = _store(http, "Open St", 41.00, {})
        offer = {"name": "Ten off", "percent_off_bps": 1000,
                 "conditions": {"location_ids": [open_, closing]}}  # fmt: skip
        made = _ok(_post(http, "/v1/promotions", offer), 201)
        _ok(http.patch(f"/v1/locations/{closing}", json={"status": "inactive"}))

        _closed(_post(http, "/v1/promotions", offer), "conditions.location_ids[1]")
        path = f"/v1/promotions/{made['id']}"
        _closed(http.patch(path, json={"conditions": {"location_ids": [closing]}}),
                "conditions.location_ids[0]")  # fmt: skip
        assert [p["id"] for p in _ok(http.get("/v1/promotions"))["data"]] == [made["id"]]
        kept = _ok(http.get(path))
        assert kept["version"] == 1
        assert sorted(kept["conditions"]["location_ids"]) == sorted([open_, closing])
        assert _ok(http.patch(path, json={"name": "Twelve off"}))["version"] == 2
        moved = _ok(http.patch(path, json={"conditions": {"location_ids": [open_]}}))
        assert moved["conditions"]["location_ids"] == [open_]


def test_a_return_to_an_inactive_selling_store_names_the_line_needing_another(
    platform: Running,
) -> None:
    """Units restocked with no store of their own go back to the order's: closed, the return
    is a 409 `location_inactive` naming each such line's `location_id` (the field that would
    choose another store), and nothing is returned. Units not restocked, or restocked at an
    open store, go back."""
    with platform.new_merchant(f"Closed sellers {uuid.uuid4().hex[:8]}") as http:
        _ok(_post(http, "/v1/products", {"sku": "CL-BOWL", "name": "Bowl",
            "price": {"amount": 800, "currency": "USD"}}), 201)  # fmt: skip
        closing = _store(http, "Closing St", 41.90, {"CL-BOWL": 5})
        open_ = _store(http, "Open St", 41.00, {"CL-BOWL": 5})
        sale = {"location_id": closing, "lines": [{"sku": "CL-BOWL", "quantity": 3}],
                "tender_type": "card", "card_token": "tok_visa"}  # fmt: skip
        order = _ok(_post(http, "/v1/checkouts", sale), 201)["order"]
        _ok(http.patch(f"/v1/locations/{closing}", json={"status": "inactive"}))

        line = order["lines"][0]["id"]
        back = {"lines": [{"line_id": line, "quantity": 1, "restock": True}],
                "reason": "wrong_size"}  # fmt: skip
        returns = f"/v1/orders/{order['id']}/returns"
        _closed(_post(http, returns, back), "lines[0].location_id")
        assert _ok(http.get(returns))["data"] == []
        levels = {"sku": "CL-BOWL", "location_id": closing}
        (level,) = _ok(http.get("/v1/inventory", params=levels))["data"]
        assert level["on_hand"] == 2

        damaged = {**back, "lines": [{"line_id": line, "quantity": 1, "restock": False}]}
        _ok(_post(http, returns, damaged), 201)
        elsewhere = {**back, "lines": [{**back["lines"][0], "location_id": open_}]}
        _ok(_post(http, returns, elsewhere), 201)
        levels = {"sku": "CL-BOWL", "location_id": open_}
        (level,) = _ok(http.get("/v1/inventory", params=levels))["data"]
        assert level["on_hand"] == 6
