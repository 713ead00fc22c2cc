"""RFC 9457 problem answers for everything that goes wrong, and gRPC status -> HTTP."""

from __future__ import annotations

import logging
import re
from collections.abc import Mapping, Sequence
from typing import Any

import grpc
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from pos_kit.grpc_client import read_error
from pos_kit.text import CARD_NUMBER_NOT_ALLOWED

log = logging.getLogger(__name__)

PROBLEM_JSON = "application/problem+json"
# The OAuth 2.0 endpoints: their problems carry RFC 6749's `error` beside `code`.
OAUTH_PATHS = frozenset({"/v1/oauth/token"})
TYPE_BASE = "https://docs.omnitill.dev/problems/"

# google.rpc's documented HTTP mapping.
HTTP_FOR_GRPC: dict[grpc.StatusCode, int] = {
    grpc.StatusCode.OK: 200,
    grpc.StatusCode.CANCELLED: 499,
    grpc.StatusCode.UNKNOWN: 500,
    grpc.StatusCode.INVALID_ARGUMENT: 400,
    grpc.StatusCode.DEADLINE_EXCEEDED: 504,
    grpc.StatusCode.NOT_FOUND: 404,
    grpc.StatusCode.ALREADY_EXISTS: 409,
    grpc.StatusCode.PERMISSION_DENIED: 403,
    grpc.StatusCode.UNAUTHENTICATED: 401,
    grpc.StatusCode.RESOURCE_EXHAUSTED: 429,
    grpc.StatusCode.FAILED_PRECONDITION: 409,
    grpc.StatusCode.ABORTED: 409,
    grpc.StatusCode.OUT_OF_RANGE: 400,
    grpc.StatusCode.UNIMPLEMENTED: 501,
    grpc.StatusCode.INTERNAL: 500,
    grpc.StatusCode.UNAVAILABLE: 503,
    grpc.StatusCode.DATA_LOSS: 500,
}

TITLES = {
    400: "Bad request",
    401: "Unauthorized",
    402: "Payment required",
    403: "Forbidden",
    404: "Not found",
    405: "Method not allowed",
    406: "Not acceptable",
    409: "Conflict",
    410: "Gone",
    412: "Precondition failed",
    413: "Payload too large",
    415: "Unsupported media type",
    422: "Unprocessable content",
    429: "Too many requests",
    499: "Client closed request",
    500: "Internal server error",
    501: "Not implemented",
    503: "Service unavailable",
    504: "Gateway timeout",
}


# Besides the problem's own members, ERASED_IDS: for the gateway, never for the client.
_RESERVED_MEMBERS = {
    "type",
    "title",
    "status",
    "detail",
    "code",
    "errors",
    "instance",
    "erased_ids",
}

# A problem's size is bounded whatever went wrong, so a client can size what it keeps: `detail`
# (a service's words, which may quote what was sent) is cut to DETAIL_MAX characters, and
# `errors` keeps the first ERRORS_MAX field problems (a 1,000-line batch can break more; the
# services already keep only what fits in a gRPC status, pos_kit.grpc_server.STATUS_BUDGET).
DETAIL_MAX = 1000
ERRORS_MAX = 100


# An entry's `field` (a path that may hold a key that was sent) and `reason`, likewise.
FIELD_MAX, REASON_MAX = 500, 1000


def _cut(text: str, most: int) -> str:
    """`text` within `most` characters, and without NUL: a field or a detail may quote what
    was sent (a body member's name), and no string of an answer holds NUL (the document
    says so of every one): it reads U+FFFD, the replacement character, in its place."""
    text = text.replace("\x00", "\ufffd")
    return text if len(text) <= most else text[: most - 1] + "\u2026"


def _entry(error: dict[str, str]) -> dict[str, str]:
    most = {"field": FIELD_MAX, "reason": REASON_MAX}
    return {k: _cut(v, most[k]) if k in most else v for k, v in error.items()}


class Problem(Exception):
    def __init__(
        self,
        status: int,
        code: str,
        detail: str,
        errors: list[dict[str, str]] | None = None,
        headers: dict[str, str] | None = None,
        extra: dict[str, Any] | None = None,
    ) -> None:
        super().__init__(detail)
        self.status = status
        self.code = code
        self.detail = _cut(detail, DETAIL_MAX)
        self.errors = [_entry(e) for e in (errors or [])[:ERRORS_MAX]]
        self.headers = headers or {}
        self.extra = extra or {}


