"""Gateway overhead and throughput.

1. Edge overhead: the same trivial route answered through the edge (credential look-up, rate
   limit, headers; and with an Idempotency-Key, the stored-answer claim and completion in
   PostgreSQL) and without it, in process, so only the edge's own cost differs.
2. Throughput: requests/s with p50/p99 at 64 concurrent connections against the running
   platform (separate processes), for /healthz, GET /v1/locations and POST /v1/customers.

Run on demand: `.venv/bin/python tools/bench_gateway.py [--requests N]`. Prints figures only.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import tempfile
import time
import uuid
from collections.abc import Awaitable, Callable
from pathlib import Path

import httpx
from fastapi import Request, Response

from pos_devstack.natsd import free_port
from pos_devstack.platform import SERVICES, Platform, Ports
from pos_gateway import edge
from pos_gateway.auth import KeyStore
from pos_gateway.idempotency import IdempotencyStore
from pos_gateway.ratelimit import TokenBuckets
from pos_kit.db import make_engine


def _line(name: str, latencies: list[float], elapsed: float) -> None:
    ordered = sorted(latencies)
    p50 = statistics.median(ordered) * 1000
    p99 = ordered[max(0, int(len(ordered) * 0.99) - 1)] * 1000
    print(f"  {name:<34} {len(ordered) / elapsed:9.0f} req/s   p50 {p50:7.2f} ms   "
          f"p99 {p99:7.2f} ms")  # fmt: skip


async def edge_overhead(platform: Platform, key: str, n: int) -> None:
    class State:
        pass

    class App:
        state = State()

    engine = make_engine(platform.database_urls["gateway"], pool_size=4)
    App.state.keys = KeyStore(engine, platform._secrets()["gateway_secret_key"])  # type: ignore[attr-defined]
    App.state.idempotency = IdempotencyStore(engine)  # type: ignore[attr-defined]
    limits = TokenBuckets(1e9, 10**9)

    async def route(request: Request) -> Response:
        return Response(b'{"ok":true}', media_type="application/json")

    def request(method: str, extra: list[tuple[bytes, bytes]]) -> Request:
        headers = [(b"authorization", f"Bearer {key}".encode()), *extra]
        body_sent = False

        async def receive() -> dict[str, object]:
            nonlocal body_sent
            if body_sent:
                return {"type": "http.disconnect"}
            body_sent = True
            return {"type": "http.request", "body": b'{"a":1}', "more_body": False}

        scope = {"type": "http", "method": method, "path": "/v1/bench", "headers": headers,
                 "query_string": b"", "app": App}  # fmt: skip
        return Request(scope, receive)

    async def timed(label: str, make: Callable[[], Awaitable[Response]]) -> float:
        await make()  # warm the key cache and the pool
        start = time.perf_counter()
        for _ in range(n):
            await make()
        per = (time.perf_counter() - start) / n * 1e6
        print(f"  {label:<52} {per:8.1f} µs/request")
        return per

    print("edge overhead (in process, trivial route):")
    bare = await timed("route alone", lambda: route(request("GET", [])))
    with_edge = await timed(
        "through the edge (auth + rate limit)",
        lambda: edge.handle(request("GET", []), route, limits, 1_000_000),
    )
    with_key = await timed(
        "through the edge, POST with Idempotency-Key",
        lambda: edge.handle(
            request("POST", [(b"idempotency-key", str(uuid.uuid4()).encode())]),
            route,
            limits,
            1_000_000,
        ),
    )
    print(f"  => edge adds {with_edge - bare:.1f} µs; with an Idempotency-Key "
          f"{with_key - bare:.1f} µs (two PostgreSQL transactions)")  # fmt: skip
    await engine.dispose()


async def throughput(platform: Platform, key: str, n: int, concurrency: int) -> None:
    limits = httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency)
    async with httpx.AsyncClient(
        base_url=platform.gateway_url,
        headers={"Authorization": f"Bearer {key}"},
        limits=limits,
        timeout=30,
    ) as http:

        async def run(name: str, call: Callable[[], Awaitable[httpx.Response]]) -> None:
            latencies: list[float] = []
            todo = iter(range(n))

            async def worker() -> None:
                for _ in todo:
                    start = time.perf_counter()
                    answer = await call()
                    latencies.append(time.perf_counter() - start)
                    if answer.status_code >= 300:
                        raise RuntimeError(answer.text)

            start = time.perf_counter()
            await asyncio.gather(*(worker() for _ in range(concurrency)))
            _line(name, latencies, time.perf_counter() - start)

        print(f"throughput at {concurrency} concurrent connections ({n} requests each):")
        await run("GET /healthz (no edge, no hop)", lambda: http.get("/healthz"))
        await run("GET /v1/locations (edge + 1 gRPC)", lambda: http.get("/v1/locations"))
        await run(
            "POST /v1/customers (idempotent)",
            lambda: http.post(
                "/v1/customers",
                json={"email": f"{uuid.uuid4().hex}@example.com"},
                headers={"Idempotency-Key": str(uuid.uuid4())},
            ),
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--requests", type=int, default=2000)
    parser.add_argument("--concurrency", type=int, default=64)
    args = parser.parse_args()
    home = Path(tempfile.mkdtemp(prefix="omnitill-bench-"))
    ports = Ports(free_port(), free_port(), free_port(), {s: free_port() for s in SERVICES})
    platform = Platform(
        home,
        ports,
        say=lambda line: None,
        env_extra={"RATE_LIMIT_PER_SECOND": "1000000", "RATE_LIMIT_BURST": "1000000"},
    )
    try:
        platform.start_infrastructure()
        platform.start_services()
        key = platform.sandbox_key()
        asyncio.run(edge_overhead(platform, key, args.requests))
        asyncio.run(throughput(platform, key, args.requests, args.concurrency))
    finally:
        platform.stop()


if __name__ == "__main__":
    main()
