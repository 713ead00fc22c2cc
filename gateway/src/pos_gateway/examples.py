"""Example answers shown in the OpenAPI document, one per resource, in the shape the routes
return (tests/contract/test_examples.py compares their fields with live answers).

Ids, keys and secrets here are made up: none of them works anywhere.
"""

from __future__ import annotations

from typing import Any

from pos_gateway.keys import ALL_SCOPES

LOCATION_ID = "loc_01j9x6q2b3c4d5e6f7g8h9k0mn"
CUSTOMER_ID = "cus_01j9x6q7r8s9t0v1w2x3y4z5ab"
ORDER_ID = "ord_01j9x6r4c5d6e7f8g9h0j1k2mp"
PAYMENT_ID = "pay_01j9x6r4c7d8e9f0g1h2j3k4mq"
CREATED = "2026-01-15T09:30:00.000Z"
UPDATED = "2026-01-20T14:05:12.250Z"


def usd(amount: int) -> dict[str, Any]:
    return {"amount": amount, "currency": "USD"}


def page(item: dict[str, Any]) -> dict[str, Any]:
    # A cursor as /v1/products gives one (pos_kit.paging.encode_token).
    return {"data": [item], "next_cursor": "AXByb2RfMDFqOXg2cTJiM2M0ZDVlNmY3ZzhoOWswbW5HEz_C"}


def listed(item: dict[str, Any]) -> dict[str, Any]:
    """A list answer that is never paged."""
    return {"data": [item], "next_cursor": None}


