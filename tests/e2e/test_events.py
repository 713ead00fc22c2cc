"""Partner events end to end, every part a separate process: a register sale reaches a webhook
receiver signed (checked by the reference Standard Webhooks library) within a second, and the
feed has it, its snapshot exactly what `GET` answers for the order."""

from __future__ import annotations

import json
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import ExitStack
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import httpx
import jsonschema
import pytest
from standardwebhooks.webhooks import Webhook

from pos_devstack.testing import Running

pytestmark = pytest.mark.e2e


class _Receiver(BaseHTTPRequestHandler):
    got: list[tuple[dict[str, str], str, float]]

    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers["content-length"])).decode()
        self.got.append(({k.lower(): v for k, v in self.headers.items()}, body, time.monotonic()))
        self.send_response(204)
        self.end_headers()

    def log_message(self, format: str, *args: Any) -> None:
        pass


@pytest.fixture
def receiver() -> Iterator[tuple[str, list[tuple[dict[str, str], str, float]]]]:
    got: list[tuple[dict[str, str], str, float]] = []
    handler = type("Handler", (_Receiver,), {"got": got})
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/hooks", got
    finally:
        server.shutdown()
        server.server_close()


def _eventually(check: Callable[[], Any], timeout: float = 20.0) -> Any:
    deadline = time.monotonic() + timeout
    while not (value := check()):
        assert time.monotonic() < deadline, "the expected state was not reached in time"
        time.sleep(0.05)
    return value


def test_a_sale_reaches_a_webhook_and_the_feed_as_get_answers_it(
    platform: Running, receiver: tuple[str, list[tuple[dict[str, str], str, float]]]
) -> None:
    url, got = receiver
    with platform.new_merchant(f"Events {uuid.uuid4().hex[:6]}") as http:
        made = http.post(
            "/v1/webhook-subscriptions",
            json={"url": url, "event_types": ["order.*", "loyalty.*"], "description": "e2e"},
            headers={"Idempotency-Key": "sub-1"},
        )
        assert made.status_code == 201, made.text
        secret = made.json()["secret"]
        assert secret.startswith("whsec_") and made.json()["secret_redacted"] is False
        replay = http.post(
            "/v1/webhook-subscriptions",
            json={"url": url, "event_types": ["order.*", "loyalty.*"], "description": "e2e"},
            headers={"Idempotency-Key": "sub-1"},
        )
        assert replay.json()["secret"] is None and replay.json()["secret_redacted"] is True

        location = http.post(
            "/v1/locations",
            json={"name": "Events store", "currency": "USD", "tax_rate_bps": 0},
            headers={"Idempotency-Key": "loc-1"},
        ).json()["id"]
        http.post(
            "/v1/products",
            json={"sku": "EVT-1", "name": "Evented", "price": {"amount": 1500, "currency": "USD"}},
            headers={"Idempotency-Key": "prod-1"},
        ).raise_for_status()
        http.post(
            "/v1/inventory/adjustments",
            json={"sku": "EVT-1", "location_id": location, "delta": 5, "reason": "received"},
            headers={"Idempotency-Key": "adj-1"},
        ).raise_for_status()
        customer = http.post(
            "/v1/customers",
            json={"email": f"{uuid.uuid4().hex[:8]}@events.example"},
            headers={"Idempotency-Key": "cus-1"},
        ).json()["id"]
        sale = http.post(
            "/v1/checkouts",
            json={"location_id": location, "customer_id": customer, "tender_type": "cash",
                  "cash_tendered": {"amount": 5000, "currency": "USD"},
                  "lines": [{"sku": "EVT-1", "quantity": 1}]},
            headers={"Idempotency-Key": "sale-1"},
        )  # fmt: skip
        assert sale.status_code == 201, sale.text
        order_id = sale.json()["order"]["id"]

        def confirmed() -> Any:
            for headers, body, at in list(got):
                event = Webhook(secret).verify(body, headers)
                if event["type"] == "order.confirmed":
                    return event, at
            return None

        # How soon it arrives is the dispatcher benchmark's to measure (tools/bench_dispatcher):
        # on a loaded machine a second can pass with nothing wrong, so here it only arrives.
        event, _ = _eventually(confirmed)
        order = http.get(f"/v1/orders/{order_id}").json()
        assert event["data"]["object"] == order
        earned = _eventually(
            lambda: next(
                (
                    event
                    for headers, body, _ in list(got)
                    if (event := Webhook(secret).verify(body, headers))["type"]
                    == "loyalty.points_earned"
                ),
                None,
            )
        )
        # The accrual's entry as the customer's points history lists it (and its `balance`).
        (entry,) = http.get(f"/v1/customers/{customer}/points").json()["data"]
        assert earned["data"]["object"] == {**entry, "balance": entry["balance_after"]}

        # The feed: the same event, stock and customer changes too, sequences without a gap.
        # Each service's events reach it through a stream of their own, in no order between
        # services: it is read until every one expected is in, whatever came first.
        expected = {"product.created", "inventory.changed", "customer.created",
                    "order.confirmed", "order.completed", "payment.captured",
                    "loyalty.points_earned"}  # fmt: skip

        def feed() -> Any:
            page = http.get("/v1/events", params={"limit": 200}).json()
            types = {e["type"] for e in page["data"]}
            return page if expected <= types else None

        page = _eventually(feed)
        events = page["data"]
        assert [e["sequence"] for e in events] == list(range(1, len(events) + 1))
        mine = next(e for e in events if e["id"] == event["id"])
        assert mine == event
        assert http.get(f"/v1/events/{event['id']}").json() == event
        only_orders = http.get("/v1/events", params={"types": "order.*"}).json()["data"]
        # A register sale is confirmed and handed over at once: completed in the same change.
        assert {e["type"] for e in only_orders} == {"order.confirmed", "order.completed"}
        sub_id = made.json()["subscription"]["id"]

        # Every delivery succeeds; the last ones may still be on their way (or their answers
        # not yet recorded: the recorder writes them many at a time) when the feed is read.
        def delivered() -> Any:
            listed = http.get(f"/v1/webhook-subscriptions/{sub_id}/deliveries").json()["data"]
            done = {d["status"] for d in listed} == {"succeeded"}
            return listed if done else None

        assert _eventually(delivered)


