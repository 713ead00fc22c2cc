"""staff_roles: a role's name is unique whatever its case and outer spaces

Revision ID: 0014
Revises: 0013
"""

from alembic import op

revision = "0014"
down_revision = "0013"
branch_labels = None
depends_on = None


def upgrade() -> None:
    # Names that only differed by case read as one role on every screen: a later one keeps
    # its name with its id after it, so no member loses their role and the index can hold.
    op.execute(
        """
        UPDATE staff_roles AS r SET name = r.name || ' (' || r.id || ')'
        WHERE EXISTS (
            SELECT 1 FROM staff_roles AS o
            WHERE o.merchant_id = r.merchant_id
              AND lower(btrim(o.name)) = lower(btrim(r.name))
              AND (o.created_at, o.id) < (r.created_at, r.id)
        )
        """
    )
    op.drop_index("staff_roles_name", table_name="staff_roles")
    op.execute(
        "CREATE UNIQUE INDEX staff_roles_name ON staff_roles (merchant_id, lower(btrim(name)))"
    )


def downgrade() -> None:
    op.drop_index("staff_roles_name", table_name="staff_roles")
    op.create_index("staff_roles_name", "staff_roles", ["merchant_id", "name"], unique=True)
