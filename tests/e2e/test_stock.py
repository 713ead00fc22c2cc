"""Stock through the gateway: locations in detail, holds, counts, transfers, sourcing."""

from __future__ import annotations

import time
import uuid
from typing import Any

import httpx
import pytest

from pos_devstack.http_checks import polled
from pos_devstack.testing import Running

pytestmark = pytest.mark.e2e


def _post(http: httpx.Client, path: str, body: dict[str, Any]) -> httpx.Response:
    return http.post(path, json=body, headers={"Idempotency-Key": str(uuid.uuid4())})


def _shop(http: httpx.Client, tag: str, lat: float, lng: float, stock: dict[str, int]) -> str:
    made = _post(
        http,
        "/v1/locations",
        {
            "name": f"{tag} store",
            "currency": "USD",
            "tax_rate_bps": 825,
            "address": {"line1": "1 Main St", "city": "Springfield", "country": "US"},
            "geo": {"latitude": lat, "longitude": lng},
            "time_zone": "America/Chicago",
            "tax_rates_bps": {"food": 200},
            "pickup_enabled": True,
            "ship_enabled": True,
        },
    )
    assert made.status_code == 201, made.text
    loc = made.json()
    assert loc["tax_rates_bps"] == {"food": 200} and loc["geo"]["latitude"] == lat
    for sku, units in stock.items():
        got = _post(
            http,
            "/v1/inventory/adjustments",
            {"sku": sku, "location_id": loc["id"], "delta": units, "reason": "received"},
        )
        assert got.status_code == 201, got.text
        assert got.json()["entry"]["kind"] == "adjustment"
    return str(loc["id"])


def _product(http: httpx.Client, sku: str) -> None:
    made = _post(
        http, "/v1/products", {"sku": sku, "name": sku, "price": {"amount": 500, "currency": "USD"}}
    )
    assert made.status_code == 201, made.text


def test_holds_counts_transfers_and_sourcing_over_rest(platform: Running) -> None:
    http = platform.http
    tag = uuid.uuid4().hex[:6].upper()
    lamp, desk = f"LAMP-{tag}", f"DESK-{tag}"
    _product(http, lamp)
    _product(http, desk)
    near = _shop(http, f"near-{tag}", 41.88, -87.63, {lamp: 2})
    far = _shop(http, f"far-{tag}", 40.71, -74.00, {lamp: 5, desk: 1})

    held = _post(
        http,
        "/v1/reservations",
        {"location_id": near, "lines": [{"sku": lamp, "quantity": 2}], "ttl_seconds": 600},
    )
    assert held.status_code == 201, held.text
    assert held.json()["status"] == "active" and held.json()["levels"][0]["available"] == 0
    short = _post(
        http, "/v1/reservations", {"location_id": near, "lines": [{"sku": lamp, "quantity": 1}]}
    )
    assert short.status_code == 409
    assert short.headers["content-type"] == "application/problem+json"
    assert (short.json()["code"], short.json()["skus"], short.json()["available"]) == (
        "insufficient_stock",
        [lamp],
        [0],
    )
    assert [e["field"] for e in short.json()["errors"]] == ["lines[0].quantity"]
    rid = held.json()["id"]
    assert platform.new_merchant(f"other-{tag}").get(f"/v1/reservations/{rid}").status_code == 404
    committed = _post(http, f"/v1/reservations/{rid}/commit", {})
    assert committed.status_code == 200 and committed.json()["status"] == "committed"
    assert committed.json()["levels"][0]["on_hand"] == 0

    stale = _post(
        http,
        "/v1/inventory/counts",
        {"sku": lamp, "location_id": far, "quantity": 4, "expected_on_hand": 9},
    )
    assert stale.status_code == 409 and stale.json()["on_hand"] == 5
    counted = _post(
        http,
        "/v1/inventory/counts",
        {"sku": lamp, "location_id": far, "quantity": 4, "expected_on_hand": 5},
    )
    assert counted.status_code == 201 and counted.json()["level"]["on_hand"] == 4
    # Removing more than is there names the SKU and what is there as a hold's refusal does.
    over = _post(http, "/v1/inventory/adjustments",
                 {"sku": lamp, "location_id": far, "delta": -10, "reason": "damaged"})  # fmt: skip
    assert over.status_code == 409, over.text
    assert (over.json()["code"], over.json()["skus"], over.json()["available"]) == (
        "insufficient_stock", [lamp], [4],
    )  # fmt: skip
    assert [e["field"] for e in over.json()["errors"]] == ["delta"]
    # A "received" that takes units away is a contradiction: refused, naming the delta.
    taken = {"sku": lamp, "location_id": far, "delta": -1, "reason": "received"}
    backwards = _post(http, "/v1/inventory/adjustments", taken)
    assert backwards.status_code == 400, backwards.text
    assert [e["field"] for e in backwards.json()["errors"]] == ["delta"]

    moved = _post(
        http,
        "/v1/inventory/transfers",
        {"from_location_id": far, "to_location_id": near, "lines": [{"sku": lamp, "quantity": 1}]},
    )
    assert moved.status_code == 201, moved.text
    history = http.get("/v1/inventory/history", params={"sku": lamp, "location_id": near}).json()
    assert [e["kind"] for e in history["data"]][:2] == ["transfer_in", "sale"]

    everywhere = http.get("/v1/inventory/availability", params={"sku": [lamp, desk]}).json()
    totals = {x["sku"]: x["available"] for x in everywhere["data"]}
    assert totals == {lamp: 4, desk: 1}
    found = http.get(
        "/v1/inventory/nearby",
        params={"sku": [f"{lamp}:1"], "latitude": 41.9, "longitude": -87.6},
    ).json()["data"]
    assert [x["location"]["id"] for x in found][:2] == [near, far]

    proposal = _post(
        http,
        "/v1/sourcing",
        {
            "lines": [{"sku": lamp, "quantity": 1}, {"sku": desk, "quantity": 1}],
            "destination": {"latitude": 41.9, "longitude": -87.6},
            "dry_run": True,
        },
    )
    assert proposal.status_code == 200, proposal.text
    body = proposal.json()
    # The near store has no desk, so the far one, which has both, ships everything.
    assert (body["strategy"], body["reason_code"]) == ("single", "nearest_with_all_lines")
    assert [a["location_id"] for a in body["allocations"]] == [far]
    assert body["allocations"][0]["reservation_id"] == ""

    bad = _post(
        http, "/v1/reservations", {"location_id": near, "lines": [{"sku": lamp, "quantity": 0}]}
    )
    assert bad.status_code == 400
    assert bad.json()["errors"][0]["field"] == "lines[0].quantity"