def test_low_stock_reaches_the_feed_and_a_webhook_with_its_threshold(
    platform: Running, receiver: tuple[str, list[tuple[dict[str, str], str, float]]]
) -> None:
    """Where, which SKU, how much is left and the threshold it fell to or below: what a
    partner needs to reorder, in the event itself."""
    url, got = receiver
    with platform.new_merchant(f"Low stock {uuid.uuid4().hex[:6]}") as http:

        def post(path: str, body: dict[str, Any]) -> Any:
            answer = http.post(path, json=body, headers={"Idempotency-Key": str(uuid.uuid4())})
            assert answer.status_code in (200, 201), answer.text
            return answer.json()

        secret = post(
            "/v1/webhook-subscriptions", {"url": url, "event_types": ["inventory.low_stock"]}
        )["secret"]
        store = post("/v1/locations", {"name": "Low store", "currency": "USD", "tax_rate_bps": 0})
        post(
            "/v1/products",
            {"sku": "LOW-1", "name": "Scarce", "price": {"amount": 900, "currency": "USD"}},
        )
        post(
            "/v1/inventory/adjustments",
            {"sku": "LOW-1", "location_id": store["id"], "delta": 5, "reason": "received"},
        )
        post("/v1/inventory/low-stock-thresholds", {"sku": "LOW-1", "threshold": 3})
        post(
            "/v1/inventory/adjustments",
            {"sku": "LOW-1", "location_id": store["id"], "delta": -3, "reason": "damaged"},
        )

        def low() -> Any:
            page = http.get("/v1/events", params={"types": "inventory.low_stock"}).json()
            return page["data"]

        (event,) = _eventually(low)
        assert event["data"]["threshold"] == 3
        level = event["data"]["object"]
        assert (level["sku"], level["location_id"], level["available"]) == ("LOW-1", store["id"], 2)
        (sent,) = _eventually(lambda: list(got))
        assert Webhook(secret).verify(sent[1], sent[0]) == event


def test_bad_subscriptions_are_400s_naming_the_field(platform: Running) -> None:
    http = platform.http
    for body, field in (
        ({"url": "ftp://x.example/h", "event_types": ["order.*"]}, "url"),
        ({"url": "https://x.example/h", "event_types": ["order.confirmd"]}, "event_types"),
        ({"url": "https://x.example/h", "event_types": []}, "event_types"),
    ):
        answer = http.post(
            "/v1/webhook-subscriptions", json=body, headers={"Idempotency-Key": str(uuid.uuid4())}
        )
        assert answer.status_code == 400, answer.text
        assert answer.json()["errors"][0]["field"].startswith(field), answer.text
    assert httpx.get(platform.platform.gateway_url + "/v1/events").status_code == 401


def _frames(lines: Iterator[str], count: int) -> list[dict[str, str]]:
    """The first `count` events of a server-sent event stream (comments skipped)."""
    found: list[dict[str, str]] = []
    frame: dict[str, str] = {}
    for line in lines:
        if not line:
            if "data" in frame:
                found.append(frame)
                if len(found) == count:
                    return found
            frame = {}
        elif not line.startswith(":"):
            name, _, value = line.partition(": ")
            frame[name] = value
    return found


def test_the_live_stream_follows_the_feed_and_resumes_after_the_last_event_id(
    platform: Running,
) -> None:
    with platform.new_merchant(f"Stream {uuid.uuid4().hex[:6]}") as http:
        for n in range(3):
            http.post(
                "/v1/customers",
                json={"email": f"s{n}-{uuid.uuid4().hex[:6]}@stream.example"},
                headers={"Idempotency-Key": f"cus-{n}"},
            ).raise_for_status()
        _eventually(lambda: len(http.get("/v1/events").json()["data"]) == 3)
        with http.stream("GET", "/v1/events/stream", params={"after": 0}, timeout=20) as live:
            assert live.headers["content-type"].startswith("text/event-stream")
            first = _frames(live.iter_lines(), 2)
        assert [f["id"] for f in first] == ["1", "2"]
        assert {f["event"] for f in first} == {"customer.created"}
        # Reconnecting with the last id it saw, a client gets the rest, then what comes next.
        with http.stream(
            "GET", "/v1/events/stream", headers={"Last-Event-ID": "2"}, timeout=20
        ) as live:
            lines = live.iter_lines()
            (third,) = _frames(lines, 1)
            http.post(
                "/v1/customers",
                json={"email": f"late-{uuid.uuid4().hex[:6]}@stream.example"},
                headers={"Idempotency-Key": "cus-late"},
            ).raise_for_status()
            (fourth,) = _frames(lines, 1)
        assert (third["id"], fourth["id"]) == ("3", "4")
        # A position past the feed's head is refused naming where it came from.
        for ahead, field in (({"Last-Event-ID": "99"}, "Last-Event-ID"), ({}, "after")):
            params = {} if ahead else {"after": 99}
            refused = http.get("/v1/events/stream", headers=ahead, params=params)
            assert refused.status_code == 400, refused.text
            assert [e["field"] for e in refused.json()["errors"]] == [field]


def test_a_credential_holds_a_few_streams_at_once(platform: Running) -> None:
    with platform.new_merchant(f"Streams {uuid.uuid4().hex[:6]}") as http, ExitStack() as held:
        opened = [held.enter_context(http.stream("GET", "/v1/events/stream")) for _ in range(5)]
        assert [s.status_code for s in opened] == [200] * 5
        with http.stream("GET", "/v1/events/stream") as refused:
            assert refused.status_code == 429
            refused.read()
            assert refused.json()["code"] == "too_many_streams"
        opened[0].close()

        # One closed, one may open again (the server notices the close within a poll).
        def reopened() -> bool:
            with http.stream("GET", "/v1/events/stream") as again:
                return again.status_code == 200

        _eventually(reopened)


def test_a_stream_ends_when_its_credential_is_revoked(platform: Running) -> None:
    with platform.new_merchant(f"Revoked {uuid.uuid4().hex[:6]}") as http:
        made = http.post(
            "/v1/api-keys",
            json={"name": "feed", "scopes": ["events:read"]},
            headers={"Idempotency-Key": str(uuid.uuid4())},
        )
        assert made.status_code == 201, made.text
        reader = httpx.Client(
            base_url=platform.platform.gateway_url,
            headers={"Authorization": f"Bearer {made.json()['key']}"},
        )

        def customer(tag: str) -> str:
            answer = http.post(
                "/v1/customers",
                json={"email": f"{tag}-{uuid.uuid4().hex[:6]}@revoked.example"},
                headers={"Idempotency-Key": str(uuid.uuid4())},
            )
            answer.raise_for_status()
            return str(answer.json()["id"])

        with reader, reader.stream("GET", "/v1/events/stream", params={"after": 0},
                                   timeout=30) as live:  # fmt: skip
            lines = live.iter_lines()
            seen = customer("before")
            (first,) = _frames(lines, 1)
            assert json.loads(first["data"])["data"]["object"]["id"] == seen
            assert http.delete(f"/v1/api-keys/{made.json()['id']}").status_code == 200
            hidden = customer("after")
            _eventually(lambda: len(http.get("/v1/events").json()["data"]) == 2)
            # The stream ends instead of handing the revoked key what came next.
            rest = list(lines)
        assert ": credential revoked" in rest
        assert not any(hidden in line for line in rest)


