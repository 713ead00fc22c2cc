"""NetworkPolicies: everything is denied by default, and each component is reachable only by
the components configured to call it (their *_ADDR variables), which must be the call graph of
docs/architecture.md. Each component reaches its own database, NATS and DNS, and nothing else's
database.

The policies are evaluated, not pattern-matched: deploy_manifests.allowed applies the
NetworkPolicy rules (selectors, namespaces, ports, both directions) to the pods rendered.
"""

from __future__ import annotations

from deploy_manifests import (
    DNS,
    Doc,
    Endpoint,
    allowed,
    app_args,
    app_deployments,
    configured_callees,
    database_endpoint,
    endpoints,
    env_sources,
    find,
    of_kind,
    pod_spec,
    policies_selecting,
    ref,
    workload_endpoint,
    workloads,
)

# Who calls whom over gRPC (docs/architecture.md). A component not listed here gets its callers
# from its manifests alone; a listed one must match this exactly.
CALL_GRAPH = {
    "gateway": {"inventory", "promotion", "customer", "payment", "order", "dispatcher"},
    "order": {"inventory", "promotion", "customer", "payment"},
    "inventory": set(),
    "promotion": set(),
    "customer": set(),
    "payment": set(),
    "dispatcher": set(),
    "dispatcher-deliver": set(),
}
# The Gateway API implementation's proxies (Envoy Gateway's namespace).
EDGE = Endpoint(
    name="edge proxy", labels={"app": "envoy"}, namespace="envoy-gateway-system", ports={}
)


def _policies(docs: list[Doc]) -> list[Doc]:
    return of_kind(docs, "NetworkPolicy")


def _port(deployment: Doc) -> int:
    ports = pod_spec(deployment)["containers"][0]["ports"]
    return int(ports[0]["containerPort"])


def test_a_default_deny_policy_covers_every_pod(docs: list[Doc]) -> None:
    deny = [
        p
        for p in _policies(docs)
        if p["spec"].get("podSelector") in ({}, None)
        and {"Ingress", "Egress"} <= set(p["spec"].get("policyTypes", []))
        and not p["spec"].get("ingress")
        and not p["spec"].get("egress")
    ]
    assert deny, "no NetworkPolicy selects every pod and denies all ingress and egress"


def test_configured_calls_follow_the_call_graph(docs: list[Doc]) -> None:
    for deployment in app_deployments(docs):
        name = deployment["metadata"]["name"]
        callees = {d["metadata"]["name"] for d in configured_callees(docs, deployment).values()}
        if name in CALL_GRAPH:
            assert callees == CALL_GRAPH[name], f"{name} is configured to call {callees}"


def test_services_accept_calls_only_from_their_callers(docs: list[Doc], overlay: str) -> None:
    policies = _policies(docs)
    apps = app_deployments(docs)
    callers: dict[str, set[str]] = {ref(d): set() for d in apps}
    for deployment in apps:
        for callee in configured_callees(docs, deployment).values():
            callers[ref(callee)].add(ref(deployment))
    problems = []
    sources = list(endpoints(docs))
    for target in apps:
        destination = workload_endpoint(target)
        port = _port(target)
        for source in sources:
            if source.name == destination.name:
                continue
            expected = source.name in callers[ref(target)]
            if allowed(policies, source, destination, port) != expected:
                verb = "cannot reach" if expected else "may reach"
                problems.append(f"{source.name} {verb} {destination.name}:{port}")
    assert not problems, f"{overlay} overlay:\n" + "\n".join(problems)


def test_callers_may_connect_out_to_their_callees(docs: list[Doc]) -> None:
    """Egress, on the caller's side, is opened for the same edges (checked above both ways)."""
    policies = _policies(docs)
    for deployment in app_deployments(docs):
        for callee in configured_callees(docs, deployment).values():
            assert allowed(
                policies, workload_endpoint(deployment), workload_endpoint(callee), _port(callee)
            ), f"{ref(deployment)} -> {ref(callee)}"


def test_only_the_edge_reaches_the_gateway(docs: list[Doc]) -> None:
    policies = _policies(docs)
    gateway = find(docs, "Deployment", "gateway")
    assert gateway is not None
    assert allowed(policies, EDGE, workload_endpoint(gateway), _port(gateway))
    for service in app_deployments(docs):
        if service is not gateway:
            assert not allowed(policies, EDGE, workload_endpoint(service), _port(service))


def _own_database(docs: list[Doc], workload: Doc) -> str | None:
    container = pod_spec(workload)["containers"][0]
    source = env_sources(container).get("DATABASE_URL", {})
    secret = source.get("valueFrom", {}).get("secretKeyRef", {}).get("name")
    return str(secret).removesuffix("-app") if secret else None


def test_each_component_reaches_its_own_database_only(docs: list[Doc], overlay: str) -> None:
    policies = _policies(docs)
    clusters = [c for c in docs if c["kind"] == "Cluster"]
    problems = []
    for workload in workloads(docs):
        source = workload_endpoint(workload)
        own = _own_database(docs, workload)
        for cluster in clusters:
            expected = cluster["metadata"]["name"] == own
            if allowed(policies, source, database_endpoint(cluster), 5432) != expected:
                verb = "cannot reach" if expected else "may reach"
                problems.append(f"{source.name} {verb} {ref(cluster)}")
    assert not problems, f"{overlay} overlay:\n" + "\n".join(problems)


