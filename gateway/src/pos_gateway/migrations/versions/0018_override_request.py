"""overrides.request_id: a manager's override is granted once per request

Revision ID: 0018
Revises: 0017
"""

import sqlalchemy as sa
from alembic import op

revision = "0018"
down_revision = "0017"
branch_labels = None
depends_on = None


def upgrade() -> None:
    # Null for overrides granted before: each was its own request (NULLs never collide).
    op.add_column("overrides", sa.Column("request_id", sa.Text(), nullable=True))
    op.create_index("overrides_request", "overrides", ["merchant_id", "request_id"], unique=True)


def downgrade() -> None:
    op.drop_index("overrides_request", table_name="overrides")
    op.drop_column("overrides", "request_id")
