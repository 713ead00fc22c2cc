"""products.updated_at stamped at the moment of each write, for change feeds that never skip

Revision ID: 0004
Revises: 0003
"""

from alembic import op

from pos_kit.changes import stamp_changes_sql

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    for statement in stamp_changes_sql("products"):
        op.execute(statement)


def downgrade() -> None:
    op.execute("DROP TRIGGER IF EXISTS products_stamp_change ON products")
