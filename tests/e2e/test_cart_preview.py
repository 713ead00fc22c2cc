"""The cart preview (`POST /v1/carts/calculate`) is the checkout's own pricing step: for
generated carts (a few, hypothesis's ci profile) the preview and the completed register sale
agree to the cent, line by line (discounts with their offer and reason, tax per line by tax
category) and in total; a coupon that cannot apply is a reason in the preview, not an error.
A merchant of its own, so no other test's offers or stores are involved."""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from pos_devstack.testing import Running

pytestmark = pytest.mark.e2e

# sku, price, category, tax category
PRODUCTS = [
    ("PV-SHIRT", 2499, "shirts", "standard"),
    ("PV-MUG", 1250, "mugs", "standard"),
    ("PV-TEA", 399, "grocery", "food"),
    ("PV-CARD", 1000, "gifts", "exempt"),
]


def _post(http: httpx.Client, path: str, body: dict[str, Any]) -> httpx.Response:
    return http.post(path, json=body, headers={"Idempotency-Key": str(uuid.uuid4())})


def _ok(answer: httpx.Response, status: int = 201) -> Any:
    assert answer.status_code == status, answer.text
    return answer.json()


@pytest.fixture(scope="module")
def shop(platform: Running) -> Iterator[tuple[httpx.Client, str]]:
    with platform.new_merchant(f"Preview {uuid.uuid4().hex[:8]}") as http:
        store = _ok(
            _post(
                http,
                "/v1/locations",
                {
                    "name": "Preview St",
                    "currency": "USD",
                    "tax_rate_bps": 825,
                    "tax_rates_bps": {"food": 200},
                },
            )
        )
        for sku, price, category, tax in PRODUCTS:
            _ok(
                _post(
                    http,
                    "/v1/products",
                    {
                        "sku": sku,
                        "name": sku.title(),
                        "category": category,
                        "tax_category": tax,
                        "price": {"amount": price, "currency": "USD"},
                    },
                )
            )
        # An automatic item offer (mugs 15 % off) and an order offer (10 % off from 30.00).
        _ok(
            _post(
                http,
                "/v1/promotions",
                {
                    "name": "Mugs 15",
                    "rule": {
                        "kind": "percent_off",
                        "level": "item",
                        "items": {"categories": ["mugs"]},
                        "percent_bps": 1500,
                    },
                },
            )
        )
        _ok(
            _post(
                http,
                "/v1/promotions",
                {
                    "name": "Spend 30 save 10 %",
                    "percent_off_bps": 1000,
                    "minimum_subtotal": {"amount": 3000, "currency": "USD"},
                },
            )
        )
        yield http, store["id"]


def _same(line: dict[str, Any]) -> tuple[Any, ...]:
    return (
        line["sku"],
        line["quantity"],
        line["line_total"],
        line["discount_total"],
        line["tax_total"],
        [(d["promotion_id"], d["amount"]) for d in line["discounts"]],
    )


@settings(
    max_examples=5, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    st.lists(
        st.tuples(st.sampled_from([p[0] for p in PRODUCTS]), st.integers(1, 4)),
        min_size=1,
        max_size=4,
        unique_by=lambda t: t[0],
    )
)
def test_the_preview_and_the_completed_sale_agree_to_the_cent(
    shop: tuple[httpx.Client, str], cart: list[tuple[str, int]]
) -> None:
    http, store = shop
    lines = [{"sku": sku, "quantity": q} for sku, q in cart]
    preview = _ok(_post(http, "/v1/carts/calculate", {"location_id": store, "lines": lines}), 200)
    sale = _ok(
        _post(
            http,
            "/v1/checkouts",
            {
                "location_id": store,
                "lines": lines,
                "tender_type": "cash",
                "cash_tendered": {"amount": 10_000_00, "currency": "USD"},
            },
        )
    )
    order = sale["order"]
    assert order["status"] == "completed"
    for field in ("subtotal", "discount_total", "tax_total", "total"):
        assert preview[field] == order[field], field
    assert sorted(map(_same, preview["lines"])) == sorted(map(_same, order["lines"]))
    # The lines add up to the order, and discounts come before tax.
    assert sum(ln["tax_total"]["amount"] for ln in order["lines"]) == order["tax_total"]["amount"]
    assert order["total"]["amount"] == (
        order["subtotal"]["amount"]
        - order["discount_total"]["amount"]
        + order["tax_total"]["amount"]
    )


