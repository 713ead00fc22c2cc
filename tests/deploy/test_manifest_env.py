"""Starts every component with only the environment the Kubernetes manifests give it.

For each Deployment the dev overlay renders, the container's environment is read from the
manifests (ConfigMap and Secret references resolved from the rendered documents). Only what
names cluster infrastructure is swapped for a local stand-in: DATABASE_URL (a fresh database),
NATS_URL, the listening port, and the *_ADDR of each callee (the local port its Deployment got).
OTEL_EXPORTER_OTLP_ENDPOINT is dropped: there is no collector here. Then, as the cluster does,
the migration Job's command runs with the Job's environment, the Deployment's command runs with
the Deployment's, each process gets PATH and HOME and nothing else, and its probe must pass:
grpc.health.v1 SERVING for gRPC services, the readiness path for the gateway. Finally SIGTERM
must stop each one cleanly within the grace period its manifest allows.
"""

from __future__ import annotations

import json
import os
import re
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from deploy_manifests import (
    DEPLOY,
    Doc,
    app_args,
    app_deployments,
    configured_callees,
    of_kind,
    pod_spec,
    ref,
    resolve_env,
)

pytestmark = pytest.mark.e2e

STARTUP_SECONDS = 90.0
MIGRATION_SECONDS = 120.0


def _entrypoint() -> list[str]:
    """The image's ENTRYPOINT, with this interpreter standing in for the image's `python`."""
    text = (DEPLOY / "Dockerfile").read_text()
    found = re.findall(r"^ENTRYPOINT\s+(\[.*\])\s*$", text, flags=re.MULTILINE)
    assert found, "the Dockerfile has no exec-form ENTRYPOINT"
    entry: list[str] = json.loads(found[-1])
    return [sys.executable if part == "python" else part for part in entry]


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def _base_env() -> dict[str, str]:
    return {"PATH": os.environ.get("PATH", ""), "HOME": os.environ.get("HOME", "/tmp")}


def _tail(path: Path, size: int = 3000) -> str:
    return path.read_text(errors="replace")[-size:] if path.exists() else "(no output)"


@dataclass
class Started:
    name: str
    deployment: Doc
    container: Doc
    popen: subprocess.Popen[bytes]
    log: Path
    port: int

    @property
    def protocol(self) -> str:
        names = {p.get("name") for p in self.container.get("ports", [])}
        return "grpc" if "grpc" in names else "http"

    def alive_or_fail(self) -> None:
        if self.popen.poll() is not None:
            pytest.fail(
                f"{self.name} exited with {self.popen.returncode}:\n{_tail(self.log)}",
                pytrace=False,
            )


def _grpc_serving(port: int) -> bool:
    import grpc
    from grpc_health.v1 import health_pb2, health_pb2_grpc

    with grpc.insecure_channel(f"127.0.0.1:{port}") as channel:
        try:
            answer = health_pb2_grpc.HealthStub(channel).Check(
                health_pb2.HealthCheckRequest(), timeout=1.0
            )
        except grpc.RpcError:
            return False
    return bool(answer.status == health_pb2.HealthCheckResponse.SERVING)


def _http_ready(port: int, path: str) -> bool:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=2.0) as answer:
            return 200 <= int(answer.status) < 300
    except (urllib.error.URLError, OSError):
        return False


def _ready(started: Started) -> bool:
    if started.protocol == "grpc":
        return _grpc_serving(started.port)
    path = started.container["readinessProbe"]["httpGet"]["path"]
    return _http_ready(started.port, str(path))


def _migration_container(docs: list[Doc], module: str) -> Doc:
    for job in of_kind(docs, "Job"):
        container: Doc = pod_spec(job)["containers"][0]
        if app_args(container) == (module, "migrate"):
            return container
    pytest.fail(f"no migration Job runs `{module} migrate`", pytrace=False)


def _stop(started: Started) -> str | None:
    """SIGTERM, as the kubelet sends after the preStop hook; None if it stopped in time."""
    spec = pod_spec(started.deployment)
    pre_stop = started.container.get("lifecycle", {}).get("preStop", {})
    budget = int(spec.get("terminationGracePeriodSeconds", 30)) - int(
        pre_stop.get("sleep", {}).get("seconds", 0)
    )
    if started.popen.returncode is not None:
        return f"{started.name} had already exited with {started.popen.returncode}"
    try:
        code = started.popen.wait(budget)
    except subprocess.TimeoutExpired:
        started.popen.kill()
        started.popen.wait()
        return f"{started.name} was still running {budget}s after SIGTERM"
    if code != 0:
        return f"{started.name} exited with {code} after SIGTERM:\n{_tail(started.log)}"
    return None


