"""pytest fixtures: real PostgreSQL and NATS JetStream for every test that needs them.

By default they are started from the wheels in a temporary folder, once per test session. Set
OMNITILL_TEST_DATABASE_URL (an admin URL) and OMNITILL_TEST_NATS_URL to use servers of your own.
"""

from __future__ import annotations

import asyncio
import importlib
import itertools
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

import grpc
import httpx
import psycopg
import pytest
import pytest_asyncio
from psycopg import sql

from pos_devstack.natsd import LocalNats, free_port
from pos_devstack.platform import SERVICES, Platform, Ports
from pos_devstack.postgres import LocalPostgres
from pos_kit import migrate as kit_migrate

if TYPE_CHECKING:
    from pos_kit.events import OutgoingEvent

_counter = itertools.count(1)


# Card numbers the networks publish for testing: Visa (16 and 13 digits), Mastercard (5- and
# 2-series), Amex, Discover, Diners (14), JCB, UnionPay (16 and 19). Tests plant them where card
# data must never be accepted.
TEST_CARD_NUMBERS = (
    "4242424242424242",
    "4222222222222",
    "5555555555554444",
    "2223003122003222",
    "378282246310005",
    "6011111111111117",
    "30569309025904",
    "3566002020360505",
    "6250941006528599",
    "6205500000000000004",
)


async def until(predicate: Callable[[], bool], limit: float = 20.0) -> None:
    """Wait for something a background task will make true; fail past `limit` seconds."""
    deadline = time.monotonic() + limit
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError("condition not met before the deadline")
        await asyncio.sleep(0.02)


T = TypeVar("T")


async def polled(
    read: Callable[[], Awaitable[T]], done: Callable[[T], bool] = bool, limit: float = 20.0
) -> T:
    """`read()` asked again every 50 ms until `done` says its answer is complete, or `limit`
    seconds have passed: the last answer either way, for the test to assert on (a miss then
    fails showing what was read).

    For what a background task or a change feed shows a moment after a write: a feed stops at
    the start of the oldest transaction still open in its database (pos_kit/changes.py; the
    outbox relay's, a consumer's, a sweeper's), so a change just committed may be missing from
    it, and may be missing again from a later read (a transaction begun earlier that writes
    only now holds the feed back to its start). Read a feed through this every time it must
    show something: it then shows a prefix of the changes, complete once that one ends."""
    deadline = time.monotonic() + limit
    while True:
        value = await read()
        if done(value) or time.monotonic() > deadline:
            return value
        await asyncio.sleep(0.05)


@dataclass
class Running:
    platform: Platform
    http: httpx.Client  # authenticated as the sandbox merchant
    key: str

    def new_merchant(self, name: str) -> httpx.Client:
        out = subprocess.run(
            [sys.executable, "-m", "pos_gateway", "create-merchant", name],
            env=self.platform.env_for("gateway"),
            check=True,
            capture_output=True,
        )
        key = json.loads(out.stdout)["api_key"]
        return httpx.Client(
            base_url=self.platform.gateway_url,
            headers={"Authorization": f"Bearer {key}"},
            timeout=15.0,
        )


class Infra:
    def __init__(self, admin_url: str, nats_url: str, root: Path) -> None:
        self.admin_url = admin_url
        self.nats_url = nats_url
        self.root = root
        # Servers started for single tests; each is stopped when its test ends, pass or fail.
        self.servers: list[LocalNats] = []

    def create_database(self, name: str) -> str:
        """A fresh, empty database with its own role; returns its postgresql:// URL."""
        unique = f"{name}_{os.getpid()}_{next(_counter)}".lower()
        password = "test-" + unique
        with psycopg.connect(self.admin_url, autocommit=True) as conn:
            conn.execute(
                sql.SQL("CREATE ROLE {} LOGIN PASSWORD {}").format(
                    sql.Identifier(unique), sql.Literal(password)
                )
            )
            conn.execute(
                sql.SQL("CREATE DATABASE {} OWNER {}").format(
                    sql.Identifier(unique), sql.Identifier(unique)
                )
            )
        host = psycopg.conninfo.conninfo_to_dict(self.admin_url)
        return (
            f"postgresql://{unique}:{password}@{host.get('host', '127.0.0.1')}:"
            f"{host.get('port', 5432)}/{unique}"
        )

    def service_database(self, service: str) -> str:
        """A fresh database with the service's migrations applied."""
        url = self.create_database(service)
        package = importlib.import_module(f"pos_{service}")
        migrations = Path(package.__file__ or "").parent / "migrations"
        kit_migrate.upgrade(migrations, url)
        return url

    def new_nats(self) -> LocalNats:
        """A NATS server of the test's own, for tests that stop and restart it."""
        server = LocalNats(Path(tempfile.mkdtemp(dir=self.root)) / "nats", free_port())
        self.servers.append(server)
        server.start()
        return server

    def stop_servers(self) -> None:
        while self.servers:
            self.servers.pop().stop()


@pytest.fixture(scope="session")
def infra() -> Iterator[Infra]:
    root = Path(tempfile.mkdtemp(prefix="omnitill-test-"))
    admin = os.environ.get("OMNITILL_TEST_DATABASE_URL")
    nats_url = os.environ.get("OMNITILL_TEST_NATS_URL")
    pg = nats = None
    try:
        if not admin:
            pg = LocalPostgres(root / "pg", free_port(), disposable=True)
            pg.start()
            admin = pg.admin_url
        if not nats_url:
            nats = LocalNats(root / "nats", free_port())
            nats.start()
            nats_url = nats.url
        made = Infra(admin, nats_url, root)
        try:
            yield made
        finally:
            made.stop_servers()
    finally:
        if nats is not None:
            nats.stop()
        if pg is not None:
            pg.stop()
        shutil.rmtree(root, ignore_errors=True)


