"""The order database schema (SQLAlchemy Core)."""

from __future__ import annotations

from sqlalchemy import (
    BigInteger,
    Boolean,
    Column,
    DateTime,
    Index,
    LargeBinary,
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
    Column("channel", Text, nullable=False, server_default="register"),
    Column("version", BigInteger, nullable=False, server_default="1"),
    Column("updated_at", DateTime(timezone=True), nullable=False, server_default=func.now()),
    # Fulfilments, the saga's steps and the timeline change with the order and are read with
    # it, never on their own: documents beside the row.
    Column("fulfillments", JSONB, nullable=False, server_default="[]"),
    Column("saga", JSONB, nullable=False, server_default="{}"),
    Column("timeline", JSONB, nullable=False, server_default="[]"),
    Column("notes", Text, nullable=False, server_default=""),
    Column("metadata", JSONB, nullable=False, server_default="{}"),
    # The resumer's look-ups, across merchants: a saga not done and idle since `touched_at`,
    # or an order with something due (an unconfirmed order's holds, a pickup's expiry).
    Column("saga_state", Text, nullable=False, server_default="done"),
    Column("touched_at", DateTime(timezone=True), nullable=False, server_default=func.now()),
    Column("due_at", DateTime(timezone=True), nullable=True),
    # Who and where, for a register sale (empty otherwise): lists filter by them.
    Column("register_id", Text, nullable=False, server_default=""),
    Column("staff_id", Text, nullable=False, server_default=""),
    PrimaryKeyConstraint("merchant_id", "id", name="orders_pkey"),
    Index("orders_open_sagas", "touched_at", postgresql_where=text("saga_state <> 'done'")),
    Index("orders_due", "due_at", postgresql_where=text("due_at IS NOT NULL")),
    Index("orders_by_change", "merchant_id", "updated_at", "id"),
    Index(
        "orders_by_register",
        "merchant_id",
        "register_id",
        "id",
        postgresql_where=text("register_id <> ''"),
    ),
    Index(
        "orders_by_staff", "merchant_id", "staff_id", "id", postgresql_where=text("staff_id <> ''")
    ),
)

# Each merchant's order settings; a merchant without a row has the service's defaults.
order_settings = Table(
    "order_settings",
    metadata,
    Column("merchant_id", Text, nullable=False),
    Column("capture_pickup_at_order", Boolean, nullable=False),
    Column("pickup_expiry_seconds", BigInteger, nullable=False),
    Column("hold_seconds", BigInteger, nullable=False),
    Column("return_window_days", BigInteger, nullable=False),
    Column("updated_at", DateTime(timezone=True), nullable=False, server_default=func.now()),
    # The merchant's own return policy, printed on receipts.
    Column("return_policy_text", Text, nullable=False, server_default=""),
    # Bumped by every change (1 is the defaults, before any row): If-Match on the settings.
    Column("version", BigInteger, nullable=False, server_default="2"),
    # The cap on store credit from returns without a receipt per customer (minor units) over
    # a rolling number of days; both NULL: no limit.
    Column("receiptless_limit_amount", BigInteger, nullable=True),
    Column("receiptless_limit_days", BigInteger, nullable=True),
    PrimaryKeyConstraint("merchant_id", name="order_settings_pkey"),
)

# The merchant's settings lease (one change of the settings at a time, the payment service's
# authorisation window included, which the gateway shows with them): who holds it, until when.
# A lapsed lease stays its holder's until another takes it.
order_settings_leases = Table(
    "order_settings_leases",
    metadata,
    Column("merchant_id", Text, nullable=False),
    Column("holder", Text, nullable=False),
    Column("expires_at", DateTime(timezone=True), nullable=False),
    PrimaryKeyConstraint("merchant_id", name="order_settings_leases_pkey"),
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
    # What pricing needs of the customer, as of `version`: their groups and tax exemption.
    Column("groups", JSONB, nullable=False, server_default="[]"),
    Column("tax_exempt", Boolean, nullable=False, server_default=text("false")),
    # Merged into another customer (`customer.merged`): the survivor's id. A sale naming this
    # id is the survivor's; NULL for a customer of its own.
    Column("merged_into", Text, nullable=True),
    # Erased (`customer.erased`): a tombstone, never known again (a later event of the id
    # leaves it so). Kept, not deleted, so that an order naming the id and the erasure lock
    # the same row: the erasure holds it FOR UPDATE, an order's write FOR KEY SHARE.
    Column("erased", Boolean, nullable=False, server_default=text("false")),
    PrimaryKeyConstraint("merchant_id", "customer_id", name="known_customers_pkey"),
    # The duplicates merged into a customer: their returns without a receipt count as theirs.
    Index(
        "known_customers_by_survivor",
        "merchant_id",
        "merged_into",
        postgresql_where=text("merged_into IS NOT NULL"),
    ),
)

# When each checkout request was first claimed. The order id derives from it, so it must outlive
# the kit's claim: a checkout whose calls fail has its claim dropped (for an immediate retry),
# and a retry that saw a new time would hand the payment service a new order id under the same
# payment request id, which it refuses, leaving the first charge with no order.
# `fingerprint`: the request that started it (the kit's fingerprint, bearer codes keyed), kept for
# the same reason: once the claim is dropped it is all that tells a retry from the same request id
# sent with another body, which must not go on with the first body's order (or return). NULL:
# started before it was kept (migration 0013), told apart by nothing, as then.
# `nonce`: random, made with the start; the ids derive from it too, so a start made anew under
# the same request id (its order withdrawn) derives a new order id even within the millisecond
# (under the first one's, inventory would answer a hold with the one released). NULL: started
# before it was kept (migration 0018): its ids derive from the time and request id, as then.
checkout_starts = Table(
    "checkout_starts",
    metadata,
    Column("merchant_id", Text, nullable=False),
    Column("request_id", Text, nullable=False),
    Column("started_at", DateTime(timezone=True), nullable=False, server_default=func.now()),
    Column("fingerprint", LargeBinary, nullable=True),
    Column("nonce", Text, nullable=True),
    PrimaryKeyConstraint("merchant_id", "request_id", name="checkout_starts_pkey"),
)

