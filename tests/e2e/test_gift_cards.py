"""Gift cards and the settlement report through the gateway over HTTP, every service a separate
process: the code is shown once and kept nowhere (no database, log file or stream), code
look-ups are limited per credential, and a location's day reads in its own time zone."""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable
from contextlib import closing
from datetime import UTC, datetime
from typing import Any

import httpx
import psycopg
import pytest
from psycopg import sql

from pos_devstack.http_checks import day_with_time_to_spare, ok, open_till, polled, post, stocked
from pos_devstack.testing import Running

pytestmark = pytest.mark.e2e


def _post(http: httpx.Client, path: str, body: dict[str, Any], key: str | None = None) -> Any:
    return http.post(path, json=body, headers={"Idempotency-Key": key or str(uuid.uuid4())})


def _spend_code_budget(http: httpx.Client) -> list[int]:
    """Code look-ups (of codes no card has) until the credential's budget refuses one: their
    statuses, the last a 429 unless none came in 200 tries."""
    statuses: list[int] = []
    while len(statuses) < 200 and 429 not in statuses:
        guess = {"code": f"GUESS-{len(statuses):04d}-XXXX"}
        statuses.append(_post(http, "/v1/gift-cards/lookup", guess).status_code)
    return statuses


def _refused_for_code_budget(
    http: httpx.Client, call: Callable[[], httpx.Response], tries: int = 20
) -> httpx.Response:
    """`call()` made the moment the code budget has run out (a look-up refused), until it is
    refused for the budget too, `tries` times at most: its last answer. The budget gives one
    more look-up a second, so on a slow machine the call may come after the next one is due,
    and be let through with nothing wrong; a call that does not spend the budget at all is
    let through every time."""
    answer = call()
    for _ in range(tries):
        if answer.status_code == 429:
            return answer
        assert _spend_code_budget(http)[-1] == 429
        answer = call()
    return answer


def _usd(amount: int) -> dict[str, Any]:
    return {"amount": amount, "currency": "USD"}


def _dump(url: str) -> str:
    with psycopg.connect(url) as conn:
        tables = conn.execute(
            "SELECT table_schema, table_name FROM information_schema.tables "
            "WHERE table_type = 'BASE TABLE' "
            "AND table_schema NOT IN ('pg_catalog', 'information_schema')"
        ).fetchall()
        rows = []
        for schema, table in tables:
            query = sql.SQL("SELECT * FROM {}.{}").format(
                sql.Identifier(schema), sql.Identifier(table)
            )
            for row in conn.execute(query):
                rows.append(
                    " | ".join(
                        bytes(v).decode("latin-1") if isinstance(v, memoryview | bytes) else str(v)
                        for v in row
                    )
                )
    return "\n".join(rows)


