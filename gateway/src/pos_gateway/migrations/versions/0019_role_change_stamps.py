"""staff_roles.updated_at stamped at the moment of each change of a role (made, or a new
version), for the `updated_since` feed of /v1/roles that never skips (pos_kit/changes.py)

Revision ID: 0019
Revises: 0018
"""

import sqlalchemy as sa
from alembic import op

from pos_kit.changes import stamp_changes_sql

revision = "0019"
down_revision = "0018"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column(
        "staff_roles",
        sa.Column(
            "updated_at", sa.DateTime(timezone=True), server_default=sa.func.now(), nullable=False
        ),
    )
    # No moment of a change was kept before this: a role's last known one is its making.
    op.execute("UPDATE staff_roles SET updated_at = created_at")
    op.create_index("staff_roles_by_change", "staff_roles", ["merchant_id", "updated_at", "id"])
    for statement in stamp_changes_sql("staff_roles", version_column="version"):
        op.execute(statement)


def downgrade() -> None:
    op.execute("DROP TRIGGER IF EXISTS staff_roles_stamp_change ON staff_roles")
    op.execute("DROP TRIGGER IF EXISTS staff_roles_stamp_insert ON staff_roles")
    op.drop_index("staff_roles_by_change", table_name="staff_roles")
    op.drop_column("staff_roles", "updated_at")
