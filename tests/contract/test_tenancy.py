"""Another merchant's resource is a 404, the same as one that does not exist, on every
operation of the served OpenAPI document that takes an id in its path; and another merchant's
id in a request body or a query filter answers exactly as a made-up id does, writing nothing.

The operations come from the live document, not from a list kept here: a route added later
with an id in its path fails this test until it has a factory below, so tenancy is checked on
it from its first day.
"""

from __future__ import annotations

import itertools
import re
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import httpx
import pytest

from pos_devstack.platform import seed_demo_data
from pos_devstack.testing import Running

pytestmark = pytest.mark.e2e

# The id for every placeholder of the path, or one id per placeholder in their order (a
# coupon is reached through its own promotion: both must be A's for A to reach it).
Ids = str | tuple[str, ...]
Factory = Callable[[httpx.Client], Ids]
METHODS = ("get", "put", "patch", "post", "delete")


# Letters only: a run of 13 to 19 digits in a made-up id can pass the card-number check,
# which answers 400 before the resource is looked up.
_LETTERS = str.maketrans("0123456789", "ghijklmnop")


def made_up_id() -> str:
    return "zz_" + uuid.uuid4().hex.translate(_LETTERS)


def _post(http: httpx.Client, path: str, body: dict[str, Any]) -> dict[str, Any]:
    answer = http.post(path, json=body, headers={"Idempotency-Key": str(uuid.uuid4())})
    assert answer.status_code in (200, 201), answer.text
    found: dict[str, Any] = answer.json()
    return found


def _unique() -> str:
    return uuid.uuid4().hex[:10].upper()


def _product(http: httpx.Client) -> str:
    body = {"sku": f"TEN-{_unique()}", "name": "Tenancy probe", "price": {"amount": 500,
            "currency": "USD"}}  # fmt: skip
    return str(_post(http, "/v1/products", body)["id"])


def _customer(http: httpx.Client) -> str:
    return str(_post(http, "/v1/customers", {"email": f"{_unique()}@tenancy.example"})["id"])


def _group(http: httpx.Client) -> str:
    return str(_post(http, "/v1/customer-groups", {"name": f"Tenancy {_unique()}"})["id"])


def _promotion(http: httpx.Client) -> str:
    return str(_post(http, "/v1/promotions", {"name": "Tenancy", "percent_off_bps": 500})["id"])


def _coupon_promotion(http: httpx.Client) -> str:
    body = {"name": "Tenancy coupons", "percent_off_bps": 500, "requires_coupon": True}
    return str(_post(http, "/v1/promotions", body)["id"])


def _coupon(http: httpx.Client) -> tuple[str, str]:
    promotion = _coupon_promotion(http)
    made = _post(http, f"/v1/promotions/{promotion}/coupons", {"generate": 1})
    return promotion, str(made["coupons"][0]["id"])


def _sale(http: httpx.Client, card: bool = False) -> dict[str, Any]:
    """A real paid order of merchant A: its own product, stock received, a cash checkout (or
    a card one: a return or refund giving cash back needs a register with an open shift)."""
    sku = f"TEN-{_unique()}"
    _post(http, "/v1/products", {"sku": sku, "name": "Sold", "price": {"amount": 700,
          "currency": "USD"}})  # fmt: skip
    location = http.get("/v1/locations").json()["data"][0]
    adjustment = {"sku": sku, "location_id": location["id"], "delta": 5, "reason": "received"}
    _post(http, "/v1/inventory/adjustments", adjustment)
    checkout = {
        "location_id": location["id"],
        "lines": [{"sku": sku, "quantity": 1}],
        "tender_type": "cash",
        "cash_tendered": {"amount": 100_000, "currency": location["currency"]},
    }
    if card:
        checkout.update(tender_type="card", card_token="tok_visa")
        del checkout["cash_tendered"]
    return _post(http, "/v1/checkouts", checkout)


def _sold_order(http: httpx.Client) -> str:
    return str(_sale(http)["order"]["id"])


def _return(http: httpx.Client) -> str:
    order = str(_sale(http, card=True)["order"]["id"])
    body = {"lines": [{"line_id": "L1", "quantity": 1}], "reason": "unwanted"}
    return str(_post(http, f"/v1/orders/{order}/returns", body)["id"])


def _pending_order(http: httpx.Client) -> str:
    """A web order of merchant A waiting for payment (nothing held: in store)."""
    sku = f"TEN-{_unique()}"
    _post(http, "/v1/products", {"sku": sku, "name": "Ordered", "price": {"amount": 700,
          "currency": "USD"}})  # fmt: skip
    location = http.get("/v1/locations").json()["data"][0]["id"]
    order = _post(http, "/v1/orders", {"location_id": location, "lines": [{"sku": sku,
                  "quantity": 1}]})  # fmt: skip
    return str(order["id"])


