"""A coupon comes back with a cancelled order, after its confirmation too, every service a
separate process: a one-use coupon redeemed by a confirmed two-shipment order is released when
the whole order is cancelled, or when cancelling its last live fulfilment takes the order with
it, so the coupon's `redeemed_count` is back to 0, the preview accepts the code and another
order gets the use; retried cancels give it back once (`coupon.released` once per order). A
merchant of its own: its codes and offers are nobody else's."""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from pos_devstack.http_checks import eventually, ok, post
from pos_devstack.testing import Running

pytestmark = pytest.mark.e2e

CODE = "ONCE-ONLY"


@pytest.fixture(scope="module")
def shop(platform: Running) -> Iterator[tuple[httpx.Client, str, str, str]]:
    """A store with stock, a promotion that needs a coupon and its one-use code."""
    with platform.new_merchant(f"Coupon cancel {uuid.uuid4().hex[:8]}") as http:
        store = ok(post(http, "/v1/locations",
                          {"name": "Coupon Rd", "currency": "USD", "tax_rate_bps": 0,
                           "ship_enabled": True}), 201)  # fmt: skip
        sku = "CC-TEE"
        ok(post(http, "/v1/products",
                  {"sku": sku, "name": "Tee", "price": {"amount": 2000, "currency": "USD"}}),
            201)  # fmt: skip
        ok(post(http, "/v1/inventory/adjustments",
                  {"sku": sku, "location_id": store["id"], "delta": 50, "reason": "received"}),
            201)  # fmt: skip
        promo = ok(post(http, "/v1/promotions",
                          {"name": "Ten off", "percent_off_bps": 1000, "requires_coupon": True}),
                    201)  # fmt: skip
        ok(post(http, f"/v1/promotions/{promo['id']}/coupons",
                  {"codes": [CODE], "max_uses": 1}), 201)  # fmt: skip
        yield http, store["id"], sku, promo["id"]


def _order(http: httpx.Client, store: str, sku: str) -> dict[str, Any]:
    """A web order of two shipments naming the code, paid by card and confirmed."""
    body = {
        "channel": "web",
        "location_id": store,
        "lines": [
            {"sku": sku, "quantity": 1, "fulfillment": 0},
            {"sku": sku, "quantity": 2, "fulfillment": 1},
        ],
        "fulfillments": [
            {"type": "shipment", "location_id": store, "ship_to": "1 Main St, Springfield"},
            {"type": "shipment", "location_id": store, "ship_to": "1 Main St, Springfield"},
        ],
        "coupon_codes": [CODE.lower()],
    }
    order = ok(post(http, "/v1/orders", body), 201)
    assert order["coupons"][0]["status"] == "reserved"
    ok(post(http, f"/v1/orders/{order['id']}/tenders",
              {"tender_type": "card", "card_token": "tok_visa"}), 201)  # fmt: skip
    confirmed = ok(post(http, f"/v1/orders/{order['id']}/confirm", {}))
    assert confirmed["status"] == "confirmed"
    assert confirmed["coupons"][0]["status"] == "redeemed"
    return dict(confirmed)


def _redeemed_count(http: httpx.Client, promotion_id: str) -> int:
    [coupon] = ok(http.get(f"/v1/promotions/{promotion_id}/coupons"))["data"]
    return int(coupon["redeemed_count"])


def _preview_reasons(http: httpx.Client, store: str, sku: str) -> list[str]:
    body = {"location_id": store, "lines": [{"sku": sku, "quantity": 1}], "coupon_codes": [CODE]}
    quote = ok(post(http, "/v1/carts/calculate", body))
    return [r["reason"] for r in quote["rejected_coupons"]]


def _given_back(http: httpx.Client, store: str, sku: str, promotion_id: str) -> None:
    assert _redeemed_count(http, promotion_id) == 0
    assert _preview_reasons(http, store, sku) == []


def _coupon_events(http: httpx.Client, kind: str) -> list[dict[str, Any]]:
    feed = ok(http.get("/v1/events", params={"types": "coupon.*", "limit": 200}))["data"]
    return [e for e in feed if e["type"] == f"coupon.{kind}"]


