"""Figures for the dispatcher (services/dispatcher/README.md), not a timed test.

    python tools/bench_dispatcher.py [--events 20000] [--rate 200] [--seconds 20]
        [--one-process] [--no-jetstream]
    python tools/bench_dispatcher.py --checkouts 8 [--rate 200] [--seconds 20] [--apart]
        [--per-endpoint N] [--profile DIR]

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

With `--checkouts C` it measures 2. on the whole platform instead (`make up`'s processes,
temporary data, as tools/bench_checkout.py starts it) WHILE wrk drives register checkouts
through the gateway on C connections: the demo merchant's subscription takes every event
(`*`), so the checkouts' own events are ingested and delivered beside the steady ones. It
prints the steady events' publish -> webhook p50/p99, the checkouts' events' commit
(`occurred_at`) -> webhook p50/p99, the checkouts/s wrk achieved, the cores each dispatcher
process used and the load average before and after; and where the steady events' time goes:
publish -> the feed's transaction (`to_feed`), from there -> received (`feed_to_webhook`),
the receiver's answer as timed by the deliverer (`attempt`), the first and last 2 s apart
(a growing latency means deliveries fall behind). `--apart`: the steady events are another
merchant's; `--per-endpoint`: WEBHOOK_PER_ENDPOINT; `--profile`: py-spy records both
dispatcher processes during the steady phase (folded stacks, idle included).
"""

# A measuring script: it starts servers and polls for figures on purpose.
# ruff: noqa: ASYNC110, ASYNC220

from __future__ import annotations

import argparse
import asyncio
import gc
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
from datetime import datetime
from pathlib import Path
from typing import Any

import grpc
import httpx
import nats
import psycopg
import uvicorn
from bench_checkout import (
    _merchant_of,
    analyze,
    checkout_script,
    on_platform,
    run_wrk,
    stock_for_checkouts,
)

from pos.common.v1 import money_pb2
from pos.dispatcher.v1 import dispatcher_pb2 as pb
from pos.dispatcher.v1 import dispatcher_pb2_grpc
from pos.inventory.v1 import events_pb2, inventory_pb2
from pos_devstack.natsd import LocalNats, free_port, nats_server_binary
from pos_devstack.platform import DELIVERER, Platform
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


def stock_event(n: int, merchant: str) -> Any:
    """A stock level's change: no other service consumes it (the order service keeps a copy of
    every product), so the steady events beside checkouts load the dispatcher only."""
    level = inventory_pb2.StockLevel(
        sku=f"BENCH-{n % 50}", location_id="loc_bench", on_hand=n, reserved=0, available=n
    )
    level.updated_at.GetCurrentTime()
    return make_event(events_pb2.StockChanged(level=level, delta=1), merchant)


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
                    MERCHANT_HEADER: e.merchant_id,
                },
            )
            for e in events
        )
    )


class Receiver:
    """The webhook endpoint, in a process of its own (`receive`): in the measuring process it
    would share a core with the publisher and the feed reads, and its slowness would count
    as the dispatcher's. It writes `<webhook-id> <arrival time> <occurred_at>` lines to a file,
    read here (`occurred_at`, the event's time in its service's transaction, times the events
    this bench did not publish itself)."""

    def __init__(self, root: Path) -> None:
        self.file = root / "arrivals.txt"
        self.file.touch()
        self.port = free_port()
        self.arrived: dict[str, float] = {}
        self.occurred: dict[str, float] = {}
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
            event_id, at, occurred = line.split()
            self.arrived[event_id] = float(at)
            self.occurred[event_id] = float(occurred)
        return self.arrived


