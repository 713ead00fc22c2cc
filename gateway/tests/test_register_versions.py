"""A register carries a `version`, bumped by each change of it, answered as the ETag; a change
under a stale `If-Match` is the 412 `version_mismatch` every other resource answers, and
changes nothing.

The real gateway application (its routes, edge and stores) against its real database, and the
inventory service in process: a register is changed or paired only while its location is open,
which the inventory service says (registers are made directly, at a location made there).
"""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import gateway_alone
import httpx
import psycopg
import pytest_asyncio

import pos_gateway
from pos.gateway.v1 import events_pb2 as pb
from pos_devstack.testing import Infra
from pos_gateway import audit, registers
from pos_kit import migrate as kit_migrate
from pos_kit.db import make_engine

SECRET = "register-versions-secret-0123456789abcdef"


@dataclass
class Gateway:
    http: httpx.AsyncClient
    database_url: str
    location_id: str

    def rows(self, query: str, *args: object) -> list[Any]:
        with psycopg.connect(self.database_url) as conn:
            return conn.execute(query, args).fetchall()

    async def register(self, name: str = "Till") -> str:
        merchant = self.rows("SELECT merchant_id FROM api_keys ORDER BY id LIMIT 1")[0][0]
        engine = make_engine(self.database_url, pool_size=1)
        try:
            made = await registers.create(
                engine, merchant, self.location_id, name, audit.Actor(), str(uuid.uuid4())
            )
        finally:
            await engine.dispose()
        return made.id

    async def post(self, path: str, body: dict[str, Any] | None = None, **headers: str) -> Any:
        headers.setdefault("Idempotency-Key", str(uuid.uuid4()))
        return await self.http.post(path, json=body, headers=headers)

    def published(self, register_id: str) -> list[tuple[str, int]]:
        """The register's events in the gateway's outbox, oldest first: (type, version)."""
        kinds = {
            m.DESCRIPTOR.full_name: m
            for m in (pb.RegisterCreated, pb.RegisterUpdated, pb.RegisterPaired, pb.RegisterRetired)
        }
        found = []
        for event_type, payload in self.rows("SELECT event_type, payload FROM outbox ORDER BY seq"):
            if event_type in kinds:
                event = kinds[event_type].FromString(bytes(payload))
                if event.register.id == register_id:
                    found.append((kinds[event_type].__name__, event.register.version))
        return found


@pytest_asyncio.fixture(loop_scope="session", scope="module")
async def gateway(infra: Infra) -> AsyncIterator[Gateway]:
    url = infra.service_database("gateway")
    key = await gateway_alone.merchant_key(url, SECRET, "Versioned Tills", role="owner")
    async with gateway_alone.with_a_store(infra, url, "Versions St") as (inventory, store):
        at = gateway_alone.settings(url, SECRET, inventory_addr=inventory)
        async with gateway_alone.serve(at, key) as (_, http):
            yield Gateway(http, url, store)


async def test_a_register_answers_its_version_as_the_etag(gateway: Gateway) -> None:
    register = await gateway.register("Counted Till")
    one = f"/v1/registers/{register}"
    read = await gateway.http.get(one)
    assert read.status_code == 200, read.text
    assert (read.json()["version"], read.headers["ETag"]) == (1, '"1"')
    # (Filtered by location, the list would ask the inventory service, which is not running.)
    listed = await gateway.http.get("/v1/registers")
    mine = [r for r in listed.json()["data"] if r["id"] == register]
    assert mine == [read.json()]
    feed = await gateway.http.get("/v1/registers", params={"updated_since": "2020-01-01T00:00:00Z"})
    assert [r for r in feed.json()["data"] if r["id"] == register] == [read.json()]


