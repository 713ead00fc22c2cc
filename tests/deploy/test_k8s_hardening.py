"""Every workload every overlay renders is hardened, probed, drains gracefully and comes with
its Service, disruption budget, autoscaler, NetworkPolicy, migration Job and database.

The rules are checked on whatever is rendered, so a component added later is held to them
without anyone adding it to a list here.
"""

from __future__ import annotations

from typing import Any

import pytest
from deploy_manifests import (
    LONG_RUNNING_KINDS,
    Doc,
    all_containers,
    app_args,
    app_deployments,
    env_sources,
    find,
    of_kind,
    pod_labels,
    pod_spec,
    ref,
    resolve_env,
    workloads,
)

# Seconds a gateway (uvicorn) waits for in-flight requests after SIGTERM (pos_gateway).
HTTP_DRAIN_SECONDS = 10
MIN_TERMINATION_GRACE_SECONDS = 30


def _effective(container: Doc, pod: Doc, key: str) -> Any:
    """A security setting as the kubelet applies it: the container's, else the pod's."""
    own = (container.get("securityContext") or {}).get(key)
    return own if own is not None else (pod.get("securityContext") or {}).get(key)


def hardening_violations(doc: Doc) -> list[str]:
    spec = pod_spec(doc)
    problems = []
    for flag in ("hostNetwork", "hostPID", "hostIPC"):
        if spec.get(flag):
            problems.append(f"{flag} is on")
    if spec.get("automountServiceAccountToken") is not False:
        problems.append("automountServiceAccountToken is not false")
    tmp_volumes = {v["name"] for v in spec.get("volumes", []) if "emptyDir" in v}
    for container in all_containers(spec):
        name = container["name"]
        context = container.get("securityContext") or {}
        if _effective(container, spec, "runAsNonRoot") is not True:
            problems.append(f"{name}: runAsNonRoot is not true")
        if _effective(container, spec, "runAsUser") == 0:
            problems.append(f"{name}: runs as uid 0")
        if context.get("readOnlyRootFilesystem") is not True:
            problems.append(f"{name}: root filesystem is writable")
        if context.get("allowPrivilegeEscalation") is not False:
            problems.append(f"{name}: allowPrivilegeEscalation is not false")
        if context.get("privileged"):
            problems.append(f"{name}: privileged")
        capabilities = context.get("capabilities") or {}
        if "ALL" not in (capabilities.get("drop") or []):
            problems.append(f"{name}: capabilities are not all dropped")
        if capabilities.get("add"):
            problems.append(f"{name}: adds capabilities {capabilities['add']}")
        seccomp = _effective(container, spec, "seccompProfile") or {}
        if seccomp.get("type") != "RuntimeDefault":
            problems.append(f"{name}: seccompProfile is not RuntimeDefault")
        resources = container.get("resources") or {}
        for bound in ("requests", "limits"):
            for resource in ("cpu", "memory"):
                if not (resources.get(bound) or {}).get(resource):
                    problems.append(f"{name}: no {resource} {bound[:-1]}")
        tmp_mounts = [
            m
            for m in container.get("volumeMounts", [])
            if m["mountPath"] == "/tmp" and m["name"] in tmp_volumes
        ]
        if not tmp_mounts:
            problems.append(f"{name}: no emptyDir mounted at /tmp")
        image = str(container.get("image", ""))
        tag = image.rsplit("/", 1)[-1].partition(":")[2]
        if "@sha256:" not in image and (not tag or tag == "latest"):
            problems.append(f"{name}: image {image!r} is not pinned to a tag or digest")
    return problems


def test_every_workload_is_hardened(docs: list[Doc], overlay: str) -> None:
    found = workloads(docs)
    assert found, "nothing rendered"
    problems = [f"{ref(doc)}: {p}" for doc in found for p in hardening_violations(doc)]
    assert not problems, f"{overlay} overlay:\n" + "\n".join(problems)


def test_hardening_check_catches_a_lapse(docs: list[Doc]) -> None:
    """The rules above are not vacuous: weakening one setting is reported."""
    import copy

    doc = copy.deepcopy(app_deployments(docs)[0])
    container = pod_spec(doc)["containers"][0]
    container["securityContext"]["readOnlyRootFilesystem"] = False
    del container["resources"]["limits"]
    problems = hardening_violations(doc)
    assert any("writable" in p for p in problems)
    assert any("cpu limit" in p for p in problems)


def _prestop_sleep(container: Doc) -> int:
    pre_stop = (container.get("lifecycle") or {}).get("preStop") or {}
    return int((pre_stop.get("sleep") or {}).get("seconds", 0))


