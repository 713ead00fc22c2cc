"""One fulfilment of an order cancelled through the gateway, every service a separate process:
a split shipment keeps shipping its other store (which captures only its own share, the rest
of the authorisation voided), an endless-aisle pickup is given back while the in-store goods
stay sold, stock comes back once however often the request is retried, and goods that left the
store, in-store goods or a step racing the cancel are 409s. Each test has a merchant of its own
(`platform.new_merchant`): the sandbox merchant's stores are shared with other tests."""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from functools import partial
from typing import Any

import httpx
import pytest

from pos_devstack.http_checks import available, eventually, ok, post, stocked
from pos_devstack.platform import seed_demo_data
from pos_devstack.testing import Running

pytestmark = pytest.mark.e2e

SHIP = {"status": "shipped", "carrier": "UPS", "tracking_number": "1Z999AA10123456784"}
PICKED = {"status": "picked"}


@contextmanager
def _shop(platform: Running, name: str) -> Iterator[httpx.Client]:
    with platform.new_merchant(name) as http:
        seed_demo_data(platform.platform.gateway_url, http.headers["Authorization"][7:])
        yield http


def _paid(http: httpx.Client, body: dict[str, Any]) -> tuple[dict[str, Any], str]:
    """An order made, paid by card and confirmed; and its payment's id."""
    order = ok(post(http, "/v1/orders", body), 201)
    paid = ok(post(http, f"/v1/orders/{order['id']}/tenders",
                     {"tender_type": "card", "card_token": "tok_visa"}), 201)  # fmt: skip
    confirmed = ok(post(http, f"/v1/orders/{order['id']}/confirm", {}))
    assert confirmed["status"] == "confirmed"
    return confirmed, str(paid["payment"]["id"])


def _cancel(http: httpx.Client, order_id: str, fid: str, key: str | None = None) -> Any:
    return post(http, f"/v1/orders/{order_id}/fulfillments/{fid}/cancel", {}, key)


def _kept(payment: dict[str, Any]) -> int:
    """What the customer pays in the end: captured less refunded."""
    return int(payment["captured"]["amount"]) - int(payment["refunded"]["amount"])


