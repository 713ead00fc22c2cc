"""the merchant's limit on store credit from returns without a receipt: the setting, the
returns' customer as a column, and the duplicates merged into a customer by index

Revision ID: 0017
Revises: 0016
"""

import sqlalchemy as sa
from alembic import op

revision = "0017"
down_revision = "0016"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column(
        "order_settings", sa.Column("receiptless_limit_amount", sa.BigInteger(), nullable=True)
    )
    op.add_column(
        "order_settings", sa.Column("receiptless_limit_days", sa.BigInteger(), nullable=True)
    )
    op.add_column(
        "order_returns",
        sa.Column("customer_id", sa.Text(), server_default="", nullable=False),
    )
    # The returns made before the column: their customer is in their document.
    op.execute(
        "UPDATE order_returns SET customer_id = body->>'customer_id'"
        " WHERE order_id = '' AND coalesce(body->>'customer_id', '') <> ''"
    )
    op.create_index(
        "order_returns_receiptless",
        "order_returns",
        ["merchant_id", "customer_id", "created_at"],
        postgresql_where=sa.text("order_id = ''"),
    )
    op.create_index(
        "known_customers_by_survivor",
        "known_customers",
        ["merchant_id", "merged_into"],
        postgresql_where=sa.text("merged_into IS NOT NULL"),
    )


def downgrade() -> None:
    op.drop_index("known_customers_by_survivor", table_name="known_customers")
    op.drop_index("order_returns_receiptless", table_name="order_returns")
    op.drop_column("order_returns", "customer_id")
    op.drop_column("order_settings", "receiptless_limit_days")
    op.drop_column("order_settings", "receiptless_limit_amount")
