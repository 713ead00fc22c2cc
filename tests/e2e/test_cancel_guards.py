"""Cancels held to the rules refunds keep, through the gateway over HTTP: at a register, a
member without the `refund` permission takes no captured money back out of the drawer by
cancelling one fulfilment or the whole order (a 403, nothing changed) unless a manager's
override waits; a cancel that gives nothing back needs none and leaves the override waiting;
every cancel made at a register is in the audit log with who made it and what went back."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from pos_devstack.http_checks import eventually, ok, post
from pos_devstack.platform import seed_demo_data
from pos_devstack.testing import Running

pytestmark = pytest.mark.e2e

USD = "USD"


@pytest.fixture(scope="module")
def shop(platform: Running) -> Iterator[httpx.Client]:
    """A merchant of its own, with the demo's stores, and a product stocked in its first."""
    with platform.new_merchant("Cancel Guards") as http:
        seed_demo_data(platform.platform.gateway_url, http.headers["Authorization"][7:])
        yield http


class Till:
    """A register of the shop with a shift open, a cashier signed in and a manager at hand."""

    def __init__(self, platform: Running, http: httpx.Client, pins: tuple[str, str]) -> None:
        self.http = http
        self.store = str(http.get("/v1/locations").json()["data"][0]["id"])
        self.sku = f"CG-{uuid.uuid4().hex[:8].upper()}"
        ok(post(http, "/v1/products", {"sku": self.sku, "name": "Cancel guard probe",
            "price": {"amount": 1000, "currency": USD}}), 201)  # fmt: skip
        adjustment = {"sku": self.sku, "location_id": self.store, "delta": 20, "reason": "received"}
        ok(post(http, "/v1/inventory/adjustments", adjustment), 201)
        self.cashier = self._member("Cass", "cashier", pins[0])
        self.manager = self._member("Mona", "manager", pins[1])
        self.manager_pin = pins[1]
        register = ok(post(http, "/v1/registers", {"location_id": self.store, "name": "Till"}), 201)
        self.register = str(register["id"])
        code = ok(post(http, f"/v1/registers/{self.register}/pairing-codes", {}), 201)["code"]
        url = platform.platform.gateway_url
        paired = ok(httpx.post(url + "/v1/registers/pair", json={"code": code}), 201)
        self.device = httpx.Client(
            base_url=url, headers={"Authorization": f"Bearer {paired['credential']}"}, timeout=15.0
        )
        signed = {"staff_id": self.cashier, "pin": pins[0]}
        assert post(self.device, "/v1/register-sessions", signed).is_success
        float_ = {"opening_float": {"amount": 10_000, "currency": USD}}
        self.shift = str(ok(post(self.device, "/v1/shifts", float_), 201)["id"])

    def _member(self, name: str, role: str, pin: str) -> str:
        body = {"name": name, "role": role, "location_ids": [self.store], "pin": pin}
        return str(ok(post(self.http, "/v1/staff", body), 201)["id"])

    def cash_order(self, fulfillments: list[str]) -> tuple[dict[str, Any], str]:
        """An order rung up here with a line per fulfilment (`in_store`, `pickup`), paid in cash
        and confirmed; and its payment's id."""
        body = {
            "channel": "register",
            "location_id": self.store,
            "lines": [{"sku": self.sku, "quantity": 1, "fulfillment": i}
                      for i in range(len(fulfillments))],
            "fulfillments": [{"type": t, "location_id": self.store} for t in fulfillments],
        }  # fmt: skip
        order = ok(post(self.device, "/v1/orders", body), 201)
        tender = {"tender_type": "cash", "cash_tendered": {"amount": 50_000, "currency": USD}}
        paid = ok(post(self.device, f"/v1/orders/{order['id']}/tenders", tender), 201)
        confirmed = ok(post(self.device, f"/v1/orders/{order['id']}/confirm", {}))
        # In-store goods alone are handed over at once: such an order is completed.
        assert confirmed["status"] in ("confirmed", "completed")
        return confirmed, str(paid["payment"]["id"])

    def override(self) -> str:
        grant = {"manager_id": self.manager, "pin": self.manager_pin, "permission": "refund"}
        return str(ok(post(self.device, "/v1/overrides", grant), 201)["id"])

    def cash_refunds(self) -> int:
        report = ok(self.http.get(f"/v1/shifts/{self.shift}"))["report"]
        return int(report["cash_refunds"]["amount"])

    def refunded(self, payment_id: str) -> int:
        return int(ok(self.http.get(f"/v1/payments/{payment_id}"))["refunded"]["amount"])

    def audit(self, action: str) -> list[dict[str, Any]]:
        params = {"action": action, "register_id": self.register, "limit": 200}
        entries: list[dict[str, Any]] = ok(self.http.get("/v1/audit-log", params=params))["data"]
        return entries


