"""`make up` on ports of the user's choosing, and never on a port another process holds."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from pos_devstack.natsd import LocalNats, free_port
from pos_devstack.platform import PROCESSES, Ports
from pos_devstack.postgres import LocalPostgres
from pos_devstack.procs import PortInUse, port_is_free
from pos_devstack.testing import Infra


def _port_base() -> int:
    """The first of len(PROCESSES) ports in a row free now, for the services."""
    while True:
        base = free_port()
        if base + len(PROCESSES) < 65536 and all(
            port_is_free(base + i) for i in range(len(PROCESSES))
        ):
            return base


def _up_env(home: Path, **ports: int) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("OMNITILL_")}
    env["OMNITILL_HOME"] = str(home)
    env.update({name: str(port) for name, port in ports.items()})
    return env


@pytest.fixture
def held() -> Iterator[int]:
    """A port another program listens on."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen(1)
        yield int(sock.getsockname()[1])


def test_ports_come_from_the_environment() -> None:
    ports = Ports.from_env(
        {
            "OMNITILL_POSTGRES_PORT": "15432",
            "OMNITILL_NATS_PORT": "14222",
            "OMNITILL_GATEWAY_PORT": "18080",
            "OMNITILL_SERVICE_PORT_BASE": "16000",
        }
    )
    assert (ports.postgres, ports.nats, ports.gateway) == (15432, 14222, 18080)
    assert list(ports.services.values()) == [16000, 16001, 16002, 16003, 16004, 16005]
    assert ports.services["dispatcher"] == 16005 and ports.deliverer == 16006
    assert Ports.from_env({}) == Ports()  # unset: the documented defaults
    with pytest.raises(ValueError, match="OMNITILL_GATEWAY_PORT='http'"):
        Ports.from_env({"OMNITILL_GATEWAY_PORT": "http"})
    with pytest.raises(ValueError, match="OMNITILL_SERVICE_PORT_BASE"):
        Ports.from_env({"OMNITILL_SERVICE_PORT_BASE": "65533"})
    with pytest.raises(ValueError, match="OMNITILL_GATEWAY_PORT: port 50061"):
        Ports.from_env({"OMNITILL_GATEWAY_PORT": "50061"})


def test_up_stops_at_once_on_a_port_in_use_naming_it(tmp_path: Path, held: int) -> None:
    home = tmp_path / "home"
    env = _up_env(
        home,
        OMNITILL_POSTGRES_PORT=free_port(),
        OMNITILL_NATS_PORT=free_port(),
        OMNITILL_SERVICE_PORT_BASE=_port_base(),
        OMNITILL_GATEWAY_PORT=held,
    )
    done = subprocess.run(
        [sys.executable, "-m", "pos_devstack", "up"],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 1, done
    assert f"port {held} (for the gateway) is in use" in done.stderr
    assert "`make up OMNITILL_GATEWAY_PORT=N`" in done.stderr
    # Nothing started, so nothing reported ready or left running.
    assert "✓" not in done.stdout and "ready" not in done.stdout, done.stdout
    assert not (home / "postgres" / "postmaster.pid").exists()


def test_a_server_is_not_started_on_a_port_another_holds(tmp_path: Path, infra: Infra) -> None:
    # The session's own servers hold these ports, as another platform's would.
    nats_port = int(infra.nats_url.rsplit(":", 1)[1])
    nats = LocalNats(tmp_path / "nats", nats_port)
    with pytest.raises(PortInUse, match=f"port {nats_port} on 127.0.0.1, wanted for NATS"):
        nats.start()
    assert nats.process is None
    pg_port = int(infra.admin_url.rsplit(":", 1)[1].split("/")[0])
    pg = LocalPostgres(tmp_path / "pg", pg_port, disposable=True)
    with pytest.raises(PortInUse, match=f"port {pg_port} on 127.0.0.1, wanted for PostgreSQL"):
        pg.start()
    assert pg.process is None


def test_ctrl_c_during_start_up_stops_promptly(tmp_path: Path) -> None:
    home = tmp_path / "home"
    env = _up_env(
        home,
        OMNITILL_POSTGRES_PORT=free_port(),
        OMNITILL_NATS_PORT=free_port(),
        OMNITILL_SERVICE_PORT_BASE=_port_base(),
        OMNITILL_GATEWAY_PORT=free_port(),
    )
    up = subprocess.Popen(
        [sys.executable, "-m", "pos_devstack", "up"],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        assert up.stdout is not None
        lines = []
        for line in up.stdout:
            lines.append(line)
            if "✓ PostgreSQL ready" in line:
                break
        asked = time.monotonic()
        up.send_signal(signal.SIGINT)
        rest, _ = up.communicate(timeout=30)
        took = time.monotonic() - asked
    finally:
        if up.poll() is None:
            up.kill()
            up.wait()
    out = "".join(lines) + rest
    assert up.returncode == 130, out
    assert "start-up interrupted" in out and "Omnitill is up" not in out, out
    assert took < 10, (took, out)
    # PostgreSQL and anything else started was stopped.
    assert not (home / "postgres" / "postmaster.pid").exists(), out
