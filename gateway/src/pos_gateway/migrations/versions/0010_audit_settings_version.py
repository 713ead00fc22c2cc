"""a version on a merchant's audit settings (If-Match on their PUT)

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
    # Version 1 is the default (no row); a stored row was one change at least.
    op.add_column(
        "merchant_settings",
        sa.Column("version", sa.BigInteger(), server_default="2", nullable=False),
    )


def downgrade() -> None:
    op.drop_column("merchant_settings", "version")
