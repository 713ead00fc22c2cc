"""Media types on every /v1 operation, from what its document declares: a body in a type the
operation does not take is a 415 problem (a JSON body sent as `text/plain` was a 400 that
blamed the fields), JSON in any of its spellings (`application/json`, `+json`, a charset) and
requests without a body pass as before.

The real gateway application against its real database; the services are never dialled, as
every refused request here is answered before one would be (a request let through gets the
route's own 400 or the 503 of a service nobody runs).
"""

from __future__ import annotations

import re
from collections.abc import AsyncIterator

import gateway_alone
import httpx
import pytest_asyncio
from fastapi import FastAPI

from pos_devstack.testing import Infra

SECRET = "media-types-test-secret-0123456789abcd"
ADMIN = "media-types-platform-credential-0123456789"


@pytest_asyncio.fixture(scope="module", loop_scope="session")
async def gateway(infra: Infra) -> AsyncIterator[tuple[FastAPI, httpx.AsyncClient]]:
    url = infra.service_database("gateway")
    key = await gateway_alone.merchant_key(url, SECRET, "Media")
    made = gateway_alone.settings(url, SECRET, platform_admin_token=ADMIN, rate_limit_burst=100_000)
    async with gateway_alone.serve(made, key) as served:
        yield served


def _with_bodies(app: FastAPI) -> list[tuple[str, str, tuple[str, ...]]]:
    """Every /v1 operation that takes a body, with the media types it declares; but the
    token exchange, whose every refusal RFC 6749 makes a 400 naming its `error` (a JSON body
    there is its `invalid_request`: test_credential_guards.py)."""
    return sorted(
        (method.upper(), path, tuple(operation["requestBody"]["content"]))
        for path, item in app.openapi()["paths"].items()
        if path.startswith("/v1/")
        for method, operation in item.items()
        if "requestBody" in operation and path != "/v1/oauth/token"
    )


def _admin(path: str) -> dict[str, str]:
    # The platform's operations are asked with its credential: without it, the edge refuses
    # them before it reads anything of the request.
    return {"Authorization": f"Bearer {ADMIN}"} if path.startswith("/v1/admin/") else {}


async def test_every_operation_refuses_a_body_in_a_type_it_does_not_take(
    gateway: tuple[FastAPI, httpx.AsyncClient],
) -> None:
    app, http = gateway
    operations = _with_bodies(app)
    assert len(operations) > 50
    wrong: dict[str, object] = {}
    for method, path, takes in operations:
        url = re.sub(r"\{[^}]+\}", "x_1", path)
        for sent in ("text/plain", "application/xml", None):
            headers = {**_admin(path), "Idempotency-Key": f"media-{method}-{url}-{sent}"}
            if sent is not None:
                headers["Content-Type"] = sent
            answer = await http.request(method, url, content=b'{"name": "x"}', headers=headers)
            problem = answer.json()
            if (answer.status_code, problem.get("code")) != (415, "unsupported_media_type") or (
                problem.get("errors", [{}])[0].get("field") != "Content-Type"
                or answer.headers["content-type"] != "application/problem+json"
                or answer.headers.get("accept") != ", ".join(takes)
            ):
                wrong[f"{method} {path} {sent}"] = (answer.status_code, problem)
    assert not wrong, wrong


async def test_json_in_any_of_its_spellings_and_bodyless_requests_pass(
    gateway: tuple[FastAPI, httpx.AsyncClient],
) -> None:
    _, http = gateway
    # Refused by the route for what the body says (a role needs permissions): it was read.
    for sent in (
        "application/json",
        "application/json; charset=utf-8",
        "Application/JSON;charset=UTF-8",
        "application/merge-patch+json",
    ):
        answer = await http.post(
            "/v1/roles",
            content=b'{"name": "Media"}',
            headers={"Content-Type": sent, "Idempotency-Key": f"media-json-{sent}"},
        )
        assert answer.status_code == 400, (sent, answer.text)
        assert [e["field"] for e in answer.json()["errors"]] == ["permissions"], answer.text
    # No body at all, whatever Content-Type says (or none): never a 415. An operation that
    # reads none, and one whose body is optional.
    for headers in ({}, {"Content-Type": "text/plain"}):
        for method, url in (
            ("POST", "/v1/registers/reg_1/retire"),
            ("GET", "/v1/roles"),
            ("DELETE", "/v1/roles/role_1"),
        ):
            answer = await http.request(method, url, headers=headers)
            assert answer.status_code != 415, (method, url, headers, answer.text)
    # An empty body sent with a length of 0 is no body either.
    empty = await http.post(
        "/v1/registers/reg_1/retire", content=b"", headers={"Content-Type": "text/plain"}
    )
    assert empty.status_code != 415, empty.text


