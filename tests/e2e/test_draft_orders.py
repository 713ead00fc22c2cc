"""Draft orders through the gateway, every service a separate process: a draft is priced with
nothing held, edited under If-Match (a stale version refused; each edit in the event feed as
`order.updated`; its manual discount removed by a null), submitted (held as a new order is and
announced as one, then paid and confirmed), refused for short stock and still a draft,
cancelled with nothing to give back; an edit of an order that is not a draft is refused, and
another merchant's draft is not found."""

from __future__ import annotations

import uuid
from typing import Any

import httpx
import psycopg
import pytest

from pos_devstack.http_checks import available, eventually, ok, polled, post, stocked
from pos_devstack.testing import Running

pytestmark = pytest.mark.e2e


def _patch(http: httpx.Client, order_id: str, body: dict[str, Any], version: int) -> Any:
    return http.patch(
        f"/v1/orders/{order_id}",
        json=body,
        headers={"Idempotency-Key": str(uuid.uuid4()), "If-Match": f'"{version}"'},
    )


class _Feed:
    """The merchant's `order.*` events of one order, read from the feed as they come: each read
    goes on from where the last one stopped (the other tests' orders come before this one's)."""

    def __init__(self, http: httpx.Client, order_id: str) -> None:
        self.http, self.order_id = http, order_id
        self.after: int | None = None
        self.found: list[dict[str, Any]] = []

    def read(self) -> list[tuple[str, str, int]]:
        """Each event of the order so far: its type, and the order's status and version."""
        while True:
            params: dict[str, Any] = {"types": "order.*", "limit": 200}
            if self.after is not None:
                params["after"] = self.after
            page = ok(self.http.get("/v1/events", params=params))
            self.found += [e for e in page["data"] if e["data"]["object"]["id"] == self.order_id]
            self.after = page["next_after"]
            if not page["has_more"]:
                break
        return [(e["type"], e["data"]["object"]["status"], e["data"]["object"]["version"])
                for e in self.found]  # fmt: skip

    def until(self, count: int) -> list[tuple[str, str, int]]:
        return eventually(lambda: (told := self.read())[count - 1 :] and told)


def _pickup_draft(store: str, sku: str, quantity: int) -> dict[str, Any]:
    return {
        "status": "draft",
        "channel": "web",
        "location_id": store,
        "lines": [{"sku": sku, "quantity": quantity}],
        "fulfillments": [{"type": "pickup", "location_id": store}],
        "notes": "cart",
        "metadata": {"cart_id": "c_9"},
    }


