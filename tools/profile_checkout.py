"""Where a register checkout's CPU goes: per process, per step, per statement and per hop.

Starts the whole platform on free ports with temporary data (as tools/bench_checkout.py does,
with its helpers), runs N register checkouts (2 lines, card) through the gateway at a fixed
concurrency (or, with `--flow pickup`, N web orders with pickup: create, card tender,
confirm) and prints, per checkout:

- ms of CPU of every process (utime + stime from /proc/<pid>/stat, before and after): the
  gateway, each service, PostgreSQL's backends per database (its whole process tree, exited
  backends included through the postmaster's children times), nats-server, and this load
  generator itself, which shares the same cores; and the kernel's part of each;
- the server's CPU for one new PostgreSQL connection (what a pool's overflow costs);
- commits and rows per service database (pg_stat_database) and statements per service
  (pg_stat_statements, preloaded into the temporary PostgreSQL by this tool only);
- with `--spans`: gRPC calls and SQL statements as the processes' own OpenTelemetry spans
  count them (every process exports to a small OTLP receiver in this tool); the CPU figures of
  that run then include the cost of tracing turned on;
- with `--py-spy`: a second batch of checkouts sampled by py-spy in every Python process,
  summarised by library (own code, SQLAlchemy, psycopg, grpc, protobuf, logging/telemetry,
  asyncio, web) and by the project's own functions (inclusive), per process.

Run on demand: `.venv/bin/python tools/profile_checkout.py [--requests N] [--concurrency C]
[--py-spy] [--spans]`. py-spy attaches with ptrace: run as root (or with CAP_SYS_PTRACE).
Figures, not assertions: the machine and its other load decide them (the load average is shown).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections import Counter, defaultdict
from collections.abc import Callable
from pathlib import Path

import grpc
import httpx
import psycopg
from bench_checkout import _run, analyze, on_platform, register_checkout, web_pickup
from opentelemetry.proto.collector.trace.v1 import trace_service_pb2, trace_service_pb2_grpc

from pos_devstack.natsd import free_port
from pos_devstack.platform import SERVICES, Platform

TICK = os.sysconf("SC_CLK_TCK")

# --- CPU per process from /proc ------------------------------------------------------------------


def _proc_stat(pid: int) -> tuple[int, float, float] | None:
    """(parent pid, CPU seconds of the process and of its exited, waited-for children, and the
    part of them spent in the kernel: sockets on loopback cost system time)."""
    try:
        text = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    fields = text[text.rindex(")") + 2 :].split()  # the name may hold spaces and brackets
    ppid = int(fields[1])
    utime, stime, cutime, cstime = (int(x) for x in fields[11:15])
    return ppid, (utime + stime + cutime + cstime) / TICK, (stime + cstime) / TICK


def _postgres_label(pid: int) -> str:
    """`postgres: <user> <database> 127.0.0.1(port) idle` names a backend by its database."""
    try:
        cmd = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode().strip()
    except OSError:
        return "postgres: other"
    words = cmd.split()
    if cmd.startswith("postgres: ") and len(words) >= 4 and "(" in words[3]:
        return f"postgres: {words[2]} backends"
    if cmd.startswith("postgres: "):
        return "postgres: background"
    return "postgres: postmaster (+ exited backends)"


def cpu_snapshot(roots: dict[str, int]) -> dict[int, tuple[str, float, float]]:
    """CPU seconds of every process under each root, labelled; a new process starts from 0."""
    children: dict[int, list[int]] = defaultdict(list)
    stats: dict[int, tuple[float, float]] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit() and (stat := _proc_stat(int(entry.name))) is not None:
            children[stat[0]].append(int(entry.name))
            stats[int(entry.name)] = stat[1:]
    found: dict[int, tuple[str, float, float]] = {}
    for name, root in roots.items():
        todo = [root]
        while todo:
            pid = todo.pop()
            if pid in stats:
                label = _postgres_label(pid) if name == "postgres" else name
                found[pid] = (label, *stats[pid])
            todo.extend(children.get(pid, []))
    self_stat = _proc_stat(os.getpid())
    if self_stat is not None:
        found[os.getpid()] = ("load generator (this tool)", *self_stat[1:])
    return found


Snapshot = dict[int, tuple[str, float, float]]


def cpu_delta(before: Snapshot, after: Snapshot, system: bool = False) -> dict[str, float]:
    """Seconds per label (in all, or in the kernel only); a process gone by `after` left its
    time in its parent's children."""
    spent: dict[str, float] = defaultdict(float)
    for pid, (label, cpu, kernel) in after.items():
        now = kernel if system else cpu
        then = (before[pid][2] if system else before[pid][1]) if pid in before else 0.0
        spent[label] += now - then
    return spent