LOCATION = {
    "id": LOCATION_ID,
    "name": "Downtown Store",
    "currency": "USD",
    "tax_rate_bps": 825,
    "version": 1,
    "created_at": CREATED,
    "updated_at": CREATED,
    "kind": "store",
    "address": {
        "line1": "1 Main St",
        "line2": "",
        "city": "Springfield",
        "region": "IL",
        "postal_code": "62701",
        "country": "US",
    },
    "geo": {"latitude": 39.7817, "longitude": -89.6501},
    "time_zone": "America/Chicago",
    "tax_rates_bps": {"food": 200},
    "pickup_enabled": True,
    "ship_enabled": True,
    "prices_include_tax": False,
    "taxes": [],
    "status": "active",
}
PRODUCT = {
    "id": "prod_01j9x6q5k6m7n8p9q0r1s2t3uv",
    "sku": "TEE-BLK",
    "name": "Black T-shirt",
    "price": usd(2500),
    "version": 1,
    "created_at": CREATED,
    "updated_at": UPDATED,
    "description": "Organic cotton, regular fit",
    "category": "apparel",
    "tax_category": "standard",
    "status": "active",
    "external_id": "erp-10442",
    "barcodes": ["00012345678905"],
    "variants": [
        {
            "id": "var_01j9x6q5k6m7n8p9q0r1s2t3uw",
            "sku": "TEE-BLK-M",
            "name": "M",
            "options": {"size": "M"},
            "price": usd(2500),
            "barcodes": [],
            "unit_cost": None,
        }
    ],
    "open_price": False,
    "unit_cost": usd(980),
}
STOCK_LEVEL = {
    "sku": "TEE-BLK-M",
    "location_id": LOCATION_ID,
    "on_hand": 48,
    "reserved": 2,
    "available": 46,
    "updated_at": UPDATED,
}
LEDGER_ENTRY = {
    "id": "led_01m8y0n0c4q2w7k9d3f5h6j8tv",
    "sku": "TEE-BLK-M",
    "location_id": LOCATION_ID,
    "kind": "adjustment",
    "reason": "received",
    "quantity": 24,
    "delta": 24,
    "on_hand_after": 48,
    "superseded": False,
    "occurred_at": UPDATED,
    "recorded_at": UPDATED,
    "reference": "po-2291",
    "note": "",
}
ADJUSTED = {**STOCK_LEVEL, "entry": LEDGER_ENTRY}
COUNTED = {"level": STOCK_LEVEL, "entry": {**LEDGER_ENTRY, "kind": "count", "reason": None}}
TRANSFER = {
    "transfer_id": "trf_01j9x6t1a2b3c4d5e6f7g8h9jk",
    "levels": [STOCK_LEVEL],
    "entries": [{**LEDGER_ENTRY, "kind": "transfer_out", "reason": None, "delta": -2}],
}
THRESHOLD = {"sku": "TEE-BLK-M", "threshold": 5}
RESERVATION = {
    "id": "res_01j9x6t5a2b3c4d5e6f7g8h9jk",
    "location_id": LOCATION_ID,
    "status": "active",
    "lines": [{"sku": "TEE-BLK-M", "quantity": 2}],
    "reference": "cart-8812",
    "expires_at": "2026-01-20T14:20:12.250Z",
    "created_at": UPDATED,
    "updated_at": UPDATED,
}
HELD = {**RESERVATION, "levels": [STOCK_LEVEL]}
AVAILABILITY = {
    "sku": "TEE-BLK-M",
    "on_hand": 48,
    "reserved": 2,
    "available": 46,
    "locations": [STOCK_LEVEL],
}
NEARBY = {"location": LOCATION, "distance_km": 2.4, "levels": [STOCK_LEVEL]}
UPSERTED = {
    "data": [
        {
            "index": 0,
            "external_id": "erp-10442",
            "status": "created",
            "product": PRODUCT,
            "error": None,
        }
    ],
    "summary": {"created": 1, "updated": 0, "unchanged": 0, "failed": 0},
}
SOURCING = {
    "strategy": "single",
    "allocations": [
        {
            "location_id": LOCATION_ID,
            "distance_km": 2.4,
            "lines": [{"sku": "TEE-BLK-M", "quantity": 2}],
            "reservation_id": "res_01j9x6t5a2b3c4d5e6f7g8h9jk",
        }
    ],
    "reason": "Downtown Store is the nearest that ships and has every line",
    "reason_code": "nearest_with_all_lines",
    "short": [],
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
    "phone": "+442079460958",
    "external_id": "crm-1042",
    "addresses": [
        {
            "label": "home",
            "line1": "12 St James's Square",
            "line2": "",
            "city": "London",
            "region": "",
            "postal_code": "SW1Y 4LB",
            "country": "GB",
        }
    ],
    "birthday": "1985-12-10",
    "notes": "Prefers email receipts",
    "marketing_consent": {"granted": True, "given_at": CREATED, "channel": "in_store"},
    "tags": ["vip"],
    "group_ids": ["cgrp_01j9x6q7r8s9t0v1w2x3y4z5cd"],
    "status": "active",
    "merged_into": "",
    "points_held": 0,
    "tier": "gold",
}
GROUP = {
    "id": "cgrp_01j9x6q7r8s9t0v1w2x3y4z5cd",
    "name": "VIP",
    "description": "Spent over 1,000 last year",
    "member_count": 42,
    "created_at": CREATED,
    "version": 1,
    "updated_at": CREATED,
    "status": "active",
}
POINTS_ENTRY = {
    "id": "pte_01j9x6r4c5d6e7f8g9h0j1k2mp",
    "customer_id": CUSTOMER_ID,
    "kind": "earned",
    "points": 60,
    "balance_after": 60,
    "order_id": "ord_01j9x6r4c5d6e7f8g9h0j1k2mp",
    "reason": "",
    "created_at": UPDATED,
}
PURCHASE = {
    "order_id": "ord_01j9x6r4c5d6e7f8g9h0j1k2mp",
    "location_id": "loc_01j9x6q2b3c4d5e6f7g8h9k0mn",
    "total": usd(6040),
    "points_earned": 60,
    "ordered_at": UPDATED,
    "status": "confirmed",
    "returned": usd(0),
}
PURCHASE_HISTORY = {
    "data": [PURCHASE],
    "next_cursor": None,
    "summary": {
        "lifetime_spend": usd(6040),
        "lifetime_spend_by_currency": [usd(6040)],
        "visit_count": 1,
        "last_visit_at": UPDATED,
        "favourite_location_id": "loc_01j9x6q2b3c4d5e6f7g8h9k0mn",
    },
}
LOYALTY_PROGRAM = {
    "enabled": True,
    "points_per_unit": 1,
    "rounding": "down",
    "earning_tenders": [],
    "excluded_skus": ["GIFT-CARD"],
    "tiers": [{"name": "gold", "threshold_points": 1000, "multiplier_bps": 15000}],
    "expiry_days": 365,
    "tier_period_days": 365,
    "point_value_minor": 1,
    "version": 3,
}
_EVERY_LINE: dict[str, list[str]] = {"skus": [], "product_ids": [], "categories": []}
PROMOTION = {
    "id": "promo_01j9x6q9w0x1y2z3a4b5c6d7ef",
    "name": "10% off orders over $50",
    "percent_off_bps": 1000,
    "minimum_subtotal": usd(5000),
    "active": True,
    "created_at": CREATED,
    "rule": {
        "kind": "percent_off",
        "level": "order",
        "items": _EVERY_LINE,
        "percent_bps": 1000,
        "amount": None,
        "buy_quantity": 0,
        "get_quantity": 0,
        "get_items": None,
        "tiers": [],
        "limit_per_order": 0,
    },
    "conditions": {
        "starts_at": "2026-12-01T00:00",
        "ends_at": "2027-01-01T00:00",
        "time_zone": "America/New_York",
        "days_of_week": [],
        "hours_from": "",
        "hours_until": "",
        "channels": [],
        "location_ids": [],
        "customer_groups": [],
        "min_quantity": 0,
        "min_amount": usd(5000),
    },
    "priority": 0,
    "exclusive": False,
    "stackable": True,
    "requires_coupon": False,
    "status": "active",
    "version": 1,
    "updated_at": CREATED,
    "ended_at": None,
    "used": False,
    "schedule_state": "running",
}
COUPON = {
    "id": "cpn_01j9x6qa1b2c3d4e5f6g7h8j9k",
    "promotion_id": PROMOTION["id"],
    "code_hint": "-26",
    "max_uses": 500,
    "max_uses_per_customer": 1,
    "redeemed_count": 0,
    "reserved_count": 0,
    "expires_at": "2027-01-01T00:00:00.000Z",
    "created_at": CREATED,
    "status": "active",
    "deactivated_at": None,
    "updated_at": CREATED,
}
COUPON_DEACTIVATED = {
    **COUPON,
    "status": "deactivated",
    "deactivated_at": UPDATED,
    "updated_at": UPDATED,
}
COUPON_BATCH = {"coupons": [COUPON], "codes": ["WINTER-26"], "secret_redacted": False}
REGISTER_ID = "reg_01j9x6v1a2b3c4d5e6f7g8h9jk"
STAFF_ID = "stf_01j9x6v2b3c4d5e6f7g8h9j0km"

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
            "fulfillment_id": f"{ORDER_ID}-1",
            "discount_total": usd(500),
            "tax_total": usd(371),
            "tax_category": "standard",
            "discounts": [
                {
                    "promotion_id": PROMOTION["id"],
                    "amount": usd(500),
                    "reason": "10% off over $50",
                    "requested_by": "",
                }
            ],
            "taxes": [{"name": "tax", "amount": usd(371), "rate_bps": 825, "compound": False}],
            "id": "L1",
            "gift_card": None,
        },
        {
            "sku": "MUG-LOGO",
            "name": "Logo mug",
            "quantity": 1,
            "unit_price": usd(1200),
            "line_total": usd(1200),
            "fulfillment_id": f"{ORDER_ID}-1",
            "discount_total": usd(120),
            "tax_total": usd(89),
            "tax_category": "standard",
            "discounts": [
                {
                    "promotion_id": PROMOTION["id"],
                    "amount": usd(120),
                    "reason": "10% off over $50",
                    "requested_by": "",
                }
            ],
            "taxes": [{"name": "tax", "amount": usd(89), "rate_bps": 825, "compound": False}],
            "id": "L2",
            "gift_card": None,
        },
    ],
    "subtotal": usd(6200),
    "discount_total": usd(620),
    "tax_total": usd(460),
    "total": usd(6040),
    "status": "completed",
    "discounts_applied": True,
    "warnings": [],
    "payment_id": PAYMENT_ID,
    "created_at": UPDATED,
    "channel": "register",
    "version": 3,
    "updated_at": UPDATED,
    "fulfillments": [
        {
            "id": f"{ORDER_ID}-1",
            "type": "in_store",
            "status": "fulfilled",
            "location_id": LOCATION_ID,
            "reservation_id": "",
            "carrier": "",
            "tracking_number": "",
            "amount": usd(6040),
            "captured": usd(6040),
            "refunded": usd(0),
            "expires_at": None,
            "ship_to": "",
            "destination": None,
        }
    ],
    "timeline": [
        {"status": "pending_payment", "at": UPDATED, "reason": ""},
        {"status": f"{ORDER_ID}-1:reserved", "at": UPDATED, "reason": ""},
        {"status": "confirmed", "at": UPDATED, "reason": ""},
        {"status": f"{ORDER_ID}-1:fulfilled", "at": UPDATED, "reason": ""},
        {"status": "completed", "at": UPDATED, "reason": ""},
    ],
    "notes": "",
    "metadata": {},
    "cancel_reason": "",
    "payment_ids": [PAYMENT_ID],
    "tender_types": ["card"],
    "tender_amounts": [6040],
    "tenders_to_record": [],
    "paid": usd(6040),
    "cancelled_total": usd(0),
    "coupons": [],
    "points_redeemed": 0,
    "register_id": REGISTER_ID,
    "staff_id": STAFF_ID,
    "exchange_of": "",
    "exchange_return_id": "",
    "exchange_credit": None,
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
    "reference": "",
    "location_id": LOCATION_ID,
    "tip": usd(0),
    "total": usd(6040),
    "authorized": usd(6040),
    "captured": usd(6040),
    "refunded": usd(0),
    "credited": usd(0),
    "paid_out_of_band": usd(0),
    "voided": usd(0),
    "decline_code": "",
    "card_brand": "visa",
    "card_last4": "4242",
    "cash_tendered": None,
    "external_reference": "",
    "expires_at": None,
    "updated_at": UPDATED,
    "version": 2,
}
TERMINAL_CHECKOUT = {
    "id": "tmc_01j9x6t9c3d4e5f6g7h8j9k0mn",
    "order_id": "",
    "reference": "register 2 sale 1187",
    "location_id": LOCATION_ID,
    "device_id": "sandbox_reader_approve",
    "amount": usd(6040),
    "tip": usd(500),
    "status": "completed",
    "payment_id": PAYMENT_ID,
    "decline_code": "",
    "deadline": "2026-01-20T14:10:12.250Z",
    "created_at": UPDATED,
    "updated_at": UPDATED,
}
ORDER_PAYMENTS = {
    "order_id": ORDER_ID,
    "authorized": usd(6040),
    "captured": usd(6040),
    "refunded": usd(0),
    "balance_due": usd(0),
    "payments": [PAYMENT],
}
PAYMENT_SETTINGS = {"authorization_window_seconds": 259200, "updated_at": UPDATED, "version": 2}
REFUND = {
    "id": "rfd_01j9x6t2b3c4d5e6f7g8h9j0km",
    "payment_id": PAYMENT_ID,
    "order_id": ORDER_ID,
    "tender_type": "card",
    "amount": usd(2500),
    "status": "succeeded",
    "reason": "returned: wrong size",
    "lines": [{"sku": "TEE-BLK-M", "quantity": 1}],
    "failure_code": "",
    "created_at": UPDATED,
    "updated_at": UPDATED,
}
CHECKOUT = {"order": ORDER, "payment": PAYMENT, "gift_cards": None, "secret_redacted": False}
CART = {
    "lines": ORDER["lines"],
    "discounts": [
        {
            "promotion_id": PROMOTION["id"],
            "amount": usd(620),
            "reason": "10% off over $50",
            "level": "order",
            "requested_by": "",
        }
    ],
    "subtotal": usd(6200),
    "discount_total": usd(620),
    "tax_total": usd(460),
    "total": usd(6040),
    "discounts_applied": True,
    "warnings": [],
    "rejected_coupons": [
        {"code_index": 0, "reason": "coupon_expired", "message": "codes[0]: the coupon expired"}
    ],
    "tax_inclusive": False,
}
RETURN_ID = "ret_01j9x6w2b3c4d5e6f7g8h9j0kp"
# One of the two T-shirts of ORDER back: 25.00 less its share of the 6.20 off (2.50), with its
# share of the tax, floored: the second T-shirt back refunds the cent left (24.36).
RETURN: dict[str, Any] = {
    "id": RETURN_ID,
    "order_id": ORDER_ID,
    "lines": [
        {
            "line_id": "L1",
            "sku": "TEE-BLK-M",
            "quantity": 1,
            "restock": True,
            "location_id": LOCATION_ID,
            "amount": usd(2435),
        }
    ],
    "reason": "wrong_size",
    "override_reason": "",
    "amount": usd(2435),
    "status": "completed",
    "refunds": [
        {
            "refund_id": "rfd_01j9x6t2b3c4d5e6f7g8h9j0km",
            "payment_id": PAYMENT_ID,
            "amount": usd(2435),
            "status": "succeeded",
        }
    ],
    "created_at": UPDATED,
    "completed_at": UPDATED,
    "customer_id": "",
    "store_credit_gift_card_id": "",
    "refusal_code": "",
    "settlement": None,
    # Taken from the back office: a card refund needs no register (a cash one does).
    "register_id": "",
    "staff_id": "",
    "shift_id": "",
    "updated_at": UPDATED,
}
# A cash refund asked from the back office (the problem of POST /v1/orders/{id}/returns; an
# exchange's and a refund's below).
CASH_REFUND_NEEDS_OPEN_SHIFT = {
    "type": "https://docs.omnitill.dev/problems/cash_refund_needs_open_shift",
    "title": "Conflict",
    "status": 409,
    "detail": "a cash refund is paid out of a register's drawer and needs a register with an "
    "open shift: it is made from the back office",
    "code": "cash_refund_needs_open_shift",
    "errors": [
        {
            "field": "tender_amounts",
            "reason": f"the refund goes back to a cash payment ({PAYMENT_ID}), which needs a "
            "register with an open shift: it is made from the back office; take the return "
            "at a register with an open shift, or name tender_amounts on the order's other "
            "payments",
        }
    ],
}
# The same refusal of an exchange whose difference goes back to a cash payment, made from the
# back office (POST /v1/orders/{id}/exchanges).
EXCHANGE_CASH_NEEDS_OPEN_SHIFT = {
    **CASH_REFUND_NEEDS_OPEN_SHIFT,
    "errors": [
        {
            "field": "new_lines",
            "reason": "cost less than the returned units, and the difference goes back to a "
            f"cash payment ({PAYMENT_ID}), which needs a register with an open shift: it is "
            "made from the back office; make the exchange at a register with an open shift",
        }
    ],
}
# And of a refund through the payments API of a cash payment, asked from the back office
# (POST /v1/payments/{id}/refunds, POST /v1/orders/{id}/refunds).
REFUND_CASH_NEEDS_OPEN_SHIFT = {
    **CASH_REFUND_NEEDS_OPEN_SHIFT,
    "errors": [
        {
            "field": "amount",
            "reason": f"goes back to a cash payment ({PAYMENT_ID}), which needs a register with "
            "an open shift: it is made from the back office; refund it at a register with an "
            "open shift",
        }
    ],
}
# And of a cancel of an order paid in cash, asked from the back office
# (POST /v1/orders/{id}/cancel; a fulfilment's cancel names `fulfillment_id`).
CANCEL_CASH_NEEDS_OPEN_SHIFT = {
    **CASH_REFUND_NEEDS_OPEN_SHIFT,
    "errors": [
        {
            "field": "order_id",
            "reason": f"this order was paid in cash ({PAYMENT_ID}) and its cancel gives that "
            "cash back, which needs a register with an open shift: it is made from the back "
            "office; cancel it at a register with an open shift",
        }
    ],
}
FULFILLMENT_CANCEL_CASH_NEEDS_OPEN_SHIFT = {
    **CASH_REFUND_NEEDS_OPEN_SHIFT,
    "errors": [
        {
            "field": "fulfillment_id",
            "reason": f"this fulfilment was paid in cash ({PAYMENT_ID}) and its cancel gives "
            "that cash back, which needs a register with an open shift: it is made from the "
            "back office; cancel it at a register with an open shift",
        }
    ],
}
# A return whose card refund the processor refused (the card was closed), settled by the member
# at the register with cash from the till.
RETURN_SETTLED = {
    **RETURN,
    "refunds": [{**RETURN["refunds"][0], "status": "failed"}],
    "refusal_code": "refund_failed",
    "settlement": {
        "outcome": "paid_out_of_band",
        "amount": usd(2435),
        "tender_type": "cash",
        "reference": "till 2, receipt 4471",
        "reason": "the card was closed: refunded in cash",
        "settled_by": STAFF_ID,
        "settled_at": UPDATED,
    },
}
EXCHANGE_ORDER_ID = "ord_01j9x6w4c5d6e7f8g9h0j1k2mq"
# The T-shirt of RETURN exchanged for a mug (12.00 + 8.25 % = 12.99): 24.35 - 12.99 = 11.36
# refunded, the rest credited to the new order.
EXCHANGE = {
    "order_return": {
        **RETURN,
        "refunds": [{**RETURN["refunds"][0], "amount": usd(1136)}],
        "exchange_order_id": EXCHANGE_ORDER_ID,
        "credited": usd(1299),
    },
    "order": {
        **ORDER,
        "id": EXCHANGE_ORDER_ID,
        "lines": [
            {
                **ORDER["lines"][1],  # type: ignore[index]
                "fulfillment_id": f"{EXCHANGE_ORDER_ID}-1",
                "discount_total": usd(0),
                "tax_total": usd(99),
                "discounts": [],
                "taxes": [{"name": "tax", "amount": usd(99), "rate_bps": 825, "compound": False}],
                "id": "L1",
            }
        ],
        "subtotal": usd(1200),
        "discount_total": usd(0),
        "tax_total": usd(99),
        "total": usd(1299),
        "payment_id": "",
        "payment_ids": [],
        "tender_types": [],
        "tender_amounts": [],
        "paid": usd(1299),
        "cancelled_total": usd(0),
        "fulfillments": [
            {
                **ORDER["fulfillments"][0],  # type: ignore[index]
                "id": f"{EXCHANGE_ORDER_ID}-1",
                "reservation_id": "res_01j9x6w5c6d7e8f9g0h1j2k3mr",
                "amount": usd(1299),
                "captured": usd(0),
            }
        ],
        "timeline": [
            {**change, "status": change["status"].replace(ORDER_ID, EXCHANGE_ORDER_ID)}
            for change in ORDER["timeline"]  # type: ignore[attr-defined]
        ],
        "exchange_of": ORDER_ID,
        "exchange_return_id": RETURN_ID,
        "exchange_credit": usd(1299),
    },
    "original_order": ORDER,
    "charged": usd(0),
    "refunded": usd(1136),
}
ORDER_SETTINGS = {
    "capture_pickup_at_order": False,
    "pickup_expiry_seconds": 604800,
    "hold_seconds": 900,
    "authorization_window_seconds": 0,
    "return_window_days": 30,
    "return_policy_text": "Sale items: exchange only. Keep the tags on.",
    "receiptless_limit": {"amount": 20000, "days": 30},
    "version": 2,
}
API_KEY = {
    "id": "key_01j9x6s1a2b3c4d5e6f7g8h9jk",
    "name": "till 3",
    "key_hint": "pos_test_Xmp1…",
    "mode": "test",
    "scopes": ["catalog:read", "orders:write"],
    "created_at": CREATED,
    "last_used_at": UPDATED,
    "revoked_at": None,
    "expires_at": None,
}
NEW_API_KEY = {
    **API_KEY,
    "last_used_at": None,
    "key": "pos_test_Xmp1eKeyNotRealXXXXXXXXXXXXXXXXXXXXXXX",
    "secret_redacted": False,
}
NEW_LIVE_API_KEY = {
    **NEW_API_KEY,
    "name": "live",
    "mode": "live",
    "key_hint": "pos_live_Xmp1…",
    "scopes": list(ALL_SCOPES),
    "key": "pos_live_Xmp1eKeyNotRealXXXXXXXXXXXXXXXXXXXXXXX",
}
REVOKED_API_KEY = {**API_KEY, "revoked_at": UPDATED}
ROLLED_API_KEY = {
    **NEW_API_KEY,
    "id": "key_01j9x7k2b3c4d5e6f7g8h9jkmn",
    "key_hint": "pos_test_Q7wz…",
    "created_at": UPDATED,
    "key": "pos_test_Q7wzNewKeyNotRealXXXXXXXXXXXXXXXXXXXXX",
    "rolled_from": {**API_KEY, "expires_at": "2026-01-21T14:05:12.250Z"},
}
OAUTH_CLIENT = {
    "id": "cli_01j9x6s5m6n7p8q9r0s1t2u3vw",
    "client_id": "cli_01j9x6s5m6n7p8q9r0s1t2u3vw",
    "name": "accounting sync",
    "scopes": ["orders:read"],
    "created_at": CREATED,
    "revoked_at": None,
}
NEW_OAUTH_CLIENT = {
    **OAUTH_CLIENT,
    "client_secret": "pos_cs_ExampleSecretNotRealXXXXXXXXXXXXXXXXXXXXXXX",
    "secret_redacted": False,
}
REVOKED_OAUTH_CLIENT = {**OAUTH_CLIENT, "revoked_at": UPDATED}
TOKEN = {
    "access_token": "eyJhbGciOiJIUzI1NiIsImtpZCI6IkV4YW1wbGUiLCJ0eXAiOiJhdCtqd3QifQ"
    ".ExampleClaimsNotReal.ExampleSignatureNotReal",
    "token_type": "Bearer",
    "expires_in": 900,
    "scope": "orders:read",
}
MERCHANT = {
    "id": "mer_01j9x6s9x0y1z2a3b4c5d6e7fg",
    "name": "Corner Coffee",
    "api_key": "pos_test_Xmp2eKeyNotRealXXXXXXXXXXXXXXXXXXXXXXX",
    "secret_redacted": False,
}
DEAD_LETTER = {
    "sequence": 42,
    "consumer": "customer-loyalty",
    "subject": "pos.order.v1.order_confirmed",
    "event_id": "evt_01j9x6s9x0y1z2a3b4c5d6e7fg",
    "event_type": "pos.order.v1.OrderConfirmed",
    "merchant_id": "mer_01j9x6s9x0y1z2a3b4c5d6e7fg",
    "error": "OperationalError",
    "deliveries": 5,
    "dead_lettered_at": "2026-01-20T14:05:12.250Z",
}
DEAD_LETTERS = {"data": [DEAD_LETTER], "next_cursor": None}
REDRIVEN = {"redriven": [DEAD_LETTER]}
EVENT_ID = "evt_01j9x6t1a2b3c4d5e6f7g8h9jk"
SUBSCRIPTION_ID = "whsub_01j9x6t5m6n7p8q9r0s1t2u3vw"
EVENT = {
    "id": EVENT_ID,
    "type": "order.confirmed",
    "sequence": 1042,
    "merchant_id": "mer_01j9x6s9x0y1z2a3b4c5d6e7fg",
    "occurred_at": UPDATED,
    "data": {"object": ORDER},
}
EVENT_PAGE = {"data": [EVENT], "next_after": 1042, "has_more": False}
SUBSCRIPTION = {
    "id": SUBSCRIPTION_ID,
    "url": "https://hooks.example.com/omnitill",
    "event_types": ["order.*", "inventory.changed"],
    "description": "shipping sync",
    "status": "enabled",
    "disabled_reason": "",
    "version": 1,
    "created_at": CREATED,
    "updated_at": CREATED,
}
NEW_SUBSCRIPTION = {
    "subscription": SUBSCRIPTION,
    "secret": "whsec_RXhhbXBsZVNlY3JldE5vdFJlYWxYWFhYWFhYWFhYWFg=",
    "secret_redacted": False,
}
DELIVERY = {
    "id": "msg_01j9x6t9x0y1z2a3b4c5d6e7fg",
    "subscription_id": SUBSCRIPTION_ID,
    "event_id": EVENT_ID,
    "event_type": "order.confirmed",
    "sequence": 1042,
    "status": "pending",
    "attempt_count": 1,
    "next_attempt_at": UPDATED,
    "created_at": CREATED,
    "attempts": [
        {
            "number": 1,
            "attempted_at": CREATED,
            "status_code": 503,
            "latency_ms": 212,
            "response_excerpt": "Service Unavailable",
            "error": "",
        }
    ],
}
GIFT_CARD = {
    "id": "gc_01j9x6u2b3c4d5e6f7g8h9j0km",
    "code_last4": "H3RZ",
    "balance": usd(5000),
    "status": "active",
    "customer_id": "",
    "order_id": ORDER_ID,
    "order_line_id": "line_2",
    "reason": "sale",
    "location_id": LOCATION_ID,
    "version": 2,
    "created_at": CREATED,
    "updated_at": CREATED,
}
# A page of `GET /v1/gift-cards`: a card sold on an order line and store credit used up.
GIFT_CARD_LIST = {
    "data": [
        GIFT_CARD,
        {
            **GIFT_CARD,
            "id": "gc_01j9x6u3b3c4d5e6f7g8h9j0km",
            "code_last4": "P7WA",
            "balance": usd(0),
            "status": "deactivated",
            "customer_id": CUSTOMER_ID,
            "order_id": "",
            "order_line_id": "",
            "reason": "store_credit",
            "version": 3,
            "updated_at": UPDATED,
        },
    ],
    "next_cursor": "AWdjXzAxajl4NnUzYjNjNGQ1ZTZmN2c4aDlqMGtt9QS59A",
}
GIFT_CARD_ACTIVITY = {
    "id": "gca_01j9x6u4b3c4d5e6f7g8h9j0km",
    "gift_card_id": GIFT_CARD["id"],
    "kind": "activate",
    "amount": usd(5000),
    "balance_after": usd(5000),
    "reference": ORDER_ID,
    "location_id": LOCATION_ID,
    "created_at": CREATED,
}
GIFT_CARD_MOVED = {"gift_card": GIFT_CARD, "activity": GIFT_CARD_ACTIVITY}
NEW_GIFT_CARD = {**GIFT_CARD_MOVED, "code": "7KQ2-M9XD-TW4P-H3RZ", "secret_redacted": False}
GIFT_CARD_REDEEMED = {
    "gift_card": {**GIFT_CARD, "balance": usd(0), "version": 3, "updated_at": UPDATED},
    "activity": {
        **GIFT_CARD_ACTIVITY,
        "id": "gca_01j9x6u6b3c4d5e6f7g8h9j0km",
        "kind": "redeem",
        "amount": usd(-5000),
        "balance_after": usd(0),
        "reference": "register 2 sale 1190",
        "created_at": UPDATED,
    },
    "redeemed": usd(5000),
    "remaining_due": usd(1040),
}


