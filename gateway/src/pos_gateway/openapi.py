"""The served OpenAPI document: FastAPI's, made true to what the gateway answers.

FastAPI documents a few things the gateway never does (a 422 validation shape, `null` query
values); these passes correct them once for every route, present and future.
"""

from __future__ import annotations

from typing import Any

from fastapi import FastAPI
from fastapi.openapi.utils import get_openapi

from pos_gateway.edge import OPEN_PATHS
from pos_gateway.idempotency import MAX_KEY_LENGTH
from pos_gateway.routes.common import INT64_MAX, INT64_MIN, NO_NUL, NULL
from pos_gateway.schemas.problems import PaymentDeclined, Problem, VersionMismatch

# Printable ASCII without leading or trailing blanks (HTTP trims those off header values).
IDEMPOTENCY_KEY = rf"^[\x21-\x7e]([\x20-\x7e]{{0,{MAX_KEY_LENGTH - 2}}}[\x21-\x7e])?$"


def build(app: FastAPI) -> dict[str, Any]:
    document: dict[str, Any] = with_nulls(
        get_openapi(
            title=app.title, version=app.version, description=app.description, routes=app.routes
        )
    )
    with_integer_bounds(document)
    without_default_validation_answer(document)
    without_null_parameters(document)
    strings_without_nul(document)
    with_idempotency_key(document)
    with_scope_described(document)
    with_problems(document)
    components = document.setdefault("components", {})
    components["securitySchemes"] = {
        "apiKey": {
            "type": "http",
            "scheme": "bearer",
            "description": "An API key (pos_test_... / pos_live_...)",
        }
    }
    return document


def with_nulls(value: Any) -> Any:
    """`value` with the NULL stand-ins (routes.common.success) back to null."""
    if value == NULL:
        return None
    if isinstance(value, dict):
        return {k: with_nulls(v) for k, v in value.items()}
    if isinstance(value, list):
        return [with_nulls(v) for v in value]
    return value


def with_scope_described(document: dict[str, Any]) -> None:
    """Each operation's description: the scope it requires, then the route's docstring (the
    rules across fields that a schema cannot state)."""
    for operations in document["paths"].values():
        for operation in operations.values():
            scopes = operation.get("x-required-scopes")
            if scopes:
                needs = f"Requires the `{scopes[0]}` scope."
                rules = operation.get("description", "")
                operation["description"] = f"{needs}\n\n{rules}" if rules else needs


def with_problems(document: dict[str, Any]) -> None:
    """The problem schemas the error answers name (routes.common.problems): no route returns
    them, so FastAPI does not add them itself. What they share with the answers (Order,
    Payment, ...) is FastAPI's own schema of the same model."""
    schemas = document.setdefault("components", {}).setdefault("schemas", {})
    for model in (Problem, PaymentDeclined, VersionMismatch):
        schema = model.model_json_schema(
            ref_template="#/components/schemas/{model}", mode="serialization"
        )
        for name, shared in schema.pop("$defs", {}).items():
            schemas.setdefault(name, shared)
        schemas[model.__name__] = schema


def with_integer_bounds(value: Any) -> None:
    """FastAPI's document model holds every bound as a float: `"minimum": 0.0`, and int64's
    maximum rounded up to 2**63, past the range it bounds. An integer's bounds are written back
    as integers, the rounded ones clamped into int64."""
    if isinstance(value, list):
        for item in value:
            with_integer_bounds(item)
    if not isinstance(value, dict):
        return
    if value.get("type") == "integer":
        for key in ("minimum", "maximum", "exclusiveMinimum", "exclusiveMaximum"):
            if isinstance(value.get(key), float):
                value[key] = min(max(int(value[key]), INT64_MIN), INT64_MAX)
    for item in value.values():
        with_integer_bounds(item)


def without_default_validation_answer(document: dict[str, Any]) -> None:
    """FastAPI documents a 422 `HTTPValidationError` on every operation with input, but
    problems.install answers invalid input with a 400 problem: that 422 is never sent."""
    default = "#/components/schemas/HTTPValidationError"
    for operations in document["paths"].values():
        for operation in operations.values():
            answer = operation.get("responses", {}).get("422", {})
            if (
                answer.get("content", {}).get("application/json", {}).get("schema", {}).get("$ref")
                == default
            ):
                del operation["responses"]["422"]
    schemas = document.get("components", {}).get("schemas", {})
    schemas.pop("HTTPValidationError", None)
    schemas.pop("ValidationError", None)


def without_null_parameters(document: dict[str, Any]) -> None:
    """An optional parameter is documented as optional (`required: false`), not as `null`: a
    query string or header has no null, and clients would send the word "null"."""
    for operations in document["paths"].values():
        for operation in operations.values():
            for parameter in operation.get("parameters", []):
                schema = parameter.get("schema", {})
                kept = [s for s in schema.get("anyOf", []) if s != {"type": "null"}]
                if len(kept) == 1 and len(schema["anyOf"]) == 2:
                    outer = {k: v for k, v in schema.items() if k != "anyOf"}
                    parameter["schema"] = {**kept[0], **outer}


def _strings_without_nul(schema: Any) -> None:
    if isinstance(schema, dict):
        free = schema.get("type") == "string" and not {"pattern", "enum", "format"} & set(schema)
        if free:
            schema["pattern"] = NO_NUL
        for value in schema.values():
            _strings_without_nul(value)
    elif isinstance(schema, list):
        for value in schema:
            _strings_without_nul(value)


def strings_without_nul(document: dict[str, Any]) -> None:
    """Every input string says it takes no NUL (the edge and the Body models refuse it)."""
    _strings_without_nul(document.get("components", {}).get("schemas", {}))
    for operations in document["paths"].values():
        for operation in operations.values():
            _strings_without_nul(operation.get("parameters", []))


def with_idempotency_key(document: dict[str, Any]) -> None:
    """The edge takes `Idempotency-Key` on every authenticated POST; the routes never see it,
    so it is documented here, where no route can forget it."""
    for path, operations in document["paths"].items():
        if "post" not in operations or path in OPEN_PATHS or not path.startswith("/v1/"):
            continue
        if path.startswith("/v1/admin/"):
            continue
        operations["post"].setdefault("parameters", []).append(
            {
                "name": "Idempotency-Key",
                "in": "header",
                "required": False,
                "description": "Makes a retry safe: the first answer is kept 24 hours and "
                "replayed with `Idempotent-Replayed: true`; the same key with another request "
                "is a 422, one still running a 409. Scoped to your merchant.",
                "schema": {"type": "string", "pattern": IDEMPOTENCY_KEY},
                "example": "order-7f3c9a2e",
            }
        )
