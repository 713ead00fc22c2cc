"""The served OpenAPI document: FastAPI's, made true to what the gateway answers.

FastAPI documents a few things the gateway never does (a 422 validation shape, `null` query
values) and knows nothing of what the edge does for every route (credentials, rate limits,
Idempotency-Key, request ids); these passes correct and complete the document once for every
route, present and future.
"""

from __future__ import annotations

import copy
from typing import Any

from fastapi import FastAPI
from fastapi.openapi.utils import get_openapi

from pos_gateway.edge import OPEN_PATHS, REQUEST_ID_MAX
from pos_gateway.idempotency import MAX_KEY_LENGTH, SHOWN_ONCE
from pos_gateway.keys import ALL_SCOPES
from pos_gateway.routes.common import (
    IF_MATCH,
    IF_MATCH_MAX,
    INT64_MAX,
    INT64_MIN,
    NO_NUL,
    NULL,
    shown_once_text,
)
from pos_gateway.schemas.problems import PaymentDeclined, Problem, VersionMismatch
from pos_gateway.tokens import TOKEN_SECONDS

# Printable ASCII without leading or trailing blanks (HTTP trims those off header values).
IDEMPOTENCY_KEY = rf"^[\x21-\x7e]([\x20-\x7e]{{0,{MAX_KEY_LENGTH - 2}}}[\x21-\x7e])?$"
TOKEN_URL = "/v1/oauth/token"  # noqa: S105 (a path, not a secret)

# Relative: the document is served by the gateway it describes, wherever that runs.
SERVERS = [
    {
        "url": "/",
        "description": "The gateway serving this document: local (`make up`), test or production",
        "x-internal": False,
    }
]

TAGS = {
    "catalog": "Products, variants, barcodes and prices; versions, archive, batch upsert, search",
    "locations and inventory": "Stores and warehouses, stock levels and adjustments",
    "stock and reservations": "Availability, counts, transfers, history, thresholds, holds "
    "on stock (reservations) and sourcing",
    "customers": "Customer profiles and loyalty points",
    "promotions": "Discounts applied at checkout",
    "orders and payments": "The checkout (price, promotion, tax, payment, confirmation), "
    "orders and payments",
    "payments": "Payments (authorised, captured in parts, voided), refunds to the tenders they "
    "were taken on, and the change feed of both; the settlement report of a location's day",
    "events": "The ordered event feed (every sale, stock and customer change) and signed "
    "webhook subscriptions (Standard Webhooks), their deliveries and replays",
    "gift cards": "Stored value: issue, load, redeem, balance, the activity ledger. A code "
    "travels only in request bodies and is shown once",
    "credentials": "Your API keys and OAuth clients, and the client-credentials token exchange",
    "registers": "Registers (tills) at a location, paired once with a device by a short-lived "
    "code; the device then holds a credential of its own, for that location only",
    "staff": "Staff members, roles and permissions; signing in at a register with a PIN and a "
    "manager's override for one action",
    "audit": "The append-only record of every sensitive action: who, at which register or with "
    "which credential, when, and what changed",
    "platform administration": "Merchants and dead letters, with the platform credential "
    "(off unless configured)",
    "platform": "Health, readiness and metrics for the platform's own probes; no credential",
}

SCOPES = {
    "catalog:read": "Read products",
    "catalog:write": "Create, change, archive and unarchive products",
    "inventory:read": "Read locations, stock, availability and reservations",
    "inventory:write": "Create locations; adjust, count and move stock; hold and source it",
    "customers:read": "Read customers and their loyalty",
    "customers:write": "Create and change customers",
    "promotions:read": "Read promotions",
    "promotions:write": "Create promotions",
    "orders:read": "Read orders",
    "orders:write": "Check out (create orders)",
    "payments:read": "Read payments",
    "payments:write": "Take payments",
    "credentials:manage": "Create, list and revoke your API keys and OAuth clients",
    "events:read": "Read the event feed",
    "webhooks:manage": "Create and change webhook subscriptions; read and replay deliveries",
    "registers:read": "Read registers (a register's own credential: its own register)",
    "registers:manage": "Create and retire registers; issue their pairing codes",
    "staff:manage": "Create, change and deactivate staff members and roles: the merchant's "
    "staff administration, which decides who may do what at a till (it defines every role's "
    "permissions and gives any role, `manager` and `admin` included); grant it as you would "
    "the owner's say over the tills. A register's credential never holds it",
    "register:session": "Sign staff in and out at a paired register; take a manager's override "
    "(a register's own credential only)",
    "audit:read": "Read the audit log",
    "audit:manage": "Set how long the audit log is kept",
}

