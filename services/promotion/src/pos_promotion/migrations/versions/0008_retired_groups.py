"""retired_groups: customer groups retired for their deletion, which no promotion may name
(RetireCustomerGroup), one row per retirement

Revision ID: 0008
Revises: 0007
"""

import sqlalchemy as sa
from alembic import op

revision = "0008"
down_revision = "0007"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "retired_groups",
        sa.Column("merchant_id", sa.Text(), nullable=False),
        sa.Column("group_id", sa.Text(), nullable=False),
        sa.Column("retirement_id", sa.Text(), nullable=False),
        sa.Column(
            "retired_at", sa.DateTime(timezone=True), server_default=sa.func.now(), nullable=False
        ),
        sa.PrimaryKeyConstraint(
            "merchant_id", "group_id", "retirement_id", name="retired_groups_pkey"
        ),
    )


def downgrade() -> None:
    op.drop_table("retired_groups")