def test_a_gift_card_over_rest_shows_its_code_once_and_keeps_it_nowhere(
    platform: Running,
) -> None:
    with platform.new_merchant("Gift Cards") as http:
        store = _post(
            http,
            "/v1/locations",
            {"name": "Harbor", "currency": "USD", "time_zone": "America/Los_Angeles"},
        )
        assert store.status_code == 201, store.text
        location = store.json()["id"]

        key = str(uuid.uuid4())
        body = {"amount": _usd(4000), "location_id": location}
        first = _post(http, "/v1/gift-cards", body, key)
        assert first.status_code == 201, first.text
        code = first.json()["code"]
        card = first.json()["gift_card"]
        assert first.json()["secret_redacted"] is False and card["code_last4"] == code[-4:]
        replay = _post(http, "/v1/gift-cards", body, key)
        assert replay.headers["Idempotent-Replayed"] == "true"
        assert (replay.json()["code"], replay.json()["secret_redacted"]) == (None, True)
        assert replay.json()["gift_card"]["id"] == card["id"]

        supplied = _post(http, "/v1/gift-cards", {"amount": _usd(1000), "code": "HARBOR-PRE-0193"})
        assert supplied.status_code == 201, supplied.text
        codes = [code, "HARBOR-PRE-0193"]

        found = _post(http, "/v1/gift-cards/lookup", {"code": code.lower()})
        assert (found.status_code, found.json()["balance"]) == (200, _usd(4000))
        redeemed = _post(
            http,
            "/v1/gift-cards/redeem",
            {"code": code, "amount": _usd(5000), "allow_partial": True, "location_id": location},
        )
        assert redeemed.status_code == 200, redeemed.text
        assert (redeemed.json()["redeemed"], redeemed.json()["remaining_due"]) == (
            _usd(4000),
            _usd(1000),
        )
        loaded = _post(http, f"/v1/gift-cards/{card['id']}/loads", {"amount": _usd(700)})
        assert loaded.status_code == 201 and loaded.json()["gift_card"]["balance"] == _usd(700)
        activities = http.get(f"/v1/gift-cards/{card['id']}/activities").json()["data"]
        assert [a["kind"] for a in activities] == ["activate", "redeem", "load"]
        assert sum(a["amount"]["amount"] for a in activities) == 700

        # Bad input: 4xx problems, nothing written.
        unknown = _post(http, "/v1/gift-cards/lookup", {"code": "NOPE-NOPE-NOPE-NOPE"})
        assert (unknown.status_code, unknown.json()["code"]) == (404, "resource_missing")
        assert unknown.json()["errors"] == [{"field": "code", "reason": "no such gift card"}]
        assert "NOPE" not in unknown.text
        # A redemption by such a code is answered alike, naming its field too.
        nothing = {"code": "NOPE-NOPE-NOPE-NOPE", "amount": _usd(100)}
        unredeemed = _post(http, "/v1/gift-cards/redeem", nothing)
        assert (unredeemed.status_code, unredeemed.json()["errors"]) == (
            404, [{"field": "code", "reason": "no such gift card"}]
        )  # fmt: skip
        too_much = _post(http, f"/v1/gift-cards/{card['id']}/loads", {"amount": _usd(10**6)})
        assert (too_much.status_code, too_much.json()["code"]) == (409, "gift_card_balance_limit")
        assert [e["field"] for e in too_much.json()["errors"]] == ["amount.amount"]
        euros = _post(http, f"/v1/gift-cards/{card['id']}/loads", {"amount": {"amount": 5,
                      "currency": "EUR"}})  # fmt: skip
        assert (euros.status_code, euros.json()["code"]) == (400, "currency_mismatch")
        assert len(http.get(f"/v1/gift-cards/{card['id']}/activities").json()["data"]) == 3
        # Value in another currency than the store's would be in none of its reports.
        london = {"name": "Strand", "currency": "GBP", "time_zone": "Europe/London"}
        pounds = _post(http, "/v1/locations", london).json()["id"]
        for path, body in (
            ("/v1/gift-cards", {"amount": {"amount": 5000, "currency": "EUR"},
                                "location_id": location}),
            (f"/v1/gift-cards/{card['id']}/loads", {"amount": _usd(500), "location_id": pounds}),
        ):  # fmt: skip
            foreign = _post(http, path, body)
            assert (foreign.status_code, foreign.json()["code"]) == (400, "currency_mismatch")
            assert foreign.json()["errors"][0]["field"] == "amount.currency", foreign.text
        assert len(http.get(f"/v1/gift-cards/{card['id']}/activities").json()["data"]) == 3

        # The day's report at the store, in its time zone: the card sold there is in it.
        today = datetime.now(UTC).astimezone().date().isoformat()
        report = http.get("/v1/settlement-reports", params={"location_id": location, "date": today})
        assert report.status_code == 200, report.text
        assert report.json()["time_zone"] == "America/Los_Angeles"
        assert [t["name"] for t in report.json()["tenders"]] == [
            "cash",
            "card",
            "gift_card",
            "external",
        ]
        missing = http.get(
            "/v1/settlement-reports", params={"location_id": "loc_nope", "date": today}
        )
        assert missing.status_code == 404
        bad_day = http.get(
            "/v1/settlement-reports", params={"location_id": location, "date": "yesterday"}
        )
        assert bad_day.status_code == 400

        # Guessing codes: the credential's code budget runs out long before any guess lands.
        statuses = _spend_code_budget(http)
        assert statuses[-1] == 429 and set(statuses) <= {404, 429}
        limited = _refused_for_code_budget(
            http, lambda: _post(http, "/v1/gift-cards/lookup", {"code": "GUESS-LAST-XXXX"})
        )
        assert limited.json()["code"] == "code_lookups_limited" and limited.headers["Retry-After"]
        # A gift card tender takes a code too: it spends the same budget, before anything is
        # looked at; a tender with no code does not.
        guess = {"tender_type": "gift_card", "gift_card_code": "GUESS-TEND-XXXX"}
        tendered = _refused_for_code_budget(
            http, lambda: _post(http, "/v1/orders/ord_nowhere/tenders", guess)
        )
        assert (tendered.status_code, tendered.json()["code"]) == (429, "code_lookups_limited")
        carded = _post(
            http,
            "/v1/orders/ord_nowhere/tenders",
            {"tender_type": "card", "card_token": "tok_visa"},
        )
        assert carded.status_code == 404, carded.text
        # Issuing a card with a pre-printed code says whether a card holds it (a 409): the
        # same budget, before anything is looked at; a card with no code given does not.
        printed = {"amount": {"amount": 500, "currency": "USD"}, "code": "GUESS-ISSU-XXXX"}
        issued = _refused_for_code_budget(http, lambda: _post(http, "/v1/gift-cards", printed))
        assert (issued.status_code, issued.json()["code"]) == (429, "code_lookups_limited")
        plain = _post(http, "/v1/gift-cards", {"amount": {"amount": 500, "currency": "USD"}})
        assert plain.status_code == 201, plain.text

    logs = platform.platform.home / "logs"
    logged = "\n".join(p.read_bytes().decode("latin-1") for p in sorted(logs.glob("*.log")))
    dumps = {name: _dump(url) for name, url in platform.platform.database_urls.items()}
    assert card["id"] in dumps["payment"]  # the dumps are of the right databases
    for secret in codes:
        for form in {secret, secret.replace("-", ""), secret.lower()}:
            assert form not in logged
            for name, dumped in dumps.items():
                assert form not in dumped, name


