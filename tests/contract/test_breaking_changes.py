"""The public document never breaks a client by accident: optic's breaking-change rules
(tools/contract/optic.dev.yml) compare it with the version before this change. A removed
operation, status or answer field, a newly required request field or parameter, a changed type
or a narrowed enum fails, unless the change is a new API version (info.version's major number
raised).

"Before" is the document where this branch left main (`git merge-base HEAD main`), or on main
itself (as CI clones it) the previous commit's.
"""

from __future__ import annotations

import copy
import json
import subprocess
from pathlib import Path
from typing import Any

import pytest

SNAPSHOT = "gateway/openapi.json"


def _git(root: Path, *args: str) -> str | None:
    run = subprocess.run(["git", "-C", str(root), *args], capture_output=True, text=True)
    return run.stdout.strip() if run.returncode == 0 else None


def _previous_document(root: Path) -> str:
    head = _git(root, "rev-parse", "HEAD")
    if head is None:
        pytest.skip("not a git checkout: no previous OpenAPI document to compare with")
    base = _git(root, "merge-base", "HEAD", "main")
    if base is None or base == head:
        base = _git(root, "rev-parse", "--verify", "--quiet", "HEAD~1")
    if base is None:
        pytest.skip("no previous commit (a shallow clone?): no previous document to compare with")
    previous = _git(root, "show", f"{base}:{SNAPSHOT}")
    if previous is None:
        pytest.skip(f"commit {base[:12]} has no {SNAPSHOT}: nothing to compare with yet")
    return previous


def _optic(node_tools: Any, before: Path, after: Path) -> subprocess.Popen[str]:
    command = [
        str(node_tools.folder / "node_modules" / ".bin" / "optic"), "diff", str(before),
        str(after), "--check", "--standard", str(node_tools.folder / "optic.dev.yml"),
    ]  # fmt: skip
    # Run beside the compared files: under CI optic writes its report (ci-run-details.json)
    # into the working folder, which must not be the checkout.
    return subprocess.Popen(
        command,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        cwd=before.parent,
        env=node_tools.env(),
    )


def _finish(process: subprocess.Popen[str]) -> tuple[int, str]:
    output, _ = process.communicate(timeout=180)
    return process.returncode, output


def _refs(node: Any, found: set[str]) -> set[str]:
    if isinstance(node, dict):
        for key, value in node.items():
            if key == "$ref" and isinstance(value, str):
                found.add(value)
            else:
                _refs(value, found)
    elif isinstance(node, list):
        for value in node:
            _refs(value, found)
    return found


def _resolve(document: dict[str, Any], ref: str) -> Any:
    node: Any = document
    for part in ref.removeprefix("#/").split("/"):
        node = node.get(part) if isinstance(node, dict) else None
    return node


def _reached(document: dict[str, Any], node: Any) -> set[str]:
    """Every component `node` refers to, directly or through other components."""
    seen: set[str] = set()
    todo = _refs(node, set())
    while todo:
        ref = todo.pop()
        if ref not in seen:
            seen.add(ref)
            todo |= _refs(_resolve(document, ref), set()) - seen
    return seen


def _changed_paths(before: dict[str, Any], after: dict[str, Any]) -> list[str]:
    """The paths of the earlier document that a client of it could notice a change in: gone,
    changed themselves, or referring to a component that changed. An added path breaks no
    one, and an unchanged one needs no comparing (optic's time grows with the operations)."""
    changed = []
    for path, item in before["paths"].items():
        now = after["paths"].get(path)
        if now != item or any(
            _resolve(before, ref) != _resolve(after, ref)
            for ref in _reached(before, item) | _reached(after, now)
        ):
            changed.append(path)
    return changed


def test_the_document_keeps_the_previous_versions_contract(node_tools: Any, tmp_path: Path) -> None:
    before = json.loads(_previous_document(node_tools.document.parent.parent))
    after = json.loads(node_tools.document.read_text())
    changed = _changed_paths(before, after)
    for document in (before, after):
        document["paths"] = {p: document["paths"][p] for p in changed if p in document["paths"]}
    (tmp_path / "before.json").write_text(json.dumps(before))
    (tmp_path / "after.json").write_text(json.dumps(after))
    code, report = _finish(_optic(node_tools, tmp_path / "before.json", tmp_path / "after.json"))
    assert code == 0, report[-10_000:]


def test_only_the_paths_a_change_reaches_are_compared() -> None:
    schema = {"type": "object", "properties": {"n": {"type": "integer"}}}
    answer = {"content": {"application/json": {"schema": {"$ref": "#/components/schemas/Box"}}}}
    before = {
        "paths": {
            "/boxes": {"get": {"responses": {"200": answer}}},
            "/gone": {"get": {"responses": {"204": {"description": "none"}}}},
            "/same": {"get": {"responses": {"204": {"description": "none"}}}},
        },
        "components": {"schemas": {"Box": {"$ref": "#/components/schemas/Inner"}, "Inner": schema}},
    }
    after = copy.deepcopy(before)
    del after["paths"]["/gone"]
    after["paths"]["/new"] = after["paths"]["/same"]
    assert _changed_paths(before, after) == ["/gone"]
    # A component two references away changes: the path that shows it is compared.
    after["components"]["schemas"]["Inner"]["properties"]["n"]["type"] = "string"
    assert _changed_paths(before, after) == ["/boxes", "/gone"]


def _broken(document: dict[str, Any]) -> dict[str, Any]:
    """A copy of the document with one of each kind of break a client would suffer."""
    broken = copy.deepcopy(document)
    schemas = broken["components"]["schemas"]
    del broken["paths"]["/v1/orders/{order_id}"]["get"]  # an operation removed
    del broken["paths"]["/v1/payments/{payment_id}"]["get"]["responses"]["404"]  # a status
    schemas["ProductIn"]["required"].append("category")  # a request field newly required
    schemas["CheckoutLineIn"]["properties"]["quantity"]["type"] = "string"  # a type changed
    del schemas["Problem"]["properties"]["detail"]  # an answer field removed
    return broken


TOUCHED = ("/v1/orders/{order_id}", "/v1/payments/{payment_id}", "/v1/products", "/v1/checkouts")
RULES = (
    "prevent operation removal",
    "prevent response status code removal",
    "prevent changing request property to required",
    "prevent request property type changes",
    "prevent removing response property",
)


def test_a_breaking_change_fails_unless_it_is_a_new_major_version(
    node_tools: Any, tmp_path: Path
) -> None:
    # Only the paths the breaks touch: optic's time grows with the operations it compares.
    current = json.loads(node_tools.document.read_text())
    current["paths"] = {p: current["paths"][p] for p in TOUCHED}
    broken = _broken(current)
    major = int(current["info"]["version"].split(".")[0])
    new_version = {**broken, "info": {**broken["info"], "version": f"{major + 1}.0.0"}}
    (tmp_path / "current.json").write_text(json.dumps(current))
    (tmp_path / "broken.json").write_text(json.dumps(broken))
    (tmp_path / "new-version.json").write_text(json.dumps(new_version))
    # Both at once: each is a few seconds of one core.
    same = _optic(node_tools, tmp_path / "current.json", tmp_path / "broken.json")
    bumped = _optic(node_tools, tmp_path / "current.json", tmp_path / "new-version.json")
    (code, report), (bumped_code, bumped_report) = _finish(same), _finish(bumped)

    assert code != 0, report[-10_000:]
    missed = [rule for rule in RULES if f"[{rule}]" not in report]
    assert not missed, f"optic did not report {missed}:\n{report[-10_000:]}"
    assert bumped_code == 0, bumped_report[-10_000:]
