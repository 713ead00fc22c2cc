"""The served OpenAPI document equals the committed snapshot (run `make openapi` to accept)."""

from __future__ import annotations

import importlib.util
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import jsonschema

from pos_gateway.edge import OPEN_PATHS
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
            if not path.startswith("/v1/") or path in OPEN_PATHS or path.startswith("/v1/admin/"):
                continue
            name = f"{method.upper()} {path}"
            assert operation.get("x-required-scopes"), f"{name} names no scope"
            assert {"403", "429"} <= set(operation["responses"]), f"{name}: no 403 or 429"


def _operations(document: dict[str, Any]) -> Iterator[tuple[str, dict[str, Any]]]:
    for path, operations in document["paths"].items():
        for method, operation in operations.items():
            yield f"{method.upper()} {path}", operation


def test_every_json_answer_has_a_schema() -> None:
    """A success answer typed as a bare object types every SDK's answer as `unknown` and lets a
    conformance check pass without checking anything: each names its fields or a component."""
    document = _tool().current()
    untyped = []
    for name, operation in _operations(document):
        for status, answer in operation["responses"].items():
            for media_type, media in _resolved(answer, document).get("content", {}).items():
                schema = media.get("schema", {})
                if not media_type.endswith("json"):
                    continue
                if "$ref" not in schema and "properties" not in schema and "items" not in schema:
                    untyped.append(f"{name} {status} {media_type}: {schema}")
    assert not untyped, "\n".join(untyped)


def _refs(value: Any) -> Iterator[str]:
    if isinstance(value, dict):
        if isinstance(value.get("$ref"), str):
            yield value["$ref"]
        for item in value.values():
            yield from _refs(item)
    elif isinstance(value, list):
        for item in value:
            yield from _refs(item)


def test_every_reference_names_a_component() -> None:
    document = _tool().current()
    names = {
        f"#/components/{kind}/{name}"
        for kind, members in document["components"].items()
        for name in members
    }
    assert set(_refs(document)) <= names, set(_refs(document)) - names
    answers = [
        _resolved(a, document) for _, o in _operations(document) for a in o["responses"].values()
    ]
    problems = {m["schema"]["$ref"] for a in answers for t, m in a.get("content", {}).items()
                if t == "application/problem+json"}  # fmt: skip
    assert {n.rsplit("/", 1)[1] for n in problems} == {
        "Problem", "PaymentDeclined", "VersionMismatch"
    }  # fmt: skip


def _validator(schema: dict[str, Any], document: dict[str, Any]) -> jsonschema.Validator:
    # `#/components/...` references resolve against the schema's own root: give it the
    # document's components.
    rooted = {**schema, "components": document["components"]}
    return jsonschema.Draft202012Validator(rooted, format_checker=jsonschema.FormatChecker())


def _examples(document: dict[str, Any]) -> Iterator[tuple[str, Any, dict[str, Any]]]:
    """(where, example, schema) for every example the document shows."""
    for name, operation in _operations(document):
        for parameter in map(lambda p: _resolved(p, document), operation.get("parameters", [])):
            if "example" in parameter:
                yield f"{name} {parameter['name']}", parameter["example"], parameter["schema"]
        for media_type, media in operation.get("requestBody", {}).get("content", {}).items():
            if "example" in media and "schema" in media:
                yield f"{name} request {media_type}", media["example"], media["schema"]
        for status, answer in operation["responses"].items():
            for media_type, media in _resolved(answer, document).get("content", {}).items():
                if "example" in media:
                    yield f"{name} {status} {media_type}", media["example"], media["schema"]
    for header, described in document["components"].get("headers", {}).items():
        if "example" in described:
            yield f"header {header}", described["example"], described["schema"]
    for component, schema in document["components"]["schemas"].items():
        for i, example in enumerate(schema.get("examples", [])):
            yield f"{component} example {i}", example, {"$ref": f"#/components/schemas/{component}"}


