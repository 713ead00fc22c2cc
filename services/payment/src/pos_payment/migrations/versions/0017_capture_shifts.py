"""each capture counts in the shift open at its payment's register when it is captured

Revision ID: 0017
Revises: 0016
"""

import sqlalchemy as sa
from alembic import op

revision = "0017"
down_revision = "0016"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column(
        "payment_operations",
        sa.Column("shift_id", sa.Text(), server_default="", nullable=False),
    )
    op.create_index(
        "payment_operations_shift",
        "payment_operations",
        ["merchant_id", "shift_id"],
        postgresql_where=sa.text("shift_id <> ''"),
    )
    op.create_index(
        "payment_operations_payment", "payment_operations", ["merchant_id", "payment_id"]
    )
    # Captures made before: counted, as the reports read them until now, in their payment's
    # shift, so no report made before this version changes.
    op.execute(
        """
        UPDATE payment_operations o SET shift_id = p.shift_id
        FROM payments p
        WHERE p.merchant_id = o.merchant_id AND p.id = o.payment_id AND p.shift_id <> ''
          AND o.kind = 'capture' AND o.status = 'succeeded'
        """
    )


def downgrade() -> None:
    op.drop_index("payment_operations_payment", table_name="payment_operations")
    op.drop_index("payment_operations_shift", table_name="payment_operations")
    op.drop_column("payment_operations", "shift_id")
