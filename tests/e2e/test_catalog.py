"""The catalog end to end through the gateway over HTTP: every service a separate process."""

from __future__ import annotations

import time
import uuid
from typing import Any

import httpx
import pytest

from pos_devstack.testing import Running

pytestmark = pytest.mark.e2e

UPC = "036000291452"


def _key() -> dict[str, str]:
    return {"Idempotency-Key": str(uuid.uuid4())}


def _tee(sku: str, **over: Any) -> dict[str, Any]:
    body: dict[str, Any] = {
        "sku": sku,
        "name": "Tee",
        "price": {"amount": 2000, "currency": "USD"},
        "description": "Organic cotton",
        "variants": [
            {"sku": f"{sku}-M", "name": "M", "options": {"size": "M"}, "barcodes": [UPC]},
            {"sku": f"{sku}-XL", "name": "XL", "price": {"amount": 2400, "currency": "USD"}},
        ],
    }
    body.update(over)
    return body


def _problem(answer: httpx.Response, status: int, code: str) -> dict[str, Any]:
    assert answer.status_code == status, answer.text
    assert answer.headers["content-type"] == "application/problem+json"
    problem: dict[str, Any] = answer.json()
    assert problem["code"] == code
    return problem


def test_a_product_with_variants_is_created_updated_by_version_and_archived(
    platform: Running,
) -> None:
    http = platform.new_merchant("Catalog e2e")
    key = _key()
    made = http.post("/v1/products", json=_tee("E2E-TEE"), headers=key)
    assert made.status_code == 201, made.text
    product = made.json()
    assert made.headers["ETag"] == '"1"'
    # A replay carries the ETag too: it feeds the client's next If-Match.
    again = http.post("/v1/products", json=_tee("E2E-TEE"), headers=key)
    assert again.headers["Idempotent-Replayed"] == "true" and again.headers["ETag"] == '"1"'
    assert again.content == made.content
    assert [v["sku"] for v in product["variants"]] == ["E2E-TEE-M", "E2E-TEE-XL"]
    assert product["status"] == "active" and product["tax_category"] == "standard"
    pid = product["id"]

    renamed = http.patch(
        f"/v1/products/{pid}", json={"name": "Tee II"}, headers={"If-Match": '"1"'}
    )
    assert (renamed.status_code, renamed.json()["version"]) == (200, 2), renamed.text
    stale = http.patch(f"/v1/products/{pid}", json={"name": "Tee III"}, headers={"If-Match": '"1"'})
    assert _problem(stale, 412, "version_mismatch")["current_version"] == 2

    found = http.get("/v1/products", params={"barcode": "0" + UPC}).json()["data"]
    assert [p["id"] for p in found] == [pid]
    assert [
        p["id"] for p in http.get("/v1/products", params={"query": "organ"}).json()["data"]
    ] == [pid]

    archived = http.post(f"/v1/products/{pid}/archive", headers={**_key(), "If-Match": '"2"'})
    assert (archived.status_code, archived.json()["status"]) == (200, "archived"), archived.text
    assert http.get(f"/v1/products/{pid}").json()["status"] == "archived"
    active = http.get("/v1/products", params={"sku": "E2E-TEE-M", "status": "active"})
    assert active.json()["data"] == []


def test_bad_products_are_field_problems_and_write_nothing(platform: Running) -> None:
    http = platform.new_merchant("Catalog e2e bad")
    http.post("/v1/products", json=_tee("TAKEN"), headers=_key()).raise_for_status()
    # (...932 would also pass Luhn: a card number, refused as `card_number_not_allowed`.)
    bad_check_digit = http.post(
        "/v1/products", json=_tee("NEW-1", barcodes=["4006381333933"]), headers=_key()
    )
    errors = _problem(bad_check_digit, 400, "invalid_request")["errors"]
    assert [e["field"] for e in errors] == ["barcodes[0]"]
    wrong_currency = _tee(
        "NEW-2", variants=[{"sku": "NEW-2-A", "price": {"amount": 1, "currency": "EUR"}}]
    )
    errors = _problem(
        http.post("/v1/products", json=wrong_currency, headers=_key()), 400, "invalid_request"
    )["errors"]
    assert [e["field"] for e in errors] == ["variants[0].price.currency"]
    duplicate = http.post(
        "/v1/products", json=_tee("NEW-3", variants=[{"sku": "TAKEN-XL"}]), headers=_key()
    )
    assert _problem(duplicate, 409, "sku_taken")["errors"][0]["field"] == "variants[0].sku"
    assert [p["sku"] for p in http.get("/v1/products").json()["data"]] == ["TAKEN"]
    other = platform.new_merchant("Catalog e2e other")
    taken = http.get("/v1/products", params={"sku": "TAKEN"}).json()["data"][0]["id"]
    _problem(other.get(f"/v1/products/{taken}"), 404, "resource_missing")
    _problem(other.patch(f"/v1/products/{taken}", json={"name": "x"}), 404, "resource_missing")


