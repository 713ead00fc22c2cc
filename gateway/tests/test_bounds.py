"""What the document bounds, the gateway holds to: a request past a bound is a 400 naming the
field, and an answer never passes one (a problem's `detail` and `errors`, a list of credentials).

The real gateway application against its real database; the services are never dialled, as
every request here is answered before one would be.
"""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from typing import Any

import gateway_alone
import httpx
import pytest
import pytest_asyncio

from pos_devstack.testing import Infra
from pos_gateway.problems import DETAIL_MAX, ERRORS_MAX, Problem, problem_response

SECRET = "bounds-test-secret-0123456789abcdef"


@pytest_asyncio.fixture(loop_scope="session")
async def http(infra: Infra) -> AsyncIterator[httpx.AsyncClient]:
    url = infra.service_database("gateway")
    key = await gateway_alone.merchant_key(url, SECRET, "Bounds")
    async with gateway_alone.serve(gateway_alone.settings(url, SECRET), key) as (_, client):
        yield client


def _fields(answer: httpx.Response) -> list[str]:
    assert answer.status_code == 400, answer.text
    return [e["field"] for e in answer.json()["errors"]]


async def test_an_id_longer_than_any_id_is_a_400_and_a_made_up_one_a_404(
    http: httpx.AsyncClient,
) -> None:
    assert _fields(await http.delete("/v1/api-keys/" + "k" * 65)) == ["key_id"]
    assert _fields(await http.delete("/v1/oauth-clients/" + "c" * 65)) == ["client_id"]
    made_up = "zz_" + uuid.uuid4().hex
    missing = await http.delete(f"/v1/api-keys/{made_up}")
    assert missing.status_code == 404 and missing.json()["code"] == "resource_missing"


async def test_a_time_longer_than_any_time_is_a_400(http: httpx.AsyncClient) -> None:
    long_time = "2026-01-31T09:00:00." + "0" * 44 + "Z"  # 65 characters
    listed = await http.get("/v1/products", params={"updated_since": long_time})
    assert _fields(listed) == ["updated_since"]
    body = {"sku": "TEE", "location_id": "loc_1", "delta": 1, "reason": "received",
            "occurred_at": long_time}  # fmt: skip
    adjusted = await http.post("/v1/inventory/adjustments", json=body)
    assert _fields(adjusted) == ["occurred_at"]


async def test_a_query_parameter_named_query_is_named_so(http: httpx.AsyncClient) -> None:
    # The catalog's text search is the `query` parameter: a refusal names it, not the body.
    searched = await http.get("/v1/products", params={"query": "q" * 201})
    assert _fields(searched) == ["query"]


async def test_list_items_past_their_length_are_a_400(http: httpx.AsyncClient) -> None:
    far = await http.get(
        "/v1/inventory/availability", params={"sku": "TEE", "location_id": "l" * 65}
    )
    assert _fields(far) == ["location_id[0]"]
    line = "TEE:" + "1" * 77  # 81 characters
    near = await http.get(
        "/v1/inventory/nearby", params={"sku": line, "latitude": 0, "longitude": 0}
    )
    assert _fields(near) == ["sku[0]"]


async def test_a_nearby_quantity_past_the_units_a_line_takes_names_sku(
    http: httpx.AsyncClient,
) -> None:
    # A line holds at most 1,000,000,000 units, as a hold's or a sourcing's: past it the
    # caller's `sku` is named, never the service's `lines[0].quantity`, which it did not send.
    near = {"latitude": 0, "longitude": 0}
    answer = await http.get("/v1/inventory/nearby", params={"sku": "TEE:1000000001", **near})
    assert _fields(answer) == ["sku"]
    assert "from 1 to 1,000,000,000" in answer.json()["errors"][0]["reason"]


async def test_a_nearby_sku_that_is_no_sku_names_sku(http: httpx.AsyncClient) -> None:
    # Checked as every SKU is, at the gateway: the service would name its own `lines[0].sku`,
    # which the caller did not send.
    near = {"latitude": 0, "longitude": 0}
    for line in ("bad sku", ":3", "S" * 70, "S" * 70 + ":2", "-TEE"):
        answer = await http.get("/v1/inventory/nearby", params={"sku": line, **near})
        assert _fields(answer) == ["sku"], line
        assert repr(line) in answer.json()["errors"][0]["reason"]


