"""pre-printed gift card codes reserved for an order's line until it is paid and activated

Revision ID: 0015
Revises: 0014
"""

import sqlalchemy as sa
from alembic import op

revision = "0015"
down_revision = "0014"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "gift_card_code_reservations",
        sa.Column("merchant_id", sa.Text(), nullable=False),
        sa.Column("code_hash", sa.LargeBinary(), nullable=False),
        sa.Column("order_id", sa.Text(), nullable=False),
        sa.Column("order_line_id", sa.Text(), nullable=False),
        sa.Column("expires_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column(
            "created_at",
            sa.DateTime(timezone=True),
            server_default=sa.text("now()"),
            nullable=False,
        ),
        sa.PrimaryKeyConstraint(
            "merchant_id", "code_hash", name="gift_card_code_reservations_pkey"
        ),
    )
    op.create_index(
        "gift_card_code_reservations_order",
        "gift_card_code_reservations",
        ["merchant_id", "order_id"],
        unique=False,
    )


def downgrade() -> None:
    op.drop_index("gift_card_code_reservations_order", table_name="gift_card_code_reservations")
    op.drop_table("gift_card_code_reservations")