def test_a_nearby_search_with_a_quantity_out_of_range_is_a_400(platform: Running) -> None:
    near = {"latitude": 45, "longitude": -93}
    for line in ("MUG-LOGO:9223372036854775808", "MUG-LOGO:²", "MUG-LOGO:0", "MUG-LOGO:"):
        answer = platform.http.get("/v1/inventory/nearby", params={"sku": line, **near})
        assert answer.status_code == 400, (line, answer.text)
        assert [e["field"] for e in answer.json()["errors"]] == ["sku"]
    top = platform.http.get("/v1/inventory/nearby", params={"sku": "MUG-LOGO:3", **near})
    assert top.status_code == 200, top.text
    # A SKU twice is the caller's `sku`, not the service's `lines[1].sku`.
    twice = [("sku", "MUG-LOGO"), ("sku", "MUG-LOGO:2"), *near.items()]
    answer = platform.http.get("/v1/inventory/nearby", params=twice)
    assert answer.status_code == 400, answer.text
    assert [e["field"] for e in answer.json()["errors"]] == ["sku"]


def test_a_position_that_is_not_a_finite_number_is_a_400_saying_so(platform: Running) -> None:
    """NaN fails every comparison: it was refused as "less than or equal to 90", which it
    is not, nor is it more; the reason now says what is wrong, naming the field."""
    http = platform.http
    for latitude, longitude, field in (("nan", "4.9", "latitude"), ("52.4", "NaN", "longitude"),
                                       ("inf", "4.9", "latitude")):  # fmt: skip
        answer = http.get(
            "/v1/inventory/nearby",
            params={"sku": "MUG-LOGO", "latitude": latitude, "longitude": longitude},
        )
        assert answer.status_code == 400, answer.text
        errors = answer.json()["errors"]
        assert [e["field"] for e in errors] == [field], errors
        assert "finite number" in errors[0]["reason"], errors
    # In a body too (JSON has no NaN, but Python's reader takes one).
    made = http.post(
        "/v1/locations",
        content=b'{"name": "Nowhere", "currency": "USD",'
        b' "geo": {"latitude": NaN, "longitude": 4.9}}',
        headers={"Idempotency-Key": str(uuid.uuid4()), "Content-Type": "application/json"},
    )
    assert made.status_code == 400, made.text
    errors = made.json()["errors"]
    assert [e["field"] for e in errors] == ["geo.latitude"], errors
    assert "finite number" in errors[0]["reason"], errors


