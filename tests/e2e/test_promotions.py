"""Promotions and coupons through the gateway: offers with rules, versions, states, coupon codes
shown once. A merchant of its own, so no other test's checkout sees these offers."""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from pos_devstack.http_checks import polled
from pos_devstack.testing import Running

pytestmark = pytest.mark.e2e


@pytest.fixture(scope="module")
def shop(platform: Running) -> Iterator[httpx.Client]:
    with platform.new_merchant(f"Promotions {uuid.uuid4().hex[:8]}") as http:
        yield http


def _post(
    http: httpx.Client, path: str, body: dict[str, Any] | None = None, **headers: str
) -> httpx.Response:
    return http.post(
        path, json=body or {}, headers={"Idempotency-Key": str(uuid.uuid4()), **headers}
    )


BOGO = {
    "name": "Shirts: buy one, get one free",
    "rule": {
        "kind": "buy_x_get_y",
        "items": {"categories": ["shirts"]},
        "percent_bps": 10000,
        "buy_quantity": 1,
        "get_quantity": 1,
    },
    "conditions": {
        "channels": ["register"],
        "time_zone": "America/New_York",
        "days_of_week": [5, 6],
    },
}


def test_an_offer_is_created_read_updated_with_if_match_and_paused(shop: httpx.Client) -> None:
    made = _post(shop, "/v1/promotions", BOGO)
    assert made.status_code == 201, made.text
    promo = made.json()
    assert promo["rule"]["kind"] == "buy_x_get_y" and promo["rule"]["level"] == "item"
    assert promo["conditions"]["days_of_week"] == [5, 6] and promo["status"] == "active"
    assert made.headers["ETag"] == '"1"'
    got = shop.get(f"/v1/promotions/{promo['id']}")
    assert got.json() == promo
    stale = shop.patch(
        f"/v1/promotions/{promo['id']}", json={"priority": 5}, headers={"If-Match": '"9"'}
    )
    assert stale.status_code == 412 and stale.json()["current_version"] == 1
    patched = shop.patch(
        f"/v1/promotions/{promo['id']}", json={"priority": 5}, headers={"If-Match": '"1"'}
    )
    assert patched.status_code == 200, patched.text
    assert (patched.json()["priority"], patched.json()["version"]) == (5, 2)
    paused = _post(shop, f"/v1/promotions/{promo['id']}/pause")
    assert paused.json()["status"] == "paused"
    ended = _post(shop, f"/v1/promotions/{promo['id']}/end")
    assert ended.json()["status"] == "ended" and ended.json()["ended_at"]
    again = _post(shop, f"/v1/promotions/{promo['id']}/resume")
    assert again.status_code == 409 and again.json()["code"] == "promotion_ended"
    # The feed stops at the oldest transaction open in the promotion database (the relay's,
    # begun before the end was written, say): read again until the promotion shows.
    since = {"updated_since": "2000-01-01T00:00:00Z"}
    fed = polled(
        lambda: [p["id"] for p in shop.get("/v1/promotions", params=since).json()["data"]],
        lambda ids: promo["id"] in ids,
    )
    assert promo["id"] in fed


def test_a_contradictory_offer_is_a_400_naming_each_field(shop: httpx.Client) -> None:
    bad = _post(
        shop,
        "/v1/promotions",
        {
            "name": "Broken",
            "rule": {"kind": "tiers", "tiers": [{"min_quantity": 2, "percent_bps": 1000},
                                                 {"min_quantity": 2, "percent_bps": 2000}]},
            "conditions": {"starts_at": "2026-12-10T00:00", "ends_at": "2026-12-01T00:00"},
        },
    )  # fmt: skip
    assert bad.status_code == 400, bad.text
    fields = {e["field"] for e in bad.json()["errors"]}
    assert fields >= {"rule.tiers[1].min_quantity", "conditions.ends_at"}


