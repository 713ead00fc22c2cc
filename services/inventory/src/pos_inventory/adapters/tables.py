"""The inventory database schema (SQLAlchemy Core)."""

from __future__ import annotations

from sqlalchemy import (
    BigInteger,
    Column,
    Computed,
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
from sqlalchemy.dialects.postgresql import JSONB, TSVECTOR

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
    Column("description", Text, nullable=False, server_default=""),
    Column("category", Text, nullable=False, server_default=""),
    Column("tax_category", Text, nullable=False, server_default="standard"),
    Column("status", Text, nullable=False, server_default="active"),
    # NULL when unset, so the unique index below only binds products that carry one.
    Column("external_id", Text),
    Column("barcodes", JSONB, nullable=False, server_default="[]"),
    # Variants live with their product (read and written whole); product_skus and
    # product_barcodes below index them for uniqueness and lookup.
    Column("variants", JSONB, nullable=False, server_default="[]"),
    Column("search_text", Text, nullable=False, server_default=""),
    Column(
        "search",
        TSVECTOR,
        Computed("to_tsvector('simple'::regconfig, search_text)", persisted=True),
    ),
    PrimaryKeyConstraint("merchant_id", "id", name="products_pkey"),
    Index("products_sku", "merchant_id", "sku", unique=True),
    Index("products_external_id", "merchant_id", "external_id", unique=True),
    Index("products_changed", "merchant_id", "updated_at", "id"),
    Index("products_search", "search", postgresql_using="gin"),
)

# Every SKU a product sells under (its own and its variants'), so one index keeps SKUs unique
# per merchant across products and variants and finds the product of any SKU.
product_skus = Table(
    "product_skus",
    metadata,
    Column("merchant_id", Text, nullable=False),
    Column("sku", Text, nullable=False),
    Column("product_id", Text, nullable=False),
    PrimaryKeyConstraint("merchant_id", "sku", name="product_skus_pkey"),
    Index("product_skus_product", "merchant_id", "product_id"),
)

# Barcodes by their key (GTINs as 14 digits), unique per merchant, with the SKU each scans as.
product_barcodes = Table(
    "product_barcodes",
    metadata,
    Column("merchant_id", Text, nullable=False),
    Column("barcode", Text, nullable=False),
    Column("product_id", Text, nullable=False),
    Column("sku", Text, nullable=False),
    PrimaryKeyConstraint("merchant_id", "barcode", name="product_barcodes_pkey"),
    Index("product_barcodes_product", "merchant_id", "product_id"),
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
