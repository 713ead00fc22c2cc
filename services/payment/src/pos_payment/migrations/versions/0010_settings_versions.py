"""a version on the payment and gift card settings (If-Match on their PUT)

Revision ID: 0010
Revises: 0009
"""

import sqlalchemy as sa
from alembic import op

revision = "0010"
down_revision = "0009"
branch_labels = None
depends_on = None


def upgrade() -> None:
    # Version 1 is the defaults (no row); a stored row was one change at least.
    for table in ("merchant_settings", "gift_card_settings"):
        op.add_column(
            table, sa.Column("version", sa.BigInteger(), server_default="2", nullable=False)
        )


def downgrade() -> None:
    for table in ("merchant_settings", "gift_card_settings"):
        op.drop_column(table, "version")
