"""Migration 0013 makes group names unique in any case: groups that already differed only by
case (or outer spaces) keep their ids, members and the first one its name; a later one is
renamed with its id after it, as a new version, so the index can hold."""

from __future__ import annotations

from pathlib import Path

import psycopg
import pytest

import pos_customer
from pos_devstack.testing import Infra
from pos_kit import migrate as kit_migrate

MIGRATIONS = Path(pos_customer.__file__).parent / "migrations"


def test_groups_named_alike_keep_their_members_and_the_first_its_name(infra: Infra) -> None:
    url = infra.create_database("customer")
    kit_migrate.upgrade(MIGRATIONS, url, "0012")
    groups = [
        ("mer_1", "cgrp_1", "VIP", "2026-01-01"),
        ("mer_1", "cgrp_2", "vip", "2026-02-01"),
        ("mer_1", "cgrp_3", " Vip", "2026-03-01"),
        ("mer_1", "cgrp_4", "Staff", "2026-01-01"),
        ("mer_2", "cgrp_5", "vip", "2026-04-01"),
    ]
    with psycopg.connect(url) as conn:
        for merchant, ident, name, created in groups:
            conn.execute(
                "INSERT INTO customer_groups (merchant_id, id, name, created_at)"
                " VALUES (%s, %s, %s, %s)",
                (merchant, ident, name, created),
            )
        conn.execute(
            "INSERT INTO group_members (merchant_id, group_id, customer_id)"
            " VALUES ('mer_1', 'cgrp_2', 'cus_1')"
        )
    kit_migrate.upgrade(MIGRATIONS, url, "head")
    with psycopg.connect(url) as conn:
        rows = conn.execute("SELECT id, name, version FROM customer_groups ORDER BY id").fetchall()
        members = conn.execute("SELECT group_id, customer_id FROM group_members").fetchall()
    assert rows == [
        ("cgrp_1", "VIP", 1),
        ("cgrp_2", "vip (cgrp_2)", 2),
        ("cgrp_3", " Vip (cgrp_3)", 2),
        ("cgrp_4", "Staff", 1),
        ("cgrp_5", "vip", 1),
    ]
    assert members == [("cgrp_2", "cus_1")]
    with psycopg.connect(url) as conn, pytest.raises(psycopg.errors.UniqueViolation):
        conn.execute(
            "INSERT INTO customer_groups (merchant_id, id, name) VALUES ('mer_1', 'cgrp_6', 'vIP ')"
        )
