"""The inventory database schema (SQLAlchemy Core)."""

from __future__ import annotations

from sqlalchemy import (
    BigInteger,
    Column,
    DateTime,
    Identity,
    Index,
    Integer,
    MetaData,
    PrimaryKeyConstraint,
    Table,
    Text,
    func,
)

from pos_kit.tables import add_kit_tables

metadata = MetaData()
kit = add_kit_tables(metadata)

locations = Table(
    "locations",
    metadata,
    Column("merchant_id", Text, nullable=False),
    Column("id", Text, nullable=False),
    Column("name", Text, nullable=False),
    Column("currency", Text, nullable=False),
    Column("tax_rate_bps", Integer, nullable=False),
    Column("version", BigInteger, nullable=False, server_default="1"),
    Column("created_at", DateTime(timezone=True), nullable=False, server_default=func.now()),
    PrimaryKeyConstraint("merchant_id", "id", name="locations_pkey"),
)

products = Table(
    "products",
    metadata,
    Column("merchant_id", Text, nullable=False),
    Column("id", Text, nullable=False),
    Column("sku", Text, nullable=False),
    Column("name", Text, nullable=False),
    Column("price_amount", BigInteger, nullable=False),
    Column("price_currency", Text, nullable=False),
    Column("version", BigInteger, nullable=False, server_default="1"),
    Column("created_at", DateTime(timezone=True), nullable=False, server_default=func.now()),
    Column("updated_at", DateTime(timezone=True), nullable=False, server_default=func.now()),
    PrimaryKeyConstraint("merchant_id", "id", name="products_pkey"),
    Index("products_sku", "merchant_id", "sku", unique=True),
)

stock = Table(
    "stock",
    metadata,
    Column("merchant_id", Text, nullable=False),
    Column("sku", Text, nullable=False),
    Column("location_id", Text, nullable=False),
    Column("on_hand", BigInteger, nullable=False),
    # Units held by reservations (the reservations work fills it); available = on_hand - reserved.
    Column("reserved", BigInteger, nullable=False, server_default="0"),
    Column("updated_at", DateTime(timezone=True), nullable=False, server_default=func.now()),
    PrimaryKeyConstraint("merchant_id", "sku", "location_id", name="stock_pkey"),
)

stock_ledger = Table(
    "stock_ledger",
    metadata,
    Column("seq", BigInteger, Identity(), primary_key=True),
    Column("merchant_id", Text, nullable=False),
    Column("sku", Text, nullable=False),
    Column("location_id", Text, nullable=False),
    Column("delta", BigInteger, nullable=False),
    Column("reason", Text, nullable=False),
    Column("reference", Text, nullable=False, server_default=""),
    Column("on_hand_after", BigInteger, nullable=False),
    Column("created_at", DateTime(timezone=True), nullable=False, server_default=func.now()),
    Index("stock_ledger_item", "merchant_id", "sku", "location_id", "seq"),
)
