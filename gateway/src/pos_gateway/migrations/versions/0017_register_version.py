"""registers.version: a register is changed by version (If-Match), as a staff member is

Revision ID: 0017
Revises: 0016
"""

import sqlalchemy as sa
from alembic import op

revision = "0017"
down_revision = "0016"
branch_labels = None
depends_on = None


def upgrade() -> None:
    # Every register made so far starts at its first version: no client can hold an older one,
    # since none was ever answered.
    op.add_column(
        "registers",
        sa.Column("version", sa.BigInteger(), nullable=False, server_default=sa.text("1")),
    )


def downgrade() -> None:
    op.drop_column("registers", "version")
