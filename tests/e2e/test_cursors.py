"""List cursors end to end: a cursor the list gave walks it to the end; any other string (made
up, another API's token, cut short, edited, or another list's cursor) is a 400 naming `cursor`,
never the first page again nor an empty one (a client would loop forever, or stop early)."""

from __future__ import annotations

import base64
import uuid
from typing import Any

import httpx
import pytest

from pos_devstack.http_checks import polled
from pos_devstack.testing import Running

pytestmark = pytest.mark.e2e

# What a probe sent: garbage, a JSON object's base64, an id's base64 (as cursors were), signs.
MADE_UP = ["garbage", "eyJ4IjoxfQ", "d2hzdWJfMDFt", "!!!!", "\u00e9t\u00e9", "AAAAAAAA"]

# Every list of the API that takes a cursor, gateway's own and the services', and the roles
# (one page: no cursor is ever one it gave).
LISTS = [
    "/v1/audit-log",
    "/v1/roles",
    "/v1/registers",
    "/v1/staff",
    "/v1/api-keys",
    "/v1/oauth-clients",
    "/v1/promotions",
    "/v1/orders",
    "/v1/webhook-subscriptions",
    "/v1/locations",
    "/v1/products",
    "/v1/customers",
    "/v1/customer-groups",
    "/v1/payments",
    "/v1/refunds",
    "/v1/shifts",
    "/v1/inventory/history",
    "/v1/gift-cards",
]


def _post(http: httpx.Client, path: str, body: dict[str, Any]) -> dict[str, Any]:
    made = http.post(path, json=body, headers={"Idempotency-Key": str(uuid.uuid4())})
    assert made.status_code == 201, made.text
    answer: dict[str, Any] = made.json()
    return answer


def _walk(http: httpx.Client, path: str, **params: Any) -> list[str]:
    """Every id of the list, by pages of two, following next_cursor to its end."""
    seen: list[str] = []
    cursor = None
    for _ in range(50):
        answer = http.get(
            path, params={**params, "limit": 2, **({"cursor": cursor} if cursor else {})}
        )
        assert answer.status_code == 200, answer.text
        seen += [x["id"] for x in answer.json()["data"]]
        cursor = answer.json()["next_cursor"]
        if cursor is None:
            return seen
    raise AssertionError(f"{path} did not end")


def _refused(http: httpx.Client, path: str, cursor: str, **params: Any) -> None:
    answer = http.get(path, params={**params, "cursor": cursor})
    assert answer.status_code == 400, (path, cursor, answer.status_code, answer.text)
    assert answer.headers["content-type"].startswith("application/problem+json")
    problem = answer.json()
    assert [e["field"] for e in problem["errors"]] == ["cursor"], (path, problem)
    # One code whichever layer refused it (the gateway's own lists or a service's).
    assert problem["code"] == "invalid_request", (path, problem)
    assert "page_token" not in answer.text


def _edited(cursor: str) -> list[str]:
    """A cursor cut short, with one character changed, and padded: none is the list's."""
    flip = "A" if cursor[5] != "A" else "B"
    return [cursor[:-1], cursor[:-4], cursor[:5] + flip + cursor[6:], cursor + "=="]


