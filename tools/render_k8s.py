"""Write the per-service Kubernetes manifests from one table: who exists and who calls whom.

    python tools/render_k8s.py          # rewrite the generated files
    python tools/render_k8s.py --check  # exit 1 if a generated file differs (tests run this)

The call graph decides three things that must agree: the *_ADDR variables a caller gets, the
ingress a callee's NetworkPolicy opens, and the egress the caller's NetworkPolicy opens. Writing
them from one table keeps them in step; the generated YAML is committed so that
`kubectl kustomize k8s/overlays/<env>` needs nothing but kubectl. Everything shared (NATS, the
default-deny policy, overlays and their patches) is written by hand.

The JetStream stream definitions applied by the nats-streams Job are written from the kit's own
stream configuration (pos_kit.streams), with 3 replicas, so the two cannot drift apart.
"""

from __future__ import annotations

import argparse
import json
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

ROOT = Path(__file__).resolve().parents[1]
K8S = ROOT / "k8s"

IMAGE = "omnitill"
UID = 10001
GRPC_PORT = 50051
HTTP_PORT = 8080
NATS_CLIENT_PORT = 4222
POSTGRES_PORT = 5432
OTLP_PORT = 4317
# Where traces go in the base: an OpenTelemetry Collector in this namespace (see k8s/README.md).
OBSERVABILITY_NAMESPACE = "observability"
# The namespace of the ingress controller that forwards public traffic to the gateway.
EDGE_NAMESPACE = "ingress-nginx"
PART_OF = "omnitill"
NATS_CLIENT_LABEL = "omnitill.io/nats-client"
STREAM_REPLICAS = 3

# A preStop pause lets endpoint removal reach every kube-proxy and client before SIGTERM.
PRESTOP_SLEEP_SECONDS = 5
# gRPC services: server.stop(SHUTDOWN_GRACE_SECONDS) drains calls, then the relay and consumers
# get as long again (pos_kit.grpc_server.GrpcService.stop). SHUTDOWN_GRACE_SECONDS is set in the
# omnitill-config ConfigMap; 5 + 15 + 15 leaves a margin under 45.
GRPC_TERMINATION_GRACE_SECONDS = 45
# The gateway: uvicorn waits up to 10 s for in-flight requests.
HTTP_TERMINATION_GRACE_SECONDS = 30


@dataclass(frozen=True)
class Component:
    name: str
    protocol: str  # "grpc" for the services, "http" for the gateway
    calls: tuple[str, ...] = ()
    # payment (Black Friday) and inventory (flash-sale reads) scale in every environment.
    autoscale_in_base: bool = False

    @property
    def module(self) -> str:
        return f"pos_{self.name}"

    @property
    def port(self) -> int:
        return GRPC_PORT if self.protocol == "grpc" else HTTP_PORT

    @property
    def port_name(self) -> str:
        return self.protocol

    @property
    def database_cluster(self) -> str:
        return f"pg-{self.name}"

    @property
    def database_secret(self) -> str:
        # CloudNativePG writes the application credentials, `uri` included, to <cluster>-app.
        return f"{self.database_cluster}-app"

    @property
    def database_name(self) -> str:
        # pos_<name> rather than <name>: "order" is a reserved word in SQL.
        return self.module


SERVICES = ("inventory", "promotion", "customer", "payment", "order")
COMPONENTS: tuple[Component, ...] = (
    Component("inventory", "grpc", autoscale_in_base=True),
    Component("promotion", "grpc"),
    Component("customer", "grpc"),
    Component("payment", "grpc", autoscale_in_base=True),
    Component("order", "grpc", calls=("inventory", "promotion", "payment")),
    Component("gateway", "http", calls=SERVICES),
)
BY_NAME = {c.name: c for c in COMPONENTS}

# Settings production adds to one component's environment (an overlay patch, generated).
# Production runs several gateway replicas: their rate limits share one store, or each
# credential would get one budget per replica.
PROD_ENV: dict[str, dict[str, str]] = {"gateway": {"RATE_LIMIT_STORE": "postgres"}}


# --- building blocks ------------------------------------------------------------------------------


def labels(name: str, component: str) -> dict[str, str]:
    return {
        "app.kubernetes.io/name": name,
        "app.kubernetes.io/component": component,
        "app.kubernetes.io/part-of": PART_OF,
    }


def selector(name: str, component: str) -> dict[str, str]:
    return {"app.kubernetes.io/name": name, "app.kubernetes.io/component": component}


