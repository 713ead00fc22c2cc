"""What end-to-end tests through the gateway write over and over: a mutation with an
Idempotency-Key of its own, an answer of the status expected, a state reached in time, and a
product of its own with stock in two stores."""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable
from typing import Any

import httpx


def post(http: httpx.Client, path: str, body: dict[str, Any], key: str | None = None) -> Any:
    """POST with `key` as the Idempotency-Key, or one of its own."""
    return http.post(path, json=body, headers={"Idempotency-Key": key or str(uuid.uuid4())})


def ok(answer: httpx.Response, status: int = 200) -> Any:
    """The answer's JSON, once its status is the one expected (else the body, to read)."""
    assert answer.status_code == status, answer.text
    return answer.json()


def eventually(check: Callable[[], Any], timeout: float = 30.0) -> Any:
    """What `check` gives once it gives something true, asked every 0.1 s up to `timeout`:
    events and stock follow a change through the streams, not in its answer."""
    deadline = time.monotonic() + timeout
    while not (value := check()):
        assert time.monotonic() < deadline, "the expected state was not reached in time"
        time.sleep(0.1)
    return value


def stocked(http: httpx.Client, prefix: str, units: int = 10) -> tuple[str, list[str]]:
    """A product of its own (10.00 USD) with `units` in each of the merchant's first two
    stores: its SKU and the two stores."""
    sku = f"{prefix}-{uuid.uuid4().hex[:8].upper()}"
    ok(post(http, "/v1/products", {"sku": sku, "name": f"{prefix} probe",
        "price": {"amount": 1000, "currency": "USD"}}), 201)  # fmt: skip
    locations = [loc["id"] for loc in http.get("/v1/locations").json()["data"][:2]]
    for loc in locations:
        adjustment = {"sku": sku, "location_id": loc, "delta": units, "reason": "received"}
        ok(post(http, "/v1/inventory/adjustments", adjustment), 201)
    return sku, locations


def available(http: httpx.Client, sku: str, location: str) -> int:
    levels = http.get("/v1/inventory", params={"sku": sku, "location_id": location}).json()
    return int(levels["data"][0]["available"])