def test_a_draft_is_edited_submitted_paid_and_confirmed(platform: Running) -> None:
    http = platform.http
    sku, (store, _) = stocked(http, "DRF")
    key = str(uuid.uuid4())
    draft = ok(post(http, "/v1/orders", _pickup_draft(store, sku, 2), key), 201)
    assert ok(post(http, "/v1/orders", _pickup_draft(store, sku, 2), key), 201) == draft
    assert draft["status"] == "draft" and draft["total"]["amount"] >= 2000
    assert draft["subtotal"]["amount"] == 2000 and not draft["fulfillments"][0]["reservation_id"]
    assert available(http, sku, store) == 10  # nothing held
    # No tender while it is a draft.
    tender = post(http, f"/v1/orders/{draft['id']}/tenders", {"tender_type": "cash",
                  "cash_tendered": {"amount": 5000, "currency": "USD"}})  # fmt: skip
    assert tender.status_code == 409 and tender.json()["code"] == "order_not_pending"
    # From its creation on: the sandbox merchant's store holds the drafts of every test run
    # before this one in the platform, and the first page (oldest first) may not reach it.
    drafts = {"status": "draft", "location_id": store, "created_since": draft["created_at"]}
    listed = ok(http.get("/v1/orders", params=drafts))
    assert draft["id"] in [o["id"] for o in listed["data"]]

    edited = _patch(http, draft["id"], {"lines": [{"sku": sku, "quantity": 3}],
                                        "notes": "three"}, draft["version"])  # fmt: skip
    assert edited.headers["ETag"] == f'"{draft["version"] + 1}"'
    edited = ok(edited)
    assert edited["version"] == draft["version"] + 1 and edited["notes"] == "three"
    assert edited["lines"][0]["quantity"] == 3 and edited["subtotal"]["amount"] == 3000
    assert edited["metadata"] == {"cart_id": "c_9"}  # not sent: kept
    assert available(http, sku, store) == 10
    # A read gives the version as its ETag, for the next If-Match.
    read = http.get(f"/v1/orders/{draft['id']}")
    assert read.headers["ETag"] == f'"{edited["version"]}"' == f'"{ok(read)["version"]}"'
    # The feed stops at the oldest transaction open in the order database (the relay's, a
    # consumer's), so the edit may show a moment after it is made.
    since = {"updated_since": draft["updated_at"]}
    fed = polled(
        lambda: [o["id"] for o in ok(http.get("/v1/orders", params=since))["data"]],
        lambda ids: draft["id"] in ids,
    )
    assert draft["id"] in fed

    stale = _patch(http, draft["id"], {"notes": "lost"}, draft["version"])
    assert stale.status_code == 412, stale.text
    assert stale.json()["current_version"] == edited["version"]
    bad = _patch(http, draft["id"], {"lines": [{"sku": sku, "quantity": 1, "fulfillment": 3}]},
                 edited["version"])  # fmt: skip
    assert bad.status_code == 400 and bad.json()["errors"][0]["field"] == "lines[0].fulfillment"
    assert ok(http.get(f"/v1/orders/{draft['id']}"))["version"] == edited["version"]

    key = str(uuid.uuid4())
    submitted = ok(post(http, f"/v1/orders/{draft['id']}/submit", {}, key))
    assert ok(post(http, f"/v1/orders/{draft['id']}/submit", {}, key)) == submitted
    assert submitted["status"] == "pending_payment"
    assert submitted["fulfillments"][0]["reservation_id"]
    assert available(http, sku, store) == 7
    # Its cart is no longer edited (its notes and metadata still are: see below).
    late = {"lines": [{"sku": sku, "quantity": 1}]}
    not_draft = _patch(http, draft["id"], late, submitted["version"])
    assert not_draft.status_code == 409 and not_draft.json()["code"] == "order_not_draft"

    card = {"tender_type": "card", "card_token": "tok_visa"}
    tendered = ok(post(http, f"/v1/orders/{draft['id']}/tenders", card), 201)["order"]
    confirmed = ok(post(http, f"/v1/orders/{draft['id']}/confirm", {}))
    assert confirmed["status"] == "confirmed"
    assert [c["status"] for c in confirmed["timeline"] if ":" not in c["status"]] == [
        "draft",
        "pending_payment",
        "confirmed",
    ]

    # Created (once) as a draft, edited (once: the refused edits wrote nothing), submitted
    # (an update, its stock held), paid (two updates: the tender recorded before the payment
    # service is asked, then its answer), then confirmed: each version in the feed, in that
    # order.
    feed = _Feed(http, draft["id"])
    told = feed.until(6)
    assert told[:6] == [
        ("order.created", "draft", draft["version"]),
        ("order.updated", "draft", edited["version"]),
        ("order.updated", "pending_payment", submitted["version"]),
        ("order.updated", "pending_payment", tendered["version"] - 1),
        ("order.updated", "pending_payment", tendered["version"]),
        ("order.confirmed", "confirmed", confirmed["version"]),
    ]
    assert feed.found[1]["data"]["object"] == edited  # as GET answered it at that version


