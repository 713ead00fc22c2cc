"""A merchant's first settings change (and the loyalty program's), several at once and none
with If-Match: each is applied (the last one wins, as for any later change), none is refused
with a 412 it never asked for."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from typing import Any

import httpx
import pytest

from pos_devstack.testing import Running

pytestmark = pytest.mark.e2e

# Values no default has, each different: every request is a change.
CHANGES: list[tuple[str, str, str, list[int]]] = [
    ("put", "/v1/payment-settings", "authorization_window_seconds", [7201 + n for n in range(6)]),
    ("put", "/v1/gift-card-settings", "max_balance", [123_457 + n for n in range(6)]),
    ("put", "/v1/audit-settings", "retention_days", [41 + n for n in range(6)]),
    ("patch", "/v1/order-settings", "hold_seconds", [613 + n for n in range(6)]),
    ("put", "/v1/loyalty-program", "points_per_unit", [2 + n for n in range(6)]),
]


@pytest.mark.parametrize(("method", "path", "field", "values"), CHANGES)
def test_first_changes_at_once_are_all_applied(
    platform: Running, method: str, path: str, field: str, values: list[int]
) -> None:
    with platform.new_merchant(f"First change {field}") as http:

        def change(value: int) -> httpx.Response:
            return http.request(method, path, json={field: value})

        with ThreadPoolExecutor(len(values)) as pool:
            answers = list(pool.map(change, values))
        assert [a.status_code for a in answers] == [200] * len(values), [a.text for a in answers]
        # One after the other, each on top of the last: versions 2 to 7, the last one kept.
        assert sorted(a.json()["version"] for a in answers) == list(range(2, 2 + len(values)))
        final: dict[str, Any] = http.get(path).json()
        last = max(answers, key=lambda a: a.json()["version"]).json()
        assert (final["version"], final[field]) == (1 + len(values), last[field])
