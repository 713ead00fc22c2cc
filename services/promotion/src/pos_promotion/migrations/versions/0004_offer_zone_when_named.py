"""an offer's own time zone wins over the location's: an offer that named none is stored
without one (it was stored as UTC), so it keeps reading the location's zone

Revision ID: 0004
Revises: 0003
"""

from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    # Until now an offer without a zone was stored as UTC, and the location's zone always won.
    # A stored UTC cannot tell a zone named from none: both become none, which reads the
    # location's zone (else UTC), as every offer did before. A zone other than UTC was named,
    # and now wins.
    op.execute(
        "UPDATE promotions SET definition = jsonb_set(definition, '{conditions,time_zone}', '\"\"')"
        " WHERE definition #>> '{conditions,time_zone}' = 'UTC'"
    )


def downgrade() -> None:
    op.execute(
        "UPDATE promotions SET definition = jsonb_set(definition, '{conditions,time_zone}',"
        " '\"UTC\"') WHERE definition #>> '{conditions,time_zone}' = ''"
    )