def test_nearby_stock_of_an_archived_product_is_a_409(platform: Running) -> None:
    """An archived product is not for sale: nearby stock (where to buy) refuses its SKU as
    sourcing does, though its units are still on the shelf; before, their stores were listed."""
    http = platform.http
    tag = uuid.uuid4().hex[:6].upper()
    gone, kept = f"GONE-{tag}", f"KEPT-{tag}"
    made = _post(
        http,
        "/v1/products",
        {"sku": gone, "name": gone, "price": {"amount": 500, "currency": "USD"}},
    )
    assert made.status_code == 201, made.text
    _product(http, kept)
    shop = _shop(http, f"{tag} archive", 44.98, -93.27, {gone: 3, kept: 3})
    archived = http.post(f"/v1/products/{made.json()['id']}/archive")
    assert archived.status_code == 200, archived.text
    near = {"latitude": 44.98, "longitude": -93.26}
    answer = http.get("/v1/inventory/nearby", params={"sku": [kept, f"{gone}:2"], **near})
    assert answer.status_code == 409, answer.text
    assert (answer.json()["code"], answer.json()["skus"]) == ("product_archived", [gone])
    listed = http.get("/v1/inventory/nearby", params={"sku": kept, **near})
    assert listed.status_code == 200, listed.text
    assert shop in [x["location"]["id"] for x in listed.json()["data"]]


def test_nearby_stock_of_an_unknown_sku_is_a_404_naming_sku(platform: Running) -> None:
    """A SKU no product sells under is a 404 naming it, as sourcing and holds answer, and
    naming the caller's `sku` (not the service's `lines[1].sku`); before, an empty list, as if
    it had sold out everywhere. A malformed one is a 400 naming `sku` as well."""
    http = platform.http
    tag = uuid.uuid4().hex[:6].upper()
    kept, unknown = f"NEAR-{tag}", f"NOPE-{tag}"
    _product(http, kept)
    _shop(http, f"{tag} near", 44.98, -93.27, {kept: 3})
    near = {"latitude": 44.98, "longitude": -93.26}
    answer = http.get("/v1/inventory/nearby", params={"sku": [kept, f"{unknown}:2"], **near})
    assert answer.status_code == 404, answer.text
    problem = answer.json()
    assert (problem["code"], problem["skus"]) == ("resource_missing", [unknown])
    assert [e["field"] for e in problem["errors"]] == ["sku"]
    for line in ("bad sku", ":3", "S" * 70):
        bad = http.get("/v1/inventory/nearby", params={"sku": line, **near})
        assert bad.status_code == 400, bad.text
        assert [e["field"] for e in bad.json()["errors"]] == ["sku"]


