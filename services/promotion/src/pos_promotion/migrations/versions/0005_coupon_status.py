"""coupon status: one code can be deactivated (a leaked code) without ending its promotion

Revision ID: 0005
Revises: 0004
"""

import sqlalchemy as sa
from alembic import op

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None


def upgrade() -> None:
    # A constant default: PostgreSQL adds the column without rewriting the table, and every
    # coupon made before is active, as it was.
    op.add_column(
        "coupons", sa.Column("status", sa.Text(), server_default="active", nullable=False)
    )
    op.add_column("coupons", sa.Column("deactivated_at", sa.DateTime(timezone=True)))


def downgrade() -> None:
    op.drop_column("coupons", "deactivated_at")
    op.drop_column("coupons", "status")
