"""shifts.updated_at stamped at the moment of each change, for the shift change feed

Revision ID: 0012
Revises: 0011
"""

import sqlalchemy as sa
from alembic import op

from pos_kit.changes import stamp_changes_sql

revision = "0012"
down_revision = "0011"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column(
        "shifts",
        sa.Column(
            "updated_at",
            sa.DateTime(timezone=True),
            server_default=sa.text("now()"),
            nullable=False,
        ),
    )
    op.create_index("shifts_changed", "shifts", ["merchant_id", "updated_at", "id"], unique=False)
    # Only a change of the shift (opened, closed) moves it in the feed: each bumps its version.
    for statement in stamp_changes_sql("shifts", version_column="version"):
        op.execute(statement)


def downgrade() -> None:
    op.execute("DROP TRIGGER IF EXISTS shifts_stamp_change ON shifts")
    op.execute("DROP TRIGGER IF EXISTS shifts_stamp_insert ON shifts")
    op.drop_index("shifts_changed", table_name="shifts")
    op.drop_column("shifts", "updated_at")
