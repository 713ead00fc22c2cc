"""Gateway overhead and throughput.

1. Edge overhead: the same trivial route answered through the edge (credential look-up, rate
   limit, headers; and with an Idempotency-Key, the stored-answer claim and completion in
   PostgreSQL; and with the shared rate-limit store) and without it, in process, so only the
   edge's own cost differs. Then the shared store alone under concurrent callers.
2. Throughput: requests/s with p50/p99 at 64 concurrent connections against the running
   platform (separate processes), for /healthz, GET /v1/locations and POST /v1/customers.

Run on demand: `.venv/bin/python tools/bench_gateway.py [--requests N] [--rate-limit-store
postgres]`. Prints figures only.
"""

from __future__ import annotations

import argparse
import asyncio
import shutil
import statistics
import subprocess
import tempfile
import time
import uuid
from collections.abc import Awaitable, Callable, Iterator
from pathlib import Path

import httpx
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from pos_devstack.natsd import free_port
from pos_devstack.platform import SERVICES, Platform, Ports
from pos_gateway.auth import KeyStore
from pos_gateway.edge import EdgeMiddleware
from pos_gateway.idempotency import IdempotencyStore
from pos_gateway.ratelimit import Limiter, TokenBuckets
from pos_gateway.shared_ratelimit import SharedBuckets
from pos_kit.db import make_engine


def _line(name: str, latencies: list[float], elapsed: float) -> None:
    ordered = sorted(latencies)
    p50 = statistics.median(ordered) * 1000
    p99 = ordered[max(0, int(len(ordered) * 0.99) - 1)] * 1000
    print(f"  {name:<34} {len(ordered) / elapsed:9.0f} req/s   p50 {p50:7.2f} ms   "
          f"p99 {p99:7.2f} ms")  # fmt: skip


async def edge_overhead(platform: Platform, key: str, n: int) -> None:
    engine = make_engine(platform.database_urls["gateway"], pool_size=4)

    async def thing(request: Request) -> JSONResponse:
        return JSONResponse({"ok": True})

    def app(with_edge: bool, limits: Limiter | None = None) -> Starlette:
        built = Starlette(routes=[Route("/v1/bench", thing, methods=["GET", "POST"])])
        built.state.keys = KeyStore(engine, platform._secrets()["gateway_secret_key"])
        built.state.idempotency = IdempotencyStore(engine)
        if with_edge:
            limits = limits or TokenBuckets(1e9, 10**9)
            built.add_middleware(EdgeMiddleware, limits=limits, max_body=10**6)
        return built

    async def call(target: Starlette, method: str, idempotency_key: str | None) -> None:
        headers = [(b"authorization", f"Bearer {key}".encode())]
        if idempotency_key:
            headers.append((b"idempotency-key", idempotency_key.encode()))
        scope = {"type": "http", "method": method, "path": "/v1/bench", "headers": headers,
                 "query_string": b"", "http_version": "1.1", "scheme": "http",
                 "server": ("bench", 80), "client": ("bench", 1), "root_path": ""}  # fmt: skip
        sent = False

        async def receive() -> dict[str, object]:
            nonlocal sent
            if sent:
                return {"type": "http.disconnect"}
            sent = True
            return {"type": "http.request", "body": b'{"a":1}', "more_body": False}

        async def send(message: dict[str, object]) -> None:
            return None

        await target(scope, receive, send)  # type: ignore[arg-type]

    async def timed(label: str, target: Starlette, method: str, idem: bool) -> float:
        await call(target, method, str(uuid.uuid4()) if idem else None)  # warm caches
        start = time.perf_counter()
        for _ in range(n):
            await call(target, method, str(uuid.uuid4()) if idem else None)
        per = (time.perf_counter() - start) / n * 1e6
        print(f"  {label:<52} {per:8.1f} µs/request")
        return per

    print("edge overhead (in process, a trivial route, no HTTP parsing):")
    bare = await timed("route alone", app(False), "GET", False)
    edged = await timed("through the edge (auth + rate limit + headers)", app(True), "GET", False)
    keyed = await timed("through the edge, POST with Idempotency-Key", app(True), "POST", True)
    shared = SharedBuckets(platform.database_urls["gateway"], 1e9, 10**9)
    await shared.start()
    pooled = await timed("through the edge, RATE_LIMIT_STORE=postgres", app(True, shared), "GET",
                         False)  # fmt: skip
    print(f"  => the edge adds {edged - bare:.1f} µs; with an Idempotency-Key {keyed - bare:.1f} µs"
          " (claim and completion: two PostgreSQL transactions)")  # fmt: skip
    print(f"  => the shared rate-limit store adds {pooled - edged:.1f} µs (one UPSERT round trip)")
    await shared.close()
    await engine.dispose()


