"""Every hop encrypted, with the settings the prod overlay gives (k8s/README.md, "TLS"):
PostgreSQL and NATS serving only TLS, the customer service serving gRPC over TLS, and the
gateway serving HTTPS, all with certificates from a test CA made by `trustme`.

A customer created through the gateway crosses every hop: client -> gateway (HTTPS), gateway ->
customer (gRPC TLS), customer -> PostgreSQL (verify-full), customer's relay -> NATS (tls://).
Then each hop is shown to be really encrypted: PostgreSQL's own view of the connections
(pg_stat_ssl), a plaintext gRPC client and a plaintext NATS client refused, HSTS on the answers.
"""

from __future__ import annotations

import asyncio
import json
import os
import socket
import ssl
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import grpc
import httpx
import nats
import psycopg
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc

from pos.customer.v1 import customer_pb2, customer_pb2_grpc
from pos_devstack.natsd import LocalNats, free_port
from pos_devstack.postgres import LocalPostgres, tls_capable_bin_dir

trustme = pytest.importorskip("trustme", reason="trustme is not installed")

STARTUP_SECONDS = 45.0
# Starts its own PostgreSQL, NATS, a service and the gateway.
pytestmark = pytest.mark.server
SECRET = "tls-test-gateway-secret-0123456789abcdef"


@dataclass
class Hops:
    ca: Path
    pg: LocalPostgres
    nats: LocalNats
    roles: dict[str, str]  # component -> its database role
    grpc_port: int
    health_port: int
    https_port: int
    api_key: str

    @property
    def https(self) -> str:
        return f"https://localhost:{self.https_port}"


def _write_certificates(folder: Path) -> tuple[Path, Path, Path]:
    ca = trustme.CA()
    server = ca.issue_cert("localhost", "127.0.0.1")
    paths = folder / "ca.crt", folder / "tls.crt", folder / "tls.key"
    ca.cert_pem.write_to_path(str(paths[0]))
    server.private_key_pem.write_to_path(str(paths[2]))
    with paths[1].open("wb") as chain:
        for blob in server.cert_chain_pems:
            chain.write(blob.bytes())
    return paths


def _base_env() -> dict[str, str]:
    return {"PATH": os.environ.get("PATH", ""), "HOME": os.environ.get("HOME", "/tmp")}


