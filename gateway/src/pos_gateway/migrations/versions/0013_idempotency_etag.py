"""idempotency_keys.etag: a replay carries the ETag the first answer had

Revision ID: 0013
Revises: 0012
"""

import sqlalchemy as sa
from alembic import op

revision = "0013"
down_revision = "0012"
branch_labels = None
depends_on = None


def upgrade() -> None:
    # Null for answers kept before: they replay without it, as they did.
    op.add_column("idempotency_keys", sa.Column("etag", sa.Text(), nullable=True))


def downgrade() -> None:
    op.drop_column("idempotency_keys", "etag")