def _draft_order(http: httpx.Client) -> str:
    """A draft of merchant A (priced, nothing held)."""
    sku = f"TEN-{_unique()}"
    _post(http, "/v1/products", {"sku": sku, "name": "Drafted", "price": {"amount": 700,
          "currency": "USD"}})  # fmt: skip
    location = http.get("/v1/locations").json()["data"][0]["id"]
    order = _post(http, "/v1/orders", {"location_id": location, "status": "draft",
                  "lines": [{"sku": sku, "quantity": 1}]})  # fmt: skip
    return str(order["id"])


def _reservation(http: httpx.Client) -> str:
    sku = _unique()
    _post(
        http,
        "/v1/products",
        {"sku": sku, "name": "Held", "price": {"amount": 700, "currency": "USD"}},
    )
    location = http.get("/v1/locations").json()["data"][0]["id"]
    receipt = {"sku": sku, "location_id": location, "delta": 1, "reason": "received"}
    _post(http, "/v1/inventory/adjustments", receipt)
    hold = {"location_id": location, "lines": [{"sku": sku, "quantity": 1}]}
    return str(_post(http, "/v1/reservations", hold)["id"])


def _refund(http: httpx.Client) -> str:
    payment = _sale(http, card=True)["payment"]["id"]
    return str(_post(http, f"/v1/payments/{payment}/refunds", {"reason": "probe"})["data"][0]["id"])


def _terminal_checkout(http: httpx.Client) -> str:
    body = {
        "location_id": http.get("/v1/locations").json()["data"][0]["id"],
        "device_id": "sandbox_reader_timeout",  # stays pending: cancellable
        "amount": {"amount": 500, "currency": "USD"},
        "reference": "tenancy",
    }
    return str(_post(http, "/v1/terminal-checkouts", body)["id"])


def _api_key(http: httpx.Client) -> str:
    return str(_post(http, "/v1/api-keys", {"name": "tenancy", "scopes": ["catalog:read"]})["id"])


def _oauth_client(http: httpx.Client) -> str:
    body = {"name": "tenancy", "scopes": ["catalog:read"]}
    return str(_post(http, "/v1/oauth-clients", body)["id"])


def _event(http: httpx.Client) -> str:
    """A real event of merchant A: the product.created of a product it just made."""
    product = _product(http)
    deadline = time.monotonic() + 20
    after = 0
    while time.monotonic() < deadline:
        page = http.get("/v1/events", params={"after": after, "limit": 200}).json()
        for event in page["data"]:
            if event["data"]["object"].get("id") == product:
                return str(event["id"])
        after = page["next_after"]
        if not page["has_more"]:
            time.sleep(0.1)
    raise AssertionError("the product's event never reached the feed")


def _subscription(http: httpx.Client) -> str:
    body = {"url": "http://127.0.0.1:9/tenancy", "event_types": ["order.*"]}
    return str(_post(http, "/v1/webhook-subscriptions", body)["subscription"]["id"])


def _gift_card(http: httpx.Client) -> str:
    body = {"amount": {"amount": 2500, "currency": "USD"}}
    return str(_post(http, "/v1/gift-cards", body)["gift_card"]["id"])


def _register(http: httpx.Client) -> str:
    location = http.get("/v1/locations").json()["data"][0]["id"]
    return str(_post(http, "/v1/registers", {"location_id": location, "name": "probe"})["id"])


def _staff(http: httpx.Client) -> str:
    location = http.get("/v1/locations").json()["data"][0]["id"]
    body = {"name": "Probe", "role": "cashier", "location_ids": [location], "pin": "4821"}
    return str(_post(http, "/v1/staff", body)["id"])


def _role(http: httpx.Client) -> str:
    body = {"name": f"probe {uuid.uuid4().hex}", "permissions": []}
    return str(_post(http, "/v1/roles", body)["id"])


def _shift(http: httpx.Client) -> str:
    """A shift of merchant A: a paired register, a member signed in at it, a float."""
    location = http.get("/v1/locations").json()["data"][0]["id"]
    register = _register(http)
    code = _post(http, f"/v1/registers/{register}/pairing-codes", {})["code"]
    paired = http.post("/v1/registers/pair", json={"code": code})  # takes no credential
    assert paired.status_code == 201, paired.text
    member = {"name": "Probe", "role": "cashier", "location_ids": [location], "pin": "4821"}
    staff = _post(http, "/v1/staff", member)["id"]
    device = httpx.Client(
        base_url=http.base_url, headers={"Authorization": f"Bearer {paired.json()['credential']}"}
    )
    with device:
        _post(device, "/v1/register-sessions", {"staff_id": staff, "pin": "4821"})
        body = {"opening_float": {"amount": 1000, "currency": "USD"}}
        return str(_post(device, "/v1/shifts", body)["id"])


def _location(http: httpx.Client) -> str:
    return str(_post(http, "/v1/locations", {"name": "Probe", "currency": "USD"})["id"])


