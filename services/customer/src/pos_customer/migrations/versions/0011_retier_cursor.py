"""where a program change's re-tiering of the merchant's customers has got to

Revision ID: 0011
Revises: 0010

A change of the tiers re-tiers a first batch of customers in its own transaction and leaves the
rest to a background pass, a batch a transaction: NULL when nothing is left, else the id of the
last customer done ('' for none yet).
"""

import sqlalchemy as sa
from alembic import op

revision = "0011"
down_revision = "0010"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column("loyalty_programs", sa.Column("retier_after", sa.Text(), nullable=True))


def downgrade() -> None:
    op.drop_column("loyalty_programs", "retier_after")