RATE_LIMIT = {"type": "string", "maxLength": 64}
# The longest `WWW-Authenticate` an insufficient_scope refusal sends: every scope named.
_SCOPE_HEADER_MAX = len(f'Bearer error="insufficient_scope", scope="{" ".join(ALL_SCOPES)}"')

HEADERS: dict[str, dict[str, Any]] = {
    "X-Request-Id": {
        "description": "The request's own `X-Request-Id` when it sent one of 1 to "
        f"{REQUEST_ID_MAX} visible ASCII characters, else a new UUID: quote it when you ask "
        "about a request",
        "required": True,
        "schema": {"type": "string", "maxLength": REQUEST_ID_MAX, "pattern": r"^[!-~]+$"},
    },
    "RateLimit": {
        "description": "What is left of this credential's budget (IETF RateLimit header "
        "fields): requests left `r`, seconds until the budget is full again `t`",
        "required": True,
        "schema": {**RATE_LIMIT, "pattern": r'^"default";r=[0-9]{1,10};t=[0-9]{1,10}$'},
        "example": '"default";r=199;t=1',
    },
    "RateLimit-Policy": {
        "description": "This credential's budget: `q` requests per window of `w` seconds, "
        "refilled continuously (a token bucket)",
        "required": True,
        "schema": {**RATE_LIMIT, "pattern": r'^"default";q=[0-9]{1,10};w=[0-9]{1,10}$'},
        "example": '"default";q=200;w=2',
    },
    "Retry-After": {
        "description": "Seconds until this credential may send a request again: on every "
        "429 `rate_limited` (a service's own 429 carries none)",
        "required": False,
        "schema": {"type": "integer", "format": "int32", "minimum": 1, "maximum": 86400},
    },
    "Retry-After-In-Progress": {
        "description": "Sent when the same Idempotency-Key is still running: retry after it",
        "required": False,
        "schema": {"type": "integer", "format": "int32", "minimum": 1, "maximum": 86400},
    },
    "Idempotent-Replayed": {
        "description": "`true` on the stored answer to a POST replayed for its Idempotency-Key "
        "(status, body and ETag as first sent: the first answer's, whatever changed since)",
        "required": False,
        "schema": {"type": "string", "enum": ["true"]},
    },
    "ETag": {
        "description": "The resource's version, for `If-Match` on your next change",
        "required": True,
        "schema": {"type": "string", "maxLength": 21, "pattern": r'^"[0-9]{1,19}"$'},
        "example": '"3"',
    },
    "ETag-Unless-Replayed": {
        "description": "The resource's version, for `If-Match` on your next change; on an "
        "answer replayed for its Idempotency-Key, the first answer's (the resource may have "
        "changed since: a stale one is a 412 that names the current version)",
        "required": False,
        "schema": {"type": "string", "maxLength": 21, "pattern": r'^"[0-9]{1,19}"$'},
        "example": '"3"',
    },
    "WWW-Authenticate": {
        "description": 'The credential the request needs: `Bearer realm="omnitill"`',
        "required": True,
        "schema": {"type": "string", "maxLength": 200, "pattern": r"^Bearer [ -~]+$"},
    },
    "WWW-Authenticate-Scope": {
        "description": "The scope the credential lacks: "
        '`Bearer error="insufficient_scope", scope="<scope>"` (not on a replayed answer); '
        "the scopes, space-separated, when it acts on a credential holding several it lacks",
        "required": False,
        "schema": {"type": "string", "maxLength": _SCOPE_HEADER_MAX, "pattern": r"^Bearer [ -~]+$"},
    },
    "WWW-Authenticate-Basic": {
        "description": "Sent when the client authenticated with HTTP Basic: "
        '`Basic realm="omnitill"`',
        "required": False,
        "schema": {"type": "string", "maxLength": 200, "pattern": r"^Basic [ -~]+$"},
    },
    "Cache-Control": {
        "description": "`no-store`: the answer holds a secret or a token, which no cache may "
        "keep (RFC 6749 section 5.1, RFC 9111)",
        "required": True,
        "schema": {"type": "string", "enum": ["no-store"]},
    },
}
# The same two headers where the edge may answer before it knows the credential (a 400 for a
# NUL in the URL), or the request was shed before the edge (admission.py's 503): there they
# are absent.
for _name in ("RateLimit", "RateLimit-Policy"):
    HEADERS[f"{_name}-If-Counted"] = {
        **HEADERS[_name],
        "required": False,
        "description": HEADERS[_name]["description"] + "; absent when the request was refused "
        "before its credential was read",
    }
