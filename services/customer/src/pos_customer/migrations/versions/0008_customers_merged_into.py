"""the customers merged into one, for its tier: the merged history counts

Revision ID: 0008
Revises: 0007
"""

import sqlalchemy as sa
from alembic import op

revision = "0008"
down_revision = "0007"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_index(
        "customers_merged_into",
        "customers",
        ["merchant_id", "merged_into"],
        postgresql_where=sa.text("merged_into IS NOT NULL"),
    )


def downgrade() -> None:
    op.drop_index("customers_merged_into", table_name="customers")