def test_a_drafts_manual_discount_is_removed_by_a_null(platform: Running) -> None:
    """JSON merge-patch: `"order_manual": null` removes the draft's discount on the whole
    order, a field left out keeps it."""
    http = platform.http
    sku, (store, _) = stocked(http, "DRM")
    # What the same cart costs with no manual discount (the sandbox merchant's promotions
    # may take something off it too).
    plain = ok(post(http, "/v1/orders", _pickup_draft(store, sku, 2)), 201)
    manual = {"kind": "percent", "value": 5000, "reason": "regular customer"}
    draft = ok(post(http, "/v1/orders", {**_pickup_draft(store, sku, 2), "order_manual": manual}),
               201)  # fmt: skip
    assert draft["total"]["amount"] < plain["total"]["amount"]
    kept = ok(_patch(http, draft["id"], {"notes": "still half off"}, draft["version"]))
    assert kept["total"] == draft["total"]  # not sent: kept
    cleared = _patch(http, draft["id"], {"order_manual": None}, kept["version"])
    assert cleared.status_code == 200, cleared.text
    cleared_order = cleared.json()
    assert cleared_order["version"] == kept["version"] + 1
    for field in ("subtotal", "discount_total", "tax_total", "total"):
        assert cleared_order[field] == plain[field], field
    assert cleared_order["notes"] == "still half off"
    # Gone for good: the submit prices the cart without it.
    submitted = ok(post(http, f"/v1/orders/{draft['id']}/submit", {}))
    assert submitted["total"] == plain["total"]
    # Any other field set to null is still a 400 naming it, nothing changed.
    bad = _patch(http, draft["id"], {"notes": None}, submitted["version"])
    assert bad.status_code == 400 and bad.json()["errors"][0]["field"] == "notes"
    ok(post(http, f"/v1/orders/{plain['id']}/cancel", {}))


def test_a_draft_short_of_stock_stays_a_draft_and_is_cancelled(platform: Running) -> None:
    http = platform.http
    sku, (store, _) = stocked(http, "DRS", units=2)
    draft = ok(post(http, "/v1/orders", _pickup_draft(store, sku, 3)), 201)
    short = post(http, f"/v1/orders/{draft['id']}/submit", {})
    assert short.status_code == 409, short.text
    problem = short.json()
    assert problem["code"] == "insufficient_stock"
    # The same problem as a new order short of stock gets.
    new = post(http, "/v1/orders", {**_pickup_draft(store, sku, 3), "status": "pending_payment"})
    assert new.status_code == 409 and new.json()["code"] == problem["code"]
    assert new.json().keys() == problem.keys()
    still = ok(http.get(f"/v1/orders/{draft['id']}"))
    assert still["status"] == "draft" and available(http, sku, store) == 2
    assert still["timeline"][-1]["reason"] == "insufficient_stock"

    cancelled = ok(post(http, f"/v1/orders/{draft['id']}/cancel", {}))
    assert cancelled["status"] == "cancelled" and available(http, sku, store) == 2
    gone = post(http, f"/v1/orders/{draft['id']}/submit", {})
    assert gone.status_code == 409 and gone.json()["code"] == "order_not_draft"


def test_another_merchants_draft_is_not_found(platform: Running) -> None:
    http = platform.http
    sku, (store, _) = stocked(http, "DRT")
    draft = ok(post(http, "/v1/orders", _pickup_draft(store, sku, 1)), 201)
    with platform.new_merchant("Someone else") as other:
        for answer in (
            other.get(f"/v1/orders/{draft['id']}"),
            _patch(other, draft["id"], {"notes": "mine"}, draft["version"]),
            post(other, f"/v1/orders/{draft['id']}/submit", {}),
            post(other, f"/v1/orders/{draft['id']}/cancel", {}),
        ):
            assert answer.status_code == 404, answer.text
    assert ok(http.get(f"/v1/orders/{draft['id']}"))["version"] == draft["version"]


