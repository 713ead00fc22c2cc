"""the cards an order sold, found by the order (its compensation finds a line's card by it)

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
    op.create_index(
        "gift_cards_order",
        "gift_cards",
        ["merchant_id", "order_id"],
        postgresql_where=sa.text("order_id <> ''"),
    )


def downgrade() -> None:
    op.drop_index("gift_cards_order", table_name="gift_cards")
