"""Migration 0015 dates the stock changes recorded with a stamp ahead of the clock when they
were recorded, as they are recorded now, so they misplace no later change."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import psycopg

import pos_inventory
from pos_devstack.testing import Infra
from pos_kit import migrate as kit_migrate

MIGRATIONS = Path(pos_inventory.__file__).parent / "migrations"
RECORDED = datetime(2026, 12, 5, 9, 0, tzinfo=UTC)


def test_changes_stamped_ahead_are_dated_when_they_were_recorded(infra: Infra) -> None:
    url = infra.create_database("inventory")
    kit_migrate.upgrade(MIGRATIONS, url, "0014")
    ahead = RECORDED + timedelta(minutes=4)
    close = RECORDED + timedelta(milliseconds=3)  # a clock a little off, nothing sent ahead
    past = RECORDED - timedelta(hours=1)  # reported late
    with psycopg.connect(url) as conn:
        conn.execute(
            "INSERT INTO stock (merchant_id, sku, location_id, on_hand, counted_at, count_key)"
            " VALUES ('mer_1', 'MUG', 'loc_1', 5, %s, 'k1'),"
            " ('mer_1', 'CAP', 'loc_1', 2, %s, 'k2')",
            (ahead, past),
        )
        for sku, kind, occurred_at, entry in [
            ("MUG", "count", ahead, "led_a"),
            ("MUG", "adjustment", ahead, "led_b"),
            ("MUG", "sale", close, "led_c"),
            ("CAP", "count", past, "led_d"),
        ]:
            conn.execute(
                "INSERT INTO stock_ledger (merchant_id, sku, location_id, delta, reason,"
                " on_hand_after, created_at, kind, quantity, occurred_at, entry_id)"
                " VALUES ('mer_1', %s, 'loc_1', 0, '', 0, %s, %s, 0, %s, %s)",
                (sku, RECORDED, kind, occurred_at, entry),
            )
    kit_migrate.upgrade(MIGRATIONS, url, "head")
    with psycopg.connect(url) as conn:
        dated = dict(conn.execute("SELECT entry_id, occurred_at FROM stock_ledger").fetchall())
        assert dated == {"led_a": RECORDED, "led_b": RECORDED, "led_c": close, "led_d": past}
        counted = dict(conn.execute("SELECT sku, counted_at FROM stock").fetchall())
        assert counted == {"MUG": RECORDED, "CAP": past}
