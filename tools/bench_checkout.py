"""Checkout throughput and latency, through the gateway and straight to the order service.

Starts the whole platform (separate processes, temporary data) on free ports, seeds the demo
merchant with plenty of stock, then runs a fixed number of checkouts at a fixed concurrency and
prints checkouts/s with p50/p99 latency. Run on demand: `.venv/bin/python tools/bench_checkout.py`
[--requests N] [--concurrency C]. Figures, not assertions: the machine decides them.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import tempfile
import time
import uuid
from collections.abc import Awaitable, Callable, Coroutine
from pathlib import Path
from typing import Any

import grpc
import httpx

from pos.order.v1 import order_pb2, order_pb2_grpc
from pos.payment.v1 import payment_pb2
from pos_devstack.natsd import free_port
from pos_devstack.platform import SERVICES, Platform, Ports


def _report(name: str, latencies: list[float], elapsed: float) -> None:
    ordered = sorted(latencies)
    p50 = statistics.median(ordered) * 1000
    p99 = ordered[max(0, int(len(ordered) * 0.99) - 1)] * 1000
    print(
        f"{name:<28} {len(ordered) / elapsed:8.1f} checkouts/s   "
        f"p50 {p50:6.1f} ms   p99 {p99:6.1f} ms   ({len(ordered)} requests)"
    )


async def _run(total: int, concurrency: int, one: object) -> tuple[list[float], float]:
    latencies: list[float] = []
    queue = iter(range(total))

    async def worker() -> None:
        for _ in queue:
            start = time.perf_counter()
            await one()  # type: ignore[operator]
            latencies.append(time.perf_counter() - start)

    start = time.perf_counter()
    await asyncio.gather(*(worker() for _ in range(concurrency)))
    return latencies, time.perf_counter() - start


async def register_checkout(http: httpx.AsyncClient) -> tuple[Callable[[], Awaitable[None]], str]:
    """Stock the demo merchant's first location for a long run; return one register checkout
    through the gateway (2 lines, card tender) as a callable, and that location's id."""
    locations = (await http.get("/v1/locations")).json()["data"]
    location = str(locations[0]["id"])
    for sku in ("TEE-BLK-M", "MUG-LOGO"):
        await http.post(
            "/v1/inventory/adjustments",
            json={"sku": sku, "location_id": location, "delta": 1_000_000, "reason": "received"},
            headers={"Idempotency-Key": f"bench-stock-{sku}"},
        )
    body = {
        "location_id": location,
        "lines": [{"sku": "TEE-BLK-M", "quantity": 1}, {"sku": "MUG-LOGO", "quantity": 1}],
        "tender_type": "card",
        "card_token": "tok_visa",
    }

    async def via_gateway() -> None:
        answer = await http.post(
            "/v1/checkouts", json=body, headers={"Idempotency-Key": str(uuid.uuid4())}
        )
        if answer.status_code != 201:
            raise RuntimeError(answer.text)

    return via_gateway, location


async def bench(platform: Platform, key: str, total: int, concurrency: int) -> None:
    headers = {"Authorization": f"Bearer {key}"}
    limits = httpx.Limits(max_connections=concurrency)
    async with httpx.AsyncClient(
        base_url=platform.gateway_url, headers=headers, limits=limits, timeout=30
    ) as http:
        merchant_key = key
        via_gateway, location = await register_checkout(http)
        await _run(20, 4, via_gateway)  # warm-up
        latencies, elapsed = await _run(total, concurrency, via_gateway)
        _report(f"gateway, {concurrency} concurrent", latencies, elapsed)

    merchant = await _merchant_of(platform, merchant_key)
    channel = grpc.aio.insecure_channel(f"127.0.0.1:{platform.ports.services['order']}")
    stub = order_pb2_grpc.OrderServiceStub(channel)

    async def via_grpc() -> None:
        await stub.Checkout(
            order_pb2.CheckoutRequest(
                request_id=str(uuid.uuid4()),
                location_id=location,
                lines=[
                    order_pb2.CheckoutLine(sku="TEE-BLK-M", quantity=1),
                    order_pb2.CheckoutLine(sku="MUG-LOGO", quantity=1),
                ],
                tender_type=payment_pb2.TENDER_TYPE_CARD,
                card_token="tok_visa",  # noqa: S106 - a sandbox token, not a secret
            ),
            metadata=(("x-merchant-id", merchant),),
            timeout=30,
        )

    latencies, elapsed = await _run(total, concurrency, via_grpc)
    _report(f"order gRPC, {concurrency} concurrent", latencies, elapsed)
    await channel.close()


async def _merchant_of(platform: Platform, key: str) -> str:
    from sqlalchemy import select

    from pos_gateway.keys import keyed_hash
    from pos_gateway.tables import api_keys
    from pos_kit.db import make_engine

    engine = make_engine(platform.database_urls["gateway"], pool_size=1)
    digest = keyed_hash(platform._secrets()["gateway_secret_key"], key)
    async with engine.connect() as conn:
        merchant = await conn.scalar(
            select(api_keys.c.merchant_id).where(api_keys.c.key_hash == digest)
        )
    await engine.dispose()
    return str(merchant)


def on_platform(
    title: str,
    work: Callable[[Platform, str], Coroutine[Any, Any, None]],
    prepare: Callable[[Platform], None] | None = None,
    env_extra: dict[str, str] | None = None,
) -> None:
    """Start the platform on free ports with temporary data, run `work`, stop everything.

    `prepare` runs before anything starts (e.g. to configure PostgreSQL's data folder);
    `env_extra` is added to every process's environment."""
    home = Path(tempfile.mkdtemp(prefix="omnitill-bench-"))
    ports = Ports(free_port(), free_port(), free_port(), {s: free_port() for s in SERVICES})
    platform = Platform(home, ports, say=lambda line: None, env_extra=env_extra)
    try:
        if prepare is not None:
            prepare(platform)
        platform.start_infrastructure()
        platform.start_services()
        key = platform.sandbox_key()
        print(title)
        asyncio.run(work(platform, key))
    finally:
        platform.stop()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--requests", type=int, default=600)
    parser.add_argument("--concurrency", type=int, default=16)
    args = parser.parse_args()
    on_platform(
        f"checkout benchmark: {args.requests} requests, 2 lines each, card tender",
        lambda platform, key: bench(platform, key, args.requests, args.concurrency),
    )


if __name__ == "__main__":
    main()
