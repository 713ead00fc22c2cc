"""redact stored secrets; credentials remember the request that made them

Answers kept for Idempotency-Key replays used to hold the API key of `POST /v1/api-keys` and
the client secret of `POST /v1/oauth-clients` in plaintext. Those fields are now null in what is
stored, with `secret_redacted: true` (pos_gateway.idempotency.redact); this does the same to the
rows already there, so a replay still answers the resource and creates nothing twice.

API keys and OAuth clients also keep the Idempotency-Key of the request that created them, so a
retry whose stored answer is missing (the gateway stopped before storing it, or failed after
the key was made) finds the credential instead of making a second one.

The table does not record the path, so a row is recognised by its answer: a JSON object whose
`key` is an API key, or which has a `client_secret`. Self-contained on purpose: a migration
must keep doing what it did when the code around it changes.

Revision ID: 0005
Revises: 0004
"""

import json

import sqlalchemy as sa
from alembic import op

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None

# What the check constraint added below refuses, so every row left must pass it.
API_KEY_PREFIXES = ("pos_test_", "pos_live_")
NO_STORED_SECRETS = (
    'position(\'"key":"pos_test_\'::bytea in body) = 0'
    ' AND position(\'"key":"pos_live_\'::bytea in body) = 0'
    ' AND position(\'"client_secret":"\'::bytea in body) = 0'
)


def _redacted(body: bytes) -> bytes | None:
    """The body without its secrets, or None when it holds none."""
    try:
        data = json.loads(body)
    except ValueError:
        return None
    if not isinstance(data, dict):
        return None
    key, secret = data.get("key"), data.get("client_secret")
    has_key = isinstance(key, str) and key.startswith(API_KEY_PREFIXES)
    has_secret = isinstance(secret, str)
    if not (has_key or has_secret):
        return None
    if has_key:
        data["key"] = None
    if has_secret:
        data["client_secret"] = None
    data["secret_redacted"] = True
    return json.dumps(data, ensure_ascii=False, separators=(",", ":")).encode()


def upgrade() -> None:
    op.add_column("api_keys", sa.Column("request_id", sa.Text(), nullable=True))
    op.create_index("api_keys_request", "api_keys", ["merchant_id", "request_id"], unique=True)
    op.add_column("oauth_clients", sa.Column("request_id", sa.Text(), nullable=True))
    op.create_index(
        "oauth_clients_request", "oauth_clients", ["merchant_id", "request_id"], unique=True
    )
    conn = op.get_bind()
    # Only rows that could hold one of the fields are read at all.
    found = conn.execute(
        sa.text(
            "SELECT merchant_id, key, body FROM idempotency_keys "
            "WHERE body IS NOT NULL AND (position(:key IN body) > 0 OR position(:cs IN body) > 0)"
        ).bindparams(
            sa.bindparam("key", b'"key"', type_=sa.LargeBinary),
            sa.bindparam("cs", b'"client_secret"', type_=sa.LargeBinary),
        )
    )
    update = sa.text(
        "UPDATE idempotency_keys SET body = :body WHERE merchant_id = :merchant_id AND key = :key"
    ).bindparams(sa.bindparam("body", type_=sa.LargeBinary))
    for row in found.fetchall():
        cleaned = _redacted(bytes(row.body))
        if cleaned is not None:
            conn.execute(update, {"body": cleaned, "merchant_id": row.merchant_id, "key": row.key})
    # From now on the database itself refuses an answer holding one (behind the gateway's own
    # redaction, and against replicas of the older gateway still running during the upgrade).
    op.create_check_constraint("idempotency_keys_no_secrets", "idempotency_keys", NO_STORED_SECRETS)


def downgrade() -> None:
    # The redacted secrets stay redacted: they are gone, as they should be.
    op.drop_constraint("idempotency_keys_no_secrets", "idempotency_keys", type_="check")
    op.drop_index("oauth_clients_request", table_name="oauth_clients")
    op.drop_column("oauth_clients", "request_id")
    op.drop_index("api_keys_request", table_name="api_keys")
    op.drop_column("api_keys", "request_id")