def _split(sku: str, first: str, second: str) -> dict[str, Any]:
    return {
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


def test_a_split_shipment_cancels_one_store_and_the_other_ships_and_captures_its_share(
    platform: Running,
) -> None:
    with _shop(platform, "Split cancel shop") as http:
        sku, (first, second) = stocked(http, "FC")
        order, payment_id = _paid(http, _split(sku, first, second))
        oid = order["id"]
        (one, two) = order["fulfillments"]
        shares = [one["amount"]["amount"], two["amount"]["amount"]]
        assert available(http, sku, second) == 7

        key = str(uuid.uuid4())
        cancelled = ok(_cancel(http, oid, two["id"], key))
        assert cancelled["status"] == "confirmed"
        assert [f["status"] for f in cancelled["fulfillments"]] == ["reserved", "cancelled"]
        assert cancelled["cancelled_total"]["amount"] == shares[1]
        assert f"{two['id']}:cancelled" in [c["status"] for c in cancelled["timeline"]]
        assert available(http, sku, second) == 10
        # Retried, with its key and with another: the same order, the units back only once.
        assert ok(_cancel(http, oid, two["id"], key))["version"] == cancelled["version"]
        assert ok(_cancel(http, oid, two["id"]))["version"] == cancelled["version"]
        assert available(http, sku, second) == 10 and available(http, sku, first) == 9
        # Nothing was captured for it: the authorisation stays, the other store captures from it.
        payment = ok(http.get(f"/v1/payments/{payment_id}"))
        assert payment["status"] == "authorized" and payment["captured"]["amount"] == 0

        step = post(http, f"/v1/orders/{oid}/fulfillments/{two['id']}/steps", SHIP)
        assert step.status_code == 409 and step.json()["code"] == "fulfillment_cancelled"

        ok(post(http, f"/v1/orders/{oid}/fulfillments/{one['id']}/steps", PICKED))
        shipped = ok(post(http, f"/v1/orders/{oid}/fulfillments/{one['id']}/steps", SHIP))
        assert shipped["fulfillments"][0]["captured"]["amount"] == shares[0]
        payment = ok(http.get(f"/v1/payments/{payment_id}"))
        # Its own share captured, the cancelled store's share released: never captured.
        assert payment["captured"]["amount"] == shares[0]
        assert payment["voided"]["amount"] == shares[1]
        assert _kept(payment) == order["total"]["amount"] - shipped["cancelled_total"]["amount"]
        again = ok(http.get(f"/v1/orders/{oid}"))
        assert again["paid"]["amount"] == shares[0]
        # The cancelled share is sold to no one: nothing is due of it.
        summary = ok(http.get(f"/v1/orders/{oid}/payments"))
        assert summary["balance_due"]["amount"] == 0, summary

        late = _cancel(http, oid, one["id"])
        assert late.status_code == 409 and late.json()["code"] == "fulfillment_left_store"
        done = ok(post(http, f"/v1/orders/{oid}/fulfillments/{one['id']}/steps",
                         {"status": "delivered"}))  # fmt: skip
        assert done["status"] == "completed"

        def feed() -> list[dict[str, Any]]:
            events = http.get("/v1/events", params={"types": "order.*", "limit": 200}).json()
            return [e for e in events["data"] if e["data"]["object"]["id"] == oid]

        def cancel_event() -> list[dict[str, Any]]:
            return [
                e
                for e in feed()
                if e["type"] == "order.fulfillment_updated"
                and e["data"]["object"]["fulfillments"][1]["status"] == "cancelled"
                and e["data"]["object"]["fulfillments"][0]["status"] == "reserved"
            ]

        assert len(eventually(cancel_event)) == 1


def test_an_endless_aisle_pickup_is_cancelled_and_the_in_store_goods_stay_sold(
    platform: Running,
) -> None:
    with _shop(platform, "Endless aisle cancel shop") as http:
        sku, (here, there) = stocked(http, "FC")
        customer = ok(post(http, "/v1/customers", {"given_name": "Aisle"}), 201)["id"]
        body = {
            "channel": "register",
            "location_id": here,
            "customer_id": customer,
            "lines": [
                {"sku": sku, "quantity": 1, "fulfillment": 0},
                {"sku": sku, "quantity": 2, "fulfillment": 1},
            ],
            "fulfillments": [
                {"type": "in_store", "location_id": here},
                {"type": "pickup", "location_id": there},
            ],
        }
        order, payment_id = _paid(http, body)
        oid = order["id"]
        in_store, pickup = order["fulfillments"]
        assert in_store["status"] == "fulfilled"
        # The sandbox's authorisation is shorter than a pickup's wait: captured at confirmation.
        assert pickup["captured"] == pickup["amount"]
        eventually(lambda: available(http, sku, here) == 9)

        refused = _cancel(http, oid, in_store["id"])
        assert refused.status_code == 409 and refused.json()["code"] == "fulfillment_in_store"

        key = str(uuid.uuid4())
        cancelled = ok(_cancel(http, oid, pickup["id"], key))
        # The in-store goods were handed over: the order is done, not cancelled.
        assert cancelled["status"] == "completed"
        assert [f["status"] for f in cancelled["fulfillments"]] == ["fulfilled", "cancelled"]
        assert cancelled["cancelled_total"] == pickup["amount"]
        assert cancelled["paid"] == in_store["amount"]
        # Its capture went back, and the fulfilment says so beside what it captured.
        assert cancelled["fulfillments"][1]["refunded"] == pickup["captured"]
        ok(_cancel(http, oid, pickup["id"], key))
        assert available(http, sku, there) == 10 and available(http, sku, here) == 9
        # The goods never left the store: the ledger corrects the sale, naming the order.
        ledger = ok(http.get("/v1/inventory/history", params={"sku": sku, "location_id": there}))
        back = [(e["reason"], e["delta"], e["reference"]) for e in ledger["data"] if e["delta"] > 0]
        assert ("correction", 2, oid) in back

        payment = ok(http.get(f"/v1/payments/{payment_id}"))
        assert payment["refunded"]["amount"] == pickup["amount"]["amount"]
        assert _kept(payment) == in_store["amount"]["amount"]

        # The pickup's goods never reached the customer: their share of the points goes back.
        def points() -> list[dict[str, Any]]:
            entries = ok(http.get(f"/v1/customers/{customer}/points"))["data"]
            mine = [e for e in entries if e["order_id"] == oid]
            return mine if any(e["kind"] == "reversed" for e in mine) else []

        reversed_, earned = eventually(points)
        assert earned["kind"] == "earned" and earned["points"] > 0
        # The points its units earned: two of the three units, at one price (the share of the
        # value the sale earned on, before tax).
        share = earned["points"] * 2 // 3
        assert (reversed_["points"], reversed_["fulfillment_id"]) == (-share, pickup["id"])
        assert reversed_["return_id"] == "" and share > 0


def test_the_last_fulfilment_cancelled_cancels_an_order_nothing_of_which_was_handed_over(
    platform: Running,
) -> None:
    with _shop(platform, "Last fulfilment shop") as http:
        sku, (store, _) = stocked(http, "FC")
        body = {"channel": "web", "location_id": store, "lines": [{"sku": sku, "quantity": 2}],
                "fulfillments": [{"type": "shipment", "location_id": store,
                                  "ship_to": "3 Oak St"}]}  # fmt: skip
        pending = ok(post(http, "/v1/orders", body), 201)
        early = _cancel(http, pending["id"], pending["fulfillments"][0]["id"])
        assert early.status_code == 409 and early.json()["code"] == "order_not_confirmed"

        order, payment_id = _paid(http, _split(sku, store, store) | {
            "lines": [{"sku": sku, "quantity": 1, "fulfillment": 0},
                      {"sku": sku, "quantity": 2, "fulfillment": 1}]})  # fmt: skip
        first, second = order["fulfillments"]
        picked = ok(post(http, f"/v1/orders/{order['id']}/fulfillments/{first['id']}/steps",
                           {"status": "picked"}))  # fmt: skip
        assert picked["fulfillments"][0]["status"] == "picked"
        assert ok(_cancel(http, order["id"], first["id"]))["status"] == "confirmed"
        last = ok(_cancel(http, order["id"], second["id"]))
        assert last["status"] == "cancelled" and last["cancel_reason"] == "requested"
        assert last["cancelled_total"] == last["total"]
        payment = ok(http.get(f"/v1/payments/{payment_id}"))
        assert payment["status"] == "voided" and _kept(payment) == 0
        # The pending order's two units are still held; the cancelled order's are back.
        assert available(http, sku, store) == 8


def test_a_cancel_racing_the_shipment_of_the_same_fulfilment_is_one_or_the_other(
    platform: Running,
) -> None:
    with _shop(platform, "Race shop") as http:
        sku, (first, second) = stocked(http, "FC", units=40)
        for _ in range(4):
            order, payment_id = _paid(http, _split(sku, first, second))
            oid, (one, two) = order["id"], order["fulfillments"]
            share = two["amount"]["amount"]
            step, fid = f"/v1/orders/{oid}/fulfillments/{two['id']}/steps", two["id"]
            ok(post(http, step, PICKED))  # the step before `shipped`: it captures nothing
            calls: list[Callable[[], httpx.Response]] = [
                partial(post, http, step, SHIP),
                partial(_cancel, http, oid, fid),
            ]
            with ThreadPoolExecutor(2) as pool:
                shipped, cancelled = [f.result() for f in [pool.submit(c) for c in calls]]
            statuses = sorted([shipped.status_code, cancelled.status_code])
            assert statuses == [200, 409], (shipped.text, cancelled.text)
            now = ok(http.get(f"/v1/orders/{oid}"))["fulfillments"][1]
            payment = ok(http.get(f"/v1/payments/{payment_id}"))
            if shipped.status_code == 200:
                assert cancelled.json()["code"] in (
                    "fulfillment_in_progress",
                    "fulfillment_left_store",
                )
                assert now["status"] == "shipped" and _kept(payment) == share
            else:
                assert shipped.json()["code"] == "fulfillment_cancelled"
                assert now["status"] == "cancelled" and _kept(payment) == 0
            # The other store ships as usual either way.
            for body in (PICKED, SHIP):
                ok(post(http, f"/v1/orders/{oid}/fulfillments/{one['id']}/steps", body))
            payment = ok(http.get(f"/v1/payments/{payment_id}"))
            final = ok(http.get(f"/v1/orders/{oid}"))
            assert _kept(payment) == final["total"]["amount"] - final["cancelled_total"]["amount"]