def platform_roots(platform: Platform) -> dict[str, int]:
    roots = {proc.name: proc.popen.pid for proc in platform.procs}
    assert platform.pg.process is not None and platform.nats.process is not None
    roots["postgres"] = platform.pg.process.pid
    roots["nats-server"] = platform.nats.process.pid
    return roots


# --- PostgreSQL's own counts ---------------------------------------------------------------------

DATABASES = (*SERVICES, "gateway")
# sessions: connections opened, so a pool that churns shows (PostgreSQL 14 and later).
DB_COUNTERS: tuple[str, ...] = ("sessions", "xact_commit", "xact_rollback", "tup_returned")
DB_COUNTERS += ("tup_fetched", "tup_inserted", "tup_updated", "tup_deleted")


def preload_pg_stat_statements(platform: Platform) -> None:
    """Before the first start: the extension must be loaded when the server starts."""
    platform.pg.init()
    auto = platform.pg.data_dir / "postgresql.auto.conf"
    with auto.open("a") as conf:
        conf.write("shared_preload_libraries = 'pg_stat_statements'\n")
        conf.write("pg_stat_statements.track_utility = on\n")


def enable_statements(platform: Platform) -> None:
    """The view lists every database's statements; it only has to exist where it is read."""
    with psycopg.connect(platform.pg.admin_url, autocommit=True) as conn:
        conn.execute("CREATE EXTENSION IF NOT EXISTS pg_stat_statements")


def db_counters(platform: Platform) -> dict[str, dict[str, int]]:
    # Backends flush their statistics at most once a second when idle: wait for the last ones.
    time.sleep(1.5)
    with psycopg.connect(platform.pg.admin_url, autocommit=True) as conn:
        rows = conn.execute(
            f"SELECT datname, {', '.join(DB_COUNTERS)} FROM pg_stat_database"  # noqa: S608 - constant names
            " WHERE datname = ANY(%s)",
            (list(DATABASES),),
        ).fetchall()
    return {row[0]: dict(zip(DB_COUNTERS, row[1:], strict=True)) for row in rows}


def table_scans(platform: Platform) -> dict[tuple[str, str], tuple[int, int]]:
    """(database, table or index) -> (scans, rows they read): a lookup that scans a table, or
    reads a whole merchant's rows through the wrong index, grows with its table, which a short
    run hides in its per-statement times."""
    found: dict[tuple[str, str], tuple[int, int]] = {}
    for db in DATABASES:
        with psycopg.connect(platform.database_urls[db], autocommit=True) as conn:
            for name, scans, rows in conn.execute(
                "SELECT relname, seq_scan, seq_tup_read FROM pg_stat_user_tables UNION ALL"
                " SELECT indexrelname, idx_scan, idx_tup_read FROM pg_stat_user_indexes"
            ).fetchall():
                found[(db, str(name))] = (int(scans or 0), int(rows or 0))
    return found


def reset_statements(platform: Platform) -> None:
    with psycopg.connect(platform.pg.admin_url, autocommit=True) as conn:
        conn.execute("SELECT pg_stat_statements_reset()")


