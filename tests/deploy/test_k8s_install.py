"""The install order of k8s/README.md works: every object belongs to exactly one step (its
app.kubernetes.io/component label), and Argo CD's sync waves follow the same order."""

from __future__ import annotations

from deploy_manifests import Doc, app_args, of_kind, pod_spec, ref

# In the order k8s/README.md applies them; "tracing" is the dev overlay's Jaeger,
# "certificates" and "edge" the prod overlay's TLS.
INSTALL_STEPS = (
    "platform",
    "certificates",
    "messaging",
    "messaging-setup",
    "database",
    "migration",
    "server",
    "edge",
    "tracing",
)


def _wave(doc: Doc) -> int:
    return int(doc["metadata"].get("annotations", {}).get("argocd.argoproj.io/sync-wave", "0"))


def test_every_object_belongs_to_an_install_step(docs: list[Doc], overlay: str) -> None:
    strays = [
        ref(doc)
        for doc in docs
        if doc["metadata"].get("labels", {}).get("app.kubernetes.io/part-of") != "omnitill"
        or doc["metadata"]["labels"].get("app.kubernetes.io/component") not in INSTALL_STEPS
    ]
    assert not strays, f"{overlay}: objects no install step applies: {strays}"


def test_sync_waves_put_data_first_then_setup_then_services(docs: list[Doc]) -> None:
    stateful = of_kind(docs, "StatefulSet") + of_kind(docs, "Cluster")
    setup = of_kind(docs, "Job")
    services = of_kind(docs, "Deployment")
    assert stateful and setup and services
    assert max(_wave(d) for d in stateful) < min(_wave(d) for d in setup)
    assert max(_wave(d) for d in setup) < min(_wave(d) for d in services)
    for job in setup:
        annotations = job["metadata"]["annotations"]
        # A Job's template is immutable: Argo CD deletes the last run before creating the next.
        assert annotations.get("argocd.argoproj.io/hook-delete-policy") == "BeforeHookCreation"


def test_migrations_are_labelled_as_the_migration_step(docs: list[Doc]) -> None:
    for job in of_kind(docs, "Job"):
        parsed = app_args(pod_spec(job)["containers"][0])
        if parsed is not None:
            assert parsed[1] == "migrate"
            assert job["metadata"]["labels"]["app.kubernetes.io/component"] == "migration"