async def test_each_change_bumps_the_version_and_a_stale_if_match_changes_nothing(
    gateway: Gateway,
) -> None:
    register = await gateway.register("Front")
    one = f"/v1/registers/{register}"

    renamed = await gateway.http.patch(one, json={"name": "Front 2"}, headers={"If-Match": '"1"'})
    assert renamed.status_code == 200, renamed.text
    assert (renamed.json()["version"], renamed.headers["ETag"]) == (2, '"2"')
    assert (await gateway.http.get(one)).json() == renamed.json()

    # The version read before that change is stale now, in each form an ETag may take.
    for stale in ('"1"', 'W/"1"', "1"):
        refused = await gateway.http.patch(
            one, json={"name": "Lost update"}, headers={"If-Match": stale}
        )
        assert refused.status_code == 412, refused.text
        assert refused.headers["content-type"].startswith("application/problem+json")
        problem = refused.json()
        assert (problem["code"], problem["current_version"]) == ("version_mismatch", 2)
    # One ahead of the register is as stale.
    ahead = await gateway.http.patch(one, json={"name": "Ahead"}, headers={"If-Match": '"9"'})
    assert (ahead.status_code, ahead.json()["current_version"]) == (412, 2)
    assert (await gateway.http.get(one)).json() == renamed.json()  # nothing changed

    # `*` is any current version; without If-Match a change applies as before.
    starred = await gateway.http.patch(one, json={"name": "Front 3"}, headers={"If-Match": "*"})
    assert (starred.status_code, starred.json()["version"]) == (200, 3), starred.text
    plain = await gateway.http.patch(one, json={"name": "Front 4"})
    assert (plain.status_code, plain.json()["version"]) == (200, 4), plain.text
    # What it already is: no new version.
    same = await gateway.http.patch(one, json={"name": "Front 4"}, headers={"If-Match": '"4"'})
    assert (same.status_code, same.json()["version"]) == (200, 4), same.text

    bad = await gateway.http.patch(one, json={"name": "x"}, headers={"If-Match": '"abc"'})
    assert (bad.status_code, bad.json()["code"]) == (400, "invalid_if_match"), bad.text
    assert bad.json()["errors"] == [
        {"field": "If-Match", "reason": "must be a positive version number"}
    ]
    missing = await gateway.http.patch(
        "/v1/registers/reg_made_up", json={"name": "x"}, headers={"If-Match": '"1"'}
    )
    assert missing.status_code == 404, missing.text

    # Each change went out with its version; the refused ones and the no-op published nothing.
    assert gateway.published(register) == [
        ("RegisterCreated", 1), ("RegisterUpdated", 2), ("RegisterUpdated", 3),
        ("RegisterUpdated", 4),
    ]  # fmt: skip


async def test_the_stale_version_problem_is_the_one_other_resources_answer(
    gateway: Gateway,
) -> None:
    """The same type, title, status and members as a role's (a resource of the gateway's own)."""
    role = await gateway.post("/v1/roles", {"name": f"lead {uuid.uuid4().hex[:8]}",
                                             "permissions": ["refund"]})  # fmt: skip
    assert role.status_code == 201, role.text
    await gateway.http.patch(f"/v1/roles/{role.json()['id']}", json={"discount_limit_bps": 5})
    theirs = await gateway.http.patch(
        f"/v1/roles/{role.json()['id']}", json={"discount_limit_bps": 6}, headers={"If-Match": "1"}
    )
    register = await gateway.register()
    await gateway.http.patch(f"/v1/registers/{register}", json={"name": "Renamed"})
    ours = await gateway.http.patch(
        f"/v1/registers/{register}", json={"name": "Stale"}, headers={"If-Match": "1"}
    )
    assert theirs.status_code == ours.status_code == 412
    assert theirs.headers["content-type"] == ours.headers["content-type"]
    same = ("type", "title", "status", "code", "current_version")
    assert {k: ours.json()[k] for k in same} == {k: theirs.json()[k] for k in same}
    assert set(ours.json()) == set(theirs.json())


async def test_pairing_and_retiring_are_changes_and_retiring_honours_if_match(
    gateway: Gateway,
) -> None:
    register = await gateway.register("Paired")
    one = f"/v1/registers/{register}"
    issued = await gateway.post(f"{one}/pairing-codes")
    assert issued.status_code == 201, issued.text
    assert (await gateway.http.get(one)).json()["version"] == 1  # a code changes no register
    paired = await gateway.http.post(
        "/v1/registers/pair", json={"code": issued.json()["code"]}, headers={"Authorization": ""}
    )
    assert paired.status_code == 201, paired.text
    assert paired.json()["register"]["version"] == 2
    assert (await gateway.http.get(one)).json() == paired.json()["register"]

    stale = await gateway.post(f"{one}/retire", **{"If-Match": '"1"'})
    assert (stale.status_code, stale.json()["code"]) == (412, "version_mismatch"), stale.text
    assert stale.json()["current_version"] == 2
    assert (await gateway.http.get(one)).json()["status"] == "paired"  # not retired

    retired = await gateway.post(f"{one}/retire", **{"If-Match": '"2"'})
    assert retired.status_code == 200, retired.text
    assert (retired.json()["status"], retired.json()["version"]) == ("retired", 3)
    assert retired.headers["ETag"] == '"3"'
    again = await gateway.post(f"{one}/retire")  # retired already: nothing new
    assert (again.status_code, again.json()["version"]) == (200, 3)
    # A stale version is named before the register's state, as for a staff member.
    late = await gateway.http.patch(one, json={"name": "Gone"}, headers={"If-Match": '"2"'})
    assert (late.status_code, late.json()["current_version"]) == (412, 3)
    current = await gateway.http.patch(one, json={"name": "Gone"}, headers={"If-Match": '"3"'})
    assert (current.status_code, current.json()["code"]) == (409, "register_retired")
    assert gateway.published(register) == [
        ("RegisterCreated", 1), ("RegisterPaired", 2), ("RegisterRetired", 3),
    ]  # fmt: skip


