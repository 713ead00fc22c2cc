"""Contract tests act as merchants of their own, each with the sandbox's demo data: what one
test leaves behind (a fuzzer's 100 %-off promotion, say) reaches no other test."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from dataclasses import dataclass

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
