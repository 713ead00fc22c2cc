"""Returns and gift card lines through the gateway over HTTP, every service a separate process:
a register sale with a gift card line shows the code once (a replay has none); units returned
to another store are refunded to the tender and restocked there; the return shows in the event
feed as order.returned with the return and the order; bad returns answer 4xx problems."""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from contextlib import closing
from datetime import datetime
from typing import Any

import httpx
import pytest

from pos_devstack.http_checks import (
    day_with_time_to_spare,
    open_till,
    polled,
    post_answered,
    stocked,
)
from pos_devstack.platform import seed_demo_data
from pos_devstack.testing import Running

pytestmark = pytest.mark.e2e


def _eventually(check: Callable[[], Any], timeout: float = 30.0) -> Any:
    deadline = time.monotonic() + timeout
    while not (value := check()):
        assert time.monotonic() < deadline, "the expected state was not reached in time"
        time.sleep(0.1)
    return value


def _post(http: httpx.Client, path: str, body: dict[str, Any], key: str | None = None) -> Any:
    return http.post(path, json=body, headers={"Idempotency-Key": key or str(uuid.uuid4())})


def _ok(answer: httpx.Response, status: int = 200) -> Any:
    assert answer.status_code == status, answer.text
    return answer.json()


def _ask(line_id: str, quantity: int) -> dict[str, Any]:
    return {"lines": [{"line_id": line_id, "quantity": quantity}], "reason": "unwanted"}


def _on_hand(http: httpx.Client, sku: str, location: str) -> int:
    levels = http.get("/v1/inventory", params={"sku": sku, "location_id": location}).json()
    return int(levels["data"][0]["on_hand"]) if levels["data"] else 0


def _exchange_that_cannot_refund(
    http: httpx.Client, store: str, tee: str, mug: str
) -> tuple[dict[str, Any], httpx.Response]:
    """A tee paid by a gift card whose spend was since refunded to it by hand, exchanged for a
    cheaper mug: the difference cannot go back to the card, so the exchange's return waits for
    a person. The order, and the exchange's answer."""
    card = _ok(
        _post(http, "/v1/gift-cards", {"amount": {"amount": 10_000, "currency": "USD"}}), 201
    )
    order = _ok(_post(http, "/v1/orders", {"location_id": store,
                "lines": [{"sku": tee, "quantity": 1}]}), 201)  # fmt: skip
    tender = {"tender_type": "gift_card", "gift_card_code": card["code"]}
    _ok(_post(http, f"/v1/orders/{order['id']}/tenders", tender), 201)
    order = _ok(_post(http, f"/v1/orders/{order['id']}/confirm", {}))
    gift = card["gift_card"]["id"]
    _ok(_post(http, f"/v1/gift-cards/{gift}/refunds", {"amount": order["total"]}), 201)
    exchange = {"lines": [{"line_id": "L1", "quantity": 1}],
                "new_lines": [{"sku": mug, "quantity": 1}], "reason": "unwanted"}  # fmt: skip
    return order, _post(http, f"/v1/orders/{order['id']}/exchanges", exchange)


def test_a_sale_with_a_gift_card_line_then_a_return_to_another_store(platform: Running) -> None:
    http = platform.http
    sku = f"RET-{uuid.uuid4().hex[:8].upper()}"
    _ok(_post(http, "/v1/products", {"sku": sku, "name": "Return probe",
        "price": {"amount": 1000, "currency": "USD"}}), 201)  # fmt: skip
    store, outlet = [loc["id"] for loc in http.get("/v1/locations").json()["data"][:2]]

    body = {
        "location_id": store,
        "lines": [
            {"sku": sku, "quantity": 3},
            {"quantity": 1, "gift_card": {"amount": {"amount": 2500, "currency": "USD"}}},
        ],
        "tender_type": "card",
        "card_token": "tok_visa",
    }
    key = str(uuid.uuid4())
    sale = _ok(_post(http, "/v1/checkouts", body, key), 201)
    order = sale["order"]
    (card,) = sale["gift_cards"]
    assert card["line_id"] == "L2" and len(card["code"]) >= 8
    assert sale["secret_redacted"] is False
    gift_line = order["lines"][1]
    assert gift_line["sku"] == "" and gift_line["gift_card"]["gift_card_id"] == card["gift_card_id"]
    assert gift_line["gift_card"]["code_last4"] == card["code"][-4:]
    replay = _ok(_post(http, "/v1/checkouts", body, key), 201)
    assert replay["gift_cards"] is None and replay["secret_redacted"] is True
    looked_up = _ok(_post(http, "/v1/gift-cards/lookup", {"code": card["code"]}))
    assert looked_up["balance"]["amount"] == 2500

    returned = _ok(
        _post(
            http,
            f"/v1/orders/{order['id']}/returns",
            {"lines": [{"line_id": "L1", "quantity": 2, "location_id": outlet}],
             "reason": "wrong_size"},
        ),
        201,
    )  # fmt: skip
    line_paid = order["total"]["amount"] - 2500  # the goods line: 30.00 and its tax
    assert returned["amount"]["amount"] == line_paid * 2 // 3
    assert returned["status"] == "completed" and returned["lines"][0]["location_id"] == outlet
    (refund,) = returned["refunds"]
    assert refund["payment_id"] == sale["payment"]["id"]
    assert refund["amount"] == returned["amount"]
    assert _on_hand(http, sku, outlet) == 2
    # The ledger says what brought the units back: the return.
    ledger = _ok(http.get("/v1/inventory/history", params={"sku": sku, "location_id": outlet}))
    assert [(e["reason"], e["delta"], e["reference"]) for e in ledger["data"]] == [
        ("returned", 2, returned["id"])
    ]
    listed = _ok(http.get(f"/v1/orders/{order['id']}/returns"))
    assert [r["id"] for r in listed["data"]] == [returned["id"]]

    def fed() -> Any:
        # The whole feed, page by page: the shared demo merchant's holds every other test's too.
        found, after = [], 0
        while True:
            page = http.get(
                "/v1/events", params={"types": "order.returned", "limit": 200, "after": after}
            ).json()
            found += [e for e in page["data"] if e["data"]["object"]["id"] == returned["id"]]
            after = page["next_after"]
            if not page["has_more"]:
                return found

    (event,) = _eventually(fed)
    assert event["data"]["object"] == returned
    assert event["data"]["order"]["id"] == order["id"]

    returns = f"/v1/orders/{order['id']}/returns"
    too_many = _post(http, returns, _ask("L1", 2))
    assert too_many.status_code == 400, too_many.text
    assert too_many.headers["content-type"] == "application/problem+json"
    assert [e["field"] for e in too_many.json()["errors"]] == ["lines[0].quantity"]
    # A gift card line comes back only while its card holds all its value: spent a little, no.
    spent = {"code": card["code"], "amount": {"amount": 100, "currency": "USD"}}
    _ok(_post(http, "/v1/gift-cards/redeem", spent))
    gift_back = _post(http, returns, _ask("L2", 1))
    assert gift_back.status_code == 400, gift_back.text
    missing = _post(http, "/v1/orders/ord_made_up/returns", _ask("L1", 1))
    assert missing.status_code == 404, missing.text
    assert len(_ok(http.get(f"/v1/orders/{order['id']}/returns"))["data"]) == 1

    # The receipt of the sale, in the store's time zone, with the return on it.
    receipt_path = f"/v1/orders/{order['id']}/receipt"
    receipt = _ok(http.get(receipt_path))
    store_zone = next(
        loc["time_zone"] for loc in http.get("/v1/locations").json()["data"] if loc["id"] == store
    )
    assert receipt["kind"] == "sale" and receipt["location"]["time_zone"] == store_zone
    assert receipt["total"] == order["total"] and receipt["subtotal"] == order["subtotal"]
    (tender,) = receipt["tenders"]
    assert tender["card_brand"] == "visa" and len(tender["card_last4"]) == 4
    assert receipt["lines"][1]["gift_card_last4"] == card["code"][-4:]
    assert [r["return_id"] for r in receipt["returns"]] == [returned["id"]]
    assert receipt["refunded"] == returned["amount"] and "30 days" in receipt["return_policy"]
    paper = http.get(receipt_path, headers={"Accept": "text/plain"})
    assert paper.status_code == 200 and paper.headers["content-type"].startswith("text/plain")
    total = order["total"]["amount"]
    assert f"USD {total // 100}.{total % 100:02d}" in paper.text and "TOTAL" in paper.text
    page = http.get(receipt_path, params={"format": "html"})
    assert page.headers["content-type"].startswith("text/html") and "<pre>" in page.text
    # The receipt of the return: the units back and the refund to the card.
    slip = _ok(http.get(receipt_path, params={"return_id": returned["id"]}))
    assert slip["kind"] == "return" and slip["total"] == returned["amount"]
    assert [t["card_last4"] for t in slip["tenders"]] == [tender["card_last4"]]
    unknown = http.get(receipt_path, params={"return_id": "ret_made_up"})
    assert unknown.status_code == 404, unknown.text