def test_a_hold_and_its_commit_announce_each_stock_change_once(platform: Running) -> None:
    with platform.new_merchant(f"Holds {uuid.uuid4().hex[:6]}") as http:

        def post(path: str, body: dict[str, Any]) -> Any:
            answer = http.post(path, json=body, headers={"Idempotency-Key": str(uuid.uuid4())})
            assert answer.status_code in (200, 201), answer.text
            return answer.json()

        store = post("/v1/locations", {"name": "Hold store", "currency": "USD", "tax_rate_bps": 0})
        price = {"amount": 900, "currency": "USD"}
        post("/v1/products", {"sku": "HOLD-1", "name": "Held", "price": price})
        here = store["id"]
        received = {"sku": "HOLD-1", "location_id": here, "delta": 5, "reason": "received"}
        post("/v1/inventory/adjustments", received)
        lines = [{"sku": "HOLD-1", "quantity": 2}]
        held = post("/v1/reservations", {"location_id": here, "lines": lines})
        post(f"/v1/reservations/{held['id']}/commit", {})

        def all_in() -> Any:
            events = http.get("/v1/events", params={"limit": 100}).json()["data"]
            return events if any(e["type"] == "reservation.committed" for e in events) else None

        events = _eventually(all_in)
        stock = [
            (e["type"], e["data"]["object"].get("on_hand"), e["data"]["object"].get("reserved"))
            for e in events
            if e["type"].startswith(("inventory.", "reservation."))
        ]
        # Received, held, sold: three changes of the level, each announced once.
        changes = [(on_hand, reserved) for kind, on_hand, reserved in stock
                   if kind == "inventory.changed"]  # fmt: skip
        assert changes == [(5, 0), (5, 2), (3, 0)]
        assert [k for k, *_ in stock if k.startswith("reservation.")] == [
            "reservation.created",
            "reservation.committed",
        ]


def test_a_merge_names_the_duplicate_it_took_in(platform: Running) -> None:
    with platform.new_merchant(f"Merges {uuid.uuid4().hex[:6]}") as http:
        ids = []
        for tag in ("keep", "dupe"):
            made = http.post(
                "/v1/customers",
                json={"email": f"{tag}-{uuid.uuid4().hex[:6]}@merge.example"},
                headers={"Idempotency-Key": str(uuid.uuid4())},
            )
            assert made.status_code == 201, made.text
            ids.append(made.json()["id"])
        keep, dupe = ids
        merged = http.post(
            f"/v1/customers/{keep}/merge",
            json={"duplicate_id": dupe},
            headers={"Idempotency-Key": str(uuid.uuid4())},
        )
        assert merged.status_code == 200, merged.text

        def merge_event() -> Any:
            page = http.get("/v1/events", params={"types": "customer.merged"}).json()
            return page["data"]

        (event,) = _eventually(merge_event)
        assert event["data"]["object"]["id"] == keep
        assert event["data"]["merged_customer_id"] == dupe
        assert http.get(f"/v1/customers/{dupe}").json()["merged_into"] == keep


def _customer(http: httpx.Client, tag: str) -> str:
    made = http.post(
        "/v1/customers",
        json={"email": f"{tag}-{uuid.uuid4().hex[:6]}@merge.example"},
        headers={"Idempotency-Key": str(uuid.uuid4())},
    )
    assert made.status_code == 201, made.text
    return str(made.json()["id"])


def _merge(http: httpx.Client, keep: str, dupe: str) -> None:
    merged = http.post(
        f"/v1/customers/{keep}/merge",
        json={"duplicate_id": dupe},
        headers={"Idempotency-Key": str(uuid.uuid4())},
    )
    assert merged.status_code == 200, merged.text


def test_a_merge_announces_the_duplicates_new_version_as_get_answers_it(
    platform: Running,
) -> None:
    """A merge makes a new version of the duplicate too (`status` merged, `merged_into` the
    survivor, its personal data gone, a new `version` and `updated_at`): before the merge's
    own `customer.merged`, the feed has a `customer.updated` whose object is what `GET
    /v1/customers/{id}` answers for the duplicate after it. Until 2026-12-05 no event carried
    that version: a partner keeping customers from events kept the duplicate as it was before
    (active, with its email), and its ETag never matched."""
    with platform.new_merchant(f"Merged away {uuid.uuid4().hex[:6]}") as http:
        keep, dupe = _customer(http, "keep"), _customer(http, "dupe")
        before = http.get(f"/v1/customers/{dupe}").json()
        _merge(http, keep, dupe)

        def merge_event() -> Any:
            page = http.get("/v1/events", params={"types": "customer.*", "limit": 200}).json()
            merged = [e for e in page["data"] if e["type"] == "customer.merged"]
            return page["data"] if merged else None

        # The duplicate's version commits with the merge, and is announced first: once the
        # feed has the merge, it has the duplicate's new version.
        events = _eventually(merge_event)
        gone = http.get(f"/v1/customers/{dupe}")
        assert (gone.json()["status"], gone.json()["merged_into"]) == ("merged", keep)
        assert gone.json()["version"] > before["version"]
        of_dupe = [e for e in events if e["data"]["object"]["id"] == dupe]
        assert [e["type"] for e in of_dupe] == ["customer.created", "customer.updated"]
        assert of_dupe[-1]["data"]["object"] == gone.json()
        assert gone.headers["etag"] == f'"{of_dupe[-1]["data"]["object"]["version"]}"'
        (merge,) = [e for e in events if e["type"] == "customer.merged"]
        assert of_dupe[-1]["sequence"] < merge["sequence"]


