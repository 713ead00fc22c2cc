"""The promotion database schema (SQLAlchemy Core)."""

from __future__ import annotations

from sqlalchemy import (
    BigInteger,
    Boolean,
    Column,
    DateTime,
    ForeignKeyConstraint,
    Index,
    Integer,
    LargeBinary,
    MetaData,
    PrimaryKeyConstraint,
    Table,
    Text,
    UniqueConstraint,
    func,
)
from sqlalchemy.dialects.postgresql import JSONB

from pos_kit.tables import add_kit_tables

metadata = MetaData()
kit = add_kit_tables(metadata)

promotions = Table(
    "promotions",
    metadata,
    Column("merchant_id", Text, nullable=False),
    Column("id", Text, nullable=False),
    Column("name", Text, nullable=False),
    # The first kind's columns, still filled for a percent off the order (0 otherwise).
    Column("percent_off_bps", Integer, nullable=False),
    Column("minimum_amount", BigInteger),
    Column("minimum_currency", Text),
    Column("active", Boolean, nullable=False, server_default="true"),
    Column("created_at", DateTime(timezone=True), nullable=False, server_default=func.now()),
    # The offer (rule and conditions) as JSON: read whole, never queried inside.
    Column("definition", JSONB, nullable=False, server_default="{}"),
    Column("status", Text, nullable=False, server_default="active"),
    Column("version", BigInteger, nullable=False, server_default="1"),
    Column("used", Boolean, nullable=False, server_default="false"),
    Column("updated_at", DateTime(timezone=True), nullable=False, server_default=func.now()),
    Column("ended_at", DateTime(timezone=True)),
    # The window as instants (model.window), kept beside the definition so a list can filter
    # on where now is against it (migration 0006); null: open on that side.
    Column("opens_at", DateTime(timezone=True)),
    Column("closes_at", DateTime(timezone=True)),
    PrimaryKeyConstraint("merchant_id", "id", name="promotions_pkey"),
)

coupons = Table(
    "coupons",
    metadata,
    Column("merchant_id", Text, nullable=False),
    Column("id", Text, nullable=False),
    Column("promotion_id", Text, nullable=False),
    # A keyed hash of the upper-cased code: the code itself is never stored.
    Column("code_hash", LargeBinary, nullable=False),
    Column("code_hint", Text, nullable=False),
    Column("max_uses", Integer, nullable=False, server_default="0"),
    Column("max_uses_per_customer", Integer, nullable=False, server_default="0"),
    Column("redeemed_count", Integer, nullable=False, server_default="0"),
    Column("reserved_count", Integer, nullable=False, server_default="0"),
    Column("expires_at", DateTime(timezone=True)),
    Column("created_at", DateTime(timezone=True), nullable=False, server_default=func.now()),
    # active or deactivated (one code stopped, its promotion untouched; migration 0005).
    Column("status", Text, nullable=False, server_default="active"),
    Column("deactivated_at", DateTime(timezone=True)),
    # The moment of its last change (created, reserved, redeemed, released, deactivated),
    # stamped by a trigger (pos_kit/changes.py, migration 0007): its place in the
    # `updated_since` feed of its promotion's coupons.
    Column("updated_at", DateTime(timezone=True), nullable=False, server_default=func.now()),
    PrimaryKeyConstraint("merchant_id", "id", name="coupons_pkey"),
    UniqueConstraint("merchant_id", "code_hash", name="coupons_code_key"),
    ForeignKeyConstraint(
        ["merchant_id", "promotion_id"],
        ["promotions.merchant_id", "promotions.id"],
        name="coupons_promotion_fkey",
    ),
)
Index("coupons_by_promotion", coupons.c.merchant_id, coupons.c.promotion_id, coupons.c.id)
Index(
    "coupons_by_change",
    coupons.c.merchant_id,
    coupons.c.promotion_id,
    coupons.c.updated_at,
    coupons.c.id,
)

coupon_reservations = Table(
    "coupon_reservations",
    metadata,
    Column("merchant_id", Text, nullable=False),
    Column("order_id", Text, nullable=False),
    Column("coupon_id", Text, nullable=False),
    Column("customer_id", Text, nullable=False, server_default=""),
    Column("status", Text, nullable=False),  # reserved, redeemed, released
    Column("created_at", DateTime(timezone=True), nullable=False, server_default=func.now()),
    Column("updated_at", DateTime(timezone=True), nullable=False, server_default=func.now()),
    PrimaryKeyConstraint("merchant_id", "order_id", "coupon_id", name="coupon_reservations_pkey"),
)
Index(
    "coupon_reservations_by_customer",
    coupon_reservations.c.merchant_id,
    coupon_reservations.c.coupon_id,
    coupon_reservations.c.customer_id,
)

# Customer groups retired for their deletion (RetireCustomerGroup): no promotion may name one
# from then on. One row per retirement, so that undoing one (its deletion refused after all)
# leaves the group retired while another deletion of it stands.
retired_groups = Table(
    "retired_groups",
    metadata,
    Column("merchant_id", Text, nullable=False),
    Column("group_id", Text, nullable=False),
    Column("retirement_id", Text, nullable=False),
    Column("retired_at", DateTime(timezone=True), nullable=False, server_default=func.now()),
    PrimaryKeyConstraint("merchant_id", "group_id", "retirement_id", name="retired_groups_pkey"),
)

# The customer service's merges (`customer_merged`): each duplicate and the customer it is now.
# Kept flat: `survivor_id` is never itself a duplicate here (a later merge of the survivor
# rewrites the rows pointing at it), so one lookup finds a person and one index scan all the
# ids they were known by; a once-per-customer coupon is counted over all of them.
customer_merges = Table(
    "customer_merges",
    metadata,
    Column("merchant_id", Text, nullable=False),
    Column("duplicate_id", Text, nullable=False),
    Column("survivor_id", Text, nullable=False),
    Column("merged_at", DateTime(timezone=True), nullable=False, server_default=func.now()),
    PrimaryKeyConstraint("merchant_id", "duplicate_id", name="customer_merges_pkey"),
)
Index("customer_merges_by_survivor", customer_merges.c.merchant_id, customer_merges.c.survivor_id)
