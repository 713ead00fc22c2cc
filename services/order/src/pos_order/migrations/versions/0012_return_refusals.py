"""a return whose refund was refused for good waits for a person: the resumer leaves it alone

Revision ID: 0012
Revises: 0011
"""

import sqlalchemy as sa
from alembic import op

revision = "0012"
down_revision = "0011"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column(
        "order_returns",
        sa.Column("refusal", sa.Text(), server_default="", nullable=False),
    )
    op.drop_index(
        "order_returns_pending",
        table_name="order_returns",
        postgresql_where=sa.text("status = 'pending'"),
    )
    op.create_index(
        "order_returns_pending",
        "order_returns",
        ["updated_at"],
        unique=False,
        postgresql_where=sa.text("status = 'pending' AND refusal = ''"),
    )


def downgrade() -> None:
    op.drop_index(
        "order_returns_pending",
        table_name="order_returns",
        postgresql_where=sa.text("status = 'pending' AND refusal = ''"),
    )
    op.create_index(
        "order_returns_pending",
        "order_returns",
        ["updated_at"],
        unique=False,
        postgresql_where=sa.text("status = 'pending'"),
    )
    op.drop_column("order_returns", "refusal")
