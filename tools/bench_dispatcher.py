"""Figures for the dispatcher (services/dispatcher/README.md), not a timed test.

    python tools/bench_dispatcher.py [--events 20000] [--rate 200] [--seconds 20]
        [--one-process] [--no-jetstream]

Starts PostgreSQL and NATS from the wheels and the dispatcher as its own two processes, one
ingesting and one delivering (as `make up` runs it), then measures:
1. ingest: events already in the stream -> the feed, with one webhook subscription (each
   event also becomes a delivery, sent to a local receiver), in events per second;
2. latency: events published at a steady rate; the time from the publish (the service's
   commit is a moment before it) to the receiver holding the signed webhook, p50 and p99;
3. feed reads: pages of 50 read over gRPC by 8 concurrent readers, per second;
4. the dispatcher's CPU time per event during 1. and 2. (both processes), which other load on
   the machine does not inflate;
5. JetStream publish throughput, pipelined, with the default fsync and with
   `sync_interval: always` (the issue's durability question).
"""

# A measuring script: it starts servers and polls for figures on purpose.
# ruff: noqa: ASYNC110, ASYNC220

from __future__ import annotations

import argparse
import asyncio
import json
import multiprocessing
import os
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import grpc
import nats
import uvicorn

from pos.common.v1 import money_pb2
from pos.dispatcher.v1 import dispatcher_pb2 as pb
from pos.dispatcher.v1 import dispatcher_pb2_grpc
from pos.inventory.v1 import events_pb2, inventory_pb2
from pos_devstack.natsd import LocalNats, free_port, nats_server_binary
from pos_devstack.postgres import LocalPostgres
from pos_kit import migrate as kit_migrate
from pos_kit.events import EVENT_ID_HEADER, EVENT_TYPE_HEADER, MERCHANT_HEADER, make_event
from pos_kit.streams import ensure_service_streams

MERCHANT = "mer_bench"
MD = (("x-merchant-id", MERCHANT),)


def product_event(n: int, version: int) -> Any:
    product = inventory_pb2.Product(
        id=f"prod_{n % 50}",
        sku=f"SKU-{n % 50}",
        name="Bench product",
        price=money_pb2.Money(amount=1000 + version, currency="USD"),
        version=version,
        tax_category="standard",
        status=inventory_pb2.PRODUCT_STATUS_ACTIVE,
    )
    product.created_at.GetCurrentTime()
    product.updated_at.GetCurrentTime()
    return make_event(events_pb2.ProductUpdated(product=product), MERCHANT)


async def publish(js: Any, events: list[Any]) -> None:
    await asyncio.gather(
        *(
            js.publish(
                e.subject,
                e.payload,
                headers={
                    "Nats-Msg-Id": e.event_id,
                    EVENT_ID_HEADER: e.event_id,
                    EVENT_TYPE_HEADER: e.event_type,
                    MERCHANT_HEADER: MERCHANT,
                },
            )
            for e in events
        )
    )


class Receiver:
    """The webhook endpoint, in a process of its own (`receive`): in the measuring process it
    would share a core with the publisher and the feed reads, and its slowness would count
    as the dispatcher's. It writes `<webhook-id> <arrival time>` lines to a file, read here."""

    def __init__(self, root: Path) -> None:
        self.file = root / "arrivals.txt"
        self.file.touch()
        self.port = free_port()
        self.arrived: dict[str, float] = {}
        self._offset = 0
        spawn = multiprocessing.get_context("spawn")
        self.process = spawn.Process(target=receive, args=(self.port, str(self.file)))

    def start(self) -> None:
        self.process.start()
        deadline = time.monotonic() + 30
        while True:
            try:
                socket.create_connection(("127.0.0.1", self.port), timeout=1).close()
                return
            except OSError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.1)

    def stop(self) -> None:
        self.process.terminate()
        self.process.join(10)

    def read(self) -> dict[str, float]:
        """Arrivals so far (whole lines only)."""
        with self.file.open("rb") as f:
            f.seek(self._offset)
            chunk = f.read()
        end = chunk.rfind(b"\n") + 1
        self._offset += end
        for line in chunk[:end].decode().splitlines():
            event_id, at = line.split()
            self.arrived[event_id] = float(at)
        return self.arrived


def receive(port: int, path: str) -> None:
    out = Path(path).open("a")  # noqa: SIM115 - open for the process's life

    async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            return
        while (await receive()).get("more_body"):
            pass
        headers = dict(scope["headers"])
        out.write(f"{headers[b'webhook-id'].decode()} {time.time()}\n")
        out.flush()
        await send({"type": "http.response.start", "status": 204, "headers": []})
        await send({"type": "http.response.body", "body": b""})

    config = uvicorn.Config(
        app, host="127.0.0.1", port=port, log_level="warning", lifespan="off", interface="asgi3"
    )
    uvicorn.Server(config).run()


