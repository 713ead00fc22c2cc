"""Customers and loyalty end to end through the gateway over HTTP: every service a separate
process."""

from __future__ import annotations

import asyncio
import json
import time
import uuid
from contextlib import closing
from datetime import datetime
from typing import Any

import grpc
import httpx
import nats
import psycopg
import pytest
from nats.js.api import AckPolicy, ConsumerConfig, DeliverPolicy
from psycopg import sql

from pos.customer.v1 import customer_pb2, customer_pb2_grpc
from pos_devstack.http_checks import open_till, polled
from pos_devstack.platform import PROCESSES, SERVICES, seed_demo_data
from pos_devstack.testing import Running

pytestmark = pytest.mark.e2e


def _key() -> dict[str, str]:
    return {"Idempotency-Key": str(uuid.uuid4())}


def _post(http: httpx.Client, path: str, body: dict[str, Any], status: int = 201) -> Any:
    answer = http.post(path, json=body, headers=_key())
    assert answer.status_code == status, answer.text
    return answer.json()


def _text(value: Any) -> str:
    if isinstance(value, memoryview):
        value = value.tobytes()
    if isinstance(value, bytes):
        return value.decode("utf-8", "replace")
    return str(value)


def _everything(platform: Running) -> str:
    """Every row of every service's database and of the gateway's, every message of every
    NATS stream, and the services' logs, as text."""
    out: list[str] = []
    for name in (*SERVICES, "gateway"):
        url = platform.platform.env_for(name)["DATABASE_URL"].replace("+psycopg", "")
        with psycopg.connect(url) as conn:
            tables = [r[0] for r in conn.execute(
                "SELECT tablename FROM pg_tables WHERE schemaname = 'public'")]  # fmt: skip
            for table in tables:
                query = sql.SQL("SELECT * FROM {}").format(sql.Identifier(table))
                out += [" ".join(_text(v) for v in row) for row in conn.execute(query)]
    out.append(asyncio.run(_streams(platform.platform.nats.url)))
    for log in (platform.platform.home / "logs").glob("*.log"):
        if log.stem in (*PROCESSES, "gateway"):
            out.append(log.read_text(errors="replace"))
    return "\n".join(out)


async def _streams(url: str) -> str:
    nc = await nats.connect(url)
    try:
        js = nc.jetstream()
        out: list[str] = []
        for info in await js.streams_info():
            name = info.config.name
            config = ConsumerConfig(deliver_policy=DeliverPolicy.ALL, ack_policy=AckPolicy.NONE)
            sub = await js.pull_subscribe(">", stream=name, config=config)
            while info.state.messages:
                try:
                    batch = await sub.fetch(512, timeout=0.5)
                except TimeoutError:  # nats' own, or asyncio's when the deadline ran out first
                    break
                out += [_text(m.data) for m in batch]
                if batch[-1].metadata.num_pending == 0:
                    break
            await sub.unsubscribe()
        return "\n".join(out)
    finally:
        await nc.close()


def _eventually(check: Any, limit: float = 30) -> Any:
    deadline = time.monotonic() + limit
    while True:
        found = check()
        if found:
            return found
        assert time.monotonic() < deadline, "not before the deadline"
        time.sleep(0.1)


