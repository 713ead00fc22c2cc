"""the price read model keeps a SKU's unit cost (the floor of a sale without sell_below_cost)

Revision ID: 0020
Revises: 0019
"""

import sqlalchemy as sa
from alembic import op

revision = "0020"
down_revision = "0019"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column("catalog_prices", sa.Column("unit_cost", sa.BigInteger(), nullable=True))


def downgrade() -> None:
    op.drop_column("catalog_prices", "unit_cost")
