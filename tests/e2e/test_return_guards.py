"""Returns, exchanges and refunds held to the rules refunds keep, through the gateway over HTTP:
a register's member without the `refund` permission gives no money back by a return or an
exchange (nor overrides the return window) nor by store credit for a return without a
receipt, and all of them are in the audit log; a return's
amounts per tender are in the order's currency; a refund's lines are units of its order not
refunded or returned yet; an exchange's declined tender answers the order and the payment; an
exchange refused with a 404 is made once when sent corrected under the same key."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from pos_devstack.platform import seed_demo_data
from pos_devstack.testing import Running

pytestmark = pytest.mark.e2e


def _post(http: httpx.Client, path: str, body: dict[str, Any]) -> httpx.Response:
    return http.post(path, json=body, headers={"Idempotency-Key": str(uuid.uuid4())})


def _ok(answer: httpx.Response, status: int = 200) -> Any:
    assert answer.status_code == status, answer.text
    return answer.json()


@pytest.fixture(scope="module")
def shop(platform: Running) -> Iterator[httpx.Client]:
    """A merchant of its own, with the demo's stores, products and stock."""
    with platform.new_merchant("Return Guards") as http:
        seed_demo_data(platform.platform.gateway_url, http.headers["Authorization"][7:])
        yield http


def _store(http: httpx.Client) -> str:
    return str(http.get("/v1/locations").json()["data"][0]["id"])


def _sale(http: httpx.Client, store: str, lines: list[dict[str, Any]]) -> dict[str, Any]:
    body = {"location_id": store, "lines": lines, "tender_type": "card", "card_token": "tok_visa"}
    sale: dict[str, Any] = _ok(_post(http, "/v1/checkouts", body), 201)
    return sale


def _member(http: httpx.Client, name: str, role: str, store: str, pin: str) -> str:
    body = {"name": name, "role": role, "location_ids": [store], "pin": pin}
    return str(_ok(_post(http, "/v1/staff", body), 201)["id"])


def _register(platform: Running, http: httpx.Client, store: str) -> tuple[str, httpx.Client]:
    register = _ok(_post(http, "/v1/registers", {"location_id": store, "name": "Till"}), 201)
    code = _ok(_post(http, f"/v1/registers/{register['id']}/pairing-codes", {}), 201)["code"]
    url = platform.platform.gateway_url
    paired = _ok(httpx.post(url + "/v1/registers/pair", json={"code": code}), 201)
    device = httpx.Client(
        base_url=url, headers={"Authorization": f"Bearer {paired['credential']}"}, timeout=15.0
    )
    return str(register["id"]), device


def _audit(http: httpx.Client, **filters: str) -> list[dict[str, Any]]:
    entries: list[dict[str, Any]] = _ok(
        http.get("/v1/audit-log", params={"limit": 200, **filters})
    )["data"]
    return entries


def _returns(http: httpx.Client, order_id: str) -> list[dict[str, Any]]:
    found: list[dict[str, Any]] = _ok(http.get(f"/v1/orders/{order_id}/returns"))["data"]
    return found


