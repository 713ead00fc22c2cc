"""customers erased through the gateway, for a day: an answer stored after an erasure's
withdrawal that names one is kept as the erasure's 410

Revision ID: 0023
Revises: 0022

The withdrawal of an erased customer's stored answers ran once, in the DELETE request: an
answer stored after it (an order the order service accepted before it heard of the erasure,
answered a moment later) kept the customer's address, notes and metadata for its 24 hours of
replays. The erasures of the last day are kept here and every stored answer is checked against
them (`IdempotencyStore.complete`).
"""

import sqlalchemy as sa
from alembic import op

revision = "0023"
down_revision = "0022"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "customer_erasures",
        sa.Column("merchant_id", sa.Text(), nullable=False),
        sa.Column("customer_id", sa.Text(), nullable=False),
        sa.Column(
            "erased_at", sa.DateTime(timezone=True), nullable=False, server_default=sa.func.now()
        ),
        sa.PrimaryKeyConstraint("merchant_id", "customer_id", name="customer_erasures_pkey"),
    )
    op.create_index("customer_erasures_recent", "customer_erasures", ["merchant_id", "erased_at"])


def downgrade() -> None:
    op.drop_table("customer_erasures")
