"""The gateway's own database: merchants and their API keys."""

from __future__ import annotations

from sqlalchemy import (
    Boolean,
    CheckConstraint,
    Column,
    DateTime,
    Float,
    ForeignKey,
    Index,
    Integer,
    LargeBinary,
    MetaData,
    PrimaryKeyConstraint,
    Table,
    Text,
    func,
)
from sqlalchemy.dialects.postgresql import ARRAY

metadata = MetaData()

merchants = Table(
    "merchants",
    metadata,
    Column("id", Text, primary_key=True),
    Column("name", Text, nullable=False),
    Column("created_at", DateTime(timezone=True), nullable=False, server_default=func.now()),
)

api_keys = Table(
    "api_keys",
    metadata,
    Column("id", Text, primary_key=True),
    Column("merchant_id", Text, ForeignKey("merchants.id"), nullable=False),
    Column("name", Text, nullable=False),
    # Only the keyed hash is stored; the key itself is shown once, at creation.
    Column("key_hash", LargeBinary, nullable=False),
    # The first characters, so a merchant can tell keys apart in a list.
    Column("key_hint", Text, nullable=False),
    Column("mode", Text, nullable=False),
    Column("scopes", ARRAY(Text), nullable=False),
    Column("created_at", DateTime(timezone=True), nullable=False, server_default=func.now()),
    Column("last_used_at", DateTime(timezone=True)),
    Column("revoked_at", DateTime(timezone=True)),
    # The Idempotency-Key of the request that made it: a retry that finds it gets the same key
    # back (without its secret, which is gone) instead of a second one. None for the CLI's.
    Column("request_id", Text),
    Index("api_keys_hash", "key_hash", unique=True),
    Index("api_keys_request", "merchant_id", "request_id", unique=True),
)

NO_STORED_SECRETS = (
    'position(\'"key":"pos_test_\'::bytea in body) = 0'
    ' AND position(\'"key":"pos_live_\'::bytea in body) = 0'
    ' AND position(\'"client_secret":"\'::bytea in body) = 0'
    # Any other shown-once secret (gift card codes, ...): its answer says it is not redacted.
    " AND position('\"secret_redacted\":false'::bytea in body) = 0"
)

# Stored answers to POSTs with an Idempotency-Key, replayed byte for byte for 24 hours.
idempotency_keys = Table(
    "idempotency_keys",
    metadata,
    Column("merchant_id", Text, nullable=False),
    Column("key", Text, nullable=False),
    Column("fingerprint", LargeBinary, nullable=False),
    Column("state", Text, nullable=False),  # in_progress | done
    Column("locked_until", DateTime(timezone=True), nullable=False),
    Column("status_code", Integer),
    Column("content_type", Text),
    Column("body", LargeBinary),
    Column("created_at", DateTime(timezone=True), nullable=False, server_default=func.now()),
    PrimaryKeyConstraint("merchant_id", "key", name="idempotency_keys_pkey"),
    Index("idempotency_keys_created", "created_at"),
    # The database's own guard behind idempotency.redact: it refuses an answer that still
    # holds an API key or a client secret (as JSON writes them), whatever wrote it: a bug, or
    # a replica of an older gateway during an upgrade.
    CheckConstraint(NO_STORED_SECRETS, name="idempotency_keys_no_secrets"),
)

oauth_clients = Table(
    "oauth_clients",
    metadata,
    Column("id", Text, primary_key=True),  # the client_id
    Column("merchant_id", Text, ForeignKey("merchants.id"), nullable=False),
    Column("name", Text, nullable=False),
    Column("secret_hash", LargeBinary, nullable=False),
    Column("scopes", ARRAY(Text), nullable=False),
    Column("created_at", DateTime(timezone=True), nullable=False, server_default=func.now()),
    Column("revoked_at", DateTime(timezone=True)),
    Column("request_id", Text),  # as api_keys.request_id
    Index("oauth_clients_request", "merchant_id", "request_id", unique=True),
)

# Token buckets shared by the gateway replicas (shared_ratelimit). UNLOGGED: see there why.
rate_limit_buckets = Table(
    "rate_limit_buckets",
    metadata,
    Column("credential_id", Text, primary_key=True),  # an API key's or OAuth client's id
    Column("tokens", Float, nullable=False),
    Column("allowed", Boolean, nullable=False),  # the last decision, returned with it
    Column("updated_at", DateTime(timezone=True), nullable=False),
    prefixes=["UNLOGGED"],
)