def test_a_cashier_gives_no_money_back_by_a_return_or_an_exchange_without_the_permission(
    platform: Running, shop: httpx.Client
) -> None:
    http = shop
    store = _store(http)
    cashier = _member(http, "Cass", "cashier", store, "1357")
    manager = _member(http, "Mona", "manager", store, "9753")
    register, device = _register(platform, http, store)
    assert _post(device, "/v1/register-sessions", {"staff_id": cashier, "pin": "1357"}).is_success
    sale = _sale(
        http, store, [{"sku": "MUG-LOGO", "quantity": 2}, {"sku": "CAP-NAVY", "quantity": 1}]
    )
    order = sale["order"]
    returns = f"/v1/orders/{order['id']}/returns"
    exchanges = f"/v1/orders/{order['id']}/exchanges"
    mug = {"lines": [{"line_id": "L1", "quantity": 1}], "reason": "unwanted"}

    # A return gives money back: refused, as a refund is, and nothing changes.
    alone = _post(device, returns, mug)
    assert (alone.status_code, alone.json()["code"]) == (403, "permission_required"), alone.text
    assert alone.json()["permission"] == "refund"
    # An exchange for something cheaper gives the difference back: refused too.
    cheaper = {"lines": [{"line_id": "L2", "quantity": 1}], "reason": "wrong_size",
               "new_lines": [{"sku": "MUG-LOGO", "quantity": 1}]}  # fmt: skip
    down = _post(device, exchanges, cheaper)
    assert (down.status_code, down.json()["code"]) == (403, "permission_required"), down.text
    assert down.json()["permission"] == "refund"
    assert _returns(http, order["id"]) == []
    refunded = _ok(http.get(f"/v1/orders/{order['id']}/payments"))["refunded"]["amount"]
    assert refunded == 0

    # One the customer pays up for gives nothing back: the cashier may make it ...
    dearer = {"lines": [{"line_id": "L1", "quantity": 1}], "reason": "wrong_size",
              "new_lines": [{"sku": "CAP-NAVY", "quantity": 1}],
              "tenders": [{"tender_type": "card", "card_token": "tok_visa"}]}  # fmt: skip
    up = _ok(_post(device, exchanges, dearer), 201)
    assert up["charged"]["amount"] > 0 and up["refunded"]["amount"] == 0
    # ... but not with the return window overridden.
    overridden = _post(device, exchanges, {**dearer, "override_reason": "regular customer"})
    assert (overridden.status_code, overridden.json()["code"]) == (403, "permission_required")
    assert [r["id"] for r in _returns(http, order["id"])] == [up["order_return"]["id"]]

    # With a manager's PIN the return goes through, and both are in the audit log.
    grant = {"manager_id": manager, "pin": "9753", "permission": "refund"}
    granted = _ok(_post(device, "/v1/overrides", grant), 201)
    done = _ok(_post(device, returns, mug), 201)
    assert done["refunds"] and done["refunds"][0]["payment_id"] == sale["payment"]["id"]
    (entry,) = _audit(http, action="return", register_id=register)
    assert (entry["staff_id"], entry["approved_by"]) == (cashier, manager)
    assert (entry["resource_type"], entry["resource_id"]) == ("order", order["id"])
    assert entry["details"]["return_id"] == done["id"]
    assert entry["details"]["override_id"] == granted["id"]
    assert [r["id"] for r in entry["details"]["refunds"]] == [
        r["refund_id"] for r in done["refunds"]
    ]
    (swap,) = _audit(http, action="exchange", register_id=register)
    assert (swap["staff_id"], swap["approved_by"]) == (cashier, None)
    assert swap["details"]["return_id"] == up["order_return"]["id"]
    assert swap["details"]["order_id"] == up["order"]["id"]
    assert swap["details"]["charged"] == up["charged"]["amount"]

    # A manager signed in gives the difference back alone, and it is audited too.
    assert _post(device, "/v1/register-sessions", {"staff_id": manager, "pin": "9753"}).is_success
    back = _ok(_post(device, exchanges, cheaper), 201)
    assert back["refunded"]["amount"] > 0
    latest = _audit(http, action="exchange", register_id=register)[0]
    assert (latest["staff_id"], latest["details"]["refunded"]) == (
        manager,
        back["refunded"]["amount"],
    )
    assert latest["details"]["refunds"][0]["amount"] == back["refunded"]["amount"]


def test_store_credit_without_a_receipt_takes_the_refund_permission_and_is_audited(
    platform: Running, shop: httpx.Client
) -> None:
    http = shop
    store = _store(http)
    customer = http.get("/v1/customers").json()["data"][0]["id"]
    _sale(http, store, [{"sku": "MUG-LOGO", "quantity": 1}])
    cashier = _member(http, "Rita", "cashier", store, "2468")
    manager = _member(http, "Mark", "manager", store, "8642")
    register, device = _register(platform, http, store)
    assert _post(device, "/v1/register-sessions", {"staff_id": cashier, "pin": "2468"}).is_success
    body = {"location_id": store, "customer_id": customer,
            "lines": [{"sku": "MUG-LOGO", "quantity": 1}], "reason": "no_receipt"}  # fmt: skip

    def credits() -> list[str]:
        cards = _ok(http.get("/v1/gift-cards", params={"customer_id": customer, "limit": 100}))
        return sorted(c["id"] for c in cards["data"] if c["reason"] == "store_credit")

    before = credits()
    key = {"Idempotency-Key": str(uuid.uuid4())}
    alone = device.post("/v1/returns", json=body, headers=key)
    assert (alone.status_code, alone.json()["code"]) == (403, "permission_required"), alone.text
    assert alone.json()["permission"] == "refund"
    assert credits() == before
    assert _audit(http, action="return", register_id=register) == []

    grant = {"manager_id": manager, "pin": "8642", "permission": "refund"}
    granted = _ok(_post(device, "/v1/overrides", grant), 201)
    # The refusal kept nothing under its key: sent again once the override waits, it is made.
    done = _ok(device.post("/v1/returns", json=body, headers=key), 201)
    card = done["store_credit"]["gift_card_id"]
    assert credits() == sorted([*before, card])
    (entry,) = _audit(http, action="return", register_id=register)
    assert (entry["staff_id"], entry["approved_by"]) == (cashier, manager)
    assert (entry["resource_type"], entry["resource_id"]) == ("return", done["order_return"]["id"])
    details = entry["details"]
    assert (details["gift_card_id"], details["override_id"]) == (card, granted["id"])
    assert details["amount"] == done["order_return"]["amount"]["amount"] > 0
    assert done["store_credit"]["code"] not in str(entry)

    # The credential of the merchant's back office makes one too, audited as itself.
    back_office = _ok(_post(http, "/v1/returns", body), 201)
    entries = _audit(http, action="return", resource_id=back_office["order_return"]["id"])
    assert [e["staff_id"] for e in entries] == [None]


