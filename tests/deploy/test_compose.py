"""The compose stack: each Omnitill container is configured by its environment alone, has a
health check, waits for PostgreSQL, NATS and its migration, and gets the same variables as in
Kubernetes."""

from __future__ import annotations

import re
from typing import Any

import pytest
import yaml
from deploy_manifests import DEPLOY, Doc, app_deployments, env_sources, pod_spec

COMPOSE = DEPLOY / "compose.yaml"
APP_MODULE = re.compile(r"^pos_[a-z][a-z0-9_]*$")


def _compose() -> dict[str, Any]:
    data: dict[str, Any] = yaml.safe_load(COMPOSE.read_text())
    return data


def _apps(command: str) -> dict[str, dict[str, Any]]:
    """Services running `pos_<x> <command>` from the Omnitill image."""
    return {
        name: service
        for name, service in _compose()["services"].items()
        if str(service.get("image", "")).startswith("omnitill:")
        and len(service.get("command") or []) == 2
        and APP_MODULE.match(service["command"][0])
        and service["command"][1] == command
    }


def test_compose_runs_the_platform() -> None:
    services = _compose()["services"]
    assert {"postgres", "nats", "otel-collector", "jaeger"} <= set(services)
    assert "--jetstream" in services["nats"]["command"]
    modules = {s["command"][0] for s in _apps("serve").values()}
    assert {
        "pos_inventory",
        "pos_promotion",
        "pos_customer",
        "pos_payment",
        "pos_order",
        "pos_gateway",
    } <= modules


@pytest.mark.parametrize("name", sorted(_apps("serve")))
def test_each_server_is_configured_by_environment_only(name: str) -> None:
    service = _apps("serve")[name]
    for key in ("volumes", "configs", "secrets", "env_file", "entrypoint"):
        assert key not in service, f"{name}: {key} (configuration must come from environment)"
    environment = service["environment"]
    assert isinstance(environment, dict)
    assert environment["DATABASE_URL"].startswith("postgresql://")
    assert environment["NATS_URL"].startswith("nats://")
    assert service["healthcheck"]["test"], f"{name}: no health check"
    assert service.get("read_only") is True and service.get("cap_drop") == ["ALL"]


@pytest.mark.parametrize("name", sorted(_apps("serve")))
def test_each_server_waits_for_postgres_nats_and_its_migration(name: str) -> None:
    service = _apps("serve")[name]
    depends = service["depends_on"]
    assert depends["postgres"]["condition"] == "service_healthy"
    assert depends["nats"]["condition"] == "service_healthy"
    migrations = {m["command"][0]: migration_name for migration_name, m in _apps("migrate").items()}
    migration = migrations.get(service["command"][0])
    assert migration is not None, f"{name}: no migration service"
    assert depends[migration]["condition"] == "service_completed_successfully"
    assert (
        _apps("migrate")[migration]["environment"]["DATABASE_URL"]
        == (service["environment"]["DATABASE_URL"])
    )


def test_postgres_creates_the_database_each_server_uses() -> None:
    script = (DEPLOY / "postgres" / "init-databases.sh").read_text()
    components = re.search(r"for component in ([a-z ]+); do", script)
    assert components is not None
    created = {f"pos_{c}" for c in components.group(1).split()}
    for name, service in _apps("serve").items():
        url = service["environment"]["DATABASE_URL"]
        database = url.rsplit("/", 1)[1]
        user = url.split("://", 1)[1].split(":", 1)[0]
        assert database in created and user == database, name


def test_compose_gives_each_server_what_kubernetes_gives_it(
    rendered: dict[str, list[Doc]],
) -> None:
    docs = rendered["dev"]
    config = next(
        d
        for d in docs
        if d["kind"] == "ConfigMap" and d["metadata"]["name"].startswith("omnitill-config")
    )
    # By name: one program may run as two servers in different roles (the dispatcher).
    servers = _apps("serve")
    for deployment in app_deployments(docs):
        container = pod_spec(deployment)["containers"][0]
        name = deployment["metadata"]["name"]
        assert name in servers, f"{name} runs in Kubernetes but not in compose"
        assert servers[name]["command"][0] == container["args"][0], name
        expected = set(env_sources(container)) | set(config["data"])
        missing = expected - set(servers[name]["environment"])
        assert not missing, f"{name}: compose lacks {sorted(missing)}"
        # A role is a setting of the Deployment itself: the same in both.
        for variable, source in env_sources(container).items():
            if variable.endswith("_ROLE"):
                assert servers[name]["environment"][variable] == source["value"], name
