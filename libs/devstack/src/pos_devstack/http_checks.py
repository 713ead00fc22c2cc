"""What end-to-end tests through the gateway write over and over: a mutation with an
Idempotency-Key of its own, an answer of the status expected, a state reached in time, and a
product of its own with stock in two stores, and a register ready to sell."""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, TypeVar
from zoneinfo import ZoneInfo

import httpx


def post(http: httpx.Client, path: str, body: dict[str, Any], key: str | None = None) -> Any:
    """POST with `key` as the Idempotency-Key, or one of its own."""
    return http.post(path, json=body, headers={"Idempotency-Key": key or str(uuid.uuid4())})


def post_answered(
    http: httpx.Client, path: str, body: dict[str, Any], key: str | None = None,
    timeout: float = 60.0,
) -> httpx.Response:  # fmt: skip
    """POST as a till does on a busy machine: with one Idempotency-Key (`key`, or one of its
    own), sent again while the answer is a 503 (a deadline passed, a pool kept it waiting:
    nothing is kept under the key) or a 409 `idempotency_request_in_progress` (the first is
    still running), until `timeout` seconds have passed. The answer that says what happened."""
    headers = {"Idempotency-Key": key or str(uuid.uuid4())}
    deadline = time.monotonic() + timeout
    while True:
        answer = http.post(path, json=body, headers=headers)
        busy = answer.status_code == 503 or (
            answer.status_code == 409
            and answer.json().get("code") == "idempotency_request_in_progress"
        )
        if not busy or time.monotonic() > deadline:
            return answer
        time.sleep(0.2)


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


T = TypeVar("T")


def polled(read: Callable[[], T], done: Callable[[T], bool] = bool, timeout: float = 30.0) -> T:
    """`read()` asked again every 0.1 s until `done` says its answer is complete, or `timeout`
    seconds have passed: the last answer either way, for the test to assert on (a miss then
    fails showing what was read). For a change feed (`updated_since`): it stops at the start of
    the oldest transaction open in the service's database (a background task's), so a change
    just made may be missing from it, at the first read or a later one; read it through this
    every time it must show something (see pos_devstack.testing.polled)."""
    deadline = time.monotonic() + timeout
    while not done(value := read()) and time.monotonic() < deadline:
        time.sleep(0.1)
    return value


def day_with_time_to_spare(time_zone: str = "UTC", spare: float = 180.0) -> str:
    """Today's date in `time_zone` (YYYY-MM-DD), once at least `spare` seconds of the day are
    left: waits for the next day first when fewer are. A test that does something, then reads
    the day's report (of a store, in its time zone) calls this first: a sale a moment before
    midnight and the report read after it would otherwise be of two days."""
    zone = ZoneInfo(time_zone)
    while True:
        now = datetime.now(UTC)
        local = now.astimezone(zone)
        next_day = datetime.combine(local.date() + timedelta(days=1), datetime.min.time(), zone)
        left = (next_day - now).total_seconds()
        if left >= spare:
            return local.date().isoformat()
        time.sleep(left + 0.01)  # until the day changes: a wait on the clock, not on a guess


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


@dataclass
class Till:
    """A paired register of a store, with a member signed in and a shift open: `device` speaks
    as the register (close it when done)."""

    device: httpx.Client
    register_id: str
    staff_id: str
    shift: dict[str, Any]


def open_till(
    gateway_url: str,
    http: httpx.Client,
    store: str,
    role: str = "manager",
    opening_float: int = 10_000,
    currency: str = "USD",
) -> Till:
    """Pair a new register of `store` (through the merchant's `http`), sign a new member of
    `role` in there and open its shift with `opening_float`."""
    register = ok(post(http, "/v1/registers", {"location_id": store, "name": "Till"}), 201)
    code = ok(post(http, f"/v1/registers/{register['id']}/pairing-codes", {}), 201)["code"]
    paired = ok(httpx.post(gateway_url + "/v1/registers/pair", json={"code": code}), 201)
    device = httpx.Client(
        base_url=gateway_url,
        headers={"Authorization": f"Bearer {paired['credential']}"},
        timeout=15.0,
    )
    pin = f"{uuid.uuid4().int % 10**6:06d}"
    member = {"name": "Mo", "role": role, "location_ids": [store], "pin": pin}
    staff_id = ok(post(http, "/v1/staff", member), 201)["id"]
    assert post(device, "/v1/register-sessions", {"staff_id": staff_id, "pin": pin}).is_success
    float_ = {"opening_float": {"amount": opening_float, "currency": currency}}
    shift = ok(post(device, "/v1/shifts", float_), 201)
    return Till(device, register["id"], staff_id, shift)
