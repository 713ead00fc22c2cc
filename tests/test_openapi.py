"""The served OpenAPI document equals the committed snapshot (run `make openapi` to accept)."""

from __future__ import annotations

import importlib.util
from pathlib import Path

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
