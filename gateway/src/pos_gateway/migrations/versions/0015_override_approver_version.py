"""overrides.approver_version: an approval stands only while its manager is unchanged

Revision ID: 0015
Revises: 0014
"""

import sqlalchemy as sa
from alembic import op

revision = "0015"
down_revision = "0014"
branch_labels = None
depends_on = None


def upgrade() -> None:
    # Null for overrides granted before: they are checked as they were (two minutes at most).
    op.add_column("overrides", sa.Column("approver_version", sa.Integer(), nullable=True))


def downgrade() -> None:
    op.drop_column("overrides", "approver_version")
