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
# The namespace of the Gateway API implementation's proxies, which forward public traffic to the
# gateway (Envoy Gateway's; change it with GATEWAY_CLASS for another implementation).
EDGE_NAMESPACE = "envoy-gateway-system"
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
    # A second Deployment of another component's program (its code, database, migration and
    # secrets), in another role: the name of that component.
    program: str = ""
    # Settings of this Deployment alone.
    env: tuple[tuple[str, str], ...] = ()
    # Connects out to partners' endpoints on the public internet (webhooks).
    public_egress: bool = False

    @property
    def owner(self) -> str:
        """The component whose code and database this one runs."""
        return self.program or self.name

    @property
    def module(self) -> str:
        return f"pos_{self.owner}"

    @property
    def port(self) -> int:
        return GRPC_PORT if self.protocol == "grpc" else HTTP_PORT

    @property
    def port_name(self) -> str:
        return self.protocol

    @property
    def database_cluster(self) -> str:
        return f"pg-{self.owner}"

    @property
    def database_secret(self) -> str:
        # CloudNativePG writes the application credentials, `uri` included, to <cluster>-app.
        return f"{self.database_cluster}-app"

    @property
    def database_name(self) -> str:
        # pos_<name> rather than <name>: "order" is a reserved word in SQL.
        return self.module

    @property
    def owns_database(self) -> bool:
        """Has the migration Job and the database (another role of it has neither)."""
        return not self.program


SERVICES = ("inventory", "promotion", "customer", "payment", "order")
COMPONENTS: tuple[Component, ...] = (
    Component("inventory", "grpc", autoscale_in_base=True),
    Component("promotion", "grpc"),
    Component("customer", "grpc"),
    Component("payment", "grpc", autoscale_in_base=True),
    Component("order", "grpc", calls=("inventory", "promotion", "customer", "payment")),
    # The event feed and webhooks (services/dispatcher, DISPATCHER_ROLE): one Deployment reads
    # every stream into the feed and serves the gateway; the other sends the webhooks to
    # partners, each scaled on its own (ingest and delivery each keep a core busy at a high
    # rate). Only the delivering one may connect out to the internet.
    Component("dispatcher", "grpc", env=(("DISPATCHER_ROLE", "ingest"),)),
    Component(
        "dispatcher-deliver",
        "grpc",
        program="dispatcher",
        env=(("DISPATCHER_ROLE", "deliver"),),
        public_egress=True,
    ),
    # The edge proxies are the gateway's only callers (its NetworkPolicy), and they connect
    # from the pod network: their X-Forwarded-For names the client, which the gateway's
    # limits by address count (gateway/README.md). The private ranges cover any pod network;
    # narrow them to the cluster's own.
    Component(
        "gateway",
        "http",
        calls=(*SERVICES, "dispatcher"),
        env=(("TRUSTED_PROXIES", "10.0.0.0/8,172.16.0.0/12,192.168.0.0/16"),),
    ),
)
BY_NAME = {c.name: c for c in COMPONENTS}

# --- TLS in production (the prod overlay; k8s/README.md, "TLS on every hop") ---------------------
NAMESPACE = "omnitill"
# The public name of the API, its GatewayClass, and who Let's Encrypt writes to: set yours.
API_HOSTNAME = "api.example.com"
GATEWAY_CLASS = "eg"
ACME_EMAIL = "ops@example.com"
ACME_SERVER = "https://acme-v02.api.letsencrypt.org/directory"
PUBLIC_ISSUER = "letsencrypt"
PUBLIC_CERT_SECRET = "omnitill-api-tls"  # noqa: S105 - the name of a Secret, not a secret
EDGE_GATEWAY = "omnitill"
# The internal CA: a Secret (kubernetes.io/tls) that signs, for the Issuer below, and a ConfigMap
# with its certificate (ca.crt) that every client trusts. The operator creates both once (and
# both CAs sit in the ConfigMap while the CA is rotated); k8s/README.md says how.
INTERNAL_CA = "omnitill-internal-ca"
INTERNAL_ISSUER = "omnitill-internal"
# Leaf certificates: 90 days, renewed 30 days before they expire, with a new key each time.
CERT_DURATION = "2160h"
CERT_RENEW_BEFORE = "720h"
# Where a pod finds the files (the same paths in every component).
TLS_MOUNT = "/etc/omnitill/tls"  # its own certificate: tls.crt, tls.key
CA_MOUNT = "/etc/omnitill/ca"  # the internal CA: ca.crt
POSTGRES_CA_MOUNT = "/etc/omnitill/postgres-ca"  # its database's CloudNativePG CA: ca.crt
# With TLS on, the kubelet's native gRPC probe (which speaks no TLS) asks this port, where the
# process answers grpc.health.v1 alone (pos_kit.grpc_server).
GRPC_HEALTH_PORT = 50052
NATS_CERT = "nats-tls"

