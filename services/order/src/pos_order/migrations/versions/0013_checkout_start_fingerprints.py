"""a request's start keeps the request's fingerprint: the same request id with another body is
refused, never taken on with the first body's order

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
    # Nullable, no default: a start made before this is told apart by nothing, as before.
    op.add_column("checkout_starts", sa.Column("fingerprint", sa.LargeBinary(), nullable=True))


def downgrade() -> None:
    op.drop_column("checkout_starts", "fingerprint")