# Path template -> how merchant A makes a real resource whose id goes in the path.
FACTORIES: dict[str, Factory] = {
    "/v1/locations/{location_id}": _location,
    "/v1/products/{product_id}": _product,
    "/v1/products/{product_id}/archive": _product,
    "/v1/products/{product_id}/unarchive": _product,
    "/v1/reservations/{reservation_id}": _reservation,
    "/v1/reservations/{reservation_id}/commit": _reservation,
    "/v1/reservations/{reservation_id}/release": _reservation,
    "/v1/customers/{customer_id}": _customer,
    "/v1/customers/{customer_id}/merge": _customer,
    "/v1/customers/{customer_id}/export": _customer,
    "/v1/customers/{customer_id}/orders": _customer,
    "/v1/customers/{customer_id}/points": _customer,
    "/v1/customers/{customer_id}/points/adjustments": _customer,
    "/v1/customer-groups/{group_id}": _group,
    "/v1/customer-groups/{group_id}/members": _group,
    "/v1/customer-groups/{group_id}/members/remove": _group,
    "/v1/promotions/{promotion_id}": _promotion,
    "/v1/promotions/{promotion_id}/pause": _promotion,
    "/v1/promotions/{promotion_id}/resume": _promotion,
    "/v1/promotions/{promotion_id}/end": _promotion,
    "/v1/promotions/{promotion_id}/coupons": _coupon_promotion,
    "/v1/promotions/{promotion_id}/coupons/{coupon_id}": _coupon,
    "/v1/promotions/{promotion_id}/coupons/{coupon_id}/deactivate": _coupon,
    # A draft: the order a PATCH changes (and any order reads as one).
    "/v1/orders/{order_id}": _draft_order,
    "/v1/orders/{order_id}/submit": _draft_order,
    "/v1/orders/{order_id}/tenders": _pending_order,
    "/v1/orders/{order_id}/confirm": _pending_order,
    "/v1/orders/{order_id}/cancel": _pending_order,
    # Both ids are A's order's: B is refused on the order before the fulfilment.
    "/v1/orders/{order_id}/fulfillments/{fulfillment_id}/steps": _pending_order,
    "/v1/orders/{order_id}/fulfillments/{fulfillment_id}/cancel": _pending_order,
    "/v1/payments/{payment_id}": lambda http: str(_sale(http)["payment"]["id"]),
    "/v1/payments/{payment_id}/capture": lambda http: str(_sale(http)["payment"]["id"]),
    "/v1/payments/{payment_id}/void": lambda http: str(_sale(http)["payment"]["id"]),
    "/v1/payments/{payment_id}/refunds": lambda http: str(_sale(http)["payment"]["id"]),
    "/v1/orders/{order_id}/refunds": lambda http: str(_sale(http)["order"]["id"]),
    "/v1/orders/{order_id}/payments": lambda http: str(_sale(http)["order"]["id"]),
    "/v1/orders/{order_id}/returns": lambda http: str(_sale(http)["order"]["id"]),
    # Both ids are A's order's: B is refused on the order before the return.
    "/v1/orders/{order_id}/returns/{return_id}/settle": _sold_order,
    "/v1/orders/{order_id}/exchanges": lambda http: str(_sale(http)["order"]["id"]),
    "/v1/orders/{order_id}/tenders-to-record/settle": lambda http: str(_sale(http)["order"]["id"]),
    "/v1/orders/{order_id}/receipt": lambda http: str(_sale(http)["order"]["id"]),
    "/v1/refunds/{refund_id}": _refund,
    "/v1/returns/{return_id}": _return,
    "/v1/terminal-checkouts/{checkout_id}": _terminal_checkout,
    "/v1/terminal-checkouts/{checkout_id}/cancel": _terminal_checkout,
    "/v1/gift-cards/{gift_card_id}": _gift_card,
    "/v1/gift-cards/{gift_card_id}/loads": _gift_card,
    "/v1/gift-cards/{gift_card_id}/refunds": _gift_card,
    "/v1/gift-cards/{gift_card_id}/adjustments": _gift_card,
    "/v1/gift-cards/{gift_card_id}/deactivate": _gift_card,
    "/v1/gift-cards/{gift_card_id}/activities": _gift_card,
    "/v1/api-keys/{key_id}": _api_key,
    "/v1/api-keys/{key_id}/roll": _api_key,
    "/v1/registers/{register_id}": _register,
    "/v1/registers/{register_id}/retire": _register,
    "/v1/registers/{register_id}/pairing-codes": _register,
    "/v1/staff/{staff_id}": _staff,
    "/v1/staff/{staff_id}/deactivate": _staff,
    "/v1/roles/{role_id}": _role,
    "/v1/shifts/{shift_id}": _shift,
    "/v1/shifts/{shift_id}/drawer-movements": _shift,
    "/v1/shifts/{shift_id}/close": _shift,
    "/v1/oauth-clients/{client_id}": _oauth_client,
    "/v1/events/{event_id}": _event,
    "/v1/webhook-subscriptions/{subscription_id}": _subscription,
    "/v1/webhook-subscriptions/{subscription_id}/rotate-secret": _subscription,
    "/v1/webhook-subscriptions/{subscription_id}/test": _subscription,
    "/v1/webhook-subscriptions/{subscription_id}/deliveries": _subscription,
    "/v1/webhook-subscriptions/{subscription_id}/replay-failed": _subscription,
    # Both ids are A's subscription's: B is refused on the subscription before the delivery.
    "/v1/webhook-subscriptions/{subscription_id}/deliveries/{delivery_id}/replay": _subscription,
}
# A valid body for operations that need one: the answer must be the 404, not a 400 about it.
BODIES: dict[tuple[str, str], dict[str, Any]] = {
    ("patch", "/v1/customers/{customer_id}"): {"given_name": "Mallory"},
    ("patch", "/v1/customer-groups/{group_id}"): {"name": "Mallory"},
    ("post", "/v1/orders/{order_id}/submit"): {},
    # A made-up duplicate: the 404 must be about the customer in the path, whoever asks.
    ("post", "/v1/customers/{customer_id}/merge"): {"duplicate_id": "cus_made_up"},
    ("post", "/v1/customers/{customer_id}/points/adjustments"): {"points": 5, "reason": "x"},
    ("post", "/v1/customer-groups/{group_id}/members"): {"customer_ids": ["cus_made_up"]},
    ("post", "/v1/customer-groups/{group_id}/members/remove"): {"customer_ids": ["cus_made_up"]},
    ("patch", "/v1/staff/{staff_id}"): {"name": "Mallory"},
    ("patch", "/v1/roles/{role_id}"): {"name": "Mallory's"},
    ("patch", "/v1/registers/{register_id}"): {"name": "Mallory's till"},
    ("patch", "/v1/orders/{order_id}"): {"notes": "Mallory's"},
    ("post", "/v1/shifts/{shift_id}/drawer-movements"): {
        "kind": "pay_in",
        "amount": {"amount": 1, "currency": "USD"},
        "reason": "Mallory's",
    },
    ("post", "/v1/shifts/{shift_id}/close"): {"counted_cash": {"amount": 1, "currency": "USD"}},
    ("patch", "/v1/products/{product_id}"): {"name": "Mallory's"},
    ("patch", "/v1/locations/{location_id}"): {"pickup_enabled": True},
    ("patch", "/v1/promotions/{promotion_id}"): {"name": "Mallory's"},
    ("post", "/v1/promotions/{promotion_id}/coupons"): {"generate": 1},
    ("post", "/v1/payments/{payment_id}/capture"): {},
    ("post", "/v1/payments/{payment_id}/refunds"): {"reason": "Mallory's"},
    ("post", "/v1/orders/{order_id}/refunds"): {"reason": "Mallory's"},
    ("post", "/v1/orders/{order_id}/returns"): {
        "lines": [{"line_id": "L1", "quantity": 1}],
        "reason": "mallorys",
    },
    ("post", "/v1/orders/{order_id}/returns/{return_id}/settle"): {
        "outcome": "refused",
        "reason": "Mallory's",
    },
    ("post", "/v1/orders/{order_id}/exchanges"): {
        "lines": [{"line_id": "L1", "quantity": 1}],
        "new_lines": [{"sku": "MALLORY-1", "quantity": 1}],
        "reason": "mallorys",
    },
    ("post", "/v1/orders/{order_id}/tenders"): {"tender_type": "card", "card_token": "tok_visa"},
    ("post", "/v1/orders/{order_id}/fulfillments/{fulfillment_id}/steps"): {"status": "picked"},
    ("patch", "/v1/webhook-subscriptions/{subscription_id}"): {"description": "Mallory's"},
    ("post", "/v1/webhook-subscriptions/{subscription_id}/rotate-secret"): {"overlap_seconds": 60},
    ("post", "/v1/webhook-subscriptions/{subscription_id}/replay-failed"): {},
    ("post", "/v1/api-keys/{key_id}/roll"): {"expires_in_seconds": 0},
    ("post", "/v1/gift-cards/{gift_card_id}/loads"): {"amount": {"amount": 1, "currency": "USD"}},
    ("post", "/v1/gift-cards/{gift_card_id}/refunds"): {"amount": {"amount": 1, "currency": "USD"}},
    ("post", "/v1/gift-cards/{gift_card_id}/adjustments"): {
        "amount": {"amount": -1, "currency": "USD"},
        "reason": "Mallory's",
    },
    ("post", "/v1/gift-cards/{gift_card_id}/deactivate"): {"reason": "Mallory's"},
}
# Paths outside the merchant's tenancy (the platform operator's own credential).
NOT_TENANT = ("/v1/admin/",)