HEADERS["X-Request-Id-If-Admitted"] = {
    **HEADERS["X-Request-Id"],
    "required": False,
    "description": HEADERS["X-Request-Id"]["description"] + "; absent from the 503 of a "
    "gateway at its limit of requests in progress",
}
HEADERS["Retry-After-If-Overloaded"] = {
    **HEADERS["Retry-After"],
    "required": False,
    "description": "Seconds to wait before retrying: sent when the gateway is at its limit of "
    "requests in progress (`overloaded`) and when a service the request needs is unavailable",
}

HEADERS["Accept-Taken"] = {
    "description": "The media types the operation takes a request body in (RFC 9110 section "
    "15.5.16)",
    "required": True,
    "schema": {"type": "string", "maxLength": 200, "pattern": r"^[ -~]+$"},
    "example": "application/json",
}

PARAMETERS: dict[str, dict[str, Any]] = {
    "Idempotency-Key": {
        "name": "Idempotency-Key",
        "in": "header",
        "required": False,
        "description": "Makes a retry safe: the first answer is kept 24 hours and replayed with "
        "`Idempotent-Replayed: true`; the same key with another request is a 422, one still "
        "running a 409. Scoped to your merchant.",
        "schema": {
            "type": "string",
            "minLength": 1,
            "maxLength": MAX_KEY_LENGTH,
            "pattern": IDEMPOTENCY_KEY,
        },
        "example": "order-7f3c9a2e",
    },
    "If-Match": {
        "name": "If-Match",
        "in": "header",
        "required": False,
        "description": 'The version you saw, as its ETag: `"3"` (or `W/"3"`, or 3), or a list '
        'of them (`"3", "4"`: true when any one is the current version); stale is a '
        "412 carrying `current_version`. `*` matches whatever version is current (RFC 9110): "
        "the change goes ahead, and a resource that does not exist is still a 404 (or on an "
        "upsert a 412 with `current_version` 0)",
        "schema": {"type": "string", "maxLength": IF_MATCH_MAX, "pattern": IF_MATCH},
        "example": '"3"',
    },
}


def _ref(kind: str, name: str) -> dict[str, str]:
    return {"$ref": f"#/components/{kind}/{name}"}


def _headers(*names: str) -> dict[str, Any]:
    # A variant (`RateLimit-If-Counted`, `ETag-Unless-Replayed`...) is the same header, sent
    # only in some cases.
    wire = {
        "RateLimit-If-Counted": "RateLimit",
        "RateLimit-Policy-If-Counted": "RateLimit-Policy",
        "X-Request-Id-If-Admitted": "X-Request-Id",
        "Retry-After-In-Progress": "Retry-After",
        "Retry-After-If-Overloaded": "Retry-After",
        "ETag-Unless-Replayed": "ETag",
        "WWW-Authenticate-Scope": "WWW-Authenticate",
        "WWW-Authenticate-Basic": "WWW-Authenticate",
        "Accept-Taken": "Accept",
    }
    return {wire.get(n, n): _ref("headers", n) for n in names}


