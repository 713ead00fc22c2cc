"""what a ledger entry counts towards a tier, when not its points

Revision ID: 0006
Revises: 0005
"""

import sqlalchemy as sa
from alembic import op

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column("points_ledger", sa.Column("tier_points", sa.BigInteger(), nullable=True))


def downgrade() -> None:
    op.drop_column("points_ledger", "tier_points")