def _tender(name: str, captured: int, n: int, refunded: int, m: int) -> dict[str, Any]:
    return {
        "name": name,
        "captured": usd(captured),
        "captured_count": n,
        "refunded": usd(refunded),
        "refunded_count": m,
        "net": usd(captured - refunded),
    }


SETTLEMENT_REPORT = {
    "location_id": LOCATION_ID,
    "date": "2026-01-15",
    "time_zone": "America/New_York",
    "starts_at": "2026-01-15T05:00:00.000Z",
    "ends_at": "2026-01-16T05:00:00.000Z",
    "tenders": [
        _tender("cash", 48210, 31, 1200, 1),
        _tender("card", 215990, 64, 6040, 2),
        _tender("gift_card", 12500, 4, 0, 0),
        _tender("external", 0, 0, 0, 0),
    ],
    "card_brands": [_tender("mastercard", 80990, 22, 0, 0), _tender("visa", 135000, 42, 6040, 2)],
    "gift_cards_sold": usd(15000),
    "gift_cards_sold_count": 3,
    "gift_cards_sold_cash": usd(5000),
    "store_credit_issued": usd(2400),
    "store_credit_issued_count": 1,
    "gift_card_sales_undone": usd(0),
    "gift_card_sales_undone_count": 0,
    "promotional_issued": usd(0),
    "promotional_issued_count": 0,
    "gift_cards_redeemed": usd(12500),
    "tips": usd(9350),
    "net": usd(269460),
    "computed_at": "2026-01-16T05:10:00.000Z",
}

