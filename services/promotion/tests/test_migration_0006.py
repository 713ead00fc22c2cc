"""Migration 0006: the windows of promotions stored before it are kept as instants too, so the
list's `schedule_state` filter finds them as their answers read."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path

import psycopg

import pos_promotion
from pos_devstack.testing import Infra
from pos_kit import migrate as kit_migrate

MIGRATIONS = Path(pos_promotion.__file__).parent / "migrations"


def test_a_stored_window_is_kept_as_the_instants_it_opens_and_closes(infra: Infra) -> None:
    url = infra.create_database("promotion")
    kit_migrate.upgrade(MIGRATIONS, url, "0005")
    offers = {
        # Its own zone: 09:00 in New York is 14:00 UTC in December.
        "prm_ny": {
            "starts_at": "2026-12-05T09:00:00",
            "ends_at": "",
            "time_zone": "America/New_York",
        },
        # No zone: it opens at the first location anywhere (UTC+14), closes at the last (UTC-12).
        "prm_any": {"starts_at": "2026-12-05T00:00:00", "ends_at": "2026-12-06T00:00:00"},
        "prm_none": {"starts_at": None, "ends_at": None, "time_zone": ""},
    }
    with psycopg.connect(url) as conn:
        for offer_id, window in offers.items():
            conn.execute(
                "INSERT INTO promotions (merchant_id, id, name, percent_off_bps, definition)"
                " VALUES ('mer_1', %s, 'x', 0, %s)",
                (offer_id, json.dumps({"rule": {}, "conditions": window})),
            )
        # A first-version row: no definition, no window.
        conn.execute(
            "INSERT INTO promotions (merchant_id, id, name, percent_off_bps)"
            " VALUES ('mer_1', 'prm_first', 'x', 1000)"
        )
    kit_migrate.upgrade(MIGRATIONS, url, "head")
    with psycopg.connect(url) as conn:
        rows = conn.execute("SELECT id, opens_at, closes_at FROM promotions ORDER BY id").fetchall()
    assert rows == [
        ("prm_any", datetime(2026, 12, 4, 10, tzinfo=UTC), datetime(2026, 12, 6, 12, tzinfo=UTC)),
        ("prm_first", None, None),
        ("prm_none", None, None),
        ("prm_ny", datetime(2026, 12, 5, 14, tzinfo=UTC), None),
    ]