def cpu_seconds(procs: list[subprocess.Popen[bytes]]) -> float:
    """User + system CPU time the dispatcher's processes have used so far (Linux /proc): a
    figure of work done that other load on the machine does not inflate, unlike the rates."""
    ticks = os.sysconf("SC_CLK_TCK")
    total = 0
    for proc in procs:
        fields = Path(f"/proc/{proc.pid}/stat").read_text().rpartition(")")[2].split()
        total += int(fields[11]) + int(fields[12])  # utime, stime
    return total / ticks


class FeedHead:
    """The feed's last sequence, read on from where the last look ended."""

    def __init__(self, stub: Any) -> None:
        self.stub = stub
        self.after = 0

    async def last(self) -> int:
        while True:
            page = await self.stub.ListEvents(
                pb.ListEventsRequest(after=self.after, page_size=200), metadata=MD, timeout=10
            )
            self.after = page.next_after
            if not page.has_more:
                return self.after


async def run(args: argparse.Namespace) -> dict[str, Any]:
    root = Path(tempfile.mkdtemp(prefix="omnitill-bench-"))
    pg = LocalPostgres(root / "pg", free_port())
    natsd = LocalNats(root / "nats", free_port())
    pg.start()
    natsd.start()
    url = pg.create_database("dispatcher", "dispatcher", "bench-password")
    import pos_dispatcher

    kit_migrate.upgrade(Path(pos_dispatcher.__file__).parent / "migrations", url)
    port = free_port()
    env = {
        **os.environ,
        "DATABASE_URL": url,
        "NATS_URL": natsd.url,
        "GRPC_HOST": "127.0.0.1",
        "GRPC_PORT": str(port),
        "DISPATCHER_SECRET_KEYS": "bench-key-for-sealing-secrets-0123456789",
        "WEBHOOK_ALLOW_PRIVATE_NETWORKS": "true",
        "LOG_LEVEL": "WARNING",
    }
    log = (root / "dispatcher.log").open("ab")
    # As the devstack runs it: one process ingests, another delivers (DISPATCHER_ROLE);
    # `--one-process` runs both in one, as before.
    roles = ["all"] if args.one_process else ["ingest", "deliver"]
    procs = [
        subprocess.Popen(
            [sys.executable, "-m", "pos_dispatcher", "serve"],
            env={
                **env,
                "DISPATCHER_ROLE": role,
                "GRPC_PORT": str(port if role != "deliver" else free_port()),
            },
            stdout=log,
            stderr=log,
        )
        for role in roles
    ]
    receiver = Receiver(root)
    receiver.start()
    nc = await nats.connect(natsd.url)
    js = nc.jetstream()
    await ensure_service_streams(js, "inventory")
    channel = grpc.aio.insecure_channel(f"127.0.0.1:{port}")
    stub = dispatcher_pb2_grpc.DispatcherServiceStub(channel)
    figures: dict[str, Any] = {}
    try:
        while True:
            try:
                await stub.ListEvents(pb.ListEventsRequest(), metadata=MD, timeout=2)
                break
            except grpc.aio.AioRpcError:
                await asyncio.sleep(0.2)
        await stub.CreateSubscription(
            pb.CreateSubscriptionRequest(
                request_id="bench",
                url=f"http://127.0.0.1:{receiver.port}/hooks",
                event_types=["product.*"],
            ),
            metadata=MD,
            timeout=10,
        )
        # 1. ingest: stop nothing, just flood the stream, then time the feed catching up.
        batch = [product_event(i, i + 1) for i in range(args.events)]
        cpu = cpu_seconds(procs)
        cpu_each = [cpu_seconds([proc]) for proc in procs]
        started = time.monotonic()
        for i in range(0, len(batch), 500):
            await publish(js, batch[i : i + 500])
        head = FeedHead(stub)
        while await head.last() < args.events:
            await asyncio.sleep(0.2)
        ingest = time.monotonic() - started
        figures["ingest_events_per_second"] = round(args.events / ingest)
        while len(receiver.read()) < args.events:
            await asyncio.sleep(0.2)
        figures["delivered_events_per_second"] = round(args.events / (time.monotonic() - started))
        # CPU per event, ingest and delivery together: 1,000 events/s need less than 1 ms a
        # core (or 2 ms with two processes on two cores).
        figures["flood_cpu_ms_per_event"] = round(
            (cpu_seconds(procs) - cpu) * 1000 / args.events, 3
        )
        # Each process alone: what one free core would sustain is 1,000 / this.
        for role, proc, before in zip(roles, procs, cpu_each, strict=True):
            used = cpu_seconds([proc]) - before
            figures[f"flood_cpu_ms_per_event_{role}"] = round(used * 1000 / args.events, 3)

        # 2. latency at a steady rate.
        sent: dict[str, float] = {}
        interval = 1 / args.rate
        cpu = cpu_seconds(procs)
        begin = time.monotonic()
        n = args.events
        while time.monotonic() - begin < args.seconds:
            event = product_event(n, n + 1)
            n += 1
            sent[event.event_id] = time.time()
            await publish(js, [event])
            wait = begin + (n - args.events) * interval - time.monotonic()
            if wait > 0:
                await asyncio.sleep(wait)
        deadline = time.monotonic() + 30
        while not set(sent) <= set(receiver.read()) and time.monotonic() < deadline:
            await asyncio.sleep(0.1)
        latencies = sorted(
            receiver.arrived[i] - t for i, t in sent.items() if i in receiver.arrived
        )
        figures["steady_rate_per_second"] = args.rate
        figures["latency_p50_ms"] = round(statistics.median(latencies) * 1000, 1)
        figures["latency_p99_ms"] = round(latencies[int(len(latencies) * 0.99) - 1] * 1000, 1)
        figures["latency_received"] = f"{len(latencies)}/{len(sent)}"
        figures["steady_cpu_ms_per_event"] = round((cpu_seconds(procs) - cpu) * 1000 / len(sent), 3)

        # 3. feed reads.
        reads = 0
        stop_at = time.monotonic() + 5

        async def reader(offset: int) -> None:
            nonlocal reads
            after = offset
            while time.monotonic() < stop_at:
                page = await stub.ListEvents(
                    pb.ListEventsRequest(after=after, page_size=50), metadata=MD, timeout=10
                )
                reads += 1
                after = page.next_after if page.has_more else offset

        await asyncio.gather(*(reader(i * 1000) for i in range(8)))
        figures["feed_pages_of_50_per_second"] = round(reads / 5)
    finally:
        await channel.close()
        await nc.close()
        receiver.stop()
        for proc in procs:
            proc.terminate()
        for proc in procs:
            proc.wait(20)
        natsd.stop()
        pg.stop()
    if not args.no_jetstream:
        figures.update(await publish_throughput(root))
    shutil.rmtree(root, ignore_errors=True)
    return figures


