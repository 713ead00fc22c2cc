"""What the deployment tests share: rendering the overlays, reading workloads and containers,
resolving a container's environment, and deciding whether NetworkPolicies let a pod reach
another. Nothing here knows the list of components: it reads whatever the overlays render.
"""

from __future__ import annotations

import base64
import re
import shutil
import subprocess
import sys
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

REPO = Path(__file__).resolve().parents[2]
K8S = REPO / "k8s"
DEPLOY = REPO / "deploy"
OVERLAYS = ("dev", "prod")
NAMESPACE = "omnitill"

Doc = dict[str, Any]

WORKLOAD_KINDS = {"Deployment", "StatefulSet", "DaemonSet", "ReplicaSet", "Job", "CronJob", "Pod"}
LONG_RUNNING_KINDS = {"Deployment", "StatefulSet", "DaemonSet", "ReplicaSet"}
# Custom resources: kubernetes-validate has no schema for them (see test_k8s_validate.py):
# CloudNativePG's clusters, cert-manager's issuers and certificates, and the Gateway API's
# route (checked in test_k8s_tls.py).
CUSTOM_RESOURCE_GROUPS = {"postgresql.cnpg.io", "cert-manager.io", "gateway.networking.k8s.io"}
# `python -m pos_<component> serve|migrate`, as args to the image's ENTRYPOINT ["python", "-m"].
APP_ARGS = re.compile(r"^pos_[a-z][a-z0-9_]*$")


def tool(name: str) -> str | None:
    """A command-line tool installed beside this interpreter (the project's virtualenv, whose
    requirements pin it) or else on PATH."""
    sibling = Path(sys.executable).parent / name
    if sibling.exists():
        return str(sibling)
    return shutil.which(name)


def render(overlay: str, kubectl: str) -> list[Doc]:
    out = subprocess.run(
        [kubectl, "kustomize", str(K8S / "overlays" / overlay)],
        check=True,
        capture_output=True,
        text=True,
    )
    return [doc for doc in yaml.safe_load_all(out.stdout) if doc]


def ref(doc: Doc) -> str:
    return f"{doc['kind']}/{doc['metadata']['name']}"


def api_group(doc: Doc) -> str:
    api_version = str(doc["apiVersion"])
    return api_version.split("/")[0] if "/" in api_version else ""


def find(docs: list[Doc], kind: str, name: str) -> Doc | None:
    for doc in docs:
        if doc["kind"] == kind and doc["metadata"]["name"] == name:
            return doc
    return None


def of_kind(docs: list[Doc], kind: str) -> list[Doc]:
    return [doc for doc in docs if doc["kind"] == kind]


# --- workloads -------------------------------------------------------------------------------


def workloads(docs: list[Doc]) -> list[Doc]:
    return [doc for doc in docs if doc["kind"] in WORKLOAD_KINDS]


def pod_template(doc: Doc) -> Doc:
    if doc["kind"] == "Pod":
        return doc
    if doc["kind"] == "CronJob":
        template: Doc = doc["spec"]["jobTemplate"]["spec"]["template"]
        return template
    template = doc["spec"]["template"]
    return template


def pod_spec(doc: Doc) -> Doc:
    spec: Doc = pod_template(doc)["spec"]
    return spec


def pod_labels(doc: Doc) -> dict[str, str]:
    labels: dict[str, str] = pod_template(doc).get("metadata", {}).get("labels", {})
    return labels


def all_containers(spec: Doc) -> list[Doc]:
    return [*spec.get("initContainers", []), *spec.get("containers", [])]


def app_args(container: Doc) -> tuple[str, str] | None:
    """(module, command) for a container running `python -m pos_<x> serve|migrate`."""
    args = container.get("args") or []
    if len(args) >= 2 and APP_ARGS.match(str(args[0])) and args[1] in {"serve", "migrate"}:
        return str(args[0]), str(args[1])
    return None


def app_deployments(docs: list[Doc]) -> list[Doc]:
    """Deployments whose first container serves one of our components."""
    found = []
    for doc in of_kind(docs, "Deployment"):
        parsed = app_args(pod_spec(doc)["containers"][0])
        if parsed is not None and parsed[1] == "serve":
            found.append(doc)
    return found


def named_ports(spec: Doc) -> dict[str, int]:
    return {
        port["name"]: int(port["containerPort"])
        for container in spec.get("containers", [])
        for port in container.get("ports", [])
        if "name" in port
    }