def test_a_drafts_coupon_is_given_with_its_submit_and_never_stored(platform: Running) -> None:
    """A coupon code is a bearer's claim on a discount and is never stored: a draft takes none
    (400 naming the field, on creation and on an edit), and its submit, given the code, prices
    the draft with it and reserves it; the order service's database holds no trace of it."""
    http = platform.http
    sku, (store, _) = stocked(http, "DRC")
    promo = ok(post(http, "/v1/promotions", {"name": "Ten off", "percent_off_bps": 1000,
                                             "requires_coupon": True}), 201)  # fmt: skip
    code = f"DRAFT-{uuid.uuid4().hex[:8].upper()}"
    ok(post(http, f"/v1/promotions/{promo['id']}/coupons", {"codes": [code], "max_uses": 1}), 201)

    refused = post(http, "/v1/orders", {**_pickup_draft(store, sku, 1), "coupon_codes": [code]})
    assert refused.status_code == 400, refused.text
    assert [e["field"] for e in refused.json()["errors"]] == ["coupon_codes"]
    draft = ok(post(http, "/v1/orders", _pickup_draft(store, sku, 1)), 201)
    edit = _patch(http, draft["id"], {"coupon_codes": [code]}, draft["version"])
    assert edit.status_code == 400 and edit.json()["errors"][0]["field"] == "coupon_codes"

    submitted = ok(post(http, f"/v1/orders/{draft['id']}/submit", {"coupon_codes": [code]}))
    assert submitted["status"] == "pending_payment"
    assert submitted["discount_total"]["amount"] == 100
    assert [(c["status"], c["code_hint"]) for c in submitted["coupons"]] == [
        ("reserved", code[-4:])
    ]
    url = platform.platform.env_for("order")["DATABASE_URL"].replace("+psycopg", "")
    with psycopg.connect(url) as conn:
        holding = conn.execute(
            "SELECT count(*) FROM orders o WHERE o::text ILIKE %s", (f"%{code}%",)
        ).fetchone()
    assert holding == (0,)


def test_a_placed_orders_notes_and_metadata_change_and_nothing_else(platform: Running) -> None:
    """After the sale, PATCH changes an order's `notes` and `metadata` (a partner keeps its
    own ids on it), nothing priced, held or paid again: a new version with its ETag, stale
    If-Match a 412, announced as `order.updated`. Any other field is the 409 `order_not_draft`
    and bad metadata a 400 naming it, nothing changed."""
    http = platform.http
    sku, (store, _) = stocked(http, "ANN")
    sale = {"location_id": store, "lines": [{"sku": sku, "quantity": 1}],
            "tender_type": "card", "card_token": "tok_visa"}  # fmt: skip
    order = ok(post(http, "/v1/checkouts", sale), 201)["order"]
    feed = _Feed(http, order["id"])
    changed = _patch(http, order["id"], {"metadata": {"erp_id": "SO-42"}}, order["version"])
    assert changed.status_code == 200, changed.text
    after = changed.json()
    assert after["metadata"] == {"erp_id": "SO-42"} and after["version"] == order["version"] + 1
    assert changed.headers["ETag"] == f'"{after["version"]}"'
    for kept in ("status", "total", "lines", "paid", "fulfillments"):
        assert after[kept] == order[kept], kept
    noted = _patch(http, order["id"], {"notes": "left at reception"}, after["version"])
    assert noted.status_code == 200, noted.text
    assert (noted.json()["notes"], noted.json()["metadata"]) == (
        "left at reception", {"erp_id": "SO-42"}
    )  # fmt: skip
    stale = _patch(http, order["id"], {"notes": "again"}, after["version"])
    assert stale.status_code == 412, stale.text
    latest = noted.json()["version"]
    not_draft = _patch(http, order["id"], {"notes": "x", "redeem_points": 0}, latest)
    assert (not_draft.status_code, not_draft.json()["code"]) == (409, "order_not_draft")
    bad = _patch(http, order["id"], {"metadata": {"k" * 41: "v"}}, latest)
    assert bad.status_code == 400, bad.text
    assert ok(http.get(f"/v1/orders/{order['id']}"))["version"] == latest

    def updates() -> list[int]:
        return [version for kind, _, version in feed.read() if kind == "order.updated"]

    assert eventually(lambda: (told := updates())[1:] and told) == [after["version"], latest]