def test_coupon_codes_are_shown_once_and_an_unused_promotion_is_deleted(
    shop: httpx.Client,
) -> None:
    promo = _post(
        shop,
        "/v1/promotions",
        {"name": "Welcome", "percent_off_bps": 1000, "requires_coupon": True},
    ).json()
    key = str(uuid.uuid4())
    body = {"generate": 2, "max_uses": 1}
    first = shop.post(
        f"/v1/promotions/{promo['id']}/coupons", json=body, headers={"Idempotency-Key": key}
    )
    assert first.status_code == 201, first.text
    batch = first.json()
    assert len(batch["codes"]) == 2 and batch["secret_redacted"] is False
    assert [c["code_hint"] for c in batch["coupons"]] == [c[-4:] for c in batch["codes"]]
    replay = shop.post(
        f"/v1/promotions/{promo['id']}/coupons", json=body, headers={"Idempotency-Key": key}
    )
    assert replay.json()["codes"] is None and replay.json()["secret_redacted"] is True
    listed = shop.get(f"/v1/promotions/{promo['id']}/coupons").json()["data"]
    assert sorted(c["id"] for c in listed) == sorted(c["id"] for c in batch["coupons"])
    assert all("code" not in c for c in listed)
    unused = _post(shop, "/v1/promotions", {"name": "Never used", "percent_off_bps": 100}).json()
    # A deletion under a stale If-Match is refused as a change is, and the promotion stays.
    stale = shop.delete(f"/v1/promotions/{unused['id']}", headers={"If-Match": '"2"'})
    assert stale.status_code == 412, stale.text
    assert (stale.json()["code"], stale.json()["current_version"]) == ("version_mismatch", 1)
    assert shop.get(f"/v1/promotions/{unused['id']}").status_code == 200
    deleted = shop.delete(f"/v1/promotions/{unused['id']}", headers={"If-Match": '"1"'})
    assert deleted.status_code == 200 and deleted.json()["id"] == unused["id"]
    assert shop.get(f"/v1/promotions/{unused['id']}").status_code == 404
    # A partner mirroring promotions hears of it: a tombstone in the feed.
    deadline = time.monotonic() + 20
    while True:
        feed = shop.get("/v1/events", params={"types": "promotion.deleted"}).json()["data"]
        tombstones = [e["data"]["object"] for e in feed]
        if tombstones or time.monotonic() > deadline:
            break
        time.sleep(0.2)
    assert tombstones == [{"id": unused["id"]}]


def test_contradictory_input_is_a_400_naming_the_field(shop: httpx.Client) -> None:
    def refused(path: str, body: dict[str, Any]) -> set[str]:
        answer = _post(shop, path, body)
        assert answer.status_code == 400, answer.text
        return {e["field"] for e in answer.json()["errors"]}

    both = {"name": "Both", "percent_off_bps": 1000}
    both["rule"] = {"kind": "percent_off", "percent_bps": 500}
    assert refused("/v1/promotions", both) == {"percent_off_bps"}
    foreign = {
        "name": "Foreign",
        "rule": {
            "kind": "amount_off",
            "amount": {"amount": 500, "currency": "USD"},
            "percent_bps": 500,
        },
    }
    assert refused("/v1/promotions", foreign) == {"rule.percent_bps"}
    channel = {"name": "Odd channel", "percent_off_bps": 100}
    channel["rule"] = {"kind": "percent_off", "percent_bps": 100}
    del channel["percent_off_bps"]
    channel["conditions"] = {"channels": ["Web Shop"]}
    assert refused("/v1/promotions", channel) == {"conditions.channels"}
    # A channel of the merchant's own naming is fine, as the order service takes any such name.
    channel["conditions"] = {"channels": ["bogus"]}
    assert _post(shop, "/v1/promotions", channel).status_code == 201
    promo = _post(
        shop, "/v1/promotions", {"name": "Late", "percent_off_bps": 100, "requires_coupon": True}
    ).json()
    expired = {"codes": ["LATE-2025"], "expires_at": "2025-01-01T00:00:00Z"}
    assert refused(f"/v1/promotions/{promo['id']}/coupons", expired) == {"expires_at"}