def test_batch_upsert_answers_per_item_and_replays_once(platform: Running) -> None:
    http = platform.new_merchant("Catalog e2e batch")

    def item(ext: str, sku: str, **over: Any) -> dict[str, Any]:
        return {
            "external_id": ext,
            "sku": sku,
            "name": sku,
            "price": {"amount": 100, "currency": "USD"},
            **over,
        }

    body = {"products": [item("a", "A"), item("b", "B", barcodes=["12345678"]), item("c", "A")]}
    key = _key()
    first = http.post("/v1/products/batch-upsert", json=body, headers=key)
    assert first.status_code == 200, first.text
    results = first.json()
    assert [r["status"] for r in results["data"]] == ["failed", "failed", "failed"]
    assert [r["error"]["code"] for r in results["data"]] == [
        "duplicate_in_batch", "invalid_request", "duplicate_in_batch"]  # fmt: skip
    body = {"products": [item("a", "A"), item("b", "B")]}
    key = _key()
    made = http.post("/v1/products/batch-upsert", json=body, headers=key)
    assert made.json()["summary"] == {"created": 2, "updated": 0, "unchanged": 0, "failed": 0}
    again = http.post("/v1/products/batch-upsert", json=body, headers=key)
    assert again.headers.get("Idempotent-Replayed") == "true"
    assert again.content == made.content
    changed = {"products": [item("a", "A", name="Renamed"), item("b", "B")]}
    summary = http.post("/v1/products/batch-upsert", json=changed, headers=_key()).json()["summary"]
    assert summary == {"created": 0, "updated": 1, "unchanged": 1, "failed": 0}
    assert len(http.get("/v1/products").json()["data"]) == 2
    too_many = {"products": [item(f"x{i}", f"X{i}") for i in range(1001)]}
    errors = _problem(
        http.post("/v1/products/batch-upsert", json=too_many, headers=_key()),
        400,
        "invalid_request",
    )
    assert len(http.get("/v1/products").json()["data"]) == 2
    assert errors


def test_an_archived_product_is_put_back_on_sale_by_unarchiving_it(platform: Running) -> None:
    """Archived, a product's units are not held (409 `product_archived`); unarchived, its status
    is `active` again, a new version announced as `product.updated`, and they are. Unarchiving
    an active product changes nothing; a stale If-Match is a 412; another merchant's is a
    404."""
    http = platform.new_merchant("Catalog unarchive")
    store = http.post(
        "/v1/locations", json={"name": "Back St", "currency": "USD"}, headers=_key()
    ).json()["id"]
    made = http.post("/v1/products", json=_tee("BACK-TEE", variants=[]), headers=_key()).json()
    pid = made["id"]
    stock = {"location_id": store, "sku": "BACK-TEE", "delta": 5, "reason": "received"}
    assert http.post("/v1/inventory/adjustments", json=stock, headers=_key()).status_code == 201
    hold = {"location_id": store, "lines": [{"sku": "BACK-TEE", "quantity": 1}]}

    archived = http.post(f"/v1/products/{pid}/archive", headers=_key()).json()
    _problem(http.post("/v1/reservations", json=hold, headers=_key()), 409, "product_archived")
    stale = http.post(f"/v1/products/{pid}/unarchive", headers={**_key(), "If-Match": '"1"'})
    assert _problem(stale, 412, "version_mismatch")["current_version"] == archived["version"]
    other = platform.new_merchant("Catalog unarchive other")
    _problem(other.post(f"/v1/products/{pid}/unarchive", headers=_key()), 404, "resource_missing")

    back = http.post(f"/v1/products/{pid}/unarchive", headers=_key())
    assert (back.status_code, back.json()["status"]) == (200, "active"), back.text
    assert back.json()["version"] == archived["version"] + 1
    assert back.headers["ETag"] == f'"{archived["version"] + 1}"'
    assert http.post("/v1/reservations", json=hold, headers=_key()).status_code == 201
    again = http.post(f"/v1/products/{pid}/unarchive", headers=_key()).json()
    assert again["version"] == back.json()["version"]

    def announced() -> list[dict[str, Any]]:
        listed = http.get("/v1/events", params={"types": "product.updated"}).json()["data"]
        return [e for e in listed if e["data"]["object"]["id"] == pid]

    deadline = time.monotonic() + 30
    while not announced():
        assert time.monotonic() < deadline, "product.updated never reached the feed"
        time.sleep(0.1)
    assert [e["data"]["object"]["status"] for e in announced()] == ["active"]


