"""`updated_since` on the lists of staff, registers, shifts, webhook subscriptions,
locations, a promotion's coupons and customer groups, end to end: only what changed at or
after the time, oldest change first, walked page by page with the feed's own cursor (the kit's
change feed, as on products and customers); a time without a zone is a 400, and a cursor by id
is not one of the feed's."""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable
from datetime import datetime, timedelta
from typing import Any

import httpx
import pytest

from pos_devstack.http_checks import polled
from pos_devstack.testing import Running

pytestmark = pytest.mark.e2e


def _post(http: httpx.Client, path: str, body: dict[str, Any] | None = None) -> dict[str, Any]:
    made = http.post(path, json=body or {}, headers={"Idempotency-Key": str(uuid.uuid4())})
    assert made.status_code in (200, 201), made.text
    answer: dict[str, Any] = made.json()
    return answer


def _feed(http: httpx.Client, path: str, since: str, **params: Any) -> list[str]:
    """Every id of the feed from `since`, by pages of one, following next_cursor to its end."""
    seen: list[str] = []
    cursor = None
    for _ in range(50):
        answer = http.get(
            path,
            params={**params, "updated_since": since, "limit": 1,
                    **({"cursor": cursor} if cursor else {})},
        )  # fmt: skip
        assert answer.status_code == 200, answer.text
        page = answer.json()
        assert len(page["data"]) <= 1
        seen += [x["id"] for x in page["data"]]
        cursor = page["next_cursor"]
        if cursor is None:
            return seen
    raise AssertionError(f"{path} did not end")


def _fed(http: httpx.Client, path: str, since: str, count: int, **params: Any) -> list[str]:
    """`_feed`, once it shows `count` changes or more: the feed stops at the oldest transaction
    open in the database (a background task's), so a change just made may not show yet."""
    return polled(lambda: _feed(http, path, since, **params), lambda seen: len(seen) >= count)


def _after(stamp: str) -> str:
    """A time past `stamp` (shown to the millisecond, cut short): after the change it tells."""
    moment = datetime.fromisoformat(stamp.replace("Z", "+00:00")) + timedelta(milliseconds=1)
    return moment.isoformat().replace("+00:00", "Z")


def _check_feed(
    http: httpx.Client,
    path: str,
    made: list[dict[str, Any]],
    change: Callable[[dict[str, Any]], dict[str, Any]],
    **params: Any,
) -> None:
    """`made` (three, in the order they were made): the second, then the first, are changed;
    the feed from before them all has the third, then the second, then the first; from after
    the third was made, only the two changed, in the order they changed."""
    assert len(made) == 3
    time.sleep(0.02)  # the changes are clearly later than the third was made
    mark = _after(made[-1]["updated_at"])
    second = change(made[1])
    first = change(made[0])
    assert second["updated_at"] > made[-1]["updated_at"]
    assert first["updated_at"] >= second["updated_at"]
    ids = [m["id"] for m in made]

    assert _fed(http, path, made[0]["updated_at"], 3, **params) == [ids[2], ids[1], ids[0]]
    assert _fed(http, path, mark, 2, **params) == [ids[1], ids[0]]
    # Polling again from the last updated_at seen finds the last change (inclusive), only.
    assert _fed(http, path, first["updated_at"], 1, **params) == [ids[0]]
    # The feed is one page of what changed, with their new state.
    page = polled(
        lambda: http.get(path, params={**params, "updated_since": mark}).json(),
        lambda page: len(page["data"]) >= 2,
    )
    assert [x["id"] for x in page["data"]] == [ids[1], ids[0]]
    assert page["data"][-1]["updated_at"] == first["updated_at"]
    assert page["next_cursor"] is None

    # A time without a zone is a 400 naming updated_since, as on every list.
    naive = http.get(path, params={**params, "updated_since": "2026-01-01T00:00:00"})
    assert naive.status_code == 400, naive.text
    assert [e["field"] for e in naive.json()["errors"]] == ["updated_since"]
    # The feed's cursor and the list's by id are not each other's.
    by_id = http.get(path, params={**params, "limit": 1}).json()["next_cursor"]
    fed = polled(
        lambda: http.get(path, params={**params, "updated_since": mark, "limit": 1}).json(),
        lambda page: page["next_cursor"] is not None,
    )
    assert by_id and fed["next_cursor"]
    for cursor, since in ((by_id, mark), (fed["next_cursor"], None)):
        query = {**params, "cursor": cursor, **({"updated_since": since} if since else {})}
        refused = http.get(path, params=query)
        assert refused.status_code == 400, (path, refused.text)
        assert [e["field"] for e in refused.json()["errors"]] == ["cursor"]


