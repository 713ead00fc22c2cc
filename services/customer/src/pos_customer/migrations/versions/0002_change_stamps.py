"""customers.updated_at stamped at the moment of each write, for change feeds that never skip

Revision ID: 0002
Revises: 0001
"""

from alembic import op

from pos_kit.changes import stamp_changes_sql

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    for statement in stamp_changes_sql("customers"):
        op.execute(statement)


def downgrade() -> None:
    op.execute("DROP TRIGGER IF EXISTS customers_stamp_change ON customers")
