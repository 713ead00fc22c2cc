"""The served OpenAPI document equals the committed snapshot (run `make openapi` to accept)."""

from __future__ import annotations

import importlib.util
from pathlib import Path
from typing import Any

from pos_gateway.keys import ALL_SCOPES

ROOT = Path(__file__).resolve().parent.parent


def _tool():  # type: ignore[no-untyped-def]
    spec = importlib.util.spec_from_file_location(
        "openapi_snapshot", ROOT / "tools" / "openapi_snapshot.py"
    )
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_openapi_document_matches_the_committed_snapshot() -> None:
    tool = _tool()
    committed = tool.SNAPSHOT.read_text()
    assert tool.render(tool.current()) == committed, (
        "the API changed; if that was intended, run `make openapi` and commit gateway/openapi.json"
    )


def test_every_operation_has_a_summary_and_v1_paths_need_a_key() -> None:
    document = _tool().current()
    for path, operations in document["paths"].items():
        for method, operation in operations.items():
            assert operation.get("summary"), f"{method.upper()} {path} has no summary"
    assert all(p.startswith(("/v1/", "/healthz", "/readyz", "/metrics")) for p in document["paths"])
    assert document["components"]["securitySchemes"]["apiKey"]["scheme"] == "bearer"
    create = document["paths"]["/v1/checkouts"]["post"]
    assert create["x-required-scopes"] == ["orders:write"]
    assert {"400", "401", "403", "429"} <= set(create["responses"])


def _has_example(media: dict[str, Any], document: dict[str, Any]) -> bool:
    if "example" in media or "examples" in media:
        return True
    schema = media.get("schema", {})
    if "$ref" in schema:
        schema = document["components"]["schemas"][schema["$ref"].rsplit("/", 1)[-1]]
    return bool(schema.get("examples") or "example" in schema)


def _resolved(item: dict[str, Any], document: dict[str, Any]) -> dict[str, Any]:
    """A `$ref` to #/components/<kind>/<name>, followed; anything else as it is."""
    if "$ref" not in item:
        return item
    _, _, kind, name = item["$ref"].split("/")
    found: dict[str, Any] = document["components"][kind][name]
    return found


def test_every_operation_documents_a_summary_examples_and_its_error_answers() -> None:
    """What a partner reads before the first call: each operation says what it does, shows a
    request (when it takes one) and a success answer, and names the problems it answers."""
    document = _tool().current()
    missing = []
    for path, operations in document["paths"].items():
        for method, operation in operations.items():
            name = f"{method.upper()} {path}"
            if not operation.get("summary"):
                missing.append(f"{name}: summary")
            body = operation.get("requestBody", {}).get("content", {})
            if any(not _has_example(media, document) for media in body.values()):
                missing.append(f"{name}: request example")
            answers = {s: _resolved(a, document) for s, a in operation["responses"].items()}
            successes = [a for status, a in answers.items() if status.startswith("2")]
            if not successes or not all(
                a.get("content") and all(_has_example(m, document) for m in a["content"].values())
                for a in successes
            ):
                missing.append(f"{name}: success example")
            if not path.startswith("/v1/"):
                continue
            errors = {s: a for s, a in answers.items() if s[0] in "45"}
            if not {"400", "401"} <= set(errors):
                missing.append(f"{name}: 400 and 401 answers")
            if "{" in path and "404" not in errors:
                missing.append(f"{name}: 404 answer")
            for status, answer in errors.items():
                if "application/problem+json" not in answer.get("content", {}):
                    missing.append(f"{name}: {status} is not a documented problem")
    assert not missing, "\n".join(missing)


def test_authenticated_operations_name_their_scope_and_rate_limit() -> None:
    document = _tool().current()
    for path, operations in document["paths"].items():
        for method, operation in operations.items():
            if not path.startswith("/v1/") or path in ("/v1/oauth/token", "/v1/admin/merchants"):
                continue
            name = f"{method.upper()} {path}"
            assert operation.get("x-required-scopes"), f"{name} names no scope"
            assert {"403", "429"} <= set(operation["responses"]), f"{name}: no 403 or 429"