def problem_response(problem: Problem) -> JSONResponse:
    body: dict[str, Any] = {
        "type": TYPE_BASE + problem.code,
        "title": TITLES.get(problem.status, "Error"),
        "status": problem.status,
        "detail": problem.detail,
        "code": problem.code,
    }
    if problem.errors:
        body["errors"] = problem.errors
    body.update(problem.extra)
    return JSONResponse(
        body, status_code=problem.status, media_type=PROBLEM_JSON, headers=problem.headers
    )


# The REST names of request fields the protos name otherwise (a list's paging).
_PUBLIC_FIELDS = {"page_token": "cursor", "page_size": "limit"}


CUSTOMER_ERASED = "customer_erased"
# What the customer service's 404 to an erasure of a customer erased already names: the ids
# erased then (the customer and its merged duplicates), whose stored answers the route withdraws
# again in case the first erasure's answer was lost before it did (routes.customers).
ERASED_IDS = "erased_ids"
IDEMPOTENCY_KEY_REUSED = "idempotency_key_reused"


def customer_erased() -> Problem:
    """What a request answers whose stored answer held a customer erased since: the
    Idempotency-Key store's replay (routes.customers.erase_customer replaces the answer by it)
    and a service's replay by request_id (`pos_kit.errors.AnswerWithdrawn`) say the same."""
    return Problem(
        410,
        CUSTOMER_ERASED,
        "the answer to this request held a customer who has since been erased (the right to"
        " be forgotten); it is no longer kept and the request is not run again. A new request"
        " takes a new Idempotency-Key.",
    )


RETRY_UNAVAILABLE_AFTER = 2  # seconds: a restarted service is back within a few


# The services' refusals carry their figures as strings (a gRPC error's metadata is a map of
# strings); a client reads them as JSON numbers and arrays, as the rest of the API writes them.
_COUNTS = frozenset(
    {"amount_due", "available", "balance", "balance_due", "capturable", "code_index",
     "current_version", "expected_cash", "expected_on_hand", "limit", "max_balance", "on_hand",
     "refundable", "remaining", "window_days"}
)  # fmt: skip
_NAMES = frozenset({"skus", "lines", "payment_ids", "refund_ids"})


def _count(text: str) -> int | str:
    try:
        return int(text)
    except ValueError:
        return text


def typed_members(code: str, metadata: Mapping[str, str]) -> dict[str, Any]:
    """A refusal's extension members as JSON: counts as integers, SKUs, lines and the ids of
    payments and refunds as arrays;
    stock that ran out as `available` per SKU, in the order of `skus` (an array even for one),
    and a shipment's shortfall as `short`, a list of `{sku, quantity}`."""
    members: dict[str, Any] = {}
    for key, value in metadata.items():
        if key in _RESERVED_MEMBERS:
            continue
        if key in _NAMES:
            members[key] = [v for v in value.split(",") if v]
        elif key == "available" and code == "insufficient_stock":
            members[key] = [_count(v) for v in value.split(",") if v]
        elif key in _COUNTS:
            members[key] = _count(value)
        elif key == "short" and code == "insufficient_stock":
            pairs = (v.rpartition(":") for v in value.split(",") if v)
            members[key] = [{"sku": sku, "quantity": _count(n)} for sku, _, n in pairs]
        else:
            members[key] = value
    return members


def field_path(loc: Sequence[int | str]) -> str:
    """A field as the services name it (`lines[0].quantity`), so a client reads one form
    whichever layer refused the request."""
    path = ""
    for part in loc:
        if part == "[key]":
            # pydantic's marker after a map key it refused: the field is that key, as the
            # services name it (`tax_rates_bps.FOOD`, not `tax_rates_bps.FOOD.[key]`).
            continue
        path += f"[{part}]" if isinstance(part, int) else ("." if path else "") + str(part)
    return path or "body"


# A request a service found invalid is the same problem as one the gateway's own checks
# refused: one code for both.
_PUBLIC_CODES = {"invalid_argument": "invalid_request"}


def public_code(code: str) -> str:
    """A service's error code as the API names it (a batch item's error too)."""
    return _PUBLIC_CODES.get(code, code)


