"""Stopping servers that a previous run, killed hard, left behind."""

from __future__ import annotations

import os
import signal
import socket
import time
from pathlib import Path


def stop_pid_from(pid_file: Path, timeout: float = 30.0) -> None:
    """SIGTERM the process named on the first line of pid_file, SIGKILL it after timeout."""
    try:
        pid = int(pid_file.read_text().splitlines()[0].strip())
        os.kill(pid, signal.SIGTERM)
    except (ValueError, IndexError, ProcessLookupError, PermissionError, FileNotFoundError):
        return
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return
        time.sleep(0.05)
    os.kill(pid, signal.SIGKILL)


class PortInUse(RuntimeError):
    """A port a server of ours is to listen on is held by another process: starting anyway
    would leave that process answering in our server's place."""


class Interrupted(Exception):
    """Start-up was asked to stop (Ctrl-C) before it finished."""


def port_is_free(port: int) -> bool:
    """Whether a server could listen on 127.0.0.1:`port` now. SO_REUSEADDR as servers set it,
    so connections in TIME_WAIT from a server just stopped do not count; no SO_REUSEPORT, so a
    gRPC server (which sets it) holding the port does."""
    with socket.socket() as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind(("127.0.0.1", port))
            sock.listen(1)
        except OSError:
            return False
    return True


def check_port_free(port: int, what: str, hint: str = "") -> None:
    """Raise PortInUse, naming the port and what was to listen on it, unless it is free."""
    if not port_is_free(port):
        raise PortInUse(
            f"port {port} on 127.0.0.1, wanted for {what}, is already in use by another "
            "process (another Omnitill platform, or another program); nothing was started on "
            "it. Stop that process" + (f", or choose another: {hint}" if hint else "") + "."
        )