def test_a_gift_card_a_merge_moved_to_the_survivor_is_announced_as_get_answers_it(
    platform: Running,
) -> None:
    """A card issued to a duplicate is the survivor's once the payment service hears of the
    merge (`customer_id`, a new `version` and `updated_at`): the feed has a `gift_card.updated`
    whose object is what `GET /v1/gift-cards/{id}` answers after it. Until 2026-12-05 no event
    said so (the move writes no activity, so no `gift_card.activity_created`): a partner
    keeping cards from events kept the card as the duplicate's."""
    with platform.new_merchant(f"Merged cards {uuid.uuid4().hex[:6]}") as http:
        keep, dupe = _customer(http, "keep"), _customer(http, "dupe")
        issued = http.post(
            "/v1/gift-cards",
            json={"amount": {"amount": 2500, "currency": "USD"}, "customer_id": dupe,
                  "reason": "store_credit"},
            headers={"Idempotency-Key": str(uuid.uuid4())},
        )  # fmt: skip
        assert issued.status_code == 201, issued.text
        card_id = issued.json()["gift_card"]["id"]
        _merge(http, keep, dupe)

        def moved() -> Any:
            card = http.get(f"/v1/gift-cards/{card_id}").json()
            return card if card["customer_id"] == keep else None

        card = _eventually(moved)
        assert card["version"] == issued.json()["gift_card"]["version"] + 1

        def announced() -> Any:
            page = http.get("/v1/events", params={"types": "gift_card.*", "limit": 200}).json()
            at_version = [
                e
                for e in page["data"]
                if e["type"] == "gift_card.updated"
                and e["data"]["object"]["id"] == card_id
                and e["data"]["object"]["version"] == card["version"]
            ]
            return at_version[-1] if at_version else None

        event = _eventually(announced)
        assert event["data"]["object"] == card
        assert http.get(f"/v1/gift-cards/{card_id}").json() == card


def test_a_delivery_window_that_ends_before_it_starts_is_a_400(platform: Running) -> None:
    """`created_before` before (or at) `created_after` is the two swapped: listing or
    replaying such a window is a 400 naming `created_before`, as the payments' and orders'
    lists answer, never an empty page or a replay of nothing that says all is well."""
    http = platform.http
    made = http.post(
        "/v1/webhook-subscriptions",
        json={"url": "http://127.0.0.1:9/window", "event_types": ["order.*"]},
        headers={"Idempotency-Key": str(uuid.uuid4())},
    )
    assert made.status_code == 201, made.text
    one = f"/v1/webhook-subscriptions/{made.json()['subscription']['id']}"
    swapped = {"created_after": "2026-12-05T00:00:00Z", "created_before": "2026-12-01T00:00:00Z"}
    same = {**swapped, "created_before": swapped["created_after"]}
    reason = [{"field": "created_before", "reason": "must be after created_after"}]
    for window in (swapped, same):
        listed = http.get(f"{one}/deliveries", params=window)
        assert (listed.status_code, listed.json().get("errors")) == (400, reason), listed.text
        replayed = http.post(
            f"{one}/replay-failed", json=window, headers={"Idempotency-Key": str(uuid.uuid4())}
        )
        assert (replayed.status_code, replayed.json().get("errors")) == (400, reason)
    fine = {"created_after": "2026-12-01T00:00:00Z", "created_before": "2026-12-05T00:00:00Z"}
    assert http.get(f"{one}/deliveries", params=fine).status_code == 200
    assert http.delete(one).status_code == 200


def test_a_subscription_is_deleted_only_at_the_version_named(platform: Running) -> None:
    """DELETE takes If-Match as PATCH does: once the subscription changed since it was read,
    the deletion is the 412 `version_mismatch` with `current_version` and it stays; at the
    version read it goes, answered as it was."""
    http = platform.http
    made = http.post(
        "/v1/webhook-subscriptions",
        json={"url": "http://127.0.0.1:9/versioned", "event_types": ["order.*"]},
        headers={"Idempotency-Key": str(uuid.uuid4())},
    )
    assert made.status_code == 201, made.text
    one = f"/v1/webhook-subscriptions/{made.json()['subscription']['id']}"
    read = http.get(one)
    changed = http.patch(
        one, json={"description": "moved"}, headers={"If-Match": read.headers["ETag"]}
    )
    assert changed.status_code == 200, changed.text
    assert changed.headers["ETag"] != read.headers["ETag"]

    stale = http.delete(one, headers={"If-Match": read.headers["ETag"]})
    assert stale.status_code == 412, stale.text
    assert stale.headers["content-type"] == "application/problem+json"
    assert (stale.json()["code"], stale.json()["current_version"]) == (
        "version_mismatch", changed.json()["version"],
    )  # fmt: skip
    assert http.get(one).json() == changed.json()
    gone = http.delete(one, headers={"If-Match": changed.headers["ETag"]})
    assert gone.status_code == 200, gone.text
    assert gone.json() == changed.json()
    assert http.get(one).status_code == 404


def test_a_location_created_and_changed_reaches_the_feed_as_get_answers_it(
    platform: Running,
) -> None:
    """Locations are a change feed (`updated_since`) and their taxes and flags decide sales:
    a partner following the feed hears of a new store and of each change, as GET answers it."""
    with platform.new_merchant(f"Locations {uuid.uuid4().hex[:6]}") as http:

        def write(method: str, path: str, body: dict[str, Any]) -> Any:
            answer = http.request(
                method, path, json=body, headers={"Idempotency-Key": str(uuid.uuid4())}
            )
            assert answer.status_code in (200, 201), answer.text
            return answer.json()

        store = write("POST", "/v1/locations",
                      {"name": "Dock store", "currency": "USD", "tax_rate_bps": 500})  # fmt: skip
        changed = write("PATCH", f"/v1/locations/{store['id']}", {"pickup_enabled": True})
        assert changed["version"] == 2
        # Sent as it already is: no change, so no event.
        write("PATCH", f"/v1/locations/{store['id']}", {"pickup_enabled": True})
        # A later change of the same service: once it is in the feed, so is everything before.
        price = {"amount": 100, "currency": "USD"}
        write("POST", "/v1/products", {"sku": "DOCK-1", "name": "Dock", "price": price})

        def all_in() -> Any:
            events = http.get("/v1/events", params={"limit": 100}).json()["data"]
            return events if any(e["type"] == "product.created" for e in events) else None

        events = _eventually(all_in)
        located = [(e["type"], e["data"]["object"]) for e in events
                   if e["type"].startswith("location.")]  # fmt: skip
        now = http.get(f"/v1/locations/{store['id']}").json()
        assert located == [("location.created", store), ("location.updated", now)]