def test_a_return_without_a_receipt_is_store_credit_for_a_customer(platform: Running) -> None:
    http = platform.http
    sku = f"RNR-{uuid.uuid4().hex[:8].upper()}"
    _ok(_post(http, "/v1/products", {"sku": sku, "name": "No receipt probe",
        "price": {"amount": 1500, "currency": "USD"}}), 201)  # fmt: skip
    store, outlet = [loc["id"] for loc in http.get("/v1/locations").json()["data"][:2]]
    customer = http.get("/v1/customers").json()["data"][0]["id"]
    sale = {"location_id": store, "lines": [{"sku": sku, "quantity": 1}],
            "tender_type": "card", "card_token": "tok_visa"}  # fmt: skip
    _ok(_post(http, "/v1/checkouts", sale), 201)
    body = {"location_id": outlet, "customer_id": customer,
            "lines": [{"sku": sku, "quantity": 2}], "reason": "no_receipt"}  # fmt: skip
    key = str(uuid.uuid4())
    credited = _ok(_post(http, "/v1/returns", body, key), 201)
    ret, credit = credited["order_return"], credited["store_credit"]
    assert ret["amount"] == {"amount": 3000, "currency": "USD"} and ret["refunds"] == []
    assert ret["customer_id"] == customer and ret["order_id"] == ""
    card = _ok(_post(http, "/v1/gift-cards/lookup", {"code": credit["code"]}))
    assert card["id"] == credit["gift_card_id"] and card["reason"] == "store_credit"
    assert card["balance"]["amount"] == 3000 and card["customer_id"] == customer
    assert _on_hand(http, sku, outlet) == 2
    replay = _ok(_post(http, "/v1/returns", body, key), 201)
    assert replay["store_credit"] is None and replay["secret_redacted"] is True
    # Read back by its id, and told as any return: `order.returned`, with no order.
    assert _ok(http.get(f"/v1/returns/{ret['id']}")) == ret
    assert http.get("/v1/returns/ret_made_up").status_code == 404
    (event,) = _eventually(lambda: _fed(http, "order.returned", ret["id"]))
    assert event["data"]["object"] == ret and event["data"]["order"] is None
    never_sold = {**body, "lines": [{"sku": "NEVER-SOLD-SKU", "quantity": 1}]}
    refused = _post(http, "/v1/returns", never_sold)
    assert refused.status_code == 400, refused.text
    assert [e["field"] for e in refused.json()["errors"]] == ["lines[0].sku"]


def test_units_sold_under_a_sku_renamed_since_are_returned_and_restocked(
    platform: Running,
) -> None:
    """The product sold out, then was given another SKU (its stock at zero, so the rename
    went through). A return of the sale, and one without a receipt, still restock the units
    under the SKU they were sold under, and complete: refunded, or credited, once. Before,
    each answered a 404 naming `sku` (no field of theirs) after the refund or the store
    credit was made, and the return stayed pending for ever, its units claimed."""
    http = platform.http
    sku = f"RNM-{uuid.uuid4().hex[:8].upper()}"
    product = _ok(_post(http, "/v1/products", {"sku": sku, "name": "Renamed probe",
                  "price": {"amount": 1500, "currency": "USD"}}), 201)  # fmt: skip
    store = http.get("/v1/locations").json()["data"][0]["id"]
    customer = http.get("/v1/customers").json()["data"][0]["id"]
    received = {"sku": sku, "location_id": store, "delta": 2, "reason": "received"}
    _ok(_post(http, "/v1/inventory/adjustments", received), 201)
    sale = {"location_id": store, "lines": [{"sku": sku, "quantity": 2}],
            "tender_type": "card", "card_token": "tok_visa"}  # fmt: skip
    order = _ok(_post(http, "/v1/checkouts", sale), 201)["order"]
    _eventually(lambda: _on_hand(http, sku, store) == 0)
    _ok(http.patch(f"/v1/products/{product['id']}", json={"sku": f"{sku}-NEW"}))

    ret = _ok(_post(http, f"/v1/orders/{order['id']}/returns", _ask("L1", 1)), 201)
    assert ret["status"] == "completed", ret
    assert [r["amount"] for r in ret["refunds"]] == [ret["amount"]]
    body = {"location_id": store, "customer_id": customer,
            "lines": [{"sku": sku, "quantity": 1}], "reason": "no_receipt"}  # fmt: skip
    credited = _ok(_post(http, "/v1/returns", body), 201)
    assert credited["order_return"]["status"] == "completed", credited
    assert credited["store_credit"]["code"]
    assert _on_hand(http, sku, store) == 2


def test_store_credit_of_a_return_is_not_a_gift_card_sold_in_the_settlement(
    platform: Running,
) -> None:
    """The day a store sells one gift card and credits a return without a receipt: the report
    counts the card sold and the store credit apart. Before, the credit's card counted as a gift
    card sold, so a day of receiptless returns overstated its sales."""
    with platform.new_merchant("Store Credit Settlement") as http:
        seed_demo_data(platform.platform.gateway_url, http.headers["Authorization"][7:])
        store = http.get("/v1/locations").json()["data"][0]
        # The store's day of the sale, the return and the report read after them.
        today = day_with_time_to_spare(store["time_zone"])
        customer = http.get("/v1/customers").json()["data"][0]["id"]
        gift_card = {"amount": {"amount": 2500, "currency": "USD"}}
        sale = {"location_id": store["id"], "tender_type": "card", "card_token": "tok_visa",
                "lines": [{"sku": "MUG-LOGO", "quantity": 1},
                          {"quantity": 1, "gift_card": gift_card}]}  # fmt: skip
        _ok(_post(http, "/v1/checkouts", sale), 201)
        body = {"location_id": store["id"], "customer_id": customer,
                "lines": [{"sku": "MUG-LOGO", "quantity": 1}], "reason": "no_receipt"}  # fmt: skip
        credited = _ok(_post(http, "/v1/returns", body), 201)
        credit = credited["order_return"]["amount"]
        assert credit["amount"] > 0 and credited["store_credit"]["gift_card_id"]

        asked = {"location_id": store["id"], "date": today}
        report = _ok(http.get("/v1/settlement-reports", params=asked))
        assert (report["gift_cards_sold"], report["gift_cards_sold_count"]) == (
            {"amount": 2500, "currency": "USD"},
            1,
        )
        assert (report["store_credit_issued"], report["store_credit_issued_count"]) == (credit, 1)


