"""Migration 0010 adds each SKU's words to the text search of the products written before it,
so they are found by their SKU (`MUG-042`) or its number as the ones written after are."""

from __future__ import annotations

from pathlib import Path

import psycopg

import pos_inventory
from pos_devstack.testing import Infra
from pos_kit import migrate as kit_migrate

MIGRATIONS = Path(pos_inventory.__file__).parent / "migrations"
FOUND = "SELECT id FROM products WHERE search @@ to_tsquery('simple', %s) ORDER BY id"


def test_products_written_before_are_found_by_their_skus_words(infra: Infra) -> None:
    url = infra.create_database("inventory")
    kit_migrate.upgrade(MIGRATIONS, url, "0009")
    with psycopg.connect(url) as conn:
        for pid, sku, skus, text in [
            ("prod_1", "MUG-042", ["MUG-042"], "Mug MUG-042"),
            ("prod_2", "SHOE", ["SHOE", "SHOE-7.5/W"], "Shoe SHOE SHOE-7.5/W 7.5"),
        ]:
            conn.execute(
                "INSERT INTO products (merchant_id, id, sku, name, price_amount, price_currency,"
                " search_text) VALUES ('mer_1', %s, %s, 'x', 100, 'USD', %s)",
                (pid, sku, text),
            )
            for each in skus:
                conn.execute(
                    "INSERT INTO product_skus (merchant_id, sku, product_id)"
                    " VALUES ('mer_1', %s, %s)",
                    (each, pid),
                )
        assert conn.execute(FOUND, ("042:*",)).fetchall() == []
    kit_migrate.upgrade(MIGRATIONS, url, "head")
    with psycopg.connect(url) as conn:
        assert conn.execute(FOUND, ("mug:* & 042:*",)).fetchall() == [("prod_1",)]
        assert conn.execute(FOUND, ("042:*",)).fetchall() == [("prod_1",)]
        assert conn.execute(FOUND, ("shoe:* & 7:* & 5:* & w:*",)).fetchall() == [("prod_2",)]
        text = conn.execute("SELECT search_text FROM products WHERE id = 'prod_1'").fetchone()
        assert text == ("Mug MUG-042 MUG 042",)
