"""Migration 0007 splits the reversals of returns written before it as one key,
`<order>/<return>`, into the order and the return, and keeps one entry per return."""

from __future__ import annotations

from pathlib import Path

import psycopg
import pytest

import pos_customer
from pos_devstack.testing import Infra
from pos_kit import migrate as kit_migrate

MIGRATIONS = Path(pos_customer.__file__).parent / "migrations"


def _entry(conn: psycopg.Connection, id_: str, kind: str, points: int, order: str | None) -> None:
    conn.execute(
        "INSERT INTO points_ledger (merchant_id, id, customer_id, kind, points, balance_after,"
        " order_id) VALUES ('mer_1', %s, 'cus_1', %s, %s, 0, %s)",
        (id_, kind, points, order),
    )


def test_old_return_reversals_name_their_order_and_return_apart(infra: Infra) -> None:
    url = infra.create_database("customer")
    kit_migrate.upgrade(MIGRATIONS, url, "0006")
    with psycopg.connect(url) as conn:
        _entry(conn, "pte_1", "earned", 60, "ord_1")
        _entry(conn, "pte_2", "reversed", -19, "ord_1/ret_1")
        _entry(conn, "pte_3", "reversed", -41, "ord_1/ret_2")
        _entry(conn, "pte_4", "adjusted", 5, None)
    kit_migrate.upgrade(MIGRATIONS, url, "head")
    with psycopg.connect(url) as conn:
        rows = conn.execute(
            "SELECT id, kind, order_id, return_id FROM points_ledger ORDER BY id"
        ).fetchall()
        assert rows == [
            ("pte_1", "earned", "ord_1", None),
            ("pte_2", "reversed", "ord_1", "ret_1"),
            ("pte_3", "reversed", "ord_1", "ret_2"),
            ("pte_4", "adjusted", None, None),
        ]
        # One reversal per return still, and one for the order itself beside them.
        _entry(conn, "pte_5", "reversed", -1, "ord_1")
        with pytest.raises(psycopg.errors.UniqueViolation):
            conn.execute(
                "INSERT INTO points_ledger (merchant_id, id, customer_id, kind, points,"
                " balance_after, order_id, return_id) VALUES ('mer_1', 'pte_6', 'cus_1',"
                " 'reversed', -1, 0, 'ord_1', 'ret_1')"
            )
