"""what each line of a sale earned on, and the units each return took back

Revision ID: 0009
Revises: 0008

A return takes back the points its units earned: the purchase keeps each line's units and the
value it earned on (nothing for an excluded SKU or a gift card), and a return or a cancelled
fulfilment the units it took back. Rows from before stay null: their returns take the share of
the goods' value, as they did.
"""

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects.postgresql import JSONB

revision = "0009"
down_revision = "0008"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column("purchases", sa.Column("earning_lines", JSONB(), nullable=True))
    op.add_column("order_reversals", sa.Column("lines", JSONB(), nullable=True))


def downgrade() -> None:
    op.drop_column("order_reversals", "lines")
    op.drop_column("purchases", "earning_lines")
