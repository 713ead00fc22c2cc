"""Batch upsert of 1000 products: how long a create, an unchanged replay and an update take.

Starts a throwaway PostgreSQL and NATS, the inventory service in this process, and sends
UpsertProducts batches of N items (each with two variants and a barcode) over gRPC. Run on demand:
`.venv/bin/python tools/bench_catalog.py [--items N] [--rounds R]`. Figures, not assertions:
the machine decides them.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import tempfile
import time
from pathlib import Path

import grpc

from pos.common.v1 import money_pb2
from pos.inventory.v1 import inventory_pb2 as inv
from pos.inventory.v1 import inventory_pb2_grpc
from pos_devstack.natsd import LocalNats, free_port
from pos_devstack.postgres import LocalPostgres
from pos_inventory import bootstrap
from pos_kit import migrate as kit_migrate


def _ean(n: int) -> str:
    body = f"20{n:010d}"
    total = sum(int(d) * (3 if i % 2 == 0 else 1) for i, d in enumerate(reversed(body)))
    return body + str((10 - total % 10) % 10)


def _batch(items: int, name: str) -> list[inv.ProductInput]:
    usd = money_pb2.Money(amount=1999, currency="USD")
    return [
        inv.ProductInput(
            external_id=f"ext-{i}", sku=f"BENCH-{i}", name=f"{name} {i}", price=usd,
            description="A product of the benchmark", barcodes=[_ean(i)],
            variants=[inv.ProductVariant(sku=f"BENCH-{i}-{s}", name=s, options={"size": s})
                      for s in ("M", "L")],
        )
        for i in range(items)
    ]  # fmt: skip


async def _bench(url: str, nats_url: str, items: int, rounds: int) -> None:
    settings = bootstrap.Settings(  # type: ignore[call-arg]
        database_url=url, nats_url=nats_url, grpc_host="127.0.0.1", grpc_port=0
    )
    runtime, service = bootstrap.build(settings)
    await service.start([runtime.messaging])
    channel = grpc.aio.insecure_channel(f"127.0.0.1:{service.port}")
    stub = inventory_pb2_grpc.InventoryServiceStub(channel)
    md = (("x-merchant-id", "mer_bench"),)
    try:
        for label, name in (("create", "Tee"), ("unchanged", "Tee"), ("update", "Shirt")):
            times = []
            for r in range(rounds if label != "create" else 1):
                request = inv.UpsertProductsRequest(
                    request_id=f"{label}-{r}", products=_batch(items, name)
                )
                start = time.perf_counter()
                answer = await stub.UpsertProducts(request, metadata=md, timeout=120)
                times.append(time.perf_counter() - start)
                outcomes = {inv.UpsertOutcome.Name(x.outcome) for x in answer.results}
                name += "!" if label == "update" else ""
            print(
                f"{label:<10} {items} items: median {statistics.median(times) * 1000:7.1f} ms"
                f"  ({len(times)} round(s), outcomes {sorted(outcomes)})"
            )
    finally:
        await channel.close()
        await service.stop()
        await runtime.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--items", type=int, default=1000)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="omnitill-bench-") as tmp:
        pg = LocalPostgres(Path(tmp) / "pg", free_port())
        nats = LocalNats(Path(tmp) / "nats", free_port())
        pg.start()
        nats.start()
        try:
            url = pg.create_database("inventory", "inventory", "bench")
            kit_migrate.upgrade(bootstrap.MIGRATIONS, url)
            asyncio.run(_bench(url, nats.url, args.items, args.rounds))
        finally:
            nats.stop()
            pg.stop()


if __name__ == "__main__":
    main()