def test_a_cursor_the_list_did_not_give_is_a_400_naming_cursor(platform: Running) -> None:
    with platform.new_merchant("Cursor walker") as http:
        locations = [
            _post(http, "/v1/locations", {"name": f"Store {n}", "currency": "USD"})["id"]
            for n in range(3)
        ]
        registers = [
            _post(http, "/v1/registers", {"location_id": locations[0], "name": f"Till {n}"})["id"]
            for n in range(3)
        ]
        keys = [
            _post(http, "/v1/api-keys", {"name": f"k{n}", "scopes": ["catalog:read"]})["id"]
            for n in range(3)
        ]

        # The cursors the lists give walk them to the end, each item once.
        assert sorted(_walk(http, "/v1/locations")) == sorted(locations)
        assert sorted(_walk(http, "/v1/registers")) == sorted(registers)
        assert set(keys) <= set(_walk(http, "/v1/api-keys"))
        audit = _walk(http, "/v1/audit-log")
        assert len(audit) == len(set(audit)) >= 3

        # Made-up strings, on every list.
        for path in LISTS:
            for cursor in MADE_UP:
                _refused(http, path, cursor)
        # An empty cursor is the first page.
        assert http.get("/v1/registers", params={"cursor": ""}).status_code == 200

        # A cursor of the list, cut or edited; the id it stands for, bare or in base64.
        page = http.get("/v1/registers", params={"limit": 1}).json()
        good = page["next_cursor"]
        assert http.get("/v1/registers", params={"limit": 1, "cursor": good}).status_code == 200
        first = page["data"][0]["id"]
        bare = [first, base64.urlsafe_b64encode(first.encode()).decode().rstrip("=")]
        for cursor in [*_edited(good), *bare]:
            _refused(http, "/v1/registers", cursor)
        located = http.get("/v1/locations", params={"limit": 1}).json()["next_cursor"]
        for cursor in _edited(located):
            _refused(http, "/v1/locations", cursor)

        # Another list's cursor, across the gateway's lists and the services'.
        _refused(http, "/v1/staff", good)
        _refused(http, "/v1/audit-log", good)
        _refused(http, "/v1/roles", good)
        _refused(http, "/v1/locations", good)
        _refused(http, "/v1/registers", located)
        _refused(http, "/v1/products", located)
        _refused(http, "/v1/promotions", located)
        # A change feed's cursor is not a cursor by id of the same list, nor the other way.
        since = "2000-01-01T00:00:00Z"
        _post(http, "/v1/customers", {"email": f"a-{uuid.uuid4().hex[:8]}@example.com"})
        _post(http, "/v1/customers", {"email": f"b-{uuid.uuid4().hex[:8]}@example.com"})
        # The feed stops at the oldest transaction open in the customer database (a background
        # task's), so the two just made may not both show at once: asked until there is a page on.
        feed = polled(
            lambda: http.get("/v1/customers", params={"updated_since": since, "limit": 1}).json(),
            lambda page: page["next_cursor"] is not None,
        )
        by_id = http.get("/v1/customers", params={"limit": 1}).json()
        _refused(http, "/v1/customers", feed["next_cursor"])
        _refused(http, "/v1/customers", by_id["next_cursor"], updated_since=since)
        for cursor in MADE_UP:
            _refused(http, "/v1/customers", cursor, updated_since=since)


def test_a_cursor_with_other_filters_is_a_400_naming_cursor(platform: Running) -> None:
    """A cursor positions the list as filtered when it was given; with another filter it would
    page on from a position in another list (skipping or repeating items without a word)."""
    with platform.new_merchant("Cursor filters") as http:
        here, there = (
            _post(http, "/v1/locations", {"name": f"Store {n}", "currency": "USD"})["id"]
            for n in range(2)
        )
        for n in range(3):
            _post(http, "/v1/registers", {"location_id": here, "name": f"Till {n}"})
        _post(http, "/v1/registers", {"location_id": there, "name": "Back"})

        # The gateway's own list: the same filter walks on; another one, or none, is refused.
        page = http.get("/v1/registers", params={"limit": 1, "location_id": here}).json()
        cursor = page["next_cursor"]
        again = http.get(
            "/v1/registers", params={"limit": 5, "location_id": here, "cursor": cursor}
        )
        assert again.status_code == 200, again.text
        assert len(again.json()["data"]) == 2
        _refused(http, "/v1/registers", cursor, location_id=there)
        _refused(http, "/v1/registers", cursor)
        audit = http.get("/v1/audit-log", params={"limit": 1, "action": "register.*"}).json()
        _refused(http, "/v1/audit-log", audit["next_cursor"])

        # A service's list (the catalog's search): the same query walks on; another is refused.
        word = f"Cf{uuid.uuid4().hex[:8]}"
        for n in range(3):
            _post(http, "/v1/products", {"sku": f"{word}-{n}", "name": f"{word} {n}",
                                         "price": {"amount": 100, "currency": "USD"}})  # fmt: skip
        found = http.get("/v1/products", params={"limit": 1, "query": word}).json()
        cursor = found["next_cursor"]
        walked = http.get("/v1/products", params={"limit": 5, "query": word, "cursor": cursor})
        assert walked.status_code == 200, walked.text
        assert len(walked.json()["data"]) == 2
        _refused(http, "/v1/products", cursor, query=f"{word} 2")
        _refused(http, "/v1/products", cursor, query=word, status="archived")