def pod_security_context() -> dict[str, Any]:
    return {
        "runAsNonRoot": True,
        "runAsUser": UID,
        "runAsGroup": UID,
        "fsGroup": UID,
        "seccompProfile": {"type": "RuntimeDefault"},
    }


def container_security_context() -> dict[str, Any]:
    return {
        "allowPrivilegeEscalation": False,
        "readOnlyRootFilesystem": True,
        "runAsNonRoot": True,
        "capabilities": {"drop": ["ALL"]},
        "seccompProfile": {"type": "RuntimeDefault"},
    }


def tmp_volume() -> dict[str, Any]:
    return {"name": "tmp", "emptyDir": {"sizeLimit": "64Mi"}}


def tmp_mount() -> dict[str, Any]:
    # The container's own /tmp, on an emptyDir: the root filesystem is read-only.
    return {"name": "tmp", "mountPath": "/tmp"}  # noqa: S108


def dns_egress() -> dict[str, Any]:
    return {
        "to": [
            {
                "namespaceSelector": {
                    "matchLabels": {"kubernetes.io/metadata.name": "kube-system"}
                },
                "podSelector": {"matchLabels": {"k8s-app": "kube-dns"}},
            }
        ],
        "ports": [{"protocol": "UDP", "port": 53}, {"protocol": "TCP", "port": 53}],
    }


def database_egress(c: Component) -> dict[str, Any]:
    return {
        "to": [{"podSelector": {"matchLabels": {"cnpg.io/cluster": c.database_cluster}}}],
        "ports": [{"protocol": "TCP", "port": POSTGRES_PORT}],
    }


def database_url_env(c: Component) -> dict[str, Any]:
    return {
        "name": "DATABASE_URL",
        "valueFrom": {"secretKeyRef": {"name": c.database_secret, "key": "uri"}},
    }


def sync_wave(wave: int) -> dict[str, str]:
    """Argo CD applies lower waves first and waits for them to be healthy."""
    return {"argocd.argoproj.io/sync-wave": str(wave)}


# --- per component --------------------------------------------------------------------------------


def deployment(c: Component) -> dict[str, Any]:
    env: list[dict[str, Any]] = []
    if c.protocol == "grpc":
        env.append({"name": "GRPC_PORT", "value": str(GRPC_PORT)})
    else:
        env.append({"name": "HTTP_PORT", "value": str(HTTP_PORT)})
    env.append({"name": "OTEL_SERVICE_NAME", "value": f"pos-{c.name}"})
    env.append(database_url_env(c))
    for callee in c.calls:
        env.append({"name": f"{callee.upper()}_ADDR", "value": f"{callee}:{GRPC_PORT}"})
    if c.name == "gateway":
        # TOKEN_SIGNING_KEYS: the OAuth access-token keys, rotated as the gateway README says.
        for secret in ("GATEWAY_SECRET_KEY", "TOKEN_SIGNING_KEYS"):
            env.append(
                {
                    "name": secret,
                    "valueFrom": {"secretKeyRef": {"name": "gateway-secrets", "key": secret}},
                }
            )

    if c.protocol == "grpc":
        # Native gRPC probes ask grpc.health.v1 for the server as a whole (service "").
        readiness: dict[str, Any] = {"grpc": {"port": c.port}}
        liveness: dict[str, Any] = {"grpc": {"port": c.port}}
        startup: dict[str, Any] = {"grpc": {"port": c.port}}
        grace = GRPC_TERMINATION_GRACE_SECONDS
    else:
        readiness = {"httpGet": {"path": "/readyz", "port": c.port_name}}
        liveness = {"httpGet": {"path": "/healthz", "port": c.port_name}}
        startup = {"httpGet": {"path": "/healthz", "port": c.port_name}}
        grace = HTTP_TERMINATION_GRACE_SECONDS
    readiness.update(periodSeconds=5, timeoutSeconds=2, failureThreshold=2)
    liveness.update(periodSeconds=10, timeoutSeconds=2, failureThreshold=3)
    startup.update(periodSeconds=2, timeoutSeconds=2, failureThreshold=30)

    pod_labels = labels(c.name, "server") | {NATS_CLIENT_LABEL: "true"}
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": c.name, "labels": labels(c.name, "server")},
        "spec": {
            # No `replicas`: the overlays set it, or a HorizontalPodAutoscaler owns it.
            "revisionHistoryLimit": 5,
            "selector": {"matchLabels": selector(c.name, "server")},
            "strategy": {
                "type": "RollingUpdate",
                "rollingUpdate": {"maxSurge": "25%", "maxUnavailable": 0},
            },
            "template": {
                "metadata": {"labels": pod_labels},
                "spec": {
                    "automountServiceAccountToken": False,
                    # Service links would add variables such as NATS_PORT to the environment.
                    "enableServiceLinks": False,
                    "terminationGracePeriodSeconds": grace,
                    "securityContext": pod_security_context(),
                    "topologySpreadConstraints": [
                        {
                            "maxSkew": 1,
                            "topologyKey": key,
                            "whenUnsatisfiable": "ScheduleAnyway",
                            "labelSelector": {"matchLabels": selector(c.name, "server")},
                        }
                        for key in ("topology.kubernetes.io/zone", "kubernetes.io/hostname")
                    ],
                    "containers": [
                        {
                            "name": c.name,
                            "image": IMAGE,
                            "args": [c.module, "serve"],
                            "ports": [
                                {
                                    "name": c.port_name,
                                    "containerPort": c.port,
                                    "protocol": "TCP",
                                }
                            ],
                            "envFrom": [{"configMapRef": {"name": "omnitill-config"}}],
                            "env": env,
                            "resources": {
                                "requests": {"cpu": "100m", "memory": "192Mi"},
                                "limits": {"cpu": "1", "memory": "512Mi"},
                            },
                            "startupProbe": startup,
                            "readinessProbe": readiness,
                            "livenessProbe": liveness,
                            "lifecycle": {"preStop": {"sleep": {"seconds": PRESTOP_SLEEP_SECONDS}}},
                            "securityContext": container_security_context(),
                            "volumeMounts": [tmp_mount()],
                        }
                    ],
                    "volumes": [tmp_volume()],
                },
            },
        },
    }


