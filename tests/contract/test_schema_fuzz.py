"""Schemathesis against the live gateway: requests made from the served OpenAPI document, valid
and invalid, each answer checked with every default check (no 5xx, a documented status and
content type, a body and headers that match the document, invalid input refused, valid input
accepted; the 405s of methods a path lacks are tests/contract/test_methods.py's).

Run through schemathesis' own command line: its pytest integration reaches into pytest
internals that pytest 9 no longer has. Bounded so it stays a test, not a soak: the document's
examples, schemathesis' coverage cases and 5 fuzzed examples per operation, with a fixed seed
so a failure replays exactly.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from pos_devstack.testing import Running

pytestmark = pytest.mark.e2e

# Statuses a valid request may get: schemathesis' defaults (an override replaces them, so they
# are restated), then per operation what the API guide makes the right answer to a request
# the schema can't tell from a good one.
DEFAULT_ACCEPTANCE = ["2xx", "3xx", "401", "403", "404", "409", "429", "5xx"]
IDEMPOTENT_POSTS = "|".join(
    ("locations", "products", "inventory/adjustments", "customers", "promotions", "api-keys",
     "api-keys/[^/]+/roll", "oauth-clients", "products/batch-upsert",
     "products/[^/]+/(archive|unarchive)",
     "inventory/counts", "inventory/transfers", "inventory/low-stock-thresholds", "reservations",
     "reservations/[^/]+/(commit|release)", "sourcing", "payments/[^/]+/(capture|void|refunds)",
     "orders/[^/]+/refunds", "orders/[^/]+/fulfillments/[^/]+/cancel", "terminal-checkouts",
     "orders/[^/]+/tenders-to-record/settle",
     "terminal-checkouts/[^/]+/cancel",
     "webhook-subscriptions/[^/]+/(rotate-secret|test|replay-failed)",
     "webhook-subscriptions/[^/]+/deliveries/[^/]+/replay",
     "gift-cards", "gift-cards/(lookup|redeem)",
     "gift-cards/[^/]+/(loads|refunds|adjustments|deactivate)",
     "promotions/[^/]+/(pause|resume|end|coupons)", "promotions/[^/]+/coupons/[^/]+/deactivate",
     "registers", "registers/[^/]+/(retire|pairing-codes)", "staff", "staff/[^/]+/deactivate",
     "roles", "register-sessions", "register-sessions/current/end", "overrides", "shifts",
     "shifts/[^/]+/(drawer-movements|close)")
)  # fmt: skip
# Gift card rules on the card the request names or on its body: an amount in the card's
# currency, a non-zero adjustment, a pre-printed code with at least 8 letters or digits ('-' and
# '_' don't count: a length after normalisation) (400 each).
GIFT_CARD_RULES = "|".join(
    ("POST /v1/gift-cards", "POST /v1/gift-cards/redeem", "GET /v1/settlement-reports",
     "POST /v1/gift-cards/[^/]+/(loads|refunds|adjustments)")
)  # fmt: skip
# Payment operations with rules on the payment the request names: an amount in its currency,
# a tip in the amount's, a reader the sandbox has. Each is a 400 naming the field.
PAYMENT_RULES = "|".join(
    ("POST /v1/payments/[^/]+/(capture|refunds)", "POST /v1/orders/[^/]+/refunds",
     "POST /v1/terminal-checkouts")
)  # fmt: skip
# Catalog and stock operations with rules JSON Schema can't state: a barcode's GTIN check digit, the
# tax category code and variant SKUs unique within a product, an IANA time zone, a country ISO has
# assigned, two different locations in a transfer, SKUs named once per reservation, a destination or
# a pickup location (not both), `SKU:quantity` in a query, SKUs or a location to read stock at (a
# cursor only with the location alone). Each is a 400 naming the field.
CROSS_FIELD = "|".join(
    ("POST /v1/products", "POST /v1/products/batch-upsert", "PATCH /v1/products/[^/]+",
     "POST /v1/locations", "POST /v1/inventory/transfers", "POST /v1/reservations",
     "POST /v1/sourcing", "GET /v1/inventory/nearby", "GET /v1/inventory")
)  # fmt: skip
# The cart preview takes an order's lines and fulfilments, with their rules (400), and a manual
# discount's percent or new price within bounds the schema can't tie to its kind (400).
ORDER_RULES = "|".join(
    ("POST /v1/orders", "POST /v1/orders/[^/]+/(tenders|confirm|cancel|returns|exchanges|submit)",
     "POST /v1/carts/calculate", "POST /v1/returns",
     "POST /v1/orders/[^/]+/fulfillments/[^/]+/steps",
     "POST /v1/orders/[^/]+/returns/[^/]+/settle")
)  # fmt: skip
# A staff member (its change and its deactivation), a role (its change and its deletion), a
# register (its change and its retirement) and the settings take If-Match (412 when stale); a
# register's change, like every PATCH, is a 400 when it sends no field (all are optional) or a
# name of spaces only.
VERSIONED_SETTINGS = "|".join(
    ("PATCH /v1/staff/[^/]+", "POST /v1/staff/[^/]+/deactivate", "PATCH /v1/order-settings",
     "PUT /v1/(payment|gift-card|audit)-settings", "(PATCH|DELETE) /v1/roles/[^/]+",
     "PATCH /v1/registers/[^/]+", "POST /v1/registers/[^/]+/retire")
)  # fmt: skip
PROMOTION_RULES = "|".join(
    ("POST /v1/promotions", "PATCH /v1/promotions/[^/]+",
     "POST /v1/promotions/[^/]+/(pause|resume|end|coupons)",
     "POST /v1/promotions/[^/]+/coupons/[^/]+/deactivate", "DELETE /v1/promotions/[^/]+")
)  # fmt: skip
PROMOTION_STATUSES = ["400", "409", "412", "422"]
# Customer and loyalty rules JSON Schema can't state: a phone with its country code, an address's
# country ISO has assigned, a real date, a channel and a time when consent is granted, someone to be
# (an email, phone, name or external_id), email and external_id unique (409), no merge of a customer
# into itself, a non-zero adjustment that never overdraws (409), tier names that differ, a search
# with at least one filter, a group name not taken (409), a group's change sending a field (400),
# If-Match on the live version (412), and the Idempotency-Key below (422).
CUSTOMER_RULES = "|".join(
    ("POST /v1/customers", "PATCH /v1/customers/[^/]+", "POST /v1/customers/upsert",
     "POST /v1/customers/batch", "POST /v1/customers/[^/]+/merge", "GET /v1/customers/search",
     "POST /v1/customers/[^/]+/points/adjustments", "POST /v1/customer-groups",
     "(PATCH|DELETE) /v1/customer-groups/[^/]+",
     "POST /v1/customer-groups/[^/]+/members(/remove)?",
     "PUT /v1/loyalty-program")
)  # fmt: skip
PAGED_LISTS = "|".join(
    ("locations", "products", "customers", "orders", "orders/[^/]+/returns", "returns",
     "promotions",
     "promotions/[^/]+/coupons", "inventory/history", "inventory/low-stock-thresholds",
     "payments", "refunds", "webhook-subscriptions", "webhook-subscriptions/[^/]+/deliveries",
     "customer-groups", "customers/[^/]+/(orders|points)", "shifts", "audit-log", "registers",
     "staff", "roles", "api-keys", "oauth-clients", "gift-cards", "reservations")
)  # fmt: skip
CONFIG = f"""
seed = 20261123

