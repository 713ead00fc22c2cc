"""Connections to the gateway: a request on a kept-alive connection always gets an answer."""

from __future__ import annotations

import socket
import time
from urllib.parse import urlsplit

import pytest

from pos_devstack.testing import Running

pytestmark = pytest.mark.e2e

REQUEST = b"GET /healthz HTTP/1.1\r\nHost: gateway\r\n\r\n"


def _status_line(conn: socket.socket) -> bytes:
    """The first line of the next answer on the connection, or b"" if the server closed it."""
    line = b""
    while not line.endswith(b"\r\n"):
        chunk = conn.recv(1)
        if not chunk:
            return line
        line += chunk
    return line


def _read_answer(conn: socket.socket) -> bytes:
    status = _status_line(conn)
    if not status.endswith(b"\r\n"):
        return status  # closed before a whole status line
    # Drain the rest of the small /healthz answer so the next request starts clean.
    head = b""
    while not head.endswith(b"\r\n\r\n"):
        chunk = conn.recv(1)
        assert chunk, "the connection closed in the middle of an answer"
        head += chunk
    length = next(
        int(line.split(b":", 1)[1])
        for line in head.split(b"\r\n")
        if line.lower().startswith(b"content-length:")
    )
    body = b""
    while len(body) < length:
        body += conn.recv(length - len(body))
    return status


def test_a_connection_idle_past_the_clients_expiry_is_still_served(platform: Running) -> None:
    # Clients keep idle connections for a while and reuse them (httpx 5 s, others 60-90 s).
    # A server that closed them first (uvicorn's default is 5 s) lost any request sent at the
    # instant it closed: the connection ended with no status line and the request was never
    # read. Past 5 s idle the gateway must still answer on the same connection.
    url = urlsplit(platform.platform.gateway_url)
    with socket.create_connection((url.hostname or "127.0.0.1", url.port or 80), 10) as conn:
        conn.sendall(REQUEST)
        assert _read_answer(conn).startswith(b"HTTP/1.1 200")
        time.sleep(6)  # the idle time itself is what is tested, not a wait for something
        conn.sendall(REQUEST)
        assert _read_answer(conn).startswith(b"HTTP/1.1 200")