def test_a_webhook_test_event_matches_the_published_event_schema(
    platform: Running, receiver: tuple[str, list[tuple[dict[str, str], str, float]]]
) -> None:
    """The test event a subscription is sent on request is signed like any other and holds to
    the document's `Event` schema, which a receiver may validate every delivery with. It is
    not in the feed, so it has no place among the feed's sequences: its `sequence` is 0, which
    the schema says (it said at least 1, and a receiver validating by it refused the test)."""
    url, got = receiver
    with platform.new_merchant(f"Tested {uuid.uuid4().hex[:6]}") as http:
        made = http.post(
            "/v1/webhook-subscriptions",
            json={"url": url, "event_types": ["order.*"]},
            headers={"Idempotency-Key": str(uuid.uuid4())},
        )
        assert made.status_code == 201, made.text
        sub_id = made.json()["subscription"]["id"]
        sent = http.post(
            f"/v1/webhook-subscriptions/{sub_id}/test",
            headers={"Idempotency-Key": str(uuid.uuid4())},
        )
        assert sent.status_code == 201, sent.text
        headers, body, _ = _eventually(lambda: got and got[0])
        event = Webhook(made.json()["secret"]).verify(body, headers)
        assert event["type"] == "webhook_subscription.tested", event
        assert (event["id"], event["sequence"]) == (sent.json()["event_id"], 0), event
        document = http.get("/openapi.json").json()
        components = document["components"]
        schema = {**components["schemas"]["Event"], "components": components}
        jsonschema.validate(
            event, schema, cls=jsonschema.Draft202012Validator,
            format_checker=jsonschema.FormatChecker(),
        )  # fmt: skip
        # Never in the feed.
        assert event["id"] not in {e["id"] for e in http.get("/v1/events").json()["data"]}


def _store_selling(
    http: httpx.Client, name: str, prices: dict[str, int], ship: bool = False
) -> str:
    """A store (USD, no tax) selling each SKU at its price with five units on hand: its id."""
    store: dict[str, Any] = {"name": name, "currency": "USD", "tax_rate_bps": 0}
    if ship:
        store["ship_enabled"] = True
    made = http.post("/v1/locations", json=store, headers={"Idempotency-Key": "loc-1"})
    made.raise_for_status()
    location: str = made.json()["id"]
    for sku, price in prices.items():
        http.post(
            "/v1/products",
            json={"sku": sku, "name": sku, "price": {"amount": price, "currency": "USD"}},
            headers={"Idempotency-Key": f"prod-{sku}"},
        ).raise_for_status()
        http.post(
            "/v1/inventory/adjustments",
            json={"sku": sku, "location_id": location, "delta": 5, "reason": "received"},
            headers={"Idempotency-Key": f"adj-{sku}"},
        ).raise_for_status()
    return location


def test_a_refund_announces_the_payment_it_moved_as_get_answers_it(platform: Running) -> None:
    """A refund through the payments API moves its payment (`refunded`, a new version): the
    feed has `refund.succeeded`, then `payment.updated` whose object is what
    `GET /v1/payments/{id}` answers after it. Until 2026-12-05 no event of the payment said
    so: a partner keeping payments from events kept `refunded` 0."""
    with platform.new_merchant(f"Refunds {uuid.uuid4().hex[:6]}") as http:
        location = _store_selling(http, "Refund store", {"RFD-1": 1500})
        sale = http.post(
            "/v1/checkouts",
            json={"location_id": location, "tender_type": "card", "card_token": "tok_visa",
                  "lines": [{"sku": "RFD-1", "quantity": 1}]},
            headers={"Idempotency-Key": "sale-1"},
        )  # fmt: skip
        assert sale.status_code == 201, sale.text
        payment_id = sale.json()["payment"]["id"]
        refund = http.post(
            f"/v1/payments/{payment_id}/refunds",
            json={"amount": {"amount": 500, "currency": "USD"}, "reason": "requested_by_customer"},
            headers={"Idempotency-Key": "refund-1"},
        )
        assert refund.status_code == 201, refund.text

        def announced() -> Any:
            page = http.get("/v1/events", params={"types": ["payment.*", "refund.*"]}).json()
            moved = [e for e in page["data"] if e["type"] == "payment.updated"]
            return (page["data"], moved[-1]) if moved else None

        events, moved = _eventually(announced)
        payment = http.get(f"/v1/payments/{payment_id}").json()
        assert moved["data"]["object"] == payment
        assert payment["refunded"]["amount"] == 500
        types = [e["type"] for e in events]
        assert types.index("refund.succeeded") < types.index("payment.updated")


def test_a_refund_outside_a_return_announces_the_order_it_moved_as_get_answers_it(
    platform: Running,
) -> None:
    """A refund through the payments API (`/v1/payments/{id}/refunds` or
    `/v1/orders/{id}/refunds`, no return) moves its order too (`paid`, a new version): the
    feed has an `order.updated` whose object is what `GET /v1/orders/{id}` answers after it.
    Until 2026-12-05 no order event said so: a partner keeping orders from events kept the
    order as paid in full, and its version, until some later change of it."""
    with platform.new_merchant(f"Order refunds {uuid.uuid4().hex[:6]}") as http:
        location = _store_selling(http, "Refund store", {"ORF-1": 1500})
        sale = http.post(
            "/v1/checkouts",
            json={"location_id": location, "tender_type": "card", "card_token": "tok_visa",
                  "lines": [{"sku": "ORF-1", "quantity": 1}]},
            headers={"Idempotency-Key": "sale-1"},
        )  # fmt: skip
        assert sale.status_code == 201, sale.text
        order_id, payment_id = sale.json()["order"]["id"], sale.json()["payment"]["id"]
        total = sale.json()["order"]["total"]["amount"]

        def announced(paid: int) -> Any:
            found = _announced_as_get_answers(http, order_id)
            # None until the order has heard of the refund and the feed has its version
            return found if found and found[0]["paid"]["amount"] == paid else None

        for n, path in enumerate((f"/v1/payments/{payment_id}/refunds",
                                  f"/v1/orders/{order_id}/refunds"), 1):  # fmt: skip
            refund = http.post(
                path,
                json={"amount": {"amount": 300, "currency": "USD"}, "reason": "goodwill"},
                headers={"Idempotency-Key": f"refund-{n}"},
            )
            assert refund.status_code == 201, refund.text
            order, event = _eventually(lambda n=n: announced(total - 300 * n), timeout=15)
            assert event["type"] == "order.updated"
            assert event["data"]["object"] == order


