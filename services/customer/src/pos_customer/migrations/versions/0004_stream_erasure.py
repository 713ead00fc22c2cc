"""erasures reach the stream

Revision ID: 0004
Revises: 0003
"""

import sqlalchemy as sa
from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column(
        "erasures", sa.Column("stream_purged_at", sa.DateTime(timezone=True), nullable=True)
    )
    op.create_index(
        "erasures_to_purge",
        "erasures",
        ["erased_at"],
        unique=False,
        postgresql_where=sa.text("stream_purged_at IS NULL"),
    )


def downgrade() -> None:
    op.drop_index(
        "erasures_to_purge",
        table_name="erasures",
        postgresql_where=sa.text("stream_purged_at IS NULL"),
    )
    op.drop_column("erasures", "stream_purged_at")