def _fed(http: httpx.Client, kind: str, object_id: str) -> list[dict[str, Any]]:
    """The feed's events of one type about one object, the whole feed read page by page."""
    found, after = [], 0
    while True:
        page = http.get("/v1/events", params={"types": kind, "limit": 200, "after": after}).json()
        found += [e for e in page["data"] if e["data"]["object"]["id"] == object_id]
        after = page["next_after"]
        if not page["has_more"]:
            return found


def test_an_exchange_through_the_gateway_moves_only_the_difference(platform: Running) -> None:
    """A tee exchanged for a dearer hat: only the difference charged, on a new order that names
    the old one; the receipts show the exchange and the merchant's return policy; a replay
    applies once; short stock for the new line is a 409 and a declined card a 402, and nothing
    moves."""
    http = platform.http
    tag = uuid.uuid4().hex[:8].upper()
    tee, hat = f"XTE-{tag}", f"XHA-{tag}"
    for sku, price in ((tee, 1000), (hat, 2500)):
        _ok(_post(http, "/v1/products", {"sku": sku, "name": f"Exchange {sku}",
            "price": {"amount": price, "currency": "USD"}}), 201)  # fmt: skip
    store = http.get("/v1/locations").json()["data"][0]["id"]
    _ok(_post(http, "/v1/inventory/adjustments", {"sku": hat, "location_id": store,
        "delta": 2, "reason": "received"}), 201)  # fmt: skip
    checkout = {"location_id": store, "lines": [{"sku": tee, "quantity": 2}],
                "tender_type": "card", "card_token": "tok_visa"}  # fmt: skip
    sale = _ok(_post(http, "/v1/checkouts", checkout), 201)
    order = sale["order"]
    policy = f"Exchanges only on sale items ({tag})."
    before = _ok(http.get("/v1/order-settings"))
    _ok(http.patch("/v1/order-settings", json={"return_policy_text": policy},
                   headers={"Idempotency-Key": str(uuid.uuid4())}))  # fmt: skip
    try:
        path = f"/v1/orders/{order['id']}/exchanges"
        body = {"lines": [{"line_id": "L1", "quantity": 1}],
                "new_lines": [{"sku": hat, "quantity": 1}], "reason": "wrong_size",
                "tenders": [{"tender_type": "card", "card_token": "tok_mastercard"}]}  # fmt: skip
        key = str(uuid.uuid4())
        made = _ok(_post(http, path, body, key), 201)
        ret, new = made["order_return"], made["order"]
        due = new["total"]["amount"] - ret["amount"]["amount"]
        assert due > 0 and made["charged"]["amount"] == due and made["refunded"]["amount"] == 0
        assert new["exchange_of"] == order["id"] and ret["exchange_order_id"] == new["id"]
        assert new["status"] == "completed" and ret["refunds"] == []
        assert _on_hand(http, hat, store) == 1
        paid = _ok(http.get(f"/v1/orders/{new['id']}/payments"))
        assert paid["captured"]["amount"] == due and len(paid["payments"]) == 1
        assert paid["balance_due"]["amount"] == 0
        replay = _ok(_post(http, path, body, key), 201)
        assert replay["order"]["id"] == new["id"] and _on_hand(http, hat, store) == 1
        # The new order is announced as any order is, first of all its events.
        (created,) = _eventually(lambda: _fed(http, "order.created", new["id"]))
        assert created["data"]["object"]["exchange_of"] == order["id"]

        receipt = _ok(http.get(f"/v1/orders/{order['id']}/receipt"))
        assert [r["exchange_order_id"] for r in receipt["returns"]] == [new["id"]]
        assert receipt["refunded"]["amount"] == 0 and receipt["return_policy_text"] == policy
        paper = http.get(f"/v1/orders/{new['id']}/receipt", params={"format": "text"}).text
        assert f"Exchange of {order['id']}" in paper and tag in paper

        short = _post(http, path, {**body, "new_lines": [{"sku": hat, "quantity": 5}]})
        assert short.status_code == 409, short.text
        assert short.json()["code"] == "insufficient_stock"
        assert len(_ok(http.get(f"/v1/orders/{order['id']}/returns"))["data"]) == 1
        assert _on_hand(http, hat, store) == 1

        # A declined card is a 402, as at checkout; the hat's hold is let go.
        declined = _post(
            http, path, {**body, "tenders": [{"tender_type": "card", "card_token": "tok_declined"}]}
        )
        assert declined.status_code == 402, declined.text
        assert declined.json()["code"] == "payment_declined"
        assert len(_ok(http.get(f"/v1/orders/{order['id']}/returns"))["data"]) == 1
        assert _on_hand(http, hat, store) == 1
    finally:
        _ok(http.patch("/v1/order-settings",
                       json={"return_policy_text": before.get("return_policy_text", "")},
                       headers={"Idempotency-Key": str(uuid.uuid4())}))  # fmt: skip


def _products(http: httpx.Client, *prices: int) -> tuple[str, list[str]]:
    """New products at these prices, ten of each in stock at the first store; the store."""
    store = http.get("/v1/locations").json()["data"][0]["id"]
    tag = uuid.uuid4().hex[:8].upper()
    skus = []
    for n, price in enumerate(prices):
        sku = f"XS{n}-{tag}"
        _ok(_post(http, "/v1/products", {"sku": sku, "name": f"Settle {sku}",
            "price": {"amount": price, "currency": "USD"}}), 201)  # fmt: skip
        _ok(_post(http, "/v1/inventory/adjustments", {"sku": sku, "location_id": store,
            "delta": 10, "reason": "received"}), 201)  # fmt: skip
        skus.append(sku)
    return store, skus


def test_an_exchange_credit_is_not_refundable_from_the_original_order(platform: Running) -> None:
    """A tee exchanged for a cheaper cap: the difference goes back to the sale's card, and the
    rest of the tee's money pays for the cap and stays on the card, set aside (`credited`). A
    goodwill refund of the whole sale is a 409 naming `amount`, and nothing is refunded; what
    is left is refundable."""
    http = platform.http
    store, (tee, cap) = _products(http, 1000, 900)
    checkout = {"location_id": store, "lines": [{"sku": tee, "quantity": 2}],
                "tender_type": "card", "card_token": "tok_visa"}  # fmt: skip
    sale = _ok(_post(http, "/v1/checkouts", checkout), 201)
    order, payment = sale["order"], sale["payment"]
    exchange = {"lines": [{"line_id": "L1", "quantity": 1}],
                "new_lines": [{"sku": cap, "quantity": 1}], "reason": "wrong_size"}  # fmt: skip
    made = _ok(_post(http, f"/v1/orders/{order['id']}/exchanges", exchange), 201)
    credit, owed = made["order_return"]["credited"]["amount"], made["refunded"]["amount"]
    assert credit > 0 and owed > 0 and made["charged"]["amount"] == 0
    card = _ok(http.get(f"/v1/payments/{payment['id']}"))
    assert (card["credited"]["amount"], card["refunded"]["amount"]) == (credit, owed)

    whole = {"amount": order["total"], "reason": "goodwill"}
    refused = _post(http, f"/v1/orders/{order['id']}/refunds", whole)
    assert refused.status_code == 409, refused.text
    assert refused.headers["content-type"] == "application/problem+json"
    problem = refused.json()
    left = order["total"]["amount"] - credit - owed
    assert problem["code"] == "amount_exceeds_refundable" and problem["refundable"] == left
    ((error),) = problem["errors"]
    assert error["field"] == "amount" and "exchange" in error["reason"]
    assert _ok(http.get(f"/v1/payments/{payment['id']}"))["refunded"]["amount"] == owed

    rest = _ok(_post(http, f"/v1/payments/{payment['id']}/refunds", {"reason": "goodwill"}), 201)
    assert [r["amount"]["amount"] for r in rest["data"]] == [left]
    card = _ok(http.get(f"/v1/payments/{payment['id']}"))
    assert (card["refunded"]["amount"], card["credited"]["amount"]) == (owed + left, credit)


