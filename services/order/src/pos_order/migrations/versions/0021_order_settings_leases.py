"""the merchant's settings lease: one change of the order settings (and of the authorisation
window shown with them) at a time

Revision ID: 0021
Revises: 0020
"""

import sqlalchemy as sa
from alembic import op

revision = "0021"
down_revision = "0020"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "order_settings_leases",
        sa.Column("merchant_id", sa.Text(), nullable=False),
        sa.Column("holder", sa.Text(), nullable=False),
        sa.Column("expires_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("merchant_id", name="order_settings_leases_pkey"),
    )


def downgrade() -> None:
    op.drop_table("order_settings_leases")
