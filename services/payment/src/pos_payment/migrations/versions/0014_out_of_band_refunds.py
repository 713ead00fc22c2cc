"""refunds paid out of band: a refused return's refund paid another way is not refundable again

Revision ID: 0014
Revises: 0013
"""

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision = "0014"
down_revision = "0013"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column(
        "payments",
        sa.Column("paid_out_of_band", sa.BigInteger(), server_default="0", nullable=False),
    )
    op.create_table(
        "out_of_band_refunds",
        sa.Column("merchant_id", sa.Text(), nullable=False),
        sa.Column("return_id", sa.Text(), nullable=False),
        sa.Column("order_id", sa.Text(), nullable=False),
        sa.Column("currency", sa.Text(), nullable=False),
        sa.Column("tender_type", sa.Text(), nullable=False),
        sa.Column("reference", sa.Text(), server_default="", nullable=False),
        sa.Column(
            "amounts",
            postgresql.JSONB(astext_type=sa.Text()),
            server_default="[]",
            nullable=False,
        ),
        sa.Column("shift_id", sa.Text(), server_default="", nullable=False),
        sa.Column("movement_id", sa.Text(), server_default="", nullable=False),
        sa.Column(
            "created_at",
            sa.DateTime(timezone=True),
            server_default=sa.text("now()"),
            nullable=False,
        ),
        sa.PrimaryKeyConstraint("merchant_id", "return_id", name="out_of_band_refunds_pkey"),
    )


def downgrade() -> None:
    op.drop_table("out_of_band_refunds")
    op.drop_column("payments", "paid_out_of_band")