def service(c: Component) -> dict[str, Any]:
    spec: dict[str, Any] = {
        "selector": selector(c.name, "server"),
        "ports": [
            {"name": c.port_name, "port": c.port, "targetPort": c.port_name, "protocol": "TCP"}
        ],
    }
    if c.protocol == "grpc":
        # Headless: callers resolve every ready pod, which lets a gRPC client balance per call
        # (round_robin) instead of pinning one long-lived connection to one pod.
        spec = {"clusterIP": "None", **spec}
    return {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": {"name": c.name, "labels": labels(c.name, "server")},
        "spec": spec,
    }


def disruption_budget(c: Component) -> dict[str, Any]:
    return {
        "apiVersion": "policy/v1",
        "kind": "PodDisruptionBudget",
        "metadata": {"name": c.name, "labels": labels(c.name, "server")},
        "spec": {
            # maxUnavailable, not minAvailable: a one-replica dev install can still drain a node.
            "maxUnavailable": 1,
            "selector": {"matchLabels": selector(c.name, "server")},
        },
    }


def autoscaler(c: Component) -> dict[str, Any]:
    return {
        "apiVersion": "autoscaling/v2",
        "kind": "HorizontalPodAutoscaler",
        "metadata": {"name": c.name, "labels": labels(c.name, "server")},
        "spec": {
            "scaleTargetRef": {"apiVersion": "apps/v1", "kind": "Deployment", "name": c.name},
            "minReplicas": 2,
            "maxReplicas": 6,
            "metrics": [
                {
                    "type": "Resource",
                    "resource": {
                        "name": "cpu",
                        "target": {"type": "Utilization", "averageUtilization": 70},
                    },
                }
            ],
            "behavior": {
                "scaleUp": {
                    "stabilizationWindowSeconds": 0,
                    "policies": [{"type": "Percent", "value": 100, "periodSeconds": 30}],
                },
                "scaleDown": {
                    "stabilizationWindowSeconds": 300,
                    "policies": [{"type": "Pods", "value": 1, "periodSeconds": 60}],
                },
            },
        },
    }


def callers_of(c: Component) -> list[Component]:
    return [other for other in COMPONENTS if c.name in other.calls]


