"""Migration 0004: an offer stored with UTC (what an offer naming no zone was stored as) is
stored with none, so it keeps reading the location's zone now that an offer's own zone wins;
an offer that named another zone keeps it."""

from __future__ import annotations

import json
from pathlib import Path

import psycopg

import pos_promotion
from pos_devstack.testing import Infra
from pos_kit import migrate as kit_migrate

MIGRATIONS = Path(pos_promotion.__file__).parent / "migrations"


def test_an_offer_stored_with_utc_reads_the_locations_zone_after_it(infra: Infra) -> None:
    url = infra.create_database("promotion")
    kit_migrate.upgrade(MIGRATIONS, url, "0003")
    with psycopg.connect(url) as conn:
        for offer_id, zone in (("prm_utc", "UTC"), ("prm_berlin", "Europe/Berlin")):
            conn.execute(
                "INSERT INTO promotions (merchant_id, id, name, percent_off_bps, definition)"
                " VALUES ('mer_1', %s, 'x', 0, %s)",
                (offer_id, json.dumps({"rule": {}, "conditions": {"time_zone": zone}})),
            )
    kit_migrate.upgrade(MIGRATIONS, url, "head")
    with psycopg.connect(url) as conn:
        rows = conn.execute(
            "SELECT id, definition #>> '{conditions,time_zone}' FROM promotions ORDER BY id"
        ).fetchall()
    assert rows == [("prm_berlin", "Europe/Berlin"), ("prm_utc", "")]
