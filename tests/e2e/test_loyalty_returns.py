"""Returns take back the points the returned goods earned, through the gateway over HTTP, every
service a separate process: with SKU X excluded from the program, a register sale of X (90.00)
and Y (10.00) earns 10 points (Y's); returning X takes none of them back, returning Y takes all
10, and returning Y's units one at a time takes its share each time, never more in all."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from pos_devstack.http_checks import eventually, ok, post
from pos_devstack.testing import Running

pytestmark = pytest.mark.e2e

USD = "USD"


class Shop:
    """A merchant of its own (no promotion: the demo's takes 10% off), a store taxing 8.25%,
    SKU X (90.00) excluded from its program and SKU Y (10.00), both stocked there."""

    def __init__(self, http: httpx.Client) -> None:
        self.http = http
        store = {"name": "Store", "currency": USD, "tax_rate_bps": 825}
        self.store = str(ok(post(http, "/v1/locations", store), 201)["id"])
        tag = uuid.uuid4().hex[:6].upper()
        self.x, self.y = f"X-{tag}", f"Y-{tag}"
        for sku, price in ((self.x, 9000), (self.y, 1000)):
            body = {"sku": sku, "name": sku, "price": {"amount": price, "currency": USD}}
            ok(post(http, "/v1/products", body), 201)
            stock = {"sku": sku, "location_id": self.store, "delta": 50, "reason": "received"}
            ok(post(http, "/v1/inventory/adjustments", stock), 201)
        program = {"enabled": True, "points_per_unit": 1, "point_value_minor": 10,
                   "excluded_skus": [self.x]}  # fmt: skip
        answer = http.put("/v1/loyalty-program", json=program,
                          headers={"Idempotency-Key": str(uuid.uuid4())})  # fmt: skip
        assert answer.status_code == 200, answer.text

    def customer(self) -> str:
        made = post(self.http, "/v1/customers", {"email": f"{uuid.uuid4().hex[:10]}@example.com"})
        return str(ok(made, 201)["id"])

    def sale(self, customer: str, y_units: int = 1) -> dict[str, Any]:
        """A register checkout of one X (L1) and `y_units` Y (L2), by card; once it earned."""
        lines = [{"sku": self.x, "quantity": 1}, {"sku": self.y, "quantity": y_units}]
        body = {"location_id": self.store, "customer_id": customer, "tender_type": "card",
                "card_token": "tok_visa", "lines": lines}  # fmt: skip
        order: dict[str, Any] = ok(post(self.http, "/v1/checkouts", body), 201)["order"]
        eventually(lambda: self.entries(customer, order["id"]))
        return order

    def give_back(self, customer: str, order: dict[str, Any], line_id: str, units: int) -> None:
        """A return of the line's units, once the customer service has heard of it (the
        purchase history shows what its returns refunded so far)."""
        body = {"lines": [{"line_id": line_id, "quantity": units}], "reason": "unwanted"}
        returned = ok(post(self.http, f"/v1/orders/{order['id']}/returns", body), 201)
        assert returned["status"] == "completed", returned
        self.heard(customer, order)

    def heard(self, customer: str, order: dict[str, Any]) -> None:
        """Once the customer service has heard of every return of the order: the purchase
        history shows what they took back (refunded, or credited to an exchange)."""
        taken = self.refunded(order)

        def shown() -> bool:
            listed = self.http.get(f"/v1/customers/{customer}/orders").json()["data"]
            (mine,) = [p for p in listed if p["order_id"] == order["id"]]
            return bool(mine["returned"]["amount"] >= taken)

        eventually(shown)

    def refunded(self, order: dict[str, Any]) -> int:
        found = self.http.get(f"/v1/orders/{order['id']}/returns").json()["data"]
        return sum(int(r["amount"]["amount"]) for r in found)

    def entries(self, customer: str, order_id: str) -> list[tuple[str, int]]:
        """The order's ledger entries, oldest first."""
        history = self.http.get(f"/v1/customers/{customer}/points").json()["data"]
        return [(e["kind"], e["points"]) for e in reversed(history) if e["order_id"] == order_id]

    def balance(self, customer: str) -> int:
        return int(self.http.get(f"/v1/customers/{customer}").json()["loyalty_points"])


@pytest.fixture(scope="module")
def shop(platform: Running) -> Iterator[Shop]:
    with platform.new_merchant(f"Loyalty returns {uuid.uuid4().hex[:8]}") as http:
        yield Shop(http)


def test_returning_the_excluded_line_takes_back_nothing(shop: Shop) -> None:
    customer = shop.customer()
    order = shop.sale(customer)
    assert shop.entries(customer, order["id"]) == [("earned", 10)]
    shop.give_back(customer, order, "L1", 1)  # X: 90.00 refunded, no points earned
    assert shop.entries(customer, order["id"]) == [("earned", 10)]
    assert shop.balance(customer) == 10
    shop.give_back(customer, order, "L2", 1)  # then Y: the 10 it earned
    assert shop.entries(customer, order["id"]) == [("earned", 10), ("reversed", -10)]
    assert shop.balance(customer) == 0


def test_returning_the_line_that_earned_takes_back_all_of_it(shop: Shop) -> None:
    customer = shop.customer()
    order = shop.sale(customer)
    shop.give_back(customer, order, "L2", 1)  # Y alone: 10.00 of 100.00, all the points
    assert shop.entries(customer, order["id"]) == [("earned", 10), ("reversed", -10)]
    assert shop.balance(customer) == 0


def test_partial_returns_take_their_units_share_and_never_more(shop: Shop) -> None:
    customer = shop.customer()
    order = shop.sale(customer, y_units=3)  # 30.00 of Y earns 30
    assert shop.entries(customer, order["id"]) == [("earned", 30)]
    shop.give_back(customer, order, "L2", 1)
    assert shop.balance(customer) == 20
    shop.give_back(customer, order, "L1", 1)  # X: nothing
    assert shop.balance(customer) == 20
    shop.give_back(customer, order, "L2", 2)
    assert shop.entries(customer, order["id"]) == [
        ("earned", 30),
        ("reversed", -10),
        ("reversed", -20),
    ]
    assert shop.balance(customer) == 0


def test_an_exchange_of_the_excluded_line_keeps_the_points_and_the_new_order_earns(
    shop: Shop,
) -> None:
    """X exchanged for a Y: X earned nothing, so the sale keeps its 10 points; the new order
    earns on the Y it sold."""
    customer = shop.customer()
    order = shop.sale(customer)
    exchange = {"lines": [{"line_id": "L1", "quantity": 1}],
                "new_lines": [{"sku": shop.y, "quantity": 1}], "reason": "wrong_size"}  # fmt: skip
    made = ok(post(shop.http, f"/v1/orders/{order['id']}/exchanges", exchange), 201)
    new = made["order"]
    assert new["exchange_of"] == order["id"] and new["customer_id"] == customer
    eventually(lambda: shop.entries(customer, new["id"]))
    shop.heard(customer, order)
    assert shop.entries(customer, order["id"]) == [("earned", 10)]
    assert shop.entries(customer, new["id"]) == [("earned", 10)]
    assert shop.balance(customer) == 20