def test_a_gift_card_line_is_previewed_as_it_sells(shop: tuple[httpx.Client, str]) -> None:
    http, store = shop
    lines = [{"gift_card": {"amount": {"amount": 5000, "currency": "USD"}}, "quantity": 1},
             {"sku": "PV-MUG", "quantity": 1}]  # fmt: skip
    preview = _ok(_post(http, "/v1/carts/calculate", {"location_id": store, "lines": lines}), 200)
    order = _ok(_post(http, "/v1/orders", {"location_id": store, "lines": lines}))
    for field in ("subtotal", "discount_total", "tax_total", "total"):
        assert preview[field] == order[field], field
    # 50.00 of stored value: no offer, point or tax touches it.
    (card,) = [ln for ln in preview["lines"] if not ln["sku"]]
    assert card["line_total"]["amount"] == 5000
    assert card["discount_total"]["amount"] == card["tax_total"]["amount"] == 0


def test_points_worth_more_than_the_goods_beside_a_gift_card_are_refused_as_by_the_sale(
    shop: tuple[httpx.Client, str],
) -> None:
    """Points discount the goods only, never a gift card sold beside them (stored value): 40.00
    of points on a mug and a 50.00 card are more than the mug costs. The sale refuses them, a
    400 naming redeem_points, and the preview refuses them the same way instead of pricing the
    mug below nothing."""
    http, store = shop
    customer = _ok(_post(http, "/v1/customers", {"email": f"{uuid.uuid4().hex[:10]}@pts.example"}))
    gift = {"points": 4000, "reason": "gift"}
    _ok(_post(http, f"/v1/customers/{customer['id']}/points/adjustments", gift))
    lines = [{"gift_card": {"amount": {"amount": 5000, "currency": "USD"}}, "quantity": 1},
             {"sku": "PV-MUG", "quantity": 1}]  # fmt: skip
    cart = {"location_id": store, "customer_id": customer["id"], "lines": lines,
            "redeem_points": 4000}  # fmt: skip

    preview = _post(http, "/v1/carts/calculate", cart)
    sale = _post(http, "/v1/checkouts", {**cart, "tender_type": "card", "card_token": "tok_visa"})

    assert sale.status_code == 400, sale.text
    assert preview.status_code == 400, preview.text
    assert [e["field"] for e in preview.json()["errors"]] == ["redeem_points"]
    assert preview.json()["errors"] == sale.json()["errors"]


def test_a_worked_cart_to_the_cent_with_a_coupon_that_does_not_apply(
    shop: tuple[httpx.Client, str],
) -> None:
    http, store = shop
    body = {
        "location_id": store,
        "coupon_codes": ["NOT-A-CODE"],
        "lines": [
            {"sku": "PV-MUG", "quantity": 2},
            {"sku": "PV-TEA", "quantity": 1},
            {"sku": "PV-CARD", "quantity": 1},
        ],
    }
    quote = _ok(_post(http, "/v1/carts/calculate", body), 200)
    mug, tea, card = quote["lines"]
    # Mugs 25.00, 15 % off: 3.75 -> 21.25; order 10 % (subtotal 38.99 >= 30.00) on what is
    # left (21.25 + 3.99 + 10.00 = 35.24): 3.524 -> 3.52, spread by largest remainder:
    # 2.125 -> 2.13 (mug), 0.399 -> 0.40 (tea), 1.00 (card) ... summing to 3.52.
    assert (
        mug["discount_total"]["amount"]
        + tea["discount_total"]["amount"]
        + card["discount_total"]["amount"]
        == quote["discount_total"]["amount"]
        == 375 + 352
    )
    assert {d["promotion_id"] for d in mug["discounts"]} and mug["discounts"][0]["reason"]
    # Tax per line on what is left: standard 8.25 %, food 2 %, the exempt card none.
    assert card["tax_total"]["amount"] == 0
    for line, bps in ((mug, 825), (tea, 200)):
        left = line["line_total"]["amount"] - line["discount_total"]["amount"]
        assert line["tax_total"]["amount"] == (left * bps + 5000) // 10000
    assert quote["rejected_coupons"] == [
        {
            "code_index": 0,
            "reason": "coupon_unknown",
            "message": quote["rejected_coupons"][0]["message"],
        }
    ]
    assert quote["discounts_applied"] is True and quote["tax_inclusive"] is False
    assert quote["warnings"] == []