def network_policy(c: Component) -> dict[str, Any]:
    ingress: list[dict[str, Any]] = []
    callers = callers_of(c)
    if callers:
        ingress.append(
            {
                "from": [
                    {"podSelector": {"matchLabels": selector(caller.name, "server")}}
                    for caller in callers
                ],
                "ports": [{"protocol": "TCP", "port": c.port}],
            }
        )
    if c.name == "gateway":
        ingress.append(
            {
                "from": [
                    {
                        "namespaceSelector": {
                            "matchLabels": {"kubernetes.io/metadata.name": EDGE_NAMESPACE}
                        }
                    }
                ],
                "ports": [{"protocol": "TCP", "port": c.port}],
            }
        )
    egress: list[dict[str, Any]] = [
        database_egress(c),
        {
            "to": [{"podSelector": {"matchLabels": {"app.kubernetes.io/name": "nats"}}}],
            "ports": [{"protocol": "TCP", "port": NATS_CLIENT_PORT}],
        },
    ]
    if c.calls:
        egress.append(
            {
                "to": [
                    {"podSelector": {"matchLabels": selector(callee, "server")}}
                    for callee in c.calls
                ],
                "ports": [{"protocol": "TCP", "port": GRPC_PORT}],
            }
        )
    egress.append(
        {
            "to": [
                {
                    "namespaceSelector": {
                        "matchLabels": {"kubernetes.io/metadata.name": OBSERVABILITY_NAMESPACE}
                    }
                }
            ],
            "ports": [{"protocol": "TCP", "port": OTLP_PORT}],
        }
    )
    egress.append(dns_egress())
    return {
        "apiVersion": "networking.k8s.io/v1",
        "kind": "NetworkPolicy",
        "metadata": {"name": c.name, "labels": labels(c.name, "server")},
        "spec": {
            "podSelector": {"matchLabels": selector(c.name, "server")},
            "policyTypes": ["Ingress", "Egress"],
            "ingress": ingress,
            "egress": egress,
        },
    }


def migration_job(c: Component) -> dict[str, Any]:
    return {
        "apiVersion": "batch/v1",
        "kind": "Job",
        "metadata": {
            "name": f"{c.name}-migrate",
            "labels": labels(c.name, "migration"),
            "annotations": {
                # Argo CD: run during every sync after the databases (wave -2) are healthy and
                # before the Deployments (wave 0); delete the previous run first, since a Job's
                # pod template cannot be changed in place. Without Argo CD, k8s/README.md gives
                # the order to apply by hand.
                "argocd.argoproj.io/hook": "Sync",
                "argocd.argoproj.io/hook-delete-policy": "BeforeHookCreation",
                **sync_wave(-1),
            },
        },
        "spec": {
            # The database may still be starting: retry for a while, then give up loudly.
            "backoffLimit": 6,
            "activeDeadlineSeconds": 900,
            "template": {
                "metadata": {"labels": labels(c.name, "migration")},
                "spec": {
                    "restartPolicy": "Never",
                    "automountServiceAccountToken": False,
                    "enableServiceLinks": False,
                    "securityContext": pod_security_context(),
                    "containers": [
                        {
                            "name": "migrate",
                            "image": IMAGE,
                            "args": [c.module, "migrate"],
                            "envFrom": [{"configMapRef": {"name": "omnitill-config"}}],
                            "env": [database_url_env(c)],
                            "resources": {
                                "requests": {"cpu": "50m", "memory": "128Mi"},
                                "limits": {"cpu": "500m", "memory": "256Mi"},
                            },
                            "securityContext": container_security_context(),
                            "volumeMounts": [tmp_mount()],
                        }
                    ],
                    "volumes": [tmp_volume()],
                },
            },
        },
    }


def migration_network_policy(c: Component) -> dict[str, Any]:
    return {
        "apiVersion": "networking.k8s.io/v1",
        "kind": "NetworkPolicy",
        "metadata": {"name": f"{c.name}-migrate", "labels": labels(c.name, "migration")},
        "spec": {
            "podSelector": {"matchLabels": selector(c.name, "migration")},
            "policyTypes": ["Ingress", "Egress"],
            "ingress": [],
            "egress": [database_egress(c), dns_egress()],
        },
    }


def database(c: Component) -> dict[str, Any]:
    return {
        "apiVersion": "postgresql.cnpg.io/v1",
        "kind": "Cluster",
        "metadata": {
            "name": c.database_cluster,
            "labels": labels(c.name, "database"),
            "annotations": sync_wave(-2),
        },
        "spec": {
            "instances": 1,
            "enableSuperuserAccess": False,
            "bootstrap": {"initdb": {"database": c.database_name, "owner": c.database_name}},
            "storage": {"size": "2Gi"},
            "postgresql": {"parameters": {"max_connections": "200"}},
            "resources": {
                "requests": {"cpu": "100m", "memory": "256Mi"},
                "limits": {"cpu": "1", "memory": "1Gi"},
            },
            "inheritedMetadata": {"labels": labels(c.name, "database")},
        },
    }