MANAGER_ID = "stf_01j9x6v3c4d5e6f7g8h9j0k1mn"
SESSION_ID = "ses_01j9x6v4d5e6f7g8h9j0k1m2np"
REGISTER = {
    "id": REGISTER_ID,
    "location_id": LOCATION_ID,
    "name": "Till 1",
    "status": "paired",
    "created_at": CREATED,
    "paired_at": UPDATED,
    "retired_at": None,
    "updated_at": UPDATED,
    "version": 2,
}
NEW_REGISTER = {**REGISTER, "status": "unpaired", "paired_at": None, "updated_at": CREATED,
                "version": 1}  # fmt: skip
RETIRED_REGISTER = {**REGISTER, "status": "retired", "retired_at": UPDATED, "version": 3}
PAIRING_CODE = {
    "register_id": REGISTER_ID,
    "code": "K7QM2XDT4P",
    "expires_at": UPDATED,
    "secret_redacted": False,
}
PAIRED = {
    "register": REGISTER,
    "credential": "pos_reg_3fKq9ZtW0xYb7LmN2pR4sV6uA8cE1gHj5kQ7aB",
    "scopes": ["catalog:read", "orders:write", "payments:write", "register:session"],
}
STAFF = {
    "id": STAFF_ID,
    "name": "Ada Cashier",
    "role": "cashier",
    "location_ids": [LOCATION_ID],
    "status": "active",
    "locked_until": None,
    "version": 1,
    "created_at": CREATED,
    "updated_at": CREATED,
}
ROLE = {
    "id": "role_01j9x6v5e6f7g8h9j0k1m2n3pq",
    "name": "shift lead",
    "permissions": ["refund", "no_sale"],
    "discount_limit_bps": 2000,
    "built_in": False,
    "version": 1,
    "updated_at": CREATED,
}
REGISTER_SESSION = {
    "id": SESSION_ID,
    "register_id": REGISTER_ID,
    "staff_id": STAFF_ID,
    "started_at": CREATED,
    "ended_at": None,
}
OVERRIDE = {
    "id": "ovr_01j9x6v6f7g8h9j0k1m2n3p4qr",
    "permission": "refund",
    "requested_by": STAFF_ID,
    "approved_by": MANAGER_ID,
    "register_id": REGISTER_ID,
    "granted_at": CREATED,
    "expires_at": UPDATED,
    "used_at": None,
}
AUDIT_ENTRY = {
    "id": "aud_01j9x6v7g8h9j0k1m2n3p4q5rs",
    "occurred_at": UPDATED,
    "action": "refund",
    "staff_id": STAFF_ID,
    "approved_by": MANAGER_ID,
    "register_id": REGISTER_ID,
    "credential_id": None,
    "resource_type": "payment",
    "resource_id": PAYMENT_ID,
    "details": {"override_id": "ovr_01j9x6v6f7g8h9j0k1m2n3p4qr"},
}
AUDIT_SETTINGS = {"retention_days": 365, "updated_at": UPDATED, "version": 1}
SHIFT_ID = "shf_01j9x6v8h9j0k1m2n3p4q5r6st"
SHIFT = {
    "id": SHIFT_ID,
    "location_id": LOCATION_ID,
    "register_id": REGISTER_ID,
    "status": "open",
    "opened_by": STAFF_ID,
    "closed_by": "",
    "opening_float": usd(10000),
    "counted_cash": None,
    "over_short": 0,
    "report": {
        "expected_cash": usd(13990),
        "cash_sales": usd(6040),
        "cash_refunds": usd(1050),
        "pay_ins": usd(0),
        "pay_outs": usd(1000),
        "no_sale_count": 1,
        "tenders": [
            {"name": "cash", "captured": usd(6040), "captured_count": 1, "refunded": usd(1050),
             "refunded_count": 1, "net": usd(4990)},
        ],
        "discounts": usd(620),
        "discounted_orders": 1,
        "override_count": 1,
    },
    "opened_at": CREATED,
    "closed_at": None,
    "version": 1,
    "updated_at": CREATED,
}  # fmt: skip
CLOSED_SHIFT = {
    **SHIFT,
    "status": "closed",
    "closed_by": STAFF_ID,
    "counted_cash": usd(13980),
    "over_short": -10,
    "closed_at": UPDATED,
    "version": 2,
    "updated_at": UPDATED,
}
DRAWER_MOVEMENT = {
    "id": "drw_01j9x6v9j0k1m2n3p4q5r6s7tv",
    "shift_id": SHIFT_ID,
    "kind": "pay_out",
    "amount": usd(1000),
    "reason": "window cleaner",
    "staff_id": STAFF_ID,
    "register_id": REGISTER_ID,
    "created_at": UPDATED,
}
RECEIPTLESS_RETURN = {
    "order_return": {
        **RETURN,
        "order_id": "",
        "lines": [{**RETURN["lines"][0], "line_id": "", "amount": usd(2250)}],
        "reason": "no_receipt",
        "amount": usd(2250),
        "refunds": [],
        "customer_id": CUSTOMER_ID,
        "store_credit_gift_card_id": "gc_01j9x6w9b3c4d5e6f7g8h9j0kq",
    },
    "store_credit": {
        "gift_card_id": "gc_01j9x6w9b3c4d5e6f7g8h9j0kq",
        "code": "KQ7M-4XPT-9WZR-2HCN",
    },
    "secret_redacted": False,
}
