"""customer_groups.updated_at stamped at the moment of each change of a group (made, or a new
version: renamed, described anew), for the `updated_since` feed that never skips
(pos_kit/changes.py)

Revision ID: 0014
Revises: 0013
"""

import sqlalchemy as sa
from alembic import op

from pos_kit.changes import stamp_changes_sql

revision = "0014"
down_revision = "0013"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column(
        "customer_groups",
        sa.Column(
            "updated_at", sa.DateTime(timezone=True), server_default=sa.func.now(), nullable=False
        ),
    )
    # No moment of a change was kept before this: a group's last known one is its making.
    op.execute("UPDATE customer_groups SET updated_at = created_at")
    op.create_index(
        "customer_groups_by_change", "customer_groups", ["merchant_id", "updated_at", "id"]
    )
    for statement in stamp_changes_sql("customer_groups", version_column="version"):
        op.execute(statement)


def downgrade() -> None:
    op.execute("DROP TRIGGER IF EXISTS customer_groups_stamp_change ON customer_groups")
    op.execute("DROP TRIGGER IF EXISTS customer_groups_stamp_insert ON customer_groups")
    op.drop_index("customer_groups_by_change", table_name="customer_groups")
    op.drop_column("customer_groups", "updated_at")