def test_a_void_through_the_payments_api_announces_the_order_it_moved_as_get_answers_it(
    platform: Running,
) -> None:
    """The void of a confirmed shipment's card, only authorised (`POST
    /v1/payments/{id}/void`), moves its order (`paid` 0, the tender voided, a new version): the
    feed has an `order.updated` whose object is what `GET /v1/orders/{id}` answers after it,
    as for a refund outside a return. Until 2026-12-05 no order event said so."""
    with platform.new_merchant(f"Order voids {uuid.uuid4().hex[:6]}") as http:
        location = _store_selling(http, "Void store", {"OVD-1": 1500}, ship=True)
        made = http.post(
            "/v1/orders",
            json={"location_id": location, "channel": "web",
                  "lines": [{"sku": "OVD-1", "quantity": 1, "fulfillment": 0}],
                  "fulfillments": [{"type": "shipment", "location_id": location,
                                    "ship_to": "1 Main St, Springfield"}]},
            headers={"Idempotency-Key": "order-1"},
        )  # fmt: skip
        assert made.status_code == 201, made.text
        order_id = made.json()["id"]
        paid = http.post(
            f"/v1/orders/{order_id}/tenders",
            json={"tender_type": "card", "card_token": "tok_visa"},
            headers={"Idempotency-Key": "tender-1"},
        )
        assert paid.status_code == 201, paid.text
        payment_id = paid.json()["payment"]["id"]
        confirmed = http.post(
            f"/v1/orders/{order_id}/confirm", json={}, headers={"Idempotency-Key": "confirm-1"}
        )
        assert confirmed.status_code == 200, confirmed.text
        voided = http.post(
            f"/v1/payments/{payment_id}/void", json={}, headers={"Idempotency-Key": "void-1"}
        )
        assert voided.status_code == 200, voided.text

        def announced() -> Any:
            found = _announced_as_get_answers(http, order_id)
            # None until the order has heard of the void and the feed has its version
            return found if found and found[0]["paid"]["amount"] == 0 else None

        order, event = _eventually(announced, timeout=15)
        assert event["type"] == "order.updated"
        assert event["data"]["object"] == order


def _announced_as_get_answers(http: httpx.Client, order_id: str) -> Any:
    """The order as `GET` answers it now and the feed's last event of it at that version
    (any but `order.returned`, whose object is the return), or None while the feed has none."""
    order = http.get(f"/v1/orders/{order_id}").json()
    feed = http.get("/v1/events", params={"types": ["order.*"], "limit": 200}).json()
    at_version = [
        e
        for e in feed["data"]
        if e["type"] != "order.returned"
        and e["data"]["object"]["id"] == order_id
        and e["data"]["object"]["version"] == order["version"]
    ]
    return (order, at_version[-1]) if at_version else None


def test_a_coupon_redeemed_after_the_confirmation_is_announced_as_get_answers_it(
    platform: Running,
) -> None:
    """A sale naming a coupon is confirmed (its coupon still `reserved` in `order.confirmed`
    and `order.completed`), then the coupon is redeemed: a new version of the order, whose
    coupon says `redeemed`. The feed has an `order.updated` whose object is what `GET
    /v1/orders/{id}` answers after it. Until 2026-12-05 no event said so: a partner kept the
    coupon as reserved, and the order at its earlier version."""
    with platform.new_merchant(f"Order coupons {uuid.uuid4().hex[:6]}") as http:
        location = http.post(
            "/v1/locations",
            json={"name": "Coupon store", "currency": "USD", "tax_rate_bps": 0},
            headers={"Idempotency-Key": "loc-1"},
        ).json()["id"]
        http.post(
            "/v1/products",
            json={"sku": "OCP-1", "name": "Couponed", "price": {"amount": 2000, "currency": "USD"}},
            headers={"Idempotency-Key": "prod-1"},
        ).raise_for_status()
        promo = http.post(
            "/v1/promotions",
            json={"name": "Ten off", "percent_off_bps": 1000, "requires_coupon": True},
            headers={"Idempotency-Key": "promo-1"},
        )
        assert promo.status_code == 201, promo.text
        code = f"TEN-{uuid.uuid4().hex[:8].upper()}"
        coupons = http.post(
            f"/v1/promotions/{promo.json()['id']}/coupons",
            json={"codes": [code], "max_uses": 5},
            headers={"Idempotency-Key": "coupon-1"},
        )
        assert coupons.status_code == 201, coupons.text
        sale = http.post(
            "/v1/checkouts",
            json={"location_id": location, "tender_type": "card", "card_token": "tok_visa",
                  "lines": [{"sku": "OCP-1", "quantity": 1}], "coupon_codes": [code]},
            headers={"Idempotency-Key": "sale-1"},
        )  # fmt: skip
        assert sale.status_code == 201, sale.text
        order_id = sale.json()["order"]["id"]
        assert sale.json()["order"]["coupons"][0]["status"] == "redeemed"

        order, event = _eventually(lambda: _announced_as_get_answers(http, order_id), 15)
        assert order["coupons"][0]["status"] == "redeemed"
        assert event["type"] == "order.updated"
        assert event["data"]["object"] == order