def test_every_example_validates_against_its_schema() -> None:
    """The examples (pos_gateway.examples, the request models') are what a partner copies: each
    must be a valid value of the schema it illustrates."""
    document = _tool().current()
    wrong = []
    shown = 0
    for where, example, schema in _examples(document):
        shown += 1
        for error in _validator(schema, document).iter_errors(example):
            wrong.append(f"{where}: {'/'.join(map(str, error.absolute_path))}: {error.message}")
    assert shown > 40
    assert not wrong, "\n".join(wrong)


def _unbounded(schema: Any, where: str, found: list[str]) -> None:
    if isinstance(schema, list):
        for item in schema:
            _unbounded(item, where, found)
        return
    if not isinstance(schema, dict):
        return
    kind = schema.get("type")
    # A date-time's format bounds it.
    if (
        kind == "string"
        and not {"maxLength", "enum", "const"} & set(schema)
        and (schema.get("format") != "date-time")
    ):
        found.append(f"{where}: a string without maxLength")
    if kind == "array" and "maxItems" not in schema:
        found.append(f"{where}: an array without maxItems")
    if kind == "integer" and not (
        {"minimum", "maximum"} <= set(schema) and schema.get("format") in ("int32", "int64")
    ):
        found.append(f"{where}: an integer without minimum, maximum and format")
    if isinstance(schema.get("additionalProperties"), dict) and "maxProperties" not in schema:
        found.append(f"{where}: a map without maxProperties")
    for key, value in schema.items():
        if key == "properties":
            for name, prop in value.items():
                _unbounded(prop, f"{where.split('.')[0]}.{name}", found)
        elif key in ("items", "anyOf", "allOf", "oneOf", "additionalProperties"):
            _unbounded(value, where, found)


def test_every_string_array_and_integer_of_the_models_is_bounded() -> None:
    """A client can size its storage, and a fuzzer knows the edges, from the document alone:
    every model's strings, lists, maps and integers (with their int32/int64 format) have a
    maximum."""
    document = _tool().current()
    found: list[str] = []
    for component, schema in document["components"]["schemas"].items():
        _unbounded(schema, component, found)
    assert not found, "\n".join(sorted(set(found)))


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
            if path in ("/healthz", "/readyz", "/metrics", *OPEN_PATHS):
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
            if not path.startswith("/v1/"):
                continue
            # Every /v1 answer spends a budget (a credential's, or without one its source
            # address's, 401s too), but what is refused before (413, a 400 for the URL) and
            # a 503 of a gateway shedding requests.
            for status, answer in answers.items():
                headers = _header_names(answer, document)
                counted = status not in ("400", "413", "503")
                assert headers.get("RateLimit", False) is counted, f"{name} {status}"
                assert headers.get("RateLimit-Policy", False) is counted, f"{name} {status}"
            if "429" in answers:
                assert "Retry-After" in _header_names(answers["429"], document), name
            if path in OPEN_PATHS or path.startswith("/v1/admin/"):
                continue
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


def test_a_parameter_that_names_its_default_names_the_one_it_has() -> None:
    """A description saying "default N" says the default the schema has (and the route
    applies): the nearby stock's `limit` read "default 50" while 10 was taken."""
    document = _tool().current()
    wrong = []
    for name, operation in _operations(document):
        for parameter in operation.get("parameters", []):
            said = re.search(r"default (\d+)", parameter.get("description", ""))
            default = parameter.get("schema", {}).get("default")
            if said and default is not None and int(said.group(1)) != default:
                wrong.append(f"{name} {parameter['name']}: says {said.group(1)}, is {default}")
    assert not wrong, wrong


def test_a_replay_is_documented_with_the_etag_it_carries() -> None:
    """A POST replayed for its Idempotency-Key carries the first answer's ETag (the edge keeps
    it with the answer: tests/e2e/test_catalog.py); the document said it was absent."""
    headers = _tool().current()["components"]["headers"]
    for name in ("ETag-Unless-Replayed", "Idempotent-Replayed"):
        described = headers[name]["description"]
        assert "absent" not in described and "not stored" not in described, name
        assert "first answer's" in described, name


