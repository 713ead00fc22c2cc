"""Payments and refunds through the gateway over HTTP, every service a separate process."""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from contextlib import closing
from typing import Any

import httpx
import pytest

from pos_devstack.http_checks import ok, open_till, post, post_answered, stocked
from pos_devstack.testing import Running

pytestmark = pytest.mark.e2e


def _eventually(check: Callable[[], Any], timeout: float = 30.0) -> Any:
    deadline = time.monotonic() + timeout
    while not (value := check()):
        assert time.monotonic() < deadline, "the expected state was not reached in time"
        time.sleep(0.1)
    return value


def _post(http: httpx.Client, path: str, body: dict[str, Any], key: str | None = None) -> Any:
    return http.post(path, json=body, headers={"Idempotency-Key": key or str(uuid.uuid4())})


def _sale(http: httpx.Client, source: str = "tok_visa") -> dict[str, Any]:
    location = http.get("/v1/locations").json()["data"][0]["id"]
    body = {
        "location_id": location,
        "lines": [{"sku": "MUG-LOGO", "quantity": 1}],
        "tender_type": "card",
        "card_token": source,
    }
    answer = _post(http, "/v1/checkouts", body)
    assert answer.status_code == 201, answer.text
    sale: dict[str, Any] = answer.json()
    return sale


