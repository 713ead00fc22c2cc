"""reservations.updated_at stamped at the moment of each change

A reservation's `updated_at` was `now()` (its transaction's start) when it was made and when it
ended (committed, released, expired): a transaction that began before the hold was made could
end it with a stamp older than its creation. As for stock (0008), the moment of the write,
`clock_timestamp()`, stamps it on insert, and a trigger stamps every change of its status,
never below the stamp it replaces; it runs once the row is locked, so the next writer of the
row stamps later (0008's trigger function, `stamp_stock_change`, does exactly that).

Revision ID: 0009
Revises: 0008
"""

import sqlalchemy as sa
from alembic import op

revision = "0009"
down_revision = "0008"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.execute("DROP TRIGGER IF EXISTS reservations_stamp_change ON reservations")
    op.execute(
        "CREATE TRIGGER reservations_stamp_change BEFORE UPDATE ON reservations FOR EACH ROW "
        "WHEN (OLD.status IS DISTINCT FROM NEW.status) "
        # 0008's function: greatest(OLD.updated_at, clock_timestamp()), the same rule.
        "EXECUTE FUNCTION stamp_stock_change()"
    )
    op.alter_column(
        "reservations", "updated_at", server_default=sa.text("clock_timestamp()"), nullable=False
    )


def downgrade() -> None:
    op.alter_column("reservations", "updated_at", server_default=sa.text("now()"))
    op.execute("DROP TRIGGER IF EXISTS reservations_stamp_change ON reservations")
