"""api_keys.expires_at and rolled_to: a rolled key keeps working until its expiry, and names
the key that replaced it (POST /v1/api-keys/{key_id}/roll)

Revision ID: 0020
Revises: 0019
"""

import sqlalchemy as sa
from alembic import op

revision = "0020"
down_revision = "0019"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column("api_keys", sa.Column("expires_at", sa.DateTime(timezone=True)))
    op.add_column("api_keys", sa.Column("rolled_to", sa.Text))


def downgrade() -> None:
    op.drop_column("api_keys", "rolled_to")
    op.drop_column("api_keys", "expires_at")