# Secrets a component reads from a Secret of its own (created by the operator in production,
# by the dev overlay's generator in development).
SECRETS: dict[str, tuple[str, ...]] = {
    # TOKEN_SIGNING_KEYS: the OAuth access-token keys, rotated as the gateway README says.
    "gateway": ("GATEWAY_SECRET_KEY", "TOKEN_SIGNING_KEYS"),
    # Seals webhook signing secrets at rest (services/dispatcher/README.md).
    "dispatcher": ("DISPATCHER_SECRET_KEYS",),
    # Keys the gift card codes' hashes: changing it loses every card's code.
    "payment": ("GIFT_CARD_CODE_KEY",),
    # Keys the coupon codes' hashes: changing it loses every coupon's code.
    "promotion": ("COUPON_CODE_KEY",),
    # Keys the gift card and coupon codes in stored request fingerprints: changing it only
    # makes a retry of an earlier request a mismatch.
    "order": ("CODE_FINGERPRINT_KEY",),
}
# Where webhooks may go: public addresses only, on any port (a partner's endpoint may listen
# on 8443). The dispatcher refuses private ones itself; this says so again at the network.
PUBLIC_INTERNET = [
    {"ipBlock": {"cidr": "0.0.0.0/0", "except": [
        "10.0.0.0/8", "172.16.0.0/12", "192.168.0.0/16", "127.0.0.0/8", "169.254.0.0/16",
        "100.64.0.0/10", "0.0.0.0/8", "224.0.0.0/4", "240.0.0.0/4"]}},
    {"ipBlock": {"cidr": "::/0", "except": ["fc00::/7", "fe80::/10", "::1/128", "ff00::/8"]}},
]  # fmt: skip

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
    for secret in SECRETS.get(c.owner, ()):
        env.append(
            {
                "name": secret,
                "valueFrom": {"secretKeyRef": {"name": f"{c.owner}-secrets", "key": secret}},
            }
        )
    env += [{"name": name, "value": value} for name, value in c.env]

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
    if c.public_egress:
        egress.append({"to": PUBLIC_INTERNET})
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
    """Only this component's pods (server and migration, and those of its other roles) reach
    its database."""
    users = [c.name] + [other.name for other in COMPONENTS if other.program == c.name]
    return {
        "apiVersion": "networking.k8s.io/v1",
        "kind": "NetworkPolicy",
        "metadata": {"name": c.database_cluster, "labels": labels(c.name, "database")},
        "spec": {
            "podSelector": {"matchLabels": {"cnpg.io/cluster": c.database_cluster}},
            "policyTypes": ["Ingress"],
            "ingress": [
                {
                    "from": [
                        {"podSelector": {"matchLabels": {"app.kubernetes.io/name": name}}}
                        for name in users
                    ],
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


# --- TLS (prod overlay) ---------------------------------------------------------------------------


def cert_labels(name: str) -> dict[str, str]:
    return labels(name, "certificates")


def service_dns_names(service: str) -> list[str]:
    return [
        service,
        f"{service}.{NAMESPACE}",
        f"{service}.{NAMESPACE}.svc",
        f"{service}.{NAMESPACE}.svc.cluster.local",
    ]


def certificate_secret(c: Component) -> str:
    return f"{c.name}-tls"


def postgres_ca_secret(c: Component) -> str:
    # CloudNativePG's own CA for the cluster; only ca.crt is mounted, never ca.key.
    return f"{c.database_cluster}-ca"


def certificate(name: str, secret: str, dns_names: list[str], issuer: str) -> dict[str, Any]:
    return {
        "apiVersion": "cert-manager.io/v1",
        "kind": "Certificate",
        "metadata": {"name": name, "labels": cert_labels(name), "annotations": sync_wave(-3)},
        "spec": {
            "secretName": secret,
            "secretTemplate": {"labels": cert_labels(name)},
            "duration": CERT_DURATION,
            "renewBefore": CERT_RENEW_BEFORE,
            "privateKey": {"algorithm": "ECDSA", "size": 256, "rotationPolicy": "Always"},
            # Server and client: NATS routes verify each other with the same certificate.
            "usages": ["server auth", "client auth", "digital signature"],
            "dnsNames": dns_names,
            "issuerRef": {"group": "cert-manager.io", "kind": "Issuer", "name": issuer},
        },
    }


def internal_issuer() -> dict[str, Any]:
    return {
        "apiVersion": "cert-manager.io/v1",
        "kind": "Issuer",
        "metadata": {
            "name": INTERNAL_ISSUER,
            "labels": cert_labels(INTERNAL_ISSUER),
            "annotations": sync_wave(-3),
        },
        "spec": {"ca": {"secretName": INTERNAL_CA}},
    }


def component_certificate(c: Component) -> dict[str, Any]:
    return certificate(
        certificate_secret(c), certificate_secret(c), service_dns_names(c.name), INTERNAL_ISSUER
    )


def nats_certificate() -> dict[str, Any]:
    # Clients connect to the `nats` Service; the servers route to each other by pod name.
    names = service_dns_names("nats") + [f"*.{n}" for n in service_dns_names("nats-headless")]
    return certificate(NATS_CERT, NATS_CERT, names, INTERNAL_ISSUER)


def certificate_documents() -> list[dict[str, Any]]:
    return [
        internal_issuer(),
        *(component_certificate(c) for c in COMPONENTS),
        nats_certificate(),
    ]


def edge_labels(name: str) -> dict[str, str]:
    return labels(name, "edge")


def public_issuer() -> dict[str, Any]:
    return {
        "apiVersion": "cert-manager.io/v1",
        "kind": "Issuer",
        "metadata": {"name": PUBLIC_ISSUER, "labels": edge_labels(PUBLIC_ISSUER)},
        "spec": {
            "acme": {
                "server": ACME_SERVER,
                "email": ACME_EMAIL,
                "privateKeySecretRef": {"name": f"{PUBLIC_ISSUER}-account-key"},
                # The challenge is answered through the Gateway's plain-HTTP listener.
                "solvers": [
                    {
                        "http01": {
                            "gatewayHTTPRoute": {
                                "parentRefs": [
                                    {"name": EDGE_GATEWAY, "kind": "Gateway", "sectionName": "http"}
                                ]
                            }
                        }
                    }
                ],
            }
        },
    }


def public_certificate() -> dict[str, Any]:
    return {
        "apiVersion": "cert-manager.io/v1",
        "kind": "Certificate",
        "metadata": {"name": "omnitill-api", "labels": edge_labels("omnitill-api")},
        "spec": {
            "secretName": PUBLIC_CERT_SECRET,
            "dnsNames": [API_HOSTNAME],
            "privateKey": {"algorithm": "ECDSA", "size": 256, "rotationPolicy": "Always"},
            "issuerRef": {"group": "cert-manager.io", "kind": "Issuer", "name": PUBLIC_ISSUER},
        },
    }


def edge_gateway() -> dict[str, Any]:
    same = {"namespaces": {"from": "Same"}}
    return {
        "apiVersion": "gateway.networking.k8s.io/v1",
        "kind": "Gateway",
        "metadata": {"name": EDGE_GATEWAY, "labels": edge_labels(EDGE_GATEWAY)},
        "spec": {
            "gatewayClassName": GATEWAY_CLASS,
            "listeners": [
                {
                    # Plain HTTP only redirects to HTTPS (and answers ACME challenges).
                    "name": "http",
                    "protocol": "HTTP",
                    "port": 80,
                    "hostname": API_HOSTNAME,
                    "allowedRoutes": same,
                },
                {
                    "name": "https",
                    "protocol": "HTTPS",
                    "port": 443,
                    "hostname": API_HOSTNAME,
                    "tls": {
                        "mode": "Terminate",
                        "certificateRefs": [
                            {"group": "", "kind": "Secret", "name": PUBLIC_CERT_SECRET}
                        ],
                    },
                    "allowedRoutes": same,
                },
            ],
        },
    }


def api_route() -> dict[str, Any]:
    gateway = BY_NAME["gateway"]
    return {
        "apiVersion": "gateway.networking.k8s.io/v1",
        "kind": "HTTPRoute",
        "metadata": {"name": "omnitill-api", "labels": edge_labels("omnitill-api")},
        "spec": {
            "parentRefs": [{"name": EDGE_GATEWAY, "sectionName": "https"}],
            "hostnames": [API_HOSTNAME],
            "rules": [
                {
                    "matches": [{"path": {"type": "PathPrefix", "value": "/"}}],
                    "backendRefs": [{"name": gateway.name, "port": gateway.port}],
                }
            ],
        },
    }


def redirect_route() -> dict[str, Any]:
    return {
        "apiVersion": "gateway.networking.k8s.io/v1",
        "kind": "HTTPRoute",
        "metadata": {"name": "omnitill-api-redirect", "labels": edge_labels("omnitill-api")},
        "spec": {
            "parentRefs": [{"name": EDGE_GATEWAY, "sectionName": "http"}],
            "hostnames": [API_HOSTNAME],
            "rules": [
                {
                    "filters": [
                        {
                            "type": "RequestRedirect",
                            "requestRedirect": {"scheme": "https", "statusCode": 301},
                        }
                    ]
                }
            ],
        },
    }


def backend_tls_policy() -> dict[str, Any]:
    """The proxy -> gateway hop is TLS too: the proxy verifies the gateway pod's certificate
    against the internal CA and the Service's name."""
    gateway = BY_NAME["gateway"]
    return {
        "apiVersion": "gateway.networking.k8s.io/v1",
        "kind": "BackendTLSPolicy",
        "metadata": {"name": gateway.name, "labels": edge_labels(gateway.name)},
        "spec": {
            "targetRefs": [{"group": "", "kind": "Service", "name": gateway.name}],
            "validation": {
                "caCertificateRefs": [{"group": "", "kind": "ConfigMap", "name": INTERNAL_CA}],
                "hostname": f"{gateway.name}.{NAMESPACE}.svc",
            },
        },
    }


def acme_solver_network_policy() -> dict[str, Any]:
    """cert-manager's HTTP-01 solver pods answer the challenge behind the Gateway; default-deny
    would turn the proxy away."""
    return {
        "apiVersion": "networking.k8s.io/v1",
        "kind": "NetworkPolicy",
        "metadata": {"name": "acme-http01-solver", "labels": edge_labels("acme-http01-solver")},
        "spec": {
            "podSelector": {"matchLabels": {"acme.cert-manager.io/http01-solver": "true"}},
            "policyTypes": ["Ingress"],
            "ingress": [
                {
                    "from": [
                        {
                            "namespaceSelector": {
                                "matchLabels": {"kubernetes.io/metadata.name": EDGE_NAMESPACE}
                            }
                        }
                    ],
                    "ports": [{"protocol": "TCP", "port": 8089}],
                }
            ],
        },
    }


def edge_documents() -> list[dict[str, Any]]:
    return [
        public_issuer(),
        public_certificate(),
        edge_gateway(),
        api_route(),
        redirect_route(),
        backend_tls_policy(),
        acme_solver_network_policy(),
    ]


def _file(key: str, mount: str) -> str:
    return f"{mount}/{key}"


def tls_env(c: Component) -> dict[str, str]:
    """Every component: PostgreSQL with verify-full against its cluster's CA, NATS and callees
    verified against the internal CA. Then its own certificate: gRPC or HTTPS."""
    env = {
        "DATABASE_SSLMODE": "verify-full",
        "DATABASE_SSLROOTCERT": _file("ca.crt", POSTGRES_CA_MOUNT),
        "NATS_TLS_CA": _file("ca.crt", CA_MOUNT),
        "GRPC_TLS_CA": _file("ca.crt", CA_MOUNT),
    }
    if c.protocol == "grpc":
        env["GRPC_TLS_CERT"] = _file("tls.crt", TLS_MOUNT)
        env["GRPC_TLS_KEY"] = _file("tls.key", TLS_MOUNT)
        env["GRPC_HEALTH_PORT"] = str(GRPC_HEALTH_PORT)
    else:
        env["HTTP_TLS_CERT"] = _file("tls.crt", TLS_MOUNT)
        env["HTTP_TLS_KEY"] = _file("tls.key", TLS_MOUNT)
    return env


def postgres_ca_volume(c: Component) -> dict[str, Any]:
    return {
        "name": "postgres-ca",
        "secret": {
            "secretName": postgres_ca_secret(c),
            "items": [{"key": "ca.crt", "path": "ca.crt"}],
            "defaultMode": 0o444,
        },
    }


def postgres_ca_mount() -> dict[str, Any]:
    return {"name": "postgres-ca", "mountPath": POSTGRES_CA_MOUNT, "readOnly": True}


def tls_deployment_patch(c: Component) -> dict[str, Any]:
    container: dict[str, Any] = {
        "name": c.name,
        "env": [{"name": k, "value": v} for k, v in tls_env(c).items()],
        "volumeMounts": [
            {"name": "tls", "mountPath": TLS_MOUNT, "readOnly": True},
            {"name": "internal-ca", "mountPath": CA_MOUNT, "readOnly": True},
            postgres_ca_mount(),
        ],
    }
    if c.protocol == "grpc":
        for probe in ("startupProbe", "readinessProbe", "livenessProbe"):
            container[probe] = {"grpc": {"port": GRPC_HEALTH_PORT}}
    else:
        for probe in ("startupProbe", "readinessProbe", "livenessProbe"):
            container[probe] = {"httpGet": {"scheme": "HTTPS"}}
    volumes = [
        {
            "name": "tls",
            "secret": {
                "secretName": certificate_secret(c),
                "items": [
                    {"key": "tls.crt", "path": "tls.crt"},
                    {"key": "tls.key", "path": "tls.key"},
                ],
                # Readable by the pod's group (fsGroup) only.
                "defaultMode": 0o440,
            },
        },
        {"name": "internal-ca", "configMap": {"name": INTERNAL_CA, "defaultMode": 0o444}},
        postgres_ca_volume(c),
    ]
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": c.name},
        "spec": {"template": {"spec": {"containers": [container], "volumes": volumes}}},
    }


def tls_migration_patch(c: Component) -> dict[str, Any]:
    env = {k: v for k, v in tls_env(c).items() if k.startswith("DATABASE_")}
    container = {
        "name": "migrate",
        "env": [{"name": k, "value": v} for k, v in env.items()],
        "volumeMounts": [postgres_ca_mount()],
    }
    return {
        "apiVersion": "batch/v1",
        "kind": "Job",
        "metadata": {"name": f"{c.name}-migrate"},
        "spec": {
            "template": {"spec": {"containers": [container], "volumes": [postgres_ca_volume(c)]}}
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
    docs.append(network_policy(c))
    if c.owns_database:
        docs += [
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
    prod_tls = K8S / "overlays" / "prod" / "tls"
    files[prod_tls / "certificates.yaml"] = dump(certificate_documents())
    files[prod_tls / "edge.yaml"] = dump(edge_documents())
    for c in COMPONENTS:
        patches = [tls_deployment_patch(c)]
        if c.owns_database:
            patches.append(tls_migration_patch(c))
        files[prod_tls / f"{c.name}.yaml"] = dump(patches)
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