def test_every_operation_declares_its_security_and_every_scope_is_declared() -> None:
    document = _tool().current()
    schemes = document["components"]["securitySchemes"]
    flow = schemes["oauth2"]["flows"]["clientCredentials"]
    assert flow["tokenUrl"] == "/v1/oauth/token"
    assert set(flow["scopes"]) == set(ALL_SCOPES)
    for path, operations in document["paths"].items():
        for method, operation in operations.items():
            name = f"{method.upper()} {path}"
            assert "security" in operation, f"{name} declares no security"
            if path in ("/healthz", "/readyz", "/metrics", "/v1/oauth/token"):
                assert operation["security"] == [], name
            elif path.startswith("/v1/admin/"):
                assert operation["security"] == [{"platformAdmin": []}], name
            else:
                scopes = operation["x-required-scopes"]
                assert operation["security"] == [{"apiKey": []}, {"oauth2": scopes}], name
                assert set(scopes) <= set(flow["scopes"]), name


def test_tags_are_declared_with_a_description_and_servers_are_relative() -> None:
    document = _tool().current()
    declared = {t["name"]: t.get("description") for t in document["tags"]}
    used = {t for ops in document["paths"].values() for op in ops.values() for t in op["tags"]}
    assert used == set(declared)
    assert all(declared.values())
    assert [s["url"] for s in document["servers"]] == ["/"]


def _header_names(answer: dict[str, Any], document: dict[str, Any]) -> dict[str, bool]:
    """The headers an answer documents, each with whether it is always sent."""
    headers = answer.get("headers", {})
    return {n: _resolved(h, document).get("required", False) for n, h in headers.items()}


def test_answers_document_the_headers_the_edge_sends() -> None:
    """What gateway/tests/test_edge.py and the schemathesis run (which checks every documented
    always-sent header on every answer) hold the edge to."""
    document = _tool().current()
    for path, operations in document["paths"].items():
        for method, operation in operations.items():
            name = f"{method.upper()} {path}"
            answers = {s: _resolved(a, document) for s, a in operation["responses"].items()}
            for status, answer in answers.items():
                always = status != "503" or not path.startswith("/v1/")  # an overload's 503
                assert _header_names(answer, document).get("X-Request-Id") is always, name
            if not path.startswith("/v1/") or path in ("/v1/oauth/token", "/v1/admin/merchants"):
                continue
            for status, answer in answers.items():
                headers = _header_names(answer, document)
                counted = status not in ("400", "401", "413", "503")
                assert headers.get("RateLimit", False) is counted, f"{name} {status}"
                assert headers.get("RateLimit-Policy", False) is counted, f"{name} {status}"
            assert "Retry-After" in _header_names(answers["429"], document), name
            assert _header_names(answers["401"], document)["WWW-Authenticate"], name
            if method == "post":
                assert "Idempotency-Key" in {
                    _resolved(p, document)["name"] for p in operation["parameters"]
                }, name


def test_a_route_that_forgets_a_possible_problem_still_documents_it() -> None:
    from pos_gateway import openapi

    names = {s: openapi.RESPONSES[s][0] for s in ("400", "401", "403", "404", "409", "412")}
    names |= {s: openapi.RESPONSES[s][0] for s in ("413", "422", "429")}
    document: dict[str, Any] = {
        "paths": {
            "/v1/things/{thing_id}": {
                "post": {
                    "parameters": [{"$ref": "#/components/parameters/If-Match"}],
                    "responses": {"200": {"description": "Success"}},
                }
            }
        },
        "components": {"responses": {name: {} for name in names.values()}},
    }
    openapi.with_every_possible_problem(document)
    answers = document["paths"]["/v1/things/{thing_id}"]["post"]["responses"]
    assert answers == {
        "200": {"description": "Success"},
        **{s: {"$ref": f"#/components/responses/{n}"} for s, n in names.items()},
    }
