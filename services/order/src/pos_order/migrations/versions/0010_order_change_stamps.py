"""orders.updated_at stamped at the moment of each change of the order, for change feeds that
never skip (pos_kit/changes.py); bookkeeping writes (touched_at) leave it alone

Revision ID: 0010
Revises: 0009
"""

from alembic import op

from pos_kit.changes import stamp_changes_sql

revision = "0010"
down_revision = "0009"
branch_labels = None
depends_on = None


def upgrade() -> None:
    for statement in stamp_changes_sql("orders", version_column="version"):
        op.execute(statement)


def downgrade() -> None:
    op.execute("DROP TRIGGER IF EXISTS orders_stamp_change ON orders")
    op.execute("DROP TRIGGER IF EXISTS orders_stamp_insert ON orders")
