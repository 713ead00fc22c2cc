"""Register checkouts through the gateway, driven by wrk, and their ratio to the single-hop ceiling.

Starts the whole platform (separate processes, temporary data) on free ports, stocks the demo
merchant for a long run, then drives `POST /v1/checkouts` (2 lines, card, a customer, a new
Idempotency-Key per request) with wrk, one thread, at 8, 16 and 32 connections, the way
`../shared/bench-ceiling` measures its single-hop checkout (wrk -> FastAPI -> one gRPC call ->
one PostgreSQL transaction). Prints checkouts/s, p50 and p99 per connection count. Then the web
order with pickup the same way: create (stock held), card tender, confirm, three requests per
order (`PICKUP_LUA`); prints orders confirmed per second and the requests' p50 and p99.

With `--ceiling DIR` (the bench-ceiling folder, usually ../shared/bench-ceiling) the same run
then copies that folder to a scratch directory (it may be read-only), stops the platform, runs
the ceiling's own first end-to-end variant (`VARIANTS=base run_e2e.sh`) with the same wrk
settings and prints the ratio per connection count (the ceiling runs c=8 and the largest).
Its scripts run with this Python (the project's venv holds what they need) unless
`--ceiling-python` says otherwise; they wait for a quiet machine (at most `--quiet-wait` s)
and flag runs that overlapped other work.

Run on demand (`make bench`; CI does not): `.venv/bin/python tools/bench_checkout.py
[--connections 8 16 32] [--duration S] [--ceiling ../shared/bench-ceiling]`. Figures, not
assertions: the machine and its other load decide them (the load average is shown).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import re
import shutil
import string
import subprocess
import tempfile
import time
import uuid
from collections.abc import Awaitable, Callable, Coroutine
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import psycopg

from pos_devstack.natsd import free_port
from pos_devstack.platform import SERVICES, Platform, Ports

# The bench runs far above one credential's default budget (100/s): it measures the checkout,
# not the rate limiter.
UNLIMITED = {"RATE_LIMIT_PER_SECOND": "1000000", "RATE_LIMIT_BURST": "1000000"}
CHECKOUT_LINES = [{"sku": "TEE-BLK-M", "quantity": 1}, {"sku": "MUG-LOGO", "quantity": 1}]


async def _run(total: int, concurrency: int, one: object) -> tuple[list[float], float]:
    """`total` calls of `one` from `concurrency` tasks: (latency of each, seconds in all)."""
    latencies: list[float] = []
    queue = iter(range(total))

    async def worker() -> None:
        for _ in queue:
            start = time.perf_counter()
            await one()  # type: ignore[operator]
            latencies.append(time.perf_counter() - start)

    start = time.perf_counter()
    await asyncio.gather(*(worker() for _ in range(concurrency)))
    return latencies, time.perf_counter() - start


async def _merchant_of(platform: Platform, key: str) -> str:
    """The merchant an API key belongs to (the services are called with it directly)."""
    from sqlalchemy import select

    from pos_gateway.keys import keyed_hash
    from pos_gateway.tables import api_keys
    from pos_kit.db import make_engine

    engine = make_engine(platform.database_urls["gateway"], pool_size=1)
    digest = keyed_hash(platform._secrets()["gateway_secret_key"], key)
    async with engine.connect() as conn:
        merchant = await conn.scalar(
            select(api_keys.c.merchant_id).where(api_keys.c.key_hash == digest)
        )
    await engine.dispose()
    return str(merchant)


async def stock_for_checkouts(http: httpx.AsyncClient) -> dict[str, Any]:
    """Stock the demo merchant's first location for a long run; the body of one register
    checkout there (2 lines, card tender, a customer: the sale earns loyalty points)."""
    locations = (await http.get("/v1/locations")).json()["data"]
    location = str(locations[0]["id"])
    for line in CHECKOUT_LINES:
        await http.post(
            "/v1/inventory/adjustments",
            json={"sku": line["sku"], "location_id": location, "delta": 10_000_000,
                  "reason": "received"},
            headers={"Idempotency-Key": f"bench-stock-{line['sku']}"},
        )  # fmt: skip
    customer = await http.post(
        "/v1/customers",
        json={"email": "bench@example.com", "given_name": "Bench"},
        headers={"Idempotency-Key": "bench-customer"},
    )
    customer.raise_for_status()
    return {
        "location_id": location,
        "customer_id": customer.json()["id"],
        "lines": CHECKOUT_LINES,
        "tender_type": "card",
        "card_token": "tok_visa",
    }


async def register_checkout(http: httpx.AsyncClient) -> tuple[Callable[[], Awaitable[None]], str]:
    """One register checkout through the gateway as a callable (each with a new key), and the
    location it sells from."""
    body = await stock_for_checkouts(http)

    async def via_gateway() -> None:
        answer = await http.post(
            "/v1/checkouts", json=body, headers={"Idempotency-Key": str(uuid.uuid4())}
        )
        if answer.status_code != 201:
            raise RuntimeError(answer.text)

    return via_gateway, body["location_id"]


async def web_pickup(http: httpx.AsyncClient) -> tuple[Callable[[], Awaitable[None]], str]:
    """One web order with pickup at the checkout's store as a callable: create (its units
    held), card tender, confirm, each with a new key, as `PICKUP_LUA` drives it with wrk."""
    body = await stock_for_checkouts(http)
    order = pickup_order(body)

    async def post(path: str, payload: dict[str, Any]) -> dict[str, Any]:
        answer = await http.post(path, json=payload, headers={"Idempotency-Key": str(uuid.uuid4())})
        if answer.status_code >= 300:
            raise RuntimeError(f"{path}: {answer.status_code} {answer.text}")
        return dict(answer.json())

    async def flow() -> None:
        created = await post("/v1/orders", order)
        tender = {"tender_type": "card", "card_token": "tok_visa"}
        await post(f"/v1/orders/{created['id']}/tenders", tender)
        await post(f"/v1/orders/{created['id']}/confirm", {})

    return flow, body["location_id"]


def analyze(platform: Platform) -> None:
    """Planner statistics in every database, as a database in service has them. Tables made by
    the migrations a minute ago have none until autovacuum's first pass (its naptime is a
    minute), and with none the planner may look a payment up by its primary key through another
    index that starts with the merchant: every look-up then reads all of the merchant's rows, so
    the run would measure a cost that grows with its own length (found with the profile's
    index-scan figures: 926 rows read per checkout after a few hundred)."""
    for url in platform.database_urls.values():
        with psycopg.connect(url, autocommit=True) as conn:
            conn.execute("ANALYZE")


def on_platform(
    title: str,
    work: Callable[[Platform, str], Coroutine[Any, Any, None]],
    prepare: Callable[[Platform], None] | None = None,
    env_extra: dict[str, str] | None = None,
) -> None:
    """Start the platform on free ports with temporary data, run `work`, stop everything.

    `prepare` runs before anything starts (e.g. to configure PostgreSQL's data folder);
    `env_extra` is added to every process's environment, after the unlimited rate limit."""
    home = Path(tempfile.mkdtemp(prefix="omnitill-bench-"))
    ports = Ports(
        free_port(), free_port(), free_port(), {s: free_port() for s in SERVICES}, free_port()
    )
    env = {**UNLIMITED, **(env_extra or {})}
    platform = Platform(home, ports, say=lambda line: None, env_extra=env)
    try:
        if prepare is not None:
            prepare(platform)
        platform.start_infrastructure()
        platform.start_services()
        key = platform.sandbox_key()
        print(title)
        asyncio.run(work(platform, key))
    finally:
        platform.stop()
        shutil.rmtree(home, ignore_errors=True)


# --- wrk ----------------------------------------------------------------------------------------


@dataclass(frozen=True)
class WrkResult:
    connections: int
    rps: float
    p50_ms: float
    p99_ms: float
    requests: int
    failed: int  # answers that were not 2xx/3xx, and socket errors
    load: float  # the 1-minute load average when the run started

    def line(self, name: str) -> str:
        failed = f", {self.failed} FAILED" if self.failed else ""
        return (
            f"{name:<22} c={self.connections:<3} {self.rps:7.1f} /s   p50 {self.p50_ms:7.1f} ms"
            f"   p99 {self.p99_ms:7.1f} ms   ({self.requests} requests{failed};"
            f" load {self.load:.1f} at start)"
        )


_UNIT_MS = {"us": 0.001, "ms": 1.0, "s": 1000.0, "m": 60_000.0}


def _ms(text: str) -> float:
    found = re.fullmatch(r"([\d.]+)(us|ms|s|m)", text)
    if found is None:
        raise ValueError(f"not a wrk duration: {text!r}")
    return float(found.group(1)) * _UNIT_MS[found.group(2)]


def parse_wrk(text: str, connections: int, load: float) -> WrkResult:
    """The figures of `wrk --latency` output."""

    def grab(pattern: str) -> str:
        found = re.search(pattern, text, re.M)
        if found is None:
            raise RuntimeError(f"wrk printed no {pattern!r}:\n{text}")
        return found.group(1)

    failed = re.search(r"Non-2xx or 3xx responses: (\d+)", text)
    errors = re.search(
        r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", text
    )
    return WrkResult(
        connections=connections,
        rps=float(grab(r"Requests/sec:\s+([\d.]+)")),
        p50_ms=_ms(grab(r"^\s+50(?:\.000)?%\s+(\S+)")),
        p99_ms=_ms(grab(r"^\s+99(?:\.000)?%\s+(\S+)")),
        requests=int(grab(r"(\d+) requests in")),
        failed=(int(failed.group(1)) if failed else 0)
        + (sum(int(n) for n in errors.groups()) if errors else 0),
        load=load,
    )


def checkout_script(folder: Path, key: str, body: dict[str, Any]) -> Path:
    """A wrk script: POST the checkout with a new Idempotency-Key each time: a counter after
    the id `_wrk` gives each wrk run (`init`), so no checkout replays one of an earlier run.
    (Until 2026-12-02 the id was the script's, and every run after the warm-up replayed the
    warm-up's answers for as many requests as it had made: cheap replays inflated the
    figures of the runs measured after it.)"""
    script = folder / "checkout.lua"
    script.write_text(
        "wrk.method = 'POST'\n"
        f"wrk.body = [[{json.dumps(body)}]]\n"
        "wrk.headers['Content-Type'] = 'application/json'\n"
        f"wrk.headers['Authorization'] = 'Bearer {key}'\n"
        "local n, run = 0, ''\n"
        "init = function(args) run = args[1] end\n"
        "request = function()\n"
        "  n = n + 1\n"
        "  wrk.headers['Idempotency-Key'] = 'bench-' .. run .. '-' .. n\n"
        "  return wrk.format(nil, '/v1/checkouts')\n"
        "end\n"
    )
    return script


# The web pickup flow as wrk sees it: three requests per order (create, card tender, confirm).
# wrk does not tell `response` which connection or request it answers, so the flow is kept by
# order: a created order's id is queued for its tender, a tendered one for its confirmation,
# and every connection takes the oldest queued step, or starts a new order when none is queued.
# `done` reads the thread's counters: flows completed and any step that did not succeed.
PICKUP_LUA = """
local key, body, run = %(key)s, %(body)s, ''
local steps, stage, n = {}, {}, 0
init = function(args) run = args[1] end
confirmed, failed = 0, 0
local function post(path, payload)
  n = n + 1
  return wrk.format('POST', path, {
    ['Content-Type'] = 'application/json',
    ['Authorization'] = 'Bearer ' .. key,
    ['Idempotency-Key'] = 'pickup-' .. run .. '-' .. n,
  }, payload)
end
request = function()
  local step = table.remove(steps, 1)
  if step == nil then return post('/v1/orders', body) end
  if step.kind == 'tender' then
    return post('/v1/orders/' .. step.id .. '/tenders',
                '{"tender_type": "card", "card_token": "tok_visa"}')
  end
  return post('/v1/orders/' .. step.id .. '/confirm', '{}')
end
response = function(status, headers, text)
  local id = string.match(text, '"id"%%s*:%%s*"(ord_[^"]+)"')
  if status >= 300 or id == nil then
    failed = failed + 1
    if failed <= 3 then  -- the first few, to say why
      io.write('failed step: ' .. status .. ' ' .. string.sub(text, 1, 300) .. '\\n')
    end
    return
  end
  local at = stage[id]
  if at == nil then
    stage[id] = 1; table.insert(steps, {kind = 'tender', id = id})
  elseif at == 1 then
    stage[id] = 2; table.insert(steps, {kind = 'confirm', id = id})
  else
    stage[id] = nil; confirmed = confirmed + 1
  end
end
local threads = {}
setup = function(thread) table.insert(threads, thread) end
done = function(summary, latency, requests)
  local c, f = 0, 0
  for _, t in ipairs(threads) do c = c + t:get('confirmed'); f = f + t:get('failed') end
  io.write(string.format('pickup flows confirmed: %%d, failed steps: %%d\\n', c, f))
end
"""


def pickup_order(checkout: dict[str, Any]) -> dict[str, Any]:
    """A web order with pickup at the checkout's store (its lines, a customer)."""
    return {
        "channel": "web",
        "location_id": checkout["location_id"],
        "customer_id": checkout["customer_id"],
        "lines": checkout["lines"],
        "fulfillments": [{"type": "pickup", "location_id": checkout["location_id"]}],
    }


def pickup_script(folder: Path, key: str, checkout: dict[str, Any]) -> Path:
    """A wrk script for web orders with pickup at the checkout's store (its lines, a customer)."""
    order = pickup_order(checkout)
    script = folder / "pickup.lua"
    script.write_text(
        PICKUP_LUA
        % {
            "key": json.dumps(key),
            "body": "[[" + json.dumps(order) + "]]",
        }
    )
    return script


@dataclass(frozen=True)
class FlowResult:
    """A wrk run of the pickup flow: its requests, and the flows they completed."""

    requests: WrkResult
    flows: int
    failed_steps: int
    duration: int

    @property
    def rps(self) -> float:
        return self.flows / self.duration

    def line(self) -> str:
        failed = f", {self.failed_steps} steps FAILED" if self.failed_steps else ""
        r = self.requests
        return (
            f"{'web pickup flow':<22} c={r.connections:<3} {self.rps:7.1f} /s   (3 requests each:"
            f" {r.rps:.1f} requests/s, p50 {r.p50_ms:.1f} ms, p99 {r.p99_ms:.1f} ms per request;"
            f" {self.flows} orders confirmed{failed}; load {r.load:.1f} at start)"
        )


def run_wrk(url: str, script: Path, connections: int, duration: int) -> WrkResult:
    return parse_wrk(_wrk(url, script, connections, duration), connections, os.getloadavg()[0])


def _run_id() -> str:
    """Letters only: the keys are `<run>-<counter>`, and hex digits before the dash could join
    the counter into a 13-19 digit run that passes Luhn, which the gateway refuses as a card
    number (pos_kit.text), failing a few requests of some runs (seen 2026-12-02)."""
    return "".join(string.ascii_lowercase[b % 26] for b in uuid.uuid4().bytes)


def _wrk(url: str, script: Path, connections: int, duration: int) -> str:
    """wrk's output; its script's `init` gets an id of this run (for Idempotency-Keys)."""
    return subprocess.run(
        ["wrk", "-t1", f"-c{connections}", f"-d{duration}s", "--timeout", "10s", "--latency",
         "-s", str(script), url, "--", _run_id()],
        capture_output=True, text=True, check=True,
    ).stdout  # fmt: skip


def run_pickup(url: str, script: Path, connections: int, duration: int) -> FlowResult:
    load = os.getloadavg()[0]
    out = _wrk(url, script, connections, duration)
    for line in out.splitlines():
        if line.startswith("failed step:"):
            print("  " + line, flush=True)  # the first few, to say why
    counted = re.search(r"pickup flows confirmed: (\d+), failed steps: (\d+)", out)
    if counted is None:
        raise RuntimeError(f"the pickup script printed no count:\n{out}")
    return FlowResult(
        parse_wrk(out, connections, load), int(counted.group(1)), int(counted.group(2)), duration
    )


# --- the platform's checkout ---------------------------------------------------------------------


async def bench_platform(
    platform: Platform, key: str, connections: list[int], duration: int, scratch: Path
) -> tuple[list[WrkResult], list[FlowResult]]:
    headers = {"Authorization": f"Bearer {key}"}
    async with httpx.AsyncClient(
        base_url=platform.gateway_url, headers=headers, timeout=30
    ) as http:
        body = await stock_for_checkouts(http)
    script = checkout_script(scratch, key, body)
    # Warm-up, as long as a measured run: pools fill, every pooled connection has prepared its
    # statements (psycopg does on a statement's fifth run), caches fill. Its figures are not
    # kept (with no warm-up, four 10 s runs in a row once gave 32, 57, 79 and 89/s).
    await asyncio.to_thread(run_wrk, platform.gateway_url, script, max(connections), duration)
    await asyncio.to_thread(analyze, platform)
    results = []
    for c in connections:
        await asyncio.sleep(2)  # what is still in flight (events, relays) settles
        result = await asyncio.to_thread(run_wrk, platform.gateway_url, script, c, duration)
        print(result.line("platform checkout"), flush=True)
        results.append(result)
    pickup = pickup_script(scratch, key, body)
    flows = []
    for c in connections:
        await asyncio.sleep(2)
        flow = await asyncio.to_thread(run_pickup, platform.gateway_url, pickup, c, duration)
        print(flow.line(), flush=True)
        flows.append(flow)
    return results, flows


# --- the single-hop ceiling ----------------------------------------------------------------------


def run_ceiling(
    source: Path, python: str, connections: list[int], duration: int, quiet_wait: int
) -> dict[int, WrkResult]:
    """The bench-ceiling's first end-to-end variant at these connection counts (it also runs
    c=1; that line is left out), in a writable copy of its folder."""
    copy = Path(tempfile.gettempdir()) / "omnitill-bench-ceiling"
    shutil.rmtree(copy, ignore_errors=True)
    shutil.copytree(source, copy, ignore=shutil.ignore_patterns("results", ".venv", "gen"))
    for path in copy.rglob("*"):  # the source may be read-only, and so would the copy be
        path.chmod(path.stat().st_mode | 0o200)
    copy.chmod(copy.stat().st_mode | 0o200)
    results_dir = copy / "results"
    env = {
        **os.environ,
        "PY": os.path.abspath(python),  # the scripts run from their own folder
        "VARIANTS": "base",
        # run_e2e.sh runs c=1, c=8 and c=$CONNS; the largest asked for is CONNS.
        "CONNS": str(max(connections)),
        "RUNS": "1",
        "DURATION": str(duration),
        "QUIET_WAIT": str(quiet_wait),
        "TRIES": "2",
        "RESULTS": str(results_dir),
    }
    load = os.getloadavg()[0]
    done = subprocess.run(
        ["bash", str(copy / "run_e2e.sh")], env=env, capture_output=True, text=True
    )
    if done.returncode != 0:
        raise RuntimeError(f"the ceiling run failed:\n{done.stdout[-3000:]}{done.stderr[-3000:]}")
    found: dict[int, WrkResult] = {}
    for line in (results_dir / "e2e.jsonl").read_text().splitlines():
        record = json.loads(line)
        c = int(re.search(r"\bc=(\d+)", record["config"]).group(1))  # type: ignore[union-attr]
        if c in connections:
            found[c] = WrkResult(
                connections=c,
                rps=record["rps"],
                p50_ms=record["p50_ms"],
                p99_ms=record["p99_ms"],
                requests=record["n"],
                failed=record["non2xx"],
                load=load,
            )
            foreign = record.get("cores_used", {}).get("foreign", 0.0)
            print(found[c].line("single-hop ceiling") + f" foreign cores {foreign:.2f}")
    return found


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--connections", type=int, nargs="+", default=[8, 16, 32])
    parser.add_argument("--duration", type=int, default=10, help="seconds per wrk run")
    parser.add_argument("--ceiling", type=Path, help="the bench-ceiling folder: run it too")
    parser.add_argument("--ceiling-python", default=None, help="python for its scripts")
    parser.add_argument("--quiet-wait", type=int, default=120, help="max s to wait for quiet")
    args = parser.parse_args()
    if shutil.which("wrk") is None:
        raise SystemExit("wrk is not installed (Debian: apt-get install -y wrk)")
    connections = sorted(set(args.connections))

    platform_results: list[WrkResult] = []
    flow_results: list[FlowResult] = []

    async def work(platform: Platform, key: str) -> None:
        with tempfile.TemporaryDirectory() as scratch:
            checkouts, flows = await bench_platform(
                platform, key, connections, args.duration, Path(scratch)
            )
            platform_results.extend(checkouts)
            flow_results.extend(flows)

    started = time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())
    on_platform(
        f"checkout benchmark {started}: wrk -t1, {args.duration} s per run, "
        "POST /v1/checkouts (2 lines, card, a customer), then web orders with pickup "
        "(create, card tender, confirm)",
        work,
    )
    if args.ceiling is None:
        return
    python = args.ceiling_python or os.environ.get("PY") or _venv_python()
    ceiling = run_ceiling(args.ceiling, python, connections, args.duration, args.quiet_wait)
    for result in platform_results:
        top = ceiling.get(result.connections)
        if top is not None:
            print(
                f"ratio at c={result.connections:<3} {result.rps / top.rps:.2f}"
                f"   ({result.rps:.1f} / {top.rps:.1f} checkouts/s)"
            )
    for flow in flow_results:
        top = ceiling.get(flow.requests.connections)
        if top is not None:
            print(
                f"web pickup ratio at c={flow.requests.connections:<3} {flow.rps / top.rps:.2f}"
                f"   ({flow.rps:.1f} orders / {top.rps:.1f} checkouts/s)"
            )


def _venv_python() -> str:
    import sys

    return sys.executable


if __name__ == "__main__":
    main()
