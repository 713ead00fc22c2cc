"""customers indexed in the order of the updated_since feed (merchant, updated_at, id)

Revision ID: 0015
Revises: 0014
"""

from alembic import op

revision = "0015"
down_revision = "0014"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_index("customers_by_change", "customers", ["merchant_id", "updated_at", "id"])


def downgrade() -> None:
    op.drop_index("customers_by_change", table_name="customers")
