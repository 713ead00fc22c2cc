"""The gateway's own database: merchants and their credentials, registers, staff and the audit
log."""

from __future__ import annotations

from sqlalchemy import (
    BigInteger,
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
    text,
)
from sqlalchemy.dialects.postgresql import ARRAY, JSONB

from pos_kit.tables import outbox_table

metadata = MetaData()

merchants = Table(
    "merchants",
    metadata,
    Column("id", Text, primary_key=True),
    Column("name", Text, nullable=False),
    Column("created_at", DateTime(timezone=True), nullable=False, server_default=func.now()),
    # The Idempotency-Key of the platform request that made it (as api_keys.request_id); None
    # for the CLI's.
    Column("request_id", Text),
    Index("merchants_request", "request_id", unique=True),
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
    # A rolled key: when it stops working (refused at authentication from then on), and the
    # key that replaced it. Both None for a key never rolled.
    Column("expires_at", DateTime(timezone=True)),
    Column("rolled_to", Text),
    # The Idempotency-Key of the request that made it: a retry that finds it gets the same key
    # back (without its secret, which is gone) instead of a second one. None for the CLI's.
    # A key the platform issues has the platform's, `platform/<key>` (admin.platform_request_id,
    # migration 0021): never one of the merchant's own.
    Column("request_id", Text),
    Index("api_keys_hash", "key_hash", unique=True),
    Index("api_keys_request", "merchant_id", "request_id", unique=True),
)

# The function (migration 0022) reads the answer's own top-level fields: an API key, a client
# secret, or `"secret_redacted": false` (an unredacted shown-once secret); an answer that is not
# a JSON object is searched byte by byte for them.
NO_STORED_SECRETS = "NOT stored_answer_shows_a_secret(body)"

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
    # The answer's ETag (a version), replayed with it.
    Column("etag", Text),
    Column("created_at", DateTime(timezone=True), nullable=False, server_default=func.now()),
    PrimaryKeyConstraint("merchant_id", "key", name="idempotency_keys_pkey"),
    Index("idempotency_keys_created", "created_at"),
    # The database's own guard behind idempotency.redact: it refuses an answer that still
    # holds an API key or a client secret, whatever wrote it: a bug, or a replica of an older
    # gateway during an upgrade. A merchant's metadata naming such a field is not a secret.
    CheckConstraint(NO_STORED_SECRETS, name="idempotency_keys_no_secrets"),
)

