"""Error answers match the schema their operation documents for that status, the ones that
carry more than the common members included: a declined card's 402 (the recorded order and
payment) and a stale If-Match's 412 (the current version)."""

from __future__ import annotations

import uuid
from typing import Any

import httpx
import jsonschema
import pytest

pytestmark = pytest.mark.e2e


def _check(document: dict[str, Any], path: str, method: str, answer: httpx.Response) -> str:
    """The name of the documented problem schema `answer` was checked against."""
    documented = document["paths"][path][method]["responses"][str(answer.status_code)]
    if "$ref" in documented:  # a shared answer, in #/components/responses
        documented = document["components"]["responses"][documented["$ref"].rsplit("/", 1)[1]]
    schema = documented["content"][answer.headers["content-type"]]["schema"]
    rooted = {**schema, "components": document["components"]}
    jsonschema.validate(answer.json(), rooted, cls=jsonschema.Draft202012Validator)
    return str(schema["$ref"]).rsplit("/", 1)[1]


def test_problem_answers_match_their_documented_schemas(demo_merchant: Any) -> None:
    http = demo_merchant.http
    document = http.get("/openapi.json").json()
    location = http.get("/v1/locations").json()["data"][0]

    declined = http.post(
        "/v1/checkouts",
        json={
            "location_id": location["id"],
            "lines": [{"sku": "MUG-LOGO", "quantity": 1}],
            "tender_type": "card",
            "card_token": "tok_declined",
        },
        headers={"Idempotency-Key": str(uuid.uuid4())},
    )
    assert declined.status_code == 402, declined.text
    assert _check(document, "/v1/checkouts", "post", declined) == "PaymentDeclined"
    # The order is saved before the card is charged; a decline cancels it, saying why.
    assert declined.json()["order"]["status"] == "cancelled"
    assert declined.json()["order"]["cancel_reason"] == "payment_declined"
    assert declined.json()["payment"]["status"] == "failed"
    assert declined.json()["payment"]["decline_code"] == "card_declined"

    made = http.post(
        "/v1/customers",
        json={"email": f"{uuid.uuid4().hex[:10]}@problems.example"},
        headers={"Idempotency-Key": str(uuid.uuid4())},
    ).json()
    path = f"/v1/customers/{made['id']}"
    assert http.patch(path, json={"given_name": "Ada"}).status_code == 200
    stale = http.patch(path, json={"given_name": "Grace"}, headers={"If-Match": '"1"'})
    assert stale.status_code == 412, stale.text
    assert _check(document, "/v1/customers/{customer_id}", "patch", stale) == "VersionMismatch"
    assert stale.json()["current_version"] == 2

    missing = http.get("/v1/orders/ord_nope")
    assert missing.status_code == 404
    assert _check(document, "/v1/orders/{order_id}", "get", missing) == "Problem"

    short = http.post(
        "/v1/reservations",
        json={"location_id": location["id"], "lines": [{"sku": "MUG-LOGO", "quantity": 10**9}]},
        headers={"Idempotency-Key": str(uuid.uuid4())},
    )
    assert short.status_code == 409, short.text
    # Extension members (what is available) beside the common ones.
    assert _check(document, "/v1/reservations", "post", short) == "Problem"
    assert short.json()["code"] == "insufficient_stock"