[generation]
max-examples = 5

# Off: with no links in the document, stateful testing would only replay ids it read from
# answers, and one of those is the run's own key, which a DELETE would revoke halfway.
# tests/contract/test_tenancy.py drives the id operations instead.
[phases.stateful]
enabled = false
[phases.fuzzing.extra-data-sources]
responses = false

# Off: every method a path lacks, tried on every path, was a third of the run's cases, and
# the answer (405 with Allow) comes from one place in the gateway for all of them;
# tests/contract/test_methods.py asks it of every path of the document, once each, instead.
[phases.coverage]
unexpected-methods = []

# The run acts as a merchant of its own with the sandbox's demo data and a key with every
# scope (see conftest.py): the promotions and keys it makes stay out of the other tests' way.

# One [[operations]] table per case; a table's filters are one `include-name` ("METHOD path"),
# since separate include- keys would match either, not both.

# The live event stream answers for minutes (server-sent events): not a request a fuzzer can
# wait out. tests/e2e/test_events.py drives it.
[[operations]]
include-name = "GET /v1/events/stream"
enabled = false

# The feed's `after` is a sequence it gave out: one past the newest event is a 400 naming it.
[[operations]]
include-name = "GET /v1/events"
checks.positive_data_acceptance.expected-statuses = {[*DEFAULT_ACCEPTANCE, "400"]}

