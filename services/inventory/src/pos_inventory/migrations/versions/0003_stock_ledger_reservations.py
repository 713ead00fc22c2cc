"""locations in detail, sequenced ledger, counts, thresholds, reservations

Revision ID: 0003
Revises: 0002_catalog
"""

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision = "0003"
down_revision = "0002_catalog"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "low_stock_thresholds",
        sa.Column("merchant_id", sa.Text(), nullable=False),
        sa.Column("sku", sa.Text(), nullable=False),
        sa.Column("threshold", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint("merchant_id", "sku", name="low_stock_thresholds_pkey"),
    )
    op.create_table(
        "reservations",
        sa.Column("merchant_id", sa.Text(), nullable=False),
        sa.Column("id", sa.Text(), nullable=False),
        sa.Column("location_id", sa.Text(), nullable=False),
        sa.Column("status", sa.Text(), nullable=False),
        sa.Column("lines", postgresql.JSONB(astext_type=sa.Text()), nullable=False),
        sa.Column("reference", sa.Text(), server_default="", nullable=False),
        sa.Column("expires_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column(
            "created_at",
            sa.DateTime(timezone=True),
            server_default=sa.text("now()"),
            nullable=False,
        ),
        sa.Column(
            "updated_at",
            sa.DateTime(timezone=True),
            server_default=sa.text("now()"),
            nullable=False,
        ),
        sa.PrimaryKeyConstraint("merchant_id", "id", name="reservations_pkey"),
    )
    op.create_index(
        "reservations_due",
        "reservations",
        ["expires_at"],
        unique=False,
        postgresql_where=sa.text("status = 'active'"),
    )
    op.add_column("locations", sa.Column("kind", sa.Text(), server_default="store", nullable=False))
    op.add_column(
        "locations",
        sa.Column(
            "address",
            postgresql.JSONB(astext_type=sa.Text()),
            server_default=sa.text("'{}'::jsonb"),
            nullable=False,
        ),
    )
    op.add_column("locations", sa.Column("latitude", sa.Float(), nullable=True))
    op.add_column("locations", sa.Column("longitude", sa.Float(), nullable=True))
    op.add_column(
        "locations", sa.Column("time_zone", sa.Text(), server_default="UTC", nullable=False)
    )
    op.add_column(
        "locations",
        sa.Column(
            "tax_rates",
            postgresql.JSONB(astext_type=sa.Text()),
            server_default=sa.text("'{}'::jsonb"),
            nullable=False,
        ),
    )
    op.add_column(
        "locations",
        sa.Column("pickup_enabled", sa.Boolean(), server_default=sa.text("false"), nullable=False),
    )
    op.add_column(
        "locations",
        sa.Column("ship_enabled", sa.Boolean(), server_default=sa.text("false"), nullable=False),
    )
    op.add_column("stock", sa.Column("counted_at", sa.DateTime(timezone=True), nullable=True))
    op.add_column("stock", sa.Column("count_key", sa.Text(), server_default="", nullable=False))
    op.add_column(
        "stock_ledger", sa.Column("kind", sa.Text(), server_default="adjustment", nullable=False)
    )
    op.add_column(
        "stock_ledger", sa.Column("quantity", sa.BigInteger(), server_default="0", nullable=False)
    )
    op.add_column(
        "stock_ledger",
        sa.Column("superseded", sa.Boolean(), server_default=sa.text("false"), nullable=False),
    )
    op.add_column(
        "stock_ledger",
        sa.Column(
            "occurred_at",
            sa.DateTime(timezone=True),
            server_default=sa.text("now()"),
            nullable=False,
        ),
    )
    op.add_column("stock_ledger", sa.Column("note", sa.Text(), server_default="", nullable=False))
    # Entries recorded before sequencing existed happened when they were recorded.
    op.execute("UPDATE stock_ledger SET quantity = delta, occurred_at = created_at")
    op.create_index("stock_ledger_merchant", "stock_ledger", ["merchant_id", "seq"], unique=False)
    op.create_index(
        "stock_ledger_occurred",
        "stock_ledger",
        ["merchant_id", "sku", "location_id", "occurred_at"],
        unique=False,
    )


def downgrade() -> None:
    op.drop_index("stock_ledger_occurred", table_name="stock_ledger")
    op.drop_index("stock_ledger_merchant", table_name="stock_ledger")
    op.drop_column("stock_ledger", "note")
    op.drop_column("stock_ledger", "occurred_at")
    op.drop_column("stock_ledger", "superseded")
    op.drop_column("stock_ledger", "quantity")
    op.drop_column("stock_ledger", "kind")
    op.drop_column("stock", "count_key")
    op.drop_column("stock", "counted_at")
    op.drop_column("locations", "ship_enabled")
    op.drop_column("locations", "pickup_enabled")
    op.drop_column("locations", "tax_rates")
    op.drop_column("locations", "time_zone")
    op.drop_column("locations", "longitude")
    op.drop_column("locations", "latitude")
    op.drop_column("locations", "address")
    op.drop_column("locations", "kind")
    op.drop_index(
        "reservations_due", table_name="reservations", postgresql_where=sa.text("status = 'active'")
    )
    op.drop_table("reservations")
    op.drop_table("low_stock_thresholds")
