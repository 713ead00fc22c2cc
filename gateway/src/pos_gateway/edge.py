"""What every request goes through before its route: request id, metrics, size limit, the text
rules on the URL, and for /v1 the credential, the rate limit and the Idempotency-Key. Done once
here, so every route, present and future, gets it for free.

A plain ASGI middleware, not Starlette's BaseHTTPMiddleware: each of those costs a task group
and memory streams per request, which measured at several times the cost of a whole route.
"""

from __future__ import annotations

import contextlib
import hmac
import json
import logging
import re
import time
import uuid
from typing import Any

import grpc
from starlette.datastructures import Headers, QueryParams
from starlette.requests import Request
from starlette.responses import Response
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from pos_gateway import confinement, media, metrics
from pos_gateway.auth import authenticate, insufficient_scope
from pos_gateway.bodies import read_body, read_bounded, replay, then
from pos_gateway.idempotency import (
    MAX_KEY_LENGTH,
    IdempotencyStore,
    Stored,
    fingerprints,
    redact,
    required_scopes,
    shown_once,
)
from pos_gateway.problems import (
    IDEMPOTENCY_KEY_REUSED,
    Problem,
    filter_named,
    from_rpc_error,
    problem_response,
)
from pos_gateway.ratelimit import Limiter, address_key
from pos_kit.context import merchant_var, register_var, request_id_var, staff_var
from pos_kit.text import (
    CARD_NUMBER_NOT_ALLOWED,
    CARD_NUMBER_REASON,
    holds_card_number,
    text_problem,
)

REQUEST_ID_MAX = 128
_REQUEST_ID = re.compile(rf"[!-~]{{1,{REQUEST_ID_MAX}}}")


def request_id(given: str | None) -> str:
    """The caller's X-Request-Id when it is a short visible-ASCII token, else a new one: a
    value echoed on every answer and written to logs is bounded, whatever a client sends."""
    if given is not None and _REQUEST_ID.fullmatch(given):
        return given
    return str(uuid.uuid4())


log = logging.getLogger(__name__)

# /v1 paths that authenticate themselves: the token exchange takes client credentials, and
# /v1/admin/ takes the platform credential.
TOKEN_PATH = "/v1/oauth/token"  # noqa: S105 (a path, not a secret)
OPEN_PATHS = frozenset({TOKEN_PATH, "/v1/registers/pair"})
ADMIN_PREFIX = "/v1/admin/"
# Whose Idempotency-Keys the platform credential's requests are (`/v1/admin/`): no merchant's
# id, which all begin `mer_`.
PLATFORM_TENANT = "platform"
# Answers no cache may keep (RFC 9111 `no-store`): the token exchange's (RFC 6749 section 5.1
# asks for it, and `Pragma: no-cache` for HTTP/1.0 caches) and every answer of an operation
# that shows a secret once (its `x-shown-once`).
NO_STORE = [(b"cache-control", b"no-store")]
TOKEN_NO_STORE = [*NO_STORE, (b"pragma", b"no-cache")]


def platform_admin(scope: Scope, headers: Headers) -> bool:
    """Whether the request carries the platform credential (`/v1/admin/`: checked here before
    the route reads anything, and by the routes again)."""
    state = getattr(scope.get("app"), "state", None)
    expected: str | None = getattr(state, "admin_token", None)
    if not expected:
        return False
    scheme, _, token = headers.get("authorization", "").partition(" ")
    return scheme.lower() == "bearer" and hmac.compare_digest(
        token.strip().encode(), expected.encode()
    )


def platform_refused(scope: Scope) -> Problem:
    """The answer to a `/v1/admin/` request without the platform credential: a 404 like any
    unknown route when the deployment has none, else a 401."""
    state = getattr(scope.get("app"), "state", None)
    if not getattr(state, "admin_token", None):
        return Problem(404, "route_not_found", "no such route")
    return Problem(
        401,
        "unauthorized",
        "the platform credential is required",
        headers={"WWW-Authenticate": 'Bearer realm="omnitill-admin"'},
    )


