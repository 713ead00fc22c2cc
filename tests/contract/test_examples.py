"""The document's example answers have the fields of the real answers, nested ones included:
an example a partner codes against must not drift from what the API sends."""

from __future__ import annotations

import uuid
from typing import Any

import pytest

from pos_gateway import examples

pytestmark = pytest.mark.e2e


def _shape(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _shape(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_shape(value[0])] if value else []
    return type(value).__name__ if value is not None else None


# Maps whose keys are the merchant's data (tax categories, variant options), not fields.
DATA_KEYED = ("tax_rates_bps", "options")


def _same_fields(example: Any, live: Any, where: str) -> None:
    if where.endswith(DATA_KEYED):
        assert isinstance(example, dict) and isinstance(live, dict), where
        return
    if isinstance(example, dict) and isinstance(live, dict):
        assert set(example) == set(live), f"{where}: example {sorted(example)} != {sorted(live)}"
        for key in example:
            if example[key] is not None and live[key] is not None:
                _same_fields(example[key], live[key], f"{where}.{key}")
    elif isinstance(example, list) and isinstance(live, list):
        if example and live:  # an empty side has no element shape to compare
            _same_fields(example[0], live[0], f"{where}[0]")
    else:
        assert _shape(example) == _shape(live), f"{where}: {example!r} vs {live!r}"


def test_example_answers_have_the_fields_of_live_answers(demo_merchant: Any) -> None:
    http = demo_merchant.http

    def post(path: str, body: dict[str, Any]) -> Any:
        answer = http.post(path, json=body, headers={"Idempotency-Key": str(uuid.uuid4())})
        assert answer.status_code == 201, answer.text
        return answer.json()

    location = http.get("/v1/locations").json()["data"][0]
    customer = http.get("/v1/customers").json()["data"][0]
    sale = post(
        "/v1/checkouts",
        {
            "location_id": location["id"],
            "customer_id": customer["id"],
            "lines": [{"sku": "TEE-BLK-M", "quantity": 2}, {"sku": "MUG-LOGO", "quantity": 1}],
            "tender_type": "card",
            "card_token": "tok_visa",
        },
    )
    client = post("/v1/oauth-clients", {"name": "shape", "scopes": ["orders:read"]})
    pairs = {
        "LOCATION": (examples.LOCATION, location),
        "PRODUCT": (examples.PRODUCT, http.get("/v1/products").json()["data"][0]),
        "CUSTOMER": (examples.CUSTOMER, http.get(f"/v1/customers/{customer['id']}").json()),
        "PROMOTION": (examples.PROMOTION, http.get("/v1/promotions").json()["data"][0]),
        "STOCK_LEVEL": (
            examples.STOCK_LEVEL,
            http.get("/v1/inventory?sku=MUG-LOGO").json()["data"][0],
        ),
        "CHECKOUT": (examples.CHECKOUT, sale),
        "API_KEY": (examples.API_KEY, http.get("/v1/api-keys").json()["data"][0]),
        "NEW_OAUTH_CLIENT": (examples.NEW_OAUTH_CLIENT, client),
        "OAUTH_CLIENT": (examples.OAUTH_CLIENT, http.get("/v1/oauth-clients").json()["data"][0]),
    }
    for name, (example, live) in pairs.items():
        _same_fields(example, live, name)
