"""known customers erased: kept as tombstones, so an order naming one serializes with the erasure

Revision ID: 0022
Revises: 0021
"""

import sqlalchemy as sa
from alembic import op

revision = "0022"
down_revision = "0021"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column(
        "known_customers",
        sa.Column("erased", sa.Boolean(), server_default=sa.text("false"), nullable=False),
    )


def downgrade() -> None:
    op.execute("DELETE FROM known_customers WHERE erased")
    op.drop_column("known_customers", "erased")
