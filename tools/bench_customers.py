"""Customers at scale: batch import rate, search latency (email, phone, text prefix) and loyalty
accrual throughput from a burst of order events.

Starts a throwaway PostgreSQL and NATS and the customer service in this process. Of the
`--customers` customers of one merchant, all but the last `--import` (100,000) are loaded in
bulk (`bulk_load`), the last `--import` over gRPC (BatchUpsertCustomers, 1,000 a call: the
import figure); then ANALYZE, `--queries` searches of each kind, and the accrual of `--orders`
OrderConfirmed events published at once. Run on demand: `.venv/bin/python
tools/bench_customers.py [--customers N]` (the default runs in about a minute here; `make
soak-customers` runs the 1,000,000 the issue asks for, in minutes rather than the 20 an import
of all of them over gRPC takes).

The bulk part measures the same thing: it builds each customer as the batch upsert does
(`profile_from_proto`, `normalise_profile`, `Customer.apply`) and writes the rows the
repository's `add_many` (what the batch upsert calls) writes, from the same functions: the
`customers` row (`customer_row`) and its `customer_terms` (`term_rows`, from
`Customer.search_terms`), with PostgreSQL COPY, 10,000 customers a transaction, into the same
tables with the same indexes in place, so search reads the same rows through the same indexes.
What it leaves out is what search never reads: the gRPC call, the stored idempotent answer and
the outbox events (which would also have the relay publish 900,000 messages during the
timings). `services/customer/tests/test_bench_load.py` checks that bulk-loaded customers are
found by the same searches as imported ones. Figures, not assertions: the machine decides them.
"""

from __future__ import annotations

import argparse
import asyncio
import random
import tempfile
import time
from pathlib import Path
from typing import Any

import grpc
import nats
import sqlalchemy as sa
from psycopg.types.json import Jsonb
from sqlalchemy.dialects.postgresql import JSONB

from pos.common.v1 import money_pb2
from pos.customer.v1 import customer_pb2 as pb
from pos.customer.v1 import customer_pb2_grpc
from pos.order.v1 import events_pb2 as order_events
from pos.order.v1 import order_pb2
from pos_customer import bootstrap
from pos_customer.adapters.messages import profile_from_proto
from pos_customer.adapters.repository import customer_row, term_rows
from pos_customer.adapters.tables import customer_terms, customers
from pos_customer.domain.model import Customer, normalise_profile, require_identity
from pos_devstack.natsd import LocalNats, free_port
from pos_devstack.postgres import LocalPostgres
from pos_devstack.testing import until
from pos_kit import migrate as kit_migrate
from pos_kit.events import EVENT_ID_HEADER, EVENT_TYPE_HEADER, MERCHANT_HEADER
from pos_kit.ids import new_id
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
BULK_BATCH = 10_000


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


async def bulk_load(engine: Any, merchant: str, first: int, count: int) -> None:
    """Customers `first` to `first + count - 1` of `_profile`, built by the service's own code
    and COPYed as the rows its repository writes (see the module's docstring), without the gRPC
    call, stored answer or outbox."""
    for start in range(first, first + count, BULK_BATCH):
        batch = []
        for i in range(start, min(first + count, start + BULK_BATCH)):
            customer = Customer(new_id("cus"), None, "", "")
            customer.apply(normalise_profile(profile_from_proto(_profile(i))))
            require_identity(customer)
            batch.append(customer)
        async with engine.begin() as conn:
            raw = (await conn.get_raw_connection()).driver_connection
            await _copy(raw, customers, [customer_row(merchant, c) for c in batch])
            await _copy(raw, customer_terms, term_rows(merchant, batch))


async def _copy(raw: Any, table: sa.Table, rows: list[dict[str, Any]]) -> None:
    if not rows:
        return
    names = list(rows[0])
    jsonb = {n for n in names if isinstance(table.c[n].type, JSONB)}
    statement = f"COPY {table.name} ({', '.join(names)}) FROM STDIN"
    async with raw.cursor() as cur, cur.copy(statement) as copy:
        for row in rows:
            await copy.write_row([Jsonb(row[n]) if n in jsonb else row[n] for n in names])


async def import_over_grpc(
    stub: customer_pb2_grpc.CustomerServiceStub, md: Any, first: int, count: int
) -> float:
    """Customers `first` to `first + count - 1` over BatchUpsertCustomers; the seconds taken."""
    start = time.perf_counter()
    end = first + count
    for at in range(first, end, 1000):
        batch = [_profile(i) for i in range(at, min(end, at + 1000))]
        await stub.BatchUpsertCustomers(
            pb.BatchUpsertCustomersRequest(request_id=f"import-{at}", customers=batch),
            metadata=md,
            timeout=120,
        )
    return time.perf_counter() - start