def _paired(platform: Running, http: httpx.Client, location: str) -> tuple[str, httpx.Client]:
    register = _post(http, "/v1/registers", {"location_id": location, "name": "Till"})
    code = _post(http, f"/v1/registers/{register['id']}/pairing-codes")["code"]
    paired = httpx.post(platform.platform.gateway_url + "/v1/registers/pair", json={"code": code})
    assert paired.status_code == 201, paired.text
    device = httpx.Client(
        base_url=platform.platform.gateway_url,
        headers={"Authorization": f"Bearer {paired.json()['credential']}"},
        timeout=15.0,
    )
    return register["id"], device


def test_locations_take_updated_since(platform: Running) -> None:
    with platform.new_merchant("Location feed") as http:
        made = [
            _post(http, "/v1/locations", {"name": f"Store {n}", "currency": "USD"})
            for n in range(3)
        ]

        def change(location: dict[str, Any]) -> dict[str, Any]:
            answer = http.patch(f"/v1/locations/{location['id']}", json={"pickup_enabled": True})
            assert answer.status_code == 200, answer.text
            changed: dict[str, Any] = answer.json()
            assert changed["version"] == location["version"] + 1
            return changed

        _check_feed(http, "/v1/locations", made, change)


def test_webhook_subscriptions_take_updated_since(platform: Running) -> None:
    with platform.new_merchant("Subscription feed") as http:
        body = {"url": "http://127.0.0.1:9/hook", "event_types": ["refund.created"]}
        made = [
            _post(http, "/v1/webhook-subscriptions", {**body, "description": f"s{n}"})[
                "subscription"
            ]
            for n in range(3)
        ]

        def change(sub: dict[str, Any]) -> dict[str, Any]:
            answer = http.patch(
                f"/v1/webhook-subscriptions/{sub['id']}", json={"description": "changed"}
            )
            assert answer.status_code == 200, answer.text
            changed: dict[str, Any] = answer.json()
            return changed

        _check_feed(http, "/v1/webhook-subscriptions", made, change)


def test_staff_take_updated_since(platform: Running) -> None:
    with platform.new_merchant("Staff feed") as http:
        here = _post(http, "/v1/locations", {"name": "Store", "currency": "USD"})["id"]
        made = [
            _post(http, "/v1/staff",
                  {"name": f"Member {n}", "role": "cashier", "location_ids": [here],
                   "pin": "2580"})
            for n in range(3)
        ]  # fmt: skip

        def change(member: dict[str, Any]) -> dict[str, Any]:
            answer = http.patch(f"/v1/staff/{member['id']}", json={"name": "Renamed"})
            assert answer.status_code == 200, answer.text
            changed: dict[str, Any] = answer.json()
            assert changed["version"] == member["version"] + 1
            return changed

        _check_feed(http, "/v1/staff", made, change)
        # With a filter the feed is the filter's: here, all of them; elsewhere, none.
        since = made[0]["updated_at"]
        ids = [made[i]["id"] for i in (2, 1, 0)]
        assert _fed(http, "/v1/staff", since, 3, location_id=here) == ids
        there = _post(http, "/v1/locations", {"name": "Other", "currency": "USD"})["id"]
        assert _feed(http, "/v1/staff", since, location_id=there) == []


