"""a location the merchant closed: status inactive

Revision ID: 0012
Revises: 0011

It sells, holds and receives stock no more and is never sourced or offered nearby; its history
and its stock stay (counted, written off, moved out). Every location so far is active.
"""

import sqlalchemy as sa
from alembic import op

revision = "0012"
down_revision = "0011"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column(
        "locations",
        sa.Column("status", sa.Text(), nullable=False, server_default="active"),
    )


def downgrade() -> None:
    op.drop_column("locations", "status")
