"""customer merges: a once-per-customer coupon counts the duplicates merged into a customer

Revision ID: 0003
Revises: 0002
"""

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "customer_merges",
        sa.Column("merchant_id", sa.Text(), nullable=False),
        sa.Column("duplicate_id", sa.Text(), nullable=False),
        sa.Column("survivor_id", sa.Text(), nullable=False),
        sa.Column(
            "merged_at",
            sa.DateTime(timezone=True),
            server_default=sa.text("now()"),
            nullable=False,
        ),
        sa.PrimaryKeyConstraint("merchant_id", "duplicate_id", name="customer_merges_pkey"),
    )
    op.create_index(
        "customer_merges_by_survivor",
        "customer_merges",
        ["merchant_id", "survivor_id"],
        unique=False,
    )


def downgrade() -> None:
    op.drop_index("customer_merges_by_survivor", table_name="customer_merges")
    op.drop_table("customer_merges")
