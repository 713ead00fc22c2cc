"""The dispatcher's database: the public event feed, subscriptions, and the delivery queue."""

from __future__ import annotations

from sqlalchemy import (
    ARRAY,
    BigInteger,
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
    text,
)
from sqlalchemy.dialects.postgresql import JSONB

from pos_kit.tables import add_kit_tables

metadata = MetaData()
kit = add_kit_tables(metadata)

# The last sequence given to each merchant's events. Taking the next one locks the row until
# the transaction ends, so sequences are given in commit order and a rollback leaves no gap.
merchant_sequences = Table(
    "merchant_sequences",
    metadata,
    Column("merchant_id", Text, primary_key=True),
    Column("last_sequence", BigInteger, nullable=False),
    # Events up to this sequence were dropped after the retention period: a cursor below it
    # cannot be served without a gap (410).
    Column("purged_through", BigInteger, nullable=False, server_default="0"),
)

events = Table(
    "events",
    metadata,
    Column("merchant_id", Text, nullable=False),
    Column("sequence", BigInteger, nullable=False),
    Column("id", Text, nullable=False),
    Column("type", Text, nullable=False),
    # The resource the event is about (`prod_…`, `loc_…:SKU` for a stock level).
    Column("resource_id", Text, nullable=False),
    Column("occurred_at", DateTime(timezone=True), nullable=False),
    Column("recorded_at", DateTime(timezone=True), nullable=False, server_default=func.now()),
    # {"object": …}: the resource as the REST API returns it at that version.
    Column("data", JSONB, nullable=False),
    PrimaryKeyConstraint("merchant_id", "sequence", name="events_pkey"),
    UniqueConstraint("merchant_id", "id", name="events_id"),
    Index("events_recorded_at", "recorded_at"),
)

subscriptions = Table(
    "webhook_subscriptions",
    metadata,
    Column("merchant_id", Text, nullable=False),
    Column("id", Text, nullable=False),
    Column("url", Text, nullable=False),
    Column("event_types", ARRAY(Text), nullable=False),
    Column("description", Text, nullable=False, server_default=""),
    Column("status", Text, nullable=False, server_default="enabled"),
    Column("disabled_reason", Text, nullable=False, server_default=""),
    # Secrets encrypted under the deployment's key (adapters/secrets.py), never in clear.
    Column("secret", LargeBinary, nullable=False),
    Column("previous_secret", LargeBinary),
    Column("previous_secret_until", DateTime(timezone=True)),
    # Secrets earlier rotations retired, still signing to the end of the overlap each was
    # given (a rotation within another's overlap keeps it), newest first, with those ends.
    Column(
        "earlier_secrets", ARRAY(LargeBinary), nullable=False, server_default=text("'{}'::bytea[]")
    ),
    Column(
        "earlier_secrets_until",
        ARRAY(DateTime(timezone=True)),
        nullable=False,
        server_default=text("'{}'::timestamptz[]"),
    ),
    # Since when every attempt has failed (null after any success): what disables it.
    Column("failing_since", DateTime(timezone=True)),
    Column("version", BigInteger, nullable=False, server_default="1"),
    Column("created_at", DateTime(timezone=True), nullable=False, server_default=func.now()),
    # Stamped by a trigger at the moment of each change of `version` (pos_kit.changes).
    Column("updated_at", DateTime(timezone=True), nullable=False, server_default=func.now()),
    PrimaryKeyConstraint("merchant_id", "id", name="webhook_subscriptions_pkey"),
    Index("webhook_subscriptions_changed", "merchant_id", "updated_at", "id"),
)

deliveries = Table(
    "deliveries",
    metadata,
    Column("merchant_id", Text, nullable=False),
    Column("id", Text, nullable=False),
    Column("subscription_id", Text, nullable=False),
    Column("event_id", Text, nullable=False),
    Column("event_type", Text, nullable=False),
    Column("sequence", BigInteger, nullable=False),
    # The signed body, fixed at enqueue so every attempt sends the same bytes.
    Column("body", Text, nullable=False),
    Column("status", Text, nullable=False, server_default="pending"),
    Column("attempt_count", Integer, nullable=False, server_default="0"),
    # When it is next due; while an attempt runs, the end of that attempt's lease.
    Column("next_attempt_at", DateTime(timezone=True), nullable=False),
    Column("created_at", DateTime(timezone=True), nullable=False),
    PrimaryKeyConstraint("merchant_id", "id", name="deliveries_pkey"),
    ForeignKeyConstraint(
        ["merchant_id", "subscription_id"],
        ["webhook_subscriptions.merchant_id", "webhook_subscriptions.id"],
        ondelete="CASCADE",
        name="deliveries_subscription",
    ),
    # The worker's only question: what is due? Keep that index to the pending rows.
    Index("deliveries_due", "next_attempt_at", postgresql_where=text("status = 'pending'")),
    Index("deliveries_by_subscription", "merchant_id", "subscription_id", "created_at"),
)

attempts = Table(
    "delivery_attempts",
    metadata,
    Column("merchant_id", Text, nullable=False),
    Column("delivery_id", Text, nullable=False),
    Column("number", Integer, nullable=False),
    Column("attempted_at", DateTime(timezone=True), nullable=False),
    Column("status_code", Integer, nullable=False),
    Column("latency_ms", BigInteger, nullable=False),
    Column("response_excerpt", Text, nullable=False, server_default=""),
    Column("error", Text, nullable=False, server_default=""),
    PrimaryKeyConstraint("merchant_id", "delivery_id", "number", name="delivery_attempts_pkey"),
    ForeignKeyConstraint(
        ["merchant_id", "delivery_id"],
        ["deliveries.merchant_id", "deliveries.id"],
        ondelete="CASCADE",
        name="delivery_attempts_delivery",
    ),
)
