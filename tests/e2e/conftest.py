"""The whole platform, started as separate processes exactly as `make up` starts it."""

from __future__ import annotations

import tempfile
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from pos_devstack.natsd import free_port
from pos_devstack.platform import SERVICES, Platform, Ports
from pos_devstack.testing import Running


@pytest.fixture(scope="session")
def platform() -> Iterator[Running]:
    home = Path(tempfile.mkdtemp(prefix="omnitill-e2e-"))
    ports = Ports(
        postgres=free_port(),
        nats=free_port(),
        gateway=free_port(),
        services={s: free_port() for s in SERVICES},
    )
    lines: list[str] = []
    running = Platform(home, ports, say=lines.append)
    try:
        running.start_infrastructure()
        running.start_services()
        key = running.sandbox_key()
        with httpx.Client(
            base_url=running.gateway_url,
            headers={"Authorization": f"Bearer {key}"},
            timeout=15.0,
        ) as http:
            yield Running(running, http, key)
    finally:
        running.stop()