def from_rpc_error(exc: grpc.aio.AioRpcError) -> Problem:
    remote = read_error(exc)
    if remote.reason == CUSTOMER_ERASED:
        # Gone for good, not "no such customer": a 410, which the Idempotency-Key store keeps
        # (a 404 keeps nothing), so the key stays spent at the gateway too.
        return customer_erased()
    status = HTTP_FOR_GRPC.get(remote.status, 500)
    if remote.status == grpc.StatusCode.RESOURCE_EXHAUSTED and not remote.reason:
        # gRPC's own, not a service's refusal (which names its reason): a message or its
        # metadata over a channel's limit. Nothing the caller can slow down for, and the text
        # is the platform's (a 429 "Received message larger than max" before).
        status = 500
    if remote.reason == IDEMPOTENCY_KEY_REUSED:
        # A service told the same request id with another body (the gateway's own store keeps
        # nothing after a failed first attempt, so only the service can): the API's answer for
        # a reused Idempotency-Key, whichever of the two noticed.
        status = 422
    if status >= 500 and status not in (503, 504):
        # Internal failures say nothing about internals.
        return Problem(status, "internal_error", "an internal error occurred")
    fallback = {503: "service_unavailable", 504: "service_timeout"}.get(status)
    code = remote.reason or fallback or remote.status.name.lower()
    code = public_code(code)
    detail = remote.message if status < 500 else "a service the request needs is unavailable"
    for field, public in _PUBLIC_FIELDS.items():
        detail = detail.replace(field, public)
    errors = [
        {"field": _PUBLIC_FIELDS.get(v.field, v.field), "reason": v.description}
        for v in remote.violations
    ]
    # A refusal's figures (the current on_hand of a stale count, what was available of a
    # SKU that ran out) travel as problem extension members, so a client can act on them.
    extra = typed_members(code, remote.metadata)
    # A service down, one too slow to answer in time, or a processor unreachable is worth
    # retrying (with the same Idempotency-Key: nothing was done twice); say when, as a 429
    # does.
    headers = {"Retry-After": str(RETRY_UNAVAILABLE_AFTER)} if status in (503, 504) else None
    return Problem(status, code, detail, errors, extra=extra, headers=headers)


def allowed_methods(request: Request) -> str:
    """Every method the path answers, from the app's own document (GET and POST of one path
    are separate routes, and routers included in the app keep their routes to themselves, so
    the framework's 405 names at most one route's methods; RFC 9110 wants them all)."""
    table: list[tuple[re.Pattern[str], int, frozenset[str]]] | None = getattr(
        request.app.state, "allowed_methods", None
    )
    if table is None:
        table = []
        for template, operations in request.app.openapi().get("paths", {}).items():
            # As served: the framework's routes answer no HEAD beside their GET (a 405 too).
            methods = {m.upper() for m in operations if m.upper() in _HTTP_METHODS}
            pattern = re.escape(template)
            pattern = re.sub(r"\\\{[^}]+\\\}", "[^/]+", pattern)
            table.append((re.compile(f"^{pattern}$"), template.count("{"), frozenset(methods)))
        request.app.state.allowed_methods = table
    path = request.scope["path"]
    matched = [(params, methods) for pattern, params, methods in table if pattern.match(path)]
    # The path as written wins over a template it also fits (`/v1/products/batch-upsert`
    # over `/v1/products/{product_id}`), as the document reads.
    fewest = min((params for params, _ in matched), default=0)
    allowed = set().union(*(methods for params, methods in matched if params == fewest))
    return ", ".join(sorted(allowed))


_HTTP_METHODS = frozenset({"GET", "PUT", "POST", "DELETE", "PATCH", "OPTIONS", "HEAD", "TRACE"})


# What FastAPI's JSON reading raises, other than a syntax error, for a body it cannot read
# (UnicodeDecodeError is a ValueError, as is "Exceeds the limit (4300 digits)").
_UNREADABLE = (ValueError, RecursionError)
_UNREADABLE_REASONS = {
    UnicodeDecodeError: "is not JSON: not UTF-8",
    RecursionError: "is not JSON we read: nested too deeply",
}
_TOO_MANY_DIGITS = "is not JSON we read: a number has too many digits"


_NOT_FOUND_ID = re.compile(r"'([^']+)' was not found")


def filter_named(request: Request, problem: Problem) -> Problem:
    """A read's 404 for an id one of its query parameters gave (a list's `customer_id`
    filter naming a customer the merchant does not have) names that parameter in `errors[]`,
    as a body field naming such an id is named (`pos_kit.errors.NotFound`). An id in the
    path, or a 404 that names its fields already, is left as it is."""
    if problem.status != 404 or problem.errors or request.method not in ("GET", "HEAD"):
        return problem
    found = _NOT_FOUND_ID.search(problem.detail)
    if found is None:
        return problem
    resource = problem.extra.get("resource", "resource")
    named = [k for k, v in request.query_params.multi_items() if v == found.group(1)]
    problem.errors = [
        {"field": name, "reason": f"no such {resource}"} for name in dict.fromkeys(named)
    ]
    return problem


