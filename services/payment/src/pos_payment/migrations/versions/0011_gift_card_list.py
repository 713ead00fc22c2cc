"""The gift card list: a change feed (updated_at stamped at the write) and its filters' indexes

Revision ID: 0011
Revises: 0010
"""

import sqlalchemy as sa
from alembic import op

from pos_kit.changes import stamp_changes_sql

revision = "0011"
down_revision = "0010"
branch_labels = None
depends_on = None


def upgrade() -> None:
    # `updated_at` becomes the moment of the write (clock_timestamp()), not its transaction's
    # start, so the feed never skips a card (see pos_kit/changes.py).
    for statement in stamp_changes_sql("gift_cards"):
        op.execute(statement)
    op.create_index(
        "gift_cards_changes", "gift_cards", ["merchant_id", "updated_at", "id"], unique=False
    )
    op.create_index(
        "gift_cards_location",
        "gift_cards",
        ["merchant_id", "location_id", "id"],
        unique=False,
        postgresql_where=sa.text("location_id <> ''"),
    )
    op.create_index(
        "gift_cards_inactive",
        "gift_cards",
        ["merchant_id", "id"],
        unique=False,
        postgresql_where=sa.text("status <> 'active'"),
    )


def downgrade() -> None:
    op.drop_index(
        "gift_cards_inactive",
        table_name="gift_cards",
        postgresql_where=sa.text("status <> 'active'"),
    )
    op.drop_index(
        "gift_cards_location",
        table_name="gift_cards",
        postgresql_where=sa.text("location_id <> ''"),
    )
    op.drop_index("gift_cards_changes", table_name="gift_cards")
    op.execute("DROP TRIGGER IF EXISTS gift_cards_stamp_change ON gift_cards")