async def publish_throughput(root: Path, count: int = 20000) -> dict[str, Any]:
    """Pipelined JetStream publishes with and without an fsync on every write: to one stream,
    and to five streams at once as the five services' relays publish."""
    out: dict[str, Any] = {}
    for name, sync in (("default_sync", ""), ("sync_always", "sync_interval: always")):
        store = root / f"nats-{name}"
        store.mkdir()
        config = store / "nats.conf"
        config.write_text(f"jetstream {{\n  store_dir: {json.dumps(str(store))}\n  {sync}\n}}\n")
        port = free_port()
        proc = subprocess.Popen(
            [nats_server_binary(), "-a", "127.0.0.1", "-p", str(port), "-js", "-c", str(config)],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        try:
            nc = None
            for _ in range(100):
                try:
                    nc = await nats.connect(f"nats://127.0.0.1:{port}")
                    break
                except Exception:
                    await asyncio.sleep(0.1)
            assert nc is not None
            js = nc.jetstream()
            await ensure_service_streams(js, "inventory")
            events = [product_event(i, i + 1) for i in range(count)]
            started = time.monotonic()
            for i in range(0, count, 500):
                await publish(js, events[i : i + 500])
            out[f"jetstream_publishes_per_second_{name}"] = round(
                count / (time.monotonic() - started)
            )
            # As the platform publishes: five services' relays at once, each to its own
            # stream, in batches of 100 (a relay's batch at a busy time).
            services = ["inventory", "order", "payment", "promotion", "customer"]
            for service in services:
                await ensure_service_streams(js, service)
            each = count // len(services)

            async def relay(service: str, js: Any = js, each: int = each) -> None:
                mine = [
                    (f"pos.{service}.v1.bench", e)
                    for e in (product_event(i, i + 1) for i in range(each))
                ]
                for i in range(0, each, 100):
                    await asyncio.gather(
                        *(
                            js.publish(
                                subject,
                                e.payload,
                                headers={"Nats-Msg-Id": f"{service}-{e.event_id}"},
                            )
                            for subject, e in mine[i : i + 100]
                        )
                    )

            started = time.monotonic()
            await asyncio.gather(*(relay(s) for s in services))
            out[f"jetstream_five_streams_publishes_per_second_{name}"] = round(
                each * len(services) / (time.monotonic() - started)
            )
            await nc.close()
        finally:
            proc.terminate()
            proc.wait(10)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--events", type=int, default=20000)
    parser.add_argument("--rate", type=int, default=200)
    parser.add_argument("--seconds", type=float, default=20)
    parser.add_argument("--one-process", action="store_true", help="ingest and deliver in one")
    parser.add_argument("--no-jetstream", action="store_true", help="skip the publish figures")
    print(json.dumps(asyncio.run(run(parser.parse_args())), indent=2))


if __name__ == "__main__":
    main()
