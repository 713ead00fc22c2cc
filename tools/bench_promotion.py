"""Discount calculation throughput and latency through gRPC: a 10-line cart, 50 active offers.

Starts PostgreSQL, NATS and the promotion service alone (its own process, temporary data) on
free ports, creates 50 active offers of every kind for one merchant, then calls
CalculateDiscounts with the same 10-line cart from `--concurrency` callers for `--seconds`,
and prints calculations/s with p50/p99. The offers come from the service's cache, so this is
the engine and gRPC, not PostgreSQL. Run on demand (under 30 s in all):
`.venv/bin/python tools/bench_promotion.py [--seconds S] [--concurrency C]`. Figures, not
assertions: the machine decides them.

With `--gateway`, the whole platform is started instead (as `make up` runs it, on free ports)
and the same cart and offers are priced through `POST /v1/carts/calculate`: the gateway, the
order service's pricing step (prices from inventory, discounts from promotion, tax per line),
by an in-process HTTP client (which shares the machine's CPU with the platform).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc

from pos.common.v1 import money_pb2
from pos.promotion.v1 import promotion_pb2 as pb
from pos.promotion.v1 import promotion_pb2_grpc
from pos_devstack.natsd import LocalNats, free_port
from pos_devstack.postgres import LocalPostgres

MERCHANT = "mer_bench"
MD = (("x-merchant-id", MERCHANT),)
CATEGORIES = ["shirts", "mugs", "books", "toys", "snacks"]


def usd(amount: int) -> money_pb2.Money:
    return money_pb2.Money(amount=amount, currency="USD")


def items(i: int) -> pb.ItemSelector:
    return pb.ItemSelector(categories=[CATEGORIES[i % len(CATEGORIES)]])


def offers() -> list[pb.CreatePromotionRequest]:
    """50 offers: every kind, some for other channels (they qualify-check and drop out)."""
    made: list[pb.CreatePromotionRequest] = []
    for i in range(50):
        kind = i % 8
        if kind == 0:
            rule = pb.Rule(kind=pb.OFFER_KIND_PERCENT_OFF, items=items(i), percent_bps=500 + i)
        elif kind == 1:
            rule = pb.Rule(
                kind=pb.OFFER_KIND_BUY_X_GET_Y,
                items=items(i),
                percent_bps=5000,
                buy_quantity=2,
                get_quantity=1,
                limit_per_order=3,
            )
        elif kind == 2:
            rule = pb.Rule(
                kind=pb.OFFER_KIND_BUNDLE, items=items(i), amount=usd(2500), get_quantity=3
            )
        elif kind == 3:
            tiers = [
                pb.Tier(min_quantity=2, percent_bps=500),
                pb.Tier(min_quantity=4, percent_bps=1000),
            ]
            rule = pb.Rule(kind=pb.OFFER_KIND_TIERS, items=items(i), tiers=tiers)
        elif kind == 4:
            rule = pb.Rule(
                kind=pb.OFFER_KIND_SALE_PRICE,
                items=pb.ItemSelector(skus=[f"SKU-{i % 10}"]),
                amount=usd(700),
            )
        elif kind == 5:
            rule = pb.Rule(kind=pb.OFFER_KIND_AMOUNT_OFF, items=items(i), amount=usd(50))
        elif kind == 6:
            rule = pb.Rule(kind=pb.OFFER_KIND_AMOUNT_OFF, amount=usd(500))
        else:
            rule = pb.Rule(kind=pb.OFFER_KIND_PERCENT_OFF, percent_bps=300)
        conditions = pb.Conditions(
            min_amount=usd(2000) if kind >= 6 else None,
            channels=["web"] if i % 5 == 4 else [],
            hours_from="22:00" if i % 7 == 6 else "",
            hours_until="02:00" if i % 7 == 6 else "",
        )
        made.append(
            pb.CreatePromotionRequest(
                request_id=f"bench-offer-{i}",
                name=f"Offer {i}",
                rule=rule,
                conditions=conditions,
                priority=i % 3,
                exclusive=i in (13, 37),
                stackable=i % 11 != 0,
            )
        )
    return made


CART = pb.CalculateDiscountsRequest(
    currency="USD",
    channel="register",
    location_id="loc_bench",
    location_time_zone="Europe/Berlin",
    lines=[
        pb.CartLine(
            sku=f"SKU-{n}",
            quantity=1 + n % 4,
            unit_price=usd(499 + 250 * n),
            product_id=f"prod_{n}",
            categories=[CATEGORIES[n % len(CATEGORIES)]],
        )
        for n in range(10)
    ],
)


async def wait_healthy(port: int) -> None:
    deadline = time.monotonic() + 60
    async with grpc.aio.insecure_channel(f"127.0.0.1:{port}") as channel:
        stub = health_pb2_grpc.HealthStub(channel)
        while True:
            try:
                answer = await stub.Check(health_pb2.HealthCheckRequest(), timeout=1)
                if answer.status == health_pb2.HealthCheckResponse.SERVING:
                    return
            except grpc.aio.AioRpcError:
                pass
            if time.monotonic() > deadline:
                raise TimeoutError("the promotion service did not become healthy")
            await asyncio.sleep(0.2)


async def drive(port: int, seconds: float, concurrency: int) -> None:
    async with grpc.aio.insecure_channel(f"127.0.0.1:{port}") as channel:
        stub = promotion_pb2_grpc.PromotionServiceStub(channel)
        for request in offers():
            await stub.CreatePromotion(request, metadata=MD, timeout=10)
        answer = await stub.CalculateDiscounts(CART, metadata=MD, timeout=10)
        print(
            f"cart: 10 lines, list {sum(ln.quantity * ln.unit_price.amount for ln in CART.lines)} "
            f"cents; {len(answer.discounts)} of 50 offers applied, "
            f"{answer.total_discount.amount} cents off"
        )
        latencies: list[float] = []

        async def caller(until: float, keep: bool) -> None:
            while time.monotonic() < until:
                started = time.perf_counter()
                await stub.CalculateDiscounts(CART, metadata=MD, timeout=10)
                if keep:
                    latencies.append(time.perf_counter() - started)

        warm = time.monotonic() + 1
        await asyncio.gather(*(caller(warm, False) for _ in range(concurrency)))
        started = time.monotonic()
        await asyncio.gather(*(caller(started + seconds, True) for _ in range(concurrency)))
        elapsed = time.monotonic() - started
    _report("CalculateDiscounts over gRPC", concurrency, latencies, elapsed)


def _report(what: str, concurrency: int, latencies: list[float], elapsed: float) -> None:
    ordered = sorted(latencies)
    p50 = statistics.median(ordered) * 1000
    p99 = ordered[max(0, int(len(ordered) * 0.99) - 1)] * 1000
    print(
        f"{what}, {concurrency} concurrent: "
        f"{len(ordered) / elapsed:8.1f} calculations/s   p50 {p50:6.2f} ms   p99 {p99:6.2f} ms   "
        f"({len(ordered)} calls in {elapsed:.1f} s)"
    )


async def drive_gateway(
    base_url: str, key: str, promotion_port: int, merchant: str, seconds: float, concurrency: int
) -> None:
    import httpx

    headers = {"Authorization": f"Bearer {key}"}
    async with httpx.AsyncClient(base_url=base_url, headers=headers, timeout=30) as http:

        async def post(path: str, body: dict[str, object]) -> dict[str, object]:
            answer = await http.post(
                path, json=body, headers={"Idempotency-Key": os.urandom(8).hex()}
            )
            assert answer.is_success, answer.text
            found: dict[str, object] = answer.json()
            return found

        store = await post(
            "/v1/locations",
            {"name": "Bench", "currency": "USD", "tax_rate_bps": 825, "time_zone": "Europe/Berlin"},
        )
        for ln in CART.lines:
            await post(
                "/v1/products",
                {
                    "sku": ln.sku,
                    "name": ln.sku,
                    "category": ln.categories[0],
                    "price": {"amount": ln.unit_price.amount, "currency": "USD"},
                },
            )
        md = (("x-merchant-id", merchant),)
        async with grpc.aio.insecure_channel(f"127.0.0.1:{promotion_port}") as channel:
            stub = promotion_pb2_grpc.PromotionServiceStub(channel)
            for request in offers():
                await stub.CreatePromotion(request, metadata=md, timeout=10)
        # Product ids differ from the gRPC cart's made-up ones: offers select by category.
        cart = {
            "location_id": store["id"],
            "channel": "register",
            "lines": [{"sku": ln.sku, "quantity": ln.quantity} for ln in CART.lines],
        }
        first = await http.post("/v1/carts/calculate", json=cart)
        assert first.status_code == 200, first.text
        quote = first.json()
        print(
            f"cart: 10 lines, subtotal {quote['subtotal']['amount']} cents; "
            f"{len(quote['discounts'])} discounts, {quote['discount_total']['amount']} cents off, "
            f"tax {quote['tax_total']['amount']}"
        )
        latencies: list[float] = []

        async def caller(until: float, keep: bool) -> None:
            while time.monotonic() < until:
                started = time.perf_counter()
                answer = await http.post("/v1/carts/calculate", json=cart)
                assert answer.status_code == 200, answer.text
                if keep:
                    latencies.append(time.perf_counter() - started)

        warm = time.monotonic() + 2
        await asyncio.gather(*(caller(warm, False) for _ in range(concurrency)))
        started = time.monotonic()
        await asyncio.gather(*(caller(started + seconds, True) for _ in range(concurrency)))
        elapsed = time.monotonic() - started
    _report("POST /v1/carts/calculate through the gateway", concurrency, latencies, elapsed)


def through_gateway(seconds: float, concurrency: int) -> None:
    import json

    from pos_devstack.platform import SERVICES as ALL
    from pos_devstack.platform import Platform, Ports

    home = Path(tempfile.mkdtemp(prefix="omnitill-bench-cart-"))
    ports = Ports(free_port(), free_port(), free_port(), {s: free_port() for s in ALL}, free_port())
    limits = {"RATE_LIMIT_PER_SECOND": "100000", "RATE_LIMIT_BURST": "100000"}
    running = Platform(home, ports, say=lambda _: None, env_extra=limits)
    try:
        running.start_infrastructure()
        running.start_services()
        out = subprocess.run(
            [sys.executable, "-m", "pos_gateway", "create-merchant", "Bench"],
            env=running.env_for("gateway"),
            check=True,
            capture_output=True,
        )
        made = json.loads(out.stdout)
        asyncio.run(
            drive_gateway(
                running.gateway_url,
                made["api_key"],
                ports.services["promotion"],
                made["merchant_id"],
                seconds,
                concurrency,
            )
        )
    finally:
        running.stop()
        shutil.rmtree(home, ignore_errors=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=5.0)
    parser.add_argument("--concurrency", type=int, default=8)
    parser.add_argument("--gateway", action="store_true", help="through POST /v1/carts/calculate")
    args = parser.parse_args()
    if args.gateway:
        through_gateway(args.seconds, args.concurrency)
        return
    home = Path(tempfile.mkdtemp(prefix="omnitill-bench-promo-"))
    pg = LocalPostgres(home / "pg", free_port())
    nats = LocalNats(home / "nats", free_port())
    service: subprocess.Popen[bytes] | None = None
    try:
        pg.start()
        nats.start()
        port = free_port()
        env = {
            **os.environ,
            "DATABASE_URL": pg.create_database("promotion", "promotion", "bench"),
            "NATS_URL": nats.url,
            "GRPC_HOST": "127.0.0.1",
            "GRPC_PORT": str(port),
            "LOG_LEVEL": "WARNING",
        }
        command = [sys.executable, "-m", "pos_promotion"]
        subprocess.run([*command, "migrate"], env=env, check=True, capture_output=True)
        log = (home / "promotion.log").open("wb")
        service = subprocess.Popen([*command, "serve"], env=env, stdout=log, stderr=log)
        asyncio.run(wait_healthy(port))
        asyncio.run(drive(port, args.seconds, args.concurrency))
    finally:
        if service is not None:
            service.terminate()
            service.wait(timeout=30)
        nats.stop()
        pg.stop()
        shutil.rmtree(home, ignore_errors=True)


if __name__ == "__main__":
    main()