def hsts_value(max_age_seconds: int) -> bytes | None:
    """The Strict-Transport-Security header for answers sent over TLS (None: not sent)."""
    if max_age_seconds <= 0:
        return None
    return f"max-age={max_age_seconds}; includeSubDomains".encode()


def service_request_id(key: str) -> str:
    """The services' `request_id` for a client's Idempotency-Key. Every id the platform derives
    for a step of its own holds a '/' (the saga's `<order>/void/<payment>`, a route's
    `<key>/payment`), so a key holding one is set apart: a client's key never names one of
    those steps (it would be refused as reused, or its answer replayed, when the saga takes
    it). A key without a '/' (a UUID, as most are) is the request id as it always was.
    Unit: gateway/tests/test_units.py; end to end: tests/e2e/test_checkout_key_reuse.py."""
    return f"key:{key}" if "/" in key else key


class EdgeMiddleware:
    def __init__(
        self, app: ASGIApp, limits: Limiter, max_body: int, hsts_max_age_seconds: int = 0
    ) -> None:
        self.app = app
        self.limits = limits
        self.max_body = max_body
        self.hsts = hsts_value(hsts_max_age_seconds)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        start = time.perf_counter()
        headers = Headers(scope=scope)
        extra = [(b"x-request-id", request_id(headers.get("x-request-id")).encode())]
        # HSTS only on an answer that came over TLS: over plain HTTP a browser ignores it, and
        # a header that says "HTTPS only" on a plaintext answer would be a false promise. The
        # scheme is https when uvicorn serves TLS itself (or trusts a proxy's forwarded proto).
        if self.hsts is not None and scope.get("scheme") == "https":
            extra.append((b"strict-transport-security", self.hsts))
        status = 500

        async def send_with_headers(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
                message["headers"] = [*message.get("headers", []), *extra]
            await send(message)

        try:
            await self._handle(scope, receive, send_with_headers, headers, extra)
        finally:
            metrics.observe(scope, status, time.perf_counter() - start)

    async def _handle(
        self,
        scope: Scope,
        receive: Receive,
        send: Send,
        headers: Headers,
        extra: list[tuple[bytes, bytes]],
    ) -> None:
        length = headers.get("content-length")
        too_large = Problem(
            413, "body_too_large", f"request bodies are limited to {self.max_body} bytes"
        )
        if length is not None and (not length.isdigit() or int(length) > self.max_body):
            await problem_response(too_large)(scope, receive, send)
            return
        has_body = length is not None and int(length) > 0
        if length is None and "chunked" in headers.get("transfer-encoding", "").lower():
            # No length to judge it by: read up to the bound, and no further, before anything
            # else (else it was read whole, however large, by whatever read it first).
            body = await read_bounded(receive, self.max_body)
            if body is None:
                await problem_response(too_large)(scope, receive, send)
                return
            has_body = bool(body)
            receive = then(body, receive)
        if b"%00" in scope.get("raw_path", b"") or b"%00" in scope.get("query_string", b""):
            problem = Problem(
                400,
                "invalid_request",
                "URLs must not contain the NUL character",
                _nul_in_path(scope) + _nul_in_query(scope.get("query_string", b"")),
            )
            await problem_response(problem)(scope, receive, send)
            return
        carded = _card_numbers_in_query(scope.get("query_string", b""))
        if carded:
            problem = Problem(
                400, CARD_NUMBER_NOT_ALLOWED, "card numbers are never accepted", carded
            )
            await problem_response(problem)(scope, receive, send)
            return
        path: str = scope["path"]
        if not path.startswith("/v1/"):
            await self.app(scope, receive, send)
            return
        if scope["method"] == "POST":
            if path == TOKEN_PATH:
                extra += TOKEN_NO_STORE
            elif shown_once(scope):
                extra += NO_STORE
        if path in OPEN_PATHS or path.startswith(ADMIN_PREFIX):
            # No credential to count them by: their source address's budget.
            if not await self._counted(scope, receive, send, extra, address_key(scope)):
                return
            admin = platform_admin(scope, headers)
            if path.startswith(ADMIN_PREFIX) and not admin:
                # Before anything of the request is read, as a merchant's credential is: a
                # caller without the platform credential never learns what a route takes.
                await problem_response(platform_refused(scope))(scope, receive, send)
                return
            unreadable = _media_refused(scope, headers, has_body)
            if unreadable is not None:
                await problem_response(unreadable)(scope, receive, send)
                return
            key = headers.get("idempotency-key")
            if scope["method"] == "POST" and key is not None and admin:
                await self._idempotent(scope, receive, send, PLATFORM_TENANT, key)
                return
            request_id_var.set(str(uuid.uuid4()))
            await self.app(scope, receive, send)
            return
        request = Request(scope)
        try:
            principal = await authenticate(request)
        except Problem as refused:
            # Counted too (a 429 past the budget): guessing credentials is not free.
            if await self._counted(scope, receive, send, extra, address_key(scope)):
                await problem_response(refused)(scope, receive, send)
            return
        request.state.principal = principal
        merchant_var.set(principal.merchant_id)
        # Every service call the request makes says which register and member act.
        register_var.set(principal.register_id)
        staff_var.set(principal.staff_id)
        if principal.location_id is not None:
            # A register's credential works at its own location only: any other is a 404,
            # as if it did not exist, whether named in the path, the query or the body.
            receive, elsewhere = await _other_location(scope, receive, principal.location_id)
            if elsewhere is not None:
                # A read's filter is named as the route's 404 for a made-up id names it.
                unknown = filter_named(request, _location_missing(*elsewhere))
                await problem_response(unknown)(scope, receive, send)
                return
            receive, outside = await _confined(scope, receive, principal.location_id)
            if outside is not None:
                await problem_response(outside)(scope, receive, send)
                return

        if not await self._counted(scope, receive, send, extra, principal.key_id):
            return
        unreadable = _media_refused(scope, headers, has_body)
        if unreadable is not None:
            # Before the Idempotency-Key: a body the operation does not take, or an answer
            # the client cannot read, keeps nothing under it.
            await problem_response(unreadable)(scope, receive, send)
            return

        key = headers.get("idempotency-key")
        if scope["method"] == "POST" and key is not None:
            missing = [s for s in required_scopes(scope) if s not in principal.scopes]
            if missing:
                # Before the key is looked at: a replay runs no route, so no route's scope
                # check; a credential without the scope never sees another's stored answer.
                await problem_response(insufficient_scope(missing[0]))(scope, receive, send)
                return
            await self._idempotent(
                scope, receive, send, principal.merchant_id, key, principal.register_id
            )
            return
        request_id_var.set(str(uuid.uuid4()))
        await self.app(scope, receive, send)

    async def _counted(
        self,
        scope: Scope,
        receive: Receive,
        send: Send,
        extra: list[tuple[bytes, bytes]],
        bucket: str,
    ) -> bool:
        """Spend a token of `bucket` and advertise what is left on the answer; past the budget
        answer the 429 here (False: the request goes no further)."""
        decision = await self.limits.decide(bucket)
        extra += [
            (b"ratelimit-policy", self.limits.policy.encode()),
            (b"ratelimit", self.limits.header(decision).encode()),
        ]
        if decision.allowed:
            return True
        who = "address" if bucket.startswith("address:") else "credential"
        problem = Problem(
            429,
            "rate_limited",
            f"too many requests for this {who}; retry after the given time",
            headers={"Retry-After": str(decision.retry_after)},
        )
        await problem_response(problem)(scope, receive, send)
        return False

    async def _idempotent(
        self,
        scope: Scope,
        receive: Receive,
        send: Send,
        merchant_id: str,
        key: str,
        register_id: str | None = None,
    ) -> None:
        if not key or len(key) > MAX_KEY_LENGTH or not key.isprintable():
            problem = Problem(
                400,
                "invalid_idempotency_key",
                f"Idempotency-Key must be 1 to {MAX_KEY_LENGTH} printable characters",
                [
                    {
                        "field": "Idempotency-Key",
                        "reason": f"must be 1 to {MAX_KEY_LENGTH} printable characters",
                    }
                ],
            )
            await problem_response(problem)(scope, receive, send)
            return
        if holds_card_number(key):
            # Refused before it is stored as a key, or forwarded as the services' request_id.
            problem = Problem(
                400,
                CARD_NUMBER_NOT_ALLOWED,
                "card numbers are never accepted",
                [{"field": "Idempotency-Key", "reason": CARD_NUMBER_REASON}],
            )
            await problem_response(problem)(scope, receive, send)
            return
        body = await read_body(receive)
        store: IdempotencyStore = scope["app"].state.idempotency
        prints = fingerprints(
            "POST", scope["path"], body, store.fingerprint_key, register_id,
            scope.get("query_string", b""),
        )  # fmt: skip
        claim = await store.claim(merchant_id, key, prints)
        answer: Response | None = None
        if claim.mismatch:
            answer = problem_response(
                Problem(
                    422,
                    "idempotency_key_reused",
                    "this Idempotency-Key was used with a different request",
                )
            )
        elif claim.in_progress:
            answer = problem_response(
                Problem(
                    409,
                    "idempotency_request_in_progress",
                    "a request with this Idempotency-Key is still being processed; retry shortly",
                    headers={"Retry-After": "1"},
                )
            )
        elif claim.replay is not None:
            answer = Response(
                # Redacted again: an answer stored by an older gateway (a replica still running
                # during an upgrade) may hold its secret until it expires, but never shows it.
                content=redact(claim.replay.body, shown_once(scope)),
                status_code=claim.replay.status_code,
                media_type=claim.replay.content_type or None,
                headers={
                    "Idempotent-Replayed": "true",
                    **({"ETag": claim.replay.etag} if claim.replay.etag else {}),
                },
            )
        if answer is not None:
            await answer(scope, replay(body), send)
            return

        request_id_var.set(service_request_id(key))
        captured: dict[str, Any] = {
            "status": 500, "type": "", "etag": "", "body": [], "stored": False, "released": False
        }  # fmt: skip

        async def let_go() -> None:
            # Once: after it, the key may be another request's (a retry's) claim.
            if not captured["stored"] and not captured["released"]:
                await store.release(merchant_id, key)
                captured["released"] = True

        async def keep(status: int, content: bytes) -> None:
            # Stored, or let go, before the answer's last byte leaves: a client that retries
            # the moment it has the answer gets the replay, or runs again (a corrected body
            # after a 404), never "still running" (409) nor another body's 422.
            if status < 500 and not _kept_nothing(status, content):
                answer = Stored(status, captured["type"], content, captured["etag"])
                try:
                    # The route names the secrets not to keep (op's shown_once).
                    await store.complete(merchant_id, key, answer, shown_once(scope))
                    captured["stored"] = True
                    return
                except Exception as exc:
                    # The client still gets its answer; only the stored copy failed (the
                    # database is gone, or refused an answer holding a secret) and the key is
                    # let go, so a retry runs again: the services and the credential routes
                    # replay by request_id. The error's text stays out of the log: it quotes
                    # the SQL parameters, the answer among them.
                    log.error("could not store the answer of an Idempotency-Key request: %s",
                              type(exc).__name__)  # fmt: skip
            with contextlib.suppress(Exception):
                # Not let go here (the database is away): tried again once the answer is out,
                # else its lock runs out.
                await let_go()

        async def capture(message: Message) -> None:
            if message["type"] == "http.response.start":
                captured["status"] = message["status"]
                headers = Headers(raw=message.get("headers", []))
                captured["type"] = headers.get("content-type", "")
                captured["etag"] = headers.get("etag", "")
            elif message["type"] == "http.response.body":
                captured["body"].append(message.get("body", b""))
                if not message.get("more_body", False):
                    await keep(captured["status"], b"".join(captured["body"]))
            await send(message)

        try:
            await self.app(scope, replay(body), capture)
        except BaseException:
            await let_go()
            raise
        # Our failure (a 5xx), not an answer: the client may retry with the same key. A
        # request refused as it came (400, 403, 404) or for its rate (429) keeps nothing
        # either, not even the fingerprint of its body (which may have held a card number): the
        # corrected (or later) request may use the same key. Nor does a redirect, which the
        # client follows with the same key. Nor does a service's "still in
        # progress" (409): kept, it would be replayed after the work had finished. (Let go in
        # `keep` as the answer left; here if it never did.)
        await let_go()


def _media_refused(scope: Scope, headers: Headers, has_body: bool) -> Problem | None:
    """A body in a media type the operation does not take (415), or an Accept that allows
    none of those it answers in (406): `media`, from the operation's declaration."""
    return media.unsupported(scope, headers, has_body) or media.not_acceptable(scope, headers)


_LOCATION_PATH = re.compile(r"^/v1/locations/([^/]+)")


async def _confined(scope: Scope, receive: Receive, own: str) -> tuple[Receive, Problem | None]:
    """A register's request narrowed to its location: lists get its `location_id`, records
    reached by id elsewhere are a 404 (see `confinement`)."""
    narrowed = confinement.narrowed_query(
        scope["method"], scope["path"], scope.get("query_string", b""), own
    )
    if narrowed is not None:
        scope["query_string"] = narrowed
        return receive, None
    body = b""
    if scope["method"] in ("POST", "PUT", "PATCH"):
        body = await read_body(receive)
        receive = replay(body)
    try:
        refused = await confinement.elsewhere(scope["app"].state.services, scope["path"], body, own)
    except grpc.aio.AioRpcError as exc:
        refused = from_rpc_error(exc)
    return receive, refused


def _locations_named(value: Any) -> list[tuple[str, str]]:
    """Every non-empty string under a key ending in `location_id`, at any depth, with the
    field naming it (`fulfillments[0].location_id`): a line's or a fulfilment's store (a
    return restocked there, an order holding its stock) is a location named as much as a
    top-level one. A walk with a stack: a body may nest as deep as the JSON parser allows."""
    named: list[tuple[str, str]] = []
    pending: list[tuple[Any, str]] = [(value, "")]
    while pending:
        item, at = pending.pop()
        if isinstance(item, list):
            pending += reversed([(inner, f"{at}[{i}]") for i, inner in enumerate(item)])
        elif isinstance(item, dict):
            inside = [(inner, f"{at}.{key}" if at else str(key)) for key, inner in item.items()]
            for (inner, field), key in zip(inside, item, strict=True):
                if key.endswith("location_id") and isinstance(inner, str) and inner:
                    named.append((inner, field))
            pending += reversed(inside)
    return named


async def _other_location(
    scope: Scope, receive: Receive, own: str
) -> tuple[Receive, tuple[str, str] | None]:
    """The first location other than `own` the request names (in its path, a query
    parameter or a body field ending in `location_id`, at any depth) with the body field
    naming it (empty for the path and the query: a read's query parameter is named as
    `problems.filter_named` names it for a made-up id), and the body to read on."""
    named: list[tuple[str, str]] = []
    path = _LOCATION_PATH.match(scope["path"])
    if path is not None:
        named.append((path.group(1), ""))
    query = QueryParams(scope.get("query_string", b""))
    named += [(v, "") for k, v in query.multi_items() if k.endswith("location_id")]
    if scope["method"] in ("POST", "PUT", "PATCH"):
        body = await read_body(receive)
        receive = replay(body)
        try:
            parsed = json.loads(body) if body else None
        except (ValueError, RecursionError):
            parsed = None  # the route answers a malformed (or too deeply nested) body
        named += _locations_named(parsed)
    return receive, next((n for n in named if n[0] != own), None)


def _location_missing(location_id: str, field: str) -> Problem:
    """Another location, to a register confined to its own: the 404 the services answer for a
    made-up one, word for word, so nothing tells the two apart (a field that named it is in
    `errors[]`, as theirs)."""
    errors = [{"field": field, "reason": "no such location"}] if field else None
    return Problem(404, "resource_missing", f"location {location_id!r} was not found", errors,
                   extra={"resource": "location"})  # fmt: skip


_PATH_PARAMETER = re.compile(r"\\\{([A-Za-z_][A-Za-z0-9_]*)\\\}")


def _path_templates(app: Any) -> list[tuple[re.Pattern[str], int]]:
    """The app's paths as its document names them: a pattern each, a group per parameter
    named as the parameter, and how many parameters it has. Kept on the app."""
    table: list[tuple[re.Pattern[str], int]] | None = getattr(app.state, "path_templates", None)
    if table is None:
        table = []
        for template in app.openapi().get("paths", {}):
            pattern, count = _PATH_PARAMETER.subn(r"(?P<\1>[^/]+)", re.escape(template))
            table.append((re.compile(f"^{pattern}$"), count))
        app.state.path_templates = table
    return table


def _nul_in_path(scope: Scope) -> list[dict[str, str]]:
    """A field error per path parameter whose value holds a NUL, named as the document names
    it and as any other refusal of the parameter does (the path as written wins over a
    template it also fits: `/v1/products/batch-upsert` over `/v1/products/{product_id}`). A
    NUL in a part of the path that is no parameter has no field to name."""
    app = scope.get("app")
    if app is None or not hasattr(app, "openapi"):
        return []
    path: str = scope["path"]
    found = [(m, n) for p, n in _path_templates(app) if (m := p.match(path)) is not None]
    if not found:
        return []
    values = min(found, key=lambda x: x[1])[0].groupdict()
    return [
        {"field": name, "reason": "must not contain the NUL character"}
        for name, value in values.items()
        if "\x00" in value
    ]


def _nul_in_query(query_string: bytes) -> list[dict[str, str]]:
    """A field error per query parameter whose value holds a NUL, as a body's string is named
    (a NUL in a parameter's name has no field to name)."""
    if b"%00" not in query_string:
        return []
    names = dict.fromkeys(
        name
        for name, value in QueryParams(query_string).multi_items()
        if "\x00" in value and "\x00" not in name
    )
    return [{"field": name, "reason": "must not contain the NUL character"} for name in names]


def _card_numbers_in_query(query_string: bytes) -> list[dict[str, str]]:
    """A field error per query parameter holding a card number (the kit's rule; parameters
    that take GTINs, like `barcode` and `sku`, accept a valid one)."""
    if not query_string:
        return []
    names = dict.fromkeys(
        name
        for name, value in QueryParams(query_string).multi_items()
        if text_problem(name, value) == CARD_NUMBER_REASON
    )
    return [{"field": name, "reason": CARD_NUMBER_REASON} for name in names]


# A service's refusal of a request id reused with another body (422) is not kept either: kept,
# it would stand under the key for the first body too, whose retry must still finish its sale.
_NOT_KEPT = {409: "request_in_progress", 422: IDEMPOTENCY_KEY_REUSED}


def _kept_nothing(status: int, body: bytes) -> bool:
    """Nothing to replay: a request refused as it came (400, 403 for a permission the caller
    lacks, or 404 for something it names that does not exist: nothing happened, so the client
    may send it again under the same key once corrected or once a manager's override waits, as
    Stripe allows), one refused for its rate (429: "retry after the given time", and nothing
    ran; kept, the retry it asks for got the 429 again until the key expired), a service's
    request still in progress, or a service's refusal of the key reused with another body
    (the first body's retry is still to come). Nor is a redirect (3xx), which is no answer
    to the request but a pointer to another: kept, the request it points to, sent with the
    same key as a client following it does, was refused as the key reused (422), and a retry
    was pointed away again for as long as the key lived."""
    if status in (400, 403, 404, 429) or 300 <= status < 400:
        return True
    if status not in _NOT_KEPT:
        return False
    try:
        return bool(json.loads(body).get("code") == _NOT_KEPT[status])
    except (ValueError, AttributeError):
        return False