def test_a_return_paid_by_a_gift_card_deactivated_since_is_refunded_to_its_ledger(
    platform: Running,
) -> None:
    """Two tees, 10.00 paid by a gift card deactivated since (reported lost) and the rest by
    card. Their return completes: the card's share goes back to the card, the gift card's to
    the gift card, which stays deactivated and records the refund on its ledger (its balance
    is what it was given back, for the merchant to reissue), as a refund to a closed bank card
    is the issuer's to settle. Until 2026-12-05 the gift card's refund was declined and the
    return was a 409 `refund_partly_failed`, waiting for a person."""
    http = platform.http
    store, (tee,) = _products(http, 2500)
    card = _ok(_post(http, "/v1/gift-cards", {"amount": {"amount": 5000, "currency": "USD"}}), 201)
    gift_card = card["gift_card"]["id"]
    order = _ok(_post(http, "/v1/orders", {"location_id": store,
                "lines": [{"sku": tee, "quantity": 2}]}), 201)  # fmt: skip
    tenders = f"/v1/orders/{order['id']}/tenders"
    _ok(_post(http, tenders, {"tender_type": "gift_card", "gift_card_code": card["code"],
                              "amount": {"amount": 1000, "currency": "USD"}}), 201)  # fmt: skip
    _ok(_post(http, tenders, {"tender_type": "card", "card_token": "tok_visa"}), 201)
    order = _ok(_post(http, f"/v1/orders/{order['id']}/confirm", {}))
    _ok(_post(http, f"/v1/gift-cards/{gift_card}/deactivate", {"reason": "reported lost"}))
    payments = _ok(http.get(f"/v1/orders/{order['id']}/payments"))["payments"]
    by_tender = {p["tender_type"]: p["id"] for p in payments}

    returned = _ok(_post(http, f"/v1/orders/{order['id']}/returns", _ask("L1", 2)), 201)
    assert returned["status"] == "completed" and returned["amount"] == order["total"]
    assert sorted((r["payment_id"], r["status"], r["amount"]["amount"])
                  for r in returned["refunds"]) == sorted([
        (by_tender["gift_card"], "succeeded", 1000),
        (by_tender["card"], "succeeded", order["total"]["amount"] - 1000),
    ])  # fmt: skip
    gift = _ok(http.get(f"/v1/payments/{by_tender['gift_card']}"))
    assert gift["refunded"]["amount"] == 1000
    after = _ok(http.get(f"/v1/gift-cards/{gift_card}"))
    assert (after["status"], after["balance"]["amount"]) == ("deactivated", 1000)
    ledger = _ok(http.get(f"/v1/gift-cards/{gift_card}/activities"))["data"]
    assert [(a["kind"], a["amount"]["amount"]) for a in ledger] == [
        ("activate", 5000), ("redeem", -1000), ("deactivate", -4000), ("refund", 1000),
    ]  # fmt: skip
    # Still deactivated: nothing is spent from it.
    spent = _post(http, "/v1/gift-cards/redeem", {"code": card["code"],
                  "amount": {"amount": 100, "currency": "USD"}})  # fmt: skip
    assert (spent.status_code, spent.json()["code"]) == (409, "gift_card_inactive"), spent.text


def test_a_refund_refused_for_good_is_settled_by_a_person(platform: Running) -> None:
    """Paid with a gift card whose spend its own refund gave back since: the exchange's
    difference cannot go back to it (the processor declines it). The exchange is made (the
    cheaper mug sold), its return waits with `refusal_code`, and the 409 names it. A person
    settles it through the API (cash from the till): once, replayed with the same
    Idempotency-Key, in the audit log with who and why."""
    http = platform.http
    store, (tee, mug) = _products(http, 2500, 1000)
    order, refused = _exchange_that_cannot_refund(http, store, tee, mug)
    assert refused.status_code == 409, refused.text
    problem = refused.json()
    assert problem["code"] == "refund_failed"
    (ret,) = _ok(http.get(f"/v1/orders/{order['id']}/returns"))["data"]
    assert problem["return_id"] == ret["id"]
    assert (ret["status"], ret["refusal_code"], ret["settlement"]) == (
        "pending",
        "refund_failed",
        None,
    )
    owed = ret["amount"]["amount"] - ret["credited"]["amount"]
    path = f"/v1/orders/{order['id']}/returns/{ret['id']}/settle"

    missing = _post(http, path, {"outcome": "paid_out_of_band", "reason": "lost card"})
    assert missing.status_code == 400, missing.text
    assert [e["field"] for e in missing.json()["errors"]] == ["tender_type"]
    nobody = _post(http, f"/v1/orders/{order['id']}/returns/ret_made_up/settle",
                   {"outcome": "refused", "reason": "x"})  # fmt: skip
    assert nobody.status_code == 404, nobody.text

    body = {"outcome": "paid_out_of_band", "tender_type": "cash",
            "reference": "till 1, receipt 88", "reason": "the gift card was lost"}  # fmt: skip
    key = str(uuid.uuid4())
    settled = _ok(_post(http, path, body, key))
    assert settled["id"] == ret["id"] and settled["status"] == "completed"
    assert settled["settlement"]["outcome"] == "paid_out_of_band"
    assert settled["settlement"]["amount"]["amount"] == owed
    assert settled["settlement"]["tender_type"] == "cash"
    assert settled["settlement"]["settled_by"].startswith("key:")
    replay = _post(http, path, body, key)
    assert replay.json() == settled and replay.headers["Idempotent-Replayed"] == "true"
    again = _post(http, path, {"outcome": "refused", "reason": "twice"})
    assert again.status_code == 409 and again.json()["code"] == "return_completed", again.text

    entries = _ok(http.get("/v1/audit-log", params={"action": "return.settled"}))["data"]
    (entry,) = [e for e in entries if e["resource_id"] == ret["id"]]
    assert entry["details"]["reason"] == "the gift card was lost"
    assert entry["details"]["amount"] == owed and entry["credential_id"]


