"""order_returns.updated_at stamped at the moment of each change of the return (each bumps
its version), for the `updated_since` feed that never skips (pos_kit/changes.py); the
resumer's queue moves to its own column, touched_at, so a retry that leaves a return pending
does not move it in the feed

Revision ID: 0019
Revises: 0018
"""

import sqlalchemy as sa
from alembic import op

from pos_kit.changes import stamp_changes_sql

revision = "0019"
down_revision = "0018"
branch_labels = None
depends_on = None

PENDING = sa.text("status = 'pending' AND refusal = ''")


def upgrade() -> None:
    op.add_column(
        "order_returns",
        sa.Column(
            "touched_at", sa.DateTime(timezone=True), server_default=sa.func.now(), nullable=False
        ),
    )
    op.add_column(
        "order_returns",
        sa.Column("version", sa.BigInteger(), server_default="1", nullable=False),
    )
    op.execute("UPDATE order_returns SET touched_at = updated_at")
    op.drop_index("order_returns_pending", table_name="order_returns", postgresql_where=PENDING)
    op.create_index(
        "order_returns_pending",
        "order_returns",
        ["touched_at"],
        unique=False,
        postgresql_where=PENDING,
    )
    op.create_index("order_returns_by_change", "order_returns", ["merchant_id", "updated_at", "id"])
    for statement in stamp_changes_sql("order_returns", version_column="version"):
        op.execute(statement)


def downgrade() -> None:
    op.execute("DROP TRIGGER IF EXISTS order_returns_stamp_change ON order_returns")
    op.execute("DROP TRIGGER IF EXISTS order_returns_stamp_insert ON order_returns")
    op.drop_index("order_returns_by_change", table_name="order_returns")
    op.drop_index("order_returns_pending", table_name="order_returns", postgresql_where=PENDING)
    op.create_index(
        "order_returns_pending",
        "order_returns",
        ["updated_at"],
        unique=False,
        postgresql_where=PENDING,
    )
    op.drop_column("order_returns", "version")
    op.drop_column("order_returns", "touched_at")