def test_every_component_reaches_nats_and_dns(docs: list[Doc]) -> None:
    """Every service reaches NATS; every pod that may connect anywhere may also resolve names."""
    policies = _policies(docs)
    nats = find(docs, "StatefulSet", "nats")
    assert nats is not None
    broker = workload_endpoint(nats)
    for workload in workloads(docs):
        source = workload_endpoint(workload)
        egress_rules = [
            rule
            for policy in policies_selecting(policies, source, "Egress")
            for rule in policy["spec"].get("egress") or []
        ]
        if egress_rules:
            assert allowed(policies, source, DNS, 53, "UDP"), f"{source.name}: no DNS (UDP)"
            assert allowed(policies, source, DNS, 53, "TCP"), f"{source.name}: no DNS (TCP)"
        parsed = app_args(pod_spec(workload)["containers"][0])
        if parsed is not None and parsed[1] == "serve":
            assert allowed(policies, source, broker, 4222), f"{source.name}: no NATS"


def _reaches_the_internet(policies: list[Doc], source: Endpoint) -> bool:
    """An egress rule of a policy selecting the pod admits any public IPv4 address (CIDR rules
    are not evaluated by `allowed`: they address what is outside the cluster)."""
    return any(
        peer.get("ipBlock", {}).get("cidr") == "0.0.0.0/0"
        for policy in policies_selecting(policies, source, "Egress")
        for rule in policy["spec"].get("egress") or []
        for peer in rule.get("to") or []
    )


def test_the_dispatcher_runs_its_two_roles_and_only_delivery_reaches_partners(
    docs: list[Doc], overlay: str
) -> None:
    """services/dispatcher: one Deployment ingests the streams and serves the gateway, another
    sends the webhooks, with the same program, database and sealing key; only the delivering
    one connects out to the internet, and nothing else does."""
    roles: dict[str, Doc] = {}
    for deployment in app_deployments(docs):
        container = pod_spec(deployment)["containers"][0]
        role = env_sources(container).get("DISPATCHER_ROLE", {}).get("value")
        if role is not None:
            roles[str(role)] = deployment
    assert set(roles) == {"ingest", "deliver"}, f"{overlay}: dispatcher roles {sorted(roles)}"
    ingest, deliver = roles["ingest"], roles["deliver"]
    assert ingest["metadata"]["name"] == "dispatcher"
    shared = ("DATABASE_URL", "DISPATCHER_SECRET_KEYS")
    sources = [env_sources(pod_spec(d)["containers"][0]) for d in (ingest, deliver)]
    for variable in shared:
        assert sources[0][variable]["valueFrom"] == sources[1][variable]["valueFrom"], variable
    assert [pod_spec(d)["containers"][0]["args"] for d in (ingest, deliver)] == [
        ["pos_dispatcher", "serve"]
    ] * 2
    policies = _policies(docs)
    reaching = {
        ref(w) for w in workloads(docs) if _reaches_the_internet(policies, workload_endpoint(w))
    }
    assert reaching == {ref(deliver)}, f"{overlay}: {sorted(reaching)} reach the internet"


def test_nats_servers_reach_each_other_and_nobody_else_reaches_routes(docs: list[Doc]) -> None:
    policies = _policies(docs)
    nats = find(docs, "StatefulSet", "nats")
    assert nats is not None
    broker = workload_endpoint(nats)
    assert allowed(policies, broker, broker, 6222)
    for source in endpoints(docs):
        if source.name != broker.name:
            assert not allowed(policies, source, broker, 6222), source.name


def test_migration_jobs_and_databases_accept_no_application_traffic(docs: list[Doc]) -> None:
    policies = _policies(docs)
    jobs = [j for j in of_kind(docs, "Job") if app_args(pod_spec(j)["containers"][0]) is not None]
    assert jobs
    for job in jobs:
        for source in endpoints(docs):
            if source.name != ref(job):
                assert not allowed(policies, source, workload_endpoint(job), 50051), source.name


def test_the_evaluation_notices_an_opened_policy(docs: list[Doc]) -> None:
    """Guard against a vacuous evaluator: opening payment's ingress to every pod is seen."""
    import copy

    opened = copy.deepcopy(docs)
    payment = find(opened, "Deployment", "payment")
    customer = find(opened, "Deployment", "customer")
    policy = find(opened, "NetworkPolicy", "payment")
    assert payment is not None and customer is not None and policy is not None
    source, destination = workload_endpoint(customer), workload_endpoint(payment)
    assert not allowed(_policies(opened), source, destination, _port(payment))
    policy["spec"]["ingress"].append({"from": [{"podSelector": {}}]})
    # customer's own egress policy still forbids it: both directions are evaluated.
    assert not allowed(_policies(opened), source, destination, _port(payment))
    customer_policy = find(opened, "NetworkPolicy", "customer")
    assert customer_policy is not None
    customer_policy["spec"]["egress"].append({"to": [{"podSelector": {}}]})
    assert allowed(_policies(opened), source, destination, _port(payment))