def _walk(http: httpx.Client, **params: Any) -> list[dict[str, Any]]:
    """Every card of GET /v1/gift-cards, by pages of two, following next_cursor to its end;
    no answer of the list shows a code."""
    seen: list[dict[str, Any]] = []
    cursor = None
    for _ in range(50):
        answer = http.get(
            "/v1/gift-cards",
            params={**params, "limit": 2, **({"cursor": cursor} if cursor else {})},
        )
        assert answer.status_code == 200, answer.text
        assert all("code" not in card for card in answer.json()["data"])
        seen += answer.json()["data"]
        cursor = answer.json()["next_cursor"]
        if cursor is None:
            return seen
    raise AssertionError("the gift card list did not end")


def test_the_gift_card_list_pages_filters_and_follows_changes_without_a_code(
    platform: Running,
) -> None:
    with platform.new_merchant("Gift Card List") as http, platform.new_merchant("Other") as other:
        start = datetime.now(UTC).isoformat()
        store = _post(http, "/v1/locations", {"name": "Pier", "currency": "USD"}).json()["id"]
        customer = _post(http, "/v1/customers", {"email": f"{uuid.uuid4().hex[:8]}@gc.example"})
        customer_id = customer.json()["id"]
        issued = [
            _post(http, "/v1/gift-cards", body).json()
            for body in (
                {"amount": _usd(1000), "location_id": store},
                {"amount": _usd(2000), "location_id": store, "customer_id": customer_id},
                {"amount": _usd(3000), "customer_id": customer_id, "reason": "store_credit"},
                {"amount": _usd(4000)},
            )
        ]
        ids = [answer["gift_card"]["id"] for answer in issued]
        codes = [answer["code"] for answer in issued]
        ended = _post(http, f"/v1/gift-cards/{ids[3]}/deactivate", {"reason": "lost"})
        assert ended.status_code == 200, ended.text

        # Every card once, by id, shown as GET /v1/gift-cards/{id} shows it.
        listed = _walk(http)
        assert [card["id"] for card in listed] == sorted(ids)
        for card in listed:
            assert card == http.get(f"/v1/gift-cards/{card['id']}").json()
        first = http.get("/v1/gift-cards", params={"limit": 200})
        for code in codes:
            for form in {code, code.replace("-", ""), code.lower()}:
                assert form not in first.text

        # Each filter.
        def ids_of(**params: Any) -> list[str]:
            return [card["id"] for card in _walk(http, **params)]

        assert ids_of(status="deactivated") == [ids[3]]
        assert ids_of(status="active") == sorted(ids[:3])
        assert ids_of(customer_id=customer_id) == sorted(ids[1:3])
        assert ids_of(location_id=store) == sorted(ids[:2])
        assert ids_of(location_id=store, customer_id=customer_id, status="active") == [ids[1]]

        # The change feed: oldest change first; a load moves a card to the end.
        loaded = _post(http, f"/v1/gift-cards/{ids[0]}/loads", {"amount": _usd(500)})
        assert loaded.status_code == 201, loaded.text
        # The feed stops at the oldest transaction open in the payment database (the relay's, a
        # consumer's), so it is read until it shows the changes made (then asserted in full).
        feed = polled(lambda: _walk(http, updated_since=start), lambda seen: len(seen) >= 4)
        assert [card["id"] for card in feed] == [ids[1], ids[2], ids[3], ids[0]]
        assert feed[-1] == loaded.json()["gift_card"]
        last_seen = feed[-1]["updated_at"]
        again = polled(lambda: _walk(http, updated_since=last_seen))
        assert [card["id"] for card in again] == [ids[0]]
        # A cursor of the list by id is not one of the feed (nor the other way round).
        by_id = http.get("/v1/gift-cards", params={"limit": 1}).json()["next_cursor"]
        fed = polled(
            lambda: http.get("/v1/gift-cards", params={"limit": 1, "updated_since": start}),
            lambda answer: answer.json()["next_cursor"] is not None,
        )
        for params in (
            {"cursor": by_id, "updated_since": start},
            {"cursor": fed.json()["next_cursor"]},
            {"cursor": "garbage"},
        ):
            refused = http.get("/v1/gift-cards", params=params)
            assert refused.status_code == 400, refused.text
            assert [e["field"] for e in refused.json()["errors"]] == ["cursor"]
        bad = http.get("/v1/gift-cards", params={"status": "lost"})
        assert bad.status_code == 400, bad.text

        # Another merchant sees none of them; naming this merchant's customer or location is
        # a 404, word for word as a made-up id.
        assert _walk(other) == [] and _walk(other, updated_since=start) == []
        for name, value in (("customer_id", customer_id), ("location_id", store)):
            foreign = other.get("/v1/gift-cards", params={name: value})
            made_up = other.get("/v1/gift-cards", params={name: f"{value[:4]}nosuch"})
            assert (foreign.status_code, made_up.status_code) == (404, 404), foreign.text
            assert foreign.headers["content-type"] == "application/problem+json"
            assert foreign.text.replace(value, "ID") == made_up.text.replace(
                f"{value[:4]}nosuch", "ID"
            )


