"""Example answers shown in the OpenAPI document, one per resource, in the shape the routes
return (tests/contract/test_examples.py compares their fields with live answers).

Ids, keys and secrets here are made up: none of them works anywhere.
"""

from __future__ import annotations

from typing import Any

LOCATION_ID = "loc_01j9x6q2b3c4d5e6f7g8h9k0mn"
CUSTOMER_ID = "cus_01j9x6q7r8s9t0v1w2x3y4z5ab"
ORDER_ID = "ord_01j9x6r4c5d6e7f8g9h0j1k2mp"
PAYMENT_ID = "pay_01j9x6r4c7d8e9f0g1h2j3k4mq"
CREATED = "2026-01-15T09:30:00.000Z"
UPDATED = "2026-01-20T14:05:12.250Z"


def usd(amount: int) -> dict[str, Any]:
    return {"amount": amount, "currency": "USD"}


def page(item: dict[str, Any]) -> dict[str, Any]:
    return {"data": [item], "next_cursor": "cHJvZF8wMWo5eDZxMmIzYzRkNWU2ZjdnOGg5azBtbg"}


LOCATION = {
    "id": LOCATION_ID,
    "name": "Downtown Store",
    "currency": "USD",
    "tax_rate_bps": 825,
    "version": 1,
    "created_at": CREATED,
}
PRODUCT = {
    "id": "prod_01j9x6q5k6m7n8p9q0r1s2t3uv",
    "sku": "TEE-BLK-M",
    "name": "Black T-shirt (M)",
    "price": usd(2500),
    "version": 1,
    "created_at": CREATED,
    "updated_at": UPDATED,
}
STOCK_LEVEL = {
    "sku": "TEE-BLK-M",
    "location_id": LOCATION_ID,
    "on_hand": 48,
    "reserved": 2,
    "available": 46,
}
CUSTOMER = {
    "id": CUSTOMER_ID,
    "email": "ada@example.com",
    "given_name": "Ada",
    "family_name": "Lovelace",
    "loyalty_points": 60,
    "version": 2,
    "created_at": CREATED,
    "updated_at": UPDATED,
}
PROMOTION = {
    "id": "promo_01j9x6q9w0x1y2z3a4b5c6d7ef",
    "name": "10% off orders over $50",
    "percent_off_bps": 1000,
    "minimum_subtotal": usd(5000),
    "active": True,
    "created_at": CREATED,
}
ORDER = {
    "id": ORDER_ID,
    "location_id": LOCATION_ID,
    "customer_id": CUSTOMER_ID,
    "lines": [
        {
            "sku": "TEE-BLK-M",
            "name": "Black T-shirt (M)",
            "quantity": 2,
            "unit_price": usd(2500),
            "line_total": usd(5000),
        },
        {
            "sku": "MUG-LOGO",
            "name": "Logo mug",
            "quantity": 1,
            "unit_price": usd(1200),
            "line_total": usd(1200),
        },
    ],
    "subtotal": usd(6200),
    "discount_total": usd(620),
    "tax_total": usd(460),
    "total": usd(6040),
    "status": "confirmed",
    "discounts_applied": True,
    "payment_id": PAYMENT_ID,
    "created_at": UPDATED,
}
PAYMENT = {
    "id": PAYMENT_ID,
    "order_id": ORDER_ID,
    "tender_type": "card",
    "amount": usd(6040),
    "status": "captured",
    "change_due": None,
    "card_summary": "visa •••• 4242",
    "decline_reason": "",
    "created_at": UPDATED,
}
CHECKOUT = {"order": ORDER, "payment": PAYMENT}
API_KEY = {
    "id": "key_01j9x6s1a2b3c4d5e6f7g8h9jk",
    "name": "till 3",
    "key_hint": "pos_test_Xmp1…",
    "mode": "test",
    "scopes": ["catalog:read", "orders:write"],
    "created_at": CREATED,
    "last_used_at": UPDATED,
    "revoked_at": None,
}
NEW_API_KEY = {
    **API_KEY,
    "last_used_at": None,
    "key": "pos_test_Xmp1eKeyNotRealXXXXXXXXXXXXXXXXXXXXXX",
}
REVOKED_API_KEY = {**API_KEY, "revoked_at": UPDATED}
OAUTH_CLIENT = {
    "id": "cli_01j9x6s5m6n7p8q9r0s1t2u3vw",
    "client_id": "cli_01j9x6s5m6n7p8q9r0s1t2u3vw",
    "name": "accounting sync",
    "scopes": ["orders:read"],
    "created_at": CREATED,
    "revoked_at": None,
}
NEW_OAUTH_CLIENT = {**OAUTH_CLIENT, "client_secret": "pos_cs_ExampleSecretNotRealXXXXXXXXXXXXXXXXX"}
REVOKED_OAUTH_CLIENT = {**OAUTH_CLIENT, "revoked_at": UPDATED}
TOKEN = {
    "access_token": "pos_at_ExampleTokenNotReal.XXXXXXXX",
    "token_type": "Bearer",
    "expires_in": 900,
    "scope": "orders:read",
}
MERCHANT = {
    "id": "mer_01j9x6s9x0y1z2a3b4c5d6e7fg",
    "name": "Corner Coffee",
    "api_key": "pos_test_Xmp2eKeyNotRealXXXXXXXXXXXXXXXXXXXXXX",
}
