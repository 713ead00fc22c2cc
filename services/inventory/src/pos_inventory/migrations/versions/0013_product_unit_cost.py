"""a product's unit cost (what a unit costs the merchant, in its price's currency)

Revision ID: 0013
Revises: 0012
"""

import sqlalchemy as sa
from alembic import op

revision = "0013"
down_revision = "0012"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column("products", sa.Column("unit_cost_amount", sa.BigInteger(), nullable=True))


def downgrade() -> None:
    op.drop_column("products", "unit_cost_amount")
