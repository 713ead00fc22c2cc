"""The payment database schema (SQLAlchemy Core). No card number or token column, ever."""

from __future__ import annotations

from sqlalchemy import (
    BigInteger,
    Boolean,
    Column,
    DateTime,
    Index,
    Integer,
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

payments = Table(
    "payments",
    metadata,
    Column("merchant_id", Text, nullable=False),
    Column("id", Text, nullable=False),
    Column("order_id", Text, nullable=False),
    Column("tender_type", Text, nullable=False),
    Column("amount", BigInteger, nullable=False),
    Column("currency", Text, nullable=False),
    Column("status", Text, nullable=False),
    Column("change_due", BigInteger),
    Column("card_summary", Text, nullable=False, server_default=""),
    Column("decline_reason", Text, nullable=False, server_default=""),
    Column("created_at", DateTime(timezone=True), nullable=False, server_default=func.now()),
    Column("reference", Text, nullable=False, server_default=""),
    Column("location_id", Text, nullable=False, server_default=""),
    Column("tip", BigInteger, nullable=False, server_default="0"),
    Column("capture_at_once", Boolean, nullable=False, server_default=text("true")),
    Column("authorized", BigInteger, nullable=False, server_default="0"),
    Column("captured", BigInteger, nullable=False, server_default="0"),
    Column("voided", BigInteger, nullable=False, server_default="0"),
    Column("refunded", BigInteger, nullable=False, server_default="0"),
    # Set aside for operations in flight at the processor (see pos_payment.domain.model).
    Column("capturing", BigInteger, nullable=False, server_default="0"),
    Column("refunding", BigInteger, nullable=False, server_default="0"),
    Column("voiding", Boolean, nullable=False, server_default=text("false")),
    # Set aside as exchange credits: not refundable from this payment (see exchange_credits).
    Column("credited", BigInteger, nullable=False, server_default="0"),
    # Given back outside the processor: never refundable again (see out_of_band_refunds).
    Column("paid_out_of_band", BigInteger, nullable=False, server_default="0"),
    Column("cash_tendered", BigInteger),
    Column("card_brand", Text, nullable=False, server_default=""),
    Column("card_last4", Text, nullable=False, server_default=""),
    Column("external_reference", Text, nullable=False, server_default=""),
    Column("decline_code", Text, nullable=False, server_default=""),
    Column("processor_reference", Text, nullable=False, server_default=""),
    Column("request_key", Text, nullable=False, server_default=""),
    Column("expires_at", DateTime(timezone=True)),
    Column("version", BigInteger, nullable=False, server_default="1"),
    Column("updated_at", DateTime(timezone=True), nullable=False, server_default=func.now()),
    # Taken at a register (call metadata): which, by whom, and the shift open there then.
    Column("register_id", Text, nullable=False, server_default=""),
    Column("staff_id", Text, nullable=False, server_default=""),
    Column("shift_id", Text, nullable=False, server_default=""),
    PrimaryKeyConstraint("merchant_id", "id", name="payments_pkey"),
    Index("payments_shift", "merchant_id", "shift_id", postgresql_where=text("shift_id <> ''")),
    Index("payments_order", "merchant_id", "order_id"),
    Index("payments_changes", "merchant_id", "updated_at", "id"),
    # A retried request finds the payment its first run started.
    Index("payments_request_key", "merchant_id", "request_key"),
    # The reconciler's and the expiry sweep's work lists stay small: only open payments.
    Index(
        "payments_pending",
        "updated_at",
        postgresql_where=text("status = 'pending'"),
    ),
    Index(
        "payments_open_authorizations",
        "expires_at",
        postgresql_where=text("status IN ('authorized', 'captured') AND expires_at IS NOT NULL"),
    ),
)

# Captures and voids in flight or done: each keyed by its processor idempotency key.
operations = Table(
    "payment_operations",
    metadata,
    Column("merchant_id", Text, nullable=False),
    Column("id", Text, nullable=False),
    Column("payment_id", Text, nullable=False),
    Column("kind", Text, nullable=False),
    Column("amount", BigInteger, nullable=False),
    Column("status", Text, nullable=False),
    Column("reason", Text, nullable=False, server_default=""),
    Column("request_key", Text, nullable=False),
    Column("created_at", DateTime(timezone=True), nullable=False, server_default=func.now()),
    Column("updated_at", DateTime(timezone=True), nullable=False, server_default=func.now()),
    # A capture's: the shift open at its payment's register when it succeeded (at_register.py).
    Column("shift_id", Text, nullable=False, server_default=""),
    PrimaryKeyConstraint("merchant_id", "id", name="payment_operations_pkey"),
    UniqueConstraint("merchant_id", "request_key", name="payment_operations_request_key"),
    Index(
        "payment_operations_shift",
        "merchant_id",
        "shift_id",
        postgresql_where=text("shift_id <> ''"),
    ),
    Index("payment_operations_payment", "merchant_id", "payment_id"),
    Index("payment_operations_pending", "updated_at", postgresql_where=text("status = 'pending'")),
)

refunds = Table(
    "refunds",
    metadata,
    Column("merchant_id", Text, nullable=False),
    Column("id", Text, nullable=False),
    Column("payment_id", Text, nullable=False),
    Column("order_id", Text, nullable=False),
    Column("tender_type", Text, nullable=False),
    Column("amount", BigInteger, nullable=False),
    Column("currency", Text, nullable=False),
    Column("status", Text, nullable=False),
    Column("reason", Text, nullable=False, server_default=""),
    Column("lines", JSONB, nullable=False, server_default="[]"),
    Column("failure_code", Text, nullable=False, server_default=""),
    # `<request key>/<n>`, one per tender refunded; byte order ("C") so that the refunds of one
    # request are a range of the unique index below.
    Column("request_key", Text(collation="C"), nullable=False),
    Column("created_at", DateTime(timezone=True), nullable=False, server_default=func.now()),
    Column("updated_at", DateTime(timezone=True), nullable=False, server_default=func.now()),
    # Given back at a register: which, by whom, and the shift open there then.
    Column("register_id", Text, nullable=False, server_default=""),
    Column("staff_id", Text, nullable=False, server_default=""),
    Column("shift_id", Text, nullable=False, server_default=""),
    # A return of an exchange's new order: drawn on the credit set aside for it.
    Column("exchange_order_id", Text, nullable=False, server_default=""),
    PrimaryKeyConstraint("merchant_id", "id", name="refunds_pkey"),
    Index("refunds_shift", "merchant_id", "shift_id", postgresql_where=text("shift_id <> ''")),
    UniqueConstraint("merchant_id", "request_key", name="refunds_request_key"),
    Index("refunds_payment", "merchant_id", "payment_id"),
    Index("refunds_order", "merchant_id", "order_id"),
    Index("refunds_changes", "merchant_id", "updated_at", "id"),
    Index("refunds_pending", "updated_at", postgresql_where=text("status = 'pending'")),
)

# Money of an order's payments that pays for an exchange's new order, set aside on them
# (payments.credited): one row per new order, `applied` or `released`.
exchange_credits = Table(
    "exchange_credits",
    metadata,
    Column("merchant_id", Text, nullable=False),
    Column("exchange_order_id", Text, nullable=False),
    Column("order_id", Text, nullable=False),
    Column("currency", Text, nullable=False),
    Column("status", Text, nullable=False),
    # [{"payment_id": ..., "amount": ...}], in the order asked.
    Column("amounts", JSONB, nullable=False, server_default="[]"),
    Column("created_at", DateTime(timezone=True), nullable=False, server_default=func.now()),
    Column("updated_at", DateTime(timezone=True), nullable=False, server_default=func.now()),
    PrimaryKeyConstraint("merchant_id", "exchange_order_id", name="exchange_credits_pkey"),
    Index("exchange_credits_order", "merchant_id", "order_id"),
)

# A return's refund the processor refused, paid another way (cash, a transfer) and settled so
# by a person: one row per return; what it paid of each payment and what was set aside there
# (payments.paid_out_of_band); cash at a register with an open shift names the drawer's pay-out.
out_of_band_refunds = Table(
    "out_of_band_refunds",
    metadata,
    Column("merchant_id", Text, nullable=False),
    Column("return_id", Text, nullable=False),
    Column("order_id", Text, nullable=False),
    Column("currency", Text, nullable=False),
    Column("tender_type", Text, nullable=False),
    Column("reference", Text, nullable=False, server_default=""),
    # [{"payment_id": ..., "amount": ..., "set_aside": ...}], in the order asked.
    Column("amounts", JSONB, nullable=False, server_default="[]"),
    Column("shift_id", Text, nullable=False, server_default=""),
    Column("movement_id", Text, nullable=False, server_default=""),
    Column("created_at", DateTime(timezone=True), nullable=False, server_default=func.now()),
    PrimaryKeyConstraint("merchant_id", "return_id", name="out_of_band_refunds_pkey"),
)

# The sandbox processor's own records, standing in for an acquirer's: what each idempotency
# key was answered, so a repeated call replays and a lookup finds the truth from any replica.
# No token and no gift card code: the outcome only.
sandbox_calls = Table(
    "sandbox_processor_calls",
    metadata,
    Column("key", Text, nullable=False),
    Column("kind", Text, nullable=False),
    Column("amount", BigInteger, nullable=False),
    Column("approved", Boolean, nullable=False),
    Column("reference", Text, nullable=False),
    Column("brand", Text, nullable=False, server_default=""),
    Column("last4", Text, nullable=False, server_default=""),
    Column("decline_code", Text, nullable=False, server_default=""),
    # How many times the key was asked: the tests' proof that nothing is charged twice.
    Column("calls", Integer, nullable=False, server_default="1"),
    Column("created_at", DateTime(timezone=True), nullable=False, server_default=func.now()),
    PrimaryKeyConstraint("key", name="sandbox_processor_calls_pkey"),
)

terminal_checkouts = Table(
    "terminal_checkouts",
    metadata,
    Column("merchant_id", Text, nullable=False),
    Column("id", Text, nullable=False),
    Column("order_id", Text, nullable=False),
    Column("reference", Text, nullable=False, server_default=""),
    Column("location_id", Text, nullable=False),
    Column("device_id", Text, nullable=False),
    Column("amount", BigInteger, nullable=False),
    Column("tip", BigInteger, nullable=False, server_default="0"),
    Column("currency", Text, nullable=False),
    Column("status", Text, nullable=False),
    Column("payment_id", Text, nullable=False, server_default=""),
    Column("decline_code", Text, nullable=False, server_default=""),
    # The reader's idempotency key (and the payment's, once the reader answers).
    Column("request_key", Text, nullable=False),
    Column("deadline", DateTime(timezone=True), nullable=False),
    Column("created_at", DateTime(timezone=True), nullable=False, server_default=func.now()),
    Column("updated_at", DateTime(timezone=True), nullable=False, server_default=func.now()),
    # The register (and member) that sent it: the reader's payment is theirs (migration 0019).
    Column("register_id", Text, nullable=False, server_default=""),
    Column("staff_id", Text, nullable=False, server_default=""),
    PrimaryKeyConstraint("merchant_id", "id", name="terminal_checkouts_pkey"),
    Index("terminal_checkouts_pending", "created_at", postgresql_where=text("status = 'pending'")),
)

# A merchant's own payment settings; a merchant with no row has the service's defaults.
merchant_settings = Table(
    "merchant_settings",
    metadata,
    Column("merchant_id", Text, nullable=False),
    Column("authorization_window_seconds", BigInteger, nullable=False),
    Column("updated_at", DateTime(timezone=True), nullable=False, server_default=func.now()),
    # Bumped by every change (1 is the defaults, before any row): If-Match on the settings.
    Column("version", BigInteger, nullable=False, server_default="2"),
    PrimaryKeyConstraint("merchant_id", name="merchant_settings_pkey"),
)

# A register's shifts; at most one open per register.
shifts = Table(
    "shifts",
    metadata,
    Column("merchant_id", Text, nullable=False),
    Column("id", Text, nullable=False),
    Column("location_id", Text, nullable=False),
    Column("register_id", Text, nullable=False),
    Column("status", Text, nullable=False),
    Column("currency", Text, nullable=False),
    Column("opening_float", BigInteger, nullable=False),
    Column("opened_by", Text, nullable=False, server_default=""),
    Column("closed_by", Text, nullable=False, server_default=""),
    Column("counted_cash", BigInteger),
    # Fixed at the close: what the drawer should have held then.
    Column("expected_cash", BigInteger),
    Column("version", BigInteger, nullable=False, server_default="1"),
    Column("opened_at", DateTime(timezone=True), nullable=False, server_default=func.now()),
    Column("closed_at", DateTime(timezone=True)),
    # Stamped by a trigger at the moment of each change of `version` (pos_kit.changes).
    Column("updated_at", DateTime(timezone=True), nullable=False, server_default=func.now()),
    PrimaryKeyConstraint("merchant_id", "id", name="shifts_pkey"),
    Index("shifts_changed", "merchant_id", "updated_at", "id"),
    Index(
        "shifts_open_per_register",
        "merchant_id",
        "register_id",
        unique=True,
        postgresql_where=text("status = 'open'"),
    ),
)

# What a register's shift reports besides money: each order confirmed at the register with a
# discount, and each manager's override granted there, from the order service's and the
# gateway's events, attached to the register's shift open when the event arrives (none if the
# shift had closed). Keyed by the resource: a redelivered event adds nothing.
register_activity = Table(
    "register_activity",
    metadata,
    Column("merchant_id", Text, nullable=False),
    Column("kind", Text, nullable=False),  # discount | override
    Column("resource_id", Text, nullable=False),
    Column("register_id", Text, nullable=False),
    Column("shift_id", Text, nullable=False, server_default=""),
    Column("amount", BigInteger, nullable=False, server_default="0"),
    Column("currency", Text, nullable=False, server_default=""),
    Column("at", DateTime(timezone=True), nullable=False, server_default=func.now()),
    PrimaryKeyConstraint("merchant_id", "kind", "resource_id", name="register_activity_pkey"),
    Index("register_activity_by_shift", "merchant_id", "shift_id"),
)

# Pay-ins, pay-outs and no-sale opens of a shift's drawer.
drawer_movements = Table(
    "drawer_movements",
    metadata,
    Column("merchant_id", Text, nullable=False),
    Column("id", Text, nullable=False),
    Column("shift_id", Text, nullable=False),
    Column("kind", Text, nullable=False),
    Column("amount", BigInteger, nullable=False),
    Column("currency", Text, nullable=False),
    Column("reason", Text, nullable=False),
    Column("staff_id", Text, nullable=False, server_default=""),
    Column("register_id", Text, nullable=False),
    Column("created_at", DateTime(timezone=True), nullable=False, server_default=func.now()),
    PrimaryKeyConstraint("merchant_id", "id", name="drawer_movements_pkey"),
    Index("drawer_movements_shift", "merchant_id", "shift_id"),
)