def test_components_start_with_only_the_environment_the_manifests_give(
    infra: Any, rendered: dict[str, list[Doc]], tmp_path: Path
) -> None:
    pytest.importorskip("grpc_health.v1.health_pb2", reason="grpcio-health-checking missing")
    docs = rendered["dev"]
    deployments = app_deployments(docs)
    assert deployments, "the dev overlay renders no component"
    ports = {ref(d): _free_port() for d in deployments}
    entry = _entrypoint()
    started: list[Started] = []
    planned: list[tuple[str, Doc, Doc, dict[str, str], Doc]] = []
    migrating: list[subprocess.Popen[bytes]] = []
    try:
        for deployment in deployments:
            name = deployment["metadata"]["name"]
            container = pod_spec(deployment)["containers"][0]
            parsed = app_args(container)
            assert parsed is not None
            module, _ = parsed
            database_url = infra.create_database(name)
            port = ports[ref(deployment)]
            provided = {
                "DATABASE_URL": database_url,
                "NATS_URL": infra.nats_url,
                "GRPC_PORT": str(port),
                "HTTP_PORT": str(port),
            }
            for variable, callee in configured_callees(docs, deployment).items():
                provided[variable] = f"127.0.0.1:{ports[ref(callee)]}"
            env = resolve_env(container, docs, provided)
            missing = {"DATABASE_URL", "NATS_URL"} - set(env)
            assert not missing, f"{name}: the manifests give no {sorted(missing)}"
            assert "GRPC_PORT" in env or "HTTP_PORT" in env, f"{name}: no listening port"
            env.pop("OTEL_EXPORTER_OTLP_ENDPOINT", None)

            migration = _migration_container(docs, module)
            migration_env = resolve_env(migration, docs, provided)
            migration_env.pop("OTEL_EXPORTER_OTLP_ENDPOINT", None)
            planned.append((name, deployment, container, env, migration))
            # Each component's migration runs beside the others' (separate databases), as the
            # pods' init containers do; a server starts only after its own has finished.
            migrating.append(
                subprocess.Popen(
                    [*entry, *migration["args"]],
                    env={**migration_env, **_base_env()},
                    stdout=subprocess.DEVNULL,
                    stderr=subprocess.PIPE,
                    start_new_session=True,
                )
            )
        for (name, deployment, container, env, migration), popen in zip(
            planned, migrating, strict=True
        ):
            _, stderr = popen.communicate(timeout=MIGRATION_SECONDS)
            assert popen.returncode == 0, (
                f"{name}: `{' '.join(migration['args'])}` failed:\n"
                + stderr.decode(errors="replace")[-3000:]
            )
            log = tmp_path / f"{name}.log"
            with log.open("wb") as handle:
                server = subprocess.Popen(
                    [*entry, *container["args"]],
                    env={**env, **_base_env()},
                    stdout=handle,
                    stderr=subprocess.STDOUT,
                    start_new_session=True,
                )
            started.append(
                Started(name, deployment, container, server, log, ports[ref(deployment)])
            )

        deadline = time.monotonic() + STARTUP_SECONDS
        waiting = list(started)
        while waiting:
            for component in waiting:
                component.alive_or_fail()
            waiting = [c for c in waiting if not _ready(c)]
            if waiting and time.monotonic() > deadline:
                details = "\n\n".join(f"{c.name}:\n{_tail(c.log)}" for c in waiting)
                pytest.fail(f"not ready after {STARTUP_SECONDS:g}s:\n{details}", pytrace=False)
            if waiting:
                time.sleep(0.2)

        for component in started:  # all at once, as a rollout's pods get theirs
            if component.popen.poll() is None:
                component.popen.send_signal(signal.SIGTERM)
        problems = [p for p in (_stop(c) for c in started) if p is not None]
        assert not problems, "\n\n".join(problems)
    finally:
        for popen in migrating:
            if popen.poll() is None:
                popen.kill()
                popen.wait()
        for component in started:
            if component.popen.poll() is None:
                component.popen.kill()
                component.popen.wait()
