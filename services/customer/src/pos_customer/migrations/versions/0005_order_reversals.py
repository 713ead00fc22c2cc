"""order reversals recorded before their earn

Revision ID: 0005
Revises: 0004
"""

import sqlalchemy as sa
from alembic import op

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "order_reversals",
        sa.Column("merchant_id", sa.Text(), nullable=False),
        sa.Column("order_id", sa.Text(), nullable=False),
        sa.Column("return_id", sa.Text(), nullable=False, server_default=""),
        sa.Column("order_total", sa.BigInteger(), nullable=False, server_default="0"),
        sa.Column("refunded", sa.BigInteger(), nullable=False, server_default="0"),
        sa.Column(
            "created_at", sa.DateTime(timezone=True), nullable=False, server_default=sa.func.now()
        ),
        sa.PrimaryKeyConstraint(
            "merchant_id", "order_id", "return_id", name="order_reversals_pkey"
        ),
    )


def downgrade() -> None:
    op.drop_table("order_reversals")
