"""Contract tests act as merchants of their own, each with the sandbox's demo data: what one
test leaves behind (a fuzzer's 100 %-off promotion, say) reaches no other test."""

from __future__ import annotations

import os
import shutil
import subprocess
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

from pos_devstack.platform import seed_demo_data
from pos_devstack.testing import Running


@dataclass
class Merchant:
    http: httpx.Client
    key: str


@pytest.fixture
def demo_merchant(platform: Running) -> Iterator[Merchant]:
    http = platform.new_merchant(f"Contract {uuid.uuid4().hex[:8]}")
    key = http.headers["Authorization"].removeprefix("Bearer ")
    seed_demo_data(platform.platform.gateway_url, key)
    with http:
        yield Merchant(http, key)


# The OpenAPI ecosystem's own tools (Redocly, Spectral, optic, openapi-typescript), pinned in
# tools/contract/package-lock.json and installed by `make install` where Node.js is present.
CONTRACT_TOOLS = Path(__file__).resolve().parents[2] / "tools" / "contract"
# No telemetry or update checks from the tools: a test run sends nothing anywhere.
QUIET = {
    "OPTIC_TELEMETRY_LEVEL": "off",
    "REDOCLY_TELEMETRY": "off",
    "REDOCLY_SUPPRESS_UPDATE_NOTICE": "true",
    "NO_UPDATE_NOTIFIER": "1",
}


@dataclass(frozen=True)
class NodeTools:
    folder: Path  # tools/contract: the rulesets, the client flow, node_modules
    document: Path  # gateway/openapi.json, the committed snapshot

    def env(self) -> dict[str, str]:
        return {**os.environ, **QUIET}

    def run(
        self, tool: str, *args: str, env: dict[str, str] | None = None, timeout: float = 120
    ) -> subprocess.CompletedProcess[str]:
        """Run a tool from node_modules/.bin in tools/contract."""
        return subprocess.run(
            [str(self.folder / "node_modules" / ".bin" / tool), *args],
            capture_output=True,
            text=True,
            timeout=timeout,
            cwd=self.folder,
            env={**self.env(), **(env or {})},
        )


@pytest.fixture(scope="session")
def node_tools() -> NodeTools:
    """The installed contract tools; the tests that need them skip on a machine with no Node."""
    if shutil.which("node") is None:
        pytest.skip("Node.js is not installed: the OpenAPI contract tools (tools/contract) need it")
    assert (CONTRACT_TOOLS / "node_modules" / ".bin").is_dir(), (
        "the contract tools are not installed: run `make install`"
    )
    return NodeTools(CONTRACT_TOOLS, CONTRACT_TOOLS.parent.parent / "gateway" / "openapi.json")
