"""stock changes stamped ahead of the clock are dated when they were recorded

A count, adjustment or transfer could carry an `occurred_at` up to 5 minutes ahead of the
service's clock and was recorded at that stamp; from now on such a change is recorded at the
service's now (`ledger.change_time`). The rows already written that way keep misplacing
changes for good, not only until their stamp passed: a late count stamped between such an
entry's recording and its stamp added the entry's units on top of what it counted (counted
twice), and a late change stamped in that window was taken as before such a count (swallowed).
Each is dated when it was recorded (`created_at`), as it would be now, and a level whose
latest count was one of them takes that time as its `counted_at`. Only rows ahead by more than
a second: an unstamped change is dated by the service's clock and recorded by the database's,
and the two may differ by a little without anything having been sent ahead.

Revision ID: 0015
Revises: 0014
"""

from alembic import op

revision = "0015"
down_revision = "0014"
branch_labels = None
depends_on = None


def upgrade() -> None:
    # The levels first, while their count's entry still holds the stamp they were given.
    op.execute(
        "UPDATE stock AS s SET counted_at = l.created_at FROM stock_ledger AS l "
        "WHERE l.merchant_id = s.merchant_id AND l.sku = s.sku "
        "AND l.location_id = s.location_id AND l.kind = 'count' AND NOT l.superseded "
        "AND l.occurred_at = s.counted_at "
        "AND l.occurred_at > l.created_at + interval '1 second'"
    )
    op.execute(
        "UPDATE stock_ledger SET occurred_at = created_at "
        "WHERE occurred_at > created_at + interval '1 second'"
    )


def downgrade() -> None:
    # The stamps as sent are not kept: dated when recorded, the rows mean what they did.
    pass
