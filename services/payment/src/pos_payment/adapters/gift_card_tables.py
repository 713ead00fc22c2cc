"""The gift card tables and the settlement report's index, in the payment database's metadata.

No code column, ever: a card is found by the keyed hash of its code (`code_hash`), and all that
is kept of the code besides is its last four characters.
"""

from __future__ import annotations

from sqlalchemy import (
    BigInteger,
    Boolean,
    CheckConstraint,
    Column,
    DateTime,
    Index,
    LargeBinary,
    PrimaryKeyConstraint,
    Table,
    Text,
    UniqueConstraint,
    false,
    func,
    text,
)

from pos_payment.adapters.tables import metadata, operations, payments, refunds

gift_cards = Table(
    "gift_cards",
    metadata,
    Column("merchant_id", Text, nullable=False),
    Column("id", Text, nullable=False),
    Column("code_hash", LargeBinary, nullable=False),
    Column("code_last4", Text, nullable=False),
    Column("currency", Text, nullable=False),
    Column("balance", BigInteger, nullable=False),
    Column("status", Text, nullable=False),
    Column("customer_id", Text, nullable=False, server_default=""),
    Column("order_id", Text, nullable=False, server_default=""),
    Column("order_line_id", Text, nullable=False, server_default=""),
    Column("reason", Text, nullable=False),
    Column("location_id", Text, nullable=False, server_default=""),
    Column("version", BigInteger, nullable=False, server_default="1"),
    Column("created_at", DateTime(timezone=True), nullable=False, server_default=func.now()),
    Column("updated_at", DateTime(timezone=True), nullable=False, server_default=func.now()),
    PrimaryKeyConstraint("merchant_id", "id", name="gift_cards_pkey"),
    UniqueConstraint("merchant_id", "code_hash", name="gift_cards_code_hash"),
    # The last line of defence of the first invariant: a bug cannot store a negative balance.
    CheckConstraint("balance >= 0", name="gift_cards_balance_not_negative"),
    # A customer's cards, for their data export and the list's customer filter.
    Index(
        "gift_cards_customer",
        "merchant_id",
        "customer_id",
        "id",
        postgresql_where=text("customer_id <> ''"),
    ),
    # The cards an order sold (its compensation finds a line's card by it).
    Index(
        "gift_cards_order",
        "merchant_id",
        "order_id",
        postgresql_where=text("order_id <> ''"),
    ),
    # An order line's card: one per line, whatever request issued it (migration 0021).
    Index(
        "gift_cards_order_line",
        "merchant_id",
        "order_id",
        "order_line_id",
        unique=True,
        postgresql_where=text("order_line_id <> ''"),
    ),
    # The list as a change feed (`updated_at` stamped by the kit's trigger: pos_kit/changes.py).
    Index("gift_cards_changes", "merchant_id", "updated_at", "id"),
    # The list's location filter: the cards sold at a store.
    Index(
        "gift_cards_location",
        "merchant_id",
        "location_id",
        "id",
        postgresql_where=text("location_id <> ''"),
    ),
    # The list's status filter for the few cards that are not active (the active ones are
    # most cards: the primary key walks them). Small, and untouched by an active card's
    # redemptions.
    Index("gift_cards_inactive", "merchant_id", "id", postgresql_where=text("status <> 'active'")),
)

# Pre-printed codes held for an order's line until its card is activated, the order ends unpaid
# (released) or `expires_at` passes: what keeps two sales of one physical card from both being
# charged. Found by the code's keyed hash, as a card is; never a card, never in a list or event.
gift_card_code_reservations = Table(
    "gift_card_code_reservations",
    metadata,
    Column("merchant_id", Text, nullable=False),
    Column("code_hash", LargeBinary, nullable=False),
    Column("order_id", Text, nullable=False),
    Column("order_line_id", Text, nullable=False),
    Column("expires_at", DateTime(timezone=True), nullable=False),
    Column("created_at", DateTime(timezone=True), nullable=False, server_default=func.now()),
    PrimaryKeyConstraint("merchant_id", "code_hash", name="gift_card_code_reservations_pkey"),
    # An order's reservations, for their release.
    Index("gift_card_code_reservations_order", "merchant_id", "order_id"),
)

# The ledger: append only. Sum of amount per card == the card's balance.
gift_card_activities = Table(
    "gift_card_activities",
    metadata,
    Column("merchant_id", Text, nullable=False),
    Column("id", Text, nullable=False),
    Column("gift_card_id", Text, nullable=False),
    Column("kind", Text, nullable=False),
    Column("amount", BigInteger, nullable=False),
    Column("balance_after", BigInteger, nullable=False),
    Column("currency", Text, nullable=False),
    Column("reference", Text, nullable=False, server_default=""),
    Column("location_id", Text, nullable=False, server_default=""),
    Column("created_at", DateTime(timezone=True), nullable=False, server_default=func.now()),
    # Value moved at a register outside a payment (a sale's issue, a load, a redemption, a
    # refund to the card): the register and the shift open there then (migration 0018), and
    # whether the customer paid it in cash (then in that shift's expected cash).
    Column("register_id", Text, nullable=False, server_default=""),
    Column("shift_id", Text, nullable=False, server_default=""),
    Column("paid_in_cash", Boolean, nullable=False, server_default=false()),
    PrimaryKeyConstraint("merchant_id", "id", name="gift_card_activities_pkey"),
    Index("gift_card_activities_card", "merchant_id", "gift_card_id", "created_at", "id"),
    Index("gift_card_activities_day", "merchant_id", "location_id", "created_at"),
    Index(
        "gift_card_activities_shift",
        "merchant_id",
        "shift_id",
        postgresql_where=text("shift_id <> ''"),
    ),
)

# What the gift card tender answered each processor idempotency key (approvals and declines),
# so a repeated call replays and the reconciler's lookup finds the truth. No code in it.
gift_card_tender_calls = Table(
    "gift_card_tender_calls",
    metadata,
    Column("key", Text, nullable=False),
    Column("merchant_id", Text, nullable=False),
    Column("kind", Text, nullable=False),
    Column("gift_card_id", Text, nullable=False, server_default=""),
    Column("amount", BigInteger, nullable=False),
    Column("approved", Boolean, nullable=False),
    # The redemption's activity id: what captures, voids and refunds of it name.
    Column("reference", Text, nullable=False),
    Column("last4", Text, nullable=False, server_default=""),
    Column("decline_code", Text, nullable=False, server_default=""),
    Column("created_at", DateTime(timezone=True), nullable=False, server_default=func.now()),
    PrimaryKeyConstraint("key", name="gift_card_tender_calls_pkey"),
    Index("gift_card_tender_calls_reference", "merchant_id", "reference"),
)

gift_card_settings = Table(
    "gift_card_settings",
    metadata,
    Column("merchant_id", Text, nullable=False),
    Column("max_balance", BigInteger, nullable=False),
    Column("updated_at", DateTime(timezone=True), nullable=False, server_default=func.now()),
    # Bumped by every change (1 is the defaults, before any row): If-Match on the settings.
    Column("version", BigInteger, nullable=False, server_default="2"),
    PrimaryKeyConstraint("merchant_id", name="gift_card_settings_pkey"),
)

# The settlement report reads one location's day: these keep it to that day's rows.
Index(
    "payments_location_day", payments.c.merchant_id, payments.c.location_id, payments.c.created_at
)
Index("payment_operations_day", operations.c.merchant_id, operations.c.created_at)
Index("refunds_day", refunds.c.merchant_id, refunds.c.created_at)