# The token exchange's client authenticates with HTTP Basic or with client_id and
# client_secret in the form (both optional in the form's schema), not both: a form with neither
# and no Basic header, or with both, is a 400 `invalid_request` (RFC 6749).
[[operations]]
include-name = "POST /v1/oauth/token"
checks.positive_data_acceptance.expected-statuses = {[*DEFAULT_ACCEPTANCE, "400"]}

# The first table that matches an operation applies: these come before the Idempotency-Key
# table below, so they restate its 422.

# If-Match is a precondition on the version the resource has now, which no schema can know:
# on a live product, location or customer, a well-formed but stale one is a 412
# `version_mismatch`; a location's change that sends no field (all are optional) is a 400.
[[operations]]
include-name-regex = "^((PATCH|DELETE) /v1/products/[^/]+|POST /v1/products/[^/]+/(un)?archive)$"
checks.positive_data_acceptance.expected-statuses = {[*DEFAULT_ACCEPTANCE, "400", "412", "422"]}
[[operations]]
include-name-regex = "^PATCH /v1/locations/[^/]+$"
checks.positive_data_acceptance.expected-statuses = {[*DEFAULT_ACCEPTANCE, "400", "412", "422"]}
# A draft order's edit: its If-Match as above, and an order's rules across fields (400; a
# field sent as null is one too, as on every PATCH).
[[operations]]
include-name-regex = "^PATCH /v1/orders/[^/]+$"
checks.positive_data_acceptance.expected-statuses = {[*DEFAULT_ACCEPTANCE, "400", "412", "422"]}
# The same on a staff member and on the settings (an order setting's rules: 400).
[[operations]]
include-name-regex = "^({VERSIONED_SETTINGS})$"
checks.positive_data_acceptance.expected-statuses = {[*DEFAULT_ACCEPTANCE, "400", "412", "422"]}
[[operations]]
include-name-regex = "^({CUSTOMER_RULES})$"
checks.positive_data_acceptance.expected-statuses = {[*DEFAULT_ACCEPTANCE, "400", "412", "422"]}

# A promotion's rules across fields (a window that ends before it starts, tiers that
# contradict, an amount's currency, an IANA zone, a kind's own quantities) are a 400 naming the
# field; an ended promotion refuses changes and a promotion without requires_coupon takes no
# coupons (409); If-Match on a live promotion may be stale (412).
[[operations]]
include-name-regex = "^({PROMOTION_RULES})$"
checks.positive_data_acceptance.expected-statuses = {[*DEFAULT_ACCEPTANCE, *PROMOTION_STATUSES]}

[[operations]]
include-name-regex = "^({PAYMENT_RULES})$"
checks.positive_data_acceptance.expected-statuses = {[*DEFAULT_ACCEPTANCE, "400", "422"]}

[[operations]]
include-name-regex = "^({GIFT_CARD_RULES})$"
checks.positive_data_acceptance.expected-statuses = {[*DEFAULT_ACCEPTANCE, "400", "422"]}

[[operations]]
include-name-regex = "^({CROSS_FIELD})$"
checks.positive_data_acceptance.expected-statuses = {[*DEFAULT_ACCEPTANCE, "400", "422"]}

