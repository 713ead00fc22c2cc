"""staff_roles.version: a role is changed by version (If-Match), as a staff member is

Revision ID: 0016
Revises: 0015
"""

import sqlalchemy as sa
from alembic import op

revision = "0016"
down_revision = "0015"
branch_labels = None
depends_on = None


def upgrade() -> None:
    # Every role made so far is at its first version: none could be changed.
    op.add_column(
        "staff_roles",
        sa.Column("version", sa.Integer(), nullable=False, server_default=sa.text("1")),
    )


def downgrade() -> None:
    op.drop_column("staff_roles", "version")
