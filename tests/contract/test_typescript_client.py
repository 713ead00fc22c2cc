"""A TypeScript partner can sell through types generated from the document.

openapi-typescript turns the committed gateway/openapi.json into types (`npm run generate` in
tools/contract, the same command a partner would run), `tsc --strict` compiles the small flow
in tools/contract/client/flow.mts against them with openapi-fetch, and node runs it against
the live platform: create a product, stock it, sell it in a checkout, read the order back, and
get a typed 400 problem for a negative price.
"""

from __future__ import annotations

import json
import subprocess
from typing import Any

import pytest

from pos_devstack.testing import Running

pytestmark = pytest.mark.e2e


def _ok(run: subprocess.CompletedProcess[str], what: str) -> str:
    assert run.returncode == 0, f"{what} failed:\n{run.stdout[-10_000:]}\n{run.stderr[-10_000:]}"
    return run.stdout


def test_a_typescript_client_generated_from_the_document_sells(
    platform: Running, demo_merchant: Any, node_tools: Any
) -> None:
    folder = node_tools.folder
    common = {"capture_output": True, "text": True, "cwd": folder, "env": node_tools.env()}
    _ok(subprocess.run(["npm", "run", "--silent", "generate"], timeout=120, **common), "generate")
    _ok(node_tools.run("tsc", "--project", "client/tsconfig.json"), "tsc --strict")
    env = {
        **node_tools.env(),
        "OMNITILL_API_URL": platform.platform.gateway_url,
        "OMNITILL_API_KEY": demo_merchant.key,
    }
    flow = subprocess.run(["node", "client/build/flow.mjs"], timeout=120, **{**common, "env": env})
    result = json.loads(_ok(flow, "the TypeScript flow").strip().splitlines()[-1])

    product, order, problem = result["product"], result["order"], result["problem"]
    assert product["etag"] == '"1"'
    assert order["status"] == "completed"
    assert [(line["sku"], line["quantity"]) for line in order["lines"]] == [(product["sku"], 2)]
    assert order["total"]["currency"] == "USD"
    assert problem["status"] == 400
    assert problem["code"] == "invalid_request"
    assert "price.amount" in {e["field"] for e in problem["errors"]}
    # What the flow saw is what the platform holds.
    stored = demo_merchant.http.get(f"/v1/orders/{order['id']}")
    assert stored.status_code == 200
    assert stored.json()["total"] == order["total"]
