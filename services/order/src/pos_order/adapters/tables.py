"""The order database schema (SQLAlchemy Core)."""

from __future__ import annotations

from sqlalchemy import (
    BigInteger,
    Boolean,
    Column,
    DateTime,
    MetaData,
    PrimaryKeyConstraint,
    Table,
    Text,
    func,
)
from sqlalchemy.dialects.postgresql import JSONB

from pos_kit.tables import add_kit_tables

metadata = MetaData()
kit = add_kit_tables(metadata)

orders = Table(
    "orders",
    metadata,
    Column("merchant_id", Text, nullable=False),
    Column("id", Text, nullable=False),
    Column("location_id", Text, nullable=False),
    Column("customer_id", Text, nullable=False, server_default=""),
    Column("status", Text, nullable=False),
    Column("currency", Text, nullable=False),
    # The price snapshot: immutable once sold, so one JSON document rather than a join.
    Column("lines", JSONB, nullable=False),
    Column("subtotal", BigInteger, nullable=False),
    Column("discount_total", BigInteger, nullable=False),
    Column("tax_total", BigInteger, nullable=False),
    Column("total", BigInteger, nullable=False),
    Column("discounts_applied", Boolean, nullable=False),
    Column("payment_id", Text, nullable=False, server_default=""),
    Column("created_at", DateTime(timezone=True), nullable=False, server_default=func.now()),
    PrimaryKeyConstraint("merchant_id", "id", name="orders_pkey"),
)

# The customer ids each merchant has, learnt from the customer service's events (or from one
# look-up of an id the events have not brought yet), so a checkout checks its customer_id
# without a call. Only the id and its version: no profile data leaves the customer service.
known_customers = Table(
    "known_customers",
    metadata,
    Column("merchant_id", Text, nullable=False),
    Column("customer_id", Text, nullable=False),
    Column("version", BigInteger, nullable=False),
    Column("seen_at", DateTime(timezone=True), nullable=False, server_default=func.now()),
    PrimaryKeyConstraint("merchant_id", "customer_id", name="known_customers_pkey"),
)

# When each checkout request was first claimed. The order id derives from it, so it must outlive
# the kit's claim: a checkout whose calls fail has its claim dropped (for an immediate retry),
# and a retry that saw a new time would hand the payment service a new order id under the same
# payment request id, which it refuses, leaving the first charge with no order.
checkout_starts = Table(
    "checkout_starts",
    metadata,
    Column("merchant_id", Text, nullable=False),
    Column("request_id", Text, nullable=False),
    Column("started_at", DateTime(timezone=True), nullable=False, server_default=func.now()),
    PrimaryKeyConstraint("merchant_id", "request_id", name="checkout_starts_pkey"),
)
