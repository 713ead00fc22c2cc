"""Migration 0010 keeps the program each merchant held as in force since before any sale: the
sales heard after it earn under that program whenever they were made, as they did."""

from __future__ import annotations

import json
from pathlib import Path

import psycopg

import pos_customer
from pos_devstack.testing import Infra
from pos_kit import migrate as kit_migrate

MIGRATIONS = Path(pos_customer.__file__).parent / "migrations"


def test_the_program_held_before_versions_were_kept_is_in_force_for_every_sale(
    infra: Infra,
) -> None:
    url = infra.create_database("customer")
    kit_migrate.upgrade(MIGRATIONS, url, "0009")
    program = {"enabled": True, "points_per_unit": 5, "excluded_skus": ["X"]}
    with psycopg.connect(url) as conn:
        conn.execute(
            "INSERT INTO loyalty_programs (merchant_id, program, version) VALUES ('mer_1', %s, 4)",
            (json.dumps(program),),
        )
    kit_migrate.upgrade(MIGRATIONS, url, "head")
    with psycopg.connect(url) as conn:
        rows = conn.execute(
            "SELECT merchant_id, version, program FROM loyalty_program_versions"
            " WHERE effective_at <= '2000-01-01'"
        ).fetchall()
    assert rows == [("mer_1", 4, program)]
