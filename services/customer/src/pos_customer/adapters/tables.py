"""The customer service's database schema (SQLAlchemy Core)."""

from __future__ import annotations

from sqlalchemy import (
    ARRAY,
    BigInteger,
    Boolean,
    Column,
    Date,
    DateTime,
    ForeignKeyConstraint,
    Identity,
    Index,
    MetaData,
    PrimaryKeyConstraint,
    Table,
    Text,
    func,
    text,
)
from sqlalchemy.dialects.postgresql import JSONB

from pos_kit.tables import add_kit_tables

metadata = MetaData()
kit = add_kit_tables(metadata)

customers = Table(
    "customers",
    metadata,
    Column("merchant_id", Text, nullable=False),
    Column("id", Text, nullable=False),
    Column("email", Text, nullable=True),
    Column("given_name", Text, nullable=False),
    Column("family_name", Text, nullable=False),
    # The balance: always the sum of the customer's points_ledger entries (written together).
    Column("loyalty_points", BigInteger, nullable=False, server_default="0"),
    Column("version", BigInteger, nullable=False, server_default="1"),
    Column("created_at", DateTime(timezone=True), nullable=False, server_default=func.now()),
    Column("updated_at", DateTime(timezone=True), nullable=False, server_default=func.now()),
    Column("phone", Text, nullable=True),
    Column("external_id", Text, nullable=True),
    Column("addresses", JSONB, nullable=False, server_default=text("'[]'::jsonb")),
    Column("birthday", Date, nullable=True),
    Column("notes", Text, nullable=False, server_default=""),
    Column("consent_granted", Boolean, nullable=False, server_default=text("false")),
    Column("consent_at", DateTime(timezone=True), nullable=True),
    Column("consent_channel", Text, nullable=False, server_default=""),
    Column("tags", ARRAY(Text), nullable=False, server_default=text("'{}'::text[]")),
    Column("status", Text, nullable=False, server_default="active"),
    Column("merged_into", Text, nullable=True),
    # Points held by open orders (the sum of this customer's held points_holds).
    Column("points_held", BigInteger, nullable=False, server_default="0"),
    Column("tier", Text, nullable=False, server_default=""),
    PrimaryKeyConstraint("merchant_id", "id", name="customers_pkey"),
    Index(
        "customers_email",
        "merchant_id",
        "email",
        unique=True,
        postgresql_where=text("email IS NOT NULL"),
    ),
    Index(
        "customers_external_id",
        "merchant_id",
        "external_id",
        unique=True,
        postgresql_where=text("external_id IS NOT NULL"),
    ),
    Index("customers_phone", "merchant_id", "phone", postgresql_where=text("phone IS NOT NULL")),
    # The `updated_since` feed's order (pos_kit/changes.py): a poll reads the rows it answers,
    # not every customer of the merchant sorted (migration 0015).
    Index("customers_by_change", "merchant_id", "updated_at", "id"),
    # The customers merged into one (their points history counts towards its tier); few.
    Index(
        "customers_merged_into",
        "merchant_id",
        "merged_into",
        postgresql_where=text("merged_into IS NOT NULL"),
    ),
)

# One row per word a text search finds a customer by (name words, email, phone digits): a
# prefix search is a range scan of a btree in byte order ("C" collation), fast at a million
# customers and needing no extension.
customer_terms = Table(
    "customer_terms",
    metadata,
    Column("merchant_id", Text, nullable=False),
    Column("term", Text(collation="C"), nullable=False),
    Column("customer_id", Text, nullable=False),
    PrimaryKeyConstraint("merchant_id", "term", "customer_id", name="customer_terms_pkey"),
    Index("customer_terms_customer", "merchant_id", "customer_id"),
)

