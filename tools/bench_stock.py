"""Holds and availability lookups: throughput and latency, through gRPC and the gateway.

Starts the whole platform (separate processes, temporary data) on free ports, creates SKUs with
plenty of stock, then measures:
- holds (CreateReservation, one unit) on one hot SKU: every hold queues on the same row lock;
- holds spread over many SKUs;
- availability lookups (5 SKUs across every location).
Each through the inventory service's gRPC API and through the REST gateway, printing
requests/s with p50/p99. Run on demand: `.venv/bin/python tools/bench_stock.py`
[--requests N] [--concurrency C]. Figures, not assertions: the machine decides them.
"""

from __future__ import annotations

import argparse
import itertools
import statistics
import uuid
from collections.abc import Awaitable, Callable

import grpc
import httpx
from bench_checkout import _merchant_of, _run, on_platform

from pos.inventory.v1 import stock_pb2, stock_pb2_grpc
from pos_devstack.platform import Platform

MANY = 50


def report(name: str, latencies: list[float], elapsed: float) -> None:
    ordered = sorted(latencies)
    p50 = statistics.median(ordered) * 1000
    p99 = ordered[max(0, int(len(ordered) * 0.99) - 1)] * 1000
    print(
        f"{name:<44} {len(ordered) / elapsed:8.1f} req/s   "
        f"p50 {p50:6.1f} ms   p99 {p99:6.1f} ms   ({len(ordered)} requests)"
    )


async def measure(
    name: str, total: int, concurrency: int, one: Callable[[], Awaitable[None]]
) -> None:
    await _run(min(50, total), 4, one)  # warm-up: connections, pools, caches
    latencies, elapsed = await _run(total, concurrency, one)
    report(f"{name}, {concurrency} concurrent", latencies, elapsed)


async def bench(platform: Platform, key: str, total: int, concurrency: int) -> None:
    headers = {"Authorization": f"Bearer {key}"}
    limits = httpx.Limits(max_connections=concurrency)
    async with httpx.AsyncClient(
        base_url=platform.gateway_url, headers=headers, limits=limits, timeout=60
    ) as http:

        async def post(path: str, body: dict[str, object]) -> httpx.Response:
            answer = await http.post(
                path, json=body, headers={"Idempotency-Key": str(uuid.uuid4())}
            )
            if answer.status_code >= 300:
                raise RuntimeError(answer.text)
            return answer

        location = (await http.get("/v1/locations")).json()["data"][0]["id"]
        skus = ["BENCH-HOT", *(f"BENCH-{i:03d}" for i in range(MANY))]
        for sku in skus:
            await post(
                "/v1/products",
                {"sku": sku, "name": sku, "price": {"amount": 100, "currency": "USD"}},
            )
            await post(
                "/v1/inventory/adjustments",
                {"sku": sku, "location_id": location, "delta": 10_000_000, "reason": "received"},
            )
        spread = itertools.cycle(skus[1:])

        def hold_body(sku: str) -> dict[str, object]:
            return {
                "location_id": location,
                "lines": [{"sku": sku, "quantity": 1}],
                "ttl_seconds": 3600,
            }

        async def rest_hot() -> None:
            await post("/v1/reservations", hold_body("BENCH-HOT"))

        async def rest_many() -> None:
            await post("/v1/reservations", hold_body(next(spread)))

        async def rest_availability() -> None:
            answer = await http.get("/v1/inventory/availability", params={"sku": skus[1:6]})
            if answer.status_code != 200:
                raise RuntimeError(answer.text)

        merchant = await _merchant_of(platform, key)
        channel = grpc.aio.insecure_channel(f"127.0.0.1:{platform.ports.services['inventory']}")
        stub = stock_pb2_grpc.StockServiceStub(channel)
        md = (("x-merchant-id", merchant),)

        def hold(sku: str) -> stock_pb2.CreateReservationRequest:
            return stock_pb2.CreateReservationRequest(
                request_id=str(uuid.uuid4()),
                location_id=location,
                lines=[stock_pb2.StockLine(sku=sku, quantity=1)],
                ttl_seconds=3600,
            )

        async def grpc_hot() -> None:
            await stub.CreateReservation(hold("BENCH-HOT"), metadata=md, timeout=60)

        async def grpc_many() -> None:
            await stub.CreateReservation(hold(next(spread)), metadata=md, timeout=60)

        async def grpc_availability() -> None:
            await stub.GetAvailability(
                stock_pb2.GetAvailabilityRequest(skus=skus[1:6]), metadata=md, timeout=60
            )

        # The gateway first: its keep-alive connections would go stale during the gRPC runs.
        await measure("holds, one hot SKU, gateway", total, concurrency, rest_hot)
        await measure(f"holds, {MANY} SKUs, gateway", total, concurrency, rest_many)
        await measure("availability (5 SKUs), gateway", total, concurrency, rest_availability)
        await measure("holds, one hot SKU, gRPC", total, concurrency, grpc_hot)
        await measure(f"holds, {MANY} SKUs, gRPC", total, concurrency, grpc_many)
        await measure("availability (5 SKUs), gRPC", total, concurrency, grpc_availability)
        await channel.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--requests", type=int, default=1000)
    parser.add_argument("--concurrency", type=int, default=64)
    args = parser.parse_args()
    on_platform(
        f"stock benchmark: {args.requests} requests per line, one unit per hold",
        lambda platform, key: bench(platform, key, args.requests, args.concurrency),
    )


if __name__ == "__main__":
    main()
