"""deploy/healthcheck.py, the compose health check, against real gRPC and HTTP servers."""

from __future__ import annotations

import subprocess
import sys
import threading
from collections.abc import Iterator
from concurrent import futures
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
from deploy_manifests import DEPLOY

SCRIPT = DEPLOY / "healthcheck.py"


def _check(kind: str, target: str) -> int:
    return subprocess.run([sys.executable, str(SCRIPT), kind, target], timeout=30).returncode


def test_grpc_check_follows_the_serving_status() -> None:
    grpc = pytest.importorskip("grpc")
    health = pytest.importorskip("grpc_health.v1.health")
    from grpc_health.v1 import health_pb2, health_pb2_grpc

    server = grpc.server(futures.ThreadPoolExecutor(max_workers=2))
    servicer = health.HealthServicer()
    health_pb2_grpc.add_HealthServicer_to_server(servicer, server)
    port = server.add_insecure_port("127.0.0.1:0")
    server.start()
    try:
        servicer.set("", health_pb2.HealthCheckResponse.SERVING)
        assert _check("grpc", f"127.0.0.1:{port}") == 0
        servicer.set("", health_pb2.HealthCheckResponse.NOT_SERVING)
        assert _check("grpc", f"127.0.0.1:{port}") == 1
    finally:
        server.stop(None)
    assert _check("grpc", f"127.0.0.1:{port}") == 1


class _Handler(BaseHTTPRequestHandler):
    def do_GET(self) -> None:
        self.send_response(200 if self.path == "/readyz" else 503)
        self.end_headers()

    def log_message(self, format: str, *args: object) -> None:
        return


@pytest.fixture
def http_server() -> Iterator[int]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield server.server_address[1]
    finally:
        server.shutdown()
        server.server_close()


def test_http_check_wants_a_2xx(http_server: int) -> None:
    assert _check("http", f"http://127.0.0.1:{http_server}/readyz") == 0
    assert _check("http", f"http://127.0.0.1:{http_server}/down") == 1
    assert _check("http", "file:///etc/passwd") == 1


def test_usage_errors_are_not_health() -> None:
    assert _check("tcp", "127.0.0.1:1") == 2