def _id_operations(document: dict[str, Any]) -> Iterator[tuple[str, str, dict[str, Any]]]:
    for path, operations in document["paths"].items():
        if "{" not in path or path.startswith(NOT_TENANT):
            continue
        for method, operation in operations.items():
            if method in METHODS:
                yield method, path, operation


def _call(
    http: httpx.Client, method: str, template: str, value: Ids, body: dict[str, Any] | None
) -> httpx.Response:
    ids = iter(value) if isinstance(value, tuple) else itertools.repeat(value)
    path = re.sub(r"\{[^}]+\}", lambda _: next(ids), template)
    headers = {"Idempotency-Key": str(uuid.uuid4())} if method == "post" else {}
    return http.request(method.upper(), path, json=body, headers=headers)


def test_every_id_operation_answers_404_for_another_merchants_resource(
    platform: Running, demo_merchant: Any
) -> None:
    owner = demo_merchant.http
    document = owner.get("/openapi.json").json()
    operations = list(_id_operations(document))
    assert operations, "the document has no operation with an id in its path"
    unmapped = sorted({path for _, path, _ in operations if path not in FACTORIES})
    assert not unmapped, f"add a factory to FACTORIES for {unmapped}: tenancy is unchecked there"
    for method, path, operation in operations:
        if "requestBody" in operation and (method, path) not in BODIES:
            pytest.fail(f"add a valid body for {method.upper()} {path} to BODIES")

    with platform.new_merchant("Tenancy Other") as other:
        checked = []
        for method, path, _ in operations:
            body = BODIES.get((method, path))
            resource = FACTORIES[path](owner)
            # The owner reaches it: the id is real, so a 404 below is the tenancy rule at work.
            if method == "get":
                assert _call(owner, method, path, resource, None).status_code == 200
            made_up: Ids = made_up_id()
            if isinstance(resource, tuple):
                made_up = tuple(made_up_id() for _ in resource)
            missing = _call(other, method, path, made_up, body)
            foreign = _call(other, method, path, resource, body)
            label = f"{method.upper()} {path}"
            assert missing.status_code == 404, f"{label} with a made-up id: {missing.text}"
            assert foreign.status_code == 404, f"{label} with A's id as B: {foreign.text}"
            assert foreign.headers["content-type"] == "application/problem+json", label
            assert foreign.json()["code"] == missing.json()["code"], label
            # Word for word the same answer, but for the id the caller sent itself.
            said, expected = foreign.json()["detail"], missing.json()["detail"]
            for mine in resource if isinstance(resource, tuple) else (resource,):
                said = said.replace(mine, "ID")
            for theirs in made_up if isinstance(made_up, tuple) else (made_up,):
                expected = expected.replace(theirs, "ID")
            assert said == expected, label
            checked.append(label)
    assert len(checked) == len(operations)