def test_registers_take_updated_since(platform: Running) -> None:
    with platform.new_merchant("Register feed") as http:
        here = _post(http, "/v1/locations", {"name": "Store", "currency": "USD"})["id"]
        made = [
            _post(http, "/v1/registers", {"location_id": here, "name": f"Till {n}"})
            for n in range(3)
        ]

        def change(register: dict[str, Any]) -> dict[str, Any]:
            return _post(http, f"/v1/registers/{register['id']}/retire")

        _check_feed(http, "/v1/registers", made, change)
        # With a filter the feed is the filter's: here, all of them; elsewhere, none.
        since = made[0]["updated_at"]
        ids = [made[i]["id"] for i in (2, 1, 0)]
        assert _fed(http, "/v1/registers", since, 3, location_id=here) == ids
        there = _post(http, "/v1/locations", {"name": "Other", "currency": "USD"})["id"]
        assert _feed(http, "/v1/registers", since, location_id=there) == []
        # Retiring a retired register changes nothing: it does not move in the feed.
        last = made[0]["id"]
        again = _post(http, f"/v1/registers/{last}/retire")
        assert _fed(http, "/v1/registers", again["updated_at"], 1) == [last]


def test_shifts_take_updated_since(platform: Running) -> None:
    with platform.new_merchant("Shift feed") as http:
        here = _post(http, "/v1/locations", {"name": "Store", "currency": "USD"})["id"]
        member = _post(http, "/v1/staff",
                       {"name": "Drew", "role": "cashier", "location_ids": [here],
                        "pin": "2580"})["id"]  # fmt: skip
        devices: dict[str, httpx.Client] = {}
        made = []
        for _ in range(3):
            _, device = _paired(platform, http, here)
            _post(device, "/v1/register-sessions", {"staff_id": member, "pin": "2580"})
            shift = _post(
                device, "/v1/shifts", {"opening_float": {"amount": 10_000, "currency": "USD"}}
            )
            devices[shift["id"]] = device
            made.append(shift)

        def change(shift: dict[str, Any]) -> dict[str, Any]:
            counted = {"counted_cash": {"amount": 10_000, "currency": "USD"}}
            closed = _post(devices[shift["id"]], f"/v1/shifts/{shift['id']}/close", counted)
            assert closed["status"] == "closed" and closed["version"] == shift["version"] + 1
            return closed

        try:
            _check_feed(http, "/v1/shifts", made, change)
        finally:
            for device in devices.values():
                device.close()


def test_a_promotions_coupons_take_updated_since(platform: Running) -> None:
    with platform.new_merchant("Coupon feed") as http:
        promo = _post(
            http,
            "/v1/promotions",
            {"name": "Feed", "percent_off_bps": 1000, "requires_coupon": True},
        )
        path = f"/v1/promotions/{promo['id']}/coupons"
        made = _post(http, path, {"codes": ["FEED-1", "FEED-2", "FEED-3"]})["coupons"]

        def change(coupon: dict[str, Any]) -> dict[str, Any]:
            changed = _post(http, f"{path}/{coupon['id']}/deactivate")
            assert changed["status"] == "deactivated"
            return changed

        _check_feed(http, path, made, change)
        # With a filter the feed is the filter's: the deactivated ones, in the order they were.
        since = made[0]["updated_at"]
        ids = [made[i]["id"] for i in (1, 0)]
        assert _fed(http, path, since, 2, status="deactivated") == ids
        assert _feed(http, path, since, status="active") == [made[2]["id"]]


def test_customer_groups_take_updated_since(platform: Running) -> None:
    with platform.new_merchant("Group feed") as http:
        made = [_post(http, "/v1/customer-groups", {"name": f"Group {n}"}) for n in range(3)]

        def change(group: dict[str, Any]) -> dict[str, Any]:
            answer = http.patch(
                f"/v1/customer-groups/{group['id']}", json={"name": "Renamed " + group["id"][-6:]}
            )
            assert answer.status_code == 200, answer.text
            changed: dict[str, Any] = answer.json()
            assert changed["version"] == group["version"] + 1
            return changed

        _check_feed(http, "/v1/customer-groups", made, change)


