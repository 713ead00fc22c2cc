"""The kit's TLS settings and certificate rotation: a renewed certificate is served from the next
connection on, without a restart (gRPC and the gateway's HTTPS context)."""

from __future__ import annotations

import asyncio
import os
import ssl
from pathlib import Path

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc
from pydantic import ValidationError

from pos_kit.grpc_server import GrpcService
from pos_kit.settings import GrpcServiceSettings
from pos_kit.tls import GrpcTls, ReloadingServerContext, database_url_with_tls

trustme = pytest.importorskip("trustme", reason="trustme is not installed")

BASE = {"database_url": "postgresql://u:p@db:5432/app", "nats_url": "nats://nats:4222"}


def _issue(ca: object, folder: Path) -> tuple[Path, Path]:
    """A localhost certificate from `ca`, written the way the kubelet replaces a mounted
    Secret: new files, then an atomic rename over the old ones."""
    leaf = ca.issue_cert("localhost", "127.0.0.1")  # type: ignore[attr-defined]
    cert, key = folder / "tls.crt", folder / "tls.key"
    for path, blob in ((cert, b"".join(p.bytes() for p in leaf.cert_chain_pems)),
                       (key, leaf.private_key_pem.bytes())):  # fmt: skip
        staged = path.with_suffix(".new")
        staged.write_bytes(blob)
        os.replace(staged, path)
    return cert, key


def test_database_tls_settings_go_into_the_url() -> None:
    settings = GrpcServiceSettings(
        **BASE, database_sslmode="verify-full", database_sslrootcert="/etc/pg/ca.crt"
    )
    assert settings.database_url.endswith("?sslmode=verify-full&sslrootcert=%2Fetc%2Fpg%2Fca.crt")
    assert database_url_with_tls(BASE["database_url"], None, None) == BASE["database_url"]
    with pytest.raises(ValidationError):
        GrpcServiceSettings(**BASE, database_sslmode="sometimes")


def test_tls_settings_that_cannot_work_are_refused() -> None:
    with pytest.raises(ValidationError, match="GRPC_TLS_CERT and GRPC_TLS_KEY"):
        GrpcServiceSettings(**BASE, grpc_tls_cert="/tls/tls.crt")
    with pytest.raises(ValidationError, match="tls://"):
        GrpcServiceSettings(**BASE, nats_tls_ca="/ca/ca.crt")
    settings = GrpcServiceSettings(
        **{**BASE, "nats_url": "tls://nats:4222"}, nats_tls_ca="/ca/ca.crt", grpc_tls_ca="/ca"
    )
    assert settings.nats_tls
    assert settings.grpc_tls == GrpcTls(None, None, "/ca")
    assert GrpcServiceSettings(**BASE).grpc_tls is None


async def _health(port: int, ca: object) -> int:
    credentials = grpc.ssl_channel_credentials(ca.cert_pem.bytes())  # type: ignore[attr-defined]
    async with grpc.aio.secure_channel(f"localhost:{port}", credentials) as channel:
        answer = await health_pb2_grpc.HealthStub(channel).Check(
            health_pb2.HealthCheckRequest(), timeout=5.0
        )
        return int(answer.status)


@pytest.mark.asyncio(loop_scope="session")
async def test_a_renewed_grpc_certificate_is_served_without_a_restart(tmp_path: Path) -> None:
    old_ca, new_ca = trustme.CA(), trustme.CA()
    cert, key = _issue(old_ca, tmp_path)
    service = GrpcService(
        "tls-test", [], [], "127.0.0.1", 0, grace_seconds=1, tls=GrpcTls(str(cert), str(key))
    )
    await service.start()
    try:
        assert await _health(service.port, old_ca) == health_pb2.HealthCheckResponse.SERVING
        with pytest.raises(grpc.aio.AioRpcError):
            await _health(service.port, new_ca)

        _issue(new_ca, tmp_path)  # cert-manager renews; the kubelet swaps the files
        assert await _health(service.port, new_ca) == health_pb2.HealthCheckResponse.SERVING
        with pytest.raises(grpc.aio.AioRpcError):
            await _health(service.port, old_ca)
    finally:
        await service.stop()


async def _issuer_seen(port: int, ca: object) -> bool:
    """Whether a TLS client trusting only `ca` completes a handshake with the server."""
    context = ssl.create_default_context()
    ca.configure_trust(context)  # type: ignore[attr-defined]
    try:
        _, writer = await asyncio.open_connection(
            "127.0.0.1", port, ssl=context, server_hostname="localhost"
        )
    except ssl.SSLError:
        return False
    writer.close()
    await writer.wait_closed()
    return True


@pytest.mark.asyncio(loop_scope="session")
async def test_a_renewed_https_certificate_is_reloaded(tmp_path: Path) -> None:
    old_ca, new_ca = trustme.CA(), trustme.CA()
    cert, key = _issue(old_ca, tmp_path)
    tls = ReloadingServerContext(str(cert), str(key))

    async def answer(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        writer.close()

    server = await asyncio.start_server(answer, "127.0.0.1", 0, ssl=tls.context)
    port = server.sockets[0].getsockname()[1]
    try:
        assert await _issuer_seen(port, old_ca)
        assert not tls.reload_if_changed()  # nothing changed yet
        _issue(new_ca, tmp_path)
        assert tls.reload_if_changed()
        assert await _issuer_seen(port, new_ca)
        assert not await _issuer_seen(port, old_ca)
    finally:
        server.close()
        await server.wait_closed()
