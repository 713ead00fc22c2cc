"""refund_holds: a refund that names units holds its order, so a return never counts units a
refund in flight is paying for (nor two such refunds the same units)

Revision ID: 0014
Revises: 0013
"""

import sqlalchemy as sa
from alembic import op

revision = "0014"
down_revision = "0013"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "refund_holds",
        sa.Column("merchant_id", sa.Text(), nullable=False),
        sa.Column("order_id", sa.Text(), nullable=False),
        sa.Column("request_id", sa.Text(), nullable=False),
        sa.Column("until", sa.DateTime(timezone=True), nullable=False),
        sa.Column("generation", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint("merchant_id", "order_id", name="refund_holds_pkey"),
    )


def downgrade() -> None:
    op.drop_table("refund_holds")
