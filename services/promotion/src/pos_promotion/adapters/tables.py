"""The promotion database schema (SQLAlchemy Core)."""

from __future__ import annotations

from sqlalchemy import (
    BigInteger,
    Boolean,
    Column,
    DateTime,
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

promotions = Table(
    "promotions",
    metadata,
    Column("merchant_id", Text, nullable=False),
    Column("id", Text, nullable=False),
    Column("name", Text, nullable=False),
    Column("percent_off_bps", Integer, nullable=False),
    Column("minimum_amount", BigInteger),
    Column("minimum_currency", Text),
    Column("active", Boolean, nullable=False, server_default="true"),
    Column("created_at", DateTime(timezone=True), nullable=False, server_default=func.now()),
    PrimaryKeyConstraint("merchant_id", "id", name="promotions_pkey"),
)
