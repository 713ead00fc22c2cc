"""a register's wrong PINs, indexed

Revision ID: 0009
Revises: 0008
"""

import sqlalchemy as sa
from alembic import op

revision = "0009"
down_revision = "0008"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_index(
        "audit_log_pin_failures",
        "audit_log",
        ["register_id", "occurred_at"],
        unique=False,
        postgresql_where=sa.text("action = 'staff.pin_failed'"),
    )


def downgrade() -> None:
    op.drop_index(
        "audit_log_pin_failures",
        table_name="audit_log",
        postgresql_where=sa.text("action = 'staff.pin_failed'"),
    )