def test_a_merged_duplicates_store_credit_is_the_survivors(platform: Running) -> None:
    """A merge moves the duplicate's cards to the survivor (the payment service learns it from
    `customer.merged`), and a card issued naming the duplicate afterwards is the survivor's."""
    with platform.new_merchant("Merged Credit") as http:
        survivor, duplicate = (
            _post(http, "/v1/customers", {"email": f"{uuid.uuid4().hex[:8]}@gc.example"}).json()
            for _ in range(2)
        )
        credit = _post(
            http,
            "/v1/gift-cards",
            {"amount": _usd(2500), "customer_id": duplicate["id"], "reason": "store_credit"},
        ).json()["gift_card"]
        merged = _post(
            http, f"/v1/customers/{survivor['id']}/merge", {"duplicate_id": duplicate["id"]}
        )
        assert merged.status_code == 200, merged.text

        later = _post(
            http,
            "/v1/gift-cards",
            {"amount": _usd(1000), "customer_id": duplicate["id"], "reason": "store_credit"},
        )
        assert later.status_code == 201, later.text
        assert later.json()["gift_card"]["customer_id"] == survivor["id"]
        deadline = time.monotonic() + 20
        while len(theirs := _walk(http, customer_id=survivor["id"])) < 2:
            assert time.monotonic() < deadline, "the merge never reached the gift cards"
            time.sleep(0.05)
        moved = next(card for card in theirs if card["id"] == credit["id"])
        assert moved["customer_id"] == survivor["id"] and moved["balance"] == _usd(2500)
        assert moved["version"] == credit["version"] + 1
        assert _walk(http, customer_id=duplicate["id"]) == []