# The read model a register sale is priced from while the inventory service is down: each
# SKU's price and name, kept from inventory's product events (newest version wins), and each
# selling location's currency and tax rate, kept from the last sale priced there (inventory
# publishes no location events). How stale it may be: prices as of the last product event
# consumed (the event's lag behind the change, normally well under a second); a location's tax
# rate as of the last sale priced there while inventory answered.
catalog_prices = Table(
    "catalog_prices",
    metadata,
    Column("merchant_id", Text, nullable=False),
    Column("sku", Text, nullable=False),
    Column("name", Text, nullable=False),
    Column("price", BigInteger, nullable=False),
    Column("currency", Text, nullable=False),
    Column("version", BigInteger, nullable=False),
    Column("seen_at", DateTime(timezone=True), nullable=False, server_default=func.now()),
    # What the pricing step needs beside the price, so a sale priced from here is priced as
    # one priced live: offers select by product and category, tax goes by tax category.
    Column("product_id", Text, nullable=False, server_default=""),
    Column("category", Text, nullable=False, server_default=""),
    Column("tax_category", Text, nullable=False, server_default=""),
    Column("open_price", Boolean, nullable=False, server_default=text("false")),
    # What a unit costs the merchant (minor units); NULL when not known.
    Column("unit_cost", BigInteger),
    PrimaryKeyConstraint("merchant_id", "sku", name="catalog_prices_pkey"),
)

selling_locations = Table(
    "selling_locations",
    metadata,
    Column("merchant_id", Text, nullable=False),
    Column("location_id", Text, nullable=False),
    Column("currency", Text, nullable=False),
    Column("tax_rate_bps", BigInteger, nullable=False),
    Column("seen_at", DateTime(timezone=True), nullable=False, server_default=func.now()),
    Column("tax_rates", JSONB, nullable=False, server_default="{}"),
    Column("prices_include_tax", Boolean, nullable=False, server_default=text("false")),
    Column("time_zone", Text, nullable=False, server_default=""),
    Column("taxes", JSONB, nullable=False, server_default="[]"),
    PrimaryKeyConstraint("merchant_id", "location_id", name="selling_locations_pkey"),
)

# Returns of an order's units: their own objects on the order (the order's status never
# changes). Read under the order row's lock when a new return is planned, so concurrent
# returns of the same lines are serialized there. The return is one document (its lines, its
# refund plan per tender, the refunds made), written whole.
# A refund naming units (a price adjustment through the payments API) holds its order while it
# checks the units and is made (`until`: a lease, in case its caller dies); `generation` counts
# the holds, so a return that read the order's refunds before one can tell it came since.
refund_holds = Table(
    "refund_holds",
    metadata,
    Column("merchant_id", Text, nullable=False),
    Column("order_id", Text, nullable=False),
    Column("request_id", Text, nullable=False),
    Column("until", DateTime(timezone=True), nullable=False),
    Column("generation", BigInteger, nullable=False),
    PrimaryKeyConstraint("merchant_id", "order_id", name="refund_holds_pkey"),
)

order_returns = Table(
    "order_returns",
    metadata,
    Column("merchant_id", Text, nullable=False),
    Column("id", Text, nullable=False),
    Column("order_id", Text, nullable=False),
    Column("status", Text, nullable=False),
    # A pending return whose refund was refused for good: the payment service's code. It waits
    # for a person (SettleReturn); the resumer leaves it alone.
    Column("refusal", Text, nullable=False, server_default=""),
    Column("body", JSONB, nullable=False),
    Column("created_at", DateTime(timezone=True), nullable=False, server_default=func.now()),
    # The moment of its last change, stamped by a trigger (pos_kit/changes.py, migration
    # 0019): its place in the `updated_since` feed.
    Column("updated_at", DateTime(timezone=True), nullable=False, server_default=func.now()),
    # The resumer's queue: last looked at (a change, or a retry that left it pending).
    Column("touched_at", DateTime(timezone=True), nullable=False, server_default=func.now()),
    # Bumped by every change of the return (not by the resumer's bookkeeping): the trigger
    # stamps `updated_at` only when it moves.
    Column("version", BigInteger, nullable=False, server_default="1"),
    # Where it was taken (empty from the back office), and the register's shift open then:
    # a refund finished later is still that register's (migration 0016).
    Column("register_id", Text, nullable=False, server_default=""),
    Column("staff_id", Text, nullable=False, server_default=""),
    Column("shift_id", Text, nullable=False, server_default=""),
    # Who a return without a receipt credited (the body's customer_id, as a column so the
    # limit on such returns finds a customer's recent ones by index).
    Column("customer_id", Text, nullable=False, server_default=""),
    PrimaryKeyConstraint("merchant_id", "id", name="order_returns_pkey"),
    Index("order_returns_by_order", "merchant_id", "order_id", "created_at"),
    Index(
        "order_returns_receiptless",
        "merchant_id",
        "customer_id",
        "created_at",
        postgresql_where=text("order_id = ''"),
    ),
    # The resumer's look-up, across merchants: returns left pending, not waiting for a person.
    Index(
        "order_returns_pending",
        "touched_at",
        postgresql_where=text("status = 'pending' AND refusal = ''"),
    ),
    Index("order_returns_by_change", "merchant_id", "updated_at", "id"),
)
