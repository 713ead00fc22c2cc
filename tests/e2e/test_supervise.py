"""`make up` keeps the platform running: a crashed service is restarted with backoff."""

from __future__ import annotations

import time
import uuid

import pytest

from pos_devstack.http_checks import eventually, ok, post
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


def test_a_killed_nats_server_is_restarted_and_the_platform_publishes_again(
    platform: Running,
) -> None:
    supervisor = platform.platform
    nats = supervisor.nats
    assert nats.process is not None
    first_pid = nats.process.pid
    nats.process.kill()
    nats.process.wait()

    now = time.monotonic()
    said = supervisor.supervise(now)
    assert len(said) == 1 and "nats-server exited (code -9)" in said[0], said
    said = supervisor.supervise(now + 1.0)
    assert len(said) == 1 and "nats-server restarted" in said[0], said
    assert nats.process is not None and nats.process.pid != first_pid
    assert nats.process.poll() is None

    # A change after the restart reaches the event feed: the service's relay published it on
    # the restarted server (its streams kept on disk) and the dispatcher took it from there.
    with platform.new_merchant(f"Nats {uuid.uuid4().hex[:6]}") as http:
        store = ok(post(http, "/v1/locations", {"name": "After", "currency": "USD"}), 201)
        price = {"amount": 500, "currency": "USD"}
        ok(post(http, "/v1/products", {"sku": "NATS-1", "name": "Again", "price": price}), 201)
        received = {"sku": "NATS-1", "location_id": store["id"], "delta": 3,
                    "reason": "received"}  # fmt: skip
        ok(post(http, "/v1/inventory/adjustments", received), 201)
        events = eventually(
            lambda: [
                e for e in http.get("/v1/events").json()["data"] if e["type"] == "inventory.changed"
            ]
        )
        assert events[0]["data"]["object"]["on_hand"] == 3