def test_a_refund_to_an_orders_tenders_by_a_return_of_its_exchange_is_announced(
    platform: Running,
) -> None:
    """Two tees sold by card, one exchanged for a dearer hat (the tee's value credited, the
    difference charged on the new order), then the hat returned: its credit goes back to the
    sale's card, which moves the sale's order (`paid` net of it, a new version) though the
    return is the new order's. The feed has an `order.updated` of the sale's order whose
    object is what `GET /v1/orders/{id}` answers after it (the return's own `order.returned`
    carries the new order). Until 2026-12-05 no event of the sale's order said so."""
    with platform.new_merchant(f"Exchange refunds {uuid.uuid4().hex[:6]}") as http:
        location = _store_selling(http, "Exchange store", {"OEX-TEE": 1000, "OEX-HAT": 2500})
        sale = http.post(
            "/v1/checkouts",
            json={"location_id": location, "tender_type": "card", "card_token": "tok_visa",
                  "lines": [{"sku": "OEX-TEE", "quantity": 2}]},
            headers={"Idempotency-Key": "sale-1"},
        )  # fmt: skip
        assert sale.status_code == 201, sale.text
        order_id = sale.json()["order"]["id"]
        total = sale.json()["order"]["total"]["amount"]
        made = http.post(
            f"/v1/orders/{order_id}/exchanges",
            json={"lines": [{"line_id": "L1", "quantity": 1}],
                  "new_lines": [{"sku": "OEX-HAT", "quantity": 1}], "reason": "wrong_size",
                  "tenders": [{"tender_type": "card", "card_token": "tok_mastercard"}]},
            headers={"Idempotency-Key": "exchange-1"},
        )  # fmt: skip
        assert made.status_code == 201, made.text
        credit = made.json()["order_return"]["credited"]["amount"]
        assert credit > 0
        returned = http.post(
            f"/v1/orders/{made.json()['order']['id']}/returns",
            json={"lines": [{"line_id": "L1", "quantity": 1}], "reason": "unwanted"},
            headers={"Idempotency-Key": "return-1"},
        )
        assert returned.status_code == 201, returned.text

        def announced() -> Any:
            found = _announced_as_get_answers(http, order_id)
            return found if found and found[0]["paid"]["amount"] == total - credit else None

        order, event = _eventually(announced, timeout=15)
        assert event["type"] == "order.updated"
        assert event["data"]["object"] == order


def _web_order(http: httpx.Client, sku: str, price: int) -> str:
    """A web order of one unit of a new product, shipped from a new store: pending payment."""
    location = http.post(
        "/v1/locations",
        json={"name": f"{sku} store", "currency": "USD", "tax_rate_bps": 0, "ship_enabled": True},
        headers={"Idempotency-Key": "loc-1"},
    ).json()["id"]
    http.post(
        "/v1/products",
        json={"sku": sku, "name": sku, "price": {"amount": price, "currency": "USD"}},
        headers={"Idempotency-Key": "prod-1"},
    ).raise_for_status()
    http.post(
        "/v1/inventory/adjustments",
        json={"sku": sku, "location_id": location, "delta": 5, "reason": "received"},
        headers={"Idempotency-Key": "adj-1"},
    ).raise_for_status()
    made = http.post(
        "/v1/orders",
        json={"location_id": location, "channel": "web",
              "lines": [{"sku": sku, "quantity": 1, "fulfillment": 0}],
              "fulfillments": [{"type": "shipment", "location_id": location,
                                "ship_to": "1 Main St, Springfield"}]},
        headers={"Idempotency-Key": "order-1"},
    )  # fmt: skip
    assert made.status_code == 201, made.text
    assert made.json()["status"] == "pending_payment", made.text
    return str(made.json()["id"])


def test_a_tender_for_what_a_confirmed_order_has_due_is_announced_as_get_answers_it(
    platform: Running,
) -> None:
    """A confirmed shipment whose card was voided through the payments API has its price due
    again (`paid` 0, announced); a tender taken for part of it, then one for the rest
    (`POST /v1/orders/{id}/tenders`), each moves the order (`paid`, `payment_ids`, a new
    version): the feed has an `order.updated` whose object is what `GET /v1/orders/{id}`
    answers after each. Until 2026-12-05 no event said so: a partner following the feed kept
    the order as unpaid."""
    with platform.new_merchant(f"Due tenders {uuid.uuid4().hex[:6]}") as http:
        order_id = _web_order(http, "ODU-1", 1500)
        paid = http.post(
            f"/v1/orders/{order_id}/tenders",
            json={"tender_type": "card", "card_token": "tok_visa"},
            headers={"Idempotency-Key": "tender-1"},
        )
        assert paid.status_code == 201, paid.text
        confirmed = http.post(
            f"/v1/orders/{order_id}/confirm", json={}, headers={"Idempotency-Key": "confirm-1"}
        )
        assert confirmed.status_code == 200, confirmed.text
        voided = http.post(
            f"/v1/payments/{paid.json()['payment']['id']}/void",
            json={},
            headers={"Idempotency-Key": "void-1"},
        )
        assert voided.status_code == 200, voided.text
        _eventually(lambda: http.get(f"/v1/orders/{order_id}").json()["paid"]["amount"] == 0, 15)

        for n, amount, paid_now in ((2, 500, 500), (3, None, 1500)):
            body: dict[str, Any] = {"tender_type": "card", "card_token": "tok_mastercard"}
            if amount is not None:
                body["amount"] = {"amount": amount, "currency": "USD"}
            tender = http.post(
                f"/v1/orders/{order_id}/tenders", json=body, headers={"Idempotency-Key": f"t-{n}"}
            )
            assert tender.status_code == 201, tender.text
            assert tender.json()["order"]["status"] == "confirmed"
            assert tender.json()["order"]["paid"]["amount"] == paid_now

            def announced(paid_now: int = paid_now) -> Any:
                found = _announced_as_get_answers(http, order_id)
                return found if found and found[0]["paid"]["amount"] == paid_now else None

            order, event = _eventually(announced, timeout=15)
            assert event["type"] == "order.updated"
            assert event["data"]["object"] == order


def test_a_tender_taken_for_a_pending_order_is_announced_as_get_answers_it(
    platform: Running,
) -> None:
    """A web order paid in two tenders (`POST /v1/orders/{id}/tenders`) before its
    confirmation: the first moves it (`paid`, `payment_ids`, a new version) while it is still
    pending payment, and the feed has an `order.updated` whose object is what `GET
    /v1/orders/{id}` answers after it; a declined card (in `payment_ids`, paying nothing) too.
    Until 2026-12-05 no event said so until the confirmation."""
    with platform.new_merchant(f"Pending tenders {uuid.uuid4().hex[:6]}") as http:
        order_id = _web_order(http, "OPT-1", 1500)
        for n, body, paid_now in (
            (1, {"tender_type": "card", "card_token": "tok_visa",
                 "amount": {"amount": 600, "currency": "USD"}}, 600),
            (2, {"tender_type": "card", "card_token": "tok_declined"}, 600),
        ):  # fmt: skip
            tender = http.post(
                f"/v1/orders/{order_id}/tenders", json=body, headers={"Idempotency-Key": f"t-{n}"}
            )
            assert tender.status_code in (201, 402), tender.text
            ids = len(http.get(f"/v1/orders/{order_id}").json()["payment_ids"])
            assert ids == n

            def announced(paid_now: int = paid_now, n: int = n) -> Any:
                found = _announced_as_get_answers(http, order_id)
                return (
                    found
                    if found
                    and found[0]["paid"]["amount"] == paid_now
                    and len(found[1]["data"]["object"]["payment_ids"]) == n
                    else None
                )

            order, event = _eventually(announced, timeout=15)
            assert order["status"] == "pending_payment"
            assert event["type"] == "order.updated"
            assert event["data"]["object"] == order