def test_an_offer_naming_ids_not_of_this_merchant_is_a_404_naming_the_field(
    shop: httpx.Client,
) -> None:
    """Its products, stores and customer groups are checked on create and on update (a cart
    is priced without calling anyone, so never on the checkout's path)."""

    def missing(answer: httpx.Response) -> list[str]:
        assert answer.status_code == 404, answer.text
        assert answer.json()["code"] == "resource_missing"
        return [e["field"] for e in answer.json()["errors"]]

    store = _post(shop, "/v1/locations", {"name": "Offers St", "currency": "USD"}).json()
    group = _post(shop, "/v1/customer-groups", {"name": "VIP"}).json()
    offer = {"name": "Targeted", "percent_off_bps": 500}
    offer["conditions"] = {"location_ids": [store["id"], "loc_missing"]}
    assert missing(_post(shop, "/v1/promotions", offer)) == ["conditions.location_ids[1]"]
    # A store listed twice before the unknown one: named as sent, not by its place in the
    # list without the repeat (which would be the known store's).
    offer["conditions"] = {"location_ids": [store["id"], store["id"], "loc_missing"]}
    assert missing(_post(shop, "/v1/promotions", offer)) == ["conditions.location_ids[2]"]
    offer["conditions"] = {"location_ids": [store["id"]], "customer_groups": ["grp_nope"]}
    assert missing(_post(shop, "/v1/promotions", offer)) == ["conditions.customer_groups[0]"]
    offer["conditions"] = {"location_ids": [store["id"]], "customer_groups": [group["id"]]}
    made = _post(shop, "/v1/promotions", offer)
    assert made.status_code == 201, made.text
    items = {"kind": "percent_off", "percent_bps": 500, "items": {"product_ids": ["prod_nope"]}}
    patched = shop.patch(f"/v1/promotions/{made.json()['id']}", json={"rule": items})
    assert missing(patched) == ["rule.items.product_ids[0]"]
    twice = {"location_ids": [store["id"], store["id"], "loc_missing"]}
    patched = shop.patch(f"/v1/promotions/{made.json()['id']}", json={"conditions": twice})
    assert missing(patched) == ["conditions.location_ids[2]"]


def test_a_percent_off_without_a_rule_keeps_its_conditions(shop: httpx.Client) -> None:
    made = _post(
        shop,
        "/v1/promotions",
        {"name": "Weekends", "percent_off_bps": 1000, "conditions": {"days_of_week": [6, 7]}},
    )
    assert made.status_code == 201, made.text
    assert made.json()["conditions"]["days_of_week"] == [6, 7]
    got = shop.get(f"/v1/promotions/{made.json()['id']}").json()
    assert got["conditions"]["days_of_week"] == [6, 7]
    bad = _post(
        shop,
        "/v1/promotions",
        {"name": "Nowhere", "percent_off_bps": 1000, "conditions": {"time_zone": "Mars/Base"}},
    )
    assert bad.status_code == 400, bad.text
    assert [e["field"] for e in bad.json()["errors"]] == ["conditions.time_zone"]


def test_promotions_are_listed_by_status_with_cursors_bound_to_it(platform: Running) -> None:
    """`status` narrows the list to the promotions the API shows in that status (active,
    paused, ended), in pages whose cursor is good for that status only; an unknown status is
    a 400 naming `status`."""
    with platform.new_merchant(f"Promotion states {uuid.uuid4().hex[:8]}") as http:
        made = {}
        for name in ("on one", "held", "over", "on two"):
            answer = _post(http, "/v1/promotions", {"name": name, "percent_off_bps": 500})
            assert answer.status_code == 201, answer.text
            made[name] = answer.json()["id"]
        assert _post(http, f"/v1/promotions/{made['held']}/pause").status_code == 200
        assert _post(http, f"/v1/promotions/{made['over']}/end").status_code == 200

        def listed(**params: Any) -> dict[str, Any]:
            answer = http.get("/v1/promotions", params=params)
            assert answer.status_code == 200, answer.text
            page: dict[str, Any] = answer.json()
            return page

        everything = {p["id"] for p in listed(limit=200)["data"]}
        assert everything == set(made.values())
        first = listed(status="active", limit=1)
        assert [p["status"] for p in first["data"]] == ["active"] and first["next_cursor"]
        second = listed(status="active", limit=1, cursor=first["next_cursor"])
        assert second["next_cursor"] is None
        active = {p["id"] for p in first["data"] + second["data"]}
        assert active == {made["on one"], made["on two"]}
        assert [p["id"] for p in listed(status="paused")["data"]] == [made["held"]]
        assert [p["id"] for p in listed(status="ended")["data"]] == [made["over"]]
        # The feed stops at the oldest transaction open in the database (see above).
        feed = polled(lambda: listed(status="ended", updated_since="2000-01-01T00:00:00Z")["data"])
        assert [p["id"] for p in feed] == [made["over"]]
        # The active list's cursor positions the active list only.
        for other in ({"status": "paused"}, {}):
            moved = http.get("/v1/promotions", params={**other, "cursor": first["next_cursor"]})
            assert (moved.status_code, moved.json()["errors"][0]["field"]) == (400, "cursor")
        unknown = http.get("/v1/promotions", params={"status": "scheduled"})
        assert unknown.status_code == 400, unknown.text
        assert [e["field"] for e in unknown.json()["errors"]] == ["status"]


