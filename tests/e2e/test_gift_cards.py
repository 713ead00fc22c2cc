"""Gift cards and the settlement report through the gateway over HTTP, every service a separate
process: the code is shown once and kept nowhere (no database, log file or stream), code
look-ups are limited per credential, and a location's day reads in its own time zone."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from typing import Any

import httpx
import psycopg
import pytest
from psycopg import sql

from pos_devstack.testing import Running

pytestmark = pytest.mark.e2e


def _post(http: httpx.Client, path: str, body: dict[str, Any], key: str | None = None) -> Any:
    return http.post(path, json=body, headers={"Idempotency-Key": key or str(uuid.uuid4())})


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
        assert "NOPE" not in unknown.text
        too_much = _post(http, f"/v1/gift-cards/{card['id']}/loads", {"amount": _usd(10**6)})
        assert (too_much.status_code, too_much.json()["code"]) == (409, "gift_card_balance_limit")
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
        statuses = [
            _post(http, "/v1/gift-cards/lookup", {"code": f"GUESS-{n:04d}-XXXX"}).status_code
            for n in range(30)
        ]
        assert 429 in statuses and set(statuses) <= {404, 429}
        limited = _post(http, "/v1/gift-cards/lookup", {"code": "GUESS-LAST-XXXX"})
        assert limited.json()["code"] == "code_lookups_limited" and limited.headers["Retry-After"]

    logs = platform.platform.home / "logs"
    logged = "\n".join(p.read_bytes().decode("latin-1") for p in sorted(logs.glob("*.log")))
    dumps = {name: _dump(url) for name, url in platform.platform.database_urls.items()}
    assert card["id"] in dumps["payment"]  # the dumps are of the right databases
    for secret in codes:
        for form in {secret, secret.replace("-", ""), secret.lower()}:
            assert form not in logged
            for name, dumped in dumps.items():
                assert form not in dumped, name
