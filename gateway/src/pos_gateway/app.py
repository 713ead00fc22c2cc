"""The FastAPI application: middleware, problem handlers, routes, health."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from typing import Any

from fastapi import FastAPI, Request, Response
from fastapi.responses import JSONResponse
from grpc_health.v1 import health_pb2, health_pb2_grpc
from sqlalchemy import text

from pos_gateway import clients, problems
from pos_gateway.auth import KeyStore
from pos_gateway.problems import Problem, problem_response
from pos_gateway.routes import catalog, customers, orders, promotions
from pos_gateway.settings import GatewaySettings
from pos_kit.db import make_engine

DESCRIPTION = """
Omnitill's public REST API. Authenticate with `Authorization: Bearer <API key>`.
Money is `{"amount": <integer minor units>, "currency": "<ISO 4217>"}`; errors are RFC 9457
`application/problem+json` with a stable `code`. Every POST takes an `Idempotency-Key` header;
the services apply a key's effect once.
"""


def create_app(settings: GatewaySettings) -> FastAPI:
    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        engine = make_engine(settings.database_url, pool_size=5)
        app.state.engine = engine
        app.state.keys = KeyStore(engine, settings.gateway_secret_key)
        app.state.services = clients.connect(settings)
        try:
            yield
        finally:
            await app.state.services.close()
            await engine.dispose()

    app = FastAPI(
        title="Omnitill API",
        version="1.0.0",
        description=DESCRIPTION,
        lifespan=lifespan,
        openapi_url="/openapi.json",
    )
    problems.install(app)

    @app.middleware("http")
    async def request_id_and_limits(
        request: Request, call_next: Callable[[Request], Awaitable[Response]]
    ) -> Response:
        length = request.headers.get("content-length")
        if length is not None and (not length.isdigit() or int(length) > settings.max_body_bytes):
            return problem_response(
                Problem(
                    413, "body_too_large", f"bodies are limited to {settings.max_body_bytes} bytes"
                )
            )
        rid = request.headers.get("x-request-id") or str(uuid.uuid4())
        response = await call_next(request)
        response.headers["X-Request-Id"] = rid
        return response

    for module in (catalog, customers, promotions, orders):
        app.include_router(module.router)

    @app.get("/healthz", tags=["platform"], summary="Liveness")
    async def healthz() -> dict[str, str]:
        return {"status": "ok"}

    @app.get("/readyz", tags=["platform"], summary="Readiness: database and every service")
    async def readyz(request: Request) -> JSONResponse:
        checks: dict[str, Any] = {}
        try:
            async with request.app.state.engine.connect() as conn:
                await conn.execute(text("SELECT 1"))
            checks["database"] = "ok"
        except Exception:
            checks["database"] = "unavailable"

        async def probe(name: str, channel: Any) -> None:
            try:
                stub = health_pb2_grpc.HealthStub(channel)
                answer = await stub.Check(health_pb2.HealthCheckRequest(), timeout=1.0)
                serving = answer.status == health_pb2.HealthCheckResponse.SERVING
                checks[name] = "ok" if serving else "not_serving"
            except Exception:
                checks[name] = "unavailable"

        await asyncio.gather(
            *(probe(n, ch) for n, ch in request.app.state.services.channels.items())
        )
        ready = all(v == "ok" for v in checks.values())
        return JSONResponse({"ready": ready, "checks": checks}, status_code=200 if ready else 503)

    return app