def test_a_gift_card_line_that_cannot_be_activated_is_refused_before_the_card_is_charged(
    platform: Running,
) -> None:
    """A pre-printed code another card has, or a value over the merchant's maximum balance:
    a 409 naming the line, before the sale is saved or its card charged. Before, the card was
    charged, then refunded, and the sale's other cards activated and deactivated: counted as
    sold in the day's settlement report."""
    with platform.new_merchant("Gift Card Sales") as http:
        store = _post(
            http, "/v1/locations", {"name": "Quay", "currency": "USD", "time_zone": "UTC"}
        )
        assert store.status_code == 201, store.text
        location = store.json()["id"]
        printed = "QUAY-" + uuid.uuid4().hex[:12].upper()
        # The day of the sale below, and of the report read after it (the store's, in UTC).
        today = day_with_time_to_spare("UTC")

        def sale(*cards: dict[str, Any]) -> httpx.Response:
            lines = [{"quantity": 1, "gift_card": card} for card in cards]
            return _post(
                http,
                "/v1/checkouts",
                {"location_id": location, "lines": lines, "tender_type": "card",
                 "card_token": "tok_visa"},
            )  # fmt: skip

        sold = sale({"amount": _usd(1500), "code": printed})
        assert sold.status_code == 201, sold.text
        assert [c["code"] for c in sold.json()["gift_cards"]] == [printed]

        over = sale({"amount": _usd(1000)}, {"amount": _usd(250_000)})
        assert (over.status_code, over.json()["code"]) == (409, "gift_card_balance_limit")
        assert [e["field"] for e in over.json()["errors"]] == ["lines[1].gift_card.amount"]
        taken = sale({"amount": _usd(1000)}, {"amount": _usd(2000), "code": printed.lower()})
        assert (taken.status_code, taken.json()["code"]) == (409, "gift_card_code_taken")
        assert [e["field"] for e in taken.json()["errors"]] == ["lines[1].gift_card.code"]
        assert printed not in taken.text and printed.lower() not in taken.text

        # Nothing of either was kept: one order, one payment, one card, and the day's report
        # counts the one card sold.
        orders = http.get("/v1/orders", params={"location_id": location}).json()["data"]
        assert [o["id"] for o in orders] == [sold.json()["order"]["id"]]
        cards = http.get("/v1/gift-cards", params={"location_id": location}).json()["data"]
        assert [c["status"] for c in cards] == ["active"]
        payments = http.get(f"/v1/orders/{orders[0]['id']}/payments")
        assert payments.status_code == 200, payments.text
        report = http.get("/v1/settlement-reports", params={"location_id": location, "date": today})
        assert report.status_code == 200, report.text
        assert (report.json()["gift_cards_sold"], report.json()["gift_cards_sold_count"]) == (
            _usd(1500),
            1,
        )
        card_tender = next(t for t in report.json()["tenders"] if t["name"] == "card")
        assert card_tender["captured"] == _usd(1500) and card_tender["refunded"] == _usd(0)


