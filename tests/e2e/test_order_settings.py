"""The order settings are one resource though two services hold them (the authorisation window
is the payment service's): one version covers every field shown, and a change is made whole
or not at all, whichever of the two writes fails."""

from __future__ import annotations

import time
import uuid
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any

import httpx
import psycopg
import pytest

from pos_devstack.testing import Running

pytestmark = pytest.mark.e2e

PATH = "/v1/order-settings"


def _read(http: httpx.Client) -> tuple[dict[str, Any], str]:
    answer = http.get(PATH)
    assert answer.status_code == 200, answer.text
    return answer.json(), answer.headers["ETag"]


def test_the_version_covers_the_authorization_window(platform: Running) -> None:
    with platform.new_merchant("Settings version covers the window") as http:
        first, etag = _read(http)
        assert (first["version"], etag) == (1, '"1"')
        # The window changed from the payment settings: the order settings changed with it.
        put = http.put("/v1/payment-settings", json={"authorization_window_seconds": 7300})
        assert put.status_code == 200, put.text
        moved, etag = _read(http)
        assert (moved["version"], etag, moved["authorization_window_seconds"]) == (2, '"2"', 7300)
        # A change made on what was read before that is refused, the window's as well.
        stale = http.patch(
            PATH,
            json={"hold_seconds": 1200, "authorization_window_seconds": 7400},
            headers={"If-Match": '"1"'},
        )
        assert stale.status_code == 412, stale.text
        assert (stale.json()["code"], stale.json()["current_version"]) == ("version_mismatch", 2)
        assert _read(http) == (moved, '"2"')
        assert http.get("/v1/payment-settings").json()["version"] == 2
        # On the version read: both sides change, and the answer is what GET shows.
        both = http.patch(
            PATH,
            json={"hold_seconds": 1200, "authorization_window_seconds": 7400},
            headers={"If-Match": etag},
        )
        assert both.status_code == 200, both.text
        changed = both.json()
        assert (changed["hold_seconds"], changed["authorization_window_seconds"]) == (1200, 7400)
        assert changed["version"] > 2
        assert _read(http) == (changed, f'"{changed["version"]}"')
        assert both.headers["ETag"] == f'"{changed["version"]}"'
        # A window-only change through here moves the version too; the one before is stale.
        window = http.patch(
            PATH, json={"authorization_window_seconds": 7500}, headers={"If-Match": etag}
        )
        assert (window.status_code, window.json()["current_version"]) == (412, changed["version"])
        window = http.patch(
            PATH,
            json={"authorization_window_seconds": 7500},
            headers={"If-Match": both.headers["ETag"]},
        )
        assert window.status_code == 200, window.text
        assert window.json()["version"] > changed["version"]
        assert _read(http)[0] == window.json()


def test_bad_input_is_a_400_naming_the_field_and_changes_nothing(platform: Running) -> None:
    with platform.new_merchant("Settings refused whole") as http:
        before = _read(http)
        for body, field in (
            ({"hold_seconds": 1200, "authorization_window_seconds": 10},
             "authorization_window_seconds"),
            ({"hold_seconds": 5, "authorization_window_seconds": 7400}, "hold_seconds"),
        ):  # fmt: skip
            answer = http.patch(PATH, json=body, headers={"If-Match": before[1]})
            assert answer.status_code == 400, answer.text
            assert answer.headers["content-type"] == "application/problem+json"
            assert [e["field"] for e in answer.json()["errors"]] == [field]
            assert _read(http) == before
        # A field set to null, or no field at all, changes nothing either: never a silent 200.
        for body, fields in (({"hold_seconds": None}, ["hold_seconds"]), ({}, ["body"])):
            answer = http.patch(PATH, json=body)
            assert answer.status_code == 400, answer.text
            assert [e["field"] for e in answer.json().get("errors", [])] == fields
            assert _read(http) == before
        assert http.get("/v1/payment-settings").json()["version"] == 1


def test_a_change_is_never_half_made_when_either_service_fails(platform: Running) -> None:
    """The payment service down, nothing changes. The order service down (it holds the
    settings' lease, taken before anything is written): nothing changes either, the window
    included. Both up again, the same change applies whole."""
    running = platform.platform
    change = {"hold_seconds": 1500, "authorization_window_seconds": 7600}
    with platform.new_merchant("Settings never half made") as http:
        before, etag = _read(http)
        running.stop_process("payment")
        try:
            failed = http.patch(PATH, json=change)
            assert failed.status_code == 503, failed.text
        finally:
            running.restart_process("payment")
        assert _read(http) == (before, etag)

        running.stop_process("order")
        try:
            failed = http.patch(PATH, json=change)
            assert failed.status_code == 503, failed.text
            payment = http.get("/v1/payment-settings").json()
            assert payment["authorization_window_seconds"] == before["authorization_window_seconds"]
            assert payment["version"] == 1
        finally:
            running.restart_process("order")
        assert _read(http) == (before, etag)
        assert _audit(http, "settings.payments_changed") == []
        assert _audit(http, "settings.orders_changed") == []

        applied = http.patch(PATH, json=change, headers={"If-Match": etag})
        assert applied.status_code == 200, applied.text
        assert {k: applied.json()[k] for k in change} == change
        assert _read(http)[0] == applied.json()


def _audit(http: httpx.Client, action: str) -> list[dict[str, Any]]:
    answer = http.get("/v1/audit-log", params={"action": action})
    assert answer.status_code == 200, answer.text
    entries: list[dict[str, Any]] = answer.json()["data"]
    return entries


def _lock_waiters(conn: psycopg.Connection[Any]) -> int:
    row = conn.execute(
        "SELECT count(*) FROM pg_stat_activity"
        " WHERE datname = current_database() AND wait_event_type = 'Lock'"
    ).fetchone()
    return int(row[0]) if row else 0


