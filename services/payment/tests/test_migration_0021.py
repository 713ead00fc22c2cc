"""Migration 0021 leaves one card naming each order line (the first issued), keeps every card
and its value, and from then on the database refuses a second card for a line."""

from __future__ import annotations

from pathlib import Path

import psycopg
import pytest

import pos_payment
from pos_devstack.testing import Infra
from pos_kit import migrate as kit_migrate

MIGRATIONS = Path(pos_payment.__file__).parent / "migrations"


def _card(
    conn: psycopg.Connection, merchant: str, card_id: str, order: str, line: str, at: str
) -> None:
    conn.execute(
        "INSERT INTO gift_cards (merchant_id, id, code_hash, code_last4, currency, balance,"
        " status, order_id, order_line_id, reason, created_at)"
        " VALUES (%s, %s, %s, 'ABCD', 'USD', 2500, 'active', %s, %s, 'sale', %s)",
        (merchant, card_id, card_id.encode(), order, line, at),
    )


def test_later_cards_of_a_line_then_name_none_and_a_second_card_is_refused(infra: Infra) -> None:
    url = infra.create_database("payment")
    kit_migrate.upgrade(MIGRATIONS, url, "0020")
    with psycopg.connect(url) as conn:
        # A line's card issued twice (the second under another request id), and three times.
        _card(conn, "mer_1", "gc_b", "ord_1", "L1", "2026-01-01 10:00:00+00")
        _card(conn, "mer_1", "gc_a", "ord_1", "L1", "2026-01-01 10:05:00+00")
        _card(conn, "mer_1", "gc_c", "ord_1", "L2", "2026-01-01 10:00:00+00")
        _card(conn, "mer_1", "gc_e", "ord_1", "L2", "2026-01-01 10:00:00+00")
        _card(conn, "mer_1", "gc_d", "ord_1", "L2", "2026-01-01 10:00:00+00")
        # Not duplicates: another merchant's, another order's, cards naming no line.
        _card(conn, "mer_2", "gc_f", "ord_1", "L1", "2026-01-01 11:00:00+00")
        _card(conn, "mer_1", "gc_g", "ord_2", "L1", "2026-01-01 11:00:00+00")
        _card(conn, "mer_1", "gc_h", "ord_1", "", "2026-01-01 11:00:00+00")
        _card(conn, "mer_1", "gc_i", "ord_1", "", "2026-01-01 11:00:00+00")
        _card(conn, "mer_1", "gc_j", "", "", "2026-01-01 11:00:00+00")

    kit_migrate.upgrade(MIGRATIONS, url)

    with psycopg.connect(url) as conn:
        rows = conn.execute(
            "SELECT merchant_id, id, order_id, order_line_id, balance, version FROM gift_cards"
        ).fetchall()
    cards = {(m, card_id): (order, line, bal, ver) for m, card_id, order, line, bal, ver in rows}
    assert cards == {
        ("mer_1", "gc_b"): ("ord_1", "L1", 2500, 1),  # the first of its line
        ("mer_1", "gc_a"): ("ord_1", "", 2500, 2),
        ("mer_1", "gc_c"): ("ord_1", "L2", 2500, 1),  # created together: the first id
        ("mer_1", "gc_d"): ("ord_1", "", 2500, 2),
        ("mer_1", "gc_e"): ("ord_1", "", 2500, 2),
        ("mer_2", "gc_f"): ("ord_1", "L1", 2500, 1),
        ("mer_1", "gc_g"): ("ord_2", "L1", 2500, 1),
        ("mer_1", "gc_h"): ("ord_1", "", 2500, 1),
        ("mer_1", "gc_i"): ("ord_1", "", 2500, 1),
        ("mer_1", "gc_j"): ("", "", 2500, 1),
    }

    with psycopg.connect(url) as conn, pytest.raises(psycopg.errors.UniqueViolation):
        _card(conn, "mer_1", "gc_k", "ord_1", "L1", "2026-01-02 10:00:00+00")
    with psycopg.connect(url) as conn:  # a card naming no line is never a second one
        _card(conn, "mer_1", "gc_l", "ord_1", "", "2026-01-02 10:00:00+00")