def statements(platform: Platform) -> list[tuple[str, str, int, float]]:
    """(database, normalised query, calls, ms executing in the server) since the last reset."""
    with psycopg.connect(platform.pg.admin_url, autocommit=True) as conn:
        rows = conn.execute(
            "SELECT d.datname, s.query, s.calls, s.total_exec_time FROM pg_stat_statements s"
            " JOIN pg_database d ON d.oid = s.dbid WHERE d.datname = ANY(%s)",
            (list(DATABASES),),
        ).fetchall()
    return [(str(db), str(query), int(calls), float(ms)) for db, query, calls, ms in rows]


def connection_cost(platform: Platform, roots: dict[str, int], count: int = 100) -> float:
    """PostgreSQL's CPU seconds for one new connection (as the gateway's role, one query, then
    closed): what a pool's overflow connection costs the server each time it is opened."""
    pg_only = {"postgres": roots["postgres"]}
    url = platform.database_urls["gateway"]
    before = cpu_snapshot(pg_only)
    for _ in range(count):
        with psycopg.connect(url, autocommit=True) as conn:
            conn.execute("SELECT 1")
    time.sleep(0.2)  # the last backend exits and is reaped
    after = cpu_snapshot(pg_only)
    spent = cpu_delta(before, after)
    spent.pop("load generator (this tool)", None)
    return sum(spent.values()) / count


# --- spans: gRPC calls and statements as the processes see them --------------------------------


class SpanCounter(trace_service_pb2_grpc.TraceServiceServicer):
    """An OTLP receiver that only counts spans by (service, kind, name)."""

    def __init__(self) -> None:
        self.counts: Counter[tuple[str, int, str]] = Counter()

    async def Export(
        self, request: trace_service_pb2.ExportTraceServiceRequest, context: object
    ) -> trace_service_pb2.ExportTraceServiceResponse:
        for resource in request.resource_spans:
            service = next(
                (
                    a.value.string_value
                    for a in resource.resource.attributes
                    if a.key == "service.name"
                ),
                "?",
            )
            for scope in resource.scope_spans:
                for span in scope.spans:
                    self.counts[(service, span.kind, span.name)] += 1
        return trace_service_pb2.ExportTraceServiceResponse()


SPAN_KIND = {1: "internal", 2: "server", 3: "client", 4: "producer", 5: "consumer"}


# --- py-spy ---------------------------------------------------------------------------------------

CATEGORIES = (
    ("own code", ("pos_", "/pos/")),
    ("SQLAlchemy", ("sqlalchemy/",)),
    ("psycopg", ("psycopg",)),
    ("grpc", ("grpc/", "grpc_")),
    ("protobuf", ("google/protobuf",)),
    ("logging/telemetry", ("logging/", "opentelemetry", "prometheus_client")),
    ("asyncio", ("asyncio/", "uvloop", "selectors")),
    ("web (uvicorn/starlette/fastapi/pydantic)", ("uvicorn", "starlette", "fastapi", "pydantic")),
    ("nats", ("nats/",)),
)


def _category(frame: str) -> str:
    location = frame[frame.rfind("(") :]
    for name, marks in CATEGORIES:
        if any(mark in location for mark in marks):
            return name
    return "other (stdlib, json, httptools, …)"


def _own(frame: str) -> bool:
    return _category(frame) == "own code" and "_pb2" not in frame


# py-spy's idle detection misses these (uvloop's loop runs in C, so an idle loop and the C work
# it does, grpc's cython callbacks included, all look like one frame), so they are kept apart.
NOT_PYTHON: dict[str, Callable[[str], bool]] = {
    "no Python frame (native threads)": lambda leaf: leaf == "",
    "event loop in C (uvloop; idle or C callbacks)": lambda leaf: (
        leaf.startswith("Runner.run (asyncio/runners.py") or "(uvloop/" in leaf
    ),
    "threads waiting": lambda leaf: leaf.startswith(("Condition.wait", "Thread.run", "Event.wait")),
}
# Frames every stack has: they say nothing about the step.
ENTRY = ("/__main__.py", "pos_kit/cli.py")