def test_a_gift_card_at_an_unknown_location_names_the_field(platform: Running) -> None:
    """Issued or loaded at a location that is not the merchant's: the 404 names
    `location_id`, as the services' references do, and no card is made."""
    http = platform.http
    before = http.get("/v1/gift-cards", params={"limit": 200}).json()["data"]
    issued = _post(http, "/v1/gift-cards", {"amount": _usd(500), "location_id": "loc_made_up"})
    assert (issued.status_code, issued.json()["code"]) == (404, "resource_missing")
    assert issued.json()["errors"] == [{"field": "location_id", "reason": "no such location"}]
    assert http.get("/v1/gift-cards", params={"limit": 200}).json()["data"] == before


def test_a_gift_card_sold_and_loaded_for_cash_at_a_register_is_in_its_shift(
    platform: Running,
) -> None:
    """A card sold on its own and a load, each paid in cash at a register (`paid_in_cash`, no
    permission needed: it is a sale), and a redemption there: all in the register's open
    shift, the cash in its expected cash. From the back office cash paid for a card is a 409
    `cash_needs_open_shift` naming `paid_in_cash`. The store's settlement report shows that
    cash (`gift_cards_sold_cash`), in no tender."""
    with platform.new_merchant(f"Card Till {uuid.uuid4().hex[:8]}") as http:
        store = ok(post(http, "/v1/locations", {"name": "Card St", "currency": "USD"}), 201)["id"]
        today = day_with_time_to_spare("UTC")  # the store's day (UTC): of the sales and report
        till = open_till(platform.platform.gateway_url, http, store, role="cashier")
        with closing(till.device) as device:
            sold = ok(post(device, "/v1/gift-cards", {"amount": _usd(5000),
                                                      "location_id": store,
                                                      "paid_in_cash": True}), 201)  # fmt: skip
            card = sold["gift_card"]["id"]
            # No location named: at a register, its own store's (as its shift is).
            ok(post(device, f"/v1/gift-cards/{card}/loads",
                    {"amount": _usd(1000), "paid_in_cash": True}), 201)  # fmt: skip
            ok(post(device, "/v1/gift-cards/redeem", {"code": sold["code"], "amount": _usd(700)}))
            report = ok(device.get(f"/v1/shifts/{till.shift['id']}"))["report"]
        assert report["gift_cards_sold"] == _usd(6000)
        assert report["gift_cards_sold_cash"] == _usd(6000)
        assert report["gift_cards_redeemed"] == _usd(700)
        assert report["expected_cash"] == _usd(10_000 + 6000)
        # The store's day shows the same cash, apart from the tenders (no payment took it).
        day = ok(http.get("/v1/settlement-reports", params={"location_id": store, "date": today}))
        assert (day["gift_cards_sold"], day["gift_cards_sold_cash"]) == (_usd(6000), _usd(6000))
        assert day["gift_cards_redeemed"] == _usd(700)
        cash = next(t for t in day["tenders"] if t["name"] == "cash")
        assert (cash["net"], day["net"]) == (_usd(0), _usd(0))
        office = post(http, "/v1/gift-cards", {"amount": _usd(100), "paid_in_cash": True})
        assert office.status_code == 409, office.text
        problem = office.json()
        assert problem["code"] == "cash_needs_open_shift"
        assert [e["field"] for e in problem["errors"]] == ["paid_in_cash"]


