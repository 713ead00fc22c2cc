"""stock_ledger.entry_id: ledger entries named by an opaque id, not the table's sequence

The public id was `led_<seq>`, and `seq` counts every merchant's movements: a merchant's
first entry told it how many others the platform had recorded, and watching it told the rate.
New entries get an opaque, time-ordered id; entries recorded before keep the id they were
shown (`led_<seq>`), so ids and page tokens handed out earlier still resolve.

Revision ID: 0007
Revises: 0006
"""

import sqlalchemy as sa
from alembic import op

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None


# What an inventory process older than this migration gets when it inserts without the id
# (a rolling upgrade): an opaque one all the same. The service always sends its own.
OPAQUE = "'led_' || replace(gen_random_uuid()::text, '-', '')"


def upgrade() -> None:
    op.add_column("stock_ledger", sa.Column("entry_id", sa.Text(), nullable=True))
    op.execute("UPDATE stock_ledger SET entry_id = 'led_' || seq")
    op.alter_column("stock_ledger", "entry_id", nullable=False, server_default=sa.text(OPAQUE))
    op.create_index("stock_ledger_entry", "stock_ledger", ["merchant_id", "entry_id"], unique=True)


def downgrade() -> None:
    op.drop_index("stock_ledger_entry", table_name="stock_ledger")
    op.drop_column("stock_ledger", "entry_id")