def test_long_running_workloads_shut_down_gracefully(docs: list[Doc], overlay: str) -> None:
    problems = []
    for doc in workloads(docs):
        if doc["kind"] not in LONG_RUNNING_KINDS:
            continue
        spec = pod_spec(doc)
        grace = int(spec.get("terminationGracePeriodSeconds", 30))
        if grace < MIN_TERMINATION_GRACE_SECONDS:
            problems.append(f"{ref(doc)}: terminationGracePeriodSeconds {grace} < 30")
        for container in spec["containers"]:
            if not (container.get("lifecycle") or {}).get("preStop"):
                problems.append(f"{ref(doc)}/{container['name']}: no preStop hook")
                continue
            parsed = app_args(container)
            if parsed is None:
                continue
            # Ours: the preStop pause, then the drain the process does after SIGTERM, must end
            # before the kubelet's SIGKILL.
            env = resolve_env(
                container,
                docs,
                provided={
                    "DATABASE_URL": "",
                    "GATEWAY_SECRET_KEY": "",
                    "TOKEN_SIGNING_KEYS": "",
                    "DISPATCHER_SECRET_KEYS": "",
                    "GIFT_CARD_CODE_KEY": "",
                    "COUPON_CODE_KEY": "",
                    "CODE_FINGERPRINT_KEY": "",
                },
            )
            if "GRPC_PORT" in env:
                drain = 2 * float(env.get("SHUTDOWN_GRACE_SECONDS", "10"))
            else:
                drain = HTTP_DRAIN_SECONDS
            needed = _prestop_sleep(container) + drain
            if grace <= needed:
                problems.append(
                    f"{ref(doc)}: grace {grace}s does not cover preStop + drain ({needed:g}s)"
                )
    assert not problems, f"{overlay} overlay:\n" + "\n".join(problems)


def test_probes_ask_the_process_itself(docs: list[Doc], overlay: str) -> None:
    """gRPC services: native gRPC probes on grpc.health.v1 at their gRPC port (at the
    plaintext health port when they serve TLS). The gateway: /readyz for readiness and /healthz
    for liveness, over HTTPS when it serves TLS. Everything long-running: both."""
    problems = []
    for doc in workloads(docs):
        if doc["kind"] not in LONG_RUNNING_KINDS:
            continue
        for container in pod_spec(doc)["containers"]:
            where = f"{ref(doc)}/{container['name']}"
            readiness = container.get("readinessProbe")
            liveness = container.get("livenessProbe")
            if not readiness or not liveness:
                problems.append(f"{where}: needs readiness and liveness probes")
                continue
            if app_args(container) is None:
                continue
            ports = {p.get("name"): p["containerPort"] for p in container.get("ports", [])}
            env = env_sources(container)
            if "grpc" in ports:
                # With TLS on (prod), the kubelet's probe, which speaks no TLS, asks the
                # process's plaintext health-only port instead.
                health = env.get("GRPC_HEALTH_PORT", {}).get("value")
                probed = int(health) if health else ports["grpc"]
                for kind, probe in (("readiness", readiness), ("liveness", liveness)):
                    grpc = probe.get("grpc") or {}
                    if grpc.get("port") != probed or grpc.get("service", ""):
                        problems.append(f"{where}: {kind} is not gRPC health on {probed}")
                if env.get("GRPC_PORT", {}).get("value") != str(ports["grpc"]):
                    problems.append(f"{where}: GRPC_PORT is not the gRPC port")
            elif "http" in ports:
                scheme = "HTTPS" if "HTTP_TLS_CERT" in env else "HTTP"
                for kind, probe, path in (
                    ("readiness", readiness, "/readyz"),
                    ("liveness", liveness, "/healthz"),
                ):
                    http = probe.get("httpGet") or {}
                    if http.get("path") != path or http.get("port") not in ("http", ports["http"]):
                        problems.append(f"{where}: {kind} is not GET {path} on the HTTP port")
                    if http.get("scheme", "HTTP") != scheme:
                        problems.append(f"{where}: {kind} does not use {scheme}")
            else:
                problems.append(f"{where}: serves neither a grpc nor an http port")
    assert not problems, f"{overlay} overlay:\n" + "\n".join(problems)


def _selects(selector: dict[str, str], doc: Doc) -> bool:
    labels = pod_labels(doc)
    return bool(selector) and all(labels.get(k) == v for k, v in selector.items())


def test_every_deployment_has_its_companions(docs: list[Doc], overlay: str) -> None:
    problems = []
    policies = [p for p in of_kind(docs, "NetworkPolicy") if p["spec"].get("podSelector")]
    for doc in of_kind(docs, "Deployment"):
        name = ref(doc)
        if not any(
            _selects(s["spec"].get("selector") or {}, doc) for s in of_kind(docs, "Service")
        ):
            problems.append(f"{name}: no Service")
        if not any(
            _selects(b["spec"]["selector"].get("matchLabels") or {}, doc)
            for b in of_kind(docs, "PodDisruptionBudget")
        ):
            problems.append(f"{name}: no PodDisruptionBudget")
        if not any(
            _selects(p["spec"]["podSelector"].get("matchLabels") or {}, doc) for p in policies
        ):
            problems.append(f"{name}: no NetworkPolicy of its own")
    assert not problems, f"{overlay} overlay:\n" + "\n".join(problems)