def test_every_operation_answering_an_etag_declares_it() -> None:
    """A route that sets the ETag header (itself or through a helper of its module) is one of
    the document's ETAG_OPERATIONS, and each of those is an operation: GET /v1/orders/{id},
    locations, registers, roles, groups, promotions and webhook subscriptions sent an ETag the
    document did not show."""
    import ast

    from pos_gateway.openapi import ETAG_OPERATIONS

    sending: set[str] = set()
    for module in sorted((ROOT / "gateway" / "src" / "pos_gateway" / "routes").glob("*.py")):
        tree = ast.parse(module.read_text())
        functions = [
            node for node in tree.body if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef)
        ]

        def sets_etag(node: ast.AST) -> bool:
            return any(isinstance(n, ast.Constant) and n.value == "ETag" for n in ast.walk(node))

        helpers = {f.name for f in functions if not f.decorator_list and sets_etag(f)}
        for f in functions:
            if not f.decorator_list:
                continue
            called = {
                n.func.id for n in ast.walk(f) if isinstance(n, ast.Call)
                and isinstance(n.func, ast.Name)
            }  # fmt: skip
            if sets_etag(f) or called & helpers:
                sending.add(f.name)
    operations = {operation.get("operationId") for _, operation in _operations(_tool().current())}
    assert "get_order" in sending
    assert sending <= ETAG_OPERATIONS, sorted(sending - ETAG_OPERATIONS)
    assert operations >= ETAG_OPERATIONS, sorted(ETAG_OPERATIONS - operations)


# The fields by which an answer names a customer (a profile's survivor is `merged_into`).
_NAMING_A_CUSTOMER = {"customer_id", "customer_ids", "merged_into"}


def _names_a_customer(schema: Any, document: dict[str, Any], seen: set[str]) -> bool:
    if isinstance(schema, list):
        return any(_names_a_customer(s, document, seen) for s in schema)
    if not isinstance(schema, dict):
        return False
    ref = schema.get("$ref")
    if isinstance(ref, str) and ref.startswith("#/components/schemas/"):
        name = ref.rsplit("/", 1)[-1]
        if name in seen:
            return False
        seen.add(name)
        return _names_a_customer(document["components"]["schemas"][name], document, seen)
    if _NAMING_A_CUSTOMER & set(schema.get("properties", {})):
        return True
    return any(_names_a_customer(v, document, seen) for v in schema.values())


def test_every_post_whose_answer_can_name_a_customer_documents_the_410() -> None:
    """An erasure replaces every answer stored under an Idempotency-Key that names the
    customer, found by its id anywhere in the body (`idempotency.withdraw_answers_naming`), by
    the 410 `customer_erased`, which the key replays from then on. So every POST whose answer
    can name a customer (a field of it in its success answer, or a 409 `customer_merged`
    naming the customer and the one it was merged into) answers that 410 and says so: a
    points adjustment's and a group's new members' did not."""
    document = _tool().current()
    silent = []
    for path, operations in document["paths"].items():
        operation = operations.get("post")
        if operation is None or not path.startswith("/v1/") or path.startswith("/v1/admin/"):
            continue
        answers = [_resolved(a, document) for s, a in operation["responses"].items() if s[0] == "2"]
        named = _names_a_customer(answers, document, set())
        merged = "`customer_merged`" in operation.get("description", "")
        if (named or merged) and "410" not in operation["responses"]:
            silent.append(f"POST {path}")
    assert not silent, "\n".join(silent)
    adjust = document["paths"]["/v1/customers/{customer_id}/points/adjustments"]["post"]
    assert "customer_erased" in _resolved(adjust["responses"]["410"], document)["description"]
