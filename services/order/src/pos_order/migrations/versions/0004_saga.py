"""the persisted checkout saga, fulfilments, timeline and order settings

Revision ID: 0004
Revises: 0003
"""

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None

_JSON = postgresql.JSONB(astext_type=sa.Text())


def upgrade() -> None:
    now = sa.text("now()")
    op.add_column(
        "orders", sa.Column("channel", sa.Text(), server_default="register", nullable=False)
    )
    op.add_column(
        "orders", sa.Column("version", sa.BigInteger(), server_default="1", nullable=False)
    )
    op.add_column(
        "orders",
        sa.Column("updated_at", sa.DateTime(timezone=True), server_default=now, nullable=False),
    )
    op.add_column("orders", sa.Column("fulfillments", _JSON, server_default="[]", nullable=False))
    op.add_column("orders", sa.Column("saga", _JSON, server_default="{}", nullable=False))
    op.add_column("orders", sa.Column("timeline", _JSON, server_default="[]", nullable=False))
    op.add_column("orders", sa.Column("notes", sa.Text(), server_default="", nullable=False))
    op.add_column("orders", sa.Column("metadata", _JSON, server_default="{}", nullable=False))
    op.add_column(
        "orders", sa.Column("saga_state", sa.Text(), server_default="done", nullable=False)
    )
    op.add_column(
        "orders",
        sa.Column("touched_at", sa.DateTime(timezone=True), server_default=now, nullable=False),
    )
    op.add_column("orders", sa.Column("due_at", sa.DateTime(timezone=True), nullable=True))
    op.create_index(
        "orders_open_sagas",
        "orders",
        ["touched_at"],
        unique=False,
        postgresql_where=sa.text("saga_state <> 'done'"),
    )
    op.create_index(
        "orders_due",
        "orders",
        ["due_at"],
        unique=False,
        postgresql_where=sa.text("due_at IS NOT NULL"),
    )
    op.create_index("orders_by_change", "orders", ["merchant_id", "updated_at", "id"], unique=False)
    op.create_table(
        "order_settings",
        sa.Column("merchant_id", sa.Text(), nullable=False),
        sa.Column("capture_pickup_at_order", sa.Boolean(), nullable=False),
        sa.Column("pickup_expiry_seconds", sa.BigInteger(), nullable=False),
        sa.Column("hold_seconds", sa.BigInteger(), nullable=False),
        sa.Column("return_window_days", sa.BigInteger(), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), server_default=now, nullable=False),
        sa.PrimaryKeyConstraint("merchant_id", name="order_settings_pkey"),
    )


def downgrade() -> None:
    op.drop_table("order_settings")
    op.drop_index("orders_by_change", table_name="orders")
    op.drop_index("orders_due", table_name="orders", postgresql_where=sa.text("due_at IS NOT NULL"))
    op.drop_index(
        "orders_open_sagas", table_name="orders", postgresql_where=sa.text("saga_state <> 'done'")
    )
    for column in (
        "due_at",
        "touched_at",
        "saga_state",
        "metadata",
        "notes",
        "timeline",
        "saga",
        "fulfillments",
        "updated_at",
        "version",
        "channel",
    ):
        op.drop_column("orders", column)
