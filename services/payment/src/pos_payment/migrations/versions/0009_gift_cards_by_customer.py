"""Gift cards by customer (a customer's data export lists theirs)

Revision ID: 0009
Revises: 0008
"""

import sqlalchemy as sa
from alembic import op

revision = "0009"
down_revision = "0008"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_index(
        "gift_cards_customer",
        "gift_cards",
        ["merchant_id", "customer_id", "id"],
        unique=False,
        postgresql_where=sa.text("customer_id <> ''"),
    )


def downgrade() -> None:
    op.drop_index(
        "gift_cards_customer",
        table_name="gift_cards",
        postgresql_where=sa.text("customer_id <> ''"),
    )