def test_a_refused_coupon_code_is_named_by_its_field(shop: httpx.Client) -> None:
    """A code another coupon of the merchant has (any promotion, any case), or one the batch
    repeats, is named as `codes[i]`, so a client importing a list knows which line to fix;
    a batch with neither codes nor a count says so. Nothing of a refused batch is made."""
    first, second = (
        _post(shop, "/v1/promotions", {"name": n, "percent_off_bps": 500, "requires_coupon": True})
        for n in ("Taken codes", "Importing codes")
    )
    one, two = first.json(), second.json()
    made = _post(shop, f"/v1/promotions/{one['id']}/coupons", {"codes": ["TAKEN-1"]})
    assert made.status_code == 201, made.text
    path = f"/v1/promotions/{two['id']}/coupons"

    taken = _post(shop, path, {"codes": ["FRESH-1", "taken-1"]})
    assert (taken.status_code, taken.json()["code"]) == (409, "coupon_code_taken"), taken.text
    assert [e["field"] for e in taken.json()["errors"]] == ["codes[1]"]
    assert shop.get(path).json()["data"] == []  # FRESH-1 was not kept either

    twice = _post(shop, path, {"codes": ["DUP-1", "OK-1", "dup-1"]})
    assert twice.status_code == 400, twice.text
    assert [e["field"] for e in twice.json()["errors"]] == ["codes[2]"]

    neither = _post(shop, path, {})
    assert neither.status_code == 400, neither.text
    assert [e["reason"] for e in neither.json()["errors"]] == ["give codes, or a count to generate"]


def test_a_promotion_not_yet_started_or_already_over_says_so_and_lists_by_it(
    platform: Running,
) -> None:
    """A promotion whose window starts next year, or closed last year, read `status: active`
    and nothing else, though it did not apply. `status` is still the merchant's (active,
    paused, ended); `schedule_state` says where now is against the window (`scheduled`,
    `running`, `finished`), and `?schedule_state=` lists by it, with `status` too."""
    with platform.new_merchant(f"Promotion windows {uuid.uuid4().hex[:8]}") as http:
        windows = {
            "next year": {"starts_at": "2099-01-01T00:00", "time_zone": "Europe/Paris"},
            "last year": {"starts_at": "2000-01-01T00:00", "ends_at": "2001-01-01T00:00"},
            "this year": {"starts_at": "2000-01-01T00:00", "ends_at": "2099-01-01T00:00"},
            "no window": {},
        }
        made = {}
        for name, window in windows.items():
            body = {"name": name, "percent_off_bps": 500, "conditions": window}
            answer = _post(http, "/v1/promotions", body)
            assert answer.status_code == 201, answer.text
            made[name] = answer.json()
        assert {n: (p["status"], p["schedule_state"]) for n, p in made.items()} == {
            "next year": ("active", "scheduled"),
            "last year": ("active", "finished"),
            "this year": ("active", "running"),
            "no window": ("active", "running"),
        }
        got = http.get(f"/v1/promotions/{made['last year']['id']}")
        assert got.status_code == 200 and got.json()["schedule_state"] == "finished"

        def listed(**params: Any) -> set[str]:
            answer = http.get("/v1/promotions", params=params)
            assert answer.status_code == 200, answer.text
            return {p["name"] for p in answer.json()["data"]}

        assert listed(schedule_state="scheduled") == {"next year"}
        assert listed(schedule_state="finished") == {"last year"}
        assert listed(schedule_state="running") == {"this year", "no window"}
        assert _post(http, f"/v1/promotions/{made['no window']['id']}/pause").status_code == 200
        assert listed(status="active", schedule_state="running") == {"this year"}
        unknown = http.get("/v1/promotions", params={"schedule_state": "expired"})
        assert unknown.status_code == 400, unknown.text
        assert [e["field"] for e in unknown.json()["errors"]] == ["schedule_state"]


