"""a card reader's sale keeps the register that sent it, so its payment joins that shift

Revision ID: 0019
Revises: 0018
"""

import sqlalchemy as sa
from alembic import op

revision = "0019"
down_revision = "0018"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column(
        "terminal_checkouts",
        sa.Column("register_id", sa.Text(), server_default="", nullable=False),
    )
    op.add_column(
        "terminal_checkouts",
        sa.Column("staff_id", sa.Text(), server_default="", nullable=False),
    )


def downgrade() -> None:
    op.drop_column("terminal_checkouts", "staff_id")
    op.drop_column("terminal_checkouts", "register_id")
