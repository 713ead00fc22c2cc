"""A path with a trailing slash names no operation: it is the `route_not_found` 404 problem, as
any other unknown path is, for every method; never a redirect to the path without the slash.
A redirected POST kept its redirect under its Idempotency-Key: the request it pointed to was
then refused as the key reused with another request, and a retry got the redirect again.

The real gateway application against its real database; the services are never dialled."""

from __future__ import annotations

import re
from collections.abc import AsyncIterator

import gateway_alone
import httpx
import pytest_asyncio
from fastapi import FastAPI

from pos_devstack.testing import Infra

SECRET = "trailing-slash-test-secret-0123456789ab"


@pytest_asyncio.fixture(scope="module", loop_scope="session")
async def gateway(infra: Infra) -> AsyncIterator[tuple[FastAPI, httpx.AsyncClient]]:
    url = infra.service_database("gateway")
    key = await gateway_alone.merchant_key(url, SECRET, "Slash")
    async with gateway_alone.serve(gateway_alone.settings(url, SECRET), key) as served:
        yield served


async def test_a_post_with_a_trailing_slash_is_404_and_keeps_nothing_under_its_key(
    gateway: tuple[FastAPI, httpx.AsyncClient],
) -> None:
    _, http = gateway
    body = {"name": "till", "scopes": ["catalog:read"]}
    retry = {"Idempotency-Key": "slash-1"}
    slashed = await http.post("/v1/api-keys/", json=body, headers=retry)
    assert slashed.status_code == 404, slashed.text
    assert slashed.json()["code"] == "route_not_found"
    assert "location" not in slashed.headers
    again = await http.post("/v1/api-keys/", json=body, headers=retry)
    assert (again.status_code, again.json()["code"]) == (404, "route_not_found")
    assert "idempotent-replayed" not in again.headers
    # The request corrected under the same key runs.
    made = await http.post("/v1/api-keys", json=body, headers=retry)
    assert made.status_code == 201, made.text
    assert made.json()["key"].startswith("pos_test_")


async def test_no_operation_answers_a_redirect_for_its_path_with_a_slash(
    gateway: tuple[FastAPI, httpx.AsyncClient],
) -> None:
    app, http = gateway
    answered: dict[str, object] = {}
    for path, item in app.openapi()["paths"].items():
        if not path.startswith("/v1/") or path.startswith("/v1/admin/"):
            continue
        url = re.sub(r"\{[^}]+\}", "x_1", path) + "/"
        for method in item:
            answer = await http.request(method.upper(), url)
            code = answer.json().get("code") if answer.content else None
            if (answer.status_code, code) != (404, "route_not_found"):
                answered[f"{method.upper()} {url}"] = (answer.status_code, code)
    assert answered == {}