def test_vat_inclusive_prices_and_an_open_price_product_at_the_register(
    shop: tuple[httpx.Client, str],
) -> None:
    """A store whose shelf prices include 19 % VAT (7 % on food): the customer pays the shelf
    price, the tax contained is shown; an open-price product sells at the price entered."""
    http, _ = shop
    berlin = _ok(
        _post(
            http,
            "/v1/locations",
            {
                "name": "Berlin",
                "currency": "USD",
                "tax_rate_bps": 1900,
                "tax_rates_bps": {"food": 700},
                "prices_include_tax": True,
                "time_zone": "Europe/Berlin",
            },
        )
    )
    assert berlin["prices_include_tax"] is True
    deli = _ok(
        _post(
            http,
            "/v1/products",
            {
                "sku": "PV-DELI",
                "name": "Deli by weight",
                "tax_category": "food",
                "open_price": True,
                "price": {"amount": 100, "currency": "USD"},
            },
        )
    )
    assert deli["open_price"] is True
    lines = [
        {"sku": "PV-CARD", "quantity": 1},
        {"sku": "PV-TEA", "quantity": 1},
        {"sku": "PV-DELI", "quantity": 1, "unit_price": {"amount": 749, "currency": "USD"}},
    ]
    # No offer reaches 30.00 here (10.00 + 3.99 + 7.49): shelf prices only.
    preview = _ok(
        _post(http, "/v1/carts/calculate", {"location_id": berlin["id"], "lines": lines}), 200
    )
    assert preview["tax_inclusive"] is True
    card, tea, weighed = preview["lines"]
    assert weighed["unit_price"]["amount"] == 749
    # The exempt card holds no tax; tea 3.99 / 1.07 = 3.73 net: 0.26; deli 7.49 / 1.07 = 7.00
    # net: 0.49. The total is what the shelf says.
    assert [ln["tax_total"]["amount"] for ln in (card, tea, weighed)] == [0, 26, 49]
    assert preview["subtotal"]["amount"] == preview["total"]["amount"] == 1000 + 399 + 749
    assert preview["tax_total"]["amount"] == 75
    sale = _ok(
        _post(
            http,
            "/v1/checkouts",
            {
                "location_id": berlin["id"],
                "lines": lines,
                "tender_type": "cash",
                "cash_tendered": {"amount": 5000, "currency": "USD"},
            },
        )
    )
    for field in ("subtotal", "discount_total", "tax_total", "total"):
        assert sale["order"][field] == preview[field], field
    # Each line keeps the rate it was taxed at (its receipt reads it, whatever the store's
    # rates become).
    assert [
        [(t["name"], t["rate_bps"], t["amount"]["amount"]) for t in ln["taxes"]]
        for ln in sale["order"]["lines"][1:]
    ] == [[("tax", 700, 26)], [("tax", 700, 49)]]
    # The price of an open-price product is entered, and only its price is.
    missing = _post(
        http,
        "/v1/checkouts",
        {
            "location_id": berlin["id"],
            "tender_type": "cash",
            "cash_tendered": {"amount": 5000, "currency": "USD"},
            "lines": [{"sku": "PV-DELI", "quantity": 1}],
        },
    )
    assert missing.status_code == 400, missing.text
    assert "lines[0].unit_price" in {e["field"] for e in missing.json()["errors"]}
    wrong = _post(
        http,
        "/v1/carts/calculate",
        {
            "location_id": berlin["id"],
            "lines": [
                {"sku": "PV-TEA", "quantity": 1, "unit_price": {"amount": 1, "currency": "USD"}}
            ],
        },
    )
    assert wrong.status_code == 400, wrong.text
    assert "lines[0].unit_price" in {e["field"] for e in wrong.json()["errors"]}


