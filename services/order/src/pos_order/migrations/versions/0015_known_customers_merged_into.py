"""known customers merged into another: a sale naming the duplicate is the survivor's

Revision ID: 0015
Revises: 0014
"""

import sqlalchemy as sa
from alembic import op

revision = "0015"
down_revision = "0014"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column("known_customers", sa.Column("merged_into", sa.Text(), nullable=True))


def downgrade() -> None:
    op.drop_column("known_customers", "merged_into")
