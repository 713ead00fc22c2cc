"""Another merchant's resource is a 404, the same as one that does not exist, on every
operation of the served OpenAPI document that takes an id in its path.

The operations come from the live document, not from a list kept here: a route added later
with an id in its path fails this test until it has a factory below, so tenancy is checked on
it from its first day.
"""

from __future__ import annotations

import re
import uuid
from collections.abc import Callable, Iterator
from typing import Any

import httpx
import pytest

from pos_devstack.testing import Running

pytestmark = pytest.mark.e2e

Factory = Callable[[httpx.Client], str]
METHODS = ("get", "put", "patch", "post", "delete")


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


def _promotion(http: httpx.Client) -> str:
    return str(_post(http, "/v1/promotions", {"name": "Tenancy", "percent_off_bps": 500})["id"])


def _sale(http: httpx.Client) -> dict[str, Any]:
    """A real paid order of merchant A: its own product, stock received, a cash checkout."""
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
    return _post(http, "/v1/checkouts", checkout)


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


def _api_key(http: httpx.Client) -> str:
    return str(_post(http, "/v1/api-keys", {"name": "tenancy", "scopes": ["catalog:read"]})["id"])


def _oauth_client(http: httpx.Client) -> str:
    body = {"name": "tenancy", "scopes": ["catalog:read"]}
    return str(_post(http, "/v1/oauth-clients", body)["id"])


# Path template -> how merchant A makes a real resource whose id goes in the path.
FACTORIES: dict[str, Factory] = {
    "/v1/products/{product_id}": _product,
    "/v1/products/{product_id}/archive": _product,
    "/v1/reservations/{reservation_id}": _reservation,
    "/v1/reservations/{reservation_id}/commit": _reservation,
    "/v1/reservations/{reservation_id}/release": _reservation,
    "/v1/customers/{customer_id}": _customer,
    "/v1/promotions/{promotion_id}": _promotion,
    "/v1/orders/{order_id}": lambda http: str(_sale(http)["order"]["id"]),
    "/v1/payments/{payment_id}": lambda http: str(_sale(http)["payment"]["id"]),
    "/v1/api-keys/{key_id}": _api_key,
    "/v1/oauth-clients/{client_id}": _oauth_client,
}
# A valid body for operations that need one: the answer must be the 404, not a 400 about it.
BODIES: dict[tuple[str, str], dict[str, Any]] = {
    ("patch", "/v1/customers/{customer_id}"): {"given_name": "Mallory"},
    ("patch", "/v1/products/{product_id}"): {"name": "Mallory's"},
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
    http: httpx.Client, method: str, template: str, value: str, body: dict[str, Any] | None
) -> httpx.Response:
    path = re.sub(r"\{[^}]+\}", value, template)
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
            made_up = "zz_" + uuid.uuid4().hex
            missing = _call(other, method, path, made_up, body)
            foreign = _call(other, method, path, resource, body)
            label = f"{method.upper()} {path}"
            assert missing.status_code == 404, f"{label} with a made-up id: {missing.text}"
            assert foreign.status_code == 404, f"{label} with A's id as B: {foreign.text}"
            assert foreign.headers["content-type"] == "application/problem+json", label
            assert foreign.json()["code"] == missing.json()["code"], label
            # Word for word the same answer, but for the id the caller sent itself.
            said = foreign.json()["detail"].replace(resource, "ID")
            assert said == missing.json()["detail"].replace(made_up, "ID"), label
            checked.append(label)
    assert len(checked) == len(operations)


def test_another_merchants_write_changes_nothing(platform: Running, demo_merchant: Any) -> None:
    """The 404s above are no cover for a side effect: A's key and customer are untouched."""
    owner = demo_merchant.http
    key = _post(owner, "/v1/api-keys", {"name": "kept", "scopes": ["catalog:read"]})
    customer = _customer(owner)
    with platform.new_merchant("Tenancy Writer") as other:
        assert other.delete(f"/v1/api-keys/{key['id']}").status_code == 404
        patch = other.patch(f"/v1/customers/{customer}", json={"given_name": "Mallory"})
        assert patch.status_code == 404
    listed = owner.get("/v1/api-keys").json()["data"]
    assert next(k for k in listed if k["id"] == key["id"])["revoked_at"] is None
    assert owner.get(f"/v1/customers/{customer}").json()["given_name"] != "Mallory"
    reader = httpx.Client(
        base_url=platform.platform.gateway_url, headers={"Authorization": f"Bearer {key['key']}"}
    )
    with reader:
        assert reader.get("/v1/products").status_code == 200
