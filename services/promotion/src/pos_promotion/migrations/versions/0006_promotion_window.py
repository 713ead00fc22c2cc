"""promotion window as instants: a list can filter on whether the window has opened or closed

Revision ID: 0006
Revises: 0005
"""

from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

import sqlalchemy as sa
from alembic import op

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None

# As model.window says, kept here as it was written: a migration never changes with the code.
# An offer naming no zone opens at the first location anywhere (UTC+14) and closes at the last
# (UTC-12).
AHEAD_MOST = timedelta(hours=14)
BEHIND_MOST = timedelta(hours=-12)


def _instant(local: str | None, zone: str, offset: timedelta) -> datetime | None:
    if not local:
        return None
    at = datetime.fromisoformat(local)
    if zone:
        return at.replace(tzinfo=ZoneInfo(zone)).astimezone(UTC)
    return (at - offset).replace(tzinfo=UTC)


def upgrade() -> None:
    op.add_column("promotions", sa.Column("opens_at", sa.DateTime(timezone=True)))
    op.add_column("promotions", sa.Column("closes_at", sa.DateTime(timezone=True)))
    conn = op.get_bind()
    # Only offers with a window (a first-version row has no definition, so none).
    rows = conn.execute(
        sa.text(
            "SELECT merchant_id, id, definition -> 'conditions' AS c FROM promotions"
            " WHERE coalesce(definition #>> '{conditions,starts_at}', '') <> ''"
            " OR coalesce(definition #>> '{conditions,ends_at}', '') <> ''"
        )
    ).all()
    for row in rows:
        zone = row.c.get("time_zone") or ""
        conn.execute(
            sa.text(
                "UPDATE promotions SET opens_at = :opens, closes_at = :closes"
                " WHERE merchant_id = :merchant AND id = :id"
            ),
            {
                "opens": _instant(row.c.get("starts_at"), zone, AHEAD_MOST),
                "closes": _instant(row.c.get("ends_at"), zone, BEHIND_MOST),
                "merchant": row.merchant_id,
                "id": row.id,
            },
        )


def downgrade() -> None:
    op.drop_column("promotions", "closes_at")
    op.drop_column("promotions", "opens_at")