def database_network_policy(c: Component) -> dict[str, Any]:
    """Only this component's pods (server and migration) reach its database."""
    return {
        "apiVersion": "networking.k8s.io/v1",
        "kind": "NetworkPolicy",
        "metadata": {"name": c.database_cluster, "labels": labels(c.name, "database")},
        "spec": {
            "podSelector": {"matchLabels": {"cnpg.io/cluster": c.database_cluster}},
            "policyTypes": ["Ingress"],
            "ingress": [
                {
                    "from": [{"podSelector": {"matchLabels": {"app.kubernetes.io/name": c.name}}}],
                    "ports": [{"protocol": "TCP", "port": POSTGRES_PORT}],
                },
                {
                    # Replication and the instance manager's status port between the
                    # cluster's own instances.
                    "from": [
                        {"podSelector": {"matchLabels": {"cnpg.io/cluster": c.database_cluster}}}
                    ],
                    "ports": [
                        {"protocol": "TCP", "port": POSTGRES_PORT},
                        {"protocol": "TCP", "port": 8000},
                    ],
                },
            ],
        },
    }


# --- files ----------------------------------------------------------------------------------------

HEADER = (
    "# Generated by tools/render_k8s.py from its COMPONENTS table. Edit the table there and run\n"
    "#   python tools/render_k8s.py\n"
    "# (tests/deploy fails when this file and the generator disagree).\n"
)


class _Dumper(yaml.SafeDumper):
    """Indent sequences under their key, as kubectl and most editors write them."""

    def increase_indent(self, flow: bool = False, indentless: bool = False) -> None:
        super().increase_indent(flow, False)


def dump(documents: list[dict[str, Any]]) -> str:
    body = yaml.dump_all(
        documents, Dumper=_Dumper, sort_keys=False, default_flow_style=False, width=100
    )
    return HEADER + "---\n" + body


def app_documents(c: Component) -> list[dict[str, Any]]:
    docs = [deployment(c), service(c), disruption_budget(c)]
    if c.autoscale_in_base:
        docs.append(autoscaler(c))
    docs += [
        network_policy(c),
        migration_job(c),
        migration_network_policy(c),
        database(c),
        database_network_policy(c),
    ]
    return docs


def env_patch(c: Component, env: dict[str, str]) -> dict[str, Any]:
    """A strategic-merge patch adding `env` to the component's container."""
    variables = [{"name": k, "value": v} for k, v in env.items()]
    container = {"name": c.name, "env": variables}
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": c.name},
        "spec": {"template": {"spec": {"containers": [container]}}},
    }


def stream_files() -> dict[Path, str]:
    """One JetStream stream definition per file, in the JSON the nats CLI and the API take."""
    from nats.js.api import StorageType, StreamConfig

    from pos_kit import streams

    configs = [streams.stream_config(s) for s in streams.SERVICES]
    # Mirrors the dead-letter stream pos_kit.streams.ensure_service_streams creates.
    configs.append(
        StreamConfig(
            name=streams.DLQ_STREAM,
            subjects=[f"{streams.DLQ_PREFIX}.>"],
            storage=StorageType.FILE,
            max_age=30 * 24 * 3600.0,
            duplicate_window=streams.DUPLICATE_WINDOW_SECONDS,
        )
    )
    files: dict[Path, str] = {}
    for config in configs:
        data = config.as_dict()
        data["num_replicas"] = STREAM_REPLICAS
        files[K8S / "base" / "nats" / "streams" / f"{config.name}.json"] = (
            json.dumps(data, indent=2, sort_keys=True) + "\n"
        )
    return files


def render() -> dict[Path, str]:
    files = {K8S / "base" / "apps" / f"{c.name}.yaml": dump(app_documents(c)) for c in COMPONENTS}
    files[K8S / "overlays" / "prod" / "autoscaling.yaml"] = dump(
        [autoscaler(c) for c in COMPONENTS if not c.autoscale_in_base]
    )
    for name, env in PROD_ENV.items():
        patch = env_patch(BY_NAME[name], env)
        files[K8S / "overlays" / "prod" / f"{name}-env.yaml"] = dump([patch])
    files.update(stream_files())
    return files


def drifted(files: dict[Path, str]) -> list[Path]:
    return [path for path, text in files.items() if not path.exists() or path.read_text() != text]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--check", action="store_true", help="report drift, write nothing")
    args = parser.parse_args(argv)
    files = render()
    stale = drifted(files)
    if args.check:
        for path in stale:
            print(f"out of date: {path.relative_to(ROOT)}", file=sys.stderr)
        return 1 if stale else 0
    for path in stale:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(files[path])
        print(f"wrote {path.relative_to(ROOT)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
