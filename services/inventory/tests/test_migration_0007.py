"""Migration 0007 gives ledger entries an opaque id column; entries recorded before it keep
the id they were shown (`led_<seq>`), so a page token holding one still pages on from it."""

from __future__ import annotations

from pathlib import Path

import psycopg

import pos_inventory
from pos_devstack.testing import Infra
from pos_kit import migrate as kit_migrate

MIGRATIONS = Path(pos_inventory.__file__).parent / "migrations"


def test_entries_recorded_before_keep_their_ids(infra: Infra) -> None:
    url = infra.create_database("inventory")
    kit_migrate.upgrade(MIGRATIONS, url, "0006")
    with psycopg.connect(url) as conn:
        seqs = [
            conn.execute(
                "INSERT INTO stock_ledger (merchant_id, sku, location_id, delta, reason,"
                " on_hand_after) VALUES ('mer_1', 'PEN', 'loc_1', %s, 'received', %s)"
                " RETURNING seq",
                (n, n),
            ).fetchone()[0]  # type: ignore[index]
            for n in (1, 2)
        ]
    kit_migrate.upgrade(MIGRATIONS, url, "head")
    with psycopg.connect(url) as conn:
        rows = conn.execute("SELECT seq, entry_id FROM stock_ledger ORDER BY seq").fetchall()
        # A process older than the migration inserts without the id: an opaque one still.
        (made,) = conn.execute(
            "INSERT INTO stock_ledger (merchant_id, sku, location_id, delta, reason,"
            " on_hand_after) VALUES ('mer_1', 'PEN', 'loc_1', 1, 'received', 4)"
            " RETURNING entry_id"
        ).fetchone()  # type: ignore[misc]
    assert rows == [(seq, f"led_{seq}") for seq in seqs]
    assert made.startswith("led_") and not made.removeprefix("led_").isdigit()