def test_webhook_subscription_changes_are_in_the_audit_log(platform: Running) -> None:
    """A subscription made, pointed elsewhere, its secret rotated and deleted is an entry each,
    naming the credential that did it, as a credential's change is: a key with
    `webhooks:manage` can send every event (customers' contacts among them) anywhere, and the
    merchant must be able to see who did. An edit that changes nothing and a retry of a
    request add none. Entries name where events go by the URL's origin only (a URL may hold
    a receiver's token in its path or query) and never a secret."""
    with platform.new_merchant(f"Webhook audit {uuid.uuid4().hex[:8]}") as http:

        def entries(resource_id: str) -> list[tuple[str, dict[str, Any]]]:
            answer = http.get("/v1/audit-log", params={"resource_id": resource_id})
            assert answer.status_code == 200, answer.text
            found = answer.json()["data"]
            assert all(e["credential_id"] and e["staff_id"] is None for e in found), found
            return [(e["action"], e["details"]) for e in reversed(found)]

        key = str(uuid.uuid4())
        body = {"url": "http://127.0.0.1:9/hooks/tok3n?sig=s3cret", "event_types": ["order.*"]}
        made = http.post("/v1/webhook-subscriptions", json=body, headers={"Idempotency-Key": key})
        assert made.status_code == 201, made.text
        again = http.post("/v1/webhook-subscriptions", json=body, headers={"Idempotency-Key": key})
        assert again.json()["subscription"]["id"] == made.json()["subscription"]["id"]
        secrets = [made.json()["secret"]]
        sub = made.json()["subscription"]["id"]
        one = f"/v1/webhook-subscriptions/{sub}"
        moved = http.patch(one, json={"url": "http://localhost:9/elsewhere"})
        assert (moved.status_code, moved.json()["version"]) == (200, 2), moved.text
        same = http.patch(one, json={"url": "http://localhost:9/elsewhere"})
        assert (same.status_code, same.json()["version"]) == (200, 2), same.text
        rotated = http.post(
            f"{one}/rotate-secret",
            json={"overlap_seconds": 60},
            headers={"Idempotency-Key": str(uuid.uuid4())},
        )
        assert rotated.status_code == 201, rotated.text
        secrets.append(rotated.json()["secret"])
        assert http.delete(one).status_code == 200
        assert entries(sub) == [
            ("webhook_subscription.created", {"origin": "http://127.0.0.1:9",
                                              "event_types": ["order.*"], "version": 1}),
            ("webhook_subscription.updated", {"changed": ["url"], "origin": "http://localhost:9",
                                              "version": 2}),
            ("webhook_subscription.secret_rotated", {"overlap_seconds": 60, "version": 3}),
            ("webhook_subscription.deleted", {"origin": "http://localhost:9", "version": 3}),
        ]  # fmt: skip
        text = http.get("/v1/audit-log").text
        assert not any(s in text for s in [*secrets, "tok3n", "s3cret", "elsewhere"]), text


class _GoneAtOne(_Receiver):
    """A receiver whose `/gone` endpoint answers 410 Gone (its partner left), the rest 204."""

    def do_POST(self) -> None:
        if not self.path.startswith("/gone"):
            super().do_POST()
            return
        self.rfile.read(int(self.headers["content-length"]))
        self.send_response(410)
        self.end_headers()


def test_a_disabled_subscription_s_event_shows_its_url_s_origin_never_its_token(
    platform: Running,
) -> None:
    """A receiver's URL may hold its own token, and only `webhooks:manage` reads a subscription;
    the `webhook_subscription.disabled` event goes to every `events:read` key and to the
    merchant's other endpoints, so it names the URL's origin, as the audit log does."""
    got: list[tuple[dict[str, str], str, float]] = []
    server = ThreadingHTTPServer(("127.0.0.1", 0), type("H", (_GoneAtOne,), {"got": got}))
    threading.Thread(target=server.serve_forever, daemon=True).start()
    base = f"http://127.0.0.1:{server.server_address[1]}"
    try:
        with platform.new_merchant(f"Gone {uuid.uuid4().hex[:6]}") as http:
            gone = http.post(
                "/v1/webhook-subscriptions",
                json={"url": f"{base}/gone/partner-a?token=SECRET-OF-A",
                      "event_types": ["product.*"]},
                headers={"Idempotency-Key": str(uuid.uuid4())},
            )  # fmt: skip
            assert gone.status_code == 201, gone.text
            watch = http.post(
                "/v1/webhook-subscriptions",
                json={"url": f"{base}/watch", "event_types": ["webhook_subscription.*"]},
                headers={"Idempotency-Key": str(uuid.uuid4())},
            )
            assert watch.status_code == 201, watch.text
            http.post(
                "/v1/products",
                json={"sku": "GONE-1", "name": "Gone", "price": {"amount": 100, "currency": "USD"}},
                headers={"Idempotency-Key": str(uuid.uuid4())},
            ).raise_for_status()
            headers, body, _ = _eventually(lambda: got and got[0])
            pushed = Webhook(watch.json()["secret"]).verify(body, headers)
            feed = http.get("/v1/events", params={"types": "webhook_subscription.*"})
            assert feed.status_code == 200, feed.text
            (event,) = feed.json()["data"]
            sub_id = gone.json()["subscription"]["id"]
            now = http.get(f"/v1/webhook-subscriptions/{sub_id}").json()
            assert now["status"] == "disabled" and "SECRET-OF-A" in now["url"]
            shown = {k: v for k, v in now.items() if k != "url"} | {"origin": base}
            for told in (event, pushed):
                assert told["type"] == "webhook_subscription.disabled", told
                assert told["data"]["object"] == shown
            assert not any("SECRET-OF-A" in text or "partner-a" in text
                           for text in (feed.text, body))  # fmt: skip
            components = http.get("/openapi.json").json()["components"]
            jsonschema.validate(
                event, {**components["schemas"]["Event"], "components": components},
                cls=jsonschema.Draft202012Validator, format_checker=jsonschema.FormatChecker(),
            )  # fmt: skip
    finally:
        server.shutdown()
        server.server_close()
