"""What every request goes through before its route: request id, metrics, size limit, and for
/v1 the credential, the rate limit and the Idempotency-Key. Done once here, so every route,
present and future, gets it for free.

A plain ASGI middleware, not Starlette's BaseHTTPMiddleware: each of those costs a task group
and memory streams per request, which measured at several times the cost of a whole route.
"""

from __future__ import annotations

import time
import uuid
from typing import Any

from starlette.datastructures import Headers
from starlette.requests import Request
from starlette.responses import Response
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from pos_gateway import metrics
from pos_gateway.auth import authenticate
from pos_gateway.idempotency import MAX_KEY_LENGTH, IdempotencyStore, Stored, fingerprint
from pos_gateway.problems import Problem, problem_response
from pos_gateway.ratelimit import Limiter
from pos_kit.context import merchant_var, request_id_var

# /v1 paths that authenticate themselves: the token exchange takes client credentials, and
# /v1/admin/ takes the platform credential.
OPEN_PATHS = frozenset({"/v1/oauth/token"})


class EdgeMiddleware:
    def __init__(self, app: ASGIApp, limits: Limiter, max_body: int) -> None:
        self.app = app
        self.limits = limits
        self.max_body = max_body

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        start = time.perf_counter()
        headers = Headers(scope=scope)
        extra = [(b"x-request-id", (headers.get("x-request-id") or str(uuid.uuid4())).encode())]
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
        if length is not None and (not length.isdigit() or int(length) > self.max_body):
            problem = Problem(
                413, "body_too_large", f"request bodies are limited to {self.max_body} bytes"
            )
            await problem_response(problem)(scope, receive, send)
            return
        if b"%00" in scope.get("raw_path", b"") or b"%00" in scope.get("query_string", b""):
            problem = Problem(400, "invalid_request", "URLs must not contain the NUL character")
            await problem_response(problem)(scope, receive, send)
            return
        path: str = scope["path"]
        if not path.startswith("/v1/") or path in OPEN_PATHS or path.startswith("/v1/admin/"):
            await self.app(scope, receive, send)
            return
        request = Request(scope)
        try:
            principal = await authenticate(request)
        except Problem as refused:
            await problem_response(refused)(scope, receive, send)
            return
        request.state.principal = principal
        merchant_var.set(principal.merchant_id)

        decision = await self.limits.decide(principal.key_id)
        extra += [
            (b"ratelimit-policy", self.limits.policy.encode()),
            (b"ratelimit", self.limits.header(decision).encode()),
        ]
        if not decision.allowed:
            problem = Problem(
                429,
                "rate_limited",
                "too many requests for this credential; retry after the given time",
                headers={"Retry-After": str(decision.retry_after)},
            )
            await problem_response(problem)(scope, receive, send)
            return

        key = headers.get("idempotency-key")
        if scope["method"] == "POST" and key is not None:
            await self._idempotent(scope, receive, send, principal.merchant_id, key)
            return
        request_id_var.set(str(uuid.uuid4()))
        await self.app(scope, receive, send)

    async def _idempotent(
        self, scope: Scope, receive: Receive, send: Send, merchant_id: str, key: str
    ) -> None:
        if not key or len(key) > MAX_KEY_LENGTH or not key.isprintable():
            problem = Problem(
                400,
                "invalid_idempotency_key",
                f"Idempotency-Key must be 1 to {MAX_KEY_LENGTH} printable characters",
            )
            await problem_response(problem)(scope, receive, send)
            return
        body = await _read_body(receive)
        store: IdempotencyStore = scope["app"].state.idempotency
        claim = await store.claim(merchant_id, key, fingerprint("POST", scope["path"], body))
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
                content=claim.replay.body,
                status_code=claim.replay.status_code,
                media_type=claim.replay.content_type or None,
                headers={"Idempotent-Replayed": "true"},
            )
        if answer is not None:
            await answer(scope, _replay(body), send)
            return

        request_id_var.set(key)
        captured: dict[str, Any] = {"status": 500, "type": "", "body": [], "last": None}

        async def capture(message: Message) -> None:
            if message["type"] == "http.response.start":
                captured["status"] = message["status"]
                captured["type"] = Headers(raw=message.get("headers", [])).get("content-type", "")
            elif message["type"] == "http.response.body":
                captured["body"].append(message.get("body", b""))
                if not message.get("more_body", False):
                    # Held back until the key is settled: once the client has the whole
                    # answer, the same key replays it (never a 409 "still running").
                    captured["last"] = message
                    return
            await send(message)

        try:
            await self.app(scope, _replay(body), capture)
        except BaseException:
            await store.release(merchant_id, key)
            raise
        if captured["status"] >= 500:
            # Our failure, not an answer: the client may retry with the same key.
            await store.release(merchant_id, key)
        else:
            content = b"".join(captured["body"])
            await store.complete(
                merchant_id, key, Stored(captured["status"], captured["type"], content)
            )
        if captured["last"] is not None:
            await send(captured["last"])


async def _read_body(receive: Receive) -> bytes:
    chunks = []
    while True:
        message = await receive()
        if message["type"] != "http.request":
            break
        chunks.append(message.get("body", b""))
        if not message.get("more_body", False):
            break
    return b"".join(chunks)


def _replay(body: bytes) -> Receive:
    sent = False

    async def receive() -> Message:
        nonlocal sent
        if not sent:
            sent = True
            return {"type": "http.request", "body": body, "more_body": False}
        return {"type": "http.disconnect"}

    return receive
