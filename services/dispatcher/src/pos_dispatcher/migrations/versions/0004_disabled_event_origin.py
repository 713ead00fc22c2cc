"""webhook_subscription.disabled events already in the feed name the URL's origin, not the URL

The event's `data.object` held the subscription's `url`, which may carry the receiver's own
token (in its path or query), while only `webhooks:manage` may read a subscription: the event
reached every `events:read` key and the endpoints of the merchant's other subscriptions. New
events carry the origin (scheme, host and port) in its place; this does the same to the events
the feed still keeps and to their deliveries' bodies, so a page read or a delivery sent again
after it shows no more of the URL than a new event.

Self-contained on purpose: a migration must keep doing what it did when the code around it
changes. No downgrade: the URLs are not kept anywhere to put back.

Revision ID: 0004
Revises: 0003
"""

import json
from typing import Any
from urllib.parse import urlsplit

import sqlalchemy as sa
from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None

TYPE = "webhook_subscription.disabled"


def _origin(url: str) -> str:
    parts = urlsplit(url)
    return f"{parts.scheme}://{parts.netloc.rpartition('@')[2]}"


def _without_url(data: Any) -> Any | None:
    """The event's data with the origin in place of `object.url`, or None when it has none."""
    shown = data.get("object") if isinstance(data, dict) else None
    if not isinstance(shown, dict) or not isinstance(shown.get("url"), str):
        return None
    shown = {
        ("origin" if key == "url" else key): (_origin(value) if key == "url" else value)
        for key, value in shown.items()
    }
    return {**data, "object": shown}


def upgrade() -> None:
    conn = op.get_bind()
    found = conn.execute(
        sa.text(
            "SELECT merchant_id, id, data FROM events"
            " WHERE type = :type AND data -> 'object' ->> 'url' IS NOT NULL"
        ),
        {"type": TYPE},
    ).all()
    for merchant_id, event_id, data in found:
        redacted = _without_url(data)
        if redacted is None:
            continue
        conn.execute(
            sa.text(
                "UPDATE events SET data = CAST(:data AS jsonb)"
                " WHERE merchant_id = :merchant_id AND id = :id"
            ),
            {"data": json.dumps(redacted), "merchant_id": merchant_id, "id": event_id},
        )
    # A body is the event as the feed answers it, serialized compactly, in its own key order.
    bodies = conn.execute(
        sa.text("SELECT merchant_id, id, body FROM deliveries WHERE event_type = :type"),
        {"type": TYPE},
    ).all()
    for merchant_id, delivery_id, body in bodies:
        try:
            event = json.loads(body)
        except ValueError:
            continue
        redacted = _without_url(event.get("data")) if isinstance(event, dict) else None
        if redacted is None:
            continue
        conn.execute(
            sa.text(
                "UPDATE deliveries SET body = :body WHERE merchant_id = :merchant_id AND id = :id"
            ),
            {
                "body": json.dumps({**event, "data": redacted}, separators=(",", ":")),
                "merchant_id": merchant_id,
                "id": delivery_id,
            },
        )


def downgrade() -> None:
    pass