async def shared_store(platform: Platform, n: int, concurrency: int) -> None:
    """Decisions/s of the shared store alone: one hot credential (every decision waits for the
    same row lock) against as many credentials as callers."""
    shared = SharedBuckets(platform.database_urls["gateway"], 1e9, 10**9)
    await shared.start()
    print(f"shared rate-limit store, {concurrency} concurrent callers, {n} decisions:")
    for label, keys in (
        ("one credential", ["key_hot"]),
        ("a credential per caller", [f"key_{i}" for i in range(concurrency)]),
    ):
        latencies: list[float] = []
        todo = iter(range(n))
        start = time.perf_counter()
        await asyncio.gather(
            *(_decide(shared, keys[i % len(keys)], todo, latencies) for i in range(concurrency))
        )
        _line(label, latencies, time.perf_counter() - start)
    await shared.close()


async def _decide(
    shared: SharedBuckets, key: str, todo: Iterator[int], latencies: list[float]
) -> None:
    for _ in todo:
        begun = time.perf_counter()
        await shared.decide(key)
        latencies.append(time.perf_counter() - begun)


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

        if shutil.which("wrk"):
            wrk(platform, key, concurrency)
            return
        print("(wrk not found: measuring with httpx, which itself limits the figures)")
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


def wrk(platform: Platform, key: str, concurrency: int) -> None:
    print(f"throughput with wrk, {concurrency} connections, 10 s each:")
    auth = ["-H", f"Authorization: Bearer {key}"]
    for label, path, extra in (
        ("GET /healthz (no edge, no hop)", "/healthz", []),
        ("GET /v1/locations (edge + 1 gRPC)", "/v1/locations", auth),
    ):
        out = subprocess.run(
            ["wrk", "-t2", f"-c{concurrency}", "-d10s", "--latency", *extra,
             platform.gateway_url + path],
            capture_output=True, text=True, check=True,
        ).stdout  # fmt: skip
        rate = next(ln.split()[-1] for ln in out.splitlines() if ln.startswith("Requests/sec"))
        p50 = next(ln.split()[-1] for ln in out.splitlines() if ln.strip().startswith("50%"))
        p99 = next(ln.split()[-1] for ln in out.splitlines() if ln.strip().startswith("99%"))
        print(f"  {label:<34} {float(rate):9.0f} req/s   p50 {p50:>9}   p99 {p99:>9}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--requests", type=int, default=2000)
    parser.add_argument("--concurrency", type=int, default=64)
    parser.add_argument(
        "--rate-limit-store",
        choices=("memory", "postgres"),
        default="memory",
        help="the gateway's RATE_LIMIT_STORE for the throughput figures",
    )
    args = parser.parse_args()
    home = Path(tempfile.mkdtemp(prefix="omnitill-bench-"))
    ports = Ports(
        free_port(), free_port(), free_port(), {s: free_port() for s in SERVICES}, free_port()
    )
    platform = Platform(
        home,
        ports,
        say=lambda line: None,
        env_extra={
            "RATE_LIMIT_PER_SECOND": "1000000",
            "RATE_LIMIT_BURST": "1000000",
            "RATE_LIMIT_STORE": args.rate_limit_store,
        },
    )
    try:
        platform.start_infrastructure()
        platform.start_services()
        key = platform.sandbox_key()
        asyncio.run(edge_overhead(platform, key, args.requests))
        asyncio.run(shared_store(platform, args.requests, 16))
        asyncio.run(throughput(platform, key, args.requests, args.concurrency))
    finally:
        platform.stop()


if __name__ == "__main__":
    main()
