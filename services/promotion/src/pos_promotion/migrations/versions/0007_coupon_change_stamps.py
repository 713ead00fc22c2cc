"""coupons.updated_at stamped at the moment of each change of a coupon (created, reserved,
redeemed, released, deactivated), for the `updated_since` feed of a promotion's coupons that
never skips (pos_kit/changes.py)

Revision ID: 0007
Revises: 0006
"""

import sqlalchemy as sa
from alembic import op

from pos_kit.changes import stamp_changes_sql

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column(
        "coupons",
        sa.Column(
            "updated_at", sa.DateTime(timezone=True), server_default=sa.func.now(), nullable=False
        ),
    )
    # Before this, a coupon's last known change: its deactivation, or its creation.
    op.execute("UPDATE coupons SET updated_at = coalesce(deactivated_at, created_at)")
    op.create_index(
        "coupons_by_change", "coupons", ["merchant_id", "promotion_id", "updated_at", "id"]
    )
    for statement in stamp_changes_sql("coupons"):
        op.execute(statement)


def downgrade() -> None:
    op.execute("DROP TRIGGER IF EXISTS coupons_stamp_change ON coupons")
    op.drop_index("coupons_by_change", table_name="coupons")
    op.drop_column("coupons", "updated_at")
