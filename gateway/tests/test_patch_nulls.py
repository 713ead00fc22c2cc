"""A PATCH body's document says where null is taken: a field it marks nullable is one the
route takes null for (JSON merge-patch: null removes the value, as a location's `geo` or a
draft's `order_manual`), and null on any other field is a 400 naming it, nothing changed. A
client generated from the document never sends a null the route refuses, nor is told it may
not send one the route takes.

The real gateway application against its real database; the services are never dialled: a
refused null is answered before one would be, and a null taken reaches for one (a 503) or for
the gateway's own rows (a 404 here, where no such resource is).
"""

from __future__ import annotations

import re
from collections.abc import AsyncIterator
from typing import Any

import gateway_alone
import httpx
import pytest_asyncio
from fastapi import FastAPI

from pos_devstack.testing import Infra

SECRET = "patch-nulls-test-secret-0123456789abcdef"
# The fields whose null the routes take: the document must say so of these and no other.
CLEARABLE = {
    "PATCH /v1/locations/{location_id}": {"geo"},
    "PATCH /v1/orders/{order_id}": {"order_manual"},
    "PATCH /v1/order-settings": {"receiptless_limit"},
    "PATCH /v1/products/{product_id}": {"unit_cost"},
}


@pytest_asyncio.fixture(scope="module", loop_scope="session")
async def gateway(infra: Infra) -> AsyncIterator[tuple[FastAPI, httpx.AsyncClient]]:
    url = infra.service_database("gateway")
    key = await gateway_alone.merchant_key(url, SECRET, "Nulls")
    async with gateway_alone.serve(gateway_alone.settings(url, SECRET), key) as served:
        yield served


def _nullable(schema: dict[str, Any]) -> bool:
    return schema.get("type") == "null" or any(
        _nullable(branch) for branch in schema.get("anyOf", []) + schema.get("oneOf", [])
    )


def _patch_fields(document: dict[str, Any]) -> dict[str, dict[str, bool]]:
    """Each PATCH operation's body fields, and whether the document marks each nullable."""
    schemas = document["components"]["schemas"]
    found = {}
    for path, item in document["paths"].items():
        if "patch" not in item:
            continue
        body = item["patch"]["requestBody"]["content"]["application/json"]["schema"]
        body = schemas[body["$ref"].rsplit("/", 1)[-1]] if "$ref" in body else body
        found[f"PATCH {path}"] = {
            name: _nullable(field) for name, field in body.get("properties", {}).items()
        }
    return found


async def test_a_patch_documents_null_exactly_where_its_route_takes_it(
    gateway: tuple[FastAPI, httpx.AsyncClient],
) -> None:
    app, http = gateway
    fields = _patch_fields(app.openapi())
    assert set(CLEARABLE) <= set(fields) and len(fields) >= 8, sorted(fields)
    wrong: dict[str, object] = {}
    for operation, nullable in sorted(fields.items()):
        path = re.sub(r"\{[^}]+\}", "x_1", operation.removeprefix("PATCH "))
        for name, documented in sorted(nullable.items()):
            answer = await http.patch(path, json={name: None})
            refused = answer.status_code == 400 and {
                "field": name,
                "reason": "must not be null",
            } in (answer.json().get("errors") or [])
            if refused != (not documented):
                wrong[f"{operation} {name}"] = (documented, answer.status_code, answer.text[:200])
            taken = name in CLEARABLE.get(operation, set())
            if taken != documented:
                wrong[f"{operation} {name} (clearable)"] = (documented, taken)
    assert not wrong, wrong


async def test_a_patch_that_sends_no_field_is_a_400_on_every_route(
    gateway: tuple[FastAPI, httpx.AsyncClient],
) -> None:
    """`{}` changes nothing: every PATCH says so with a 400 before anything is asked (a silent
    200 would let a client believe a change it built wrong was made, and move no version),
    and `errors[]` names the field at fault, `body`, as every other `invalid_request` names
    one (until 2026-12-05 it named none)."""
    app, http = gateway
    operations = sorted(_patch_fields(app.openapi()))
    assert len(operations) >= 8, operations
    wrong = {}
    for operation in operations:
        path = re.sub(r"\{[^}]+\}", "x_1", operation.removeprefix("PATCH "))
        answer = await http.patch(path, json={})
        problem = answer.json()
        fields = [e.get("field") for e in problem.get("errors", [])]
        if (answer.status_code, problem.get("code"), fields) != (400, "invalid_request", ["body"]):
            wrong[operation] = (answer.status_code, answer.text[:200])
    assert not wrong, wrong