def _run(module: str, command: list[str], env: dict[str, str]) -> str:
    done = subprocess.run(
        [sys.executable, "-m", module, *command],
        env={**env, **_base_env()},
        capture_output=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr.decode(errors="replace")[-3000:]
    return done.stdout.decode()


def _wait(what: str, ready: object, procs: list[tuple[subprocess.Popen[bytes], Path]]) -> None:
    deadline = time.monotonic() + STARTUP_SECONDS
    while not ready():  # type: ignore[operator]
        for popen, log in procs:
            if popen.poll() is not None:
                pytest.fail(f"{log.stem} exited:\n{log.read_text()[-3000:]}", pytrace=False)
        if time.monotonic() > deadline:
            tails = "\n\n".join(log.read_text()[-2000:] for _, log in procs)
            pytest.fail(f"{what} not ready after {STARTUP_SECONDS:g}s:\n{tails}", pytrace=False)
        time.sleep(0.1)


def _trusting(ca: Path) -> ssl.SSLContext:
    return ssl.create_default_context(cafile=str(ca))


def _grpc_health(channel: grpc.Channel) -> int:
    stub = health_pb2_grpc.HealthStub(channel)
    answer = stub.Check(health_pb2.HealthCheckRequest(), timeout=2.0)
    return int(answer.status)


@pytest.fixture(scope="module")
def hops(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Hops]:
    bin_dir = tls_capable_bin_dir()
    if bin_dir is None:
        pytest.skip("no PostgreSQL built with OpenSSL here (the embedded wheel is not)")
    root = tmp_path_factory.mktemp("tls")
    ca, cert, key = _write_certificates(root)
    pg = LocalPostgres(root / "pg", free_port(), tls=(cert, key), bin_dir=bin_dir)
    natsd = LocalNats(root / "nats", free_port(), tls=(cert, key))
    procs: list[tuple[subprocess.Popen[bytes], Path]] = []
    try:
        pg.start()
        natsd.start()
        # The settings the prod overlay gives every component (host 127.0.0.1 stands in for
        # the cluster's Service names; the test certificate names both).
        tls_env = {
            "OMNITILL_ENV": "development",
            "DATABASE_SSLMODE": "verify-full",
            "DATABASE_SSLROOTCERT": str(ca),
            "NATS_URL": natsd.url,
            "NATS_TLS_CA": str(ca),
            "GRPC_TLS_CERT": str(cert),
            "GRPC_TLS_KEY": str(key),
            "GRPC_TLS_CA": str(ca),
        }
        urls, roles = {}, {}
        for name in ("customer", "gateway"):
            roles[name] = f"tls_{name}"
            urls[name] = pg.create_database(f"pos_{name}", roles[name], f"{name}-tls-password")
            _run(f"pos_{name}", ["migrate"], {**tls_env, "DATABASE_URL": urls[name]})

        grpc_port, health_port, https_port = free_port(), free_port(), free_port()
        service_env = {
            **tls_env,
            "DATABASE_URL": urls["customer"],
            "GRPC_HOST": "127.0.0.1",
            "GRPC_PORT": str(grpc_port),
            "GRPC_HEALTH_PORT": str(health_port),
        }
        address = f"localhost:{grpc_port}"
        gateway_env = {
            **tls_env,
            "DATABASE_URL": urls["gateway"],
            "GATEWAY_SECRET_KEY": SECRET,
            "TOKEN_SIGNING_KEYS": SECRET + "-token-signing",
            "HTTP_HOST": "127.0.0.1",
            "HTTP_PORT": str(https_port),
            "HTTP_TLS_CERT": str(cert),
            "HTTP_TLS_KEY": str(key),
            **{
                f"{s}_ADDR": address
                for s in ("INVENTORY", "PROMOTION", "CUSTOMER", "PAYMENT", "ORDER", "DISPATCHER")
            },
        }
        for name, env in (("customer", service_env), ("gateway", gateway_env)):
            log = root / f"{name}.log"
            with log.open("wb") as handle:
                popen = subprocess.Popen(
                    [sys.executable, "-m", f"pos_{name}", "serve"],
                    env={**env, **_base_env()},
                    stdout=handle,
                    stderr=subprocess.STDOUT,
                    start_new_session=True,
                )
            procs.append((popen, log))

        credentials = grpc.ssl_channel_credentials(ca.read_bytes())
        with grpc.secure_channel(address, credentials) as channel:

            def serving() -> bool:
                try:
                    return _grpc_health(channel) == health_pb2.HealthCheckResponse.SERVING
                except grpc.RpcError:
                    return False

            _wait("the customer service", serving, procs)

        def gateway_ready() -> bool:
            try:
                return httpx.get(
                    f"https://localhost:{https_port}/readyz", verify=_trusting(ca), timeout=2.0
                ).is_success
            except httpx.HTTPError:
                return False

        _wait("the gateway", gateway_ready, procs)
        created = json.loads(_run("pos_gateway", ["create-merchant", "TLS"], gateway_env))
        yield Hops(ca, pg, natsd, roles, grpc_port, health_port, https_port, created["api_key"])
    finally:
        for popen, _ in procs:
            if popen.poll() is None:
                popen.terminate()
                try:
                    popen.wait(20)
                except subprocess.TimeoutExpired:
                    popen.kill()
                    popen.wait()
        natsd.stop()
        pg.stop()


def test_a_customer_crosses_every_hop_and_every_hop_is_encrypted(hops: Hops) -> None:
    headers = {"Authorization": f"Bearer {hops.api_key}"}
    with httpx.Client(base_url=hops.https, verify=_trusting(hops.ca), headers=headers) as api:
        answer = api.post("/v1/customers", json={"email": "tls@example.com", "given_name": "T"})
        assert answer.status_code == 201, answer.text
        assert answer.headers["strict-transport-security"].startswith("max-age=31536000")
        customer_id = answer.json()["id"]
        assert api.get(f"/v1/customers/{customer_id}").json()["email"] == "tls@example.com"

    # PostgreSQL: every connection of the service and of the gateway is encrypted, as the
    # server itself reports it.
    with psycopg.connect(hops.pg.admin_url) as conn:
        rows = conn.execute(
            "SELECT a.usename, s.ssl FROM pg_stat_ssl s JOIN pg_stat_activity a USING (pid)"
            " WHERE a.usename = ANY(%s)",
            (list(hops.roles.values()),),
        ).fetchall()
    assert {user for user, _ in rows} == set(hops.roles.values()), rows
    assert all(encrypted for _, encrypted in rows), rows

    # NATS: the CustomerCreated event went out through the service's TLS connection.
    async def published() -> int:
        client = await nats.connect(hops.nats.url, tls=_trusting(hops.ca))
        try:
            deadline = time.monotonic() + 15
            while True:
                info = await client.jetstream().stream_info("POS_CUSTOMER")
                if info.state.messages or time.monotonic() > deadline:
                    return int(info.state.messages)
                await asyncio.sleep(0.1)
        finally:
            await client.close()

    assert asyncio.run(published()) >= 1


def test_postgres_refuses_a_client_without_tls(hops: Hops) -> None:
    with psycopg.connect(hops.pg.admin_url, autocommit=True) as conn:
        conn.execute("SELECT 1")  # the admin URL asks for TLS, so it gets in
    plain = hops.pg.admin_url.replace("sslmode=require", "sslmode=disable")
    with pytest.raises(psycopg.OperationalError, match=r"no encryption|SSL off|reject"):
        psycopg.connect(plain, connect_timeout=5)


def test_grpc_refuses_a_plaintext_client_and_probes_see_only_health(hops: Hops) -> None:
    with grpc.insecure_channel(f"127.0.0.1:{hops.grpc_port}") as plain:
        with pytest.raises(grpc.RpcError) as refused:
            _grpc_health(plain)
        assert refused.value.code() == grpc.StatusCode.UNAVAILABLE
    # A client that does not trust the CA is refused too: the certificate is really checked.
    stranger = grpc.ssl_channel_credentials(trustme.CA().cert_pem.bytes())
    with (
        grpc.secure_channel(f"localhost:{hops.grpc_port}", stranger) as untrusting,
        pytest.raises(grpc.RpcError),
    ):
        _grpc_health(untrusting)
    # The kubelet's plaintext probe port answers health and nothing else.
    with grpc.insecure_channel(f"127.0.0.1:{hops.health_port}") as probe:
        assert _grpc_health(probe) == health_pb2.HealthCheckResponse.SERVING
        stub = customer_pb2_grpc.CustomerServiceStub(probe)
        with pytest.raises(grpc.RpcError) as only_health:
            stub.GetCustomer(
                customer_pb2.GetCustomerRequest(id="x"),
                timeout=2.0,
                metadata=[("x-merchant-id", "m")],
            )
        assert only_health.value.code() == grpc.StatusCode.UNIMPLEMENTED


def _nats_ping(port: int, tls: ssl.SSLContext | None) -> bytes:
    """CONNECT and PING on a raw socket (upgraded to TLS after INFO when `tls` is given); what
    the server answers before it closes or within a line."""
    with socket.create_connection(("127.0.0.1", port), timeout=5) as raw:
        info = raw.recv(4096).decode()
        assert info.startswith("INFO ") and json.loads(info[5:])["tls_required"] is True
        sock = tls.wrap_socket(raw, server_hostname="localhost") if tls else raw
        sock.sendall(b'CONNECT {"verbose":false}\r\nPING\r\n')
        answer = b""
        while b"PONG" not in answer:
            try:
                chunk = sock.recv(4096)
            except (OSError, ssl.SSLError):
                break
            if not chunk:
                break
            answer += chunk
        return answer


def test_nats_refuses_a_client_without_tls(hops: Hops) -> None:
    # The same two commands: answered over TLS, the connection closed without an answer when
    # sent in plaintext.
    assert b"PONG" in _nats_ping(hops.nats.port, _trusting(hops.ca))
    assert b"PONG" not in _nats_ping(hops.nats.port, None)


def test_the_gateway_speaks_only_https(hops: Hops) -> None:
    with pytest.raises(httpx.HTTPError):
        httpx.get(f"http://127.0.0.1:{hops.https_port}/healthz", timeout=5.0)
    answer = httpx.get(f"{hops.https}/healthz", verify=_trusting(hops.ca), timeout=5.0)
    assert answer.status_code == 200
    assert "max-age=" in answer.headers["strict-transport-security"]
