"""webhook_subscriptions.updated_at stamped at the moment of each change, for their change feed

Revision ID: 0002
Revises: 0001
"""

from alembic import op

from pos_kit.changes import stamp_changes_sql

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None

TABLE = "webhook_subscriptions"


def upgrade() -> None:
    op.create_index(
        "webhook_subscriptions_changed",
        "webhook_subscriptions",
        ["merchant_id", "updated_at", "id"],
        unique=False,
    )
    # Only a change of the subscription moves it in the feed: each one bumps its version (the
    # delivery loop's `failing_since` is bookkeeping).
    for statement in stamp_changes_sql("webhook_subscriptions", version_column="version"):
        op.execute(statement)


def downgrade() -> None:
    for trigger in ("stamp_change", "stamp_insert"):
        op.execute(f"DROP TRIGGER IF EXISTS {TABLE}_{trigger} ON {TABLE}")
    op.drop_index("webhook_subscriptions_changed", table_name="webhook_subscriptions")