def test_a_refund_settled_as_paid_in_cash_at_a_register_is_not_refunded_again(
    platform: Running,
) -> None:
    """Two tees paid by card, then 10.00 by a gift card whose spend its own refund gave back
    since: a return of one tee gives its card part back and waits for a person (the gift
    card's refund was refused). A
    manager settles it at a register with a shift open: the 10.00 in cash is that drawer's
    pay-out, and it is recorded on the gift card's payment, which no refund can then give back
    again; retried, nothing is recorded twice. The other tee is then refunded to the card."""
    with platform.new_merchant("Settle Out Of Band") as http:
        seed_demo_data(platform.platform.gateway_url, http.headers["Authorization"][7:])
        store, (tee,) = _products(http, 2500)
        manager = _ok(_post(http, "/v1/staff", {"name": "Mona", "role": "manager",
                      "location_ids": [store], "pin": "9753"}), 201)["id"]  # fmt: skip
        register = _ok(_post(http, "/v1/registers", {"location_id": store, "name": "Till"}), 201)
        code = _ok(_post(http, f"/v1/registers/{register['id']}/pairing-codes", {}), 201)["code"]
        url = platform.platform.gateway_url
        paired = _ok(httpx.post(url + "/v1/registers/pair", json={"code": code}), 201)
        with httpx.Client(
            base_url=url, headers={"Authorization": f"Bearer {paired['credential']}"}, timeout=15
        ) as device:
            signed_in = {"staff_id": manager, "pin": "9753"}
            assert _post(device, "/v1/register-sessions", signed_in).is_success
            float_ = {"opening_float": {"amount": 10_000, "currency": "USD"}}
            shift = _ok(_post(device, "/v1/shifts", float_), 201)

            gift_card = _ok(
                _post(http, "/v1/gift-cards", {"amount": {"amount": 5000, "currency": "USD"}}),
                201,
            )
            order = _ok(_post(http, "/v1/orders", {"location_id": store,
                        "lines": [{"sku": tee, "quantity": 2}]}), 201)  # fmt: skip
            tenders = f"/v1/orders/{order['id']}/tenders"
            total = order["total"]["amount"]
            card = {"tender_type": "card", "card_token": "tok_visa",
                    "amount": {"amount": total - 1000, "currency": "USD"}}  # fmt: skip
            _ok(_post(http, tenders, card), 201)
            _ok(_post(http, tenders, {"tender_type": "gift_card",
                                      "gift_card_code": gift_card["code"]}), 201)  # fmt: skip
            order = _ok(_post(http, f"/v1/orders/{order['id']}/confirm", {}))
            gift_card_id = gift_card["gift_card"]["id"]
            given_back = {"amount": {"amount": 1000, "currency": "USD"}}
            _ok(_post(http, f"/v1/gift-cards/{gift_card_id}/refunds", given_back), 201)
            payments = _ok(http.get(f"/v1/orders/{order['id']}/payments"))["payments"]
            by_tender = {p["tender_type"]: p["id"] for p in payments}
            gift = by_tender["gift_card"]

            refused = _post(http, f"/v1/orders/{order['id']}/returns", _ask("L1", 1))
            assert refused.status_code == 409, refused.text
            assert refused.json()["code"] == "refund_partly_failed"
            path = f"/v1/orders/{order['id']}/returns/{refused.json()['return_id']}/settle"
            body = {"outcome": "paid_out_of_band", "tender_type": "cash",
                    "reference": "receipt 88", "reason": "the gift card was lost"}  # fmt: skip
            key = str(uuid.uuid4())
            settled = _ok(_post(device, path, body, key))
            assert settled["status"] == "completed"
            assert settled["settlement"]["amount"]["amount"] == 1000
            replay = _post(device, path, body, key)
            assert replay.json() == settled and replay.headers["Idempotent-Replayed"] == "true"
            again = _post(device, path, body)
            assert again.status_code == 409 and again.json()["code"] == "return_completed"

            report = _ok(device.get(f"/v1/shifts/{shift['id']}"))["report"]
            assert report["pay_outs"]["amount"] == 1000
            assert report["expected_cash"]["amount"] == 10_000 - 1000
            paid = _ok(http.get(f"/v1/payments/{gift}"))
            assert paid["paid_out_of_band"]["amount"] == 1000
            twice = _post(http, f"/v1/payments/{gift}/refunds", {"reason": "goodwill"})
            assert twice.status_code == 409, twice.text
            assert twice.json()["code"] == "amount_exceeds_refundable"
            assert [e["field"] for e in twice.json()["errors"]] == ["amount"]

            other = _ok(_post(http, f"/v1/orders/{order['id']}/returns", _ask("L1", 1)), 201)
            assert [(r["payment_id"], r["status"]) for r in other["refunds"]] == [
                (by_tender["card"], "succeeded")
            ]


def test_a_cash_refund_is_taken_at_a_register_with_an_open_shift_only(
    platform: Running,
) -> None:
    """Two tees sold for cash at a register. Returned from the back office, the cash would
    leave the drawer and count in no shift: a 409 `cash_refund_needs_open_shift` naming
    `tender_amounts`, and nothing is done (no return, no restock, no refund). Taken at the
    register while its shift is open, it goes through: the return names the register, the
    member and the shift, and the shift's drawer expects the cash gone."""
    with platform.new_merchant("Cash Refund Drawer") as http:
        seed_demo_data(platform.platform.gateway_url, http.headers["Authorization"][7:])
        store, (tee,) = _products(http, 2500)
        till = open_till(platform.platform.gateway_url, http, store)
        shift = till.shift
        with closing(till.device) as device:
            sale = {"location_id": store, "lines": [{"sku": tee, "quantity": 2}],
                    "tender_type": "cash",
                    "cash_tendered": {"amount": 10_000, "currency": "USD"}}  # fmt: skip
            sold = _ok(_post(device, "/v1/checkouts", sale), 201)
            order, payment = sold["order"], sold["payment"]
            returns = f"/v1/orders/{order['id']}/returns"
            on_hand = 10 - 2  # once the sale is heard (stock sold by its event)
            _eventually(lambda: _on_hand(http, tee, store) == on_hand)

            refused = _post(http, returns, _ask("L1", 1))
            assert refused.status_code == 409, refused.text
            problem = refused.json()
            assert problem["code"] == "cash_refund_needs_open_shift"
            assert [e["field"] for e in problem["errors"]] == ["tender_amounts"]
            assert payment["id"] in problem["errors"][0]["reason"]
            assert _ok(http.get(returns))["data"] == []
            assert _on_hand(http, tee, store) == on_hand
            assert _ok(http.get(f"/v1/payments/{payment['id']}"))["refunded"]["amount"] == 0

            ret = _ok(_post(device, returns, _ask("L1", 1)), 201)
            assert ret["status"] == "completed"
            assert (ret["register_id"], ret["staff_id"], ret["shift_id"]) == (
                till.register_id, till.staff_id, shift["id"],
            )  # fmt: skip
            assert _ok(http.get(f"/v1/returns/{ret['id']}"))["shift_id"] == shift["id"]
            assert _on_hand(http, tee, store) == on_hand + 1
            report = _ok(device.get(f"/v1/shifts/{shift['id']}"))["report"]
            assert report["cash_refunds"] == ret["amount"]
            expected = 10_000 + order["total"]["amount"] - ret["amount"]["amount"]
            assert report["expected_cash"]["amount"] == expected