async def test_a_refused_body_keeps_nothing_under_its_idempotency_key(
    gateway: tuple[FastAPI, httpx.AsyncClient],
) -> None:
    """The 415 comes before the key is claimed: the corrected request runs under it."""
    _, http = gateway
    headers = {"Idempotency-Key": "media-corrected"}
    plain = await http.post(
        "/v1/roles",
        content=b'{"name": "Media", "permissions": []}',
        headers={**headers, "Content-Type": "text/plain"},
    )
    assert plain.status_code == 415, plain.text
    made = await http.post(
        "/v1/roles", json={"name": "Media corrected", "permissions": []}, headers=headers
    )
    assert made.status_code == 201, made.text


async def test_every_operation_refuses_an_accept_it_cannot_answer(
    gateway: tuple[FastAPI, httpx.AsyncClient],
) -> None:
    """An Accept that allows none of the media types an operation answers in is a 406, before
    anything runs (a receipt asked for as a PDF was answered in JSON)."""
    app, http = gateway
    operations = sorted(
        (method.upper(), path)
        for path, item in app.openapi()["paths"].items()
        if path.startswith("/v1/") and path != "/v1/oauth/token"
        for method in item
    )
    wrong: dict[str, object] = {}
    for method, path in operations:
        url = re.sub(r"\{[^}]+\}", "x_1", path)
        headers = {**_admin(path), "Accept": "application/pdf"}
        answer = await http.request(method, url, headers=headers)
        problem = answer.json()
        if (answer.status_code, problem.get("code")) != (406, "not_acceptable") or (
            problem.get("errors", [{}])[0].get("field") != "Accept"
        ):
            wrong[f"{method} {path}"] = (answer.status_code, problem)
    assert not wrong, wrong


async def test_a_receipt_is_refused_only_in_a_type_it_cannot_be_written_in(
    gateway: tuple[FastAPI, httpx.AsyncClient],
) -> None:
    _, http = gateway
    receipt = "/v1/orders/ord_1/receipt"
    refused = await http.get(receipt, headers={"Accept": "application/pdf"})
    assert refused.status_code == 406, refused.text
    assert refused.headers["content-type"] == "application/problem+json"
    assert refused.json()["title"] == "Not acceptable"
    reason = refused.json()["errors"][0]["reason"]
    assert all(media in reason for media in ("application/json", "text/html", "text/plain"))
    for accept in ("text/html;q=0, application/json;q=0, text/plain;q=0", "image/*"):
        answer = await http.get(receipt, headers={"Accept": accept})
        assert answer.status_code == 406, (accept, answer.text)
    # Whatever it can be written in passes to the route (which asks the order service,
    # nobody's here: a 503).
    passed = ("*/*", "application/json", "text/plain", "text/html", "text/*", "",
              "application/pdf, */*;q=0.1", "application/json; charset=utf-8")  # fmt: skip
    for accept in (None, *passed):
        headers = {"Accept": accept} if accept is not None else {}
        answer = await http.get(receipt, headers=headers)
        assert answer.status_code == 503, (accept, answer.text)
    # The live feed answers its server-sent events to an EventSource, and JSON to nobody.
    stream = await http.get("/v1/events/stream", headers={"Accept": "text/event-stream"})
    assert stream.status_code == 503, stream.text
    not_json = await http.get("/v1/events/stream", headers={"Accept": "application/json"})
    assert not_json.status_code == 406, not_json.text
    # And the feed's other operations answer JSON, as ever.
    page = await http.get("/v1/events/evt_1", headers={"Accept": "application/json"})
    assert page.status_code == 503, page.text
