"""Customers at scale: batch import rate, search latency (email, phone, text prefix) and loyalty
accrual throughput from a burst of order events.

Starts a throwaway PostgreSQL and NATS and the customer service in this process, imports
`--customers` customers of one merchant over gRPC (BatchUpsertCustomers, 1,000 a call), then
times `--queries` searches of each kind and the accrual of `--orders` OrderConfirmed events
published at once. Run on demand: `.venv/bin/python tools/bench_customers.py [--customers N]`
(the default loads in well under a minute here; `make soak-customers` runs the 1,000,000 the
issue asks for). Figures, not assertions: the machine decides them.
"""

from __future__ import annotations

import argparse
import asyncio
import random
import tempfile
import time
from pathlib import Path

import grpc
import nats

from pos.common.v1 import money_pb2
from pos.customer.v1 import customer_pb2 as pb
from pos.customer.v1 import customer_pb2_grpc
from pos.order.v1 import events_pb2 as order_events
from pos.order.v1 import order_pb2
from pos_customer import bootstrap
from pos_devstack.natsd import LocalNats, free_port
from pos_devstack.postgres import LocalPostgres
from pos_devstack.testing import until
from pos_kit import migrate as kit_migrate
from pos_kit.events import EVENT_ID_HEADER, EVENT_TYPE_HEADER, MERCHANT_HEADER
from pos_kit.streams import ensure_service_streams

# fmt: off
GIVEN = ["Ada", "Grace", "Zoë", "Linus", "Ken", "Barbara", "Alan", "Edsger", "Margaret", "Donald",
         "Frances", "John", "Radia", "Tim", "Hedy", "Niklaus", "Sophie", "Joan", "Bjarne", "Guido"]
FAMILY = ["Lovelace", "Hopper", "Martin", "Torvalds", "Thompson", "Liskov", "Turing", "Dijkstra",
          "Hamilton", "Knuth", "Allen", "McCarthy", "Perlman", "Berners-Lee", "Lamarr", "Wirth",
          "Wilson", "Clarke", "Stroustrup", "Rossum", "Müller", "Dupont", "García", "Nguyen"]
# fmt: on
MERCHANT = "mer_bench"
MD = (("x-merchant-id", MERCHANT),)


def _profile(i: int) -> pb.ProfileFields:
    return pb.ProfileFields(
        external_id=f"crm-{i}",
        given_name=GIVEN[i % len(GIVEN)],
        family_name=f"{FAMILY[(i // 7) % len(FAMILY)]}{i // 1000}",
        email=f"customer{i}@example.com",
        phone=f"+1415{i:07d}",
    )


def _pct(values: list[float], p: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(p * len(ordered)))] * 1000


async def _import(stub: customer_pb2_grpc.CustomerServiceStub, count: int) -> float:
    start = time.perf_counter()
    for first in range(0, count, 1000):
        batch = [_profile(i) for i in range(first, min(count, first + 1000))]
        await stub.BatchUpsertCustomers(
            pb.BatchUpsertCustomersRequest(request_id=f"import-{first}", customers=batch),
            metadata=MD,
            timeout=120,
        )
    return time.perf_counter() - start


async def _search(
    stub: customer_pb2_grpc.CustomerServiceStub, count: int, queries: int
) -> dict[str, list[float]]:
    rng = random.Random(7)
    kinds = {
        "email": lambda i: pb.SearchCustomersRequest(email=f"CUSTOMER{i}@example.com"),
        "phone": lambda i: pb.SearchCustomersRequest(phone=f"+1 415 {i:07d}"),
        "text prefix (1 word)": lambda i: pb.SearchCustomersRequest(
            query=FAMILY[(i // 7) % len(FAMILY)][:4]
        ),
        "text prefix (2 words)": lambda i: pb.SearchCustomersRequest(
            query=f"{GIVEN[i % len(GIVEN)][:3]} {FAMILY[(i // 7) % len(FAMILY)]}{i // 1000}"
        ),
    }
    times: dict[str, list[float]] = {}
    for name, make in kinds.items():
        times[name] = []
        for _ in range(queries):
            request = make(rng.randrange(count))
            request.page_size = 20
            start = time.perf_counter()
            answer = await stub.SearchCustomers(request, metadata=MD, timeout=10)
            times[name].append(time.perf_counter() - start)
            assert answer.customers, f"{name} found nothing"
    return times


async def _accrual(runtime: object, nats_url: str, ids: list[str], orders: int) -> float:
    nc = await nats.connect(nats_url)
    js = nc.jetstream()
    await ensure_service_streams(js, "order")
    consumer = runtime.consumers[0]  # type: ignore[attr-defined]
    before = consumer.applied
    start = time.perf_counter()
    for n in range(orders):
        event = order_events.OrderConfirmed(
            order=order_pb2.Order(
                id=f"ord_bench_{n}",
                customer_id=ids[n % len(ids)],
                location_id="loc_1",
                total=money_pb2.Money(amount=2599, currency="USD"),
            )
        )
        await js.publish(
            "pos.order.v1.order_confirmed",
            event.SerializeToString(),
            headers={
                EVENT_ID_HEADER: f"evt_bench_{n}",
                EVENT_TYPE_HEADER: "pos.order.v1.OrderConfirmed",
                MERCHANT_HEADER: MERCHANT,
                "Nats-Msg-Id": f"evt_bench_{n}",
            },
        )
    await until(lambda: consumer.applied - before >= orders, limit=600)
    elapsed = time.perf_counter() - start
    await nc.close()
    return elapsed


async def _bench(url: str, nats_url: str, count: int, queries: int, orders: int) -> None:
    settings = bootstrap.Settings(  # type: ignore[call-arg]
        database_url=url, nats_url=nats_url, grpc_host="127.0.0.1", grpc_port=0
    )
    runtime, service = bootstrap.build(settings)
    await service.start(runtime.tasks())
    channel = grpc.aio.insecure_channel(f"127.0.0.1:{service.port}")
    stub = customer_pb2_grpc.CustomerServiceStub(channel)
    try:
        took = await _import(stub, count)
        print(f"import   {count} customers in {took:.1f} s: {count / took:,.0f} customers/s")
        for name, times in (await _search(stub, count, queries)).items():
            print(
                f"search   {name:<22} p50 {_pct(times, 0.5):6.2f} ms  p99 {_pct(times, 0.99):6.2f}"
                f" ms  ({queries} queries, {count} customers)"
            )
        listed = await stub.ListCustomers(pb.ListCustomersRequest(page_size=200), metadata=MD,
                                          timeout=10)  # fmt: skip
        ids = [c.id for c in listed.customers]
        took = await _accrual(runtime, nats_url, ids, orders)
        print(f"accrual  {orders} order events in {took:.1f} s: {orders / took:,.0f} events/s")
    finally:
        await channel.close()
        await service.stop()
        await runtime.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--customers", type=int, default=50_000)
    parser.add_argument("--queries", type=int, default=300)
    parser.add_argument("--orders", type=int, default=2_000)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="omnitill-bench-") as tmp:
        pg = LocalPostgres(Path(tmp) / "pg", free_port())
        server = LocalNats(Path(tmp) / "nats", free_port())
        pg.start()
        server.start()
        try:
            url = pg.create_database("customer", "customer", "bench")
            kit_migrate.upgrade(bootstrap.MIGRATIONS, url)
            asyncio.run(_bench(url, server.url, args.customers, args.queries, args.orders))
        finally:
            server.stop()
            pg.stop()


if __name__ == "__main__":
    main()
