"""The inventory database schema (SQLAlchemy Core)."""

from __future__ import annotations

from sqlalchemy import (
    BigInteger,
    Boolean,
    Column,
    Computed,
    DateTime,
    Float,
    Identity,
    Index,
    Integer,
    MetaData,
    PrimaryKeyConstraint,
    Table,
    Text,
    func,
    text,
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
    Column("kind", Text, nullable=False, server_default="store"),
    # {"line1": ..., "city": ..., "country": ...}: read and written whole, never queried.
    Column("address", JSONB, nullable=False, server_default=text("'{}'::jsonb")),
    Column("latitude", Float, nullable=True),
    Column("longitude", Float, nullable=True),
    Column("time_zone", Text, nullable=False, server_default="UTC"),
    # {"food": 200, ...}: basis points per tax category.
    Column("tax_rates", JSONB, nullable=False, server_default=text("'{}'::jsonb")),
    Column("pickup_enabled", Boolean, nullable=False, server_default=text("false")),
    Column("ship_enabled", Boolean, nullable=False, server_default=text("false")),
    Column("prices_include_tax", Boolean, nullable=False, server_default=text("false")),
    # [{"name": "state", "rate_bps": 625, "rates_bps": {"food": 100}, "compound": false}, ...]
    Column("taxes", JSONB, nullable=False, server_default=text("'[]'::jsonb")),
    # Stamped by a trigger at the moment of each change of `version` (pos_kit.changes).
    Column("updated_at", DateTime(timezone=True), nullable=False, server_default=func.now()),
    Column("status", Text, nullable=False, server_default="active"),
    PrimaryKeyConstraint("merchant_id", "id", name="locations_pkey"),
    Index("locations_changed", "merchant_id", "updated_at", "id"),
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
    # The price is entered at the sale (`price` is a suggestion).
    Column("open_price", Boolean, nullable=False, server_default=text("false")),
    # What a unit costs the merchant, in price_currency; NULL when not known.
    Column("unit_cost_amount", BigInteger),
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
    # Units held by active reservations; available = on_hand - reserved.
    Column("reserved", BigInteger, nullable=False, server_default="0"),
    # The moment of the latest change of on_hand or reserved: stamped by a trigger with
    # clock_timestamp() on the locked row, never below the stamp it replaces, so the next
    # writer of the row stamps later (migration 0008).
    Column(
        "updated_at", DateTime(timezone=True), nullable=False, server_default=func.clock_timestamp()
    ),
    # The latest physical count (by when it was taken, then its key): changes that happened
    # before it are already part of what was counted. See domain/ledger.py.
    Column("counted_at", DateTime(timezone=True), nullable=True),
    Column("count_key", Text, nullable=False, server_default=""),
    PrimaryKeyConstraint("merchant_id", "sku", "location_id", name="stock_pkey"),
    # A store's levels by SKU, a page at a time (GET /v1/inventory?location_id=).
    Index("stock_by_location", "merchant_id", "location_id", "sku"),
)

stock_ledger = Table(
    "stock_ledger",
    metadata,
    Column("seq", BigInteger, Identity(), primary_key=True),
    Column("merchant_id", Text, nullable=False),
    Column("sku", Text, nullable=False),
    Column("location_id", Text, nullable=False),
    # What it did to on_hand; the deltas of an item sum to its on_hand.
    Column("delta", BigInteger, nullable=False),
    Column("reason", Text, nullable=False),
    Column("reference", Text, nullable=False, server_default=""),
    Column("on_hand_after", BigInteger, nullable=False),
    # When it was recorded here: the moment of the write (clock_timestamp()), under the
    # item's row lock, so an item's entries are stamped in the order of the ledger.
    Column(
        "created_at", DateTime(timezone=True), nullable=False, server_default=func.clock_timestamp()
    ),
    Column("kind", Text, nullable=False, server_default="adjustment"),
    # What was asked: the signed change, or the quantity counted.
    Column("quantity", BigInteger, nullable=False, server_default="0"),
    Column("superseded", Boolean, nullable=False, server_default=text("false")),
    # When it happened, as the client says; the sequencing key.
    Column("occurred_at", DateTime(timezone=True), nullable=False, server_default=func.now()),
    Column("note", Text, nullable=False, server_default=""),
    # The entry's public id: opaque, as `seq` counts every merchant's entries (entries made
    # before migration 0007 keep `led_<seq>`, the id they were shown).
    Column(
        "entry_id",
        Text,
        nullable=False,
        # For a process older than migration 0007 during an upgrade; the service sends its own.
        server_default=text("'led_' || replace(gen_random_uuid()::text, '-', '')"),
    ),
    Index("stock_ledger_item", "merchant_id", "sku", "location_id", "seq"),
    Index("stock_ledger_entry", "merchant_id", "entry_id", unique=True),
    Index("stock_ledger_occurred", "merchant_id", "sku", "location_id", "occurred_at"),
    Index("stock_ledger_merchant", "merchant_id", "seq"),
)

low_stock_thresholds = Table(
    "low_stock_thresholds",
    metadata,
    Column("merchant_id", Text, nullable=False),
    Column("sku", Text, nullable=False),
    Column("threshold", BigInteger, nullable=False),
    PrimaryKeyConstraint("merchant_id", "sku", name="low_stock_thresholds_pkey"),
)

reservations = Table(
    "reservations",
    metadata,
    Column("merchant_id", Text, nullable=False),
    Column("id", Text, nullable=False),
    Column("location_id", Text, nullable=False),
    Column("status", Text, nullable=False),
    # [[sku, quantity], ...] sorted by sku: always read and written with the reservation, so one
    # row instead of a line table keeps a hold to a single insert.
    Column("lines", JSONB, nullable=False),
    Column("reference", Text, nullable=False, server_default=""),
    Column("expires_at", DateTime(timezone=True), nullable=False),
    Column("created_at", DateTime(timezone=True), nullable=False, server_default=func.now()),
    # The moment of its latest change (made, then ended): clock_timestamp() when it is made,
    # then stamped by a trigger on the locked row when its status changes, never below the
    # stamp it replaces (migration 0009).
    Column(
        "updated_at", DateTime(timezone=True), nullable=False, server_default=func.clock_timestamp()
    ),
    PrimaryKeyConstraint("merchant_id", "id", name="reservations_pkey"),
    # The expiry sweep reads only active holds that are due.
    Index(
        "reservations_due",
        "expires_at",
        postgresql_where=text("status = 'active'"),
    ),
    # The list's filters (ListReservations), each read in id order after the cursor; a SKU's
    # holds are those whose lines contain [sku] (migration 0014).
    Index("reservations_by_location", "merchant_id", "location_id", "id"),
    Index("reservations_by_status", "merchant_id", "status", "id"),
    Index(
        "reservations_by_sku",
        "lines",
        postgresql_using="gin",
        postgresql_ops={"lines": "jsonb_path_ops"},
    ),
)
