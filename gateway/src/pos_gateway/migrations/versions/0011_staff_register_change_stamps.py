"""staff_members.updated_at and registers.updated_at stamped at the moment of each change, for
their change feeds

Revision ID: 0011
Revises: 0010
"""

import sqlalchemy as sa
from alembic import op

from pos_kit.changes import stamp_changes_sql

revision = "0011"
down_revision = "0010"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column(
        "registers",
        sa.Column(
            "updated_at",
            sa.DateTime(timezone=True),
            server_default=sa.text("now()"),
            nullable=False,
        ),
    )
    op.create_index(
        "registers_changed", "registers", ["merchant_id", "updated_at", "id"], unique=False
    )
    op.create_index(
        "staff_members_changed", "staff_members", ["merchant_id", "updated_at", "id"], unique=False
    )
    # Every write of a register is a change of it (created, paired, retired).
    for statement in stamp_changes_sql("registers"):
        op.execute(statement)
    # A member's PIN bookkeeping (failed attempts, a lock) bumps no version: only a change of
    # the member moves it in the feed.
    for statement in stamp_changes_sql("staff_members", version_column="version"):
        op.execute(statement)


def downgrade() -> None:
    for table in ("registers", "staff_members"):
        for trigger in ("stamp_change", "stamp_insert"):
            op.execute(f"DROP TRIGGER IF EXISTS {table}_{trigger} ON {table}")
    op.drop_index("staff_members_changed", table_name="staff_members")
    op.drop_index("registers_changed", table_name="registers")
    op.drop_column("registers", "updated_at")
