"""The whole platform on one machine: PostgreSQL, NATS, five services, the dispatcher and the
gateway.

Each service and the gateway run as separate processes configured only through environment
variables, exactly as containers and Kubernetes run them; this module only plays operator.
"""

from __future__ import annotations

import fcntl
import json
import os
import secrets
import shutil
import subprocess
import sys
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO

import grpc
import httpx
import psycopg
from grpc_health.v1 import health_pb2, health_pb2_grpc

from pos_devstack.natsd import LocalNats
from pos_devstack.postgres import LocalPostgres
from pos_devstack.procs import Interrupted, PortInUse, check_port_free, port_is_free
from pos_kit import migrate as kit_migrate

# The gRPC processes, each with its own database; the dispatcher (event feed and webhooks)
# serves the gateway like the five domain services do.
SERVICES = ("inventory", "promotion", "customer", "payment", "order", "dispatcher")
# The dispatcher runs as two processes, each with a core of its own at a busy time: `dispatcher`
# ingests the streams into the feed (and serves the gateway), `dispatcher-deliver` sends the
# webhooks (services/dispatcher/README.md, DISPATCHER_ROLE).
DELIVERER = "dispatcher-deliver"
PROCESSES = (*SERVICES, DELIVERER)
# A crashed process is restarted after 1, 2, 4 … seconds, at most MAX_BACKOFF apart; one that
# then stays up for STABLE_AFTER seconds starts again from the shortest wait.
FIRST_BACKOFF = 1.0
MAX_BACKOFF = 30.0
STABLE_AFTER = 60.0
# Settings the platform's processes take from the environment that starts them, to compare two
# ways of running: GC_FREEZE=0 (pos_kit.heap), SQL_DIRECT=0 (pos_kit.db).
PASSED_THROUGH = ("GC_FREEZE", "SQL_DIRECT", "DATABASE_POOL_SIZE", "DATABASE_POOL_OVERFLOW")
# What `make up` listens on, each port from the environment when set there (README.md): the
# services take OMNITILL_SERVICE_PORT_BASE and the next ones, in the order of PROCESSES.
POSTGRES_PORT_VAR = "OMNITILL_POSTGRES_PORT"
NATS_PORT_VAR = "OMNITILL_NATS_PORT"
GATEWAY_PORT_VAR = "OMNITILL_GATEWAY_PORT"
SERVICE_PORT_BASE_VAR = "OMNITILL_SERVICE_PORT_BASE"
SERVICE_PORT_BASE = 50061
# The names the supervisor gives the two servers under the services.
POSTGRES = "PostgreSQL"
NATS = "nats-server"


@dataclass
class Ports:
    postgres: int = 54329
    nats: int = 54222
    gateway: int = 8080
    services: dict[str, int] = field(
        default_factory=lambda: {s: SERVICE_PORT_BASE + i for i, s in enumerate(SERVICES)}
    )
    # The delivering dispatcher's gRPC port (its health answers there).
    deliverer: int = SERVICE_PORT_BASE + len(SERVICES)

    @classmethod
    def from_env(cls, environ: Mapping[str, str]) -> Ports:
        """The defaults, each replaced by its variable where `environ` sets it (ValueError,
        naming the variable, for a value that is not a usable port)."""
        defaults = cls()

        def read(name: str, default: int, count: int = 1) -> int:
            raw = environ.get(name, "").strip()
            if not raw:
                return default
            highest = 65535 - (count - 1)
            if not raw.isdigit() or not 1 <= int(raw) <= highest:
                raise ValueError(f"{name}={raw!r}: not a port number from 1 to {highest}")
            return int(raw)

        base = read(SERVICE_PORT_BASE_VAR, SERVICE_PORT_BASE, len(PROCESSES))
        ports = cls(
            postgres=read(POSTGRES_PORT_VAR, defaults.postgres),
            nats=read(NATS_PORT_VAR, defaults.nats),
            gateway=read(GATEWAY_PORT_VAR, defaults.gateway),
            services={s: base + i for i, s in enumerate(SERVICES)},
            deliverer=base + len(SERVICES),
        )
        seen: dict[int, str] = {}
        for what, port, variable in ports.listed():
            if port in seen:
                raise ValueError(f"{variable}: port {port} is also {seen[port]}'s")
            seen[port] = what
        return ports

    def listed(self) -> list[tuple[str, int, str]]:
        """(what listens, its port, the variable that sets it), in the order of start-up."""
        return [
            ("PostgreSQL", self.postgres, POSTGRES_PORT_VAR),
            ("NATS", self.nats, NATS_PORT_VAR),
            *((f"the {s} service", self.services[s], SERVICE_PORT_BASE_VAR) for s in SERVICES),
            (DELIVERER, self.deliverer, SERVICE_PORT_BASE_VAR),
            ("the gateway", self.gateway, GATEWAY_PORT_VAR),
        ]

    def hint(self, port: int) -> str:
        """What to do instead when `port` is taken: the variable that moves it."""
        variable = next((v for _, p, v in self.listed() if p == port), GATEWAY_PORT_VAR)
        if variable == SERVICE_PORT_BASE_VAR:
            return (
                f"`make up {variable}=N` puts the services on N to N+{len(PROCESSES) - 1} "
                "(README.md, `make up`)"
            )
        return f"`make up {variable}=N` (README.md, `make up`)"