def test_registers_made_before_versions_start_at_one(infra: Infra) -> None:
    url = infra.create_database("gateway")
    path = Path(pos_gateway.__file__).parent / "migrations"
    kit_migrate.upgrade(path, url, "0016")
    with psycopg.connect(url) as conn:
        conn.execute("INSERT INTO merchants (id, name) VALUES ('mer_old', 'Old')")
        conn.execute(
            "INSERT INTO registers (id, merchant_id, location_id, name, status) VALUES "
            "('reg_old', 'mer_old', 'loc_1', 'Old Till', 'paired')"
        )
    kit_migrate.upgrade(path, url)
    with psycopg.connect(url) as conn:
        assert conn.execute("SELECT version FROM registers").fetchall() == [(1,)]


async def test_if_match_with_a_list_holds_when_any_listed_version_is_current(
    gateway: Gateway,
) -> None:
    """RFC 9110 (13.1.1) lets If-Match list entity tags (`"3", "4"`): the change goes ahead
    when any of them is the current version, and is the 412 when none is. A list that is not
    one of versions is the 400 a malformed single value is."""
    register = await gateway.register("Listed")
    one = f"/v1/registers/{register}"
    renamed = await gateway.http.patch(one, json={"name": "Listed 2"})
    assert renamed.json()["version"] == 2
    for listed, name, version in (
        ('"1", "2"', "Listed 3", 3),  # the current one last
        ('"3", "1"', "Listed 4", 4),  # first
        ('W/"9", 4,', "Listed 5", 5),  # weak, bare, an empty element
    ):
        changed = await gateway.http.patch(one, json={"name": name}, headers={"If-Match": listed})
        assert (changed.status_code, changed.json()["version"]) == (200, version), changed.text
        assert changed.headers["ETag"] == f'"{version}"'
    stale = await gateway.http.patch(one, json={"name": "Lost"}, headers={"If-Match": '"1", "4"'})
    assert (stale.status_code, stale.json()["current_version"]) == (412, 5), stale.text
    for bad in ('"5", "abc"', '*, "5"', '"5" "6"'):
        refused = await gateway.http.patch(one, json={"name": "x"}, headers={"If-Match": bad})
        assert (refused.status_code, refused.json()["code"]) == (400, "invalid_if_match"), bad
    assert (await gateway.http.get(one)).json()["name"] == "Listed 5"
    retired = await gateway.post(f"{one}/retire", **{"If-Match": '"4", "5"'})
    assert (retired.status_code, retired.json()["version"]) == (200, 6), retired.text


async def test_roles_take_updated_since(gateway: Gateway) -> None:
    """`GET /v1/roles?updated_since=`: the change feed, as the staff list's. A role changed (a
    new version) moves to its end; walked a page at a time with the feed's own cursor, which
    the list by id refuses (and the feed refuses the list's); the built-in roles never change
    and are not in it; a time without a zone is a 400 naming `updated_since`."""
    tag = uuid.uuid4().hex[:8]
    made = []
    for n in range(3):
        answer = await gateway.post("/v1/roles", {"name": f"feed {tag} {n}", "permissions": []})
        assert answer.status_code == 201, answer.text
        made.append(answer.json())
    assert all(r["updated_at"] for r in made)
    ids = [r["id"] for r in made]
    changed = await gateway.http.patch(f"/v1/roles/{ids[0]}", json={"discount_limit_bps": 7})
    assert changed.status_code == 200, changed.text
    assert changed.json()["updated_at"] >= made[2]["updated_at"]

    async def walk(since: str) -> list[str]:
        seen: list[str] = []
        cursor = None
        for _ in range(50):
            params = {"updated_since": since, "limit": 1, **({"cursor": cursor} if cursor else {})}
            page = await gateway.http.get("/v1/roles", params=params)
            assert page.status_code == 200, page.text
            seen += [r["id"] for r in page.json()["data"]]
            cursor = page.json()["next_cursor"]
            if cursor is None:
                return seen
        raise AssertionError("the feed did not end")

    seen = await walk(made[0]["updated_at"])
    assert [i for i in seen if i in ids] == [ids[1], ids[2], ids[0]]
    assert not {"cashier", "manager", "admin"} & set(seen)
    assert ids[0] in await walk(changed.json()["updated_at"])

    naive = await gateway.http.get("/v1/roles", params={"updated_since": "2026-01-01T00:00:00"})
    assert naive.status_code == 400, naive.text
    assert [e["field"] for e in naive.json()["errors"]] == ["updated_since"]
    since = made[0]["updated_at"]
    by_id = (await gateway.http.get("/v1/roles", params={"limit": 1})).json()["next_cursor"]
    fed = (await gateway.http.get("/v1/roles", params={"updated_since": since, "limit": 1})).json()[
        "next_cursor"
    ]
    assert by_id and fed
    for cursor, params in ((by_id, {"updated_since": since}), (fed, {})):
        refused = await gateway.http.get("/v1/roles", params={**params, "cursor": cursor})
        assert refused.status_code == 400, refused.text
        assert [e["field"] for e in refused.json()["errors"]] == ["cursor"]