COUNTED = ("X-Request-Id", "RateLimit", "RateLimit-Policy")
STORED = (*COUNTED, "Idempotent-Replayed")
IF_COUNTED = ("RateLimit-If-Counted", "RateLimit-Policy-If-Counted")
# The problems an authenticated /v1 operation may answer, each once, with the headers the edge
# really sends on it: nothing counted before the credential is known (413, 401), and a
# replayed answer carries its status and body but not the headers it was first sent with.
RESPONSES: dict[str, tuple[str, tuple[str, ...]]] = {
    "400": ("BadRequest", ("X-Request-Id", *IF_COUNTED, "Idempotent-Replayed")),
    "401": ("Unauthorized", (*COUNTED, "WWW-Authenticate")),
    "402": ("PaymentRequired", STORED),
    "403": ("Forbidden", (*STORED, "WWW-Authenticate-Scope")),
    "404": ("NotFound", STORED),
    "409": ("Conflict", (*STORED, "Retry-After-In-Progress")),
    "412": ("PreconditionFailed", STORED),
    "413": ("PayloadTooLarge", ("X-Request-Id",)),
    "422": ("UnprocessableContent", STORED),
    "429": ("TooManyRequests", (*COUNTED, "Retry-After")),
    # A service down, or the whole gateway at its limit (admission.py sheds before the edge).
    "503": (
        "ServiceUnavailable",
        ("X-Request-Id-If-Admitted", *IF_COUNTED, "Retry-After-If-Overloaded"),
    ),
    "504": ("GatewayTimeout", COUNTED),
}

# The operations whose success answer carries the resource's version as an ETag.
ETAG_OPERATIONS = frozenset(
    {"get_product", "update_product", "create_product", "archive_product", "unarchive_product",
     "get_customer",
     "create_customer", "update_customer", "upsert_customer", "get_program", "set_program",
     "get_staff", "update_staff", "deactivate_staff", "get_order_settings", "update_order_settings",
     "get_payment_settings", "put_payment_settings", "get_gift_card_settings",
     "put_gift_card_settings", "get_audit_settings", "put_audit_settings",
     "get_order", "update_draft_order", "get_location", "update_location",
     "create_register", "get_register", "update_register", "retire_register",
     "get_role", "update_role", "create_group", "get_group", "update_group",
     "create_promotion", "get_promotion", "update_promotion", "pause_promotion",
     "resume_promotion", "end_promotion",
     "get_webhook_subscription", "update_webhook_subscription"}
)  # fmt: skip


def build(app: FastAPI) -> dict[str, Any]:
    document: dict[str, Any] = with_nulls(
        get_openapi(
            title=app.title,
            version=app.version,
            description=app.description,
            routes=app.routes,
            servers=SERVERS,
        )
    )
    with_integer_bounds(document)
    without_default_validation_answer(document)
    without_null_parameters(document)
    form_fields_without_null(document)
    strings_without_nul(document)
    components = document.setdefault("components", {})
    with_problems(document)
    integers_with_format(document)
    components["headers"] = copy.deepcopy(HEADERS)
    components["parameters"] = copy.deepcopy(PARAMETERS)
    components["securitySchemes"] = security_schemes()
    with_tags(document)
    with_idempotency_key(document)
    with_shared_if_match(document)
    with_security(document)
    with_scope_described(document)
    with_edge_answers(document)
    return document


def security_schemes() -> dict[str, Any]:
    return {
        "apiKey": {
            "type": "http",
            "scheme": "bearer",
            "description": "An API key (`pos_test_...` / `pos_live_...`) carrying the scopes "
            "the operation names in `x-required-scopes` (the same as its `oauth2` scopes)",
        },
        "oauth2": {
            "type": "oauth2",
            "description": "An access token (a JWT, RFC 9068; treat it as opaque) from the "
            f"client-credentials grant; it lasts {TOKEN_SECONDS // 60} minutes and carries the "
            "scopes it was issued for. Issued and checked as RFC8725 (JWT best current "
            "practices) asks: one fixed algorithm (HS256, never `none`), `typ` at+jwt, and "
            "`iss`, `aud`, `exp` and `iat` always checked",
            # Every scope a credential may carry; one without a description fails here.
            "flows": {
                "clientCredentials": {
                    "tokenUrl": TOKEN_URL,
                    "scopes": {scope: SCOPES[scope] for scope in ALL_SCOPES},
                }
            },
        },
        "platformAdmin": {
            "type": "http",
            "scheme": "bearer",
            "description": "The platform credential (`PLATFORM_ADMIN_TOKEN`), not a merchant's",
        },
    }


def _operations(document: dict[str, Any]) -> list[tuple[str, str, dict[str, Any]]]:
    return [
        (path, method, operation)
        for path, operations in document["paths"].items()
        for method, operation in operations.items()
    ]