@dataclass
class Proc:
    name: str
    popen: subprocess.Popen[bytes]
    log: Path
    started: float = field(default_factory=time.monotonic)
    backoff: float = FIRST_BACKOFF
    restart_at: float | None = None  # set while the process is down and waiting to restart


class Platform:
    def __init__(
        self,
        home: Path,
        ports: Ports | None = None,
        say: Callable[[str], None] = print,
        env_extra: dict[str, str] | None = None,
        disposable: bool = False,
    ) -> None:
        self.home = home.resolve()
        self.ports = ports or Ports()
        self.say = say
        self.env_extra = env_extra or {}
        # A disposable platform (tests) keeps its data only as long as it runs.
        self.pg = LocalPostgres(
            self.home / "postgres",
            self.ports.postgres,
            self.home / "logs" / "postgres.log",
            disposable=disposable,
        )
        self.nats = LocalNats(self.home / "nats", self.ports.nats, self.home / "logs" / "nats.log")
        self.procs: list[Proc] = []
        # PostgreSQL and NATS, watched by supervise() as the services are.
        self.servers: list[Proc] = []
        self.database_urls: dict[str, str] = {}
        # Set (by a signal handler) to stop start-up at its next step or wait: Interrupted.
        self.stop_requested = False
        self._lock: IO[str] | None = None

    # --- lifecycle ----------------------------------------------------------------------------

    @property
    def gateway_url(self) -> str:
        return f"http://127.0.0.1:{self.ports.gateway}"

    def _secrets(self) -> dict[str, str]:
        path = self.home / "secrets.json"
        data: dict[str, str] = json.loads(path.read_text()) if path.exists() else {}
        wanted = {name: 18 for name in (*SERVICES, "gateway")}
        wanted.update(
            gateway_secret_key=32,
            platform_admin_token=32,
            token_signing_key=32,
            dispatcher_secret_key=32,
            gift_card_code_key=32,
            coupon_code_key=32,
            code_fingerprint_key=32,
        )
        missing = {k: secrets.token_urlsafe(n) for k, n in wanted.items() if k not in data}
        if not missing:
            return data
        data.update(missing)
        path.write_text(json.dumps(data))
        path.chmod(0o600)
        return data

    def _checkpoint(self) -> None:
        if self.stop_requested:
            raise Interrupted("start-up stopped")

    def _take_home(self) -> None:
        """One platform per home: a second would stop the first one's servers as leftovers."""
        handle = (self.home / "platform.lock").open("w")
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            handle.close()
            raise RuntimeError(
                f"another platform is already running with its data in {self.home}: stop it "
                "first (Ctrl-C where it runs), or give this one a home of its own "
                "(OMNITILL_HOME) and ports of its own (README.md, `make up`)"
            ) from None
        self._lock = handle

    def check_ports(self) -> None:
        """PortInUse, naming every port already taken and how to choose another, before
        anything is started: never a server of someone else's taken for ours."""
        taken: dict[str, list[tuple[str, int]]] = {}
        for what, port, variable in self.ports.listed():
            if not port_is_free(port):
                taken.setdefault(variable, []).append((what, port))
        lines = []
        for held in taken.values():
            ports = ", ".join(str(port) for _, port in held)
            whats = ", ".join(what for what, _ in held)
            verb = "is" if len(held) == 1 else "are"
            lines.append(
                f"  port{'s' if len(held) > 1 else ''} {ports} (for {whats}) {verb} in use; "
                + self.ports.hint(held[0][1])
            )
        if lines:
            raise PortInUse(
                "ports on 127.0.0.1 this platform needs are in use by another process "
                "(another Omnitill platform, or another program); nothing was started. Stop "
                "that process, or choose other ports:\n" + "\n".join(lines)
            )

    def start_infrastructure(self) -> None:
        self.home.mkdir(parents=True, exist_ok=True)
        (self.home / "logs").mkdir(exist_ok=True)
        self._take_home()
        # Servers a platform of this home left running when it was killed hard are stopped
        # first: their ports are then free again.
        self.pg.stop_leftover()
        self.nats.stop_leftover()
        self.check_ports()
        self.say(f"  starting PostgreSQL on 127.0.0.1:{self.ports.postgres} …")
        self._start_server(POSTGRES)
        self.say("  ✓ PostgreSQL ready")
        self._checkpoint()
        self.say(f"  starting NATS JetStream on 127.0.0.1:{self.ports.nats} …")
        self._start_server(NATS)
        self.say("  ✓ NATS ready")
        creds = self._secrets()
        for name in (*SERVICES, "gateway"):
            self._checkpoint()
            self.database_urls[name] = self.pg.create_database(name, name, creds[name])
        self.say("  migrating databases …")
        for name in (*SERVICES, "gateway"):
            self._checkpoint()
            package = __import__(f"pos_{name}")
            kit_migrate.upgrade(
                Path(package.__file__ or "").parent / "migrations", self.database_urls[name]
            )
        self.say("  ✓ a database and role per service, migrated")

    def _start_server(self, name: str, timeout: float = 60.0) -> Proc:
        """Start PostgreSQL or NATS (only on a free port, and ready only once it is ours that
        answers), and watch it from then on."""
        abort = lambda: self.stop_requested  # noqa: E731
        if name == POSTGRES:
            self.pg.start(timeout, abort, self.ports.hint(self.ports.postgres))
            assert self.pg.process is not None
            popen, log = self.pg.process, self.pg.log_file
        else:
            self.nats.start(timeout, abort, self.ports.hint(self.ports.nats))
            assert self.nats.process is not None
            popen, log = self.nats.process, self.nats.log_file
        self.servers = [s for s in self.servers if s.name != name]
        server = Proc(name, popen, log)
        self.servers.append(server)
        return server

    def env_for(self, name: str) -> dict[str, str]:
        if name == DELIVERER:
            env = self.env_for("dispatcher")
            env.update(GRPC_PORT=str(self.ports.deliverer), DISPATCHER_ROLE="deliver")
            return env
        env = {
            "PATH": os.environ.get("PATH", ""),
            "HOME": os.environ.get("HOME", str(self.home)),
            **{k: os.environ[k] for k in PASSED_THROUGH if k in os.environ},
            "OMNITILL_ENV": "development",
            "DATABASE_URL": self.database_urls[name],
            "NATS_URL": self.nats.url,
            "LOG_LEVEL": "INFO",
            **{f"{s.upper()}_ADDR": f"127.0.0.1:{self.ports.services[s]}" for s in SERVICES},
        }
        if name == "gateway":
            env.update(
                HTTP_HOST="127.0.0.1",
                HTTP_PORT=str(self.ports.gateway),
                GATEWAY_SECRET_KEY=self._secrets()["gateway_secret_key"],
                PLATFORM_ADMIN_TOKEN=self._secrets()["platform_admin_token"],
                TOKEN_SIGNING_KEYS=self._secrets()["token_signing_key"],
            )
        else:
            env.update(GRPC_HOST="127.0.0.1", GRPC_PORT=str(self.ports.services[name]))
        if name == "payment":
            # The sandbox voids uncaptured authorisations after an hour, not 7 days, so an
            # integrator sees the expiry path the same day (a merchant may set its own).
            env.update(AUTHORIZATION_WINDOW_SECONDS="3600")
            # This home's own key of the gift card codes' hashes, kept with its data.
            env.update(GIFT_CARD_CODE_KEY=self._secrets()["gift_card_code_key"])
        if name == "promotion":
            # This home's own key of the coupon codes' hashes, kept with its data.
            env.update(COUPON_CODE_KEY=self._secrets()["coupon_code_key"])
        if name == "order":
            # This home's own key of the codes in the stored request fingerprints.
            env.update(CODE_FINGERPRINT_KEY=self._secrets()["code_fingerprint_key"])
        if name == "dispatcher":
            env.update(
                DISPATCHER_SECRET_KEYS=self._secrets()["dispatcher_secret_key"],
                # The sandbox: a developer receives webhooks on their own laptop.
                WEBHOOK_ALLOW_PRIVATE_NETWORKS="true",
                DISPATCHER_ROLE="ingest",
            )
        env.update(self.env_extra)
        return env

    def supervise(self, now: float | None = None) -> list[str]:
        """Restart crashed processes with backoff, instead of stopping the whole platform.

        Called over and over by `make up`; returns what it did, one line per event, so the
        operator sees every crash and restart.
        """
        now = time.monotonic() if now is None else now
        said: list[str] = []
        for proc in [*self.servers, *self.procs]:
            code = proc.popen.poll()
            if code is None:
                continue
            if proc.restart_at is None:
                up_for = now - proc.started
                wait = FIRST_BACKOFF if up_for >= STABLE_AFTER else proc.backoff
                proc.restart_at = now + wait
                said.append(
                    f"  !! {proc.name} exited (code {code}) after {up_for:.0f} s; "
                    f"restarting in {wait:.0f} s (log: {proc.log})"
                )
                proc.backoff = min(wait * 2, MAX_BACKOFF)
            elif now >= proc.restart_at:
                try:
                    again = self._restart(proc)
                except (OSError, RuntimeError, psycopg.Error) as exc:
                    # Its port taken meanwhile, say: tried again after the next wait.
                    wait = proc.backoff
                    proc.restart_at = now + wait
                    proc.backoff = min(wait * 2, MAX_BACKOFF)
                    said.append(
                        f"  !! {proc.name} did not start again ({exc}); "
                        f"trying again in {wait:.0f} s (log: {proc.log})"
                    )
                    continue
                again.backoff = proc.backoff
                said.append(f"  ↻ {proc.name} restarted (pid {again.popen.pid})")
        return said

    def _restart(self, proc: Proc) -> Proc:
        if proc in self.servers:
            # NATS keeps its streams on disk in the home, PostgreSQL its databases: the
            # services' clients reconnect to the same data.
            return self._start_server(proc.name, timeout=30.0)
        self.procs.remove(proc)
        return self.spawn(proc.name)

    def port_of(self, name: str) -> int:
        if name == "gateway":
            return self.ports.gateway
        return self.ports.deliverer if name == DELIVERER else self.ports.services[name]

    def spawn(self, name: str) -> Proc:
        """Start a service or the gateway: only on a free port (a gRPC server shares a port
        another holds, so another's health would answer for it), else PortInUse."""
        port = self.port_of(name)
        check_port_free(port, name, self.ports.hint(port))
        log = self.home / "logs" / f"{name}.log"
        module = "pos_dispatcher" if name == DELIVERER else f"pos_{name}"
        with log.open("ab") as handle:
            popen = subprocess.Popen(
                [sys.executable, "-m", module, "serve"],
                env=self.env_for(name),
                stdout=handle,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        proc = Proc(name, popen, log)
        self.procs.append(proc)
        return proc

    def start_services(self, timeout: float = 60.0) -> None:
        for name in SERVICES:
            self._checkpoint()
            self.say(f"  starting {name} service on 127.0.0.1:{self.ports.services[name]} …")
            self.spawn(name)
        self.say(f"  starting {DELIVERER} on 127.0.0.1:{self.ports.deliverer} …")
        self.spawn(DELIVERER)
        for name in PROCESSES:
            self._wait_grpc(name, timeout)
            self.say(f"  ✓ {name} serving")
        self._checkpoint()
        self.say(f"  starting gateway on {self.gateway_url} …")
        self.spawn("gateway")
        self._wait_http(timeout)
        self.say("  ✓ gateway ready")

    def _check_alive(self) -> None:
        self._checkpoint()
        for proc in self.procs:
            if proc.popen.poll() is not None:
                tail = proc.log.read_text(errors="replace")[-2000:]
                raise RuntimeError(f"{proc.name} exited (code {proc.popen.returncode}):\n{tail}")

    def _wait_grpc(self, name: str, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        target = f"127.0.0.1:{self.port_of(name)}"
        with grpc.insecure_channel(target) as channel:
            stub = health_pb2_grpc.HealthStub(channel)
            while True:
                self._check_alive()
                try:
                    answer = stub.Check(health_pb2.HealthCheckRequest(), timeout=1.0)
                    if answer.status == health_pb2.HealthCheckResponse.SERVING:
                        return
                except grpc.RpcError:
                    pass
                if time.monotonic() > deadline:
                    raise TimeoutError(f"{name} did not become healthy")
                time.sleep(0.1)

    def _wait_http(self, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while True:
            self._check_alive()
            try:
                if httpx.get(self.gateway_url + "/readyz", timeout=2.0).status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            if time.monotonic() > deadline:
                raise TimeoutError("the gateway did not become ready")
            time.sleep(0.1)

    def stop_process(self, name: str, timeout: float = 20.0) -> None:
        for proc in [p for p in self.procs if p.name == name]:
            _terminate(proc.popen, timeout)
            self.procs.remove(proc)

    def restart_process(self, name: str, timeout: float = 60.0) -> None:
        """Start a stopped service again and wait until the gateway reaches it too (its channel
        reconnects with backoff, so the service answering is not yet enough)."""
        self.spawn(name)
        self.wait_reachable(name, timeout)

    def wait_reachable(self, name: str, timeout: float = 60.0) -> None:
        """Wait until a service answers its health check and the gateway reaches it again."""
        self._wait_grpc(name, timeout)
        deadline = time.monotonic() + timeout
        while True:
            try:
                checks = httpx.get(self.gateway_url + "/readyz", timeout=2.0).json()["checks"]
                if checks.get(name) == "ok":
                    return
            except (httpx.HTTPError, ValueError, KeyError):
                pass
            if time.monotonic() > deadline:
                raise TimeoutError(f"the gateway does not reach {name} again")
            time.sleep(0.1)

    def stop(self) -> None:
        # All asked at once, then awaited: each takes a second or two to drain, and nothing
        # depends on another still running while it stops.
        for proc in self.procs:
            if proc.popen.poll() is None:
                proc.popen.terminate()
        for proc in reversed(self.procs):
            _wait_or_kill(proc.popen, 20.0)
        self.procs.clear()
        self.servers.clear()
        self.nats.stop()
        self.pg.stop()
        if self._lock is not None:
            self._lock.close()
            self._lock = None

    # --- the sandbox merchant -----------------------------------------------------------------

    def sandbox_key(self) -> str:
        """The demo merchant's key: created (with demo data) on first start, then reused."""
        key_file = self.home / "sandbox-key"
        if key_file.exists():
            return key_file.read_text().strip()
        self._checkpoint()
        out = subprocess.run(
            [sys.executable, "-m", "pos_gateway", "create-merchant", "Demo Store"],
            env=self.env_for("gateway"),
            check=True,
            capture_output=True,
        )
        key = str(json.loads(out.stdout)["api_key"])
        seed_demo_data(self.gateway_url, key)
        key_file.write_text(key + "\n")
        key_file.chmod(0o600)
        return key


def _terminate(popen: subprocess.Popen[bytes], timeout: float) -> None:
    if popen.poll() is not None:
        return
    popen.terminate()
    _wait_or_kill(popen, timeout)


def _wait_or_kill(popen: subprocess.Popen[bytes], timeout: float) -> None:
    try:
        popen.wait(timeout)
    except subprocess.TimeoutExpired:
        popen.kill()
        popen.wait()


def seed_demo_data(base_url: str, key: str) -> dict[str, str]:
    """A few locations, products, stock, a promotion and a customer, made through the API."""
    headers = {"Authorization": f"Bearer {key}"}
    ids: dict[str, str] = {}
    with httpx.Client(base_url=base_url, headers=headers, timeout=10.0) as http:

        def post(path: str, body: dict[str, object], idem: str) -> dict[str, object]:
            answer = http.post(path, json=body, headers={"Idempotency-Key": f"seed-{idem}"})
            answer.raise_for_status()
            result: dict[str, object] = answer.json()
            return result

        for slug, name, tax in (
            ("downtown", "Downtown Store", 825),
            ("harbor", "Harbor Store", 700),
        ):
            body = {"name": name, "currency": "USD", "tax_rate_bps": tax,
                    "pickup_enabled": True, "ship_enabled": True}  # fmt: skip
            loc = post("/v1/locations", body, slug)
            ids[slug] = str(loc["id"])
        products = (
            ("TEE-BLK-M", "Black T-shirt (M)", 2500),
            ("MUG-LOGO", "Logo mug", 1200),
            ("CAP-NAVY", "Navy cap", 1800),
            ("SOCKS-3PK", "Socks, 3 pack", 999),
        )
        for sku, name, price in products:
            post(
                "/v1/products",
                {"sku": sku, "name": name, "price": {"amount": price, "currency": "USD"}},
                sku,
            )
            for slug in ("downtown", "harbor"):
                post(
                    "/v1/inventory/adjustments",
                    {"sku": sku, "location_id": ids[slug], "delta": 50, "reason": "received"},
                    f"{sku}-{slug}",
                )
        post(
            "/v1/promotions",
            {
                "name": "10% off orders over $50",
                "percent_off_bps": 1000,
                "minimum_subtotal": {"amount": 5000, "currency": "USD"},
            },
            "promo",
        )
        cus = post(
            "/v1/customers",
            {"email": "ada@example.com", "given_name": "Ada", "family_name": "Lovelace"},
            "ada",
        )
        ids["customer"] = str(cus["id"])
    return ids


def fresh(home: Path) -> None:
    shutil.rmtree(home, ignore_errors=True)
