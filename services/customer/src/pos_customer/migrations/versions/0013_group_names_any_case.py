"""customer_groups: a group's name is unique per merchant whatever its case and outer spaces

Revision ID: 0013
Revises: 0012
"""

from alembic import op

revision = "0013"
down_revision = "0012"
branch_labels = None
depends_on = None


def upgrade() -> None:
    # Names that only differed by case read as one group on every screen: a later one keeps
    # its name with its id after it (a new version, as a rename is), so no member, no
    # promotion naming it by id and no client loses it, and the index can hold.
    op.execute(
        """
        UPDATE customer_groups AS g
        SET name = g.name || ' (' || g.id || ')', version = g.version + 1
        WHERE EXISTS (
            SELECT 1 FROM customer_groups AS o
            WHERE o.merchant_id = g.merchant_id
              AND lower(btrim(o.name)) = lower(btrim(g.name))
              AND (o.created_at, o.id) < (g.created_at, g.id)
        )
        """
    )
    op.drop_index("customer_groups_name", table_name="customer_groups")
    op.execute(
        "CREATE UNIQUE INDEX customer_groups_name"
        " ON customer_groups (merchant_id, lower(btrim(name)))"
    )


def downgrade() -> None:
    op.drop_index("customer_groups_name", table_name="customer_groups")
    op.create_index("customer_groups_name", "customer_groups", ["merchant_id", "name"], unique=True)