def _until_waiting(
    conn: psycopg.Connection[Any],
    count: int,
    *calls: Future[Any],
    or_answered: Future[Any] | None = None,
) -> None:
    """Until `count` statements of the database wait for the row held (the calls in flight
    are parked there), failing at once should one of them answer first (but `or_answered`,
    whose answer ends the wait)."""
    deadline = time.monotonic() + 20
    while _lock_waiters(conn) < count:
        if or_answered is not None and or_answered.done():
            return
        for call in calls:
            assert not call.done(), call.result().text
        assert time.monotonic() < deadline, "the changes never reached the order settings"
        time.sleep(0.02)


def test_concurrent_changes_of_one_version_one_wins_and_the_refused_shows_nothing(
    platform: Running,
) -> None:
    """Two changes sent with the same If-Match, interleaved by hand: the order settings' row is
    held in the order database, so the first change (the hold) waits inside its order-side
    write, and the second (the window) comes while it waits. Exactly one answers 200 and the
    other 412; the refused window is never set, not even while the winner is in flight (a card
    tender authorised meanwhile would take it), and the winner's version is the resource's."""
    marker = f"settings race {uuid.uuid4()}"
    url = platform.platform.env_for("order")["DATABASE_URL"].replace("+psycopg", "")
    with platform.new_merchant("Settings changes race") as http:
        first = http.patch(PATH, json={"return_policy_text": marker})
        assert first.status_code == 200, first.text
        before, etag = _read(http)
        payment_before = http.get("/v1/payment-settings").json()
        with ThreadPoolExecutor(max_workers=2) as pool, psycopg.connect(url) as conn:
            conn.execute(
                "SELECT 1 FROM order_settings WHERE return_policy_text = %s FOR UPDATE", (marker,)
            )
            hold = pool.submit(
                http.patch, PATH, json={"hold_seconds": 1300}, headers={"If-Match": etag}
            )
            _until_waiting(conn, 1, hold)
            window = pool.submit(
                http.patch,
                PATH,
                json={"authorization_window_seconds": 60},
                headers={"If-Match": etag},
            )
            _until_waiting(conn, 2, hold, window)
            # Both in flight: nothing of the change that will be refused is seen.
            payment = http.get("/v1/payment-settings").json()
            assert payment == payment_before
            conn.rollback()
            answers = (hold.result(), window.result())
        assert [a.status_code for a in answers] == [200, 412], [a.text for a in answers]
        won, refused = answers
        assert refused.json()["code"] == "version_mismatch"
        after, after_etag = _read(http)
        assert after == won.json()
        assert won.headers["ETag"] == after_etag == f'"{after["version"]}"'
        assert after["version"] == before["version"] + 1
        assert refused.json()["current_version"] == after["version"]
        assert {**after, "hold_seconds": before["hold_seconds"], "version": 0} == {
            **before,
            "version": 0,
        }
        assert http.get("/v1/payment-settings").json() == payment_before
        assert _audit(http, "settings.payments_changed") == []


def test_a_change_paused_between_its_two_parts_keeps_every_other_out(platform: Running) -> None:
    """The winner held by hand after its window is set and before its order fields are: a
    change sent meanwhile with the same If-Match waits for it (or is refused at once) and is
    a 412 that changed nothing; the winner's answer is the resource's version after it."""
    marker = f"settings halfway {uuid.uuid4()}"
    window_marker = 7200 + uuid.uuid4().int % 80_000
    order_url = platform.platform.env_for("order")["DATABASE_URL"].replace("+psycopg", "")
    payment_url = platform.platform.env_for("payment")["DATABASE_URL"].replace("+psycopg", "")
    with platform.new_merchant("Settings change held halfway") as http:
        assert http.patch(PATH, json={"return_policy_text": marker}).status_code == 200
        put = http.put("/v1/payment-settings", json={"authorization_window_seconds": window_marker})
        assert put.status_code == 200, put.text
        before, etag = _read(http)
        change = {"hold_seconds": 1300, "authorization_window_seconds": 120}
        with (
            ThreadPoolExecutor(max_workers=2) as pool,
            psycopg.connect(order_url) as orders,
            psycopg.connect(payment_url) as payments,
        ):
            payments.execute(
                "SELECT 1 FROM merchant_settings WHERE authorization_window_seconds = %s"
                " FOR UPDATE",
                (window_marker,),
            )
            won = pool.submit(http.patch, PATH, json=change, headers={"If-Match": etag})
            _until_waiting(payments, 1, won)  # past its check, its window being written
            orders.execute(
                "SELECT 1 FROM order_settings WHERE return_policy_text = %s FOR UPDATE", (marker,)
            )
            payments.rollback()
            _until_waiting(orders, 1, won)  # its window set, its order fields being written
            assert http.get("/v1/payment-settings").json()["authorization_window_seconds"] == 120
            refused = pool.submit(
                http.patch,
                PATH,
                json={"authorization_window_seconds": 60},
                headers={"If-Match": etag},
            )
            _until_waiting(orders, 2, won, or_answered=refused)
            orders.rollback()
            answers = (won.result(), refused.result())
        assert [a.status_code for a in answers] == [200, 412], [a.text for a in answers]
        after, after_etag = _read(http)
        assert after == answers[0].json()
        assert answers[0].headers["ETag"] == after_etag
        assert (after["hold_seconds"], after["authorization_window_seconds"]) == (1300, 120)
        assert after["version"] == before["version"] + 2
        windows = [
            e["details"]["authorization_window_seconds"]
            for e in _audit(http, "settings.payments_changed")
        ]
        assert 60 not in windows