def test_promotion_and_coupon_changes_are_in_the_audit_log(platform: Running) -> None:
    """Each change of a promotion (made, edited, paused, resumed, ended, deleted) and of its
    coupons (made, deactivated) is an entry naming the credential that made it, as a
    credential's or a setting's change is; one that changes nothing (pausing a paused
    promotion, an edit sending what it is, deactivating a deactivated coupon) and a retry of
    a request add none. Coupon entries name the codes by their hints only."""
    with platform.new_merchant(f"Promotion audit {uuid.uuid4().hex[:8]}") as http:

        def entries(resource_id: str) -> list[tuple[str, dict[str, Any]]]:
            answer = http.get("/v1/audit-log", params={"resource_id": resource_id})
            assert answer.status_code == 200, answer.text
            found = answer.json()["data"]
            assert all(e["credential_id"] and e["staff_id"] is None for e in found), found
            return [(e["action"], e["details"]) for e in reversed(found)]

        key = str(uuid.uuid4())
        body = {"name": "Audited", "percent_off_bps": 1000, "requires_coupon": True}
        made = http.post("/v1/promotions", json=body, headers={"Idempotency-Key": key})
        assert made.status_code == 201, made.text
        again = http.post("/v1/promotions", json=body, headers={"Idempotency-Key": key})
        assert again.json()["id"] == made.json()["id"]
        promo = made.json()["id"]
        path = f"/v1/promotions/{promo}"
        assert http.patch(path, json={"name": "Audited 2", "priority": 5}).status_code == 200
        # Saved again as it is: no new version, so no entry.
        same = http.patch(path, json={"name": "Audited 2", "priority": 5})
        assert (same.status_code, same.json()["version"]) == (200, 2), same.text
        for change in ("pause", "pause", "resume"):
            assert _post(http, f"{path}/{change}").status_code == 200
        coupons = _post(http, f"{path}/coupons", {"codes": ["AUDIT-1", "AUDIT-22"]})
        assert coupons.status_code == 201, coupons.text
        first, second = coupons.json()["coupons"]
        for _ in range(2):
            gone = _post(http, f"{path}/coupons/{first['id']}/deactivate")
            assert gone.status_code == 200, gone.text
        assert _post(http, f"{path}/end").status_code == 200
        assert entries(promo) == [
            ("promotion.created", {"name": "Audited", "version": 1}),
            ("promotion.updated", {"changed": ["name", "priority"], "name": "Audited 2",
                                   "version": 2}),
            ("promotion.paused", {"from": "active", "to": "paused", "version": 3}),
            ("promotion.resumed", {"from": "paused", "to": "active", "version": 4}),
            ("coupon.created", {"coupon_ids": [first["id"], second["id"]],
                                "code_hints": [first["code_hint"], second["code_hint"]]}),
            ("promotion.ended", {"from": "active", "to": "ended", "version": 5}),
        ]  # fmt: skip
        assert entries(first["id"]) == [
            ("coupon.deactivated", {"promotion_id": promo, "code_hint": first["code_hint"]})
        ]
        text = str(http.get("/v1/audit-log").json())
        assert "AUDIT-1" not in text and "AUDIT-22" not in text

        spare = _post(http, "/v1/promotions", {"name": "Spare", "percent_off_bps": 500})
        assert spare.status_code == 201, spare.text
        deleted = http.delete(f"/v1/promotions/{spare.json()['id']}")
        assert deleted.status_code == 200, deleted.text
        assert entries(spare.json()["id"]) == [
            ("promotion.created", {"name": "Spare", "version": 1}),
            ("promotion.deleted", {"name": "Spare", "version": 1}),
        ]
        listed = http.get("/v1/audit-log", params={"action": "promotion.*"}).json()["data"]
        assert len(listed) == 7
