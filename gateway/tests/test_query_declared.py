"""A query parameter an operation does not take is a 400 `unknown_parameter` naming it, on every
/v1 operation (a typo such as `updated_sinse` never reads as "no filter"), while the parameters
an operation declares read as ever.

The real gateway application against its real database; the services are never dialled, as
every refused request here is answered before one would be.
"""

from __future__ import annotations

import re
from collections.abc import AsyncIterator

import gateway_alone
import httpx
import pytest_asyncio
from fastapi import FastAPI

from pos_devstack.testing import Infra
from pos_gateway.confinement import CONFINED_LISTS

SECRET = "query-declared-test-secret-0123456789ab"
ADMIN = "query-declared-platform-credential-0123456789"


@pytest_asyncio.fixture(scope="module", loop_scope="session")
async def gateway(infra: Infra) -> AsyncIterator[tuple[FastAPI, httpx.AsyncClient]]:
    url = infra.service_database("gateway")
    key = await gateway_alone.merchant_key(url, SECRET, "Query")
    made = gateway_alone.settings(url, SECRET, platform_admin_token=ADMIN)
    async with gateway_alone.serve(made, key) as served:
        yield served


def _operations(app: FastAPI) -> list[tuple[str, str]]:
    """Every /v1 operation of the document."""
    return sorted(
        (method.upper(), path)
        for path, item in app.openapi()["paths"].items()
        if path.startswith("/v1/")
        for method in item
    )


async def test_every_operation_refuses_a_parameter_it_does_not_take(
    gateway: tuple[FastAPI, httpx.AsyncClient],
) -> None:
    app, http = gateway
    refused: dict[str, object] = {}
    for method, path in _operations(app):
        url = re.sub(r"\{[^}]+\}", "x_1", path)
        # The platform's operations are asked with its credential: without it, the edge
        # refuses them before it reads anything of the request.
        admin = {"Authorization": f"Bearer {ADMIN}"} if path.startswith("/v1/admin/") else None
        answer = await http.request(
            method, url, params={"updated_sinse": "2026-01-01T00:00:00Z"}, headers=admin
        )
        problem = answer.json()
        if answer.status_code != 400 or problem.get("code") != "unknown_parameter":
            refused[f"{method} {path}"] = (answer.status_code, problem.get("code"))
            continue
        assert problem["errors"] == [
            {"field": "updated_sinse", "reason": "is not a parameter of this operation"}
        ]
    assert refused == {}


async def test_each_unknown_parameter_is_named_once(
    gateway: tuple[FastAPI, httpx.AsyncClient],
) -> None:
    _, http = gateway
    answer = await http.get("/v1/api-keys?limit=5&colour=red&size=m&colour=blue")
    assert answer.status_code == 400, answer.text
    assert [e["field"] for e in answer.json()["errors"]] == ["colour", "size"]


async def test_declared_parameters_read_as_ever(gateway: tuple[FastAPI, httpx.AsyncClient]) -> None:
    _, http = gateway
    listed = await http.get("/v1/api-keys", params={"limit": 5})
    assert listed.status_code == 200, listed.text
    paged = await http.get("/v1/api-keys", params={"limit": 5, "cursor": ""})
    assert paged.status_code == 200, paged.text
    # Off the public API (the docs page, the probes) nothing is refused.
    assert (await http.get("/healthz", params={"cache": "1"})).status_code == 200


async def test_a_card_number_as_a_parameter_name_is_never_repeated(
    gateway: tuple[FastAPI, httpx.AsyncClient],
) -> None:
    _, http = gateway
    answer = await http.get("/v1/api-keys", params={"4111111111111111": "1"})
    assert answer.status_code == 400
    assert answer.json()["code"] == "card_number_not_allowed"
    assert "4111111111111111" not in answer.text


async def test_the_lists_a_register_is_narrowed_on_take_its_location(
    gateway: tuple[FastAPI, httpx.AsyncClient],
) -> None:
    # The edge adds `location_id` to these for a register's credential: each must take it.
    _, http = gateway
    for path in sorted(CONFINED_LISTS):
        answer = await http.get(path, params={"location_id": "loc_1"})
        assert answer.json().get("code") != "unknown_parameter", path


def test_the_document_says_every_operation_may_answer_400(
    gateway: tuple[FastAPI, httpx.AsyncClient],
) -> None:
    app, _ = gateway
    document = app.openapi()
    missing = [
        f"{method} {route}"
        for route, item in document["paths"].items()
        if route.startswith("/v1/")
        for method, operation in item.items()
        if "400" not in operation["responses"]
    ]
    assert missing == []
