"""the register, member and shift a return was taken at: a refund finished later (a retry,
the resumer after a crash) is still that register's, and its cash counts in the shift open there

Revision ID: 0016
Revises: 0015
"""

import sqlalchemy as sa
from alembic import op

revision = "0016"
down_revision = "0015"
branch_labels = None
depends_on = None

COLUMNS = ("register_id", "staff_id", "shift_id")


def upgrade() -> None:
    # Returns taken before were kept with no register: empty, as the back office's are.
    for column in COLUMNS:
        op.add_column(
            "order_returns", sa.Column(column, sa.Text(), server_default="", nullable=False)
        )


def downgrade() -> None:
    for column in COLUMNS:
        op.drop_column("order_returns", column)