# --- environment -----------------------------------------------------------------------------


def _data(doc: Doc) -> dict[str, str]:
    values = {k: str(v) for k, v in (doc.get("data") or {}).items()}
    if doc["kind"] == "Secret":
        values = {k: base64.b64decode(v).decode() for k, v in values.items()}
        values.update({k: str(v) for k, v in (doc.get("stringData") or {}).items()})
    return values


def resolve_env(container: Doc, docs: list[Doc], provided: Mapping[str, str]) -> dict[str, str]:
    """The environment a container gets, with ConfigMap and Secret references looked up in the
    rendered documents. `provided` replaces variables the manifests define (for example a
    database URL whose Secret an operator creates at run time): those are not looked up, and
    a variable the manifests do not define is not added."""
    env: dict[str, str] = {}
    for source in container.get("envFrom", []):
        prefix = source.get("prefix", "")
        for key, kind in (("configMapRef", "ConfigMap"), ("secretRef", "Secret")):
            if key not in source:
                continue
            name = source[key]["name"]
            doc = find(docs, kind, name)
            if doc is None:
                if source[key].get("optional"):
                    continue
                raise LookupError(f"{container['name']}: envFrom {kind} {name} is not rendered")
            env.update({prefix + k: v for k, v in _data(doc).items()})
    for item in container.get("env", []):
        name = item["name"]
        if name in provided:
            env[name] = provided[name]
            continue
        if "value" in item:
            env[name] = str(item["value"])
            continue
        source = item.get("valueFrom", {})
        for key, kind in (("configMapKeyRef", "ConfigMap"), ("secretKeyRef", "Secret")):
            if key not in source:
                continue
            wanted = source[key]
            doc = find(docs, kind, wanted["name"])
            values = _data(doc) if doc is not None else {}
            if wanted["key"] in values:
                env[name] = values[wanted["key"]]
            elif not wanted.get("optional"):
                raise LookupError(
                    f"{container['name']}: {name} refers to {kind} {wanted['name']} key "
                    f"{wanted['key']}, which is not rendered and not provided by the test"
                )
            break
        else:
            if source:
                raise LookupError(f"{container['name']}: {name} has a source this cannot read")
            env[name] = ""
    # Replace only what the manifests define: a variable they forgot must stay missing.
    env.update({name: value for name, value in provided.items() if name in env})
    return env


def env_sources(container: Doc) -> dict[str, Doc]:
    """Each explicitly named variable's definition (value or valueFrom)."""
    return {item["name"]: item for item in container.get("env", [])}


# --- NetworkPolicies -------------------------------------------------------------------------


@dataclass(frozen=True)
class Endpoint:
    """A pod as NetworkPolicies see it: its namespace (and that namespace's labels), its labels
    and its named ports."""

    name: str
    labels: Mapping[str, str]
    namespace: str = NAMESPACE
    ports: Mapping[str, int] = field(default_factory=dict)

    @property
    def namespace_labels(self) -> dict[str, str]:
        return {"kubernetes.io/metadata.name": self.namespace}


def matches(selector: Doc, labels: Mapping[str, str]) -> bool:
    for key, value in (selector.get("matchLabels") or {}).items():
        if labels.get(key) != value:
            return False
    for expression in selector.get("matchExpressions") or []:
        key, operator = expression["key"], expression["operator"]
        values = expression.get("values") or []
        if operator == "In" and labels.get(key) not in values:
            return False
        if operator == "NotIn" and key in labels and labels[key] in values:
            return False
        if operator == "Exists" and key not in labels:
            return False
        if operator == "DoesNotExist" and key in labels:
            return False
    return True


def _peer_matches(peer: Doc, policy_namespace: str, endpoint: Endpoint) -> bool:
    if "ipBlock" in peer:
        # CIDR rules address things outside the cluster (the API server here), not pods.
        return False
    if "namespaceSelector" in peer:
        in_namespace = matches(peer["namespaceSelector"], endpoint.namespace_labels)
    else:
        in_namespace = endpoint.namespace == policy_namespace
    pod_selector = peer.get("podSelector")
    return in_namespace and (pod_selector is None or matches(pod_selector, endpoint.labels))


