"""The FastAPI application: middleware, problem handlers, routes, health."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from fastapi import Depends, FastAPI, Request, Response
from fastapi.middleware.cors import CORSMiddleware
from fastapi.middleware.gzip import GZipMiddleware
from fastapi.responses import JSONResponse, PlainTextResponse
from fastapi_swagger import patch_fastapi
from grpc_health.v1 import health_pb2, health_pb2_grpc
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine
from uvicorn.middleware.proxy_headers import ProxyHeadersMiddleware

from pos_gateway import audit, clients, media, metrics, outbox, problems, tokens
from pos_gateway import openapi as openapi_document
from pos_gateway.admission import AdmissionLimit
from pos_gateway.auth import KeyStore
from pos_gateway.edge import EdgeMiddleware
from pos_gateway.idempotency import (
    REQUIRED_SCOPES,
    SHOWN_ONCE,
    IdempotencyStore,
    declared,
    fingerprint_key,
)
from pos_gateway.if_match import ListedVersions
from pos_gateway.messaging import JetStreamLink
from pos_gateway.query_declared import only_declared
from pos_gateway.query_once import one_value_each
from pos_gateway.ratelimit import Limiter, TokenBuckets
from pos_gateway.routes import (
    audit as audit_routes,
)
from pos_gateway.routes import (
    credentials,
    customers,
    events,
    gift_cards,
    inventory,
    loyalty,
    orders,
    payments,
    platform_admin,
    products,
    promotions,
    receipt,
    registers,
    returns,
    settlement,
    shifts,
    staff,
    stock,
)
from pos_gateway.routes.common import success
from pos_gateway.routes.credentials import (
    ADDRESS_AUTH_BURST,
    ADDRESS_AUTH_RATE,
    CLIENT_AUTH_BURST,
    CLIENT_AUTH_RATE,
)
from pos_gateway.routes.gift_cards import CODE_LOOKUP_BURST, CODE_LOOKUP_RATE
from pos_gateway.schemas.platform import Health, Readiness
from pos_gateway.settings import GatewaySettings
from pos_gateway.shared_ratelimit import SharedBuckets, purge_idle_buckets
from pos_kit.cancel import stop_if_cancelled
from pos_kit.db import make_engine, reads

DESCRIPTION = """
Omnitill's public REST API. Authenticate with `Authorization: Bearer <API key>` (or an OAuth
access token from `/v1/oauth/token`).
Money is `{"amount": <integer minor units>, "currency": "<ISO 4217>"}`; errors are RFC 9457
`application/problem+json` with a stable `code`, and `errors[]` naming the fields at fault. A
problem's `type`, `https://docs.omnitill.dev/problems/<code>`, is the code's entry in the
problem catalogue (`docs/problems.md`): its status, what it means and whether to fix the
request, retry or wait. Card data is never accepted: a text value
holding a card number (13 to 19 digits, grouped or not, that pass the Luhn check) is a 400
`card_number_not_allowed` naming the field; card payments take the processor's token. A query
parameter an operation does not take is a 400 `unknown_parameter` naming it, never ignored.

Every POST takes an `Idempotency-Key` header (up to 255 characters, scoped to your merchant).
The first answer is kept for 24 hours and replayed byte for byte with `Idempotent-Replayed:
true`, except a secret shown once (an API key, a client secret): it is never stored, so a replay
has it null and says `secret_redacted: true`. The same key with a different request is a 422
(a JSON body is compared by its content, not its formatting or the order of its members), a
retry while the first is still running a 409. Rate limits are per credential (per source
address for a request without a valid one, the token exchange, register pairing and the
platform routes) and advertised on every answer in `RateLimit-Policy` and `RateLimit`; past
them, a 429 with `Retry-After`.
"""


async def _purge_hourly(store: IdempotencyStore, engine: AsyncEngine) -> None:
    while True:
        with contextlib.suppress(Exception):
            await store.purge_expired()
        stop_if_cancelled()
        with contextlib.suppress(Exception):
            await audit.purge_expired(engine)
        stop_if_cancelled()
        await asyncio.sleep(3600)


_CHECKS = ("inventory", "promotion", "customer", "payment", "order", "dispatcher")
READY_EXAMPLE = {"ready": True, "checks": {"database": "ok", **dict.fromkeys(_CHECKS, "ok")}}
NOT_READY_EXAMPLE = {
    "ready": False,
    "checks": {"database": "unavailable", **dict.fromkeys(_CHECKS, "ok")},
}
METRICS_EXAMPLE = (
    "# TYPE omnitill_http_requests_total counter\n"
    'omnitill_http_requests_total{method="GET",route="/v1/products",status="200"} 42.0\n'
)


def rate_limiter(
    settings: GatewaySettings, rate: float | None = None, burst: int | None = None
) -> Limiter:
    """Buckets per credential, in the store the settings name (shared across replicas or not);
    the API's budget unless another rate and burst are given."""
    rate = settings.rate_limit_per_second if rate is None else rate
    burst = settings.rate_limit_burst if burst is None else burst
    if settings.rate_limit_store == "postgres":
        return SharedBuckets(settings.database_url, rate, burst)
    return TokenBuckets(rate, burst)