def test_roles_take_updated_since(platform: Running) -> None:
    with platform.new_merchant("Role feed") as http:
        made = [
            _post(http, "/v1/roles", {"name": f"Lead {n}", "permissions": ["refund"]})
            for n in range(3)
        ]

        def change(role: dict[str, Any]) -> dict[str, Any]:
            answer = http.patch(f"/v1/roles/{role['id']}", json={"discount_limit_bps": 500})
            assert answer.status_code == 200, answer.text
            changed: dict[str, Any] = answer.json()
            assert changed["version"] == role["version"] + 1
            return changed

        # The built-in roles never change: the feed has the merchant's own only.
        _check_feed(http, "/v1/roles", made, change)


def _tombstone(http: httpx.Client, path: str, since: str, item_id: str) -> dict[str, Any]:
    """The item of the feed from `since` that is `item_id`, once the feed shows it."""

    def read() -> list[dict[str, Any]]:
        answer = http.get(path, params={"updated_since": since, "limit": 200})
        assert answer.status_code == 200, answer.text
        return [x for x in answer.json()["data"] if x["id"] == item_id]

    found: list[dict[str, Any]] = polled(read)
    assert found, f"{item_id} is not in the feed of {path} from {since}"
    return found[0]


def test_a_deleted_customer_group_is_a_tombstone_in_the_feed_only(platform: Running) -> None:
    """A group deleted shows in the `updated_since` feed at the time of its deletion, as a
    tombstone (`status: deleted`, a new `version`, no members), so a poller learns it is gone;
    the list without `updated_since`, and a read of it, know only the groups there."""
    with platform.new_merchant("Deleted group feed") as http:
        kept = _post(http, "/v1/customer-groups", {"name": "Kept"})
        gone = _post(http, "/v1/customer-groups", {"name": "Gone"})
        assert (kept["status"], gone["status"]) == ("active", "active")
        deleted = http.delete(f"/v1/customer-groups/{gone['id']}")
        assert deleted.status_code == 200, deleted.text

        entry = _tombstone(http, "/v1/customer-groups", gone["updated_at"], gone["id"])
        assert (entry["status"], entry["version"], entry["member_count"]) == (
            "deleted", gone["version"] + 1, 0
        ), entry  # fmt: skip
        assert entry["updated_at"] > gone["updated_at"]
        listed = http.get("/v1/customer-groups").json()["data"]
        assert [(g["id"], g["status"]) for g in listed] == [(kept["id"], "active")]
        assert http.get(f"/v1/customer-groups/{gone['id']}").status_code == 404
        # Its name is free again, as it was when a deleted group left no row.
        again = _post(http, "/v1/customer-groups", {"name": "Gone"})
        assert again["id"] != gone["id"]


def test_a_deleted_promotion_is_a_tombstone_in_the_feed_only(platform: Running) -> None:
    """A promotion deleted shows in the `updated_since` feed of GET /v1/promotions at the time
    of its deletion (`status: deleted`, a new `version`), so a poller learns it is gone; the
    list without `updated_since`, narrowed by a status, and a read of it know only the
    promotions there."""
    with platform.new_merchant("Deleted promotion feed") as http:
        kept = _post(http, "/v1/promotions", {"name": "Kept", "percent_off_bps": 100})
        gone = _post(http, "/v1/promotions", {"name": "Gone", "percent_off_bps": 200})
        deleted = http.delete(f"/v1/promotions/{gone['id']}")
        assert deleted.status_code == 200, deleted.text

        entry = _tombstone(http, "/v1/promotions", gone["updated_at"], gone["id"])
        assert (entry["status"], entry["version"]) == ("deleted", gone["version"] + 1), entry
        assert entry["updated_at"] > gone["updated_at"]
        assert _feed(http, "/v1/promotions", kept["updated_at"], status="active") == [kept["id"]]
        listed = http.get("/v1/promotions").json()["data"]
        assert [(p["id"], p["status"]) for p in listed] == [(kept["id"], "active")]
        assert http.get(f"/v1/promotions/{gone['id']}").status_code == 404
        assert http.delete(f"/v1/promotions/{gone['id']}").status_code == 404
