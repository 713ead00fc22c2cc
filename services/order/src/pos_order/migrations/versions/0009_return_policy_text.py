"""the merchant's return policy text, printed on receipts

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
    op.add_column(
        "order_settings",
        sa.Column("return_policy_text", sa.Text(), server_default="", nullable=False),
    )


def downgrade() -> None:
    op.drop_column("order_settings", "return_policy_text")