def install(app: FastAPI) -> None:
    @app.exception_handler(Problem)
    async def _problem(request: Request, exc: Problem) -> JSONResponse:
        return problem_response(filter_named(request, exc))

    @app.exception_handler(grpc.aio.AioRpcError)
    async def _rpc(request: Request, exc: grpc.aio.AioRpcError) -> JSONResponse:
        return problem_response(filter_named(request, from_rpc_error(exc)))

    @app.exception_handler(RequestValidationError)
    async def _validation(request: Request, exc: RequestValidationError) -> JSONResponse:
        errors = []
        for err in exc.errors():
            # Only the first part says where the field came from: a field may itself be
            # named `query` (the catalog's text search), which is still its name.
            loc = list(err.get("loc", ()))
            if err.get("type") == "json_invalid":
                # The second part is the character where parsing stopped, not a field: the
                # body as a whole is what is not JSON (it was named `[0]`).
                at = loc[1] if len(loc) > 1 else 0
                why = (err.get("ctx") or {}).get("error", "JSON decode error")
                errors.append({"field": "body", "reason": f"is not JSON: {why} at character {at}"})
                continue
            if loc and loc[0] in ("body", "query", "path"):
                loc = loc[1:]
            field = field_path(loc)
            errors.append({"field": field, "reason": str(err.get("msg", "is not valid"))})
        kinds = {e.get("type") for e in exc.errors()}
        if "json_invalid" in kinds:
            code, detail = "malformed_json", "the request body is not valid JSON"
        elif CARD_NUMBER_NOT_ALLOWED in kinds:
            code, detail = CARD_NUMBER_NOT_ALLOWED, "card numbers are never accepted"
        else:
            code, detail = "invalid_request", "the request is not valid"
        # RFC 6749's endpoints answer its `error` member too (section 5.2).
        extra = None
        if request.url.path in OAUTH_PATHS:
            extra = {"error": "invalid_request", "error_description": detail}
        return problem_response(Problem(400, code, detail, errors, extra=extra))

    @app.exception_handler(StarletteHTTPException)
    async def _http(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        if exc.status_code == 400 and isinstance(exc.__cause__, _UNREADABLE):
            # FastAPI reads a body that fails other than by JSON syntax (bytes that are not
            # UTF-8, a number past Python's 4,300 digits, nesting past the parser's depth) as
            # a bare 400: the same problem as bad syntax, naming the body.
            reason = _UNREADABLE_REASONS.get(type(exc.__cause__), _TOO_MANY_DIGITS)
            unreadable = [{"field": "body", "reason": reason}]
            detail = "the request body is not valid JSON"
            return problem_response(Problem(400, "malformed_json", detail, unreadable))
        codes = {404: "route_not_found", 405: "method_not_allowed", 413: "body_too_large"}
        code = codes.get(exc.status_code, "http_error")
        detail = str(exc.detail) if exc.status_code != 404 else "no such route"
        headers = dict(exc.headers or {})
        if exc.status_code == 405:
            headers["Allow"] = allowed_methods(request)
        return problem_response(Problem(exc.status_code, code, detail, headers=headers))

    @app.exception_handler(Exception)
    async def _unhandled(request: Request, exc: Exception) -> JSONResponse:
        log.exception("unhandled error on %s %s", request.method, request.url.path)
        return problem_response(Problem(500, "internal_error", "an internal error occurred"))


class LastResort:
    """An error no handler took is answered here with the 500 problem, and the connection
    stays open. Without it the framework's own last resort answers, then raises the error
    again for the server to log, and the server drops the connection: a client's next
    request on that keep-alive connection fails with no answer at all. Outermost, so every
    other middleware sees the error as before."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = False

        async def sending(message: Message) -> None:
            nonlocal started
            if message["type"] == "http.response.start":
                started = True
            await send(message)

        try:
            await self.app(scope, receive, sending)
        except Exception:
            if started:
                raise  # half an answer is out: only closing the connection ends it
            log.exception("unhandled error on %s %s", scope.get("method"), scope.get("path"))
            response = problem_response(
                Problem(500, "internal_error", "an internal error occurred")
            )
            await response(scope, receive, send)