def test_a_customer_buys_earns_points_and_is_found_and_erased(platform: Running) -> None:
    http = platform.new_merchant("Customers e2e")
    bad = http.post(
        "/v1/customers", json={"email": "x@example.com", "phone": "555-0100"}, headers=_key()
    )
    assert bad.status_code == 400, bad.text
    assert [e["field"] for e in bad.json()["errors"]] == ["phone"]
    assert http.get("/v1/customers").json()["data"] == []

    zoe = _post(
        http,
        "/v1/customers",
        {"email": "Zoe.Martin@example.com", "phone": "+33 6 12 34 56 78", "given_name": "Zoë",
         "family_name": "Martin", "external_id": "crm-9"},
    )  # fmt: skip
    assert (zoe["email"], zoe["phone"]) == ("zoe.martin@example.com", "+33612345678")
    found = http.get("/v1/customers/search", params={"q": "zoe mar"}).json()["data"]
    assert [c["id"] for c in found] == [zoe["id"]]
    assert http.get("/v1/customers/search", params={"phone": "0033612345678"}).json()["data"]
    by_email = http.get("/v1/customers/search", params={"q": "zoe.martin@example.com"}).json()
    assert [c["id"] for c in by_email["data"]] == [zoe["id"]]
    # A page that is not the last gives its cursor, for the same search only.
    for n in range(3):
        _post(http, "/v1/customers", {"given_name": f"Zoey{n}"})
    first = http.get("/v1/customers/search", params={"q": "zo", "limit": 2}).json()
    assert len(first["data"]) == 2 and first["next_cursor"]
    params = {"q": "zo", "limit": 2, "cursor": first["next_cursor"]}
    rest = http.get("/v1/customers/search", params=params).json()
    assert len(rest["data"]) == 2 and rest["next_cursor"] is None
    assert len({c["id"] for c in first["data"] + rest["data"]}) == 4
    other = http.get("/v1/customers/search", params={**params, "q": "zoey"})
    assert (other.status_code, other.json()["errors"][0]["field"]) == (400, "cursor")
    empty = http.get("/v1/customers/search")
    assert empty.status_code == 400

    # A sale to her earns a point per whole unit, once, and enters her purchase history.
    location = http.get("/v1/locations").json()["data"]
    if not location:
        location = [_post(http, "/v1/locations", {"name": "Store", "currency": "USD",
                                                  "time_zone": "UTC"})]  # fmt: skip
    loc = location[0]
    sku = f"CUS-{uuid.uuid4().hex[:8].upper()}"
    mug = {"sku": sku, "name": "Mug", "price": {"amount": 2550, "currency": "USD"}}
    _post(http, "/v1/products", mug)
    _post(http, "/v1/inventory/adjustments",
          {"sku": sku, "location_id": loc["id"], "delta": 5, "reason": "received"})  # fmt: skip
    sale = _post(
        http,
        "/v1/checkouts",
        {"location_id": loc["id"], "customer_id": zoe["id"], "tender_type": "cash",
         "cash_tendered": {"amount": 100_000, "currency": "USD"},
         "lines": [{"sku": sku, "quantity": 2}]},
    )  # fmt: skip
    total = sale["order"]["total"]["amount"]

    def earned() -> Any:
        got = http.get(f"/v1/customers/{zoe['id']}").json()
        return got if got["loyalty_points"] else None

    assert _eventually(earned)["loyalty_points"] == total // 100
    history = http.get(f"/v1/customers/{zoe['id']}/orders").json()
    assert [o["order_id"] for o in history["data"]] == [sale["order"]["id"]]
    assert history["summary"]["visit_count"] == 1
    spent = {"amount": total, "currency": "USD"}
    assert history["summary"]["lifetime_spend"] == spent
    assert history["summary"]["lifetime_spend_by_currency"] == [spent]
    assert history["data"][0]["returned"] == {"amount": 0, "currency": "USD"}
    points = http.get(f"/v1/customers/{zoe['id']}/points").json()["data"]
    assert [(p["kind"], p["points"]) for p in points] == [("earned", total // 100)]
    over = http.post(
        f"/v1/customers/{zoe['id']}/points/adjustments",
        json={"points": -(10**6), "reason": "too much"},
        headers=_key(),
    )
    assert (over.status_code, over.json()["code"]) == (409, "insufficient_points")
    assert [e["field"] for e in over.json()["errors"]] == ["points"], over.text

    # Her export gathers what every service holds: the order service's orders and the payment
    # service's gift cards issued to her (never a code), beside the customer service's records.
    card = _post(
        http,
        "/v1/gift-cards",
        {
            "amount": {"amount": 1500, "currency": "USD"},
            "customer_id": zoe["id"],
            "reason": "store_credit",
        },
    )
    other = _post(http, "/v1/gift-cards", {"amount": {"amount": 700, "currency": "USD"}})
    # It holds her orders and gift cards: a key that may read customers only may not read it.
    made = _post(http, "/v1/api-keys", {"name": "customers only", "scopes": ["customers:read"]})
    with httpx.Client(
        base_url=platform.platform.gateway_url, headers={"Authorization": f"Bearer {made['key']}"}
    ) as reader:
        assert reader.get(f"/v1/customers/{zoe['id']}").status_code == 200
        denied = reader.get(f"/v1/customers/{zoe['id']}/export")
        assert (denied.status_code, denied.json()["code"]) == (403, "insufficient_scope")
        assert sale["order"]["id"] not in denied.text
    export = http.get(f"/v1/customers/{zoe['id']}/export")
    assert export.status_code == 200, export.text
    exported = export.json()
    assert exported["customer"]["email"] == "zoe.martin@example.com"
    assert [o["id"] for o in exported["sales"]] == [sale["order"]["id"]]
    assert exported["sales"][0]["lines"][0]["sku"] == sku
    assert [c["id"] for c in exported["gift_cards"]] == [card["gift_card"]["id"]]
    assert other["gift_card"]["id"] not in export.text
    assert card["code"] not in export.text
    assert [o["order_id"] for o in exported["orders"]] == [sale["order"]["id"]]

    # Erasure: 404 afterwards, a tombstone in the feed, and no earlier snapshot with her email.
    # Before it, the dump below sees her (in the customer database and stream at least).
    before = _everything(platform)
    assert "zoe.martin@example.com" in before and "Zoë" in before
    erased = http.delete(f"/v1/customers/{zoe['id']}")
    assert erased.status_code == 200, erased.text
    assert http.get(f"/v1/customers/{zoe['id']}").status_code == 404

    def tombstone() -> Any:
        feed = http.get("/v1/events", params={"types": "customer.*", "limit": 200}).json()
        return feed if any(e["type"] == "customer.erased" for e in feed["data"]) else None

    feed = _eventually(tombstone)
    assert "zoe.martin@example.com" not in str(feed)
    assert "+33612345678" not in str(feed)
    mine = [e for e in feed["data"] if e["data"]["object"]["id"] == zoe["id"]]
    # Her points' change (the sale she earned on) was a new version of her, announced too.
    assert [e["type"] for e in mine] == ["customer.created", "customer.updated", "customer.erased"]
    assert all(e["data"]["object"].get("redacted") for e in mine[:2])
    assert http.get(f"/v1/customers/{zoe['id']}/export").status_code == 404

    # No trace anywhere: every service's database, every NATS stream, every service's log.
    personal = ["zoe.martin@example.com", "Zoe.Martin@example.com", "33612345678", "Zoë"]

    def traces() -> list[str]:
        held = _everything(platform)
        return [p for p in personal if p in held]

    deadline = time.monotonic() + 30  # the stream's purge runs every few seconds
    while found := traces():
        assert time.monotonic() < deadline, f"still held somewhere: {found}"
        time.sleep(0.5)


def test_a_points_change_is_a_new_version_of_the_customer(platform: Running) -> None:
    """GET answers a customer's balance with its version and ETag: a sale that earns points and
    an adjustment are each a new version (ETag and `updated_at` move, an If-Match of the one
    before is a 412, an `updated_since` poll from the last change finds it) and a
    `customer.updated` event carrying it, as GET answers it."""
    http = platform.new_merchant("Points versions e2e")
    loc = _post(http, "/v1/locations", {"name": "Store", "currency": "USD", "time_zone": "UTC"})
    sku = f"PTS-{uuid.uuid4().hex[:8].upper()}"
    _post(http, "/v1/products",
          {"sku": sku, "name": "Mug", "price": {"amount": 2550, "currency": "USD"}})  # fmt: skip
    _post(http, "/v1/inventory/adjustments",
          {"sku": sku, "location_id": loc["id"], "delta": 5, "reason": "received"})  # fmt: skip
    ada = _post(http, "/v1/customers", {"email": "ada.points@example.com", "given_name": "Ada"})
    path = f"/v1/customers/{ada['id']}"
    first = http.get(path)
    assert (first.headers["ETag"], first.json()["loyalty_points"]) == ('"1"', 0)

    _post(http, "/v1/checkouts",
          {"location_id": loc["id"], "customer_id": ada["id"], "tender_type": "cash",
           "cash_tendered": {"amount": 10_000, "currency": "USD"},
           "lines": [{"sku": sku, "quantity": 1}]})  # fmt: skip
    earned = _eventually(lambda: (got := http.get(path)).json()["loyalty_points"] and got)
    assert (earned.json()["version"], earned.headers["ETag"]) == (2, '"2"')

    def stamp(answer: httpx.Response) -> datetime:
        return datetime.fromisoformat(answer.json()["updated_at"])

    assert stamp(earned) > stamp(first)

    def fed(since: dict[str, str]) -> list[int]:
        """Ada's versions in the feed from `since`, once she shows: it stops at the oldest
        transaction open in the customer database (a consumer's, the relay's), so her change
        may not show the moment after it is made."""

        def read() -> list[int]:
            found = http.get("/v1/customers", params=since).json()["data"]
            return [c["version"] for c in found if c["id"] == ada["id"]]

        return polled(read)

    stale = http.patch(path, json={"family_name": "Lovelace"}, headers={"If-Match": '"1"'})
    assert (stale.status_code, stale.json()["current_version"]) == (412, 2), stale.text
    since = {"updated_since": first.json()["updated_at"]}
    assert fed(since) == [2]

    _post(http, f"{path}/points/adjustments", {"points": 5, "reason": "goodwill"})
    adjusted = http.get(path)
    assert adjusted.json()["loyalty_points"] == earned.json()["loyalty_points"] + 5
    assert (adjusted.json()["version"], adjusted.headers["ETag"]) == (3, '"3"')
    assert stamp(adjusted) > stamp(earned)
    since = {"updated_since": earned.json()["updated_at"]}
    assert fed(since) == [3]

    def announced() -> list[dict[str, Any]]:
        page = http.get("/v1/events", params={"types": "customer.updated", "limit": 200})
        found = [e["data"]["object"] for e in page.json()["data"]]
        return found if len(found) == 2 else []

    assert _eventually(announced) == [earned.json(), adjusted.json()]


def test_the_updated_since_feed_shows_merges_and_erasures(platform: Running) -> None:
    """A partner polling `GET /v1/customers?updated_since=` learns that a customer was merged
    into another (`status: merged`, `merged_into`) or erased (`status: erased`, nothing
    personal), after their last change; the list without `updated_since` shows active
    customers only."""
    http = platform.new_merchant("Customer tombstones e2e")
    keep = _post(http, "/v1/customers", {"email": "keep.feed@example.com", "given_name": "Kay"})
    dup = _post(http, "/v1/customers", {"email": "dup.feed@example.com", "given_name": "Kay"})
    profile = {"email": "gone.feed@example.com", "given_name": "Gus", "phone": "+14155550123"}
    gone = _post(http, "/v1/customers", profile)
    since = {"updated_since": keep["updated_at"], "limit": 100}
    _post(http, f"/v1/customers/{keep['id']}/merge", {"duplicate_id": dup["id"]}, 200)
    erased = http.delete(f"/v1/customers/{gone['id']}", headers=_key())
    assert erased.status_code == 200, erased.text

    def read() -> list[dict[str, Any]]:
        found: list[dict[str, Any]] = http.get("/v1/customers", params=since).json()["data"]
        return found if len(found) >= 3 else []

    by_id = {c["id"]: c for c in polled(read)}
    assert sorted(by_id) == sorted([keep["id"], dup["id"], gone["id"]])
    merged, tomb = by_id[dup["id"]], by_id[gone["id"]]
    assert (merged["status"], merged["merged_into"], merged["email"]) == (
        "merged", keep["id"], "")  # fmt: skip

    def at(c: dict[str, Any]) -> datetime:
        return datetime.fromisoformat(c["updated_at"])

    assert at(merged) > at(dup) and merged["version"] > dup["version"]
    assert (tomb["status"], tomb["merged_into"], tomb["email"], tomb["phone"]) == (
        "erased", "", "", "")  # fmt: skip
    assert (tomb["given_name"], tomb["addresses"], tomb["loyalty_points"]) == ("", [], 0)
    assert not (tomb["marketing_consent"] or {}).get("granted")
    assert at(tomb) > at(gone) and tomb["version"] > gone["version"]
    plain = http.get("/v1/customers").json()["data"]
    assert [c["id"] for c in plain] == [keep["id"]]


def test_groups_merge_and_the_program(platform: Running) -> None:
    http = platform.new_merchant("Groups e2e")
    a = _post(http, "/v1/customers", {"email": "a@example.com"})
    b = _post(http, "/v1/customers", {"email": "b@example.com", "given_name": "B"})
    group = _post(http, "/v1/customer-groups", {"name": "VIP"})
    added = _post(
        http, f"/v1/customer-groups/{group['id']}/members", {"customer_ids": [b["id"]]}, 200
    )
    assert added["member_count"] == 1
    _post(http, f"/v1/customers/{b['id']}/points/adjustments",
          {"points": 40, "reason": "welcome"})  # fmt: skip
    itself = http.post(
        f"/v1/customers/{a['id']}/merge", json={"duplicate_id": a["id"]}, headers=_key()
    )
    assert itself.status_code == 400
    assert [e["field"] for e in itself.json()["errors"]] == ["duplicate_id"]
    credit = {"amount": {"amount": 900, "currency": "USD"}, "customer_id": b["id"],
              "reason": "store_credit"}  # fmt: skip
    card = _post(http, "/v1/gift-cards", credit)["gift_card"]
    merged = _post(http, f"/v1/customers/{a['id']}/merge", {"duplicate_id": b["id"]}, 200)
    assert merged["winner"]["loyalty_points"] == 40
    assert merged["winner"]["group_ids"] == [group["id"]]
    loser = http.get(f"/v1/customers/{b['id']}").json()
    assert (loser["status"], loser["merged_into"]) == ("merged", a["id"])
    # Its points history is still readable, ending with the move of its balance.
    history = http.get(f"/v1/customers/{b['id']}/points")
    assert history.status_code == 200, history.text
    assert history.json()["data"][0]["points"] == -40

    program = http.get("/v1/loyalty-program")
    assert program.json()["version"] == 1
    body = {"points_per_unit": 2, "tiers": [{"name": "gold", "threshold_points": 500,
                                             "multiplier_bps": 15000}]}  # fmt: skip
    put = http.put("/v1/loyalty-program", json=body, headers={"If-Match": '"5"', **_key()})
    assert put.status_code == 412
    put = http.put("/v1/loyalty-program", json=body, headers=_key())
    assert (put.status_code, put.json()["version"]) == (200, 2)

    batch = http.post(
        "/v1/customers/batch",
        json={"customers": [{"external_id": f"e{i}", "given_name": f"N{i}"} for i in range(3)]},
        headers=_key(),
    )
    assert (batch.status_code, batch.json()["created"]) == (200, 3), batch.text
    export = http.get(f"/v1/customers/{a['id']}/export").json()
    # The duplicate's own points history (its credit, the move of its balance) with theirs.
    assert [(e["customer_id"], e["kind"]) for e in export["points_history"]] == [
        (a["id"], "merged_in"), (b["id"], "merged_out"), (b["id"], "adjusted"),
    ]  # fmt: skip
    # The duplicate is the same person: what is held under its id is in the export too.
    assert export["merged_customer_ids"] == [b["id"]]
    assert [c["id"] for c in export["gift_cards"]] == [card["id"]]


def test_an_upsert_with_if_match_never_creates(platform: Running) -> None:
    """If-Match on an external id no customer holds is false (RFC 9110, 13.1.1): a 412, and
    no customer is made."""
    http = platform.new_merchant("Upsert if-match e2e")
    body = {"external_id": "crm-unseen", "given_name": "Ada"}
    refused = http.post("/v1/customers/upsert", json=body, headers={"If-Match": '"1"', **_key()})
    assert refused.status_code == 412, refused.text
    problem = refused.json()
    assert (problem["code"], problem["current_version"]) == ("version_mismatch", 0)
    found = http.get("/v1/customers/search", params={"external_id": "crm-unseen"})
    assert found.status_code == 200 and found.json()["data"] == []
    made = _post(http, "/v1/customers/upsert", body, 200)
    assert made["created"] and made["customer"]["version"] == 1
    stale = http.post("/v1/customers/upsert", json=body, headers={"If-Match": '"7"', **_key()})
    assert (stale.status_code, stale.json()["current_version"]) == (412, 1)
    changed = http.post("/v1/customers/upsert", json={**body, "family_name": "King"},
                        headers={"If-Match": '"1"', **_key()})  # fmt: skip
    assert changed.status_code == 200 and not changed.json()["created"]


def test_a_retry_after_erasure_never_brings_the_customer_back(platform: Running) -> None:
    """The probe: a customer made under an Idempotency-Key (a create, an upsert, an import),
    then erased; the same request under the same key again (a partner's queued retry) answers
    410 `customer_erased` as a replay, holds nothing of the customer, creates no customer and
    publishes no `customer.created`. Both layers keep the key spent: the gateway's store, and
    behind it the customer service's stored answer by request_id."""
    http = platform.new_merchant("Erasure retries e2e")
    gateway_db = platform.platform.env_for("gateway")["DATABASE_URL"].replace("+psycopg", "")
    create = {"email": "gone.x@example.com", "given_name": "Gonex"}
    upsert = {"external_id": "crm-gone", "email": "gone.up@example.com", "given_name": "Upgone"}
    batch = {"customers": [
        {"external_id": "imp-gone", "email": "gone.batch@example.com", "given_name": "Batchgone"},
        {"external_id": "imp-other", "given_name": "Otherone"},
    ]}  # fmt: skip
    personal = ["gone.x@", "gone.up@", "gone.batch@", "Gonex", "Upgone", "Batchgone", "Otherone"]
    calls = [("/v1/customers", create, 201), ("/v1/customers/upsert", upsert, 200),
             ("/v1/customers/batch", batch, 200)]  # fmt: skip
    keys = {path: str(uuid.uuid4()) for path, _, _ in calls}

    def send(path: str, body: dict[str, Any]) -> httpx.Response:
        return http.post(path, json=body, headers={"Idempotency-Key": keys[path]})

    made: dict[str, str] = {}
    for path, body, status in calls:
        first = send(path, body)
        assert first.status_code == status, first.text
        answer = first.json()
        made[path] = (answer.get("customer") or answer.get("data", [answer])[0])["id"]
        replay = send(path, body)
        assert (replay.status_code, replay.headers.get("Idempotent-Replayed")) == (status, "true")
        assert replay.content == first.content
    for gone in made.values():
        erased = http.delete(f"/v1/customers/{gone}")
        assert erased.status_code == 200, erased.text

    def feed() -> list[dict[str, Any]]:
        found = http.get("/v1/events", params={"types": "customer.*", "limit": 200})
        assert found.status_code == 200, found.text
        return list(found.json()["data"])

    _eventually(lambda: sum(e["type"] == "customer.erased" for e in feed()) == 3)
    listed = http.get("/v1/customers", params={"limit": 200}).json()["data"]

    def retry_everything(replayed: str | None = "true") -> None:
        for path, body, _ in calls:
            again = send(path, body)
            assert again.status_code == 410, again.text
            assert again.headers.get("Idempotent-Replayed") == replayed
            problem = again.json()
            assert (problem["status"], problem["code"]) == (410, "customer_erased")
            assert again.headers["content-type"].startswith("application/problem+json")
            assert not [p for p in personal if p in again.text], again.text

    retry_everything()
    # The gateway's store keeps the 410 in place of each answer, nothing of the customers.
    with psycopg.connect(gateway_db) as conn:
        stored = conn.execute(
            "SELECT key, status_code, convert_from(body, 'UTF8') FROM idempotency_keys"
            " WHERE key = ANY(%s)",
            (list(keys.values()),),
        ).fetchall()
        assert sorted(r[1] for r in stored) == [410, 410, 410]
        assert not [p for r in stored for p in personal if p in r[2]]
        # Lost at the gateway (say, its row expired first): the customer service's stored
        # answer, withdrawn too, still refuses to run the request again.
        conn.execute("DELETE FROM idempotency_keys WHERE key = ANY(%s)", (list(keys.values()),))
    retry_everything(replayed=None)  # the route ran; the service refused to run it again
    retry_everything()  # and the gateway kept that 410 under the key

    # No customer came back: none found by its email, the list is the same, no new id.
    for email in ("gone.x@example.com", "gone.up@example.com", "gone.batch@example.com"):
        found = http.get("/v1/customers/search", params={"email": email})
        assert found.json()["data"] == [], found.text
    assert http.get("/v1/customers", params={"limit": 200}).json()["data"] == listed
    # A genuinely new request (a new key) still creates a customer; once its event is in the
    # feed, anything the retries had published before it would be too (one outbox, in order).
    fresh = _post(http, "/v1/customers", create)
    assert fresh["id"] not in made.values()
    created = _eventually(
        lambda: [e for e in feed() if e["type"] == "customer.created"]
        if any(e["data"]["object"]["id"] == fresh["id"] for e in feed()) else None
    )  # fmt: skip
    others = [e["data"]["object"] for e in created if e["data"]["object"]["id"] != fresh["id"]]
    # The three erased and the batch's other customer, each made once.
    assert len(others) == 4 and set(made.values()) <= {o["id"] for o in others}
    erased_events = [o for o in others if o["id"] in made.values()]
    assert erased_events and all(o.get("redacted") for o in erased_events)
    assert not [p for p in personal[:-1] if p in json.dumps(others)]


def test_a_retry_after_erasure_is_a_410_only_where_an_idempotency_key_is_kept(
    platform: Running,
) -> None:
    """What docs/problems.md says of `customer_erased`: only a POST keeps its answer under an
    Idempotency-Key, so only a POST's retry is the 410 (a points adjustment's here, which
    holds the customer). A PATCH or a DELETE keeps nothing under a key, sent or not: its
    retry after the erasure runs again and is the 404 `resource_missing` of an erased
    customer (the docs said a retry of an update or an erasure was a 410)."""
    http = platform.new_merchant("Erased retries e2e")
    made = _post(http, "/v1/customers", {"given_name": "Retria", "email": "retria@example.com"})
    path = f"/v1/customers/{made['id']}"
    adjust, patch, erase = _key(), _key(), _key()
    reason = {"points": 40, "reason": "goodwill for Retria, retria@example.com"}
    adjusted = http.post(f"{path}/points/adjustments", json=reason, headers=adjust)
    assert adjusted.status_code == 201, adjusted.text
    changed = http.patch(path, json={"family_name": "Gone"}, headers=patch)
    assert changed.status_code == 200, changed.text
    erased = http.delete(path, headers=erase)
    assert erased.status_code == 200, erased.text

    again = http.post(f"{path}/points/adjustments", json=reason, headers=adjust)
    assert (again.status_code, again.json()["code"]) == (410, "customer_erased"), again.text
    assert again.headers.get("Idempotent-Replayed") == "true" and "Retria" not in again.text
    for retry in (
        http.patch(path, json={"family_name": "Gone"}, headers=patch),
        http.delete(path, headers=erase),
    ):
        assert (retry.status_code, retry.json()["code"]) == (404, "resource_missing"), retry.text
        assert "Idempotent-Replayed" not in retry.headers


def test_erasing_a_customer_withdraws_the_answers_of_its_merged_duplicates(
    platform: Running,
) -> None:
    """A duplicate merged into a customer is the same person, erased with it: the answer that
    created the duplicate (its email, phone, name) is withdrawn from the Idempotency-Key store
    too, though the erasure named only the survivor (the duplicate answers 404 from then on,
    so nothing else could withdraw it)."""
    http = platform.new_merchant("Merged erasure e2e")
    keep = _post(http, "/v1/customers", {"email": "keeper.m@example.com", "given_name": "Kept"})
    body = {"email": "dupe.m@example.com", "phone": "+14155550123", "given_name": "Dupington"}
    key = _key()
    dupe = http.post("/v1/customers", json=body, headers=key)
    assert dupe.status_code == 201, dupe.text
    into_keep = {"duplicate_id": dupe.json()["id"]}
    merged = http.post(f"/v1/customers/{keep['id']}/merge", json=into_keep, headers=_key())
    assert merged.status_code == 200, merged.text
    assert http.delete(f"/v1/customers/{keep['id']}").status_code == 200

    again = http.post("/v1/customers", json=body, headers=key)
    assert (again.status_code, again.json()["code"]) == (410, "customer_erased"), again.text
    assert again.headers.get("Idempotent-Replayed") == "true"
    assert not [p for p in ("dupe.m@", "4155550123", "Dupington") if p in again.text]


def test_erasing_a_merged_duplicate_keeps_the_merges_answer(platform: Running) -> None:
    """The duplicate's erasure withdraws the answer that created it (410 `customer_erased`),
    not the merge's: a retry of the merge under its Idempotency-Key replays it, the survivor as
    it was and the duplicate without personal data. Its request never runs again."""
    http = platform.new_merchant("Merged duplicate erasure e2e")
    dupe_body = {"email": "dupe.k@example.com", "phone": "+14155550155", "given_name": "Dupekept"}
    dupe_key, merge_key = _key(), _key()
    keep = http.post("/v1/customers", json={"given_name": "Keepkept"}, headers=_key())
    dupe = http.post("/v1/customers", json=dupe_body, headers=dupe_key)
    assert (keep.status_code, dupe.status_code) == (201, 201), dupe.text
    keep_id, dupe_id = keep.json()["id"], dupe.json()["id"]
    merge = f"/v1/customers/{keep_id}/merge"
    merged = http.post(merge, json={"duplicate_id": dupe_id}, headers=merge_key)
    assert merged.status_code == 200, merged.text

    erased = http.delete(f"/v1/customers/{dupe_id}")
    assert erased.status_code == 200, erased.text
    again = http.post(merge, json={"duplicate_id": dupe_id}, headers=merge_key)
    assert again.status_code == 200, again.text
    assert again.headers.get("Idempotent-Replayed") == "true"
    assert again.json()["winner"] == merged.json()["winner"]
    loser = again.json()["loser"]
    assert (loser["id"], loser["status"], loser["merged_into"]) == (dupe_id, "merged", keep_id)
    assert not [p for p in ("dupe.k@", "4155550155", "Dupekept") if p in again.text]
    created = http.post("/v1/customers", json=dupe_body, headers=dupe_key)
    assert (created.status_code, created.json().get("code")) == (410, "customer_erased")


def test_a_retried_erasure_withdraws_what_a_lost_first_one_did_not(platform: Running) -> None:
    """An erasure that committed at the customer service but never got its answer back to
    the gateway (the gateway stopped, the call timed out) withdrew nothing from the
    Idempotency-Key store: the client's retry of the DELETE is a 404 (erased already), and it
    withdraws the answers the first one should have, the survivor's and those of the
    duplicates merged into it, each replayed from then on as the 410 `customer_erased`."""
    http = platform.new_merchant("Lost erasure e2e")
    keep_body = {"email": "keeper.l@example.com", "given_name": "Keepling"}
    dupe_body = {"email": "dupe.l@example.com", "phone": "+14155550177", "given_name": "Dupelost"}
    keep_key, dupe_key = _key(), _key()
    keep = http.post("/v1/customers", json=keep_body, headers=keep_key)
    dupe = http.post("/v1/customers", json=dupe_body, headers=dupe_key)
    assert (keep.status_code, dupe.status_code) == (201, 201), dupe.text
    keep_id = keep.json()["id"]
    merged = http.post(
        f"/v1/customers/{keep_id}/merge", json={"duplicate_id": dupe.json()["id"]}, headers=_key()
    )
    assert merged.status_code == 200, merged.text
    gateway_db = platform.platform.env_for("gateway")["DATABASE_URL"].replace("+psycopg", "")
    with psycopg.connect(gateway_db) as conn:
        row = conn.execute(
            "SELECT merchant_id FROM idempotency_keys WHERE key = %s",
            (dupe_key["Idempotency-Key"],),
        ).fetchone()
    assert row is not None
    # The erasure as the gateway asks for it, whose answer the gateway never had.
    address = f"127.0.0.1:{platform.platform.ports.services['customer']}"
    with grpc.insecure_channel(address) as channel:
        customer_pb2_grpc.CustomerServiceStub(channel).EraseCustomer(
            customer_pb2.EraseCustomerRequest(request_id=uuid.uuid4().hex, id=keep_id),
            metadata=(("x-merchant-id", row[0]),),
            timeout=10,
        )

    retried = http.delete(f"/v1/customers/{keep_id}")
    assert retried.status_code == 404, retried.text
    assert "erased_ids" not in retried.json()
    personal = ("keeper.l@", "Keepling", "dupe.l@", "4155550177", "Dupelost")
    for key, body in ((keep_key, keep_body), (dupe_key, dupe_body)):
        again = http.post("/v1/customers", json=body, headers=key)
        assert (again.status_code, again.json().get("code")) == (410, "customer_erased"), again.text
        assert again.headers.get("Idempotent-Replayed") == "true"
        assert not [p for p in personal if p in again.text]


def test_a_created_customer_answers_its_version_as_an_etag(platform: Running) -> None:
    """As a product's creation does: the partner's first PATCH needs the version it made."""
    http = platform.new_merchant("Customer ETag e2e")
    key = _key()
    made = http.post("/v1/customers", json={"given_name": "Etta"}, headers=key)
    assert made.status_code == 201, made.text
    assert made.headers.get("ETag") == f'"{made.json()["version"]}"'
    again = http.post("/v1/customers", json={"given_name": "Etta"}, headers=key)
    assert again.headers["Idempotent-Replayed"] == "true"
    assert again.headers.get("ETag") == made.headers["ETag"]
    changed = http.patch(
        f"/v1/customers/{made.json()['id']}",
        json={"family_name": "Tag"},
        headers={"If-Match": made.headers["ETag"]},
    )
    assert changed.status_code == 200, changed.text


def test_erasing_a_customer_blanks_the_metadata_of_their_orders(platform: Running) -> None:
    """Metadata a partner set on an order may name the buyer: once the customer is erased,
    the order answers with none, the partner feed's order events hold none, and the create's
    Idempotency-Key replays the 410 `customer_erased`, not the order as it was."""
    http = platform.new_merchant("Order metadata erasure e2e")
    tag = uuid.uuid4().hex[:8]
    buyer = _post(http, "/v1/customers", {"email": f"meta-{tag}@example.com"})
    location = http.get("/v1/locations").json()["data"]
    if not location:
        location = [_post(http, "/v1/locations", {"name": "Store", "currency": "USD",
                                                  "time_zone": "UTC"})]  # fmt: skip
    store = location[0]["id"]
    sku = f"META-{tag.upper()}"
    _post(http, "/v1/products",
          {"sku": sku, "name": "Mug", "price": {"amount": 1200, "currency": "USD"}})  # fmt: skip
    _post(http, "/v1/inventory/adjustments",
          {"sku": sku, "location_id": store, "delta": 2, "reason": "received"})  # fmt: skip
    personal = {"recipient": f"Metadora {tag}", "recipient_phone": "+14155550142"}
    body = {"location_id": store, "customer_id": buyer["id"], "metadata": {**personal, "gift": "1"},
            "lines": [{"sku": sku, "quantity": 1}]}  # fmt: skip
    key = _key()
    made = http.post("/v1/orders", json=body, headers=key)
    assert made.status_code == 201, made.text
    order = made.json()
    assert order["metadata"] == body["metadata"]

    assert http.delete(f"/v1/customers/{buyer['id']}").status_code == 200

    def blanked() -> Any:
        got = http.get(f"/v1/orders/{order['id']}")
        assert got.status_code == 200, got.text
        return got.json() if got.json()["metadata"] == {} else None

    kept = _eventually(blanked)
    assert (kept["customer_id"], kept["total"]) == (buyer["id"], order["total"])

    def feed_blanked() -> Any:
        feed = http.get("/v1/events", params={"types": "order.*", "limit": 200}).json()["data"]
        mine = [e for e in feed if e["data"]["object"]["id"] == order["id"]]
        return mine if mine and all(e["data"]["object"]["metadata"] == {} for e in mine) else None

    assert not [p for p in personal.values() if p in json.dumps(_eventually(feed_blanked))]
    again = http.post("/v1/orders", json=body, headers=key)
    assert (again.status_code, again.json()["code"]) == (410, "customer_erased"), again.text
    assert again.headers.get("Idempotent-Replayed") == "true"
    assert not [p for p in personal.values() if p in again.text]


def test_a_group_is_renamed_listed_and_deleted_once_no_live_offer_names_it(
    platform: Running,
) -> None:
    """A group's offer prices its members' carts (learnt from customer events, no call at
    sale time). PATCH renames the group, `GET /v1/customers?group_id=` lists its members.
    DELETE is refused while an offer that is not ended names the group (409 `group_in_use`
    with the offers' ids): deleted under it, the offer would silently price nobody's cart
    while still reading as active. Ended offers do not count. Once none names it, DELETE makes
    every member leave it."""
    http = platform.new_merchant("Group lifecycle e2e")
    store = _post(http, "/v1/locations", {"name": "Group St", "currency": "USD"})
    _post(http, "/v1/products", {"sku": "GRP-MUG", "name": "Mug",
                                 "price": {"amount": 1000, "currency": "USD"}})  # fmt: skip
    member = _post(http, "/v1/customers", {"email": "member@example.com"})
    outsider = _post(http, "/v1/customers", {"email": "outsider@example.com"})
    staff = _post(http, "/v1/customer-groups", {"name": "Staff"})
    _post(http, "/v1/customer-groups", {"name": "Friends"})
    _post(http, f"/v1/customer-groups/{staff['id']}/members", {"customer_ids": [member["id"]]}, 200)
    for_staff = {"customer_groups": [staff["id"]]}
    offer = _post(http, "/v1/promotions", {"name": "Staff price", "percent_off_bps": 2000,
                                           "conditions": for_staff})  # fmt: skip
    paused, ended = (
        _post(http, "/v1/promotions", {"name": name, "percent_off_bps": 100,
                                       "conditions": for_staff, "requires_coupon": True})
        for name in ("Staff later", "Staff before")
    )  # fmt: skip
    _post(http, f"/v1/promotions/{paused['id']}/pause", {}, 200)
    _post(http, f"/v1/promotions/{ended['id']}/end", {}, 200)

    def discount() -> int:
        cart = {"location_id": store["id"], "customer_id": member["id"],
                "lines": [{"sku": "GRP-MUG", "quantity": 1}]}  # fmt: skip
        quote = http.post("/v1/carts/calculate", json=cart, headers=_key())
        assert quote.status_code == 200, quote.text
        return int(quote.json()["discount_total"]["amount"])

    assert _eventually(discount) == 200

    def patch(body: Any) -> httpx.Response:
        return http.patch(f"/v1/customer-groups/{staff['id']}", json=body, headers=_key())

    renamed = patch({"name": "Team"})
    assert renamed.status_code == 200, renamed.text
    assert (renamed.json()["name"], renamed.json()["member_count"]) == ("Team", 1)
    assert http.get(f"/v1/customer-groups/{staff['id']}").json()["name"] == "Team"
    taken = patch({"name": "Friends"})
    assert (taken.status_code, taken.json()["code"]) == (409, "group_name_taken")
    for bad, field in (({}, None), ({"name": None}, "name"), ({"name": ""}, "name")):
        refused = patch(bad)
        assert refused.status_code == 400, refused.text
        if field:
            assert [e["field"] for e in refused.json()["errors"]] == [field]

    listed = http.get("/v1/customers", params={"group_id": staff["id"]})
    assert listed.status_code == 200, listed.text
    assert [c["id"] for c in listed.json()["data"]] == [member["id"]]
    assert outsider["id"] in {c["id"] for c in http.get("/v1/customers").json()["data"]}
    missing = http.get("/v1/customers", params={"group_id": "cgrp_missing"})
    assert missing.status_code == 404, missing.text
    foreign = platform.new_merchant("Group lifecycle other e2e")
    assert foreign.get("/v1/customers", params={"group_id": staff["id"]}).status_code == 404
    gone = foreign.delete(f"/v1/customer-groups/{staff['id']}", headers=_key())
    assert gone.status_code == 404, gone.text
    assert patch({"description": "still here"}).status_code == 200

    in_use = http.delete(f"/v1/customer-groups/{staff['id']}", headers=_key())
    assert (in_use.status_code, in_use.json()["code"]) == (409, "group_in_use"), in_use.text
    assert sorted(in_use.json()["promotion_ids"]) == sorted([offer["id"], paused["id"]])
    assert http.get(f"/v1/customers/{member['id']}").json()["group_ids"] == [staff["id"]]
    assert discount() == 200  # nothing changed
    unnamed = http.patch(f"/v1/promotions/{offer['id']}", json={"conditions": {}})
    assert unnamed.status_code == 200, unnamed.text
    _post(http, f"/v1/promotions/{paused['id']}/end", {}, 200)

    deleted = http.delete(f"/v1/customer-groups/{staff['id']}", headers=_key())
    assert deleted.status_code == 200, deleted.text
    assert (deleted.json()["name"], deleted.json()["member_count"]) == ("Team", 1)
    assert http.get(f"/v1/customer-groups/{staff['id']}").status_code == 404
    assert http.get(f"/v1/customers/{member['id']}").json()["group_ids"] == []
    # The ended offer still reads as it was, naming the group it was for.
    assert http.get(f"/v1/promotions/{ended['id']}").json()["conditions"]["customer_groups"] == [
        staff["id"]
    ]


def test_a_group_deleted_while_a_promotion_comes_to_name_it_is_never_both(
    platform: Running,
) -> None:
    """A DELETE of a group and, at the same moment, a promotion made (POST) or changed (PATCH)
    to name it in `conditions.customer_groups`: one of them is refused (the deletion a 409
    `group_in_use`, the promotion a 404 naming `conditions.customer_groups[0]`), never both
    applied, which would leave an offer reading as live and pricing nobody's cart. Each was
    checked before against what the other had not yet written. After every round, no live
    promotion names a deleted group."""
    http = platform.new_merchant(f"Group race e2e {uuid.uuid4().hex[:8]}")
    rounds = 16
    groups = [_post(http, "/v1/customer-groups", {"name": f"Race {n}"}) for n in range(rounds)]
    spare = [_post(http, "/v1/promotions", {"name": f"Spare {n}", "percent_off_bps": 100})
             for n in range(rounds)]  # fmt: skip

    async def at_once(n: int, group_id: str) -> tuple[httpx.Response, httpx.Response]:
        conditions = {"conditions": {"customer_groups": [group_id]}}
        async with httpx.AsyncClient(
            base_url=platform.platform.gateway_url,
            headers={"Authorization": http.headers["Authorization"]},
            timeout=30.0,
        ) as client:
            naming = (
                client.post("/v1/promotions", headers=_key(),
                            json={"name": f"For {n}", "percent_off_bps": 500, **conditions})
                if n % 2 == 0
                # Odd rounds: an existing promotion changed to name the group.
                else client.patch(f"/v1/promotions/{spare[n]['id']}", json=conditions)
            )  # fmt: skip
            deletion = client.delete(f"/v1/customer-groups/{group_id}", headers=_key())
            deleted, named = await asyncio.gather(deletion, naming)
            return deleted, named

    outcomes = []
    for n, group in enumerate(groups):
        deleted, named = asyncio.run(at_once(n, group["id"]))
        assert deleted.status_code in (200, 409), deleted.text
        assert named.status_code in (200, 201, 404), named.text
        if deleted.status_code == 409:
            assert deleted.json()["code"] == "group_in_use", deleted.text
        if named.status_code == 404:
            assert [e["field"] for e in named.json()["errors"]] == [
                "conditions.customer_groups[0]"
            ], named.text
        outcomes.append((deleted.status_code, named.status_code))
        assert not (deleted.is_success and named.is_success), (n, outcomes)

    gone = {
        g["id"] for g in groups if http.get(f"/v1/customer-groups/{g['id']}").status_code == 404
    }
    live = [
        p
        for status in ("active", "paused")
        for p in http.get("/v1/promotions", params={"status": status, "limit": 200}).json()["data"]
    ]
    assert not [p["id"] for p in live if gone & set(p["conditions"]["customer_groups"])], outcomes


def test_a_group_whose_deletion_was_refused_can_still_be_named_by_a_promotion(
    platform: Running,
) -> None:
    """A DELETE refused for a stale If-Match (412) leaves the group as it was: a promotion
    may name it, as before the deletion was tried. Once deleted, none may (404 naming
    `conditions.customer_groups[1]`)."""
    http = platform.new_merchant(f"Group kept e2e {uuid.uuid4().hex[:8]}")
    group = _post(http, "/v1/customer-groups", {"name": "Kept"})
    other = _post(http, "/v1/customer-groups", {"name": "Other"})
    renamed = http.patch(f"/v1/customer-groups/{group['id']}", json={"name": "Kept still"})
    assert renamed.json()["version"] == 2, renamed.text
    stale = http.delete(f"/v1/customer-groups/{group['id']}", headers={**_key(), "If-Match": '"1"'})
    assert (stale.status_code, stale.json()["code"]) == (412, "version_mismatch"), stale.text
    body = {"name": "For kept", "percent_off_bps": 500,
            "conditions": {"customer_groups": [other["id"], group["id"]]}}  # fmt: skip
    named = _post(http, "/v1/promotions", body)
    _post(http, f"/v1/promotions/{named['id']}/end", {}, 200)

    deleted = http.delete(f"/v1/customer-groups/{group['id']}", headers=_key())
    assert deleted.status_code == 200, deleted.text
    refused = http.post("/v1/promotions", json=body, headers=_key())
    assert refused.status_code == 404, refused.text
    assert [e["field"] for e in refused.json()["errors"]] == ["conditions.customer_groups[1]"]


def test_a_merged_customer_is_refused_as_merged_not_as_missing(platform: Running) -> None:
    """A duplicate merged away still reads (`status: merged`, `merged_into`). A change naming
    it, by path or in the body, is a 409 `customer_merged` saying where it went, not the 404
    of a customer who never existed (which sent a client looking for a typo while the read
    of the same id answered it); nothing of the request is applied. A customer who does not
    exist is still a 404, naming the body field that named it."""
    http = platform.new_merchant(f"Merged writes {uuid.uuid4().hex[:8]}")
    keep = _post(http, "/v1/customers", {"given_name": "Keep"})
    dup = _post(http, "/v1/customers", {"given_name": "Dup"})
    other = _post(http, "/v1/customers", {"given_name": "Other"})
    group = _post(http, "/v1/customer-groups", {"name": "Regulars"})
    _post(http, f"/v1/customers/{keep['id']}/merge", {"duplicate_id": dup["id"]}, 200)
    assert http.get(f"/v1/customers/{dup['id']}").json()["merged_into"] == keep["id"]

    def refused(answer: httpx.Response, field: str | None) -> None:
        assert answer.status_code == 409, answer.text
        problem = answer.json()
        assert (problem["code"], problem["merged_into"]) == ("customer_merged", keep["id"])
        assert [e["field"] for e in problem.get("errors", [])] == ([field] if field else [])

    refused(http.patch(f"/v1/customers/{dup['id']}", json={"given_name": "X"}), None)
    merge = f"/v1/customers/{other['id']}/merge"
    refused(http.post(merge, json={"duplicate_id": dup["id"]}, headers=_key()), "duplicate_id")
    refused(
        http.post(
            f"/v1/customers/{dup['id']}/merge", json={"duplicate_id": other["id"]}, headers=_key()
        ),
        None,
    )
    members = f"/v1/customer-groups/{group['id']}/members"
    both = {"customer_ids": [other["id"], dup["id"]]}
    refused(http.post(members, json=both, headers=_key()), "customer_ids[1]")
    adjust = {"points": 5, "reason": "goodwill"}
    refused(
        http.post(f"/v1/customers/{dup['id']}/points/adjustments", json=adjust, headers=_key()),
        None,
    )
    # Nothing half-done: the other customer did not join, nor was anything merged into it.
    assert http.get(f"/v1/customer-groups/{group['id']}").json()["member_count"] == 0
    assert http.get(f"/v1/customers/{other['id']}").json()["version"] == other["version"]

    for answer, field in (
        (http.post(members, json={"customer_ids": [other["id"], "cus_nope"]}, headers=_key()),
         "customer_ids[1]"),
        (http.post(merge, json={"duplicate_id": "cus_nope"}, headers=_key()), "duplicate_id"),
    ):  # fmt: skip
        assert answer.status_code == 404, answer.text
        assert [e["field"] for e in answer.json()["errors"]] == [field]


def test_a_group_name_taken_is_named_by_its_field(platform: Running) -> None:
    """A name another group has is a 409 `group_name_taken` naming `name`, as every other
    taken field of the API is named (`email_taken`, `sku_taken`, `role_name_taken`), whether
    the group is made or renamed; nothing is made or renamed. In any case, as a role's or a
    tier's name: `vip` beside `VIP` would read as the same group on every screen."""
    http = platform.new_merchant(f"Group names {uuid.uuid4().hex[:8]}")
    vip = _post(http, "/v1/customer-groups", {"name": "VIP"})
    other = _post(http, "/v1/customer-groups", {"name": "Staff"})
    refusals = [
        http.post("/v1/customer-groups", json={"name": name}, headers=_key())
        for name in ("VIP", "vip", " Vip ")
    ]
    refusals += [
        http.patch(f"/v1/customer-groups/{other['id']}", json={"name": name})
        for name in (" VIP ", "vIP")
    ]
    for refused in refusals:
        assert (refused.status_code, refused.json()["code"]) == (409, "group_name_taken")
        assert [e["field"] for e in refused.json()["errors"]] == ["name"], refused.text
    names = sorted(g["name"] for g in http.get("/v1/customer-groups").json()["data"])
    assert names == ["Staff", "VIP"]
    recased = http.patch(f"/v1/customer-groups/{vip['id']}", json={"name": "Vip"})
    assert (recased.status_code, recased.json()["name"]) == (200, "Vip"), recased.text


def test_a_loyalty_tier_needs_a_name_of_its_own(platform: Running) -> None:
    """A tier's name is what a customer's `tier` reads (on the till, a receipt, an event):
    spaces only, or a name another tier has in another case (`Gold`, `gold`), tell the
    customer nothing, so each is a 400 naming that tier's `name`, and the program stays."""
    http = platform.new_merchant(f"Tier names {uuid.uuid4().hex[:8]}")
    before = http.get("/v1/loyalty-program").json()
    for tiers, field in (
        ([{"name": "  ", "threshold_points": 5}], "tiers[0].name"),
        ([{"name": "Gold", "threshold_points": 5}, {"name": "gold", "threshold_points": 9}],
         "tiers[1].name"),
    ):  # fmt: skip
        refused = http.put("/v1/loyalty-program", json={"tiers": tiers})
        assert refused.status_code == 400, refused.text
        assert [e["field"] for e in refused.json()["errors"]] == [field]
    assert http.get("/v1/loyalty-program").json() == before


def test_a_group_change_honours_if_match(platform: Running) -> None:
    """A group answers its `version` as the ETag; a rename or deletion under a stale If-Match
    is the 412 `version_mismatch` with `current_version` a customer's is, and nothing
    changes; members joining do not move the version."""
    http = platform.new_merchant("Group versions e2e")
    group = _post(http, "/v1/customer-groups", {"name": "Regulars"})
    assert group["version"] == 1
    one = f"/v1/customer-groups/{group['id']}"
    read = http.get(one)
    assert (read.json()["version"], read.headers["ETag"]) == (1, '"1"'), read.text

    renamed = http.patch(one, json={"name": "Locals"}, headers={**_key(), "If-Match": '"1"'})
    assert renamed.status_code == 200, renamed.text
    assert (renamed.json()["version"], renamed.headers["ETag"]) == (2, '"2"')
    member = _post(http, "/v1/customers", {"email": "local@example.com"})
    joined = _post(http, f"{one}/members", {"customer_ids": [member["id"]]}, 200)
    assert (joined["member_count"], joined["version"]) == (1, 2)

    stale = http.patch(one, json={"name": "Lost"}, headers={**_key(), "If-Match": 'W/"1"'})
    assert stale.status_code == 412, stale.text
    assert stale.headers["content-type"] == "application/problem+json"
    assert (stale.json()["code"], stale.json()["current_version"]) == ("version_mismatch", 2)
    customer = http.patch(
        f"/v1/customers/{member['id']}", json={"given_name": "L"}, headers={"If-Match": '"1"'}
    )
    assert customer.status_code == 412, customer.text
    same = ("type", "title", "status", "code")
    assert {k: stale.json()[k] for k in same} == {k: customer.json()[k] for k in same}
    assert http.get(one).json() == joined

    late = http.delete(one, headers={**_key(), "If-Match": '"1"'})
    assert (late.status_code, late.json()["current_version"]) == (412, 2), late.text
    assert http.get(one).status_code == 200
    deleted = http.delete(one, headers={**_key(), "If-Match": '"2"'})
    assert (deleted.status_code, deleted.json()["version"]) == (200, 2), deleted.text
    assert http.get(one).status_code == 404


def test_a_search_the_service_refuses_names_the_q_parameter(platform: Running) -> None:
    """The words of a search are the `q` parameter: more words than a search takes, or none a
    search can use, is a 400 naming `q`, the parameter sent (the service calls it `query`)."""
    http = platform.http
    for words in ("a b c d e f", "!!! ???"):
        answer = http.get("/v1/customers/search", params={"q": words})
        assert answer.status_code == 400, answer.text
        assert [e["field"] for e in answer.json()["errors"]] == ["q"], answer.text
        assert "query" not in answer.json()["detail"] + answer.text.split('"errors"')[1]


def test_a_register_reads_only_its_own_stores_purchases_of_a_customer(platform: Running) -> None:
    """A customer's purchase history at a register is narrowed to its location, the summary
    too, as every list of sales is; the export, which holds every store's sales in full, is
    the back office's only (403 `insufficient_scope`)."""
    with platform.new_merchant("Customers Confined") as http:
        seed_demo_data(platform.platform.gateway_url, http.headers["Authorization"][7:])
        here, there = [loc["id"] for loc in http.get("/v1/locations").json()["data"][:2]]
        sku = f"CC-{uuid.uuid4().hex[:8].upper()}"
        _post(http, "/v1/products", {"sku": sku, "name": "Confined",
              "price": {"amount": 1200, "currency": "USD"}})  # fmt: skip
        for at in (here, there):
            _post(http, "/v1/inventory/adjustments", {"sku": sku, "location_id": at,
                  "delta": 5, "reason": "received"})  # fmt: skip
        buyer = _post(http, "/v1/customers", {"given_name": "Ines"})
        sold = {}
        for at, quantity in ((here, 1), (there, 3)):
            sale = {"location_id": at, "customer_id": buyer["id"], "tender_type": "card",
                    "card_token": "tok_visa",
                    "lines": [{"sku": sku, "quantity": quantity}]}  # fmt: skip
            sold[at] = _post(http, "/v1/checkouts", sale)["order"]
        path = f"/v1/customers/{buyer['id']}/orders"
        everything = polled(
            lambda: http.get(path).json(), lambda got: len(got.get("data", [])) == 2
        )
        assert everything["summary"]["visit_count"] == 2
        assert everything["summary"]["favourite_location_id"] == there
        till = open_till(platform.platform.gateway_url, http, here)
        with closing(till.device) as device:
            answer = device.get(path)
            assert answer.status_code == 200, answer.text
            history = answer.json()
            assert [o["order_id"] for o in history["data"]] == [sold[here]["id"]]
            assert {o["location_id"] for o in history["data"]} == {here}
            spent = sold[here]["total"]
            assert history["summary"]["visit_count"] == 1
            assert history["summary"]["lifetime_spend"] == spent
            assert history["summary"]["lifetime_spend_by_currency"] == [spent]
            assert history["summary"]["favourite_location_id"] == here
            # As /v1/orders?customer_id= is.
            listed = device.get("/v1/orders", params={"customer_id": buyer["id"]}).json()
            assert [o["id"] for o in listed["data"]] == [sold[here]["id"]]
            export = device.get(f"/v1/customers/{buyer['id']}/export")
            assert export.status_code == 403, export.text
            assert export.json()["code"] == "insufficient_scope"
        # The merchant's own credential exports both stores' sales.
        exported = http.get(f"/v1/customers/{buyer['id']}/export")
        assert exported.status_code == 200, exported.text
        assert {o["id"] for o in exported.json()["sales"]} == {o["id"] for o in sold.values()}
