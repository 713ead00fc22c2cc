"""customer_groups.deleted_at: a deleted group is kept as a tombstone (a new version, no
members) for the updated_since feed of ListGroups; its name is free again (the unique index of
names leaves deleted groups out)

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
    op.add_column("customer_groups", sa.Column("deleted_at", sa.DateTime(timezone=True)))
    op.drop_index("customer_groups_name", table_name="customer_groups")
    op.execute(
        "CREATE UNIQUE INDEX customer_groups_name"
        " ON customer_groups (merchant_id, lower(btrim(name))) WHERE deleted_at IS NULL"
    )


def downgrade() -> None:
    # Tombstones go: before this, a deleted group left no row.
    op.execute("DELETE FROM customer_groups WHERE deleted_at IS NOT NULL")
    op.drop_index("customer_groups_name", table_name="customer_groups")
    op.execute(
        "CREATE UNIQUE INDEX customer_groups_name"
        " ON customer_groups (merchant_id, lower(btrim(name)))"
    )
    op.drop_column("customer_groups", "deleted_at")
