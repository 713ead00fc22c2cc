"""the Idempotency-Key that made a merchant (POST /v1/admin/merchants made once per key)

Revision ID: 0012
Revises: 0011
"""

import sqlalchemy as sa
from alembic import op

revision = "0012"
down_revision = "0011"
branch_labels = None
depends_on = None


def upgrade() -> None:
    # As api_keys.request_id: a retry whose stored answer was lost finds the merchant (and its
    # first key) it made instead of making a second. None for the CLI's and older merchants.
    op.add_column("merchants", sa.Column("request_id", sa.Text(), nullable=True))
    op.create_index("merchants_request", "merchants", ["request_id"], unique=True)


def downgrade() -> None:
    op.drop_index("merchants_request", table_name="merchants")
    op.drop_column("merchants", "request_id")