def summarise_py_spy(raw: Path) -> tuple[Counter[str], Counter[str], Counter[str]]:
    """Samples outside Python work (by kind), Python samples by the leaf frame's library, and
    Python samples inside each of the project's own functions (inclusive)."""
    outside: Counter[str] = Counter()
    by_library: Counter[str] = Counter()
    by_step: Counter[str] = Counter()
    if not raw.exists():
        return outside, by_library, by_step
    for line in raw.read_text().splitlines():
        stack, _, count_text = line.rpartition(" ")
        if not count_text.isdigit():
            continue
        count = int(count_text)
        frames = [f for f in stack.split(";") if f and not f.startswith("_run_")]
        leaf = frames[-1] if frames else ""
        kind = next((name for name, test in NOT_PYTHON.items() if test(leaf)), None)
        if kind is not None:
            outside[kind] += count
            continue
        by_library[_category(leaf)] += count
        for frame in {f for f in frames if _own(f) and not any(e in f for e in ENTRY)}:
            by_step[_short(frame)] += count
    return outside, by_library, by_step


def _short(frame: str) -> str:
    """`publish_batch (pos_kit/relay.py:80)` → `pos_kit/relay.py:publish_batch`."""
    name, _, where = frame.partition(" (")
    path = where.rstrip(")").rsplit(":", 1)[0]
    tail = path[path.find("pos_") :] if "pos_" in path else path
    return f"{tail}:{name}"


# --- the run --------------------------------------------------------------------------------------


def _ms(seconds: float, checkouts: int) -> str:
    return f"{seconds * 1000 / checkouts:7.2f}"


def _print_cpu(
    spent: dict[str, float], kernel: dict[str, float], checkouts: int, elapsed: float
) -> None:
    print(f"\nCPU per checkout, ms ({checkouts} checkouts in {elapsed:.1f} s): all, in the kernel")
    total = total_kernel = 0.0
    for label, seconds in sorted(spent.items(), key=lambda kv: -kv[1]):
        if label != "load generator (this tool)":
            total += seconds
            total_kernel += kernel[label]
        print(f"  {label:<42} {_ms(seconds, checkouts)} {_ms(kernel[label], checkouts)}")
    print(
        f"  {'total, platform (without the tool)':<42} {_ms(total, checkouts)}"
        f" {_ms(total_kernel, checkouts)}"
    )
    print(f"  platform CPU used: {total / elapsed:.2f} cores of {os.cpu_count()}")


def _print_db(
    before: dict[str, dict[str, int]], after: dict[str, dict[str, int]], checkouts: int
) -> None:
    print("\nPostgreSQL per checkout (pg_stat_database; includes the relays' idle polls)")
    print(f"  {'database':<10} " + " ".join(f"{c:>13}" for c in DB_COUNTERS))
    for db in DATABASES:
        cells = (f"{(after[db][c] - before[db][c]) / checkouts:13.2f}" for c in DB_COUNTERS)
        print(f"  {db:<10} " + " ".join(cells))


def _print_scans(
    before: dict[tuple[str, str], tuple[int, int]],
    after: dict[tuple[str, str], tuple[int, int]],
    checkouts: int,
) -> None:
    print(
        "\nScans per checkout (pg_stat_user_tables: sequential; pg_stat_user_indexes: by"
        " index), those reading more than 2 rows a checkout"
    )
    for key, (scans, rows) in sorted(after.items()):
        scans0, rows0 = before.get(key, (0, 0))
        read = (rows - rows0) / checkouts
        if read > 2:
            print(
                f"  {key[0]:<10} {key[1]:<28} {(scans - scans0) / checkouts:6.2f} scans"
                f" {read:10.1f} rows"
            )