def test_a_variant_sku_is_received_sold_and_ordered_for_pickup(platform: Running) -> None:
    """A variant's SKU is stock like any other: received, counted down by a sale, held by an
    order for pickup; a SKU no product or variant has is still a 404 naming it."""
    http = platform.http
    tag = uuid.uuid4().hex[:6].upper()
    tee, medium = f"VTEE-{tag}", f"VTEE-{tag}-M"
    made = _post(
        http,
        "/v1/products",
        {
            "sku": tee,
            "name": "Tee",
            "price": {"amount": 2000, "currency": "USD"},
            "variants": [
                {"sku": medium, "name": "M", "options": {"size": "M"}},
                {"sku": f"{tee}-L", "name": "L", "price": {"amount": 2400, "currency": "USD"}},
            ],
        },
    )
    assert made.status_code == 201, made.text
    store = _shop(http, f"variant-{tag}", 41.88, -87.63, {medium: 10})
    threshold = _post(http, "/v1/inventory/low-stock-thresholds", {"sku": medium, "threshold": 2})
    assert threshold.status_code == 200 and threshold.json()["threshold"] == 2, threshold.text

    def level() -> dict[str, Any]:
        got = http.get("/v1/inventory", params={"sku": medium, "location_id": store})
        assert got.status_code == 200, got.text
        return dict(got.json()["data"][0])

    sale = _post(
        http,
        "/v1/checkouts",
        {
            "location_id": store,
            "lines": [{"sku": medium, "quantity": 2}],
            "tender_type": "card",
            "card_token": "tok_visa",
        },
    )
    assert sale.status_code == 201, sale.text
    deadline = time.monotonic() + 30
    while level()["on_hand"] != 8:  # the sale leaves the shelf through the order event
        assert time.monotonic() < deadline, level()
        time.sleep(0.1)

    order = _post(
        http,
        "/v1/orders",
        {
            "channel": "web",
            "location_id": store,
            "lines": [{"sku": medium, "quantity": 3}],
            "fulfillments": [{"type": "pickup", "location_id": store}],
        },
    )
    assert order.status_code == 201, order.text
    (pickup,) = order.json()["fulfillments"]
    assert (pickup["status"], bool(pickup["reservation_id"])) == ("reserved", True)
    assert (level()["on_hand"], level()["reserved"], level()["available"]) == (8, 3, 5)

    made_up = f"{tee}-XXL"
    missing = _post(
        http,
        "/v1/inventory/adjustments",
        {"sku": made_up, "location_id": store, "delta": 1, "reason": "received"},
    )
    assert missing.status_code == 404, missing.text
    assert missing.json()["code"] == "resource_missing" and made_up in missing.json()["detail"]


def test_sourcing_gives_no_distance_where_none_is_known(platform: Running) -> None:
    """A location without a position, or a pickup (no destination), is at no known distance:
    its allocation says so (`distance_km` null), never 0 km, which read as "at the door"."""
    http = platform.new_merchant("Sourcing distances")
    tag = uuid.uuid4().hex[:6].upper()
    vase = f"VASE-{tag}"
    _product(http, vase)
    placed = _shop(http, f"placed-{tag}", 41.88, -87.63, {vase: 2})
    unplaced = _post(
        http,
        "/v1/locations",
        {"name": f"unplaced-{tag}", "currency": "USD", "tax_rate_bps": 0, "ship_enabled": True},
    ).json()["id"]
    received = {"sku": vase, "location_id": unplaced, "delta": 5, "reason": "received"}
    got = _post(http, "/v1/inventory/adjustments", received)
    assert got.status_code == 201, got.text
    to = {"latitude": 41.9, "longitude": -87.6}

    # Only the location without a position has every unit: it ships, at no known distance.
    single = _post(
        http, "/v1/sourcing",
        {"lines": [{"sku": vase, "quantity": 4}], "destination": to, "dry_run": True},
    ).json()  # fmt: skip
    assert single["strategy"] == "single", single
    assert [(a["location_id"], a["distance_km"]) for a in single["allocations"]] == [
        (unplaced, None)
    ]
    assert "nearest" not in single["reason"], single["reason"]

    # A split: the placed store first with its distance, the unplaced one last without one.
    split = _post(
        http, "/v1/sourcing",
        {"lines": [{"sku": vase, "quantity": 7}], "destination": to, "dry_run": True},
    ).json()  # fmt: skip
    assert split["strategy"] == "split", split
    distances = [(a["location_id"], a["distance_km"]) for a in split["allocations"]]
    assert distances[0][0] == placed and 0 < distances[0][1] < 10
    assert distances[1] == (unplaced, None)

    # A pickup has no destination to measure from.
    pickup = _post(
        http, "/v1/sourcing",
        {"lines": [{"sku": vase, "quantity": 1}], "pickup_location_id": placed, "dry_run": True},
    ).json()  # fmt: skip
    assert pickup["strategy"] == "pickup", pickup
    assert pickup["allocations"][0]["distance_km"] is None


def test_an_empty_filter_is_a_400_naming_it_never_dropped(platform: Running) -> None:
    """`location_id=` (a client's unset variable) filtered nothing: the history answered every
    location's entries and the availability a 404 of location ''. Each is a 400 on the field."""
    http = platform.http
    for path, params, field in [
        ("/v1/inventory/history", {"location_id": ""}, "location_id"),
        ("/v1/inventory/history", {"sku": ""}, "sku"),
        ("/v1/inventory/availability", {"sku": "TEE-BLK-M", "location_id": ""}, "location_id[0]"),
    ]:
        answer = http.get(path, params=params)
        assert answer.status_code == 400, (path, params, answer.text)
        assert [e["field"] for e in answer.json()["errors"]] == [field], answer.text