def _refused(answer: httpx.Response) -> None:
    assert (answer.status_code, answer.json()["code"]) == (403, "permission_required"), answer.text
    assert answer.json()["permission"] == "refund"


def test_a_cashier_takes_no_cash_back_by_cancelling_a_captured_pickup_without_the_permission(
    platform: Running, shop: httpx.Client
) -> None:
    till = Till(platform, shop, ("1357", "9753"))
    order, payment_id = till.cash_order(["in_store", "pickup"])
    oid = order["id"]
    pickup = order["fulfillments"][1]
    share = pickup["amount"]["amount"]
    # Cash is taken at once: the pickup's share was captured with the sale.
    assert pickup["captured"]["amount"] == share > 0
    cancel = f"/v1/orders/{oid}/fulfillments/{pickup['id']}/cancel"

    _refused(post(till.device, cancel, {}))
    # Nothing changed: the pickup waits, no cash went back, the drawer owes nothing.
    kept = ok(shop.get(f"/v1/orders/{oid}"))
    assert [f["status"] for f in kept["fulfillments"]] == ["fulfilled", "reserved"]
    assert till.refunded(payment_id) == 0 and till.cash_refunds() == 0
    assert till.audit("fulfillment.cancelled") == []

    override = till.override()
    cancelled = ok(post(till.device, cancel, {}))
    assert [f["status"] for f in cancelled["fulfillments"]] == ["fulfilled", "cancelled"]
    assert till.refunded(payment_id) == share
    (entry,) = till.audit("fulfillment.cancelled")
    assert (entry["staff_id"], entry["approved_by"]) == (till.cashier, till.manager)
    assert (entry["resource_type"], entry["resource_id"]) == ("order", oid)
    details = entry["details"]
    assert (details["fulfillment_id"], details["override_id"]) == (pickup["id"], override)
    assert details["refunds"] == [{"payment_id": payment_id, "amount": share, "currency": USD}]
    assert details["refunded"] == share
    # The drawer counts the one refund the manager approved, and only it.
    eventually(lambda: till.cash_refunds() == share)


def test_a_cashier_takes_no_cash_back_by_cancelling_a_paid_order_without_the_permission(
    platform: Running, shop: httpx.Client
) -> None:
    till = Till(platform, shop, ("2468", "8642"))
    order, payment_id = till.cash_order(["pickup"])
    oid = order["id"]
    total = order["total"]["amount"]
    assert order["fulfillments"][0]["captured"]["amount"] == total > 0

    _refused(post(till.device, f"/v1/orders/{oid}/cancel", {}))
    # One fulfilment alone is refused just the same: it is the order's last.
    fid = order["fulfillments"][0]["id"]
    _refused(post(till.device, f"/v1/orders/{oid}/fulfillments/{fid}/cancel", {}))
    kept = ok(shop.get(f"/v1/orders/{oid}"))
    assert kept["status"] == "confirmed" and kept["fulfillments"][0]["status"] == "reserved"
    assert till.refunded(payment_id) == 0 and till.cash_refunds() == 0
    assert till.audit("order.cancelled") == []

    override = till.override()
    cancelled = ok(post(till.device, f"/v1/orders/{oid}/cancel", {}))
    assert cancelled["status"] == "cancelled"
    assert till.refunded(payment_id) == total
    (entry,) = till.audit("order.cancelled")
    assert (entry["staff_id"], entry["approved_by"]) == (till.cashier, till.manager)
    assert (entry["resource_type"], entry["resource_id"]) == ("order", oid)
    assert entry["details"]["override_id"] == override
    assert entry["details"]["refunds"] == [
        {"payment_id": payment_id, "amount": total, "currency": USD}
    ]
    eventually(lambda: till.cash_refunds() == total)


def test_a_cancel_giving_nothing_back_needs_no_permission_and_leaves_the_override_waiting(
    platform: Running, shop: httpx.Client
) -> None:
    till = Till(platform, shop, ("1122", "2211"))
    body = {"channel": "register", "location_id": till.store,
            "lines": [{"sku": till.sku, "quantity": 1}],
            "fulfillments": [{"type": "pickup", "location_id": till.store}]}  # fmt: skip
    pending = ok(post(till.device, "/v1/orders", body), 201)
    assert pending["status"] == "pending_payment"
    override = till.override()

    # Nothing was taken for it: cancelling only releases its hold.
    cancelled = ok(post(till.device, f"/v1/orders/{pending['id']}/cancel", {}))
    assert cancelled["status"] == "cancelled"
    (entry,) = till.audit("order.cancelled")
    assert (entry["staff_id"], entry["approved_by"]) == (till.cashier, None)
    assert (entry["resource_type"], entry["resource_id"]) == ("order", pending["id"])
    assert "override_id" not in entry["details"]
    assert (entry["details"]["refunds"], entry["details"]["refunded"]) == ([], 0)

    # The override still waits for the refund the manager gave it for.
    _, payment_id = till.cash_order(["in_store"])
    refund = {"amount": {"amount": 100, "currency": USD}, "reason": "goodwill"}
    ok(post(till.device, f"/v1/payments/{payment_id}/refunds", refund), 201)
    (refunded,) = till.audit("refund")
    assert (refunded["approved_by"], refunded["details"]["override_id"]) == (
        till.manager,
        override,
    )


