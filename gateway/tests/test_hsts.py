"""Strict-Transport-Security: on every answer served over TLS, never on a plaintext one."""

from __future__ import annotations

import httpx
import pytest
from starlette.applications import Starlette
from starlette.responses import PlainTextResponse
from starlette.routing import Route

from pos_gateway.edge import EdgeMiddleware
from pos_gateway.ratelimit import TokenBuckets


def _app(max_age: int) -> Starlette:
    async def healthz(request: object) -> PlainTextResponse:
        return PlainTextResponse("ok")

    app = Starlette(routes=[Route("/healthz", healthz)])
    app.add_middleware(
        EdgeMiddleware, limits=TokenBuckets(1.0, 1), max_body=1000, hsts_max_age_seconds=max_age
    )
    return app


async def _header(app: Starlette, scheme: str, path: str = "/healthz") -> str | None:
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url=f"{scheme}://api") as client:
        answer = await client.get(path)
    return answer.headers.get("strict-transport-security")


@pytest.mark.asyncio
async def test_hsts_only_over_tls() -> None:
    app = _app(31_536_000)
    assert await _header(app, "https") == "max-age=31536000; includeSubDomains"
    # Problems answered by the middleware itself carry it too.
    assert await _header(app, "https", "/v1/products") is not None
    assert await _header(app, "http") is None


@pytest.mark.asyncio
async def test_hsts_can_be_turned_off() -> None:
    assert await _header(_app(0), "https") is None
