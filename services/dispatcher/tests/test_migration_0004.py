"""Migration 0004: the `webhook_subscription.disabled` events the feed already keeps, and their
deliveries' bodies, name the subscription's URL's origin instead of the URL (which may hold the
receiver's own token), as new ones do; every other event stays as it was."""

from __future__ import annotations

import json
from pathlib import Path

import pos_dispatcher
import psycopg

from pos_devstack.testing import Infra
from pos_kit import migrate as kit_migrate

MIGRATIONS = Path(pos_dispatcher.__file__).parent / "migrations"

URL = "https://hooks.example.com:8443/partner-a?token=SECRET-OF-A"
SUBSCRIPTION = {
    "id": "whsub_gone",
    "url": URL,
    "status": "disabled",
    "version": 2,
    "created_at": "2026-12-01T10:00:00.000Z",
    "updated_at": "2026-12-01T11:00:00.000Z",
    "description": "",
    "event_types": ["product.*"],
    "disabled_reason": "endpoint_gone",
}
# Another type whose object happens to have a `url`: not this migration's business.
OTHER = {"object": {"id": "prod_1", "url": "https://shop.example.com/tee?ref=x"}}


def _event(sequence: int, ident: str, kind: str, data: dict) -> dict:  # type: ignore[type-arg]
    return {"id": ident, "type": kind, "sequence": sequence, "merchant_id": "mer_1",
            "occurred_at": "2026-12-01T11:00:00.000Z", "data": data}  # fmt: skip


def test_disabled_events_and_their_bodies_lose_the_url_and_nothing_else(infra: Infra) -> None:
    url = infra.create_database("dispatcher")
    kit_migrate.upgrade(MIGRATIONS, url, "0003")
    disabled = _event(2, "evt_gone", "webhook_subscription.disabled", {"object": SUBSCRIPTION})
    other = _event(1, "evt_prod", "product.updated", OTHER)
    with psycopg.connect(url) as conn:
        conn.execute(
            "INSERT INTO webhook_subscriptions (merchant_id, id, url, event_types, secret)"
            " VALUES ('mer_1', 'whsub_watch', 'https://watch.example.com/', '{*}', 'x')"
        )
        for event in (other, disabled):
            conn.execute(
                "INSERT INTO events (merchant_id, sequence, id, type, resource_id, occurred_at,"
                " data) VALUES ('mer_1', %s, %s, %s, 'r', now(), %s)",
                (event["sequence"], event["id"], event["type"], json.dumps(event["data"])),
            )
            conn.execute(
                "INSERT INTO deliveries (merchant_id, id, subscription_id, event_id, event_type,"
                " sequence, body, next_attempt_at, created_at) VALUES ('mer_1', %s,"
                " 'whsub_watch', %s, %s, %s, %s, now(), now())",
                (
                    "dlv_" + event["id"],
                    event["id"],
                    event["type"],
                    event["sequence"],
                    json.dumps(event, separators=(",", ":")),
                ),
            )

    kit_migrate.upgrade(MIGRATIONS, url, "head")

    with psycopg.connect(url) as conn:
        data = dict(conn.execute("SELECT id, data FROM events").fetchall())
        bodies = dict(conn.execute("SELECT event_id, body FROM deliveries").fetchall())
    # The origin where the URL was, every other field as it was.
    shown = {("origin" if key == "url" else key): value for key, value in SUBSCRIPTION.items()}
    shown["origin"] = "https://hooks.example.com:8443"
    assert data["evt_gone"] == {"object": shown}
    # The body keeps its compact form and its fields' order.
    assert bodies["evt_gone"] == json.dumps(
        {**disabled, "data": {"object": shown}}, separators=(",", ":")
    )
    assert "SECRET-OF-A" not in bodies["evt_gone"]
    assert data["evt_prod"] == OTHER
    assert bodies["evt_prod"] == json.dumps(other, separators=(",", ":"))