def test_another_merchants_write_changes_nothing(platform: Running, demo_merchant: Any) -> None:
    """The 404s above are no cover for a side effect: A's key and customer are untouched."""
    owner = demo_merchant.http
    key = _post(owner, "/v1/api-keys", {"name": "kept", "scopes": ["catalog:read"]})
    customer = _customer(owner)
    with platform.new_merchant("Tenancy Writer") as other:
        assert other.delete(f"/v1/api-keys/{key['id']}").status_code == 404
        rolled = other.post(
            f"/v1/api-keys/{key['id']}/roll", json={"expires_in_seconds": 0},
            headers={"Idempotency-Key": "tenancy-roll"},
        )  # fmt: skip
        assert rolled.status_code == 404
        patch = other.patch(f"/v1/customers/{customer}", json={"given_name": "Mallory"})
        assert patch.status_code == 404
    listed = owner.get("/v1/api-keys").json()["data"]
    assert next(k for k in listed if k["id"] == key["id"])["revoked_at"] is None
    assert next(k for k in listed if k["id"] == key["id"])["expires_at"] is None
    assert owner.get(f"/v1/customers/{customer}").json()["given_name"] != "Mallory"
    reader = httpx.Client(
        base_url=platform.platform.gateway_url, headers={"Authorization": f"Bearer {key['key']}"}
    )
    with reader:
        assert reader.get("/v1/products").status_code == 200


# --- ids in request bodies and query filters ------------------------------------------------
#
# A field or filter naming another resource's id must treat another merchant's real id exactly
# like a made-up one: the same 404 problem, word for word, and nothing written. The fields come
# from the live document too: one ending in `_id` that is neither in REFERENCES nor in
# NOT_REFERENCES fails the test until it is.