customer_groups = Table(
    "customer_groups",
    metadata,
    Column("merchant_id", Text, nullable=False),
    Column("id", Text, nullable=False),
    Column("name", Text, nullable=False),
    Column("description", Text, nullable=False, server_default=""),
    Column("created_at", DateTime(timezone=True), nullable=False, server_default=func.now()),
    # Bumped by a change of its name or description (If-Match); its members are theirs.
    Column("version", BigInteger, nullable=False, server_default="1"),
    # The moment of its last change (made, or a new version), stamped by a trigger
    # (pos_kit/changes.py, migration 0014): its place in the `updated_since` feed.
    Column("updated_at", DateTime(timezone=True), nullable=False, server_default=func.now()),
    # Set when it is deleted: kept as a tombstone (a new version, no members) for the
    # `updated_since` feed; nothing else reads it (migration 0016).
    Column("deleted_at", DateTime(timezone=True), nullable=True),
    PrimaryKeyConstraint("merchant_id", "id", name="customer_groups_pkey"),
    # "VIP" beside "vip " would read as one group on every screen (migration 0013); a deleted
    # group's name is free again (migration 0016).
    Index(
        "customer_groups_name",
        "merchant_id",
        func.lower(func.btrim(text("name"))),
        unique=True,
        postgresql_where=text("deleted_at IS NULL"),
    ),
    Index("customer_groups_by_change", "merchant_id", "updated_at", "id"),
)

group_members = Table(
    "group_members",
    metadata,
    Column("merchant_id", Text, nullable=False),
    Column("group_id", Text, nullable=False),
    Column("customer_id", Text, nullable=False),
    Column("added_at", DateTime(timezone=True), nullable=False, server_default=func.now()),
    PrimaryKeyConstraint("merchant_id", "group_id", "customer_id", name="group_members_pkey"),
    ForeignKeyConstraint(
        ["merchant_id", "group_id"],
        ["customer_groups.merchant_id", "customer_groups.id"],
        name="group_members_group_fkey",
        ondelete="CASCADE",
    ),
    Index("group_members_customer", "merchant_id", "customer_id"),
)

loyalty_programs = Table(
    "loyalty_programs",
    metadata,
    Column("merchant_id", Text, nullable=False),
    Column("program", JSONB, nullable=False),
    Column("version", BigInteger, nullable=False, server_default="1"),
    # A tier change's re-tiering still under way: the last customer id done ('' for none yet);
    # NULL when none is (service/points.py).
    Column("retier_after", Text, nullable=True),
    PrimaryKeyConstraint("merchant_id", name="loyalty_programs_pkey"),
)

# Every version of a merchant's program and when it took effect: a sale earns under the one in
# force when it was made, however late its event is heard (a backlog, the consumer down while
# the merchant changed the program). Versions from before it was kept took effect at
# -infinity: sales before then earn under them, as they did.
loyalty_program_versions = Table(
    "loyalty_program_versions",
    metadata,
    Column("merchant_id", Text, nullable=False),
    Column("version", BigInteger, nullable=False),
    Column("program", JSONB, nullable=False),
    Column("effective_at", DateTime(timezone=True), nullable=False),
    PrimaryKeyConstraint("merchant_id", "version", name="loyalty_program_versions_pkey"),
    Index("loyalty_program_versions_effective", "merchant_id", "effective_at"),
)

points_ledger = Table(
    "points_ledger",
    metadata,
    Column("merchant_id", Text, nullable=False),
    Column("id", Text, nullable=False),
    # The order entries were written in: history pages by it, balance_after follows it.
    Column("seq", BigInteger, Identity(always=False), nullable=False),
    Column("customer_id", Text, nullable=False),
    Column("kind", Text, nullable=False),
    Column("points", BigInteger, nullable=False),
    Column("balance_after", BigInteger, nullable=False),
    Column("order_id", Text, nullable=True),
    Column("reason", Text, nullable=False, server_default=""),
    Column("created_at", DateTime(timezone=True), nullable=False, server_default=func.now()),
    # What the entry counts towards a tier when that differs from `points`: a cancelled
    # order's reversal also gives back the points it redeemed, which were never earned.
    Column("tier_points", BigInteger, nullable=True),
    # The return a `reversed` entry is for (each return takes its share back once); null for
    # an order's own entries.
    Column("return_id", Text, nullable=True),
    PrimaryKeyConstraint("merchant_id", "id", name="points_ledger_pkey"),
    # An order earns once, is reversed once and redeems once, and each of its returns takes
    # back once: a second would double-count.
    Index(
        "points_ledger_order",
        "merchant_id",
        "kind",
        "order_id",
        text("coalesce(return_id, '')"),
        unique=True,
        postgresql_where=text("order_id IS NOT NULL"),
    ),
    Index("points_ledger_customer", "merchant_id", "customer_id", "seq"),
)