def create_app(settings: GatewaySettings) -> FastAPI:
    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        # Sized by DATABASE_POOL_SIZE (default 20) like every service: a pool below the
        # requests in flight opens and closes overflow connections, ~3 ms of server CPU each
        # (docs/performance.md).
        engine = make_engine(
            settings.database_url,
            pool_size=settings.database_pool_size,
            max_overflow=settings.database_pool_overflow,
            pool_timeout=settings.database_pool_timeout_seconds,
        )
        app.state.engine = engine
        app.state.secret = settings.gateway_secret_key
        app.state.admin_token = settings.platform_admin_token
        app.state.keys = KeyStore(engine, settings.gateway_secret_key)
        app.state.tokens = tokens.KeySet(settings.token_signing_keys)
        app.state.idempotency = IdempotencyStore(
            engine, fingerprint_key(settings.gateway_secret_key)
        )
        # Built now (about half a second) rather than on the first POST that needs them.
        document = app.openapi()
        app.state.declared_operations = {
            member: declared(document, member) for member in (SHOWN_ONCE, REQUIRED_SCOPES)
        }
        setattr(app.state, media.MEDIA_TABLE, media.indexed(media.table(document)))
        app.state.services = clients.connect(settings)
        app.state.jetstream = JetStreamLink(settings)
        await limits.start()
        app.state.code_lookups = code_lookups
        await code_lookups.start()
        app.state.client_auth, app.state.address_auth = client_auth, address_auth
        await client_auth.start()
        await address_auth.start()
        purger = asyncio.create_task(_purge_hourly(app.state.idempotency, engine))
        # The shared store's idle buckets (none to purge in memory, where they are bounded).
        bucket_purger = asyncio.create_task(
            purge_idle_buckets([limits, code_lookups, client_auth, address_auth])
        )
        stop_relay = asyncio.Event()
        relaying = asyncio.create_task(outbox.relay(engine, settings, stop_relay))
        try:
            yield
        finally:
            stop_relay.set()
            with contextlib.suppress(Exception):
                await asyncio.wait_for(relaying, 5)
            purger.cancel()
            bucket_purger.cancel()
            # Awaited, so neither outlives the app (an event loop closing after it waits for
            # every task it still has).
            await asyncio.wait({purger, bucket_purger}, timeout=5)
            await app.state.services.close()
            await app.state.jetstream.close()
            await limits.close()
            await code_lookups.close()
            await client_auth.close()
            await address_auth.close()
            await engine.dispose()

    app = FastAPI(
        title="Omnitill API",
        version="1.0.0",
        description=DESCRIPTION,
        lifespan=lifespan,
        openapi_url="/openapi.json",
        # The docs page is served with bundled assets below: it works with no network.
        docs_url=None,
        redoc_url=None,
        swagger_ui_oauth2_redirect_url=None,
        # operationId = the route function's name (`list_products`, `create_customer`): what
        # a generated SDK names its methods, so it must read well and stay put.
        generate_unique_id_function=lambda route: route.name,
        # A path with a trailing slash names no operation: the `route_not_found` 404 as any
        # other unknown path, not a 307 to the path without it (which a POST's Idempotency-Key
        # kept, refusing the request it pointed to as the key reused).
        redirect_slashes=False,
        # Every route's query checked as a whole before the route reads it: no parameter it
        # does not take, none it takes once given twice.
        dependencies=[Depends(only_declared), Depends(one_value_each)],
    )
    problems.install(app)
    patch_fastapi(app, docs_url="/docs", redirect_from_root_to_docs=False)

    limits = rate_limiter(settings)
    # Gift card code look-ups, a budget of their own against guessing (routes/gift_cards.py),
    # in the same store as the API's: with a shared store, one budget across all replicas.
    code_lookups = rate_limiter(settings, CODE_LOOKUP_RATE, CODE_LOOKUP_BURST)
    # Failed client authentications at the token exchange, per client_id and per source
    # address (routes/credentials.py), in the same store.
    client_auth = rate_limiter(settings, CLIENT_AUTH_RATE, CLIENT_AUTH_BURST)
    address_auth = rate_limiter(settings, ADDRESS_AUTH_RATE, ADDRESS_AUTH_BURST)

    # Inside the edge: a request's Idempotency-Key sees one answer however many versions are
    # tried.
    app.add_middleware(ListedVersions)
    app.add_middleware(
        EdgeMiddleware,
        limits=limits,
        max_body=settings.max_body_bytes,
        hsts_max_age_seconds=settings.hsts_max_age_seconds,
    )
    app.add_middleware(AdmissionLimit, limit=settings.max_concurrent_requests)
    app.add_middleware(GZipMiddleware, minimum_size=1024)
    if settings.cors_origins:
        app.add_middleware(
            CORSMiddleware,
            allow_origins=settings.cors_origins,
            allow_methods=["GET", "POST", "PATCH", "PUT", "DELETE"],
            allow_headers=["Authorization", "Content-Type", "Idempotency-Key", "If-Match",
                           "X-Request-Id"],
            expose_headers=["X-Request-Id", "RateLimit", "RateLimit-Policy", "Retry-After",
                            "Idempotent-Replayed"],
        )  # fmt: skip

    # Outside every layer of ours but the last resort: each (the edge's limits, the token
    # exchange's, pairing) sees the client's address, never the proxy's
    # (settings.trusted_proxies). uvicorn's own copy of this layer is off (__main__), so this
    # setting is the only one that decides.
    app.add_middleware(ProxyHeadersMiddleware, trusted_hosts=settings.trusted_proxies)
    # Added last: the outermost of the app's own middleware.
    app.add_middleware(problems.LastResort)

    for module in (
        products,
        inventory,
        stock,
        customers,
        loyalty,
        promotions,
        orders,
        returns,
        receipt,
        payments,
        events,
        gift_cards,
        settlement,
        credentials,
        registers,
        shifts,
        staff,
        audit_routes,
        platform_admin,
    ):
        app.include_router(module.router)
    app.include_router(registers.session_router)

    # The probes answer the platform's orchestrator and scrapers, not partners' clients: the
    # breaking-change check leaves them out (tools/contract/optic.dev.yml).
    probe = {"x-platform-probe": True}

    @app.get(
        "/healthz",
        tags=["platform"],
        summary="Liveness",
        openapi_extra=probe,
        responses={200: success({"status": "ok"})},
    )
    async def healthz() -> Health:
        return Health(status="ok")

    @app.get(
        "/metrics",
        tags=["platform"],
        summary="Prometheus metrics",
        openapi_extra=probe,
        response_class=PlainTextResponse,
        responses={200: success(METRICS_EXAMPLE, "text/plain")},
    )
    async def prometheus_metrics() -> Response:
        return metrics.exposition()

    @app.get(
        "/readyz",
        tags=["platform"],
        summary="Readiness: the gateway's database; each service's health is reported",
        openapi_extra=probe,
        response_model=Readiness,
        responses={
            200: success(READY_EXAMPLE),
            503: {
                "model": Readiness,
                "description": "The gateway's own database is unreachable",
                "content": {"application/json": {"example": NOT_READY_EXAMPLE}},
            },
        },
    )
    async def readyz(request: Request) -> JSONResponse:
        checks: dict[str, Any] = {}
        try:
            async with reads(request.app.state.engine) as conn:
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
        # Only our own database decides readiness: with one service down the gateway still
        # serves everything else (and checkout degrades as designed), so it must stay in.
        ready = checks["database"] == "ok"
        # A JSONResponse (FastAPI skips response_model then): the status depends on the answer.
        answer = Readiness.model_validate({"ready": ready, "checks": checks})
        return JSONResponse(answer.model_dump(mode="json"), status_code=200 if ready else 503)

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            app.openapi_schema = openapi_document.build(app)
        return app.openapi_schema

    app.openapi = openapi  # type: ignore[method-assign]

    return app