# Field or filter name -> the kind of resource it names.
REFERENCES = {
    "location_id": "location",
    "location_ids": "location",
    "from_location_id": "location",
    "to_location_id": "location",
    "pickup_location_id": "location",
    "customer_id": "customer",
    "customer_ids": "customer",
    "duplicate_id": "customer",
    # A customer group whose members a customer list is narrowed to.
    "group_id": "group",
    "order_id": "order",
    "payment_id": "payment",
    # The register and staff member an order was sold or a return taken at (`GET /v1/orders`
    # and `GET /v1/returns` filters).
    "register_id": "register",
    "staff_id": "staff",
    # A store an order's fulfilment leaves from (fulfillments[].location_id).
    "fulfillments.location_id": "location",
    # The store taking returned units back, and a payment a return's refund goes to.
    "lines.location_id": "location",
    # An exchange's new lines leave from a store (new_lines[].location_id).
    "new_lines.location_id": "location",
    "tender_amounts.payment_id": "payment",
    # An offer's targeting: the products and stores it applies to.
    "rule.items.product_ids": "product",
    "rule.get_items.product_ids": "product",
    "conditions.location_ids": "location",
}
# Ids that name nothing of ours: the merchant's own key for a product, the OAuth client in
# the token exchange (a credential that authenticates itself; no merchant is acting yet), and
# the event filter of a delivery log: it only narrows the caller's own subscription's
# deliveries (any other id matches none), and reaches the log through the subscription's id,
# whose tenancy the path probes check. A card reader's device id names a sandbox reader until
# registers and their devices are resources of their own (the registers issue).
NOT_REFERENCES = {
    ("*", "external_id"),
    ("/v1/oauth/token", "client_id"),
    ("/v1/terminal-checkouts", "device_id"),
    ("/v1/webhook-subscriptions/{subscription_id}/deliveries", "event_id"),
    # A line of the order named beside it: the order is the resource checked.
    ("/v1/gift-cards", "order_line_id"),
    ("/v1/orders/{order_id}/returns", "line_id"),
    ("/v1/orders/{order_id}/exchanges", "line_id"),
    # A return of the order in the path, looked up among that order's returns only.
    ("/v1/orders/{order_id}/receipt", "return_id"),
    # Filters of the audit log: they only narrow the caller's own entries (any other id
    # matches none), as the delivery log's event filter.
    ("/v1/audit-log", "staff_id"),
    ("/v1/audit-log", "register_id"),
    ("/v1/audit-log", "resource_id"),
    ("/v1/shifts", "register_id"),
    # Taken only from a paired register's own credential, which these probes (a merchant's
    # API key) do not hold: tests/e2e/test_registers_and_staff.py probes them with one.
    ("/v1/register-sessions", "staff_id"),
    ("/v1/overrides", "manager_id"),
}
DEMO_SKU = "TEE-BLK-M"  # stocked at both demo stores
# Where a write that slipped through would show: orders (a paid one names its payment), the
# stock ledger, and the levels (a hold shows as reserved units).
WRITES_SHOW_IN = (
    "/v1/orders?limit=200",
    "/v1/inventory/history?limit=200",
    f"/v1/inventory?sku={DEMO_SKU}",
)


@dataclass(frozen=True)
class Probe:
    method: str
    path: str
    where: str  # "body" or "query"
    field: str


def _id_fields(document: dict[str, Any]) -> Iterator[Probe]:
    schemas = document["components"]["schemas"]

    def properties(schema: dict[str, Any]) -> Iterator[str]:
        if "$ref" in schema:
            schema = schemas[schema["$ref"].rsplit("/", 1)[-1]]
        for choice in schema.get("anyOf", []) + schema.get("allOf", []):
            yield from properties(choice)
        for name, sub in schema.get("properties", {}).items():
            yield name
            # A nested id (lines[].something_id) would need a probe of its own: name it.
            yield from (f"{name}.{inner}" for inner in properties(sub.get("items", sub)))

    for path, operations in document["paths"].items():
        if path.startswith(NOT_TENANT):
            continue
        for method, operation in operations.items():
            if method not in METHODS:
                continue
            for parameter in operation.get("parameters", []):
                if "$ref" in parameter:  # the shared headers (Idempotency-Key, If-Match)
                    continue
                if parameter["in"] == "query" and parameter["name"].endswith(("_id", "_ids")):
                    yield Probe(method, path, "query", parameter["name"])
            content = operation.get("requestBody", {}).get("content", {})
            for media in content.values():
                for name in properties(media["schema"]):
                    if name.endswith(("_id", "_ids")):
                        yield Probe(method, path, "body", name)


def _is_reference(probe: Probe) -> bool:
    leaf = probe.field.rsplit(".", 1)[-1]
    return ("*", leaf) not in NOT_REFERENCES and (probe.path, leaf) not in NOT_REFERENCES


@dataclass
class Tenant:
    """A merchant with the demo data, and the ids a valid request of its own needs."""

    http: httpx.Client
    locations: list[str]
    customer: str
    product: str
    sku: str
    order: str
    payment: str
    group: str


def _tenant(http: httpx.Client) -> Tenant:
    sale = _sale(http)
    return Tenant(
        http,
        [loc["id"] for loc in http.get("/v1/locations").json()["data"]],
        http.get("/v1/customers").json()["data"][0]["id"],
        http.get("/v1/products").json()["data"][0]["id"],
        DEMO_SKU,
        sale["order"]["id"],
        sale["payment"]["id"],
        _group(http),
    )


def _checkout_body(t: Tenant) -> dict[str, Any]:
    return {
        "location_id": t.locations[0],
        "customer_id": t.customer,
        "lines": [{"sku": t.sku, "quantity": 1}],
        "tender_type": "cash",
        "cash_tendered": {"amount": 100_000, "currency": "USD"},
    }