def test_an_exchange_giving_cash_back_is_made_at_a_register_with_an_open_shift_only(
    platform: Running,
) -> None:
    """Two tees sold for cash at a register, exchanged for a mug: the difference goes back
    to the cash payment. From the back office it would leave the drawer and count in no
    shift: a 409 `cash_refund_needs_open_shift` naming `new_lines`, and nothing is done (no
    return, no new order, nothing refunded, held or restocked). Made at the register while
    its shift is open, it goes through: the return names the register, the member and the
    shift, and the shift's drawer expects the difference gone."""
    with platform.new_merchant("Cash Exchange Drawer") as http:
        seed_demo_data(platform.platform.gateway_url, http.headers["Authorization"][7:])
        store, (tee, mug) = _products(http, 2500, 1000)
        till = open_till(platform.platform.gateway_url, http, store)
        shift = till.shift
        with closing(till.device) as device:
            sale = {"location_id": store, "lines": [{"sku": tee, "quantity": 2}],
                    "tender_type": "cash",
                    "cash_tendered": {"amount": 10_000, "currency": "USD"}}  # fmt: skip
            sold = _ok(_post(device, "/v1/checkouts", sale), 201)
            order, payment = sold["order"], sold["payment"]
            _eventually(lambda: _on_hand(http, tee, store) == 10 - 2)
            exchanges = f"/v1/orders/{order['id']}/exchanges"
            cheaper = {"lines": [{"line_id": "L1", "quantity": 2}], "reason": "wrong_size",
                       "new_lines": [{"sku": mug, "quantity": 1}]}  # fmt: skip

            refused = _post(http, exchanges, cheaper)
            assert refused.status_code == 409, refused.text
            problem = refused.json()
            assert problem["code"] == "cash_refund_needs_open_shift"
            assert [e["field"] for e in problem["errors"]] == ["new_lines"]
            assert payment["id"] in problem["errors"][0]["reason"]
            assert _ok(http.get(f"/v1/orders/{order['id']}/returns"))["data"] == []
            assert _ok(http.get(f"/v1/payments/{payment['id']}"))["refunded"]["amount"] == 0
            assert (_on_hand(http, tee, store), _on_hand(http, mug, store)) == (8, 10)
            levels = _ok(http.get("/v1/inventory", params={"sku": mug, "location_id": store}))
            assert levels["data"][0]["available"] == 10  # no mug held for a new order

            made = _ok(_post(device, exchanges, cheaper), 201)
            ret, new = made["order_return"], made["order"]
            owed = ret["amount"]["amount"] - new["total"]["amount"]
            assert owed > 0 and made["refunded"]["amount"] == owed
            assert ret["status"] == "completed" and new["exchange_of"] == order["id"]
            assert (ret["register_id"], ret["staff_id"], ret["shift_id"]) == (
                till.register_id, till.staff_id, shift["id"],
            )  # fmt: skip
            report = _ok(device.get(f"/v1/shifts/{shift['id']}"))["report"]
            assert report["cash_refunds"] == {"amount": owed, "currency": "USD"}
            expected = 10_000 + order["total"]["amount"] - owed
            assert report["expected_cash"]["amount"] == expected


def test_an_exchange_sells_an_open_price_product_at_the_price_entered(
    platform: Running,
) -> None:
    """An exchange's new lines take `unit_price` as a checkout's and an order's lines do:
    required for an open-price product, which is sold at it; refused for a fixed-price one.
    Each refusal is a 400 naming `new_lines[i].unit_price`, and nothing is written. Before, a
    new line had no `unit_price`, so an open-price product could not be exchanged for."""
    with platform.new_merchant(f"Open-price exchange {uuid.uuid4().hex[:8]}") as http:
        store = _ok(_post(http, "/v1/locations", {"name": "Main", "currency": "USD",
                    "tax_rate_bps": 1000}), 201)["id"]  # fmt: skip
        _ok(_post(http, "/v1/products", {"sku": "REPAIR", "name": "Repair", "open_price": True,
            "price": {"amount": 500, "currency": "USD"}}), 201)  # fmt: skip
        _ok(_post(http, "/v1/products", {"sku": "FIXED", "name": "Fixed",
            "price": {"amount": 1000, "currency": "USD"}}), 201)  # fmt: skip
        for sku in ("REPAIR", "FIXED"):
            received = {"sku": sku, "location_id": store, "delta": 5, "reason": "received"}
            _ok(_post(http, "/v1/inventory/adjustments", received), 201)
        sale = {"location_id": store, "lines": [{"sku": "FIXED", "quantity": 2}],
                "tender_type": "card", "card_token": "tok_visa"}  # fmt: skip
        order = _ok(_post(http, "/v1/checkouts", sale), 201)["order"]
        path = f"/v1/orders/{order['id']}/exchanges"
        price = {"amount": 1500, "currency": "USD"}

        for new_line in (
            {"sku": "REPAIR", "quantity": 1},
            {"sku": "FIXED", "quantity": 1, "unit_price": price},
        ):
            refused = _post(http, path, {**_ask("L1", 1), "new_lines": [new_line]})
            assert refused.status_code == 400, refused.text
            assert [e["field"] for e in refused.json()["errors"]] == ["new_lines[0].unit_price"]
        assert _ok(http.get(f"/v1/orders/{order['id']}/returns"))["data"] == []

        # 15.00 + 10 % = 16.50 for the repair; the unit returned paid 11.00: 5.50 due.
        repair = {"sku": "REPAIR", "quantity": 1, "unit_price": price}
        ask = {**_ask("L1", 1), "new_lines": [repair],
               "tenders": [{"tender_type": "card", "card_token": "tok_visa"}]}  # fmt: skip
        key = str(uuid.uuid4())
        made = _ok(_post(http, path, ask, key), 201)
        (line,) = made["order"]["lines"]
        assert (line["sku"], line["unit_price"]) == ("REPAIR", price)
        assert made["order"]["total"]["amount"] == 1650
        assert made["charged"]["amount"] == 550 and made["refunded"]["amount"] == 0
        again = _post(http, path, ask, key)
        assert again.json()["order"]["id"] == made["order"]["id"], again.text
        assert len(_ok(http.get(f"/v1/orders/{order['id']}/returns"))["data"]) == 1


def test_an_orders_returns_are_listed_a_page_at_a_time(platform: Running) -> None:
    """An order of a large quantity can have thousands of returns: its list pages as every
    list does (`limit`, `cursor`), oldest first, and a cursor walks its own order's list only.
    Before, every return came in one page and `limit` was not read."""
    http = platform.http
    sku, (store, _) = stocked(http, "PAGED")
    sale = {"location_id": store, "lines": [{"sku": sku, "quantity": 3}],
            "tender_type": "card", "card_token": "tok_visa"}  # fmt: skip
    order = _ok(_post(http, "/v1/checkouts", sale), 201)["order"]
    other = _ok(_post(http, "/v1/checkouts", sale), 201)["order"]
    path = f"/v1/orders/{order['id']}/returns"
    made = [_ok(_post(http, path, _ask("L1", 1)), 201)["id"] for _ in range(3)]
    _ok(_post(http, f"/v1/orders/{other['id']}/returns", _ask("L1", 1)), 201)

    first = _ok(http.get(path, params={"limit": 2}))
    assert [r["id"] for r in first["data"]] == made[:2] and first["next_cursor"]
    rest = _ok(http.get(path, params={"limit": 2, "cursor": first["next_cursor"]}))
    assert [r["id"] for r in rest["data"]] == made[2:] and rest["next_cursor"] is None
    whole = _ok(http.get(path))  # 50 to a page unless asked
    assert [r["id"] for r in whole["data"]] == made and whole["next_cursor"] is None

    for where, params, field in (
        (f"/v1/orders/{other['id']}/returns", {"cursor": first["next_cursor"]}, "cursor"),
        (path, {"cursor": "garbage"}, "cursor"),
        (path, {"limit": 0}, "limit"),
        (path, {"limit": 201}, "limit"),
    ):
        refused = http.get(where, params=params)
        assert refused.status_code == 400, (params, refused.text)
        assert [e["field"] for e in refused.json()["errors"]] == [field], refused.text