def test_a_cancel_giving_cash_back_is_made_at_a_register_with_an_open_shift_only(
    platform: Running, shop: httpx.Client
) -> None:
    """Two pickups rung up and paid in cash at a till: cancelling the order, or one pickup,
    gives cash back out of a drawer. From the back office it is a 409
    `cash_refund_needs_open_shift` naming `order_id` or `fulfillment_id`, and nothing is done
    (before, the cash went back and counted in no shift). At the till, its shift open, the
    pickup's cancel is made and the shift's drawer expects its cash gone."""
    till = Till(platform, shop, ("3579", "9375"))
    order, payment_id = till.cash_order(["pickup", "pickup"])
    oid, (first, _) = order["id"], order["fulfillments"]
    share = first["captured"]["amount"]
    assert share > 0

    for path, field in ((f"/v1/orders/{oid}/cancel", "order_id"),
                        (f"/v1/orders/{oid}/fulfillments/{first['id']}/cancel",
                         "fulfillment_id")):  # fmt: skip
        answer = post(shop, path, {})
        assert answer.status_code == 409, answer.text
        problem = answer.json()
        assert problem["code"] == "cash_refund_needs_open_shift"
        assert [e["field"] for e in problem["errors"]] == [field]
        assert payment_id in problem["errors"][0]["reason"]
    kept = ok(shop.get(f"/v1/orders/{oid}"))
    assert (kept["status"], kept["version"]) == ("confirmed", order["version"])
    assert till.refunded(payment_id) == 0 and till.cash_refunds() == 0

    till.override()  # the cashier gives money back with a manager's override
    cancelled = ok(post(till.device, f"/v1/orders/{oid}/fulfillments/{first['id']}/cancel", {}))
    assert [f["status"] for f in cancelled["fulfillments"]] == ["cancelled", "reserved"]
    assert till.refunded(payment_id) == share
    eventually(lambda: till.cash_refunds() == share)


def test_a_cancel_of_a_pickup_adjusted_in_full_needs_no_permission(
    platform: Running, shop: httpx.Client
) -> None:
    """Two cash orders at a till, an item in store and one to pick up each; with a manager's
    override, the pickup's item is given back in full on one (a price adjustment naming it),
    in part on the other. Cancelling the pickup adjusted in full gives nothing back: the
    cashier makes it without the `refund` permission, no cash leaves the drawer, and the audit
    entry names no approver (before, it was a 403 `permission_required`, judged by what was
    captured for the pickup). The one adjusted in part gives the rest back: still refused."""
    till = Till(platform, shop, ("4682", "2864"))

    def adjusted(half: bool) -> tuple[str, str, str, int]:
        """A cash order, its pickup's item given back in full (or half of it); the order, the
        pickup, the payment, and what was given back."""
        order, payment_id = till.cash_order(["in_store", "pickup"])
        pickup = order["fulfillments"][1]
        share = int(pickup["captured"]["amount"])
        assert share > 0
        back = share // 2 if half else share
        till.override()
        adjust = {
            "amount": {"amount": back, "currency": USD},
            "reason": "price_adjustment",
            "lines": [{"sku": till.sku, "quantity": 1}],
        }
        ok(post(till.device, f"/v1/payments/{payment_id}/refunds", adjust), 201)
        return order["id"], pickup["id"], payment_id, back

    oid, fid, payment_id, full = adjusted(half=False)
    cancelled = ok(post(till.device, f"/v1/orders/{oid}/fulfillments/{fid}/cancel", {}))
    assert [f["status"] for f in cancelled["fulfillments"]] == ["fulfilled", "cancelled"]
    assert till.refunded(payment_id) == full
    (entry,) = [e for e in till.audit("fulfillment.cancelled") if e["resource_id"] == oid]
    assert (entry["staff_id"], entry["approved_by"]) == (till.cashier, None)
    assert (entry["details"]["refunds"], entry["details"]["refunded"]) == ([], 0)

    oid, fid, payment_id, half = adjusted(half=True)
    _refused(post(till.device, f"/v1/orders/{oid}/fulfillments/{fid}/cancel", {}))
    kept = ok(shop.get(f"/v1/orders/{oid}"))
    assert [f["status"] for f in kept["fulfillments"]] == ["fulfilled", "reserved"]
    assert till.refunded(payment_id) == half
    assert [e for e in till.audit("fulfillment.cancelled") if e["resource_id"] == oid] == []
    # The two adjustments alone left the drawer, nothing of either cancel.
    eventually(lambda: till.cash_refunds() == full + half)