def _kind(path: str) -> str:
    """Who may call `path`: anyone (`open`), the platform (`admin`) or a merchant (`merchant`)."""
    if path.startswith("/v1/admin/"):
        return "admin"
    if not path.startswith("/v1/") or path in OPEN_PATHS:
        return "open"
    return "merchant"


def with_nulls(value: Any) -> Any:
    """`value` with the NULL stand-ins (routes.common.success) back to null."""
    if value == NULL:
        return None
    if isinstance(value, dict):
        return {k: with_nulls(v) for k, v in value.items()}
    if isinstance(value, list):
        return [with_nulls(v) for v in value]
    return value


def with_integer_bounds(document: dict[str, Any]) -> None:
    """FastAPI's document model holds every bound as a float: `"minimum": 0.0`, and int64's
    maximum rounded up to 2**63, past the range it bounds. An integer's bounds are written back
    as integers, the rounded ones clamped into int64."""
    _walk(document, _integer_bounds)


def _integer_bounds(schema: dict[str, Any]) -> None:
    if schema.get("type") == "integer":
        for key in ("minimum", "maximum", "exclusiveMinimum", "exclusiveMaximum"):
            if isinstance(schema.get(key), float):
                schema[key] = min(max(int(schema[key]), INT64_MIN), INT64_MAX)


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


def with_scope_described(document: dict[str, Any]) -> None:
    """Each operation's description: the scope it requires (and the secrets it shows once),
    then the route's docstring (the rules across fields that a schema cannot state)."""
    for _, _, operation in _operations(document):
        scopes = operation.get("x-required-scopes")
        if scopes:
            secrets = tuple(operation.get(SHOWN_ONCE, ()))
            named = " and ".join(f"`{s}`" for s in scopes)
            needs = f"Requires the {named} scope{'s' if len(scopes) > 1 else ''}." + (
                shown_once_text(secrets) if secrets else ""
            )
            rules = operation.get("description", "")
            operation["description"] = f"{needs}\n\n{rules}" if rules else needs


def without_default_validation_answer(document: dict[str, Any]) -> None:
    """FastAPI documents a 422 `HTTPValidationError` on every operation with input, but
    problems.install answers invalid input with a 400 problem: that 422 is never sent."""
    default = "#/components/schemas/HTTPValidationError"
    for _, _, operation in _operations(document):
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
    for _, _, operation in _operations(document):
        for parameter in operation.get("parameters", []):
            schema = parameter.get("schema", {})
            kept = [s for s in schema.get("anyOf", []) if s != {"type": "null"}]
            if len(kept) == 1 and len(schema["anyOf"]) == 2:
                outer = {k: v for k, v in schema.items() if k != "anyOf"}
                parameter["schema"] = {**kept[0], **outer}


def form_fields_without_null(document: dict[str, Any]) -> None:
    """An optional form field is documented as optional (not in `required`), not as `null`: a
    form has no null, as a query string has none."""
    schemas = document.get("components", {}).get("schemas", {})
    for _, _, operation in _operations(document):
        content = operation.get("requestBody", {}).get("content", {})
        ref = content.get("application/x-www-form-urlencoded", {}).get("schema", {}).get("$ref")
        form = schemas.get(ref.rsplit("/", 1)[-1], {}) if ref else {}
        for name, field in form.get("properties", {}).items():
            kept = [s for s in field.get("anyOf", []) if s != {"type": "null"}]
            if len(kept) == 1 and len(field["anyOf"]) == 2:
                outer = {k: v for k, v in field.items() if k != "anyOf"}
                form["properties"][name] = {**kept[0], **outer}


def _walk(schema: Any, visit: Any) -> None:
    if isinstance(schema, dict):
        visit(schema)
        for value in schema.values():
            _walk(value, visit)
    elif isinstance(schema, list):
        for value in schema:
            _walk(value, visit)


def _no_nul(schema: dict[str, Any]) -> None:
    if schema.get("type") == "string" and not {"pattern", "enum", "format"} & set(schema):
        schema["pattern"] = NO_NUL


def strings_without_nul(document: dict[str, Any]) -> None:
    """Every input string says it takes no NUL (the edge and the Body models refuse it)."""
    _walk(document.get("components", {}).get("schemas", {}), _no_nul)
    for _, _, operation in _operations(document):
        _walk(operation.get("parameters", []), _no_nul)