async def test_a_problem_keeps_the_first_errors_and_says_so(http: httpx.AsyncClient) -> None:
    lines = [{"sku": "", "quantity": 0} for _ in range(100)]  # two wrong fields each
    answer = await http.post("/v1/reservations", json={"location_id": "loc_1", "lines": lines})
    fields = _fields(answer)
    assert len(fields) == ERRORS_MAX
    assert fields[:2] == ["lines[0].sku", "lines[0].quantity"]


def test_a_problem_detail_and_field_reasons_are_cut_to_their_maximum() -> None:
    wordy: list[dict[str, Any]] = [{"field": "f" * 600, "reason": "r" * 2000}]
    body = problem_response(Problem(400, "invalid_request", "d" * 5000, wordy)).body
    problem = httpx.Response(400, content=body).json()
    assert len(problem["detail"]) == DETAIL_MAX and problem["detail"].endswith("\u2026")
    assert [len(problem["errors"][0][k]) for k in ("field", "reason")] == [500, 1000]
    short = httpx.Response(400, content=problem_response(Problem(400, "x", "as said")).body)
    assert short.json()["detail"] == "as said"


async def test_a_problem_never_holds_the_nul_character_a_request_sent(
    http: httpx.AsyncClient,
) -> None:
    """A body member unknown to the route is named in `errors[]` as it was sent; one whose
    name held NUL was echoed with it, and every string of an answer is documented without
    NUL (the `field` pattern). It reads U+FFFD in its place, as a NUL the services meet does."""
    answer = await http.put("/v1/audit-settings", json={"retention_days": 30, "\u0000T": 1})
    assert answer.status_code == 400, answer.text
    assert [e["field"] for e in answer.json()["errors"]] == ["\ufffdT"]
    assert "\x00" not in answer.text and "\\u0000" not in answer.text
    said = problem_response(Problem(400, "x", "d\x00", [{"field": "a\x00", "reason": "r\x00"}]))
    assert b"\\u0000" not in said.body


@pytest.mark.parametrize("path", ["/v1/api-keys", "/v1/oauth-clients"])
async def test_credentials_are_listed_in_pages_that_end(http: httpx.AsyncClient, path: str) -> None:
    created = []
    for n in range(5):
        made = await http.post(
            path,
            json={"name": f"c{n}", "scopes": ["orders:read"]},
            headers={"Idempotency-Key": str(uuid.uuid4())},
        )
        assert made.status_code == 201, made.text
        created.append(made.json()["id"])
    seen: list[str] = []
    cursor: str | None = None
    pages = 0
    while True:
        params: dict[str, Any] = {"limit": 2, **({"cursor": cursor} if cursor else {})}
        page = (await http.get(path, params=params)).json()
        assert len(page["data"]) <= 2
        seen += [item["id"] for item in page["data"]]
        pages += 1
        cursor = page["next_cursor"]
        if cursor is None:
            break
    everything = (await http.get(path, params={"limit": 200})).json()
    assert everything["next_cursor"] is None
    assert seen == [item["id"] for item in everything["data"]] == sorted(seen, reverse=True)
    assert seen[:5] == created[::-1]  # newest first
    assert len(seen) >= 5 and pages == (len(seen) + 1) // 2
    assert _fields(await http.get(path, params={"limit": 201})) == ["limit"]


async def test_a_terminal_checkout_reference_of_spaces_only_is_a_400(
    http: httpx.AsyncClient,
) -> None:
    # As a name of spaces only is: the reader's checkout is found by it at the register.
    for blank in ("   ", "\t \u3000"):
        body = {"location_id": "loc_1", "device_id": "sandbox_reader_approve",
                "amount": {"amount": 100, "currency": "USD"}, "reference": blank}  # fmt: skip
        refused = await http.post("/v1/terminal-checkouts", json=body)
        assert _fields(refused) == ["reference"]
        assert "spaces" in refused.json()["errors"][0]["reason"]


