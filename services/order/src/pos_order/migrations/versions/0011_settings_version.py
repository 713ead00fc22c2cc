"""a version on the order settings (If-Match on their PATCH)

Revision ID: 0011
Revises: 0010
"""

import sqlalchemy as sa
from alembic import op

revision = "0011"
down_revision = "0010"
branch_labels = None
depends_on = None


def upgrade() -> None:
    # Version 1 is the defaults (no row); a stored row was one change at least.
    op.add_column(
        "order_settings",
        sa.Column("version", sa.BigInteger(), server_default="2", nullable=False),
    )


def downgrade() -> None:
    op.drop_column("order_settings", "version")