@pytest.fixture(autouse=True)
def _stop_servers_the_test_started(request: pytest.FixtureRequest) -> Iterator[None]:
    """A server started during a test (by it or its function-scoped fixtures) with
    `infra.new_nats()` ends with the test, also when it fails. Servers of wider-scoped fixtures,
    already running when the test starts, live as long as their fixture."""
    if "infra" not in request.fixturenames:
        yield
        return
    infra: Infra = request.getfixturevalue("infra")
    running = list(infra.servers)
    yield
    for server in [s for s in infra.servers if not any(s is r for r in running)]:
        infra.servers.remove(server)
        server.stop()


@dataclass
class Bus:
    """A NATS of the test's own, and a database holding the kit's tables (the customer
    service's schema: any service's would do), for tests of consumers and the relay."""

    js: Any
    engine: Any
    nats_url: str


@pytest_asyncio.fixture(loop_scope="session")
async def bus(infra: Infra) -> AsyncIterator[Bus]:
    import nats

    from pos_kit.db import make_engine

    server = infra.new_nats()
    engine = make_engine(infra.service_database("customer"))
    nc = await nats.connect(server.url)
    try:
        yield Bus(nc.jetstream(), engine, server.url)
    finally:
        await nc.close()
        await engine.dispose()
        server.stop()


async def publish_as_relay(nats_url: str, message: Any, merchant: str) -> str:
    """An integration event published as a service's outbox relay publishes it (its stream made
    if missing); answers its event id."""
    from pos_kit.events import make_event

    return await publish_made_event(nats_url, make_event(message, merchant))


async def publish_made_event(nats_url: str, event: OutgoingEvent) -> str:
    """An event made once (`pos_kit.events.make_event`) published as a relay publishes an
    outbox row: a test that retries a publish that failed (NATS going away under it) retries
    this one event, as the relay does, so it is taken once even when the failed attempt was
    stored; a new event each attempt would be a second event. Answers its event id."""
    import nats

    from pos_kit.events import EVENT_ID_HEADER, EVENT_TYPE_HEADER, MERCHANT_HEADER
    from pos_kit.streams import ensure_service_streams

    merchant = event.merchant_id
    nc = await nats.connect(nats_url)
    try:
        js = nc.jetstream()
        await ensure_service_streams(js, event.subject.split(".")[1])
        await js.publish(
            event.subject,
            event.payload,
            headers={
                "Nats-Msg-Id": event.event_id,
                EVENT_ID_HEADER: event.event_id,
                EVENT_TYPE_HEADER: event.event_type,
                MERCHANT_HEADER: merchant,
            },
        )
    finally:
        await nc.close()
    return event.event_id


@dataclass
class InProcessService:
    """A service built by its own bootstrap and serving on a free port in the test's loop."""

    channel: grpc.aio.Channel
    runtime: Any
    database_url: str
    port: int


@asynccontextmanager
async def serve_in_process(
    service: str, infra: Infra, nats_url: str | None = None, **settings: Any
) -> AsyncIterator[InProcessService]:
    bootstrap = importlib.import_module(f"pos_{service}.bootstrap")
    url = infra.service_database(service)
    config = bootstrap.Settings(
        database_url=url,
        nats_url=nats_url or infra.nats_url,
        grpc_host="127.0.0.1",
        grpc_port=0,
        **settings,
    )
    runtime, server = bootstrap.build(config)
    await server.start(runtime.tasks())
    channel = grpc.aio.insecure_channel(f"127.0.0.1:{server.port}")
    try:
        yield InProcessService(channel, runtime, url, server.port)
    finally:
        await channel.close()
        await server.stop()
        await runtime.close()


@pytest.fixture(scope="session")
def platform() -> Iterator[Running]:
    """The whole platform as separate processes, as `make up` runs it, on free ports."""
    home = Path(tempfile.mkdtemp(prefix="omnitill-e2e-"))
    ports = Ports(
        postgres=free_port(),
        nats=free_port(),
        gateway=free_port(),
        services={s: free_port() for s in SERVICES},
        deliverer=free_port(),
    )
    lines: list[str] = []
    # Tests share one sandbox key; a limit sized for one partner would make them race it.
    limits = {"RATE_LIMIT_PER_SECOND": "5000", "RATE_LIMIT_BURST": "10000",
              # A card answer lost (the sandbox's tok_timeout) is looked up after 15 s, not a
              # minute: a test that waits for it waits that long. Still far beyond any
              # answered call's time under the suite's load, so no call in flight is looked
              # up before its own request records it.
              "RECONCILE_AFTER_SECONDS": "15"}  # fmt: skip
    running = Platform(home, ports, say=lines.append, env_extra=limits, disposable=True)
    try:
        running.start_infrastructure()
        running.start_services()
        key = running.sandbox_key()
        with httpx.Client(
            base_url=running.gateway_url,
            headers={"Authorization": f"Bearer {key}"},
            timeout=15.0,
        ) as http:
            yield Running(running, http, key)
    finally:
        running.stop()
        shutil.rmtree(home, ignore_errors=True)  # its databases, streams and logs
