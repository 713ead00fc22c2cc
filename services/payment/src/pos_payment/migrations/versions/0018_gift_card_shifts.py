"""gift card value moved at a register outside a payment counts in its open shift

Revision ID: 0018
Revises: 0017
"""

import sqlalchemy as sa
from alembic import op

revision = "0018"
down_revision = "0017"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column(
        "gift_card_activities",
        sa.Column("register_id", sa.Text(), server_default="", nullable=False),
    )
    op.add_column(
        "gift_card_activities",
        sa.Column("shift_id", sa.Text(), server_default="", nullable=False),
    )
    op.add_column(
        "gift_card_activities",
        sa.Column("paid_in_cash", sa.Boolean(), server_default=sa.false(), nullable=False),
    )
    op.create_index(
        "gift_card_activities_shift",
        "gift_card_activities",
        ["merchant_id", "shift_id"],
        postgresql_where=sa.text("shift_id <> ''"),
    )


def downgrade() -> None:
    op.drop_index("gift_card_activities_shift", table_name="gift_card_activities")
    op.drop_column("gift_card_activities", "paid_in_cash")
    op.drop_column("gift_card_activities", "shift_id")
    op.drop_column("gift_card_activities", "register_id")
