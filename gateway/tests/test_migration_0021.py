"""Migration 0021 moves the keys the platform issued to the platform's request ids."""

from __future__ import annotations

from pathlib import Path

import psycopg

import pos_gateway
from pos_devstack.testing import Infra
from pos_kit import migrate as kit_migrate

MIGRATIONS = Path(pos_gateway.__file__).parent / "migrations"


def test_the_platforms_keys_take_its_request_ids_and_the_merchants_keep_theirs(
    infra: Infra,
) -> None:
    url = infra.create_database("gateway")
    kit_migrate.upgrade(MIGRATIONS, url, "0020")
    with psycopg.connect(url) as conn:
        conn.execute("INSERT INTO merchants (id, name) VALUES ('mer_1', 'Old')")
        # (key, request id, its api_key.created entry's credential and details)
        for key, request, credential, details in (
            ("key_platform", "k-1", None, '{"mode": "live", "issued_by": "platform"}'),
            ("key_own", "k-2", "key_first", '{"name": "till"}'),
            ("key_unrecorded", "k-3", None, None),
        ):
            conn.execute(
                "INSERT INTO api_keys (id, merchant_id, name, key_hash, key_hint, mode, scopes,"
                " request_id) VALUES (%s, 'mer_1', 'k', %s, 'pos', 'live', '{}', %s)",
                (key, key.encode(), request),
            )
            if details is not None:
                conn.execute(
                    "INSERT INTO audit_log (id, merchant_id, action, credential_id,"
                    " resource_type, resource_id, details, request_id) VALUES (%s, 'mer_1',"
                    " 'api_key.created', %s, 'api_key', %s, %s, %s)",
                    ("aud_" + key, credential, key, details, request),
                )

    kit_migrate.upgrade(MIGRATIONS, url)

    with psycopg.connect(url) as conn:
        rows = dict(conn.execute("SELECT id, request_id FROM api_keys").fetchall())
    assert rows == {"key_platform": "platform/k-1", "key_own": "k-2", "key_unrecorded": "k-3"}