def test_every_service_has_a_migration_job_and_a_database(docs: list[Doc], overlay: str) -> None:
    problems = []
    jobs = {}
    for job in of_kind(docs, "Job"):
        parsed = app_args(pod_spec(job)["containers"][0])
        if parsed is not None and parsed[1] == "migrate":
            jobs[parsed[0]] = job
    clusters = {c["metadata"]["name"] for c in docs if c["kind"] == "Cluster"}
    for doc in app_deployments(docs):
        container = pod_spec(doc)["containers"][0]
        module = container["args"][0]
        database = env_sources(container).get("DATABASE_URL", {})
        secret = database.get("valueFrom", {}).get("secretKeyRef", {})
        if not secret:
            problems.append(f"{ref(doc)}: DATABASE_URL does not come from a Secret")
            continue
        # CloudNativePG writes <cluster>-app for the application role of <cluster>.
        if secret["name"].removesuffix("-app") not in clusters:
            problems.append(f"{ref(doc)}: no CloudNativePG Cluster behind {secret['name']}")
        migration = jobs.get(module)
        if migration is None:
            problems.append(f"{ref(doc)}: no Job running `{module} migrate`")
            continue
        job_env = env_sources(pod_spec(migration)["containers"][0]).get("DATABASE_URL", {})
        if job_env.get("valueFrom") != database.get("valueFrom"):
            problems.append(f"{ref(migration)}: migrates another database than {ref(doc)} uses")
        annotations = migration["metadata"].get("annotations", {})
        if int(annotations.get("argocd.argoproj.io/sync-wave", "0")) >= 0:
            problems.append(f"{ref(migration)}: not ordered before the Deployments (sync-wave < 0)")
    assert not problems, f"{overlay} overlay:\n" + "\n".join(problems)


def test_app_containers_run_the_image_entrypoint(docs: list[Doc]) -> None:
    """No `command`: the image's ENTRYPOINT ["python", "-m"] runs `pos_<x> serve|migrate`."""
    for doc in workloads(docs):
        for container in pod_spec(doc)["containers"]:
            if app_args(container) is not None:
                assert "command" not in container, ref(doc)


def _autoscaler_for(docs: list[Doc], deployment: Doc) -> Doc | None:
    for hpa in of_kind(docs, "HorizontalPodAutoscaler"):
        target = hpa["spec"]["scaleTargetRef"]
        if target["kind"] == "Deployment" and target["name"] == deployment["metadata"]["name"]:
            return hpa
    return None


@pytest.mark.parametrize("component", ["payment", "inventory"])
def test_payment_and_inventory_autoscale_everywhere(
    rendered: dict[str, list[Doc]], component: str
) -> None:
    for docs in rendered.values():
        deployment = find(docs, "Deployment", component)
        assert deployment is not None
        assert _autoscaler_for(docs, deployment) is not None


def test_dev_runs_one_replica_of_each(rendered: dict[str, list[Doc]]) -> None:
    docs = rendered["dev"]
    for doc in of_kind(docs, "Deployment"):
        assert doc["spec"].get("replicas") == 1, ref(doc)
        hpa = _autoscaler_for(docs, doc)
        if hpa is not None:
            assert hpa["spec"]["maxReplicas"] == 1, ref(hpa)
    for cluster in of_kind(docs, "Cluster"):
        assert cluster["spec"]["instances"] == 1, ref(cluster)


def test_prod_autoscales_every_deployment(rendered: dict[str, list[Doc]]) -> None:
    docs = rendered["prod"]
    for doc in of_kind(docs, "Deployment"):
        hpa = _autoscaler_for(docs, doc)
        assert hpa is not None, f"{ref(doc)}: no HorizontalPodAutoscaler in prod"
        assert hpa["spec"]["minReplicas"] >= 3, ref(hpa)
        assert hpa["spec"]["maxReplicas"] > hpa["spec"]["minReplicas"], ref(hpa)
        # The autoscaler owns the replica count: an apply must not reset it.
        assert "replicas" not in doc["spec"], ref(doc)
    for cluster in of_kind(docs, "Cluster"):
        assert cluster["spec"]["instances"] >= 3, ref(cluster)


def test_nats_is_a_three_node_jetstream_cluster(docs: list[Doc]) -> None:
    nats = find(docs, "StatefulSet", "nats")
    assert nats is not None
    assert nats["spec"]["replicas"] == 3
    headless = find(docs, "Service", nats["spec"]["serviceName"])
    assert headless is not None and headless["spec"]["clusterIP"] == "None"
    claims = nats["spec"]["volumeClaimTemplates"]
    mounts = {m["name"]: m["mountPath"] for m in pod_spec(nats)["containers"][0]["volumeMounts"]}
    assert [c["metadata"]["name"] for c in claims] == ["data"] and mounts["data"] == "/data"
    config = next(
        c for c in of_kind(docs, "ConfigMap") if c["metadata"]["name"].startswith("nats-config")
    )
    conf = config["data"]["nats.conf"]
    assert "store_dir: /data" in conf
    for ordinal in range(3):
        assert f"nats://nats-{ordinal}.{headless['metadata']['name']}:6222" in conf
