"""What every /v1 request goes through before its route: size limit, credential, rate limit,
Idempotency-Key. Done once here, so every route, present and future, gets it for free."""

from __future__ import annotations

import uuid
from collections.abc import Awaitable, Callable

from fastapi import Request, Response

from pos_gateway.auth import authenticate
from pos_gateway.idempotency import MAX_KEY_LENGTH, IdempotencyStore, Stored, fingerprint
from pos_gateway.problems import Problem, problem_response
from pos_gateway.ratelimit import TokenBuckets
from pos_kit.context import merchant_var, request_id_var

Next = Callable[[Request], Awaitable[Response]]
# /v1 paths that authenticate themselves: the token exchange takes client credentials, and
# /v1/admin/ takes the platform credential.
OPEN_PATHS = frozenset({"/v1/oauth/token"})


async def handle(
    request: Request, call_next: Next, limits: TokenBuckets, max_body: int
) -> Response:
    length = request.headers.get("content-length")
    if length is not None and (not length.isdigit() or int(length) > max_body):
        return problem_response(
            Problem(413, "body_too_large", f"request bodies are limited to {max_body} bytes")
        )
    path = request.url.path
    if not path.startswith("/v1/") or path in OPEN_PATHS or path.startswith("/v1/admin/"):
        return await call_next(request)
    try:
        principal = await authenticate(request)
    except Problem as problem:
        return problem_response(problem)
    request.state.principal = principal
    merchant_var.set(principal.merchant_id)

    decision = limits.take(principal.key_id)
    rate_headers = {"RateLimit-Policy": limits.policy, "RateLimit": limits.header(decision)}
    if not decision.allowed:
        return problem_response(
            Problem(
                429,
                "rate_limited",
                "too many requests for this credential; retry after the given time",
                headers={**rate_headers, "Retry-After": str(decision.retry_after)},
            )
        )

    key = request.headers.get("idempotency-key")
    if request.method == "POST" and key is not None:
        response = await _idempotent(request, call_next, principal.merchant_id, key)
    else:
        request_id_var.set(str(uuid.uuid4()))
        response = await call_next(request)
    response.headers.update(rate_headers)
    return response


async def _idempotent(request: Request, call_next: Next, merchant_id: str, key: str) -> Response:
    if not key or len(key) > MAX_KEY_LENGTH or not key.isprintable():
        return problem_response(
            Problem(
                400,
                "invalid_idempotency_key",
                f"Idempotency-Key must be 1 to {MAX_KEY_LENGTH} printable characters",
            )
        )
    store: IdempotencyStore = request.app.state.idempotency
    body = await request.body()
    claim = await store.claim(merchant_id, key, fingerprint(request.method, request.url.path, body))
    if claim.mismatch:
        return problem_response(
            Problem(
                422,
                "idempotency_key_reused",
                "this Idempotency-Key was used with a different request",
            )
        )
    if claim.in_progress:
        return problem_response(
            Problem(
                409,
                "idempotency_request_in_progress",
                "a request with this Idempotency-Key is still being processed; retry shortly",
                headers={"Retry-After": "1"},
            )
        )
    if claim.replay is not None:
        return Response(
            content=claim.replay.body,
            status_code=claim.replay.status_code,
            media_type=claim.replay.content_type or None,
            headers={"Idempotent-Replayed": "true"},
        )

    request_id_var.set(key)
    try:
        response = await call_next(request)
    except BaseException:
        await store.release(merchant_id, key)
        raise
    chunks = [chunk async for chunk in response.body_iterator]  # type: ignore[attr-defined]
    content = b"".join(c if isinstance(c, bytes) else c.encode() for c in chunks)
    if response.status_code >= 500:
        # Our failure, not an answer: the client may retry with the same key.
        await store.release(merchant_id, key)
    else:
        await store.complete(
            merchant_id,
            key,
            Stored(response.status_code, response.headers.get("content-type", ""), content),
        )
    headers = {k: v for k, v in response.headers.items() if k.lower() != "content-length"}
    return Response(content=content, status_code=response.status_code, headers=headers)