def _port_matches(rule: Doc, port: int, protocol: str, destination: Endpoint) -> bool:
    ports = rule.get("ports")
    if not ports:
        return True
    for entry in ports:
        if entry.get("protocol", "TCP") != protocol:
            continue
        if "port" not in entry:
            return True
        wanted = entry["port"]
        number = destination.ports.get(wanted) if isinstance(wanted, str) else int(wanted)
        if number is None:
            continue
        if number == port or (number <= port <= int(entry.get("endPort", number))):
            return True
    return False


def _policy_types(policy: Doc) -> set[str]:
    spec = policy["spec"]
    if "policyTypes" in spec:
        return set(spec["policyTypes"])
    return {"Ingress", "Egress"} if "egress" in spec else {"Ingress"}


def policies_selecting(policies: list[Doc], endpoint: Endpoint, direction: str) -> list[Doc]:
    return [
        policy
        for policy in policies
        if policy["metadata"].get("namespace", NAMESPACE) == endpoint.namespace
        and direction in _policy_types(policy)
        and matches(policy["spec"].get("podSelector") or {}, endpoint.labels)
    ]


def allowed(
    policies: list[Doc],
    source: Endpoint,
    destination: Endpoint,
    port: int,
    protocol: str = "TCP",
) -> bool:
    """Whether a connection from source to destination:port is allowed: both the source's
    egress and the destination's ingress must admit it (an unselected side admits anything)."""
    egress = policies_selecting(policies, source, "Egress")
    if egress and not any(
        _port_matches(rule, port, protocol, destination)
        and any(
            _peer_matches(peer, policy["metadata"].get("namespace", NAMESPACE), destination)
            for peer in rule.get("to") or [{"namespaceSelector": {}}]
        )
        for policy in egress
        for rule in policy["spec"].get("egress") or []
    ):
        return False
    ingress = policies_selecting(policies, destination, "Ingress")
    return not ingress or any(
        _port_matches(rule, port, protocol, destination)
        and any(
            _peer_matches(peer, policy["metadata"].get("namespace", NAMESPACE), source)
            for peer in rule.get("from") or [{"namespaceSelector": {}}]
        )
        for policy in ingress
        for rule in policy["spec"].get("ingress") or []
    )


def workload_endpoint(doc: Doc) -> Endpoint:
    return Endpoint(
        name=ref(doc),
        labels=pod_labels(doc),
        namespace=doc["metadata"].get("namespace", NAMESPACE),
        ports=named_ports(pod_spec(doc)),
    )


def database_endpoint(cluster: Doc) -> Endpoint:
    """A CloudNativePG instance pod: the operator labels it with its cluster's name."""
    inherited = cluster["spec"].get("inheritedMetadata", {}).get("labels", {})
    return Endpoint(
        name=ref(cluster),
        labels={**inherited, "cnpg.io/cluster": cluster["metadata"]["name"]},
        namespace=cluster["metadata"].get("namespace", NAMESPACE),
        ports={"postgresql": 5432},
    )


DNS = Endpoint(
    name="kube-dns", labels={"k8s-app": "kube-dns"}, namespace="kube-system", ports={"dns": 53}
)


def endpoints(docs: list[Doc]) -> Iterator[Endpoint]:
    for doc in workloads(docs):
        yield workload_endpoint(doc)
    for cluster in docs:
        if api_group(cluster) == "postgresql.cnpg.io" and cluster["kind"] == "Cluster":
            yield database_endpoint(cluster)


def service_backends(docs: list[Doc], service_name: str) -> list[Doc]:
    """The workloads whose pods a Service selects."""
    service = find(docs, "Service", service_name)
    if service is None:
        return []
    selector = service["spec"].get("selector") or {}
    return [
        doc
        for doc in workloads(docs)
        if selector and all(pod_labels(doc).get(k) == v for k, v in selector.items())
    ]


def configured_callees(docs: list[Doc], deployment: Doc) -> dict[str, Doc]:
    """The Deployments a Deployment is configured to call: each *_ADDR variable's host names a
    Service, whose selector names the pods behind it."""
    container = pod_spec(deployment)["containers"][0]
    callees: dict[str, Doc] = {}
    for variable, item in env_sources(container).items():
        if not variable.endswith("_ADDR") or "value" not in item:
            continue
        host = str(item["value"]).rsplit(":", 1)[0].split(".")[0]
        for backend in service_backends(docs, host):
            callees[variable] = backend
    return callees