def test_a_receiptless_limit_caps_each_customers_store_credit(platform: Running) -> None:
    """The order setting `receiptless_limit`: none by default; set, a return without a receipt
    that would take its customer past it is a 409 with what is left and does nothing (no card,
    no stock); a replay counts once; concurrent returns never pass it together; null lifts it."""
    with platform.new_merchant("Receiptless Limit") as http:
        seed_demo_data(platform.platform.gateway_url, http.headers["Authorization"][7:])
        sku = f"RLM-{uuid.uuid4().hex[:8].upper()}"
        _ok(_post(http, "/v1/products", {"sku": sku, "name": "Limit probe",
            "price": {"amount": 1000, "currency": "USD"}}), 201)  # fmt: skip
        store = http.get("/v1/locations").json()["data"][0]["id"]
        customer = http.get("/v1/customers").json()["data"][0]["id"]
        sale = {"location_id": store, "lines": [{"sku": sku, "quantity": 1}],
                "tender_type": "card", "card_token": "tok_visa"}  # fmt: skip
        _ok(_post(http, "/v1/checkouts", sale), 201)

        def patch(fields: dict[str, Any]) -> httpx.Response:
            return http.patch("/v1/order-settings", json=fields,
                              headers={"Idempotency-Key": str(uuid.uuid4())})  # fmt: skip

        def back(who: str, units: int, key: str | None = None) -> httpx.Response:
            body = {"location_id": store, "customer_id": who,
                    "lines": [{"sku": sku, "quantity": units}], "reason": "no_receipt"}  # fmt: skip
            # Several at once below: a busy machine may answer one a 503, retried as a till
            # retries it, with its key.
            return post_answered(http, "/v1/returns", body, key)

        def cards(who: str) -> int:
            found = _ok(http.get("/v1/gift-cards", params={"customer_id": who, "limit": 100}))
            return len(found["data"])

        before = _ok(http.get("/v1/order-settings"))
        assert before["receiptless_limit"] is None
        bad = patch({"receiptless_limit": {"amount": 2500, "days": 0}})
        assert bad.status_code == 400, bad.text
        assert [e["field"] for e in bad.json()["errors"]] == ["receiptless_limit.days"]
        limited = _ok(patch({"receiptless_limit": {"amount": 2500, "days": 30}}))
        assert limited["receiptless_limit"] == {"amount": 2500, "days": 30}
        assert limited["version"] == before["version"] + 1
        assert _ok(http.get("/v1/order-settings"))["receiptless_limit"] == {
            "amount": 2500,
            "days": 30,
        }

        key = str(uuid.uuid4())
        first = _ok(back(customer, 1, key), 201)["order_return"]
        assert first["amount"]["amount"] == 1000
        stocked = _on_hand(http, sku, store)
        over = back(customer, 2)
        assert over.status_code == 409, over.text
        problem = over.json()
        assert problem["code"] == "receiptless_limit_exceeded" and problem["remaining"] == 1500
        assert _on_hand(http, sku, store) == stocked and cards(customer) == 1
        replay = _ok(back(customer, 1, key), 201)
        assert replay["order_return"]["id"] == first["id"] and cards(customer) == 1
        _ok(back(customer, 1), 201)  # 20.00 of 25.00
        assert back(customer, 1).json()["remaining"] == 500

        # Concurrent returns for another customer: two fit, the others are refused.
        other = _ok(_post(http, "/v1/customers", {"email": f"{uuid.uuid4().hex[:10]}@rl.example"}),
                    201)["id"]  # fmt: skip
        with ThreadPoolExecutor(max_workers=6) as pool:
            answers = list(pool.map(lambda _: back(other, 1), range(6)))
        assert sorted(a.status_code for a in answers) == [201, 201, 409, 409, 409, 409]
        assert {a.json()["code"] for a in answers if a.status_code == 409} == {
            "receiptless_limit_exceeded"
        }
        assert cards(other) == 2

        lifted = _ok(patch({"receiptless_limit": None}))
        assert lifted["receiptless_limit"] is None
        _ok(back(customer, 3), 201)
        assert cards(customer) == 3


def test_every_return_of_the_merchant_is_listed_and_filtered(platform: Running) -> None:
    """`GET /v1/returns` lists the merchant's returns across orders (oldest first, paged),
    narrowed by register, staff member, status and a created window; a register or staff
    member of another merchant is a 404, a reversed window a 400, and a register's own
    credential is refused the merchant-wide list (403)."""
    with platform.new_merchant("Returns List") as http:
        seed_demo_data(platform.platform.gateway_url, http.headers["Authorization"][7:])
        store, (tee,) = _products(http, 2500)
        till = open_till(platform.platform.gateway_url, http, store)
        sale = {"location_id": store, "lines": [{"sku": tee, "quantity": 2}],
                "tender_type": "card", "card_token": "tok_visa"}  # fmt: skip
        with closing(till.device) as device:
            at_till = _ok(_post(device, "/v1/checkouts", sale), 201)["order"]
            back_office = _ok(_post(http, "/v1/checkouts", sale), 201)["order"]
            first = _ok(_post(device, f"/v1/orders/{at_till['id']}/returns", _ask("L1", 1)), 201)
            second = _ok(_post(http, f"/v1/orders/{back_office['id']}/returns", _ask("L1", 1)), 201)
            third = _ok(_post(device, f"/v1/orders/{at_till['id']}/returns", _ask("L1", 1)), 201)
            refused = device.get("/v1/returns")
            assert (refused.status_code, refused.json()["code"]) == (403, "insufficient_scope")

        def ids(**params: Any) -> list[str]:
            return [r["id"] for r in _ok(http.get("/v1/returns", params=params))["data"]]

        everything = [first["id"], second["id"], third["id"]]
        assert ids() == everything
        page = _ok(http.get("/v1/returns", params={"limit": 2}))
        assert [r["id"] for r in page["data"]] == everything[:2]
        rest = {"limit": 2, "cursor": page["next_cursor"]}
        assert ids(**rest) == everything[2:]
        assert ids(register_id=till.register_id) == [first["id"], third["id"]]
        assert ids(staff_id=till.staff_id) == [first["id"], third["id"]]
        assert ids(status="completed") == everything
        assert ids(status="pending") == []
        made = datetime.fromisoformat(second["created_at"].replace("Z", "+00:00"))
        assert ids(created_since=second["created_at"]) == everything[1:]
        assert ids(created_before=second["created_at"]) == everything[:1]
        # A cursor pages on only with the filters it came with.
        moved = http.get("/v1/returns", params={**rest, "status": "completed"})
        assert moved.status_code == 400, moved.text
        assert [e["field"] for e in moved.json()["errors"]] == ["cursor"]
        reversed_window = http.get(
            "/v1/returns",
            params={"created_since": second["created_at"], "created_before": made.isoformat()},
        )
        assert reversed_window.status_code == 400, reversed_window.text
        assert [e["field"] for e in reversed_window.json()["errors"]] == ["created_before"]
        with platform.new_merchant("Returns List Other") as other:
            assert other.get("/v1/returns").json()["data"] == []
            for params in ({"register_id": till.register_id}, {"staff_id": till.staff_id}):
                missing = other.get("/v1/returns", params=params)
                assert missing.status_code == 404, missing.text


def _return_feed(http: httpx.Client, since: str, count: int) -> list[tuple[str, str]]:
    """Every return of `GET /v1/returns?updated_since=` by pages of one, following the feed's
    cursor to its end: (id, status) each; read again until it shows `count` (the feed stops at
    the oldest transaction open in the order service's database, a background task's)."""

    def walk() -> list[tuple[str, str]]:
        seen: list[tuple[str, str]] = []
        cursor = None
        for _ in range(50):
            params = {"updated_since": since, "limit": 1, **({"cursor": cursor} if cursor else {})}
            page = _ok(http.get("/v1/returns", params=params))
            seen += [(r["id"], r["status"]) for r in page["data"]]
            cursor = page["next_cursor"]
            if cursor is None:
                return seen
        raise AssertionError("the feed did not end")

    return polled(walk, lambda seen: len(seen) >= count)