def _kinds() -> dict[str, Any]:
    return {
        "email": lambda i: pb.SearchCustomersRequest(email=f"CUSTOMER{i}@example.com"),
        "phone": lambda i: pb.SearchCustomersRequest(phone=f"+1 415 {i:07d}"),
        "text prefix (1 word)": lambda i: pb.SearchCustomersRequest(
            query=FAMILY[(i // 7) % len(FAMILY)][:4]
        ),
        "text prefix (2 words)": lambda i: pb.SearchCustomersRequest(
            query=f"{GIVEN[i % len(GIVEN)][:3]} {FAMILY[(i // 7) % len(FAMILY)]}{i // 1000}"
        ),
    }


async def _search(
    stub: customer_pb2_grpc.CustomerServiceStub, count: int, queries: int
) -> dict[str, list[float]]:
    rng = random.Random(7)
    times: dict[str, list[float]] = {}
    for name, make in _kinds().items():
        times[name] = []
        for _ in range(queries):
            request = make(rng.randrange(count))
            request.page_size = 20
            start = time.perf_counter()
            answer = await stub.SearchCustomers(request, metadata=MD, timeout=10)
            times[name].append(time.perf_counter() - start)
            assert answer.customers, f"{name} found nothing"
    return times


async def _explain(runtime: Any, stub: customer_pb2_grpc.CustomerServiceStub, count: int) -> None:
    """The plan of every statement one search of each kind runs, as the service ran it (same
    SQL, same parameters), with its timings."""
    seen: list[tuple[str, Any]] = []

    def record(conn: Any, cursor: Any, statement: str, params: Any, *rest: Any) -> None:
        if statement.lstrip().upper().startswith("SELECT") and "FROM customer" in statement:
            seen.append((statement, params))

    sa.event.listen(runtime.engine.sync_engine, "before_cursor_execute", record)
    try:
        for name, make in _kinds().items():
            seen.clear()
            request = make(count // 2)
            request.page_size = 20
            await stub.SearchCustomers(request, metadata=MD, timeout=10)
            captured = list(seen)
            seen.clear()
            for statement, params in captured:
                async with runtime.engine.connect() as conn:
                    plan = await conn.exec_driver_sql(
                        "EXPLAIN (ANALYZE, BUFFERS) " + statement, params
                    )
                    print(f"\n-- {name}\n{statement}\n" + "\n".join(r[0] for r in plan))
    finally:
        sa.event.remove(runtime.engine.sync_engine, "before_cursor_execute", record)


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


async def _bench(
    url: str, nats_url: str, count: int, imported: int, queries: int, orders: int, explain: bool
) -> None:
    settings = bootstrap.Settings(  # type: ignore[call-arg]
        database_url=url, nats_url=nats_url, grpc_host="127.0.0.1", grpc_port=0
    )
    runtime, service = bootstrap.build(settings)
    await service.start(runtime.tasks())
    channel = grpc.aio.insecure_channel(f"127.0.0.1:{service.port}")
    stub = customer_pb2_grpc.CustomerServiceStub(channel)
    try:
        bulk = count - min(count, imported)
        if bulk:
            start = time.perf_counter()
            await bulk_load(runtime.engine, MERCHANT, 0, bulk)
            took = time.perf_counter() - start
            print(f"bulk     {bulk} customers in {took:.1f} s (not a figure: see the docstring)")
        took = await import_over_grpc(stub, MD, bulk, count - bulk)
        print(
            f"import   {count - bulk} customers in {took:.1f} s: {(count - bulk) / took:,.0f}"
            f" customers/s (onto {bulk})"
        )
        # The planner's statistics as a table of this size would have them after autovacuum.
        async with runtime.engine.connect() as conn:
            await conn.execute(sa.text("ANALYZE customers, customer_terms"))
            await conn.commit()
        for name, times in (await _search(stub, count, queries)).items():
            print(
                f"search   {name:<22} p50 {_pct(times, 0.5):6.2f} ms  p99 {_pct(times, 0.99):6.2f}"
                f" ms  ({queries} queries, {count} customers)"
            )
        if explain:
            await _explain(runtime, stub, count)
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
    parser.add_argument(
        "--import",
        dest="imported",
        type=int,
        default=100_000,
        help="how many of the customers (the last ones) are imported over gRPC",
    )
    parser.add_argument("--queries", type=int, default=300)
    parser.add_argument("--orders", type=int, default=2_000)
    parser.add_argument(
        "--explain", action="store_true", help="print the plans of one search of each kind"
    )
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="omnitill-bench-") as tmp:
        pg = LocalPostgres(Path(tmp) / "pg", free_port())
        server = LocalNats(Path(tmp) / "nats", free_port())
        pg.start()
        server.start()
        try:
            url = pg.create_database("customer", "customer", "bench")
            kit_migrate.upgrade(bootstrap.MIGRATIONS, url)
            asyncio.run(
                _bench(
                    url,
                    server.url,
                    args.customers,
                    args.imported,
                    args.queries,
                    args.orders,
                    args.explain,
                )
            )
        finally:
            server.stop()
            pg.stop()


if __name__ == "__main__":
    main()