def test_a_gift_card_in_another_currency_than_the_sale_is_a_400_naming_it(
    platform: Running,
) -> None:
    """A euro card (issued where no store sells in euros) tendered for a dollar sale: a 400
    `currency_mismatch` naming `gift_card_code`, as a redemption in another currency is, not
    a 402 decline. Nothing is taken off the card, no payment is kept, and the order takes
    another tender."""
    http = platform.http
    sku, (store, _) = stocked(http, "GCFX")
    card = ok(_post(http, "/v1/gift-cards", {"amount": {"amount": 5000, "currency": "EUR"}}), 201)
    order = ok(_post(http, "/v1/orders", {"location_id": store,
               "lines": [{"sku": sku, "quantity": 1}]}), 201)  # fmt: skip
    tenders = f"/v1/orders/{order['id']}/tenders"
    refused = _post(http, tenders, {"tender_type": "gift_card", "gift_card_code": card["code"]})
    assert (refused.status_code, refused.json()["code"]) == (400, "currency_mismatch"), refused.text
    assert [e["field"] for e in refused.json()["errors"]] == ["gift_card_code"]
    assert "EUR" in refused.json()["errors"][0]["reason"] and card["code"] not in refused.text
    held = ok(http.get(f"/v1/gift-cards/{card['gift_card']['id']}"))
    assert held["balance"] == {"amount": 5000, "currency": "EUR"}
    assert ok(http.get(f"/v1/orders/{order['id']}"))["status"] == "pending_payment"

    paid = ok(_post(http, tenders, {"tender_type": "card", "card_token": "tok_visa"}), 201)
    assert paid["payment"]["status"] == "authorized"
    confirmed = ok(_post(http, f"/v1/orders/{order['id']}/confirm", {}))
    assert [p["tender_type"] for p in
            ok(http.get(f"/v1/orders/{order['id']}/payments"))["payments"]] == ["card"]  # fmt: skip
    assert confirmed["status"] in ("confirmed", "completed")


def test_a_card_issued_here_names_no_order_line(platform: Running) -> None:
    """An order's gift card line is issued by the order itself (when it is confirmed), naming
    its line; a card issued through `POST /v1/gift-cards` names none: a 400 naming
    `order_line_id`, and nothing is made. Before, any line id went with any order: a card
    naming an order's gift card line, which the order's recovery (finding its line's card by
    order and line) could take for the line's own card."""
    with platform.new_merchant(f"Line Cards {uuid.uuid4().hex[:8]}") as http:
        store = ok(post(http, "/v1/locations", {"name": "Lines", "currency": "USD"}), 201)["id"]
        order = ok(_post(http, "/v1/orders", {"location_id": store, "lines": [
            {"quantity": 1, "gift_card": {"amount": _usd(2000)}}]}), 201)  # fmt: skip
        (line,) = order["lines"]
        for named in (line["id"], "L9"):
            body = {"amount": _usd(2000), "location_id": store, "order_id": order["id"],
                    "order_line_id": named}  # fmt: skip
            refused = _post(http, "/v1/gift-cards", body)
            assert refused.status_code == 400, refused.text
            assert refused.json()["code"] == "invalid_request"
            assert [e["field"] for e in refused.json()["errors"]] == ["order_line_id"]
        assert ok(http.get("/v1/gift-cards", params={"location_id": store}))["data"] == []
        # The order's own card is the line's.
        paid = _post(http, f"/v1/orders/{order['id']}/tenders",
                     {"tender_type": "card", "card_token": "tok_visa"})  # fmt: skip
        assert paid.status_code == 201, paid.text
        confirmed = _post(http, f"/v1/orders/{order['id']}/confirm", {})
        assert confirmed.status_code == 200, confirmed.text
        (card,) = ok(http.get("/v1/gift-cards", params={"location_id": store}))["data"]
        assert (card["order_id"], card["order_line_id"]) == (order["id"], line["id"])


