"""stock.updated_at and stock_ledger.created_at stamped at the moment of each change

A level's `updated_at` was `now()` (its transaction's start) and written only when `on_hand`
moved: holds, releases and expiries left it as it was, and of two writers queued on one row
the later could stamp the earlier time. A trigger now stamps every change of `on_hand` or
`reserved` with `clock_timestamp()`, never below the stamp it replaces; it runs once the
row is locked, so the next writer of the row stamps later. A ledger entry's `created_at`
(its `recorded_at`) is likewise the moment it is written, under the same row lock: an item's
entries are stamped in the order of the ledger.

Revision ID: 0008
Revises: 0007
"""

import sqlalchemy as sa
from alembic import op

revision = "0008"
down_revision = "0007"
branch_labels = None
depends_on = None


STAMP_STOCK = """
CREATE OR REPLACE FUNCTION stamp_stock_change() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    -- Fired on the locked, newest row: a later writer of the row stamps later.
    NEW.updated_at := greatest(OLD.updated_at, clock_timestamp());
    RETURN NEW;
END
$$
"""


def upgrade() -> None:
    op.execute(STAMP_STOCK)
    op.execute("DROP TRIGGER IF EXISTS stock_stamp_change ON stock")
    op.execute(
        "CREATE TRIGGER stock_stamp_change BEFORE UPDATE ON stock FOR EACH ROW "
        "WHEN (OLD.on_hand IS DISTINCT FROM NEW.on_hand "
        "OR OLD.reserved IS DISTINCT FROM NEW.reserved) "
        "EXECUTE FUNCTION stamp_stock_change()"
    )
    op.alter_column(
        "stock", "updated_at", server_default=sa.text("clock_timestamp()"), nullable=False
    )
    op.alter_column(
        "stock_ledger", "created_at", server_default=sa.text("clock_timestamp()"), nullable=False
    )


def downgrade() -> None:
    op.alter_column("stock_ledger", "created_at", server_default=sa.text("now()"))
    op.alter_column("stock", "updated_at", server_default=sa.text("now()"))
    op.execute("DROP TRIGGER IF EXISTS stock_stamp_change ON stock")
    op.execute("DROP FUNCTION IF EXISTS stamp_stock_change()")