INT32 = (-(2**31), 2**31 - 1)


def _int_format(schema: dict[str, Any]) -> None:
    # Every integer crosses to a service as a protobuf int32 or int64; one bounded within
    # int32 says so, any other is an int64 (what a generated client must be able to hold).
    if schema.get("type") != "integer" or "format" in schema:
        return
    low, high = schema.get("minimum"), schema.get("maximum")
    fits = low is not None and high is not None and INT32[0] <= low and high <= INT32[1]
    schema["format"] = "int32" if fits else "int64"


def integers_with_format(document: dict[str, Any]) -> None:
    _walk(document.get("components", {}).get("schemas", {}), _int_format)
    for _, _, operation in _operations(document):
        _walk(operation.get("parameters", []), _int_format)
        _walk(operation.get("requestBody", {}), _int_format)
        _walk(operation.get("responses", {}), _int_format)


def with_tags(document: dict[str, Any]) -> None:
    """Every tag an operation uses, declared once with what it groups (in first-use order)."""
    used = dict.fromkeys(t for _, _, op in _operations(document) for t in op.get("tags", []))
    undeclared = [t for t in used if t not in TAGS]
    if undeclared:
        raise ValueError(f"describe these tags in pos_gateway.openapi.TAGS: {undeclared}")
    document["tags"] = [{"name": t, "description": TAGS[t]} for t in used]


def with_idempotency_key(document: dict[str, Any]) -> None:
    """The edge takes `Idempotency-Key` on every authenticated POST (a merchant's, and the
    platform's on `/v1/admin/`); the routes never see it, so it is documented here, where no
    route can forget it."""
    for path, method, operation in _operations(document):
        if method == "post" and _kind(path) in ("merchant", "admin"):
            operation.setdefault("parameters", []).append(_ref("parameters", "Idempotency-Key"))


def with_shared_if_match(document: dict[str, Any]) -> None:
    """The routes' `If-Match` header parameters become the one shared definition."""
    for _, _, operation in _operations(document):
        operation["parameters"] = [
            _ref("parameters", "If-Match")
            if p.get("in") == "header" and p.get("name", "").lower() == "if-match"
            else p
            for p in operation.get("parameters", [])
        ]
        if not operation["parameters"]:
            del operation["parameters"]


def with_security(document: dict[str, Any]) -> None:
    """Each operation names what it takes: an API key or an OAuth access token with its
    scopes, the platform credential, or nothing (`security: []`, said explicitly)."""
    for path, _, operation in _operations(document):
        kind = _kind(path)
        if kind == "open":
            operation["security"] = []
        elif kind == "admin":
            operation["security"] = [{"platformAdmin": []}]
        else:
            scopes = operation.get("x-required-scopes")
            if not scopes:
                raise ValueError(f"{path} names no scope (routes.common.op)")
            # Only OAuth 2 schemes list scopes in a requirement; an API key needs the same ones
            # (its scheme's description and `x-required-scopes` say so).
            operation["security"] = [{"apiKey": []}, {"oauth2": list(scopes)}]


def with_edge_answers(document: dict[str, Any]) -> None:
    """The headers the edge puts on each answer, and the shared problem answers."""
    shared: dict[str, Any] = {}
    for path, method, operation in _operations(document):
        answers = operation["responses"]
        kind = _kind(path)
        for status, answer in list(answers.items()):
            if "$ref" in answer:
                continue
            if kind != "merchant" or status.startswith("2"):
                names: list[str] = ["X-Request-Id"]
                if kind == "admin" and status == "503":
                    # Shed by admission before any id is given, or the broker unreachable.
                    names = ["X-Request-Id-If-Admitted", "Retry-After-If-Overloaded"]
                if kind == "merchant":
                    names += ["RateLimit", "RateLimit-Policy"]
                    if method == "post":
                        names.append("Idempotent-Replayed")
                    if operation.get("operationId") in ETAG_OPERATIONS:
                        names.append("ETag-Unless-Replayed" if method == "post" else "ETag")
                elif path.startswith("/v1/"):
                    # Counted per source address (edge.address_key): but a 413 or a 400 for
                    # the URL, refused before, or a 503 of a gateway shedding requests.
                    if status in ("400", "503"):
                        names += IF_COUNTED
                    elif status != "413":
                        names += ["RateLimit", "RateLimit-Policy"]
                    if status == "429":
                        names.append("Retry-After")
                    if kind == "admin" and method == "post":
                        names.append("Idempotent-Replayed")
                if status.startswith("2") and _no_store(path, method, operation):
                    names.append("Cache-Control")
                if kind == "admin" and status == "401":
                    names.append("WWW-Authenticate")
                if path == TOKEN_URL and status == "401":
                    names.append("WWW-Authenticate-Basic")
                answer.setdefault("headers", {}).update(_headers(*names))
                continue
            name, headers = RESPONSES.get(status, ("", COUNTED))
            complete = {**answer, "headers": _headers(*headers)}
            if shared.setdefault(name, complete) == complete and name:
                answers[status] = _ref("responses", name)
            else:  # a status of its own, or an answer a route described its own way
                answers[status] = complete
    shared.pop("", None)
    document["components"]["responses"] = dict(sorted(shared.items()))
    with_every_possible_problem(document)
    with_media_type_problems(document)