points_holds = Table(
    "points_holds",
    metadata,
    Column("merchant_id", Text, nullable=False),
    Column("order_id", Text, nullable=False),
    Column("customer_id", Text, nullable=False),
    Column("points", BigInteger, nullable=False),
    Column("status", Text, nullable=False),
    Column("currency", Text, nullable=False, server_default=""),
    Column("point_value_minor", BigInteger, nullable=False, server_default="1"),
    Column("created_at", DateTime(timezone=True), nullable=False, server_default=func.now()),
    PrimaryKeyConstraint("merchant_id", "order_id", name="points_holds_pkey"),
    Index("points_holds_customer", "merchant_id", "customer_id"),
)

purchases = Table(
    "purchases",
    metadata,
    Column("merchant_id", Text, nullable=False),
    Column("order_id", Text, nullable=False),
    Column("customer_id", Text, nullable=False),
    Column("location_id", Text, nullable=False),
    Column("total_amount", BigInteger, nullable=False),
    Column("currency", Text, nullable=False),
    Column("points_earned", BigInteger, nullable=False, server_default="0"),
    Column("ordered_at", DateTime(timezone=True), nullable=False),
    Column("status", Text, nullable=False, server_default="confirmed"),
    # Each line's part in what the sale earned, by line id ({"L1": [units, value earned on]}),
    # as the program stood at the sale: what a return's units take back. Null for a purchase
    # recorded before it was kept (migration 0009) or whose lines had no ids: its returns take
    # the share of the goods' value instead.
    Column("earning_lines", JSONB, nullable=True),
    PrimaryKeyConstraint("merchant_id", "order_id", name="purchases_pkey"),
    Index("purchases_customer", "merchant_id", "customer_id", "ordered_at"),
)

# That an order was cancelled (return_id '') or had units returned, recorded when the event
# arrives whether or not the order's points were earned yet: the consumers are not ordered across
# event types, so an order_confirmed may come after its cancellation or return. Its earn then finds
# this row: a cancelled order earns nothing, a returned one at once gives back its returns' share.
order_reversals = Table(
    "order_reversals",
    metadata,
    Column("merchant_id", Text, nullable=False),
    Column("order_id", Text, nullable=False),
    Column("return_id", Text, nullable=False, server_default=""),
    # For a return: the order's total and what was refunded of it so far (its share of points).
    Column("order_total", BigInteger, nullable=False, server_default="0"),
    Column("refunded", BigInteger, nullable=False, server_default="0"),
    Column("created_at", DateTime(timezone=True), nullable=False, server_default=func.now()),
    # The units this return (or cancelled or expired fulfilment) took back, by line id
    # ({"L1": 2}); null when its event did not say or it came before they were kept (0009).
    Column("lines", JSONB, nullable=True),
    PrimaryKeyConstraint("merchant_id", "order_id", "return_id", name="order_reversals_pkey"),
)

# That an erasure happened, when and at whose request: no personal data.
erasures = Table(
    "erasures",
    metadata,
    Column("merchant_id", Text, nullable=False),
    Column("customer_id", Text, nullable=False),
    Column("requested_by", Text, nullable=False, server_default=""),
    Column("erased_at", DateTime(timezone=True), nullable=False, server_default=func.now()),
    # When the stream's messages holding the profile were deleted (entrypoints/stream_erasure).
    Column("stream_purged_at", DateTime(timezone=True), nullable=True),
    PrimaryKeyConstraint("merchant_id", "customer_id", name="erasures_pkey"),
    Index("erasures_to_purge", "erased_at", postgresql_where=text("stream_purged_at IS NULL")),
)