def test_a_gift_card_tender_the_card_cannot_pay_is_a_409_naming_the_field(
    platform: Running,
) -> None:
    """A gift card tender whose card holds less than the tender is a 409 `insufficient_funds`
    naming `amount.amount` with the most it can be, and one whose card is deactivated a 409
    `gift_card_inactive` naming `gift_card_code`, as a redemption's are: the platform's own
    ledger refuses them, no processor declined a card. Nothing is taken off either card, and
    the order still waits for payment with as much due, taking another tender. A card the
    processor declines for insufficient funds is still a 402 `payment_declined`."""
    http = platform.http
    sku, (store, _) = stocked(http, "GCNF")
    order = ok(_post(http, "/v1/orders", {"location_id": store,
               "lines": [{"sku": sku, "quantity": 1}]}), 201)  # fmt: skip
    tenders = f"/v1/orders/{order['id']}/tenders"
    due = ok(http.get(f"/v1/orders/{order['id']}/payments"))["balance_due"]
    short = ok(_post(http, "/v1/gift-cards", {"amount": _usd(300)}), 201)
    spent = ok(_post(http, "/v1/gift-cards", {"amount": _usd(5000)}), 201)
    ok(_post(http, f"/v1/gift-cards/{spent['gift_card']['id']}/deactivate", {}))

    refused = _post(http, tenders, {"tender_type": "gift_card", "gift_card_code": short["code"]})
    assert (refused.status_code, refused.json()["code"]) == (409, "insufficient_funds"), (
        refused.text
    )
    assert refused.json()["errors"] == [
        {"field": "amount.amount", "reason": "must be at most 300, what the gift card holds"}
    ]
    assert short["code"] not in refused.text
    inactive = _post(http, tenders, {"tender_type": "gift_card", "gift_card_code": spent["code"]})
    assert (inactive.status_code, inactive.json()["code"]) == (409, "gift_card_inactive"), (
        inactive.text
    )
    assert [e["field"] for e in inactive.json()["errors"]] == ["gift_card_code"]
    assert spent["code"] not in inactive.text
    declined = _post(http, tenders, {"tender_type": "card", "card_token": "tok_insufficient_funds"})
    assert (declined.status_code, declined.json()["code"]) == (402, "payment_declined")

    assert ok(http.get(f"/v1/gift-cards/{short['gift_card']['id']}"))["balance"] == _usd(300)
    after = ok(http.get(f"/v1/orders/{order['id']}/payments"))
    assert after["balance_due"] == due
    assert [p["tender_type"] for p in after["payments"] if p["status"] != "failed"] == []
    assert ok(http.get(f"/v1/orders/{order['id']}"))["status"] == "pending_payment"
    # What the card holds, then a card for the rest: the sale goes through.
    part = {"tender_type": "gift_card", "gift_card_code": short["code"], "amount": _usd(300)}
    assert ok(_post(http, tenders, part), 201)["payment"]["status"] == "authorized"
    ok(_post(http, tenders, {"tender_type": "card", "card_token": "tok_visa"}), 201)
    confirmed = ok(_post(http, f"/v1/orders/{order['id']}/confirm", {}))
    assert confirmed["status"] in ("confirmed", "completed")
    assert ok(http.get(f"/v1/gift-cards/{short['gift_card']['id']}"))["balance"] == _usd(0)


def test_a_gift_card_tender_with_a_code_no_card_has_is_a_404_naming_it(
    platform: Running,
) -> None:
    """A code no card has (a typo, another merchant's card) as a tender is the 404
    `resource_missing` of a gift card, naming `gift_card_code`, as the catalogue says of
    every code that matches no card; nothing is taken and the order takes another tender."""
    http = platform.http
    sku, (store, _) = stocked(http, "GCNO")
    order = ok(_post(http, "/v1/orders", {"location_id": store,
               "lines": [{"sku": sku, "quantity": 1}]}), 201)  # fmt: skip
    tenders = f"/v1/orders/{order['id']}/tenders"
    for code in ("NOSUCH-CARD-0000-0000", "short-1"):
        missing = _post(http, tenders, {"tender_type": "gift_card", "gift_card_code": code})
        assert (missing.status_code, missing.json()["code"]) == (404, "resource_missing"), (
            missing.text
        )
        assert missing.json()["resource"] == "gift card"
        assert missing.json()["errors"] == [
            {"field": "gift_card_code", "reason": "no such gift card"}
        ]
        assert code not in missing.text
    assert ok(http.get(f"/v1/orders/{order['id']}"))["status"] == "pending_payment"
    paid = ok(_post(http, tenders, {"tender_type": "card", "card_token": "tok_visa"}), 201)
    assert paid["payment"]["status"] == "authorized"
