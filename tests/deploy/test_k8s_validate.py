"""Every rendered manifest is valid Kubernetes, checked strictly (unknown fields are errors).

Built-in kinds are validated by kubernetes-validate against the newest Kubernetes it knows and
against the oldest we support (1.30: the first with the preStop `sleep` action on by default).
Custom resources (CloudNativePG's Cluster; cert-manager's and the Gateway API's kinds, checked
in test_k8s_tls.py) have no schema there; rather than vendor the CRDs, they are checked against
the fields this project uses and the CRDs' field lists, and any other kind without a schema
fails the test instead of passing silently.
"""

from __future__ import annotations

from typing import Any

import pytest
from deploy_manifests import CUSTOM_RESOURCE_GROUPS, Doc, api_group, ref

OLDEST_SUPPORTED = "1.30"

# spec fields of postgresql.cnpg.io/v1 Cluster (CloudNativePG 1.2x CRD), to catch typos.
CNPG_CLUSTER_SPEC_FIELDS = {
    "affinity", "backup", "bootstrap", "certificates", "description", "enablePDB",
    "enableSuperuserAccess", "env", "envFrom", "ephemeralVolumeSource",
    "ephemeralVolumesSizeLimit", "externalClusters", "failoverDelay", "imageCatalogRef",
    "imageName", "imagePullPolicy", "imagePullSecrets", "inheritedMetadata", "instances",
    "livenessProbeTimeout", "logLevel", "managed", "maxSyncReplicas", "minSyncReplicas",
    "monitoring", "nodeMaintenanceWindow", "plugins", "podSecurityContext", "postgresGID",
    "postgresUID", "postgresql", "primaryUpdateMethod", "primaryUpdateStrategy",
    "priorityClassName", "probes", "projectedVolumeTemplate", "replica", "replicationSlots",
    "resources", "schedulerName", "seccompProfile", "securityContext", "serviceAccountTemplate",
    "smartShutdownTimeout", "startDelay", "stopDelay", "storage", "superuserSecret",
    "switchoverDelay", "tablespaces", "topologySpreadConstraints", "walStorage",
}  # fmt: skip


def _validator() -> Any:
    return pytest.importorskip("kubernetes_validate", reason="kubernetes-validate is not installed")


def _versions() -> list[str]:
    try:
        from kubernetes_validate.utils import latest_version
    except ImportError:
        return [OLDEST_SUPPORTED]
    return [OLDEST_SUPPORTED, latest_version()]


@pytest.mark.parametrize("version", _versions())
def test_rendered_manifests_validate_strictly(docs: list[Doc], overlay: str, version: str) -> None:
    kubernetes_validate = _validator()
    from kubernetes_validate.utils import SchemaNotFoundError

    failures: list[str] = []
    for doc in docs:
        if api_group(doc) in CUSTOM_RESOURCE_GROUPS:
            continue  # checked by test_custom_resources_are_well_formed
        try:
            kubernetes_validate.validate(doc, version, strict=True)
        except SchemaNotFoundError:
            failures.append(f"{ref(doc)}: no schema for {doc['apiVersion']} in {version}")
        except Exception as error:  # ValidationError carries the path and the message
            path = ".".join(str(p) for p in getattr(error, "path", []))
            failures.append(f"{ref(doc)}: {path}: {getattr(error, 'message', error)}")
    assert not failures, f"{overlay} overlay, Kubernetes {version}:\n" + "\n".join(failures)


def test_custom_resources_are_well_formed(docs: list[Doc]) -> None:
    # cert-manager and Gateway API objects: test_k8s_tls.py.
    custom = [doc for doc in docs if api_group(doc) == "postgresql.cnpg.io"]
    assert custom, "expected the CloudNativePG clusters"
    for doc in custom:
        assert doc["apiVersion"] == "postgresql.cnpg.io/v1", ref(doc)
        assert doc["kind"] == "Cluster", f"{ref(doc)}: only Cluster is expected here"
        spec = doc["spec"]
        unknown = set(spec) - CNPG_CLUSTER_SPEC_FIELDS
        assert not unknown, f"{ref(doc)}: fields the Cluster CRD does not have: {unknown}"
        assert isinstance(spec["instances"], int) and spec["instances"] >= 1, ref(doc)
        assert spec["storage"]["size"], ref(doc)
        initdb = spec["bootstrap"]["initdb"]
        # The application's role owns the application's database, and the generated
        # <cluster>-app Secret (whose `uri` the pods read) is for exactly that role.
        assert initdb["database"] and initdb["owner"] == initdb["database"], ref(doc)
        assert spec.get("enableSuperuserAccess") is False, f"{ref(doc)}: no superuser access"
