"""an order line has one gift card: unique (merchant, order, line) where a line is named

Nothing stopped a second card being issued for an order's line under another request id: the
order service's issue (the only caller that names a line since the gateway refuses it) asks
under one request id per line, but its stored answer lost, or a caller's bug, funded a second
card for one paid line; and before the gateway refused `order_line_id`, an API caller could
name any line on any card. Such cards keep their value and their order: only the first card of
a line (by creation, then id) keeps naming the line, the later ones name none (their change
stamped, as any change of a card), so the index can hold. The order's recovery, which finds a
line's card by order and line, then finds that first one.

Revision ID: 0021
Revises: 0020
"""

import sqlalchemy as sa
from alembic import op

revision = "0021"
down_revision = "0020"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.execute(
        """
        UPDATE gift_cards AS g
        SET order_line_id = '', version = g.version + 1
        WHERE g.order_line_id <> ''
          AND EXISTS (
            SELECT 1 FROM gift_cards AS o
            WHERE o.merchant_id = g.merchant_id
              AND o.order_id = g.order_id
              AND o.order_line_id = g.order_line_id
              AND (o.created_at, o.id) < (g.created_at, g.id)
          )
        """
    )
    op.create_index(
        "gift_cards_order_line",
        "gift_cards",
        ["merchant_id", "order_id", "order_line_id"],
        unique=True,
        postgresql_where=sa.text("order_line_id <> ''"),
    )


def downgrade() -> None:
    # The lines the upgrade took off later cards are not put back: they were not those cards'.
    op.drop_index("gift_cards_order_line", table_name="gift_cards")