def test_a_confirmed_order_cancelled_whole_gives_its_redeemed_coupon_back(
    shop: tuple[httpx.Client, str, str, str],
) -> None:
    http, store, sku, promotion_id = shop
    order = _order(http, store, sku)
    assert _redeemed_count(http, promotion_id) == 1
    assert _preview_reasons(http, store, sku) == ["coupon_exhausted"]

    key = str(uuid.uuid4())
    cancelled = ok(post(http, f"/v1/orders/{order['id']}/cancel", {}, key))
    assert cancelled["status"] == "cancelled"
    assert cancelled["coupons"][0]["status"] == "released"
    _given_back(http, store, sku, promotion_id)
    # Retried with its key, and again with another: given back once, nothing more moves.
    assert ok(post(http, f"/v1/orders/{order['id']}/cancel", {}, key)) == cancelled
    again = ok(post(http, f"/v1/orders/{order['id']}/cancel", {}))
    assert again["status"] == "cancelled" and again["coupons"][0]["status"] == "released"
    _given_back(http, store, sku, promotion_id)
    assert ok(http.get(f"/v1/orders/{order['id']}"))["coupons"][0]["status"] == "released"
    _next_order_takes_the_use_and_gives_it_back(http, store, sku, promotion_id)


def test_the_last_fulfilment_cancelled_gives_the_orders_redeemed_coupon_back(
    shop: tuple[httpx.Client, str, str, str],
) -> None:
    http, store, sku, promotion_id = shop
    order = _order(http, store, sku)
    first, second = order["fulfillments"]
    path = f"/v1/orders/{order['id']}/fulfillments"
    kept = ok(post(http, f"{path}/{first['id']}/cancel", {}))
    # One shipment still goes: the order stands, and so does its coupon's use.
    assert kept["status"] == "confirmed" and kept["coupons"][0]["status"] == "redeemed"
    assert _redeemed_count(http, promotion_id) == 1
    key = str(uuid.uuid4())
    last = ok(post(http, f"{path}/{second['id']}/cancel", {}, key))
    assert last["status"] == "cancelled"
    assert last["coupons"][0]["status"] == "released"
    _given_back(http, store, sku, promotion_id)
    retried = ok(post(http, f"{path}/{second['id']}/cancel", {}, key))
    assert retried["status"] == "cancelled" and retried["coupons"][0]["status"] == "released"
    _given_back(http, store, sku, promotion_id)
    _next_order_takes_the_use_and_gives_it_back(http, store, sku, promotion_id)


def _next_order_takes_the_use_and_gives_it_back(
    http: httpx.Client, store: str, sku: str, promotion_id: str
) -> None:
    """The use is the next customer's: their order redeems it; cancelled, it is free again."""
    following = _order(http, store, sku)
    assert _redeemed_count(http, promotion_id) == 1
    ok(post(http, f"/v1/orders/{following['id']}/cancel", {}))
    _given_back(http, store, sku, promotion_id)


def test_partners_hear_each_redeemed_use_given_back_once(
    shop: tuple[httpx.Client, str, str, str],
) -> None:
    """`coupon.redeemed` told partners a use was spent; `coupon.released` tells them it was
    given back, once per order however often the cancel is asked. Every order of this
    merchant's coupon is cancelled by the end of each test, so the two counts meet."""
    http, store, sku, promotion_id = shop
    order = _order(http, store, sku)
    ok(post(http, f"/v1/orders/{order['id']}/cancel", {}))
    ok(post(http, f"/v1/orders/{order['id']}/cancel", {}))  # asked again: nothing more
    # Every order of this merchant redeemed the one use (`_order`): that many redemptions
    # reach the feed, later than the orders' answers (the feed follows the promotion's
    # events), and as many releases.
    made = len(ok(http.get("/v1/orders", params={"limit": 200}))["data"])
    spent = eventually(lambda: len(found := _coupon_events(http, "redeemed")) == made and found)
    back = eventually(lambda: len(found := _coupon_events(http, "released")) >= made and found)
    time.sleep(1)  # a duplicate would have reached the feed by now
    assert len(_coupon_events(http, "released")) == len(back) == len(spent)
    # One use at most: each release takes the count from 1 back to 0.
    assert all(e["data"]["object"]["redeemed_count"] == 0 for e in back)
    assert all(e["data"]["object"]["code_hint"] == "NLY" for e in back)
    assert all("code" not in e["data"]["object"] for e in back)
    assert _redeemed_count(http, promotion_id) == 0
