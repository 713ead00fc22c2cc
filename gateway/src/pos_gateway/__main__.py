"""`python -m pos_gateway serve|migrate|create-merchant NAME`."""

from __future__ import annotations

import argparse
import asyncio
import json
from pathlib import Path

from pos_kit import migrate as kit_migrate

MIGRATIONS = Path(__file__).parent / "migrations"


def main() -> None:
    parser = argparse.ArgumentParser(prog="pos_gateway")
    sub = parser.add_subparsers(dest="command", required=True)
    sub.add_parser("serve", help="serve the REST API")
    sub.add_parser("migrate", help="apply the gateway's database migrations")
    create = sub.add_parser("create-merchant", help="create a merchant and a test API key")
    create.add_argument("name")
    args = parser.parse_args()
    if args.command == "create-merchant":
        from pos_kit.text import text_problem

        refused = text_problem("name", args.name)
        if refused:
            parser.error(f"NAME {refused}")  # the same rules as POST /v1/admin/merchants

    if args.command == "migrate":
        kit_migrate.upgrade_from_env(MIGRATIONS)
        return

    from pos_gateway.settings import GatewaySettings

    settings = GatewaySettings()  # type: ignore[call-arg]
    if args.command == "create-merchant":
        print(json.dumps(asyncio.run(_create(settings, args.name))))
        return

    import uvicorn

    from pos_gateway.app import create_app
    from pos_gateway.server import GracefulServer
    from pos_kit import heap
    from pos_kit.telemetry import setup_logging, setup_tracing
    from pos_kit.tls import ReloadingServerContext

    setup_logging("gateway", settings.log_level)
    setup_tracing("pos-gateway", settings.otel_exporter_otlp_endpoint)
    app = create_app(settings)
    if settings.otel_exporter_otlp_endpoint:
        # HTTP spans only when they are exported: unexported, they halve the gateway's
        # throughput for nothing (the trace context still reaches the services through gRPC).
        from pos_gateway.tracing import instrument

        instrument(app)
    config = uvicorn.Config(
        app,
        host=settings.http_host,
        port=settings.http_port,
        log_config=None,
        access_log=False,
        # The app reads X-Forwarded-For itself, from TRUSTED_PROXIES only (app.create_app).
        proxy_headers=False,
        timeout_graceful_shutdown=10,
        timeout_keep_alive=settings.http_keep_alive_seconds,
        # The kernel's queue of connections not yet accepted; a burst waits there, then is
        # answered (or shed with a 503 by admission.py), instead of being refused.
        backlog=4096,
    )
    heap.settle()
    tls = None
    if settings.http_tls_cert is not None and settings.http_tls_key is not None:
        tls = ReloadingServerContext(settings.http_tls_cert, settings.http_tls_key)
    GracefulServer(config, tls).run()


async def _create(settings: object, name: str) -> dict[str, str]:
    from pos_gateway.admin import create_merchant_once
    from pos_gateway.settings import GatewaySettings
    from pos_kit.db import make_engine

    assert isinstance(settings, GatewaySettings)
    engine = make_engine(settings.database_url, pool_size=1)
    try:
        # As POST /v1/admin/merchants makes it (the first key in the audit log with it), with
        # no request id: each run makes a merchant.
        merchant_id, key = await create_merchant_once(
            engine, settings.gateway_secret_key, name, None
        )
    finally:
        await engine.dispose()
    assert key is not None  # made by this run
    return {"merchant_id": merchant_id, "api_key": key}


if __name__ == "__main__":
    main()
