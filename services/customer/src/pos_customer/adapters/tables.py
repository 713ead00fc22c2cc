"""The customer database schema (SQLAlchemy Core)."""

from __future__ import annotations

from sqlalchemy import (
    BigInteger,
    Column,
    DateTime,
    Index,
    MetaData,
    PrimaryKeyConstraint,
    Table,
    Text,
    func,
)

from pos_kit.tables import add_kit_tables

metadata = MetaData()
kit = add_kit_tables(metadata)

customers = Table(
    "customers",
    metadata,
    Column("merchant_id", Text, nullable=False),
    Column("id", Text, nullable=False),
    Column("email", Text, nullable=False),
    Column("given_name", Text, nullable=False),
    Column("family_name", Text, nullable=False),
    Column("loyalty_points", BigInteger, nullable=False, server_default="0"),
    Column("version", BigInteger, nullable=False, server_default="1"),
    Column("created_at", DateTime(timezone=True), nullable=False, server_default=func.now()),
    Column("updated_at", DateTime(timezone=True), nullable=False, server_default=func.now()),
    PrimaryKeyConstraint("merchant_id", "id", name="customers_pkey"),
    Index("customers_email", "merchant_id", "email", unique=True),
)

loyalty_ledger = Table(
    "loyalty_ledger",
    metadata,
    Column("merchant_id", Text, nullable=False),
    Column("customer_id", Text, nullable=False),
    Column("order_id", Text, nullable=False),
    Column("points", BigInteger, nullable=False),
    Column("created_at", DateTime(timezone=True), nullable=False, server_default=func.now()),
    # One accrual per order: a second would be a double credit.
    PrimaryKeyConstraint("merchant_id", "customer_id", "order_id", name="loyalty_ledger_pkey"),
)