def test_the_stock_ledger_is_narrowed_by_kind_reason_and_period(platform: Running) -> None:
    """A stock report over REST: `kind`, `reason` and a created window narrow the ledger;
    a cursor pages on with its own filters only; a reversed window is a 400."""
    http = platform.new_merchant("Ledger filters")
    sku = f"LF-{uuid.uuid4().hex[:8].upper()}"
    made = _post(http, "/v1/products", {"sku": sku, "name": "Ledger",
                                         "price": {"amount": 100, "currency": "USD"}})  # fmt: skip
    assert made.status_code == 201, made.text
    store = _shop(http, "Ledger", 41.0, -87.0, {sku: 10})
    for delta, reason in ((-2, "damaged"), (-1, "lost"), (4, "received")):
        change = {"sku": sku, "location_id": store, "delta": delta, "reason": reason}
        moved = _post(http, "/v1/inventory/adjustments", change)
        assert moved.status_code == 201, moved.text

    def listed(**params: Any) -> list[dict[str, Any]]:
        answer = http.get("/v1/inventory/history", params={"sku": sku, **params})
        assert answer.status_code == 200, answer.text
        return list(answer.json()["data"])

    everything = listed()
    assert [(e["reason"], e["delta"]) for e in everything] == [
        ("received", 4), ("lost", -1), ("damaged", -2), ("received", 10)
    ]  # fmt: skip
    assert [e["id"] for e in listed(reason="received")] == [
        everything[0]["id"], everything[3]["id"]
    ]  # fmt: skip
    assert listed(kind="sale") == []
    assert [e["id"] for e in listed(kind="adjustment")] == [e["id"] for e in everything]
    since = everything[2]["recorded_at"]
    assert [e["id"] for e in listed(recorded_since=since)] == [e["id"] for e in everything[:3]]
    first = http.get(
        "/v1/inventory/history", params={"sku": sku, "reason": "received", "limit": 1}
    ).json()
    moved_cursor = http.get(
        "/v1/inventory/history", params={"sku": sku, "limit": 1, "cursor": first["next_cursor"]}
    )
    assert moved_cursor.status_code == 400, moved_cursor.text
    for params, field in (
        ({"recorded_since": since, "recorded_before": since}, "recorded_before"),
        ({"kind": "theft"}, "kind"),
    ):
        refused = http.get("/v1/inventory/history", params={"sku": sku, **params})
        assert refused.status_code == 400, refused.text
        assert [e["field"] for e in refused.json()["errors"]] == [field], refused.text


def test_a_hold_referencing_one_of_the_merchants_orders_is_refused_not_stranded(
    platform: Running,
) -> None:
    """A hold whose `reference` is an order's id is taken for that order's own (commit and
    release answer 409 `reservation_managed_by_order`), and the order never sells or gives
    back a hold it did not make: one made through `/v1/reservations` (or sourcing) naming an
    order stayed held, by no one, until it expired (up to 7 days). So such a reference is
    refused as the hold is asked (400 naming `reference`), nothing held; a reference that only
    looks like an order id is the caller's own, as before."""
    with platform.new_merchant(f"Order refs {uuid.uuid4().hex[:8]}") as http:
        sku = f"REF-{uuid.uuid4().hex[:6].upper()}"
        _product(http, sku)
        store = _shop(http, "Ref", 39.78, -89.65, {sku: 5})
        sale = {"location_id": store, "tender_type": "card", "card_token": "tok_visa",
                "lines": [{"sku": sku, "quantity": 1}]}  # fmt: skip
        made = _post(http, "/v1/checkouts", sale)
        assert made.status_code == 201, made.text
        order = made.json()["order"]["id"]

        def available() -> int:
            levels = http.get("/v1/inventory", params={"sku": sku, "location_id": store})
            return int(levels.json()["data"][0]["available"])

        # The sale leaves the shelf through the order's event, moments after its answer.
        assert polled(available, lambda units: units == 4) == 4
        lines = [{"sku": sku, "quantity": 2}]
        for path, body in (
            ("/v1/reservations", {"location_id": store, "lines": lines, "reference": order}),
            ("/v1/sourcing", {"lines": lines, "pickup_location_id": store, "reference": order}),
            ("/v1/sourcing", {"lines": lines, "pickup_location_id": store, "reference": order,
                              "dry_run": True}),
        ):  # fmt: skip
            refused = _post(http, path, body)
            assert refused.status_code == 400, refused.text
            assert [e["field"] for e in refused.json()["errors"]] == ["reference"]
            assert available() == 4  # nothing held

        own = _post(
            http,
            "/v1/reservations",
            {"location_id": store, "lines": lines, "reference": "ord_of_my_own_shop"},
        )
        assert own.status_code == 201, own.text
        released = _post(http, f"/v1/reservations/{own.json()['id']}/release", {})
        assert (released.status_code, released.json()["status"]) == (200, "released")
        assert available() == 4


