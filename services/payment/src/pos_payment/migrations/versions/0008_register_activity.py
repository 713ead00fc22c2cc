"""register activity for the shift report

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
        "register_activity",
        sa.Column("merchant_id", sa.Text(), nullable=False),
        sa.Column("kind", sa.Text(), nullable=False),
        sa.Column("resource_id", sa.Text(), nullable=False),
        sa.Column("register_id", sa.Text(), nullable=False),
        sa.Column("shift_id", sa.Text(), server_default="", nullable=False),
        sa.Column("amount", sa.BigInteger(), server_default="0", nullable=False),
        sa.Column("currency", sa.Text(), server_default="", nullable=False),
        sa.Column(
            "at", sa.DateTime(timezone=True), server_default=sa.text("now()"), nullable=False
        ),
        sa.PrimaryKeyConstraint(
            "merchant_id", "kind", "resource_id", name="register_activity_pkey"
        ),
    )
    op.create_index(
        "register_activity_by_shift", "register_activity", ["merchant_id", "shift_id"], unique=False
    )


def downgrade() -> None:
    op.drop_index("register_activity_by_shift", table_name="register_activity")
    op.drop_table("register_activity")
