"""Dead letters through the platform administration API: listed, then sent again."""

from __future__ import annotations

import asyncio
import time
from typing import Any

import httpx
import nats

from pos_devstack.testing import Running
from pos_kit.events import EVENT_ID_HEADER, EVENT_TYPE_HEADER, MERCHANT_HEADER
from pos_kit.ids import new_id

SUBJECT = "pos.order.v1.order_confirmed"


def _publish_poison(nats_url: str, event_id: str) -> None:
    async def publish() -> None:
        client = await nats.connect(nats_url)
        try:
            headers = {
                EVENT_ID_HEADER: event_id,
                EVENT_TYPE_HEADER: "pos.order.v1.OrderConfirmed",
                MERCHANT_HEADER: "mer_poison",
            }
            # Not an OrderConfirmed payload: every consumer of the subject sets it aside.
            await client.jetstream().publish(SUBJECT, b"\xff\xff not protobuf", headers=headers)
        finally:
            await client.close()

    asyncio.run(publish())


def _letters(admin: httpx.Client, event_id: str, consumer: str) -> list[dict[str, Any]]:
    found: list[dict[str, Any]] = []
    cursor: str | None = None
    while True:
        params: dict[str, Any] = {"consumer": consumer, "limit": 200}
        if cursor:
            params["cursor"] = cursor
        page = admin.get("/v1/admin/dead-letters", params=params)
        assert page.status_code == 200, page.text
        body = page.json()
        found += [x for x in body["data"] if x["event_id"] == event_id]
        cursor = body["next_cursor"]
        if cursor is None:
            return found


def _wait_for(check: Any, limit: float = 30.0) -> Any:
    deadline = time.monotonic() + limit
    while not (result := check()):
        assert time.monotonic() < deadline, "not seen before the deadline"
        time.sleep(0.1)
    return result


def test_a_dead_letter_is_listed_and_redriven_over_http(platform: Running) -> None:
    running = platform.platform
    token = running._secrets()["platform_admin_token"]
    event_id = new_id("evt")
    with httpx.Client(
        base_url=running.gateway_url, headers={"Authorization": f"Bearer {token}"}, timeout=15
    ) as admin:
        assert httpx.get(running.gateway_url + "/v1/admin/dead-letters").status_code == 401
        _publish_poison(running.nats.url, event_id)

        (letter,) = _wait_for(lambda: _letters(admin, event_id, "customer-loyalty"))
        assert letter["subject"] == SUBJECT
        assert letter["merchant_id"] == "mer_poison"
        assert letter["error"].startswith("poison")
        assert letter["deliveries"] >= 1
        others = _wait_for(lambda: _letters(admin, event_id, "inventory-sales"))

        again = admin.post(f"/v1/admin/dead-letters/{letter['sequence']}/redrive")
        assert again.status_code == 200, again.text
        assert [x["sequence"] for x in again.json()["redriven"]] == [letter["sequence"]]

        # Still poison: the consumer that failed it sets it aside again, as a new letter; the
        # consumer that was not asked does not see it a second time.
        (renewed,) = _wait_for(
            lambda: [
                x
                for x in _letters(admin, event_id, "customer-loyalty")
                if x["sequence"] != letter["sequence"]
            ]
        )
        assert renewed["sequence"] > letter["sequence"]
        assert _letters(admin, event_id, "inventory-sales") == others

        gone = admin.post(f"/v1/admin/dead-letters/{letter['sequence']}/redrive")
        assert gone.status_code == 404
        assert gone.json()["code"] == "resource_missing"
        assert gone.json()["resource"] == "dead letter"
        bad = admin.get("/v1/admin/dead-letters", params={"cursor": "abc"})
        assert bad.status_code == 400


def test_a_redrive_names_a_consumer_there_is_and_its_key_holds_the_consumer(
    platform: Running,
) -> None:
    """A consumer the platform does not have is a 404 naming `consumer` (it was a 200 with
    nothing redriven, as if a typo had found the queue empty), and the same Idempotency-Key
    with another consumer is another request: a 422 (it replayed the first consumer's answer,
    and the second was never redriven)."""
    running = platform.platform
    token = running._secrets()["platform_admin_token"]
    with httpx.Client(
        base_url=running.gateway_url, headers={"Authorization": f"Bearer {token}"}, timeout=15
    ) as admin:
        typo = admin.post("/v1/admin/dead-letters/redrive", params={"consumer": "customer-loyalt"})
        assert typo.status_code == 404, typo.text
        assert typo.json()["code"] == "resource_missing"
        assert typo.json()["errors"] == [{"field": "consumer", "reason": "no such consumer"}]

        key = {"Idempotency-Key": new_id("redrive")}
        first = admin.post(
            "/v1/admin/dead-letters/redrive", params={"consumer": "customer-loyalty"}, headers=key
        )
        assert first.status_code == 200, first.text
        other = admin.post(
            "/v1/admin/dead-letters/redrive", params={"consumer": "inventory-sales"}, headers=key
        )
        assert other.status_code == 422, other.text
        assert other.json()["code"] == "idempotency_key_reused"
        again = admin.post(
            "/v1/admin/dead-letters/redrive", params={"consumer": "customer-loyalty"}, headers=key
        )
        assert (again.status_code, again.headers["idempotent-replayed"]) == (200, "true")
        assert again.content == first.content


def test_a_listing_names_a_consumer_there_is(platform: Running) -> None:
    """A consumer the platform does not have is a 404 naming `consumer`, as its redrive is (it
    was a 200 with an empty list, as if a typo had found the queue empty); one there is with
    no dead letters is an empty list."""
    running = platform.platform
    token = running._secrets()["platform_admin_token"]
    with httpx.Client(
        base_url=running.gateway_url, headers={"Authorization": f"Bearer {token}"}, timeout=15
    ) as admin:
        typo = admin.get("/v1/admin/dead-letters", params={"consumer": "customer-loyalt"})
        assert typo.status_code == 404, typo.text
        assert (typo.json()["code"], typo.json()["resource"]) == ("resource_missing", "consumer")
        assert typo.json()["errors"] == [{"field": "consumer", "reason": "no such consumer"}]
        quiet = admin.get("/v1/admin/dead-letters", params={"consumer": "order-erasures"})
        assert quiet.status_code == 200, quiet.text
        assert quiet.json() == {"data": [], "next_cursor": None}