def receive(port: int, path: str) -> None:
    out = Path(path).open("a")  # noqa: SIM115 - open for the process's life

    async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            return
        body = b""
        while True:
            message = await receive()
            body += message.get("body", b"")
            if not message.get("more_body"):
                break
        at = time.time()
        headers = dict(scope["headers"])
        occurred = datetime.fromisoformat(json.loads(body)["occurred_at"]).timestamp()
        out.write(f"{headers[b'webhook-id'].decode()} {at} {occurred}\n")
        out.flush()
        await send({"type": "http.response.start", "status": 204, "headers": []})
        await send({"type": "http.response.body", "body": b""})

    config = uvicorn.Config(
        app, host="127.0.0.1", port=port, log_level="warning", lifespan="off", interface="asgi3"
    )
    # The measuring processes' own collector pauses are not the dispatcher's (GC_FREEZE=0
    # compares the platform's processes only).
    gc.collect()
    gc.freeze()
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
    if args.per_endpoint:
        env["WEBHOOK_PER_ENDPOINT"] = str(args.per_endpoint)
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
        n = args.events
        figures["ingest_events_per_second"] = round(args.events / ingest)
        while len(receiver.read()) < args.events:
            await asyncio.sleep(0.2)
        delivering = time.monotonic() - started
        figures["delivered_events_per_second"] = round(args.events / delivering)
        # How full the endpoint's slots were kept: the attempts' time over slots x the time
        # it all took. Near 1, the endpoint's round trip is the bound; well below, the
        # deliverer left slots idle (or ingest came first).
        spent = sum(attempt_seconds(url, [e.event_id for e in batch]))
        figures["slots_busy"] = round(spent / (args.per_endpoint or 8) / delivering, 2)
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
        cpu = cpu_seconds(procs)
        sent = await steady(js, args.rate, args.seconds, lambda i: product_event(i, i + 1), n)
        figures["steady_rate_per_second"] = args.rate
        figures.update(await latencies(receiver, sent))
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


async def steady(js: Any, rate: int, seconds: float, make: Any, first: int = 0) -> dict[str, float]:
    """Events from `make(n)` published one at a time at `rate` a second for `seconds`: the
    wall-clock time each was published, by event id. A publish is not awaited before the next
    one starts (a loaded machine slows its acknowledgement, and the rate must not sag)."""
    sent: dict[str, float] = {}
    pending: set[asyncio.Task[None]] = set()
    interval = 1 / rate
    begin = time.monotonic()
    n = first
    while time.monotonic() - begin < seconds:
        event = make(n)
        n += 1
        sent[event.event_id] = time.time()
        task = asyncio.create_task(publish(js, [event]))
        pending.add(task)
        task.add_done_callback(pending.discard)
        wait = begin + (n - first) * interval - time.monotonic()
        if wait > 0:
            await asyncio.sleep(wait)
    await asyncio.gather(*pending)
    return sent


def percentiles(values: list[float], name: str) -> dict[str, Any]:
    """p50 and p99 in milliseconds of latencies in seconds."""
    values = sorted(values)
    if not values:
        return {f"{name}_received": 0}
    return {
        f"{name}_p50_ms": round(statistics.median(values) * 1000, 1),
        f"{name}_p99_ms": round(values[max(int(len(values) * 0.99) - 1, 0)] * 1000, 1),
    }


async def latencies(receiver: Receiver, sent: dict[str, float]) -> dict[str, Any]:
    """Publish -> webhook received of the events sent, once all arrived (or 30 s passed)."""
    deadline = time.monotonic() + 30
    while not set(sent) <= set(receiver.read()) and time.monotonic() < deadline:
        await asyncio.sleep(0.1)
    arrived = [receiver.arrived[i] - t for i, t in sent.items() if i in receiver.arrived]
    return {
        **percentiles(arrived, "latency"),
        "latency_received": f"{len(arrived)}/{len(sent)}",
    }


def feed_times(url: str, ids: list[str]) -> dict[str, float]:
    """When each event's feed transaction began (`events.recorded_at`), by id."""
    with psycopg.connect(url) as conn:
        rows = conn.execute(
            "SELECT id, extract(epoch FROM recorded_at) FROM events WHERE id = ANY(%s)", (ids,)
        ).fetchall()
    return {str(i): float(at) for i, at in rows}


def attempt_seconds(url: str, ids: list[str]) -> list[float]:
    """How long each attempt of these events' deliveries took, as the deliverer timed it."""
    with psycopg.connect(url) as conn:
        rows = conn.execute(
            "SELECT a.latency_ms FROM delivery_attempts a JOIN deliveries d"
            " ON d.merchant_id = a.merchant_id AND d.id = a.delivery_id"
            " WHERE d.event_id = ANY(%s)",
            (ids,),
        ).fetchall()
    return [ms / 1000 for (ms,) in rows]


