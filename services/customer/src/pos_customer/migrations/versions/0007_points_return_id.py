"""a return's points reversal names its order and its return apart

Revision ID: 0007
Revises: 0006
"""

import sqlalchemy as sa
from alembic import op

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column("points_ledger", sa.Column("return_id", sa.Text(), nullable=True))
    # The old index would see two returns of one order as one key once split.
    op.drop_index("points_ledger_order", table_name="points_ledger")
    # Written before as one key, `<order>/<return>`, which the API showed as the order's id.
    op.execute(
        "UPDATE points_ledger SET order_id = split_part(order_id, '/', 1), "
        "return_id = substr(order_id, length(split_part(order_id, '/', 1)) + 2) "
        "WHERE order_id LIKE '%/%'"
    )
    op.create_index(
        "points_ledger_order",
        "points_ledger",
        ["merchant_id", "kind", "order_id", sa.text("coalesce(return_id, '')")],
        unique=True,
        postgresql_where=sa.text("order_id IS NOT NULL"),
    )


def downgrade() -> None:
    op.drop_index("points_ledger_order", table_name="points_ledger")
    op.execute(
        "UPDATE points_ledger SET order_id = order_id || '/' || return_id "
        "WHERE return_id IS NOT NULL"
    )
    op.create_index(
        "points_ledger_order",
        "points_ledger",
        ["merchant_id", "kind", "order_id"],
        unique=True,
        postgresql_where=sa.text("order_id IS NOT NULL"),
    )
    op.drop_column("points_ledger", "return_id")