async def test_a_blank_sku_or_barcode_search_is_a_400_naming_it(http: httpx.AsyncClient) -> None:
    # An exact SKU or barcode of nothing finds nothing: `sku=` was refused naming `query`
    # (a parameter not sent), and `barcode=` of spaces answered an empty list as if searched.
    for name in ("sku", "barcode"):
        for blank in ("", "   "):
            answer = await http.get("/v1/products", params={name: blank})
            assert answer.status_code == 400, (name, blank, answer.text)
            assert _fields(answer) == [name], (name, blank)


async def test_a_body_that_is_no_json_is_malformed_json_naming_the_body(
    http: httpx.AsyncClient,
) -> None:
    """Whatever makes a body unreadable as JSON (bad syntax, bytes that are not UTF-8, a number
    past Python's 4,300 digits, nesting past the parser's depth) is one problem:
    `malformed_json` with `errors[]` naming `body`. Before, bad syntax named a field `[0]` (the
    character where parsing stopped, written as a list index), and the others were a bare 400
    `http_error` naming nothing."""
    bodies = [
        b"not json",
        b'{"name": "caf\xe9", "permissions": []}',
        b'{"name": "n", "permissions": [], "discount_limit_bps": 1' + b"0" * 5000 + b"}",
        b'{"name": "n", "permissions": ' + b"[" * 100_000 + b"]" * 100_000 + b"}",
    ]
    for body in bodies:
        answer = await http.post(
            "/v1/roles",
            content=body,
            headers={"Content-Type": "application/json", "Idempotency-Key": str(uuid.uuid4())},
        )
        assert answer.status_code == 400, answer.text
        problem = answer.json()
        assert problem["code"] == "malformed_json", (body[:40], problem)
        assert [e["field"] for e in problem["errors"]] == ["body"], (body[:40], problem)


async def test_a_nul_in_a_query_parameter_is_a_400_naming_it(http: httpx.AsyncClient) -> None:
    """As a NUL in a body's string names its field, one in a query parameter's value names
    the parameter; before, the 400 named nothing."""
    answer = await http.get("/v1/products?limit=5&query=a%00b&sku=c%00")
    assert (answer.status_code, answer.json()["code"]) == (400, "invalid_request"), answer.text
    assert _fields(answer) == ["query", "sku"]


async def test_a_nul_in_a_path_parameter_is_a_400_naming_it(http: httpx.AsyncClient) -> None:
    """As one in a query parameter's value names the parameter, a NUL in an id of the path
    names that path parameter, as any other refusal of it does; before, the 400 named
    nothing."""
    for path, field in [
        ("/v1/products/abc%00def", "product_id"),
        ("/v1/orders/ord_1%00", "order_id"),
        ("/v1/orders/%00/submit", "order_id"),
        ("/v1/locations/loc%00", "location_id"),
        ("/v1/promotions/pro_1/coupons/c%00u", "coupon_id"),
    ]:
        answer = await http.request("POST" if path.endswith("submit") else "GET", path)
        assert (answer.status_code, answer.json()["code"]) == (400, "invalid_request"), path
        assert answer.json()["errors"] == [
            {"field": field, "reason": "must not contain the NUL character"}
        ], path
    both = await http.get("/v1/products/a%00?query=b%00")
    assert _fields(both) == ["product_id", "query"]


async def test_a_blank_customer_search_filter_or_duplicate_is_a_400_naming_it(
    http: httpx.AsyncClient,
) -> None:
    # Sent but of spaces only, a filter finds nothing by any rule (an empty page answered it as
    # if searched), and a duplicate of spaces is no customer (a 404 `customer '   '` answered).
    for name in ("email", "phone", "external_id", "q"):
        answer = await http.get("/v1/customers/search", params={name: "   "})
        assert _fields(answer) == [name], (name, answer.text)
    merged = await http.post("/v1/customers/cus_1/merge", json={"duplicate_id": " \t "})
    assert _fields(merged) == ["duplicate_id"]