# Customers erased through this gateway, for a day (as long as a stored answer is kept): an
# answer stored after an erasure's withdrawal (`IdempotencyStore.withdraw_answers_naming`) that
# names one (an order the order service accepted before it heard of the erasure) is kept as
# the erasure's 410 instead, as the withdrawal would have made it (`IdempotencyStore.complete`).
customer_erasures = Table(
    "customer_erasures",
    metadata,
    Column("merchant_id", Text, nullable=False),
    Column("customer_id", Text, nullable=False),
    Column("erased_at", DateTime(timezone=True), nullable=False, server_default=func.now()),
    PrimaryKeyConstraint("merchant_id", "customer_id", name="customer_erasures_pkey"),
    Index("customer_erasures_recent", "merchant_id", "erased_at"),
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

# Tills at a location. A register is paired with one device at a time: the device holds a
# credential (stored as a keyed hash, like an API key) scoped to the register's location.
registers = Table(
    "registers",
    metadata,
    Column("id", Text, primary_key=True),
    Column("merchant_id", Text, ForeignKey("merchants.id"), nullable=False),
    Column("location_id", Text, nullable=False),
    Column("name", Text, nullable=False),
    Column("status", Text, nullable=False),  # unpaired | paired | retired
    Column("credential_hash", LargeBinary),
    Column("created_at", DateTime(timezone=True), nullable=False, server_default=func.now()),
    Column("paired_at", DateTime(timezone=True)),
    Column("retired_at", DateTime(timezone=True)),
    Column("request_id", Text),
    # Stamped by a trigger at the moment of each write (pos_kit.changes): the change feed.
    Column("updated_at", DateTime(timezone=True), nullable=False, server_default=func.now()),
    # Bumped by every change of the register (renamed, paired, retired): If-Match.
    Column("version", BigInteger, nullable=False, server_default=text("1")),
    Index("registers_credential", "credential_hash", unique=True),
    Index("registers_request", "merchant_id", "request_id", unique=True),
    Index("registers_location", "merchant_id", "location_id"),
    Index("registers_changed", "merchant_id", "updated_at", "id"),
)

# Short-lived codes a device exchanges once for its register's credential.
pairing_codes = Table(
    "register_pairing_codes",
    metadata,
    Column("code_hash", LargeBinary, primary_key=True),
    Column("merchant_id", Text, ForeignKey("merchants.id"), nullable=False),
    Column("register_id", Text, ForeignKey("registers.id"), nullable=False),
    Column("expires_at", DateTime(timezone=True), nullable=False),
    Column("used_at", DateTime(timezone=True)),
    Column("created_at", DateTime(timezone=True), nullable=False, server_default=func.now()),
    Column("request_id", Text),
    Index("pairing_codes_request", "merchant_id", "request_id", unique=True),
)

# A merchant's own roles beside the built-in cashier, manager and admin.
roles = Table(
    "staff_roles",
    metadata,
    Column("id", Text, primary_key=True),
    Column("merchant_id", Text, ForeignKey("merchants.id"), nullable=False),
    Column("name", Text, nullable=False),
    Column("permissions", ARRAY(Text), nullable=False),
    Column("discount_limit_bps", Integer, nullable=False),
    Column("created_at", DateTime(timezone=True), nullable=False, server_default=func.now()),
    Column("request_id", Text),
    # Bumped by every change (If-Match); a role is changed as a whole, never partly.
    Column("version", Integer, nullable=False, server_default=text("1")),
    # The moment of its last change (made, or a new version), stamped by a trigger
    # (pos_kit/changes.py, migration 0018): its place in the `updated_since` feed.
    Column("updated_at", DateTime(timezone=True), nullable=False, server_default=func.now()),
    # "Supervisor" beside "supervisor " would read as one role on every screen.
    Index("staff_roles_name", "merchant_id", func.lower(func.btrim(text("name"))), unique=True),
    Index("staff_roles_request", "merchant_id", "request_id", unique=True),
    Index("staff_roles_by_change", "merchant_id", "updated_at", "id"),
)

staff_members = Table(
    "staff_members",
    metadata,
    Column("id", Text, primary_key=True),
    Column("merchant_id", Text, ForeignKey("merchants.id"), nullable=False),
    Column("name", Text, nullable=False),
    Column("role", Text, nullable=False),  # cashier | manager | admin | a staff_roles id
    Column("location_ids", ARRAY(Text), nullable=False),
    # scrypt of the PIN keyed by GATEWAY_SECRET_KEY, with a salt of its own (pins.py).
    Column("pin_hash", LargeBinary, nullable=False),
    Column("pin_salt", LargeBinary, nullable=False),
    Column("status", Text, nullable=False),  # active | deactivated
    Column("failed_pin_attempts", Integer, nullable=False, server_default="0"),
    Column("locked_until", DateTime(timezone=True)),
    Column("version", Integer, nullable=False, server_default="1"),
    Column("created_at", DateTime(timezone=True), nullable=False, server_default=func.now()),
    # Stamped by a trigger at the moment of each change of `version` (pos_kit.changes).
    Column("updated_at", DateTime(timezone=True), nullable=False, server_default=func.now()),
    Column("request_id", Text),
    Index("staff_members_request", "merchant_id", "request_id", unique=True),
    Index("staff_members_changed", "merchant_id", "updated_at", "id"),
)

# Who is signed in at a register: at most one open session per register.
register_sessions = Table(
    "register_sessions",
    metadata,
    Column("id", Text, primary_key=True),
    Column("merchant_id", Text, ForeignKey("merchants.id"), nullable=False),
    Column("register_id", Text, ForeignKey("registers.id"), nullable=False),
    Column("staff_id", Text, ForeignKey("staff_members.id"), nullable=False),
    Column("started_at", DateTime(timezone=True), nullable=False, server_default=func.now()),
    Column("ended_at", DateTime(timezone=True)),
    Index(
        "register_sessions_open",
        "register_id",
        unique=True,
        postgresql_where=text("ended_at IS NULL"),
    ),
)

# A manager's PIN given for one action a signed-in member may not do alone.
overrides = Table(
    "overrides",
    metadata,
    Column("id", Text, primary_key=True),
    Column("merchant_id", Text, ForeignKey("merchants.id"), nullable=False),
    Column("register_id", Text, ForeignKey("registers.id"), nullable=False),
    Column("session_id", Text, ForeignKey("register_sessions.id"), nullable=False),
    Column("permission", Text, nullable=False),
    Column("requested_by", Text, nullable=False),
    Column("approved_by", Text, nullable=False),
    Column("granted_at", DateTime(timezone=True), nullable=False, server_default=func.now()),
    Column("expires_at", DateTime(timezone=True), nullable=False),
    Column("used_at", DateTime(timezone=True)),
    # The request that used it: a retry of that request may use it again, no other may.
    Column("used_by_request", Text),
    # The approving manager's version when they gave their PIN: any change to them since (a
    # role, their locations, a deactivation, even undone before the override is used) spends it.
    Column("approver_version", Integer),
    # The request that granted it: a retry of that request answers it again, granting none.
    Column("request_id", Text),
    Index("overrides_session", "session_id", "permission"),
    Index("overrides_request", "merchant_id", "request_id", unique=True),
)

# Append-only (a trigger refuses UPDATE, and DELETE but for the retention purge: audit.py).
audit_log = Table(
    "audit_log",
    metadata,
    Column("id", Text, primary_key=True),
    Column("merchant_id", Text, ForeignKey("merchants.id"), nullable=False),
    Column("occurred_at", DateTime(timezone=True), nullable=False, server_default=func.now()),
    Column("action", Text, nullable=False),
    Column("staff_id", Text),
    Column("approved_by", Text),
    Column("register_id", Text),
    Column("credential_id", Text),
    Column("resource_type", Text),
    Column("resource_id", Text),
    Column("details", JSONB, nullable=False),
    # The request that did it: a retry of a request records its action once.
    Column("request_id", Text),
    Index("audit_log_merchant", "merchant_id", "id"),
    Index("audit_log_once", "merchant_id", "request_id", "action", unique=True),
    # A register's wrong PINs of the last minutes: its PIN budget (staff._register_budget).
    Index(
        "audit_log_pin_failures",
        "register_id",
        "occurred_at",
        postgresql_where=text("action = 'staff.pin_failed'"),
    ),
)

merchant_settings = Table(
    "merchant_settings",
    metadata,
    Column("merchant_id", Text, ForeignKey("merchants.id"), primary_key=True),
    Column("audit_retention_days", Integer, nullable=False),
    Column("updated_at", DateTime(timezone=True), nullable=False, server_default=func.now()),
    # Bumped by every change (1 is the defaults, before any row): If-Match on the settings.
    Column("version", BigInteger, nullable=False, server_default="2"),
)

# Register, staff and override events, written in the same transaction as the change and
# relayed to the POS_GATEWAY stream (pos_gateway.outbox): the kit's outbox table, without the
# inbox and stored answers of a service (the gateway consumes no events and keeps its answers
# in idempotency_keys).
outbox = outbox_table(metadata)
