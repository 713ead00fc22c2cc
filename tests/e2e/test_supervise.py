"""`make up` keeps the platform running: a crashed service is restarted with backoff."""

from __future__ import annotations

import time

import pytest

from pos_devstack.testing import Running

pytestmark = pytest.mark.e2e


def _crash(running: Running, name: str) -> int:
    (proc,) = [p for p in running.platform.procs if p.name == name]
    proc.popen.kill()
    proc.popen.wait()
    return proc.popen.pid


def test_a_crashed_service_is_restarted_with_growing_backoff(platform: Running) -> None:
    supervisor = platform.platform
    first_pid = _crash(platform, "promotion")

    now = time.monotonic()
    said = supervisor.supervise(now)
    assert len(said) == 1 and "promotion exited (code -9)" in said[0], said
    assert supervisor.supervise(now + 0.5) == []  # not before its backoff
    said = supervisor.supervise(now + 1.0)
    assert len(said) == 1 and "promotion restarted" in said[0], said
    supervisor.wait_reachable("promotion")
    (proc,) = [p for p in supervisor.procs if p.name == "promotion"]
    assert proc.popen.pid != first_pid and proc.popen.poll() is None

    # Crashing again soon after: the wait doubles, so a crash loop does not spin.
    _crash(platform, "promotion")
    now = time.monotonic()
    assert "restarting in 2 s" in supervisor.supervise(now)[0]
    assert supervisor.supervise(now + 1.5) == []
    assert "promotion restarted" in supervisor.supervise(now + 2.0)[0]
    supervisor.wait_reachable("promotion")
    # The sale path works again through the gateway.
    assert platform.http.get("/v1/promotions").status_code == 200