# (method, path) -> the caller's own valid request: its body, or its query for a GET. The probe
# then puts a foreign or a made-up id in one field, so the answer is about that id alone.
REQUESTS: dict[tuple[str, str], Callable[[Tenant], dict[str, Any]]] = {
    ("post", "/v1/checkouts"): _checkout_body,
    ("post", "/v1/orders"): lambda t: {
        "location_id": t.locations[0], "customer_id": t.customer,
        "lines": [{"sku": t.sku, "quantity": 1}],
        "fulfillments": [{"type": "pickup", "location_id": t.locations[1]}]},
    ("get", "/v1/customers"): lambda t: {"group_id": t.group},
    ("get", "/v1/orders"): lambda t: {"location_id": t.locations[0], "customer_id": t.customer},
    ("get", "/v1/returns"): lambda t: {},
    ("patch", "/v1/orders/{order_id}"): lambda t: {
        "customer_id": t.customer, "lines": [{"sku": t.sku, "quantity": 1}],
        "fulfillments": [{"type": "pickup", "location_id": t.locations[1]}]},
    ("post", "/v1/carts/calculate"): lambda t: {
        "location_id": t.locations[0], "customer_id": t.customer,
        "lines": [{"sku": t.sku, "quantity": 1}],
        "fulfillments": [{"type": "pickup", "location_id": t.locations[1]}]},
    ("post", "/v1/inventory/adjustments"): lambda t: {
        "sku": t.sku, "location_id": t.locations[0], "delta": 1, "reason": "received"},
    ("post", "/v1/inventory/counts"): lambda t: {
        "sku": t.sku, "location_id": t.locations[0], "quantity": 7},
    ("post", "/v1/inventory/transfers"): lambda t: {
        "from_location_id": t.locations[0], "to_location_id": t.locations[1],
        "lines": [{"sku": t.sku, "quantity": 1}]},
    ("post", "/v1/reservations"): lambda t: {
        "location_id": t.locations[0], "lines": [{"sku": t.sku, "quantity": 1}]},
    ("post", "/v1/sourcing"): lambda t: {
        "lines": [{"sku": t.sku, "quantity": 1}], "pickup_location_id": t.locations[0],
        "dry_run": True},
    ("get", "/v1/inventory"): lambda t: {"sku": t.sku, "location_id": t.locations[0]},
    ("get", "/v1/inventory/history"): lambda t: {"location_id": t.locations[0]},
    ("get", "/v1/reservations"): lambda t: {"location_id": t.locations[0]},
    ("get", "/v1/inventory/availability"): lambda t: {
        "sku": t.sku, "location_id": [t.locations[0]]},
    ("post", "/v1/registers"): lambda t: {"location_id": t.locations[0], "name": "probe"},
    ("get", "/v1/registers"): lambda t: {"location_id": t.locations[0]},
    ("post", "/v1/staff"): lambda t: {
        "name": "Probe", "role": "cashier", "location_ids": [t.locations[0]], "pin": "4821"},
    ("get", "/v1/staff"): lambda t: {"location_id": t.locations[0]},
    ("patch", "/v1/staff/{staff_id}"): lambda t: {"location_ids": [t.locations[0]]},
    ("get", "/v1/payments"): lambda t: {"order_id": t.order, "location_id": t.locations[0]},
    ("get", "/v1/shifts"): lambda t: {"location_id": t.locations[0]},
    ("get", "/v1/refunds"): lambda t: {"order_id": t.order, "payment_id": t.payment},
    ("post", "/v1/terminal-checkouts"): lambda t: {
        "location_id": t.locations[0], "device_id": "sandbox_reader_timeout",
        "amount": {"amount": 500, "currency": "USD"}, "reference": "probe"},
    ("get", "/v1/settlement-reports"): lambda t: {
        "location_id": t.locations[0], "date": "2026-01-15"},
    ("get", "/v1/gift-cards"): lambda t: {"location_id": t.locations[0], "customer_id": t.customer},
    ("post", "/v1/gift-cards"): lambda t: {
        "amount": {"amount": 500, "currency": "USD"}, "location_id": t.locations[0],
        "customer_id": t.customer, "order_id": t.order},
    ("post", "/v1/gift-cards/redeem"): lambda t: {
        "code": _post(t.http, "/v1/gift-cards", {"amount": {"amount": 500, "currency": "USD"}})[
            "code"], "amount": {"amount": 1, "currency": "USD"}, "location_id": t.locations[0]},
    ("post", "/v1/gift-cards/{gift_card_id}/loads"): lambda t: {
        "amount": {"amount": 1, "currency": "USD"}, "location_id": t.locations[0]},
    ("post", "/v1/gift-cards/{gift_card_id}/refunds"): lambda t: {
        "amount": {"amount": 1, "currency": "USD"}, "location_id": t.locations[0]},
    ("post", "/v1/returns"): lambda t: {
        "location_id": t.locations[0], "customer_id": t.customer,
        "lines": [{"sku": t.sku, "quantity": 1}], "reason": "probe"},
    ("post", "/v1/orders/{order_id}/returns"): lambda t: {
        "lines": [{"line_id": "L1", "quantity": 1, "location_id": t.locations[0]}],
        "reason": "probe",
        "tender_amounts": [{"payment_id": t.payment, "amount": {"amount": 1, "currency": "USD"}}]},
    ("post", "/v1/orders/{order_id}/exchanges"): lambda t: {
        "lines": [{"line_id": "L1", "quantity": 1, "location_id": t.locations[0]}],
        "new_lines": [{"sku": t.sku, "quantity": 1, "location_id": t.locations[0]}],
        "location_id": t.locations[0], "reason": "probe"},
    ("post", "/v1/customers/{customer_id}/merge"): lambda t: {"duplicate_id": t.customer},
    ("post", "/v1/customer-groups/{group_id}/members"): lambda t: {"customer_ids": [t.customer]},
    ("post", "/v1/customer-groups/{group_id}/members/remove"): lambda t: {
        "customer_ids": [t.customer]},
    ("post", "/v1/promotions"): lambda t: _offer(t),
    ("patch", "/v1/promotions/{promotion_id}"): lambda t: _offer(t),
}  # fmt: skip