def test_an_exchange_giving_nothing_back_leaves_a_waiting_override_for_its_action(
    platform: Running, shop: httpx.Client
) -> None:
    http = shop
    store = _store(http)
    cashier = _member(http, "Otto", "cashier", store, "1122")
    manager = _member(http, "Nina", "manager", store, "2211")
    register, device = _register(platform, http, store)
    assert _post(device, "/v1/register-sessions", {"staff_id": cashier, "pin": "1122"}).is_success
    sale = _sale(
        http, store, [{"sku": "MUG-LOGO", "quantity": 2}, {"sku": "CAP-NAVY", "quantity": 1}]
    )
    order = sale["order"]
    grant = {"manager_id": manager, "pin": "2211", "permission": "refund"}
    granted = _ok(_post(device, "/v1/overrides", grant), 201)

    # The customer pays up: no permission needed, so the manager's override is not spent.
    dearer = {"lines": [{"line_id": "L1", "quantity": 1}], "reason": "wrong_size",
              "new_lines": [{"sku": "CAP-NAVY", "quantity": 1}],
              "tenders": [{"tender_type": "card", "card_token": "tok_visa"}]}  # fmt: skip
    up = _ok(_post(device, f"/v1/orders/{order['id']}/exchanges", dearer), 201)
    assert up["refunded"]["amount"] == 0
    (swap,) = _audit(http, action="exchange", register_id=register)
    assert (swap["staff_id"], swap["approved_by"]) == (cashier, None)
    assert "override_id" not in swap["details"]

    # The return the manager approved takes it.
    mug = {"lines": [{"line_id": "L1", "quantity": 1}], "reason": "unwanted"}
    done = _ok(_post(device, f"/v1/orders/{order['id']}/returns", mug), 201)
    (entry,) = _audit(http, action="return", register_id=register)
    assert (entry["details"]["return_id"], entry["approved_by"]) == (done["id"], manager)
    assert entry["details"]["override_id"] == granted["id"]
    again = _post(device, f"/v1/orders/{order['id']}/returns", mug)
    assert (again.status_code, again.json()["code"]) == (403, "permission_required"), again.text


def test_a_returns_amounts_per_tender_are_in_the_orders_currency(shop: httpx.Client) -> None:
    http = shop
    sale = _sale(http, _store(http), [{"sku": "MUG-LOGO", "quantity": 2}])
    order = sale["order"]
    share = order["total"]["amount"] // 2
    body = {"lines": [{"line_id": "L1", "quantity": 1}], "reason": "unwanted",
            "tender_amounts": [{"payment_id": sale["payment"]["id"],
                                "amount": {"amount": share, "currency": "EUR"}}]}  # fmt: skip
    refused = _post(http, f"/v1/orders/{order['id']}/returns", body)
    assert refused.status_code == 400, refused.text
    assert [e["field"] for e in refused.json()["errors"]] == ["tender_amounts[0].amount.currency"]
    assert _returns(http, order["id"]) == []
    paid = _ok(http.get(f"/v1/orders/{order['id']}/payments"))
    assert paid["refunded"]["amount"] == 0
    # In the order's currency the same return is made.
    body["tender_amounts"][0]["amount"]["currency"] = "USD"
    made = _ok(_post(http, f"/v1/orders/{order['id']}/returns", body), 201)
    assert made["amount"] == {"amount": share, "currency": "USD"}


