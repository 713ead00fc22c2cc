"""An error no handler took is a 500 problem on a connection that stays open: the client's
next request on it is answered (a real uvicorn server, a raw socket to see the connection)."""

from __future__ import annotations

import json
import socket
import threading
import time
from collections.abc import Iterator

import gateway_alone
import pytest
import uvicorn
from fastapi import FastAPI

from pos_gateway import problems


def _app() -> FastAPI:
    app = FastAPI()
    problems.install(app)
    app.add_middleware(problems.LastResort)

    @app.get("/boom")
    async def boom() -> dict[str, str]:
        raise RuntimeError("a defect")

    @app.get("/ok")
    async def ok() -> dict[str, str]:
        return {"ok": "yes"}

    return app


@pytest.fixture
def port() -> Iterator[int]:
    listening = socket.socket()
    listening.bind(("127.0.0.1", 0))
    server = uvicorn.Server(uvicorn.Config(_app(), log_level="critical", lifespan="off"))
    thread = threading.Thread(target=server.run, kwargs={"sockets": [listening]}, daemon=True)
    thread.start()
    deadline = time.monotonic() + 10
    while not server.started:
        assert time.monotonic() < deadline, "the server did not start"
        time.sleep(0.01)
    try:
        yield listening.getsockname()[1]
    finally:
        server.should_exit = True
        thread.join(10)
        listening.close()


def _exchange(conn: socket.socket, path: str) -> tuple[int, bytes]:
    """One request on the open connection and its whole answer (or (0, b"") if the server
    closed the connection instead of answering)."""
    conn.sendall(f"GET {path} HTTP/1.1\r\nHost: test\r\n\r\n".encode())
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = conn.recv(65536)
        if not chunk:
            return 0, b""
        data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    length = next(
        int(line.split(b":", 1)[1])
        for line in head.split(b"\r\n")
        if line.lower().startswith(b"content-length:")
    )
    while len(body) < length:
        chunk = conn.recv(65536)
        if not chunk:
            return 0, b""
        body += chunk
    return int(head.split(b" ", 2)[1]), body


def test_a_defect_answers_a_500_problem_and_the_connection_goes_on(port: int) -> None:
    with socket.create_connection(("127.0.0.1", port), timeout=10) as conn:
        status, body = _exchange(conn, "/boom")
        assert status == 500
        assert json.loads(body)["code"] == "internal_error"
        assert b"a defect" not in body
        # The same connection answers the next request.
        assert _exchange(conn, "/ok") == (200, b'{"ok":"yes"}')


def test_the_gateway_answers_defects_outside_every_other_middleware() -> None:
    """The gateway's app has it outermost, so the edge (idempotency, limits) sees an error as
    an error, as before, and only the framework's re-raise is gone."""
    from pos_gateway.app import create_app

    # No database and no service is reached: the app is only built.
    settings = gateway_alone.settings("postgresql+psycopg://nobody@127.0.0.1:9/none", "s" * 32)
    app = create_app(settings)
    assert app.user_middleware[0].cls is problems.LastResort
