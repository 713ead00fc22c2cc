"""customer_groups.version: a group is changed by version (If-Match), as a customer is

Revision ID: 0012
Revises: 0011
"""

import sqlalchemy as sa
from alembic import op

revision = "0012"
down_revision = "0011"
branch_labels = None
depends_on = None


def upgrade() -> None:
    # Every group made so far starts at its first version: no client can hold an older one,
    # since none was ever answered.
    op.add_column(
        "customer_groups",
        sa.Column("version", sa.BigInteger(), nullable=False, server_default=sa.text("1")),
    )


def downgrade() -> None:
    op.drop_column("customer_groups", "version")