def test_a_refunds_lines_are_units_of_its_order_not_given_back_yet(shop: httpx.Client) -> None:
    http = shop
    sale = _sale(http, _store(http), [{"sku": "SOCKS-3PK", "quantity": 2}])
    order, payment = sale["order"], sale["payment"]
    by_payment = f"/v1/payments/{payment['id']}/refunds"
    by_order = f"/v1/orders/{order['id']}/refunds"
    ten = {"amount": 10, "currency": "USD"}

    def refused(path: str, lines: list[dict[str, Any]]) -> list[str]:
        answer = _post(http, path, {"lines": lines, "amount": ten})
        assert answer.status_code == 400, answer.text
        return [e["field"] for e in answer.json()["errors"]]

    for path in (by_payment, by_order):
        assert refused(path, [{"sku": "NOPE", "quantity": 5}]) == ["lines[0].sku"]
        assert refused(path, [{"sku": "SOCKS-3PK", "quantity": 3}]) == ["lines[0].quantity"]
        split = [{"sku": "SOCKS-3PK", "quantity": 1}, {"sku": "SOCKS-3PK", "quantity": 2}]
        assert refused(path, split) == ["lines[1].quantity"]
    assert _ok(http.get("/v1/refunds", params={"order_id": order["id"]}))["data"] == []

    # One pair returned, one refunded as goodwill with its line: none is left to list.
    pair = {"lines": [{"line_id": "L1", "quantity": 1}], "reason": "unwanted"}
    _ok(_post(http, f"/v1/orders/{order['id']}/returns", pair), 201)
    one = [{"sku": "SOCKS-3PK", "quantity": 1}]
    made = _ok(_post(http, by_payment, {"lines": one, "amount": ten}), 201)
    assert made["data"][0]["lines"] == one
    assert refused(by_order, one) == ["lines[0].quantity"]
    assert refused(by_payment, one) == ["lines[0].quantity"]
    # A refund naming no lines is not held to them.
    _ok(_post(http, by_payment, {"amount": ten}), 201)


def test_a_refund_naming_units_needs_its_amount(shop: httpx.Client) -> None:
    """`lines` with no `amount` is a 400 naming `amount`, nothing refunded, on the order's
    refunds and on the payment's: absent, the amount meant all that is left, so a price
    adjustment of one unit gave the whole sale back. What units are worth is what a return
    refunds (`POST /v1/orders/{id}/returns`, `restock: false` for goods kept)."""
    http = shop
    sale = _sale(http, _store(http), [{"sku": "SOCKS-3PK", "quantity": 2},
                                      {"sku": "MUG-LOGO", "quantity": 1}])  # fmt: skip
    order, payment = sale["order"], sale["payment"]
    by_payment = f"/v1/payments/{payment['id']}/refunds"
    by_order = f"/v1/orders/{order['id']}/refunds"
    one = [{"sku": "SOCKS-3PK", "quantity": 1}]
    for path in (by_order, by_payment):
        refused = _post(http, path, {"lines": one, "reason": "price match"})
        assert refused.status_code == 400, refused.text
        assert [e["field"] for e in refused.json()["errors"]] == ["amount"]
    assert _ok(http.get("/v1/refunds", params={"order_id": order["id"]}))["data"] == []
    paid = _ok(http.get(f"/v1/orders/{order['id']}/payments"))
    assert paid["refunded"]["amount"] == 0
    # With its amount it is made, and only that goes back.
    ten = {"amount": 10, "currency": "USD"}
    made = _ok(_post(http, by_order, {"lines": one, "amount": ten}), 201)
    assert [r["amount"] for r in made["data"]] == [ten]


def test_a_refund_naming_units_gives_back_at_most_what_they_were_paid(
    shop: httpx.Client,
) -> None:
    """Two packs of socks on one card: a refund naming one pack (a price adjustment) gives
    back at most what that pack was paid, with its tax (the dearer half of the line); more is
    a 400 naming `amount` and nothing is refunded, on the order's refunds and on the
    payment's. Before, one pack took any amount the card had left (the whole sale)."""
    http = shop
    sale = _sale(http, _store(http), [{"sku": "SOCKS-3PK", "quantity": 2}])
    order, payment = sale["order"], sale["payment"]
    paid = order["total"]["amount"]
    pack = paid - paid // 2
    one = [{"sku": "SOCKS-3PK", "quantity": 1}]
    for path in (f"/v1/orders/{order['id']}/refunds", f"/v1/payments/{payment['id']}/refunds"):
        for amount in (paid, pack + 1):
            body = {"lines": one, "amount": {"amount": amount, "currency": "USD"}}
            refused = _post(http, path, body)
            assert refused.status_code == 400, refused.text
            assert [e["field"] for e in refused.json()["errors"]] == ["amount"]
    assert _ok(http.get("/v1/refunds", params={"order_id": order["id"]}))["data"] == []
    # What the pack was paid is given back.
    body = {"lines": one, "amount": {"amount": pack, "currency": "USD"}}
    made = _ok(_post(http, f"/v1/orders/{order['id']}/refunds", body), 201)
    assert [r["amount"]["amount"] for r in made["data"]] == [pack]


