"""Stopping servers that a previous run, killed hard, left behind."""

from __future__ import annotations

import os
import signal
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