def test_a_customer_tagged_tax_exempt_buys_without_tax(shop: tuple[httpx.Client, str]) -> None:
    """The order service learns a customer's tags from the customer service's events (no call
    at sale time): tagged `tax_exempt`, the preview and the sale carry no tax."""
    http, store = shop
    customer = _ok(
        _post(
            http,
            "/v1/customers",
            {"email": f"{uuid.uuid4().hex[:8]}@exempt.example", "tags": ["tax_exempt"]},
        )
    )
    body = {
        "location_id": store,
        "customer_id": customer["id"],
        "lines": [{"sku": "PV-SHIRT", "quantity": 1}],
    }
    deadline = time.monotonic() + 30
    while True:
        quote = _ok(_post(http, "/v1/carts/calculate", body), 200)
        if quote["tax_total"]["amount"] == 0:
            break
        assert time.monotonic() < deadline, "the customer's exemption never reached pricing"
        time.sleep(0.2)
    assert quote["total"]["amount"] == quote["subtotal"]["amount"] == 2499
    sale = _ok(
        _post(
            http,
            "/v1/checkouts",
            {**body, "tender_type": "cash", "cash_tendered": {"amount": 5000, "currency": "USD"}},
        )
    )
    assert sale["order"]["tax_total"]["amount"] == 0 and sale["order"]["total"]["amount"] == 2499
    # Another customer pays the location's 8.25 %.
    other = _ok(_post(http, "/v1/customers", {"email": f"{uuid.uuid4().hex[:8]}@tax.example"}))
    taxed = _ok(_post(http, "/v1/carts/calculate", {**body, "customer_id": other["id"]}), 200)
    assert taxed["tax_total"]["amount"] == 206  # 24.99 x 8.25 % = 2.0617


def test_a_state_and_a_city_tax_are_each_charged_and_shown(
    shop: tuple[httpx.Client, str],
) -> None:
    http, _ = shop
    chicago = _ok(
        _post(
            http,
            "/v1/locations",
            {
                "name": "Chicago",
                "currency": "USD",
                "tax_rate_bps": 0,
                "taxes": [
                    {"name": "state", "rate_bps": 625, "rates_bps": {"food": 100}},
                    {"name": "city", "rate_bps": 225, "rates_bps": {"food": 0}},
                ],
            },
        )
    )
    assert [t["name"] for t in chicago["taxes"]] == ["state", "city"]
    lines = [{"sku": "PV-SHIRT", "quantity": 1}, {"sku": "PV-TEA", "quantity": 1}]
    quote = _ok(
        _post(http, "/v1/carts/calculate", {"location_id": chicago["id"], "lines": lines}), 200
    )
    shirt, tea = quote["lines"]
    # 24.99 x 6.25 % = 1.5619 -> 1.56; x 2.25 % = 0.5623 -> 0.56; tea 3.99 x 1 % -> 0.04
    assert [(t["name"], t["amount"]["amount"]) for t in shirt["taxes"]] == [
        ("state", 156),
        ("city", 56),
    ]
    assert [(t["name"], t["amount"]["amount"]) for t in tea["taxes"]] == [("state", 4), ("city", 0)]
    assert quote["tax_total"]["amount"] == 216 and quote["total"]["amount"] == 2499 + 399 + 216
    bad = _post(
        http,
        "/v1/locations",
        {
            "name": "Bad",
            "currency": "USD",
            "tax_rate_bps": 0,
            "taxes": [{"name": "a", "rate_bps": 1, "compound": True}, {"name": "a", "rate_bps": 1}],
        },
    )
    assert bad.status_code == 400, bad.text
    assert {"taxes", "taxes[0].compound"} <= {e["field"] for e in bad.json()["errors"]}