def test_an_unknown_location_filter_on_stock_lists_names_location_id(platform: Running) -> None:
    """As on `GET /v1/shifts`: a `location_id` filter the merchant does not have is a 404
    whose `errors[]` names `location_id`, on the stock levels (with and without SKUs) and
    the stock ledger."""
    http = platform.http
    for path, params in (
        ("/v1/inventory", {"location_id": "loc_nowhere"}),
        ("/v1/inventory", {"sku": "TEE-BLK-M", "location_id": "loc_nowhere"}),
        ("/v1/inventory/history", {"location_id": "loc_nowhere"}),
    ):
        answer = http.get(path, params=params)
        assert (answer.status_code, answer.json()["code"]) == (404, "resource_missing"), path
        assert answer.json()["errors"] == [
            {"field": "location_id", "reason": "no such location"}
        ], (path, params, answer.text)


def test_a_write_off_takes_no_units_a_reservation_holds(platform: Running) -> None:
    """Held units are promised: a write-off of more than the units not held is a 409
    `insufficient_stock` naming `delta`, and stock is as it was; so the hold's commit never
    takes stock below zero. Released, the units can be written off."""
    http = platform.http
    sku = f"WO-{uuid.uuid4().hex[:6].upper()}"
    _product(http, sku)
    store = _shop(http, f"write-off-{sku}", 41.7, -87.6, {sku: 3})
    held = _post(http, "/v1/reservations", {"location_id": store,
                                             "lines": [{"sku": sku, "quantity": 2}]})  # fmt: skip
    assert held.status_code == 201, held.text
    loss = {"sku": sku, "location_id": store, "delta": -2, "reason": "damaged"}
    refused = _post(http, "/v1/inventory/adjustments", loss)
    assert refused.status_code == 409, refused.text
    problem = refused.json()
    assert problem["code"] == "insufficient_stock", problem
    assert [e["field"] for e in problem["errors"]] == ["delta"], problem
    levels = {"sku": sku, "location_id": store}
    (level,) = http.get("/v1/inventory", params=levels).json()["data"]
    assert (level["on_hand"], level["reserved"], level["available"]) == (3, 2, 1)

    hold = held.json()["id"]
    committed = _post(http, f"/v1/reservations/{hold}/commit", {})
    assert committed.status_code == 200, committed.text
    (level,) = http.get("/v1/inventory", params=levels).json()["data"]
    assert (level["on_hand"], level["reserved"]) == (1, 0)
    assert _post(http, "/v1/inventory/adjustments", {**loss, "delta": -1}).status_code == 201


