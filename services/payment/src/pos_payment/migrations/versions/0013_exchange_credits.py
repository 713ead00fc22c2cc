"""exchange credits: captured money set aside for an exchange's new order, not refundable

Revision ID: 0013
Revises: 0012
"""

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision = "0013"
down_revision = "0012"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column(
        "payments",
        sa.Column("credited", sa.BigInteger(), server_default="0", nullable=False),
    )
    op.add_column(
        "refunds",
        sa.Column("exchange_order_id", sa.Text(), server_default="", nullable=False),
    )
    op.create_table(
        "exchange_credits",
        sa.Column("merchant_id", sa.Text(), nullable=False),
        sa.Column("exchange_order_id", sa.Text(), nullable=False),
        sa.Column("order_id", sa.Text(), nullable=False),
        sa.Column("currency", sa.Text(), nullable=False),
        sa.Column("status", sa.Text(), nullable=False),
        sa.Column(
            "amounts",
            postgresql.JSONB(astext_type=sa.Text()),
            server_default="[]",
            nullable=False,
        ),
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
        sa.PrimaryKeyConstraint("merchant_id", "exchange_order_id", name="exchange_credits_pkey"),
    )
    op.create_index(
        "exchange_credits_order", "exchange_credits", ["merchant_id", "order_id"], unique=False
    )


def downgrade() -> None:
    op.drop_index("exchange_credits_order", table_name="exchange_credits")
    op.drop_table("exchange_credits")
    op.drop_column("refunds", "exchange_order_id")
    op.drop_column("payments", "credited")