# Where a webhook URL points is known only by resolving it: a name that does not resolve, or
# resolves to a private or metadata address, is a 400 naming `url`. And see If-Match above and
# the Idempotency-Key below.
[[operations]]
include-name-regex = "^(POST /v1/webhook-subscriptions|PATCH /v1/webhook-subscriptions/[^/]+)$"
checks.positive_data_acceptance.expected-statuses = {[*DEFAULT_ACCEPTANCE, "400", "412", "422"]}
# A deletion takes If-Match as a change does (412 when stale).
[[operations]]
include-name-regex = "^DELETE /v1/webhook-subscriptions/[^/]+$"
checks.positive_data_acceptance.expected-statuses = {[*DEFAULT_ACCEPTANCE, "412"]}

# A cursor is opaque: any string fits the schema, only one the list gave out is valid, and
# any other is a 400 (`cursor` in errors[]); a created window must not be empty (400 naming
# `created_before`).
[[operations]]
include-name-regex = "^GET /v1/({PAGED_LISTS}|gift-cards/[^/]+/activities)$"
checks.positive_data_acceptance.expected-statuses = {[*DEFAULT_ACCEPTANCE, "400"]}

# A checkout's lines must name distinct SKUs (or be gift cards, with no SKU), a cash tender
# takes no card token, and points are redeemed for a customer and never worth more than the
# sale: rules across fields that JSON Schema can't state (400). A sandbox card token may be
# declined:
# a 402 is the right answer to a well-formed sale. And see the Idempotency-Key below.
[[operations]]
include-name = "POST /v1/checkouts"
checks.positive_data_acceptance.expected-statuses = {[*DEFAULT_ACCEPTANCE, "400", "402", "422"]}

# Orders: rules across fields (a line names one of the fulfilments, every fulfilment has a
# line, a shipment an address, a tender at most the balance due, points redeemed for a
# customer, a line is a product or a gift card, a returned line of the order with units left,
# a SKU sold lately for a return without a receipt, a tender type only with a settlement paid
# out of band: 400), a declined card (402), and the order's own state (a step out of order, a
# confirmation the tenders do not cover, short stock, a return settled that was not refused:
# 409). And see the Idempotency-Key below.
[[operations]]
include-name-regex = "^({ORDER_RULES})$"
checks.positive_data_acceptance.expected-statuses = {[*DEFAULT_ACCEPTANCE, "400", "402", "422"]}

# A pay-in or pay-out needs an amount (a no-sale open none), in the shift's currency, as the
# counted cash does: rules on the shift the request names and across fields (400).
[[operations]]
include-name-regex = "^POST /v1/shifts/[^/]+/(drawer-movements|close)$"
checks.positive_data_acceptance.expected-statuses = {[*DEFAULT_ACCEPTANCE, "400", "422"]}

# Schemathesis sends the same Idempotency-Key (the documented example, "0", ...) with other
# bodies; the API guide makes that a 422 `idempotency_key_reused`, whatever the body.
[[operations]]
include-name-regex = "^POST /v1/({IDEMPOTENT_POSTS})$"
checks.positive_data_acceptance.expected-statuses = {[*DEFAULT_ACCEPTANCE, "422"]}

"""


def test_the_gateway_keeps_its_documented_contract(
    platform: Running, demo_merchant: Any, tmp_path: Path
) -> None:
    config = tmp_path / "schemathesis.toml"
    config.write_text(CONFIG)
    url = platform.platform.gateway_url
    run = subprocess.run(
        [
            sys.executable, "-m", "schemathesis.cli",
            "--config-file", str(config),
            "run", f"{url}/openapi.json",
            "--header", f"Authorization: Bearer {demo_merchant.key}",
            "--workers", "1",
            "--request-timeout", "15",
            "--no-color",
        ],
        capture_output=True,
        text=True,
        # About 140 operations; on the loaded shared 2-core machine a run took 340 s.
        timeout=600,
        cwd=tmp_path,
    )  # fmt: skip
    report = run.stdout + run.stderr
    assert run.returncode == 0, report[-20_000:]
    assert "Tested: " in report, report[-5_000:]
