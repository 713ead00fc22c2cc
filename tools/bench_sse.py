"""How many live event streams (`GET /v1/events/stream`) one gateway process holds.

Starts the whole platform (separate processes, temporary data) on free ports, makes enough API
keys of one merchant (a credential holds at most 5 streams) and opens `--streams` server-sent
event streams to the one gateway process. Then prints: the gateway's memory (RSS) before and
with the streams open; the CPU the gateway and the dispatcher spend over `--idle` seconds with
every stream open and nothing happening; and, for `--events` events made one after another
(a customer created through the API), the time from the create's answer to each stream
receiving it (p50, p99, max over every stream and event). Run on demand:
`.venv/bin/python tools/bench_sse.py [--streams N]`. Figures, not assertions.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import shutil
import tempfile
import time
import uuid
from pathlib import Path

import httpx
from bench_checkout import UNLIMITED

from pos_devstack.natsd import free_port
from pos_devstack.platform import SERVICES, Platform, Ports

TICK = os.sysconf("SC_CLK_TCK")


def _cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / TICK


def _rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


def _pct(values: list[float], p: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(p * len(ordered)))]


async def bench(platform: Platform, key: str, streams: int, idle: float, events: int) -> None:
    pids = {p.name: p.popen.pid for p in platform.procs}
    base = platform.gateway_url
    admin = httpx.AsyncClient(base_url=base, headers={"Authorization": f"Bearer {key}"},
                              timeout=30)  # fmt: skip
    keys = []
    for n in range((streams + 4) // 5):
        made = await admin.post(
            "/v1/api-keys",
            json={"name": f"sse-{n}", "scopes": ["events:read"]},
            headers={"Idempotency-Key": str(uuid.uuid4())},
        )
        made.raise_for_status()
        keys.append(made.json()["key"])
    rss_before = _rss_mb(pids["gateway"])
    limits = httpx.Limits(max_connections=streams + 10, max_keepalive_connections=0)
    reader = httpx.AsyncClient(base_url=base, timeout=httpx.Timeout(30, read=None),
                               limits=limits)  # fmt: skip
    seen: list[dict[str, float]] = [{} for _ in range(streams)]
    opened = 0
    ready = asyncio.Event()

    async def follow(i: int) -> None:
        nonlocal opened
        headers = {"Authorization": f"Bearer {keys[i // 5]}"}
        async with reader.stream("GET", "/v1/events/stream", headers=headers) as live:
            live.raise_for_status()
            async for line in live.aiter_lines():
                if line == ": connected":
                    opened += 1
                    if opened == streams:
                        ready.set()
                elif line.startswith("data: ") and '"customer.created"' in line:
                    marker = line.split('"given_name":"', 1)[1].split('"', 1)[0]
                    seen[i].setdefault(marker, time.monotonic())

    tasks = [asyncio.create_task(follow(i)) for i in range(streams)]
    start = time.monotonic()
    await asyncio.wait_for(ready.wait(), 300)
    print(f"{streams} streams open in {time.monotonic() - start:.1f} s "
          f"({len(keys)} credentials)")  # fmt: skip
    print(
        f"gateway RSS: {rss_before:.0f} MB before, {_rss_mb(pids['gateway']):.0f} MB with the "
        f"streams ({(_rss_mb(pids['gateway']) - rss_before) * 1024 / streams:.0f} kB a stream)"
    )
    cpu = {n: _cpu_seconds(pids[n]) for n in ("gateway", "dispatcher")}
    await asyncio.sleep(idle)
    for name in ("gateway", "dispatcher"):
        share = (_cpu_seconds(pids[name]) - cpu[name]) / idle * 100
        print(f"{name} CPU while every stream idles: {share:.1f} % of a core")
    made_at: dict[str, float] = {}
    for n in range(events):
        marker = f"sse{n}x{uuid.uuid4().hex[:6]}"
        answer = await admin.post("/v1/customers", json={"given_name": marker},
                                  headers={"Idempotency-Key": str(uuid.uuid4())})  # fmt: skip
        answer.raise_for_status()
        made_at[marker] = time.monotonic()
        await asyncio.sleep(0.5)
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline and any(len(s) < events for s in seen):  # noqa: ASYNC110
        await asyncio.sleep(0.1)  # the readers' tasks fill `seen`; this only waits them out
    lags = [(s[m] - t) * 1000 for s in seen for m, t in made_at.items() if m in s]
    missing = streams * events - len(lags)
    print(f"event → every stream: {len(lags)} deliveries, p50 {_pct(lags, 0.5):.0f} ms, "
          f"p99 {_pct(lags, 0.99):.0f} ms, max {max(lags):.0f} ms"
          + (f", {missing} MISSING" if missing else ""))  # fmt: skip
    for task in tasks:
        task.cancel()
    await asyncio.gather(*tasks, return_exceptions=True)
    await reader.aclose()
    await admin.aclose()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--streams", type=int, default=1000)
    parser.add_argument("--idle", type=float, default=10.0)
    parser.add_argument("--events", type=int, default=5)
    args = parser.parse_args()
    home = Path(tempfile.mkdtemp(prefix="omnitill-bench-"))
    ports = Ports(
        free_port(), free_port(), free_port(), {s: free_port() for s in SERVICES}, free_port()
    )
    # Room for every stream: each holds one of the gateway's request slots.
    env = {**UNLIMITED, "MAX_CONCURRENT_REQUESTS": str(args.streams + 512)}
    platform = Platform(home, ports, say=lambda line: None, env_extra=env, disposable=True)
    try:
        platform.start_infrastructure()
        platform.start_services()
        key = platform.sandbox_key()
        print(f"live streams on one gateway process, load {os.getloadavg()[0]:.1f}")
        asyncio.run(bench(platform, key, args.streams, args.idle, args.events))
    finally:
        platform.stop()
        shutil.rmtree(home, ignore_errors=True)


if __name__ == "__main__":
    main()