def test_low_stock_thresholds_are_read_back_where_they_are_set(platform: Running) -> None:
    """A threshold set at /v1/inventory/low-stock-thresholds is read there: every one set, by
    SKU in pages, or those of the SKUs asked for; one removed is no longer listed; a SKU that
    is not one is a 400 naming it."""
    with platform.new_merchant(f"Thresholds {uuid.uuid4().hex[:8]}") as http:
        skus = ["LOW-A", "LOW-B", "LOW-C"]
        for sku in skus:
            _product(http, sku)
        path = "/v1/inventory/low-stock-thresholds"
        assert http.get(path).json() == {"data": [], "next_cursor": None}
        for units, sku in enumerate(skus, start=2):
            set_ = _post(http, path, {"sku": sku, "threshold": units})
            assert set_.status_code == 200, set_.text

        first = http.get(path, params={"limit": 2})
        assert first.status_code == 200, first.text
        assert first.json()["data"] == [{"sku": "LOW-A", "threshold": 2},
                                        {"sku": "LOW-B", "threshold": 3}]  # fmt: skip
        rest = http.get(path, params={"limit": 2, "cursor": first.json()["next_cursor"]})
        assert rest.json() == {"data": [{"sku": "LOW-C", "threshold": 4}], "next_cursor": None}
        asked = http.get(path, params={"sku": ["LOW-C", "LOW-A"]})
        assert [t["sku"] for t in asked.json()["data"]] == ["LOW-A", "LOW-C"], asked.text

        assert _post(http, path, {"sku": "LOW-B", "threshold": None}).status_code == 200
        assert _post(http, path, {"sku": "LOW-C", "threshold": 9}).status_code == 200
        listed = http.get(path).json()["data"]
        assert listed == [{"sku": "LOW-A", "threshold": 2}, {"sku": "LOW-C", "threshold": 9}]
        assert http.get(path, params={"sku": "LOW-B"}).json()["data"] == []

        bad = http.get(path, params={"sku": ["LOW-A", "not a sku"]})
        assert bad.status_code == 400, bad.text
        assert [e["field"] for e in bad.json()["errors"]] == ["sku[1]"], bad.text
        with platform.new_merchant(f"Other {uuid.uuid4().hex[:8]}") as other:
            assert other.get(path).json()["data"] == []


def test_reservations_are_listed_in_pages_narrowed_by_status_and_location(
    platform: Running,
) -> None:
    """`GET /v1/reservations`: the merchant's holds by id in pages, each as its own GET reads
    it; `status` and `location_id` narrow it (a location you do not have is a 404 naming
    `location_id`), a cursor pages on only with its own filters, and another merchant's holds
    are never listed."""
    with platform.new_merchant(f"Holds {uuid.uuid4().hex[:8]}") as http:
        _product(http, "LR-LAMP")
        here = _shop(http, "list-here", 41.8, -87.6, {"LR-LAMP": 10})
        there = _shop(http, "list-there", 41.9, -87.7, {"LR-LAMP": 10})

        def hold(store: str) -> dict[str, Any]:
            made = _post(http, "/v1/reservations", {"location_id": store,
                         "lines": [{"sku": "LR-LAMP", "quantity": 1}]})  # fmt: skip
            assert made.status_code == 201, made.text
            return {k: v for k, v in made.json().items() if k != "levels"}

        held = [hold(here), hold(there), hold(here)]
        released = _post(http, f"/v1/reservations/{held[2]['id']}/release", {})
        assert released.status_code == 200, released.text

        def listed(**params: Any) -> list[dict[str, Any]]:
            found: list[dict[str, Any]] = []
            cursor = None
            while True:
                page = http.get("/v1/reservations", params={**params, "limit": 2,
                                **({"cursor": cursor} if cursor else {})})  # fmt: skip
                assert page.status_code == 200, page.text
                found += page.json()["data"]
                if not (cursor := page.json()["next_cursor"]):
                    return found

        every = listed()
        assert [r["id"] for r in every] == sorted(r["id"] for r in held)
        for r in every:
            assert r == http.get(f"/v1/reservations/{r['id']}").json()
        assert {r["id"]: r["status"] for r in every}[held[2]["id"]] == "released"
        active = listed(status="active")
        assert [r["id"] for r in active] == sorted([held[0]["id"], held[1]["id"]])
        assert [r["id"] for r in listed(location_id=there)] == [held[1]["id"]]
        assert [r["id"] for r in listed(location_id=here, status="released")] == [held[2]["id"]]
        assert len(listed(sku="LR-LAMP")) == 3 and listed(sku="LR-NONE") == []

        nowhere = http.get("/v1/reservations", params={"location_id": "loc_nowhere"})
        assert nowhere.status_code == 404, nowhere.text
        assert [e["field"] for e in nowhere.json()["errors"]] == ["location_id"]
        assert http.get("/v1/reservations", params={"status": "paused"}).status_code == 400
        first = http.get("/v1/reservations", params={"limit": 1}).json()
        other_filter = http.get(
            "/v1/reservations", params={"cursor": first["next_cursor"], "status": "active"}
        )
        assert other_filter.status_code == 400, other_filter.text
    with platform.new_merchant(f"Others {uuid.uuid4().hex[:8]}") as other:
        assert other.get("/v1/reservations").json()["data"] == []
        theirs = other.get("/v1/reservations", params={"location_id": here})
        assert theirs.status_code == 404, theirs.text