def test_the_preview_prices_loyalty_points_as_the_sale_does(platform: Running) -> None:
    """Points are one more order discount, before tax: the preview (which holds nothing) and
    the sale that redeems them agree, line by line."""
    http = platform.http
    location = http.get("/v1/locations").json()["data"][0]["id"]
    customer = _ok(_post(http, "/v1/customers", {"email": f"{uuid.uuid4().hex[:10]}@pts.example"}))
    _ok(
        _post(
            http,
            f"/v1/customers/{customer['id']}/points/adjustments",
            {"points": 300, "reason": "gift"},
        )
    )
    cart = {
        "location_id": location,
        "customer_id": customer["id"],
        "redeem_points": 250,
        "lines": [{"sku": "TEE-BLK-M", "quantity": 1}, {"sku": "MUG-LOGO", "quantity": 1}],
    }
    # More than the customer has: the preview refuses as the sale would, naming what is left.
    over = _post(http, "/v1/carts/calculate", {**cart, "redeem_points": 301})
    assert (over.status_code, over.json()["code"]) == (409, "insufficient_points"), over.text
    assert over.json()["available"] == 300
    preview = _ok(_post(http, "/v1/carts/calculate", cart), 200)
    sold = _ok(
        _post(http, "/v1/checkouts", {**cart, "tender_type": "card", "card_token": "tok_visa"})
    )
    order = sold["order"]
    assert order["points_redeemed"] == 250
    for field in ("subtotal", "discount_total", "tax_total", "total"):
        assert preview[field] == order[field], field
    assert sorted(map(_same, preview["lines"])) == sorted(map(_same, order["lines"]))
    points = [
        d["amount"]["amount"]
        for ln in order["lines"]
        for d in ln["discounts"]
        if d["promotion_id"] == "loyalty_points"
    ]
    assert sum(points) == 250  # 250 points at the default 0.01 each, spread on the lines
    # The preview's order discounts name every discount, the points too: they add up.
    assert (
        sum(d["amount"]["amount"] for d in preview["discounts"])
        == preview["discount_total"]["amount"]
    )
    assert [d["amount"]["amount"] for d in preview["discounts"] if d["promotion_id"] ==
            "loyalty_points"] == [250]  # fmt: skip


def test_a_cart_no_order_can_total_is_refused_by_the_preview_as_by_the_sale(
    shop: tuple[httpx.Client, str],
) -> None:
    """More than the largest order total: the preview answers the checkout's own 400 naming
    the lines (not a total near int64's top, nor a 500 once the tax takes it past that)."""
    http, store = shop
    gold = {"sku": "PV-GOLD", "name": "Gold bar", "price": {"amount": 10**12, "currency": "USD"}}
    assert _post(http, "/v1/products", gold).status_code in (201, 409)
    for quantity in (2, 10_000):
        lines = [{"sku": "PV-GOLD", "quantity": quantity}]
        body = {"location_id": store, "lines": lines}
        preview = _post(http, "/v1/carts/calculate", body)
        sale = _post(
            http, "/v1/checkouts", {**body, "tender_type": "card", "card_token": "tok_visa"}
        )
        assert preview.status_code == sale.status_code == 400, preview.text
        assert [e["field"] for e in preview.json()["errors"]] == ["lines"]
        assert preview.json()["errors"] == sale.json()["errors"]