def _no_store(path: str, method: str, operation: dict[str, Any]) -> bool:
    """The answers the edge sends with `Cache-Control: no-store` (edge.NO_STORE)."""
    return method == "post" and (path == TOKEN_URL or bool(operation.get(SHOWN_ONCE)))


def _possible(path: str, method: str, operation: dict[str, Any]) -> set[str]:
    """The problems a merchant operation can answer whatever its route says: the edge's (bad
    request, no or a bad credential, body too large, rate limit), the route's scope check, a
    POST's Idempotency-Key (in progress, reused), If-Match's stale version, an unknown id."""
    possible = {"400", "401", "403", "413", "429"}
    if method == "post":
        possible |= {"409", "422"}
    if _ref("parameters", "If-Match") in operation.get("parameters", []):
        possible.add("412")
    if "{" in path:
        possible.add("404")
    return possible


def with_every_possible_problem(document: dict[str, Any]) -> None:
    """A route that forgets one of the problems it can answer still documents it."""
    shared = document["components"]["responses"]
    for path, method, operation in _operations(document):
        if _kind(path) != "merchant":
            continue
        answers = operation["responses"]
        for status in sorted(_possible(path, method, operation) - set(answers)):
            name = RESPONSES[status][0]
            if name not in shared:  # no route describes this problem: nothing to point at
                raise ValueError(f"{method.upper()} {path} can answer {status}; describe it")
            answers[status] = _ref("responses", name)


# The edge's answers about media types (edge._media_refused, pos_gateway.media), on every /v1
# operation that declares what they are about, after its credential was counted.
MEDIA_PROBLEMS = {
    "406": (
        "NotAcceptable",
        "The `Accept` header allows none of the media types the operation answers in "
        "(`not_acceptable`, `errors[]` naming `Accept`); this problem comes as "
        "`application/problem+json` all the same",
        COUNTED,
    ),
    "415": (
        "UnsupportedMediaType",
        "The request body is not in a media type the operation takes "
        "(`unsupported_media_type`, `errors[]` naming `Content-Type`): a JSON body says "
        "`Content-Type: application/json` (or a `+json` type); `Accept` names what is taken",
        (*COUNTED, "Accept-Taken"),
    ),
}


def with_media_type_problems(document: dict[str, Any]) -> None:
    """A 415 on every /v1 operation that takes a body and a 406 on every one that answers
    content (but the token exchange: RFC 6749 makes its every refusal a 400)."""
    responses = document["components"]["responses"]
    for name, description, headers in MEDIA_PROBLEMS.values():
        responses[name] = {
            "description": description,
            "content": {"application/problem+json": {"schema": _ref("schemas", Problem.__name__)}},
            "headers": _headers(*headers),
        }
    document["components"]["responses"] = dict(sorted(responses.items()))
    for path, _, operation in _operations(document):
        if not path.startswith("/v1/") or path == TOKEN_URL:
            continue
        answers = operation["responses"]
        if operation.get("requestBody"):
            answers.setdefault("415", _ref("responses", MEDIA_PROBLEMS["415"][0]))
        if any(status.startswith("2") and a.get("content") for status, a in answers.items()):
            answers.setdefault("406", _ref("responses", MEDIA_PROBLEMS["406"][0]))
        operation["responses"] = dict(sorted(answers.items()))