def _offer(t: Tenant) -> dict[str, Any]:
    """An offer naming a product (to buy and to get) and a store of the merchant's own."""
    return {
        "name": "Probe",
        "rule": {"kind": "buy_x_get_y", "percent_bps": 10000, "buy_quantity": 1,
                 "get_quantity": 1, "items": {"product_ids": [t.product]},
                 "get_items": {"product_ids": [t.product]}},
        "conditions": {"location_ids": [t.locations[0]]},
    }  # fmt: skip


def _with(request: dict[str, Any], field: str, value: str) -> dict[str, Any]:
    changed = dict(request)
    if "." in field:  # an id in the first item of a list: fulfillments[0].location_id
        outer, inner = field.split(".", 1)
        if isinstance(changed[outer], dict):  # or in an object: conditions.location_ids
            changed[outer] = _with(changed[outer], inner, value)
            return changed
        items = [dict(item) for item in changed[outer]]
        items[0] = _with(items[0], inner, value)
        changed[outer] = items
        return changed
    changed[field] = [value] if isinstance(changed.get(field), list) else value
    return changed


def _send(http: httpx.Client, probe: Probe, request: dict[str, Any]) -> httpx.Response:
    if probe.where == "query":
        return http.request(probe.method.upper(), probe.path, params=request)
    headers = {"Idempotency-Key": str(uuid.uuid4())}
    return http.request(probe.method.upper(), probe.path, json=request, headers=headers)


def _writes(*merchants: Tenant) -> list[Any]:
    return [m.http.get(path).json() for m in merchants for path in WRITES_SHOW_IN]


def test_every_id_in_a_body_or_filter_answers_for_another_merchants_id_as_for_a_made_up_one(
    platform: Running, demo_merchant: Any
) -> None:
    document = demo_merchant.http.get("/openapi.json").json()
    probes = [p for p in _id_fields(document) if _is_reference(p)]
    assert probes, "the document has no id in a request body or filter"
    unnamed = sorted({p.field for p in probes if p.field not in REFERENCES})
    assert not unnamed, f"say in REFERENCES which resource {unnamed} name: tenancy is unchecked"
    unmapped = sorted({(p.method, p.path) for p in probes if (p.method, p.path) not in REQUESTS})
    assert not unmapped, f"add a valid request to REQUESTS for {unmapped}"

    owner = _tenant(demo_merchant.http)
    owned = {
        "location": owner.locations[0],
        "customer": owner.customer,
        "product": owner.product,
        "order": owner.order,
        "payment": owner.payment,
        "group": owner.group,
        "register": _register(demo_merchant.http),
        "staff": _staff(demo_merchant.http),
    }
    with platform.new_merchant("Tenancy Bodies") as http:
        seed_demo_data(platform.platform.gateway_url, http.headers["Authorization"][7:])
        other = _tenant(http)
        checked = []
        for probe in probes:
            label = f"{probe.method.upper()} {probe.path} {probe.where} {probe.field}"
            own = REQUESTS[(probe.method, probe.path)](other)
            if probe.method == "get":
                # Its own id answers: a refusal below is about the foreign id, nothing else.
                assert _send(other.http, probe, own).status_code == 200, label
            foreign_id = owned[REFERENCES[probe.field]]
            made_up = made_up_id()
            before = _writes(owner, other)
            missing = _send(other.http, probe, _with(own, probe.field, made_up))
            foreign = _send(other.http, probe, _with(own, probe.field, foreign_id))
            assert _writes(owner, other) == before, f"{label}: something was written"
            # One rule for every id a request names, read or write: the 404 problem.
            assert missing.status_code == 404, f"{label} with a made-up id: {missing.text}"
            assert foreign.status_code == 404, f"{label} with A's id as B: {foreign.text}"
            assert foreign.headers["content-type"] == "application/problem+json", label
            # Word for word the same answer, but for the id the caller sent itself.
            said = foreign.text.replace(foreign_id, "ID")
            assert said == missing.text.replace(made_up, "ID"), label
            checked.append(label)
    assert len(checked) == len(probes)