def py_spy(pid: int, seconds: float, out: Path) -> subprocess.Popen[bytes]:
    """Sample a process for `seconds` (py-spy, folded stacks with idle frames)."""
    return subprocess.Popen(
        [str(Path(sys.executable).parent / "py-spy"), "record", "-p", str(pid), "-d",
         str(int(seconds)), "-r", "50", "-f", "raw", "--idle", "-o", str(out)],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip


def run_with_checkouts(args: argparse.Namespace) -> dict[str, Any]:
    """Figure 2 on the whole platform while wrk drives register checkouts (`--checkouts`)."""
    figures: dict[str, Any] = {}

    async def work(platform: Platform, key: str) -> None:
        root = Path(tempfile.mkdtemp(prefix="omnitill-bench-receiver-"))
        receiver = Receiver(root)
        receiver.start()
        headers = {"Authorization": f"Bearer {key}"}
        nc = await nats.connect(platform.nats.url)
        try:
            async with httpx.AsyncClient(
                base_url=platform.gateway_url, headers=headers, timeout=30
            ) as http:
                body = await stock_for_checkouts(http)
                created = await http.post(
                    "/v1/webhook-subscriptions",
                    json={"url": f"http://127.0.0.1:{receiver.port}/hooks", "event_types": ["*"]},
                    headers={"Idempotency-Key": "bench-subscription"},
                )
                created.raise_for_status()
            script = checkout_script(root, key, body)
            merchant = await _merchant_of(platform, key)
            if args.apart:
                # The steady events of another merchant, with a subscription of its own: what
                # the checkouts' merchant costs it (the merchant's sequence row is shared by
                # the consumers of every stream) is then left out.
                merchant = MERCHANT
                port = platform.ports.services["dispatcher"]
                async with grpc.aio.insecure_channel(f"127.0.0.1:{port}") as channel:
                    await dispatcher_pb2_grpc.DispatcherServiceStub(channel).CreateSubscription(
                        pb.CreateSubscriptionRequest(
                            request_id="bench-apart",
                            url=f"http://127.0.0.1:{receiver.port}/hooks",
                            event_types=["inventory.*"],
                        ),
                        metadata=MD,
                        timeout=10,
                    )
            js = nc.jetstream()
            procs = {p.name: p.popen for p in platform.procs}
            dispatchers = [procs["dispatcher"], procs[DELIVERER]]
            # Warm-up (pools, prepared statements, caches), then the planner's statistics, as
            # bench_checkout does; its events are delivered before the measured run.
            await asyncio.to_thread(
                run_wrk, platform.gateway_url, script, args.checkouts, args.warmup
            )
            await asyncio.to_thread(analyze, platform)
            await asyncio.sleep(3)
            receiver.read()
            gc.collect()
            gc.freeze()
            figures["load_before"] = os.getloadavg()[0]
            cpu_each = [cpu_seconds([proc]) for proc in dispatchers]
            wrk_run = asyncio.create_task(
                asyncio.to_thread(
                    run_wrk, platform.gateway_url, script, args.checkouts, int(args.seconds) + 4
                )
            )
            await asyncio.sleep(2)  # wrk's connections are busy before the steady events start
            profiles: list[Path] = []
            spies = []
            if args.profile:
                for role, proc in zip(("ingest", "deliver"), dispatchers, strict=True):
                    profiles.append(args.profile / f"dispatcher-{role}.folded")
                    spies.append(py_spy(proc.pid, args.seconds, profiles[-1]))
            started = time.monotonic()
            sent = await steady(js, args.rate, args.seconds, lambda i: stock_event(i, merchant))
            wall = time.monotonic() - started
            for role, proc, before in zip(
                ("ingest", "deliver"), dispatchers, cpu_each, strict=True
            ):
                figures[f"cores_used_{role}"] = round((cpu_seconds([proc]) - before) / wall, 2)
            checkouts = await wrk_run
            for spy in spies:
                spy.wait(30)
            figures["load_after"] = os.getloadavg()[0]
            figures["checkout_connections"] = args.checkouts
            figures["checkouts_per_second"] = checkouts.rps
            figures["checkout_p50_ms"] = checkouts.p50_ms
            figures["checkout_p99_ms"] = checkouts.p99_ms
            figures["checkouts_failed"] = checkouts.failed
            figures["steady_rate_per_second"] = args.rate
            figures.update(await latencies(receiver, sent))
            # The checkouts' own events: from their commit in their service to the webhook.
            await asyncio.sleep(3)
            others = [
                at - receiver.occurred[i]
                for i, at in receiver.read().items()
                if i not in sent
                and receiver.occurred[i] >= min(sent.values())
                and receiver.occurred[i] <= max(sent.values())
            ]
            figures["checkout_events_per_second"] = round(len(others) / wall)
            figures.update(percentiles(others, "checkout_events_latency"))
            # Where the time goes: publish -> the feed's transaction (the stream, the fetch, a
            # batch ahead) and from there -> received (commit, wake-up, claim, request).
            url = platform.database_urls["dispatcher"]
            recorded = feed_times(url, list(sent))
            figures.update(
                percentiles([recorded[i] - t for i, t in sent.items() if i in recorded], "to_feed")
            )
            figures.update(
                percentiles(
                    [receiver.arrived[i] - recorded[i] for i in recorded if i in receiver.arrived],
                    "feed_to_webhook",
                )
            )
            # The receiver's answer as the deliverer timed it (a slow endpoint with its 8
            # slots full makes a queue), and the trend: a latency growing from the first
            # seconds to the last says deliveries fall behind, not just take long.
            figures.update(percentiles(attempt_seconds(url, list(sent)), "attempt"))
            first = min(sent.values())
            for name, begin, end in (
                ("first_2s", first, first + 2),
                ("last_2s", first + args.seconds - 2, first + args.seconds),
            ):
                window = [
                    receiver.arrived[i] - t
                    for i, t in sent.items()
                    if begin <= t < end and i in receiver.arrived
                ]
                figures.update(percentiles(window, f"latency_{name}"))
            # Each second's p99 (publish -> received, and publish -> the feed): spikes or a
            # trend, and in which step.
            each: list[list[float]] = [[] for _ in range(int(args.seconds) + 1)]
            feed_each: list[list[float]] = [[] for _ in range(int(args.seconds) + 1)]
            for i, t in sent.items():
                if i in receiver.arrived:
                    each[int(t - first)].append(receiver.arrived[i] - t)
                if i in recorded:
                    feed_each[int(t - first)].append(recorded[i] - t)
            for key, groups in (
                ("p99_each_second_ms", each),
                ("to_feed_p99_each_second_ms", feed_each),
            ):
                figures[key] = [
                    round(sorted(g)[max(int(len(g) * 0.99) - 1, 0)] * 1000) for g in groups if g
                ]
            if profiles:
                figures["profiles"] = [str(path) for path in profiles]
        finally:
            await nc.close()
            receiver.stop()
            shutil.rmtree(root, ignore_errors=True)

    started = time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())
    settings = {"WEBHOOK_PER_ENDPOINT": str(args.per_endpoint)} if args.per_endpoint else {}
    on_platform(
        f"dispatcher latency {started}: {args.rate} events/s for {args.seconds:g} s while wrk"
        f" runs register checkouts on {args.checkouts} connections {settings or ''}",
        work,
        env_extra=settings,
    )
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
    parser.add_argument(
        "--checkouts", type=int, default=0, help="connections of register checkouts beside"
    )
    parser.add_argument("--per-endpoint", type=int, default=0, help="WEBHOOK_PER_ENDPOINT")
    parser.add_argument(
        "--apart", action="store_true", help="steady events of another merchant (--checkouts)"
    )
    parser.add_argument(
        "--profile", type=Path, help="py-spy both dispatcher processes into this folder"
    )
    parser.add_argument("--warmup", type=int, default=10, help="warm-up s (--checkouts)")
    args = parser.parse_args()
    if args.checkouts:
        print(json.dumps(run_with_checkouts(args), indent=2))
    else:
        print(json.dumps(asyncio.run(run(args)), indent=2))


if __name__ == "__main__":
    main()
