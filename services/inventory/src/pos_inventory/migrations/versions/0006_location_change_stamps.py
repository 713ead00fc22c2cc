"""locations.updated_at stamped at the moment of each change, for the location change feed

Revision ID: 0006
Revises: 0005
"""

import sqlalchemy as sa
from alembic import op

from pos_kit.changes import stamp_changes_sql

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column(
        "locations",
        sa.Column(
            "updated_at",
            sa.DateTime(timezone=True),
            server_default=sa.text("now()"),
            nullable=False,
        ),
    )
    op.create_index(
        "locations_changed", "locations", ["merchant_id", "updated_at", "id"], unique=False
    )
    # Only a change of the location moves it in the feed: each one bumps its version.
    for statement in stamp_changes_sql("locations", version_column="version"):
        op.execute(statement)


def downgrade() -> None:
    op.execute("DROP TRIGGER IF EXISTS locations_stamp_change ON locations")
    op.execute("DROP TRIGGER IF EXISTS locations_stamp_insert ON locations")
    op.drop_index("locations_changed", table_name="locations")
    op.drop_column("locations", "updated_at")