def test_a_sale_is_refunded_in_parts_to_its_card_never_beyond_it(platform: Running) -> None:
    http = platform.http
    sale = _sale(http)
    payment = sale["payment"]
    assert (payment["status"], payment["card_brand"]) == ("captured", "visa")
    total = payment["captured"]["amount"]
    got = http.get(f"/v1/payments/{payment['id']}").json()
    assert got["captured"] == payment["captured"]

    key = str(uuid.uuid4())
    part = {"amount": {"amount": 100, "currency": "USD"}, "reason": "scratched",
            "lines": [{"sku": "MUG-LOGO", "quantity": 1}]}  # fmt: skip
    first = _post(http, f"/v1/payments/{payment['id']}/refunds", part, key)
    assert first.status_code == 201, first.text
    replay = _post(http, f"/v1/payments/{payment['id']}/refunds", part, key)
    assert replay.json() == first.json()  # the same Idempotency-Key refunds nothing more
    refund = first.json()["data"][0]
    assert (refund["status"], refund["tender_type"]) == ("succeeded", "card")

    # The rest, by concurrent requests: never more than was captured. (A busy machine may
    # answer one a 503: sent again with its key, as a till does.)
    rest = {"amount": {"amount": 50, "currency": "USD"}}
    with ThreadPoolExecutor(8) as pool:
        answers = list(
            pool.map(
                lambda _: post_answered(http, f"/v1/payments/{payment['id']}/refunds", rest),
                range(total // 50),
            )
        )
    done = [a for a in answers if a.status_code == 201]
    assert {a.status_code for a in answers} <= {201, 409}
    assert 100 + 50 * len(done) <= total
    assert all(a.json()["code"] == "amount_exceeds_refundable" for a in answers if a not in done)

    refunds = http.get("/v1/refunds", params={"payment_id": payment["id"]}).json()["data"]
    assert sum(r["amount"]["amount"] for r in refunds) == 100 + 50 * len(done)
    assert http.get(f"/v1/refunds/{refund['id']}").json() == refund
    after = http.get(f"/v1/payments/{payment['id']}").json()
    assert after["refunded"]["amount"] == 100 + 50 * len(done)

    # A payment captured in full has nothing to capture or void: 409 problems.
    capture = _post(http, f"/v1/payments/{payment['id']}/capture", {})
    assert capture.status_code == 409, capture.text
    void = _post(http, f"/v1/payments/{payment['id']}/void", {})
    assert (void.status_code, void.json()["code"]) == (409, "payment_captured")


def test_an_order_refund_goes_back_to_its_tenders_and_lists_filter(platform: Running) -> None:
    http = platform.http
    sale = _sale(http, "tok_amex")
    order = sale["order"]["id"]
    answer = _post(http, f"/v1/orders/{order}/refunds", {"reason": "cancelled"})
    assert answer.status_code == 201, answer.text
    [refund] = answer.json()["data"]
    assert refund["amount"] == sale["payment"]["captured"]
    listed = http.get("/v1/payments", params={"order_id": order, "status": "captured"})
    assert [p["id"] for p in listed.json()["data"]] == [sale["payment"]["id"]]
    again = _post(http, f"/v1/orders/{order}/refunds", {})
    assert (again.status_code, again.json()["code"]) == (409, "amount_exceeds_refundable")
    summary = http.get(f"/v1/orders/{order}/payments").json()
    total = sale["order"]["total"]["amount"]
    assert (summary["captured"]["amount"], summary["refunded"]["amount"]) == (total, total)
    assert summary["balance_due"]["amount"] == 0
    assert [p["id"] for p in summary["payments"]] == [sale["payment"]["id"]]
    unknown = http.get("/v1/payments", params={"order_id": "ord_unknown"})
    assert unknown.status_code == 404
    bad = _post(
        http, f"/v1/payments/{sale['payment']['id']}/refunds", {"amount": {"amount": 1,
        "currency": "EUR"}}
    )  # fmt: skip
    assert bad.status_code == 400
    assert bad.json()["errors"][0]["field"] == "amount.currency"


def test_an_order_with_no_payment_has_nothing_to_refund_and_a_made_up_one_is_missing(
    platform: Running,
) -> None:
    http = platform.http
    location = http.get("/v1/locations").json()["data"][0]["id"]
    body = {"location_id": location, "lines": [{"sku": "MUG-LOGO", "quantity": 1}]}
    made = _post(http, "/v1/orders", body)
    assert made.status_code == 201, made.text
    order = made.json()["id"]
    answer = _post(http, f"/v1/orders/{order}/refunds", {"reason": "goodwill"})
    assert (answer.status_code, answer.json()["code"]) == (409, "not_captured"), answer.text
    missing = _post(http, "/v1/orders/ord_00000000000000000000000000/refunds", {})
    assert missing.status_code == 404, missing.text


def test_a_terminal_checkout_is_pending_until_the_reader_answers(platform: Running) -> None:
    http = platform.http
    location = http.get("/v1/locations").json()["data"][0]["id"]
    body = {
        "location_id": location,
        "device_id": "sandbox_reader_approve",
        "amount": {"amount": 900, "currency": "USD"},
        "tip": {"amount": 100, "currency": "USD"},
        "reference": "register 1 sale 7",
    }
    created = _post(http, "/v1/terminal-checkouts", body)
    assert created.status_code == 201, created.text
    checkout = created.json()
    assert checkout["status"] == "pending"

    def answered() -> dict[str, Any] | None:
        got: dict[str, Any] = http.get(f"/v1/terminal-checkouts/{checkout['id']}").json()
        return None if got["status"] == "pending" else got

    done = _eventually(answered)  # the reader answers in its own time (the background sweep)
    assert done["status"] == "completed"
    payment = http.get(f"/v1/payments/{done['payment_id']}").json()
    assert (payment["status"], payment["total"]["amount"]) == ("captured", 1000)
    late = _post(http, f"/v1/terminal-checkouts/{checkout['id']}/cancel", {})
    assert (late.status_code, late.json()["code"]) == (409, "terminal_checkout_final")

    waiting = _post(http, "/v1/terminal-checkouts", {**body, "device_id": "sandbox_reader_timeout"})
    cancelled = _post(http, f"/v1/terminal-checkouts/{waiting.json()['id']}/cancel", {})
    assert cancelled.json()["status"] == "cancelled"


def test_a_terminal_checkout_in_another_currency_than_its_locations_is_refused(
    platform: Running,
) -> None:
    """A USD store's reader asked for euros: a 400 on `amount.currency` and nothing sent to
    the reader (it was taken, and the store's settlement report, in USD, left it out)."""
    http = platform.http
    location = http.get("/v1/locations").json()["data"][0]
    assert location["currency"] == "USD"
    body = {
        "location_id": location["id"],
        "device_id": "sandbox_reader_approve",
        "amount": {"amount": 900, "currency": "EUR"},
        "tip": {"amount": 100, "currency": "USD"},
        "reference": f"eur {uuid.uuid4().hex[:8]}",
    }
    before = http.get("/v1/payments", params={"location_id": location["id"], "limit": 200})

    refused = _post(http, "/v1/terminal-checkouts", body)

    assert (refused.status_code, refused.json()["code"]) == (400, "currency_mismatch")
    assert [e["field"] for e in refused.json()["errors"]] == ["amount.currency"]
    after = http.get("/v1/payments", params={"location_id": location["id"], "limit": 200})
    assert after.json()["data"] == before.json()["data"]


def test_a_terminal_checkout_past_the_money_ceiling_is_a_400_naming_the_tip(
    platform: Running,
) -> None:
    """An amount and a tip each within 10^12 minor units whose sum, what the reader charges,
    is past it: a 400 naming `tip.amount`, never a 500, and nothing sent to the reader."""
    http = platform.http
    location = http.get("/v1/locations").json()["data"][0]["id"]
    body = {
        "location_id": location,
        "device_id": "sandbox_reader_approve",
        "amount": {"amount": 10**12, "currency": "USD"},
        "tip": {"amount": 1, "currency": "USD"},
        "reference": f"ceiling {uuid.uuid4().hex[:8]}",
    }
    before = http.get("/v1/payments", params={"location_id": location, "limit": 200})

    refused = _post(http, "/v1/terminal-checkouts", body)

    assert (refused.status_code, refused.json()["code"]) == (400, "invalid_request"), refused.text
    assert [e["field"] for e in refused.json()["errors"]] == ["tip.amount"]
    after = http.get("/v1/payments", params={"location_id": location, "limit": 200})
    assert after.json()["data"] == before.json()["data"]


def test_cancels_of_one_terminal_checkout_all_answer_it_cancelled(platform: Running) -> None:
    """Five cancels at once, then another: each answers 200 with the checkout cancelled,
    whether it cancelled it or found it so; under one Idempotency-Key the ones sent while the
    first runs are told so (409 `idempotency_request_in_progress`), the later one replays."""
    http = platform.http
    location = http.get("/v1/locations").json()["data"][0]["id"]
    body = {
        "location_id": location,
        "device_id": "sandbox_reader_timeout",  # never answers: the register cancels
        "amount": {"amount": 900, "currency": "USD"},
        "reference": "register 1 sale 8",
    }

    async def cancel_five_at_once(checkout_id: str, keys: list[str]) -> list[httpx.Response]:
        async with httpx.AsyncClient(
            base_url=platform.platform.gateway_url,
            headers={"Authorization": f"Bearer {platform.key}"},
            timeout=15.0,
        ) as client:
            path = f"/v1/terminal-checkouts/{checkout_id}/cancel"
            return list(
                await asyncio.gather(
                    *(client.post(path, json={}, headers={"Idempotency-Key": k}) for k in keys)
                )
            )

    # Each with its own key.
    created = _post(http, "/v1/terminal-checkouts", body)
    assert created.status_code == 201, created.text
    checkout_id = created.json()["id"]
    keys = [str(uuid.uuid4()) for _ in range(5)]
    answers = asyncio.run(cancel_five_at_once(checkout_id, keys))
    answers.append(_post(http, f"/v1/terminal-checkouts/{checkout_id}/cancel", {}))
    answers.append(_post(http, f"/v1/terminal-checkouts/{checkout_id}/cancel", {}, keys[0]))
    ended = http.get(f"/v1/terminal-checkouts/{checkout_id}").json()
    assert ended["status"] == "cancelled"
    assert [(a.status_code, a.json()) for a in answers] == [(200, ended)] * 7
    assert answers[-1].headers["Idempotent-Replayed"] == "true"

    # All under one key.
    created = _post(http, "/v1/terminal-checkouts", body)
    checkout_id = created.json()["id"]
    key = str(uuid.uuid4())
    answers = asyncio.run(cancel_five_at_once(checkout_id, [key] * 5))
    ended = http.get(f"/v1/terminal-checkouts/{checkout_id}").json()
    assert ended["status"] == "cancelled"
    for answer in answers:
        if answer.status_code == 409:
            assert answer.json()["code"] == "idempotency_request_in_progress", answer.text
        else:
            assert (answer.status_code, answer.json()) == (200, ended)
    assert 200 in [a.status_code for a in answers]
    replayed = _post(http, f"/v1/terminal-checkouts/{checkout_id}/cancel", {}, key)
    assert (replayed.status_code, replayed.json()) == (200, ended)
    assert replayed.headers["Idempotent-Replayed"] == "true"


def test_the_authorisation_window_is_the_merchants_setting(platform: Running) -> None:
    with platform.new_merchant("Window settings") as http:
        assert http.get("/v1/payment-settings").json() == {
            "authorization_window_seconds": 3600,  # the sandbox's default
            "updated_at": None,
            "version": 1,  # the defaults
        }
        put = http.put("/v1/payment-settings", json={"authorization_window_seconds": 86400})
        assert put.status_code == 200, put.text
        assert put.json()["version"] == 2
        assert http.get("/v1/payment-settings").json()["authorization_window_seconds"] == 86400
        bad = http.put("/v1/payment-settings", json={"authorization_window_seconds": 1})
        assert bad.status_code == 400


def test_a_processor_out_of_reach_is_a_503_naming_it_and_a_retry_finishes_the_same_sale(
    platform: Running,
) -> None:
    http = platform.http
    store = http.get("/v1/locations").json()["data"][0]["id"]
    body = {"location_id": store, "lines": [{"sku": "MUG-LOGO", "quantity": 1}],
            "tender_type": "card", "card_token": "tok_processing_error"}  # fmt: skip
    key = str(uuid.uuid4())
    down = _post(http, "/v1/checkouts", body, key)
    assert down.status_code == 503, down.text
    # The processor was out of reach, not the platform's payment service: the code says so.
    assert down.json()["code"] == "processor_unavailable"
    assert down.headers["Retry-After"]
    again = _post(http, "/v1/checkouts", body, key)
    assert (again.status_code, again.json()["code"]) == (503, "processor_unavailable")


def test_a_web_orders_tender_the_processor_never_had_holds_up_no_other(
    platform: Running,
) -> None:
    """A web order's card tender with the processor out of reach: a 503
    `processor_unavailable`, no payment made. A gift card right after is taken at once (it
    was a 409 `payment_pending` for about a minute), and the first request's retry under its
    key, the balance covered now, takes nothing: one payment in all."""
    http = platform.http
    sku, (store, *_) = stocked(http, "UNREACHED")
    order = ok(_post(http, "/v1/orders", {"location_id": store,
               "lines": [{"sku": sku, "quantity": 1}]}), 201)  # fmt: skip
    card = ok(_post(http, "/v1/gift-cards", {"amount": order["total"]}), 201)
    tenders = f"/v1/orders/{order['id']}/tenders"
    unreached = {"tender_type": "card", "card_token": "tok_processing_error"}
    key = str(uuid.uuid4())
    down = _post(http, tenders, unreached, key)
    assert (down.status_code, down.json()["code"]) == (503, "processor_unavailable"), down.text

    taken = _post(http, tenders, {"tender_type": "gift_card", "gift_card_code": card["code"]})

    assert taken.status_code == 201, taken.text
    again = _post(http, tenders, unreached, key)
    assert (again.status_code, again.json()["code"]) == (409, "balance_covered"), again.text
    payments = ok(http.get(f"/v1/orders/{order['id']}/payments"))
    assert [p["id"] for p in payments["payments"]] == [taken.json()["payment"]["id"]]


def _window_refused(http: httpx.Client, path: str, first: str, second: str) -> None:
    """The windows a list refuses, each a 400 naming its field: swapped, not a time, no zone."""
    for window, field in (
        ({"created_since": second, "created_before": first}, "created_before"),
        ({"created_since": "yesterday"}, "created_since"),
        ({"created_before": "2026-12-01T00:00:00"}, "created_before"),
    ):
        refused = http.get(path, params=window)
        assert refused.status_code == 400, refused.text
        assert [e["field"] for e in refused.json()["errors"]] == [field], refused.text


def _created_lists(http: httpx.Client, path: str) -> Callable[..., list[str]]:
    def listed(**window: str) -> list[str]:
        answer = http.get(path, params=window)
        assert answer.status_code == 200, answer.text
        return [x["id"] for x in answer.json()["data"]]

    return listed


def test_payments_are_listed_by_when_they_were_created(platform: Running) -> None:
    """`created_since` and `created_before` as on /v1/orders: a day's or a shift's payments.
    Before, the list did not read them and answered every payment."""
    with platform.new_merchant(f"Paid {uuid.uuid4().hex[:8]}") as http:
        ok(post(http, "/v1/locations", {"name": "Till St", "currency": "USD"}), 201)
        sku, (store, *_) = stocked(http, "PAID")
        body = {"location_id": store, "lines": [{"sku": sku, "quantity": 1}],
                "tender_type": "card", "card_token": "tok_visa"}  # fmt: skip
        first = ok(post(http, "/v1/checkouts", body), 201)["payment"]
        second = ok(post(http, "/v1/checkouts", body), 201)["payment"]
        assert second["created_at"] > first["created_at"]

        listed = _created_lists(http, "/v1/payments")
        assert listed(created_since=second["created_at"]) == [second["id"]]
        assert listed(created_before=second["created_at"]) == [first["id"]]
        assert listed(created_since=first["created_at"], created_before=second["created_at"]) == [
            first["id"]
        ]
        _window_refused(http, "/v1/payments", first["created_at"], second["created_at"])


def test_refunds_are_listed_by_when_they_were_created(platform: Running) -> None:
    """`created_since` and `created_before` as on /v1/orders: a day's or a shift's refunds.
    Before, the list did not read them and answered every refund."""
    with platform.new_merchant(f"Refunded {uuid.uuid4().hex[:8]}") as http:
        ok(post(http, "/v1/locations", {"name": "Till St", "currency": "USD"}), 201)
        sku, (store, *_) = stocked(http, "REFUNDED")
        body = {"location_id": store, "lines": [{"sku": sku, "quantity": 1}],
                "tender_type": "card", "card_token": "tok_visa"}  # fmt: skip
        payment = ok(post(http, "/v1/checkouts", body), 201)["payment"]
        part = {"amount": {"amount": 100, "currency": "USD"}, "reason": "scratched"}
        refunds = f"/v1/payments/{payment['id']}/refunds"
        (first,) = ok(post(http, refunds, part), 201)["data"]
        (second,) = ok(post(http, refunds, part), 201)["data"]
        assert second["created_at"] > first["created_at"]

        listed = _created_lists(http, "/v1/refunds")
        assert listed(created_since=second["created_at"]) == [second["id"]]
        assert listed(created_before=second["created_at"]) == [first["id"]]
        assert listed(created_since=first["created_at"], created_before=second["created_at"]) == [
            first["id"]
        ]
        _window_refused(http, "/v1/refunds", first["created_at"], second["created_at"])


def test_a_terminal_checkout_at_an_unknown_location_names_the_field(platform: Running) -> None:
    """The 404 of a location the body names says which field named it, as the services'
    references do; nothing goes to the reader."""
    http = platform.http
    body = {
        "location_id": "loc_made_up",
        "device_id": "sandbox_reader_approve",
        "amount": {"amount": 900, "currency": "USD"},
        "reference": f"nowhere {uuid.uuid4().hex[:8]}",
    }
    refused = _post(http, "/v1/terminal-checkouts", body)
    assert (refused.status_code, refused.json()["code"]) == (404, "resource_missing")
    assert refused.json()["errors"] == [{"field": "location_id", "reason": "no such location"}]


def test_a_cash_refund_is_made_at_a_register_with_an_open_shift_only(platform: Running) -> None:
    """A tee sold for cash at a register, refunded through the payments API. From the back
    office the cash would leave a drawer and count in no shift: a 409
    `cash_refund_needs_open_shift` naming `amount`, on the payment's refunds and the order's,
    and nothing is refunded. At the register while its shift is open it is made, and the
    shift's drawer expects the cash gone. A card's refund from the back office is made as
    before."""
    with platform.new_merchant(f"Cash Back {uuid.uuid4().hex[:8]}") as http:
        ok(post(http, "/v1/locations", {"name": "Till St", "currency": "USD"}), 201)
        sku, (store, *_) = stocked(http, "CASHBACK")
        till = open_till(platform.platform.gateway_url, http, store)
        shift = till.shift
        with closing(till.device) as device:
            sale = {"location_id": store, "lines": [{"sku": sku, "quantity": 1}],
                    "tender_type": "cash",
                    "cash_tendered": {"amount": 5000, "currency": "USD"}}  # fmt: skip
            sold = ok(post(device, "/v1/checkouts", sale), 201)
            order, payment = sold["order"], sold["payment"]
            part = {"amount": {"amount": 400, "currency": "USD"}, "reason": "scratched"}

            for path in (f"/v1/payments/{payment['id']}/refunds",
                         f"/v1/orders/{order['id']}/refunds"):  # fmt: skip
                refused = post(http, path, part)
                assert refused.status_code == 409, refused.text
                problem = refused.json()
                assert problem["code"] == "cash_refund_needs_open_shift"
                assert [e["field"] for e in problem["errors"]] == ["amount"]
                assert payment["id"] in problem["errors"][0]["reason"]
            assert ok(http.get(f"/v1/payments/{payment['id']}"))["refunded"]["amount"] == 0
            assert ok(http.get("/v1/refunds", params={"order_id": order["id"]}))["data"] == []

            (made,) = ok(post(device, f"/v1/payments/{payment['id']}/refunds", part), 201)["data"]
            assert (made["status"], made["amount"]["amount"]) == ("succeeded", 400)
            report = ok(device.get(f"/v1/shifts/{shift['id']}"))["report"]
            assert report["cash_refunds"] == {"amount": 400, "currency": "USD"}
            expected = 10_000 + order["total"]["amount"] - 400
            assert report["expected_cash"]["amount"] == expected

        card = {"location_id": store, "lines": [{"sku": sku, "quantity": 1}],
                "tender_type": "card", "card_token": "tok_visa"}  # fmt: skip
        carded = ok(post(http, "/v1/checkouts", card), 201)
        ok(post(http, f"/v1/orders/{carded['order']['id']}/refunds", part), 201)


def test_a_payment_captured_in_part_is_not_voided_through_the_api(platform: Running) -> None:
    """`POST /v1/payments/{id}/void` releases an authorisation nothing was captured of. A
    payment captured in part (a shipment's share: its status `captured`) is a 409
    `payment_captured` (refund it instead; the order voids the rest when it ends), and is
    left as it was. Until 2026-12-04 it voided the rest under the order shipping it."""
    http = platform.http
    sku, (first, second) = stocked(http, "VOID")
    ship = {"ship_to": "1 Main St, Springfield"}
    body = {
        "location_id": first,
        "channel": "web",
        "lines": [{"sku": sku, "quantity": 1, "fulfillment": 0},
                  {"sku": sku, "quantity": 1, "fulfillment": 1}],
        "fulfillments": [{"type": "shipment", "location_id": first, **ship},
                         {"type": "shipment", "location_id": second, **ship}],
    }  # fmt: skip
    order = ok(post(http, "/v1/orders", body), 201)
    card = {"tender_type": "card", "card_token": "tok_visa"}
    paid = ok(post(http, f"/v1/orders/{order['id']}/tenders", card), 201)["payment"]
    ok(post(http, f"/v1/orders/{order['id']}/confirm", {}))

    step = f"/v1/orders/{order['id']}/fulfillments/{order['fulfillments'][0]['id']}/steps"
    ok(post(http, step, {"status": "picked"}))
    ok(post(http, step, {"status": "shipped", "carrier": "UPS", "tracking_number": "1Z9"}))
    part = ok(http.get(f"/v1/payments/{paid['id']}"))
    assert 0 < part["captured"]["amount"] < part["authorized"]["amount"]
    captured = post(http, f"/v1/payments/{paid['id']}/void", {})
    assert (captured.status_code, captured.json()["code"]) == (409, "payment_captured")
    after = ok(http.get(f"/v1/payments/{paid['id']}"))
    assert (after["status"], after["voided"]["amount"]) == ("captured", 0)


def test_a_registers_list_filter_naming_another_stores_sale_is_a_404_as_a_made_up_one(
    platform: Running,
) -> None:
    """A register's lists of payments and refunds are narrowed to its store. A filter naming
    another store's order or payment (`order_id`, `payment_id`) answers as one naming a
    made-up id does: a 404 naming the parameter. Until 2026-12-05 it answered an empty
    list, 200, where a made-up id answered 404, so a till learned which ids were sales of
    other stores."""
    http = platform.http
    here, there = (loc["id"] for loc in http.get("/v1/locations").json()["data"][:2])
    sold = ok(post(http, "/v1/checkouts", {
        "location_id": there, "lines": [{"sku": "MUG-LOGO", "quantity": 1}],
        "tender_type": "card", "card_token": "tok_visa"}), 201)  # fmt: skip
    theirs = {"order_id": sold["order"]["id"], "payment_id": sold["payment"]["id"]}
    ok(post(http, f"/v1/payments/{theirs['payment_id']}/refunds",
            {"amount": {"amount": 100, "currency": "USD"}}), 201)  # fmt: skip
    made_up = {"order_id": "ord_" + "q" * 22, "payment_id": "pay_" + "q" * 22}
    till = open_till(platform.platform.gateway_url, http, here)
    with closing(till.device) as device:
        for path, name in (("/v1/payments", "order_id"), ("/v1/refunds", "order_id"),
                           ("/v1/refunds", "payment_id")):  # fmt: skip
            answers = [device.get(path, params={name: ids[name]}) for ids in (theirs, made_up)]
            assert [a.status_code for a in answers] == [404, 404], (path, answers[0].text)
            real, fake = (a.json() for a in answers)
            assert real["detail"].replace(theirs[name], made_up[name]) == fake["detail"]
            assert (
                real["errors"]
                == fake["errors"]
                == [{"field": name, "reason": f"no such {name.removesuffix('_id')}"}]
            )
        # Its own store's sale is listed as before.
        mine = ok(post(device, "/v1/checkouts", {
            "location_id": here, "lines": [{"sku": "MUG-LOGO", "quantity": 1}],
            "tender_type": "card", "card_token": "tok_visa"}), 201)  # fmt: skip
        listed = ok(device.get("/v1/payments", params={"order_id": mine["order"]["id"]}))
        assert [p["id"] for p in listed["data"]] == [mine["payment"]["id"]]
    # The merchant's own credential still reads the other store's.
    listed = ok(http.get("/v1/refunds", params={"payment_id": theirs["payment_id"]}))
    assert len(listed["data"]) == 1


def test_a_refund_racing_an_orders_confirmation_is_never_counted_as_paid(
    platform: Running,
) -> None:
    """A refund of a tender of an order waiting for payment, sent at the moment the order is
    confirmed, comes out one way or the other: made first, the confirmation sees the balance
    due (409) or waits its turn (409 `refund_in_progress`); during the confirmation, the
    refund waits its turn (409 `confirmation_in_progress`); made after, it is a refund of a
    confirmed order. Never a confirmation counting money that had gone back."""
    http = platform.http
    here = http.get("/v1/locations").json()["data"][0]["id"]
    for n in range(10):
        line = {"sku": "MUG-LOGO", "quantity": 1}
        made = _post(http, "/v1/orders", {"location_id": here, "channel": "web", "lines": [line]})
        assert made.status_code == 201, made.text
        order_id = made.json()["id"]
        tender = {"tender_type": "external", "external_reference": f"chk-{n}"}
        paid = _post(http, f"/v1/orders/{order_id}/tenders", tender)
        assert paid.status_code in (200, 201), paid.text
        payment_id = paid.json()["payment"]["id"]
        with ThreadPoolExecutor(2) as pool:
            back = pool.submit(_post, http, f"/v1/payments/{payment_id}/refunds",
                               {"amount": {"amount": 500, "currency": "USD"}})  # fmt: skip
            time.sleep(0.003 * n)
            confirm = pool.submit(_post, http, f"/v1/orders/{order_id}/confirm", {})
            confirmed, refunded = confirm.result(), back.result()
        order = http.get(f"/v1/orders/{order_id}").json()
        if confirmed.status_code != 200:
            assert confirmed.json()["code"] in ("balance_due", "refund_in_progress"), confirmed.text
            assert order["status"] == "pending_payment", order
            continue
        assert order["status"] in ("confirmed", "completed"), order
        if refunded.status_code != 201:
            assert refunded.json()["code"] == "confirmation_in_progress", refunded.text
            continue
        # Both made: the refund came after the confirmation, of a confirmed order.
        at = [t["at"] for t in order["timeline"] if t["status"] == "confirmed"]
        assert at and refunded.json()["data"][0]["created_at"] > at[0], (order, refunded.text)


def test_a_void_racing_an_orders_confirmation_is_never_counted_as_paid(
    platform: Running,
) -> None:
    """The void of a tender only authorised (a shipment's card, captured when it ships), sent
    at the moment its order is confirmed, comes out one way or the other, as a refund does:
    made first, the confirmation sees the balance due (409) or waits its turn (409
    `refund_in_progress`); during the confirmation, the void waits its turn (409
    `confirmation_in_progress`); made after, it is the void of a confirmed order's tender,
    which asks for another before its goods leave. Never a confirmation counting an
    authorisation released meanwhile. Each interleaving is judged by what it answered, so the
    staggering only spreads the runs over them."""
    http = platform.http
    sku, (here, _) = stocked(http, "VOIDRACE", units=10)
    for n in range(10):
        body = {
            "location_id": here,
            "channel": "web",
            "lines": [{"sku": sku, "quantity": 1, "fulfillment": 0}],
            "fulfillments": [{"type": "shipment", "location_id": here,
                              "ship_to": "1 Main St, Springfield"}],
        }  # fmt: skip
        order_id = ok(post(http, "/v1/orders", body), 201)["id"]
        card = {"tender_type": "card", "card_token": "tok_visa"}
        payment = ok(post(http, f"/v1/orders/{order_id}/tenders", card), 201)["payment"]
        assert payment["status"] == "authorized", payment
        with ThreadPoolExecutor(2) as pool:
            void = pool.submit(_post, http, f"/v1/payments/{payment['id']}/void", {})
            time.sleep(0.003 * n)
            confirm = pool.submit(_post, http, f"/v1/orders/{order_id}/confirm", {})
            confirmed, voided = confirm.result(), void.result()
        order = http.get(f"/v1/orders/{order_id}").json()
        after = http.get(f"/v1/payments/{payment['id']}").json()
        if confirmed.status_code != 200:
            assert confirmed.json()["code"] in ("balance_due", "refund_in_progress"), confirmed.text
            assert order["status"] == "pending_payment", order
            continue
        assert order["status"] == "confirmed", order
        if voided.status_code != 200:
            assert voided.json()["code"] == "confirmation_in_progress", voided.text
            assert after["status"] == "authorized", after
            continue
        # Both made: the void came after the confirmation, of a confirmed order.
        assert after["status"] == "voided", after
        at = [t["at"] for t in order["timeline"] if t["status"] == "confirmed"]
        assert at and after["updated_at"] > at[0], (order, after)


def test_a_refund_in_another_currency_than_the_payments_is_a_currency_mismatch(
    platform: Running,
) -> None:
    """A refund whose amount is in another currency than its payment's is the 400
    `currency_mismatch` naming the amount's currency, the catalogue's code for an amount in
    the wrong currency (refunds, gift cards, settlement reports alike); nothing is refunded."""
    http = platform.http
    sale = _sale(http)
    payment, order = sale["payment"]["id"], sale["order"]["id"]
    euros = {"amount": 1, "currency": "EUR"}
    for path, body, field in (
        (f"/v1/payments/{payment}/refunds", {"amount": euros}, "amount.currency"),
        (f"/v1/orders/{order}/refunds", {"amount": euros}, "amount.currency"),
    ):
        refused = _post(http, path, body)
        assert (refused.status_code, refused.json()["code"]) == (400, "currency_mismatch"), (
            refused.text
        )
        assert [e["field"] for e in refused.json()["errors"]] == [field]
    assert ok(http.get(f"/v1/payments/{payment}"))["refunded"]["amount"] == 0


def test_a_capture_of_a_payment_captured_in_full_is_payment_captured(platform: Running) -> None:
    """A payment of no order captured in full (a reader's sale, captured at once) has nothing
    left to capture: a capture is the 409 `payment_captured` (refund it instead), as a void of
    it is, not `amount_exceeds_authorization`, which asks for less; nothing changes."""
    http = platform.http
    location = http.get("/v1/locations").json()["data"][0]["id"]
    body = {"location_id": location, "device_id": "sandbox_reader_approve",
            "amount": {"amount": 700, "currency": "USD"},
            "reference": "register 1 sale 9"}  # fmt: skip
    checkout = ok(_post(http, "/v1/terminal-checkouts", body), 201)

    def answered() -> dict[str, Any] | None:
        got: dict[str, Any] = http.get(f"/v1/terminal-checkouts/{checkout['id']}").json()
        return None if got["status"] == "pending" else got

    done = _eventually(answered)
    assert done["status"] == "completed"
    payment = ok(http.get(f"/v1/payments/{done['payment_id']}"))
    assert (payment["status"], payment["captured"]["amount"]) == ("captured", 700)
    for capture in ({}, {"amount": {"amount": 1, "currency": "USD"}}):
        refused = _post(http, f"/v1/payments/{payment['id']}/capture", capture)
        assert (refused.status_code, refused.json()["code"]) == (409, "payment_captured"), (
            refused.text
        )
    void = _post(http, f"/v1/payments/{payment['id']}/void", {})
    assert (void.status_code, void.json()["code"]) == (409, "payment_captured")
    assert ok(http.get(f"/v1/payments/{payment['id']}")) == payment