def _print_statements(rows: list[tuple[str, str, int, float]], checkouts: int) -> None:
    print(
        "\nStatements per checkout (pg_stat_statements; BEGIN/COMMIT/ROLLBACK apart),"
        " with the server's execution time per checkout (ms; commits' WAL flush not included)"
    )
    per_db: dict[str, list[tuple[str, int, float]]] = defaultdict(list)
    for db, query, calls, ms in rows:
        per_db[db].append((query, calls, ms))
    for db in DATABASES:
        queries = per_db.get(db, [])
        control = sum(c for q, c, _ in queries if _is_control(q))
        work = sorted((r for r in queries if not _is_control(r[0])), key=lambda r: -r[1])
        print(
            f"  {db:<10} {sum(r[1] for r in work) / checkouts:6.2f} statements, "
            f"{control / checkouts:6.2f} transaction control, "
            f"{sum(r[2] for r in queries) / checkouts:6.3f} ms executing"
        )
        for query, calls, ms in work:
            if calls / checkouts >= 0.05:
                text = " ".join(query.split())[:100]
                print(f"      {calls / checkouts:6.2f} {ms / checkouts:6.3f} ms  {text}")


def _is_control(query: str) -> bool:
    return query.strip().upper().split(" ")[0] in {"BEGIN", "COMMIT", "ROLLBACK", "SAVEPOINT"}


def _print_spans(counts: Counter[tuple[str, int, str]], checkouts: int) -> None:
    print("\nSpans per checkout (the processes' own OpenTelemetry spans)")
    for (service, kind, name), count in sorted(counts.items()):
        if count / checkouts >= 0.05:
            kind_name = SPAN_KIND.get(kind, str(kind))
            print(f"  {service:<10} {kind_name:<9} {count / checkouts:6.2f}  {name[:90]}")


async def profile(
    platform: Platform,
    key: str,
    total: int,
    concurrency: int,
    py_spy: bool,
    spans: SpanCounter | None,
    receiver_port: int | None,
    flow: str = "register",
) -> None:
    server = None
    if spans is not None:
        server = grpc.aio.server()
        trace_service_pb2_grpc.add_TraceServiceServicer_to_server(spans, server)  # type: ignore[no-untyped-call]
        server.add_insecure_port(f"127.0.0.1:{receiver_port}")
        await server.start()
    enable_statements(platform)
    headers = {"Authorization": f"Bearer {key}"}
    limits = httpx.Limits(max_connections=concurrency)
    async with httpx.AsyncClient(
        base_url=platform.gateway_url, headers=headers, limits=limits, timeout=30
    ) as http:
        one, _ = await (web_pickup(http) if flow == "pickup" else register_checkout(http))
        await _run(40, 4, one)  # warm-up: connections, pools, caches, the known-stock rows
        await asyncio.sleep(2)  # let the warm-up's relays and consumers finish
        analyze(platform)
        roots = platform_roots(platform)
        db_before = db_counters(platform)
        scans_before = table_scans(platform)
        reset_statements(platform)
        if spans is not None:
            await asyncio.sleep(1)  # the warm-up's last span batches
            spans.counts.clear()
        print(f"load average before: {_loadavg()}")
        cpu_before = cpu_snapshot(roots)
        latencies, elapsed = await _run(total, concurrency, one)
        cpu_after = cpu_snapshot(roots)
        print(f"load average after:  {_loadavg()}")
        ordered = sorted(latencies)
        print(
            f"{total / elapsed:.1f} checkouts/s, p50 {ordered[len(ordered) // 2] * 1000:.0f} ms,"
            f" p99 {ordered[max(0, int(len(ordered) * 0.99) - 1)] * 1000:.0f} ms"
            f" ({concurrency} concurrent)"
        )
        _print_cpu(
            cpu_delta(cpu_before, cpu_after),
            cpu_delta(cpu_before, cpu_after, system=True),
            total,
            elapsed,
        )
        _print_db(db_before, db_counters(platform), total)
        _print_statements(statements(platform), total)
        _print_scans(scans_before, table_scans(platform), total)
        if spans is not None:
            await asyncio.sleep(1)  # the last span batches (OTEL_BSP_SCHEDULE_DELAY is short)
            _print_spans(spans.counts, total)
        per_connection = connection_cost(platform, roots)
        print(
            f"\nOne new PostgreSQL connection (connect, SELECT 1, close):"
            f" {per_connection * 1000:.2f}"
            " ms of the server's CPU"
        )
        if py_spy:
            await _sampled(platform, one, total, concurrency)
    if server is not None:
        await server.stop(None)