def test_returns_take_updated_since(platform: Running) -> None:
    """`GET /v1/returns` is a change feed with `updated_since`, as `GET /v1/orders` is: oldest
    change first, walked with its own cursor; a return left pending (its refund refused for
    good) moves to the end once a person settles it, so a partner polling from the last
    `updated_at` it saw learns it completed. A time without a zone is a 400 naming
    `updated_since`; the feed's cursor and the list's by id are not each other's."""
    with platform.new_merchant("Returns Feed") as http:
        seed_demo_data(platform.platform.gateway_url, http.headers["Authorization"][7:])
        store, (tee, mug) = _products(http, 2500, 1000)
        order, refused = _exchange_that_cannot_refund(http, store, tee, mug)
        assert refused.status_code == 409, refused.text
        waiting = _ok(http.get(f"/v1/returns/{refused.json()['return_id']}"))
        assert waiting["status"] == "pending" and waiting["updated_at"]

        sale = {"location_id": store, "lines": [{"sku": tee, "quantity": 2}],
                "tender_type": "card", "card_token": "tok_visa"}  # fmt: skip
        sold = _ok(_post(http, "/v1/checkouts", sale), 201)["order"]
        path = f"/v1/orders/{sold['id']}/returns"
        made = [_ok(_post(http, path, _ask("L1", 1)), 201) for _ in range(2)]
        assert all(r["updated_at"] > waiting["updated_at"] for r in made)
        since = waiting["updated_at"]
        assert _return_feed(http, since, 3) == [
            (waiting["id"], "pending"),
            (made[0]["id"], "completed"),
            (made[1]["id"], "completed"),
        ]

        settle = f"/v1/orders/{order['id']}/returns/{waiting['id']}/settle"
        settled = _ok(_post(http, settle, {"outcome": "refused", "reason": "card lost"}))
        assert settled["status"] == "completed" and settled["updated_at"] > made[1]["updated_at"]
        assert _return_feed(http, since, 3) == [
            (made[0]["id"], "completed"),
            (made[1]["id"], "completed"),
            (waiting["id"], "completed"),
        ]
        # Polling again from the last updated_at seen finds the last change (inclusive), only.
        assert _return_feed(http, settled["updated_at"], 1) == [(waiting["id"], "completed")]

        naive = http.get("/v1/returns", params={"updated_since": "2026-01-01T00:00:00"})
        assert naive.status_code == 400, naive.text
        assert [e["field"] for e in naive.json()["errors"]] == ["updated_since"]
        by_id = _ok(http.get("/v1/returns", params={"limit": 1}))["next_cursor"]
        fed = polled(
            lambda: _ok(http.get("/v1/returns", params={"updated_since": since, "limit": 1})),
            lambda page: page["next_cursor"] is not None,
        )["next_cursor"]
        assert by_id and fed
        for cursor, params in ((by_id, {"updated_since": since}), (fed, {})):
            wrong = http.get("/v1/returns", params={**params, "cursor": cursor})
            assert wrong.status_code == 400, wrong.text
            assert [e["field"] for e in wrong.json()["errors"]] == ["cursor"]


def test_an_orders_returns_take_updated_since(platform: Running) -> None:
    """`GET /v1/orders/{id}/returns` takes `updated_since` as `GET /v1/returns` does: the
    order's returns changed at or after it, oldest change first, walked with the feed's own
    cursor (another order's returns never in it); a time without a zone is a 400 naming
    `updated_since`, and the list's cursor by id is not the feed's."""
    http = platform.http
    store, (tee,) = _products(http, 1500)
    sale = {"location_id": store, "lines": [{"sku": tee, "quantity": 3}],
            "tender_type": "card", "card_token": "tok_visa"}  # fmt: skip
    sold, other = (_ok(_post(http, "/v1/checkouts", sale), 201)["order"] for _ in range(2))
    path = f"/v1/orders/{sold['id']}/returns"
    first = _ok(_post(http, path, _ask("L1", 1)), 201)
    _ok(_post(http, f"/v1/orders/{other['id']}/returns", _ask("L1", 1)), 201)
    later = [_ok(_post(http, path, _ask("L1", 1)), 201) for _ in range(2)]
    assert all(r["updated_at"] > first["updated_at"] for r in later)

    def walk(since: str) -> list[str]:
        seen: list[str] = []
        cursor = None
        for _ in range(10):
            params = {"updated_since": since, "limit": 1, **({"cursor": cursor} if cursor else {})}
            page = _ok(http.get(path, params=params))
            seen += [r["id"] for r in page["data"]]
            cursor = page["next_cursor"]
            if cursor is None:
                return seen
        raise AssertionError("the feed did not end")

    assert polled(lambda: walk(first["updated_at"]), lambda seen: len(seen) >= 3) == [
        first["id"], *(r["id"] for r in later)
    ]  # fmt: skip
    # Inclusive: polling again from the last updated_at seen finds that change, only.
    assert walk(later[-1]["updated_at"]) == [later[-1]["id"]]

    naive = http.get(path, params={"updated_since": "2026-01-01T00:00:00"})
    assert naive.status_code == 400, naive.text
    assert [e["field"] for e in naive.json()["errors"]] == ["updated_since"]
    by_id = _ok(http.get(path, params={"limit": 1}))["next_cursor"]
    assert by_id
    wrong = http.get(path, params={"updated_since": first["updated_at"], "cursor": by_id})
    assert wrong.status_code == 400, wrong.text
    assert [e["field"] for e in wrong.json()["errors"]] == ["cursor"]


def test_a_register_reads_only_its_own_locations_returns(platform: Running) -> None:
    """A return is a record of money: a register's credential reads, by id, only the returns
    of its own location (of an order sold or fulfilled there, or units restocked there); one
    of another store, a receiptless one included, is the same 404 as a made-up id."""
    with platform.new_merchant("Returns Confined") as http:
        seed_demo_data(platform.platform.gateway_url, http.headers["Authorization"][7:])
        here, there = [loc["id"] for loc in http.get("/v1/locations").json()["data"][:2]]
        tag = uuid.uuid4().hex[:8].upper()
        sku = f"RC-{tag}"
        _ok(_post(http, "/v1/products", {"sku": sku, "name": "Confined",
            "price": {"amount": 1200, "currency": "USD"}}), 201)  # fmt: skip
        for at in (here, there):
            _ok(_post(http, "/v1/inventory/adjustments", {"sku": sku, "location_id": at,
                "delta": 5, "reason": "received"}), 201)  # fmt: skip
        till = open_till(platform.platform.gateway_url, http, here)

        def returned_at(store: str) -> dict[str, Any]:
            sale = {"location_id": store, "lines": [{"sku": sku, "quantity": 1}],
                    "tender_type": "card", "card_token": "tok_visa"}  # fmt: skip
            order = _ok(_post(http, "/v1/checkouts", sale), 201)["order"]
            path = f"/v1/orders/{order['id']}/returns"
            return dict(_ok(_post(http, path, _ask("L1", 1)), 201))

        ours, theirs = returned_at(here), returned_at(there)
        customer = _ok(_post(http, "/v1/customers", {"email": f"{tag.lower()}@rc.example"}), 201)
        body = {"location_id": there, "customer_id": customer["id"],
                "lines": [{"sku": sku, "quantity": 1}], "reason": "no_receipt"}  # fmt: skip
        receiptless = _ok(_post(http, "/v1/returns", body), 201)["order_return"]
        with closing(till.device) as device:
            assert _ok(device.get(f"/v1/returns/{ours['id']}"))["id"] == ours["id"]
            made_up = device.get("/v1/returns/ret_" + "q" * 20)
            assert made_up.status_code == 404, made_up.text
            for other in (theirs, receiptless):
                answer = device.get(f"/v1/returns/{other['id']}")
                assert answer.status_code == 404, answer.text
                assert (
                    answer.json()["detail"].replace(other["id"], "ret_" + "q" * 20)
                    == (made_up.json()["detail"])
                )
        # The merchant's own credential reads them all.
        for each in (ours, theirs, receiptless):
            assert _ok(http.get(f"/v1/returns/{each['id']}"))["id"] == each["id"]