def test_the_product_list_is_filtered_by_status_without_a_search(platform: Running) -> None:
    """`status` filters the plain list (by id, paged) as it filters a search; with
    `updated_since` it is a 400 naming it: a feed of one status would never tell a poller that
    a product left it."""
    http = platform.new_merchant("Catalog by status")
    made = [
        http.post("/v1/products", json=_tee(f"ST-{n}", variants=[]), headers=_key()).json()["id"]
        for n in range(3)
    ]
    http.post(f"/v1/products/{made[1]}/archive", headers=_key()).raise_for_status()

    def listed(status: str) -> list[str]:
        ids, cursor = [], None
        while True:
            params: dict[str, Any] = {"status": status, "limit": 1}
            if cursor:
                params["cursor"] = cursor
            page = http.get("/v1/products", params=params)
            assert page.status_code == 200, page.text
            ids += [p["id"] for p in page.json()["data"]]
            if not (cursor := page.json()["next_cursor"]):
                return ids

    assert listed("active") == sorted([made[0], made[2]])
    assert listed("archived") == [made[1]]
    feed = http.get(
        "/v1/products", params={"status": "active", "updated_since": "2026-01-01T00:00:00Z"}
    )
    assert [e["field"] for e in _problem(feed, 400, "invalid_request")["errors"]] == ["status"]


def test_deleting_a_product_archives_it(platform: Running) -> None:
    """`DELETE /v1/products/{id}` archives (a product is never erased: sales and stock
    history name it): answered archived, its units no longer held (409 `product_archived`),
    still readable; deleting it again changes nothing; a stale If-Match is a 412 and another
    merchant's is a 404, nothing changed; unarchiving puts it back on sale."""
    http = platform.new_merchant("Catalog delete")
    store = http.post(
        "/v1/locations", json={"name": "Gone St", "currency": "USD"}, headers=_key()
    ).json()["id"]
    made = http.post("/v1/products", json=_tee("GONE-TEE", variants=[]), headers=_key()).json()
    pid = made["id"]
    stock = {"location_id": store, "sku": "GONE-TEE", "delta": 5, "reason": "received"}
    assert http.post("/v1/inventory/adjustments", json=stock, headers=_key()).status_code == 201
    hold = {"location_id": store, "lines": [{"sku": "GONE-TEE", "quantity": 1}]}

    stale = http.delete(f"/v1/products/{pid}", headers={**_key(), "If-Match": '"99"'})
    _problem(stale, 412, "version_mismatch")
    other = platform.new_merchant("Catalog delete other")
    _problem(other.delete(f"/v1/products/{pid}", headers=_key()), 404, "resource_missing")
    assert http.get(f"/v1/products/{pid}").json()["status"] == "active"

    deleted = http.delete(f"/v1/products/{pid}", headers=_key())
    assert (deleted.status_code, deleted.json()["status"]) == (200, "archived"), deleted.text
    assert deleted.json()["version"] == made["version"] + 1
    _problem(http.post("/v1/reservations", json=hold, headers=_key()), 409, "product_archived")
    assert http.get(f"/v1/products/{pid}").json()["status"] == "archived"
    again = http.delete(f"/v1/products/{pid}", headers=_key())
    assert (again.status_code, again.json()["version"]) == (200, deleted.json()["version"])
    back = http.post(f"/v1/products/{pid}/unarchive", headers=_key())
    assert back.json()["status"] == "active"
    assert http.post("/v1/reservations", json=hold, headers=_key()).status_code == 201
