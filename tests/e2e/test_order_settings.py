"""The order settings are one resource though two services hold them (the authorisation window
is the payment service's): one version covers every field shown, and a change is made whole
or not at all, whichever of the two writes fails."""

from __future__ import annotations

from typing import Any

import httpx
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
    """The window is written first: the payment service down, nothing changes. The order
    service down after the window was set: the window is set back, and the 503 leaves the
    settings as they were. Both up again, the same change applies whole."""
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
        finally:
            running.restart_process("order")
        after, _ = _read(http)
        assert {**after, "version": 1} == before
        # Set and set back, each in the audit log: the version moved on, and an If-Match read
        # before the attempt is stale (the window did change, twice).
        entries = _audit(http, "settings.payments_changed")
        window = before["authorization_window_seconds"]
        assert sorted(e["details"]["authorization_window_seconds"] for e in entries) == sorted(
            [7600, window]
        )
        assert _audit(http, "settings.orders_changed") == []
        assert after["version"] == 3
        stale = http.patch(PATH, json=change, headers={"If-Match": etag})
        assert (stale.status_code, stale.json()["current_version"]) == (412, 3), stale.text

        applied = http.patch(PATH, json=change, headers={"If-Match": '"3"'})
        assert applied.status_code == 200, applied.text
        assert {k: applied.json()[k] for k in change} == change
        assert _read(http)[0] == applied.json()


def _audit(http: httpx.Client, action: str) -> list[dict[str, Any]]:
    answer = http.get("/v1/audit-log", params={"action": action})
    assert answer.status_code == 200, answer.text
    entries: list[dict[str, Any]] = answer.json()["data"]
    return entries