async def _sampled(platform: Platform, one: object, total: int, concurrency: int) -> None:
    """A second batch with py-spy attached to every Python process (it costs CPU itself, so the
    figures above come from the batch without it)."""
    binary = shutil.which("py-spy") or str(Path(sys.executable).parent / "py-spy")
    folder = Path(tempfile.mkdtemp(prefix="omnitill-py-spy-"))
    rate = 200
    samplers: dict[str, subprocess.Popen[bytes]] = {}
    for proc in platform.procs:
        command = [binary, "record", "--pid", str(proc.popen.pid), "--rate", str(rate)]
        command += [
            "--format",
            "raw",
            "--nonblocking",
            "--output",
            str(folder / f"{proc.name}.txt"),
        ]
        samplers[proc.name] = subprocess.Popen(  # noqa: ASYNC220 - started, never waited on here
            command,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
        )
    await asyncio.sleep(1)  # py-spy attaches
    _, elapsed = await _run(total, concurrency, one)
    for sampler in samplers.values():
        sampler.send_signal(signal.SIGINT)  # py-spy writes its file on Ctrl-C
    for name, sampler in samplers.items():
        _, err = sampler.communicate(timeout=60)
        if sampler.returncode not in (0, -signal.SIGINT):
            print(f"  py-spy on {name}: {err.decode(errors='replace')[-500:]}")
    print(
        f"\npy-spy, {rate} samples/s, non-idle samples only, {total} more checkouts in"
        f" {elapsed:.1f} s (raw stacks in {folder})"
    )
    for name in (*SERVICES, "gateway"):
        outside, by_library, by_step = summarise_py_spy(folder / f"{name}.txt")
        count = sum(by_library.values())
        if count == 0:
            print(f"  {name}: no samples")
            continue
        per = 1000 / rate / total
        print(f"  {name}: {count * per:.2f} ms of sampled Python work per checkout; apart:")
        print("    " + ", ".join(f"{k} {n * per:.2f} ms" for k, n in outside.most_common()))
        libs = ", ".join(f"{lib} {n * 100 / count:.0f}%" for lib, n in by_library.most_common())
        print(f"    by library (leaf frame): {libs}")
        for step, n in by_step.most_common(14):
            print(f"    {n * 100 / count:5.1f}%  {step}")


def _loadavg() -> str:
    return " ".join(Path("/proc/loadavg").read_text().split()[:3])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--requests", type=int, default=600)
    parser.add_argument("--concurrency", type=int, default=16)
    parser.add_argument("--py-spy", action="store_true", help="sample every Python process")
    parser.add_argument("--spans", action="store_true", help="count gRPC calls and SQL spans")
    parser.add_argument(
        "--flow",
        choices=["register", "pickup"],
        default="register",
        help="register checkouts, or web orders with pickup (create, card tender, confirm:"
        " figures are per order)",
    )
    args = parser.parse_args()
    spans = SpanCounter() if args.spans else None
    receiver_port = free_port() if args.spans else None
    env_extra = None
    if args.spans:
        env_extra = {
            "OTEL_EXPORTER_OTLP_ENDPOINT": f"http://127.0.0.1:{receiver_port}",
            "OTEL_BSP_SCHEDULE_DELAY": "200",
            "OTEL_BSP_MAX_QUEUE_SIZE": "100000",
        }
    on_platform(
        f"checkout profile: {args.requests}"
        f" {'web orders with pickup' if args.flow == 'pickup' else 'register checkouts'}"
        f" through the gateway, 2 lines, card, {args.concurrency} concurrent"
        f"{', tracing on' if args.spans else ''}",
        lambda platform, key: profile(
            platform,
            key,
            args.requests,
            args.concurrency,
            args.py_spy,
            spans,
            receiver_port,
            args.flow,
        ),
        prepare=preload_pg_stat_statements,
        env_extra=env_extra,
    )


if __name__ == "__main__":
    main()