def test_an_exchanges_declined_tender_answers_the_order_and_the_payment(
    shop: httpx.Client,
) -> None:
    http = shop
    sale = _sale(http, _store(http), [{"sku": "MUG-LOGO", "quantity": 1}])
    order = sale["order"]
    body = {"lines": [{"line_id": "L1", "quantity": 1}], "reason": "wrong_size",
            "new_lines": [{"sku": "CAP-NAVY", "quantity": 1}],
            "tenders": [{"tender_type": "card", "card_token": "tok_declined"}]}  # fmt: skip
    declined = _post(http, f"/v1/orders/{order['id']}/exchanges", body)
    assert declined.status_code == 402, declined.text
    problem = declined.json()
    assert problem["code"] == "payment_declined"
    new, payment = problem["order"], problem["payment"]
    assert new["exchange_of"] == order["id"] and new["status"] == "cancelled"
    assert new["cancel_reason"] == "payment_declined"
    assert payment["status"] == "failed" and payment["order_id"] == new["id"]
    assert payment["decline_code"]
    assert _returns(http, order["id"]) == []


def test_a_refused_exchange_sent_again_with_its_key_answers_the_same(
    shop: httpx.Client,
) -> None:
    """An exchange whose gift card code no card has is a 404 naming the tender's code; the
    gateway keeps nothing of a 404, so the same request again under the same Idempotency-Key
    reaches the order service, which answers the same 404, byte for byte (until 2026-12-05:
    a 402 `payment_declined` with no order and no payment). Nothing was exchanged."""
    http = shop
    order = _sale(http, _store(http), [{"sku": "MUG-LOGO", "quantity": 1}])["order"]
    tender = {"tender_type": "gift_card", "gift_card_code": "NOSUCH-CARD-0000"}
    body = {"lines": [{"line_id": "L1", "quantity": 1}], "reason": "wrong_size",
            "new_lines": [{"sku": "CAP-NAVY", "quantity": 1}], "tenders": [tender]}  # fmt: skip
    path, key = f"/v1/orders/{order['id']}/exchanges", {"Idempotency-Key": str(uuid.uuid4())}
    first = http.post(path, json=body, headers=key)
    assert first.status_code == 404, first.text
    assert [e["field"] for e in first.json()["errors"]] == ["tenders[0].gift_card_code"]
    again = http.post(path, json=body, headers=key)
    assert (again.status_code, again.content) == (404, first.content)
    assert _returns(http, order["id"]) == []


def test_a_refused_exchange_corrected_under_its_key_is_made_once(shop: httpx.Client) -> None:
    """The gateway keeps nothing of an exchange's 404 (a gift card code no card has), so the
    corrected body may use the same Idempotency-Key: the order service runs it as a new
    attempt, the exchange is made once, and the refused attempt left nothing charged or held
    (until 2026-12-05 the corrected body was a 422 `idempotency_key_reused`)."""
    http = shop
    order = _sale(http, _store(http), [{"sku": "MUG-LOGO", "quantity": 1}])["order"]
    issued = _ok(
        _post(http, "/v1/gift-cards", {"amount": {"amount": 10_000, "currency": "USD"}}), 201
    )
    tender = {"tender_type": "gift_card", "gift_card_code": "NOSUCH-CARD-0000"}
    body = {"lines": [{"line_id": "L1", "quantity": 1}], "reason": "wrong_size",
            "new_lines": [{"sku": "CAP-NAVY", "quantity": 1}], "tenders": [tender]}  # fmt: skip
    path, key = f"/v1/orders/{order['id']}/exchanges", {"Idempotency-Key": str(uuid.uuid4())}
    refused = http.post(path, json=body, headers=key)
    assert refused.status_code == 404, refused.text
    corrected = {**body, "tenders": [{**tender, "gift_card_code": issued["code"]}]}
    made = _ok(http.post(path, json=corrected, headers=key), 201)
    again = http.post(path, json=corrected, headers=key)
    assert again.headers.get("Idempotent-Replayed") == "true"
    assert again.json()["order"]["id"] == made["order"]["id"]
    assert [r["id"] for r in _returns(http, order["id"])] == [made["order_return"]["id"]]
    # Taken once from the card: what the new order's payments captured, nothing more.
    card = _ok(http.get(f"/v1/gift-cards/{issued['gift_card']['id']}"))
    payments = _ok(http.get("/v1/payments", params={"order_id": made["order"]["id"]}))["data"]
    taken = sum(p["amount"]["amount"] for p in payments)
    assert taken > 0 and card["balance"]["amount"] == 10_000 - taken
