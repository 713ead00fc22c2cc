"""no answer showing a shown-once secret is stored, whatever the secret

The check on stored answers named each secret's shape (an API key, a client secret). Every
answer that shows a secret once also says `"secret_redacted":false`, and `redact` turns that
into true; refusing the unredacted marker covers gift card codes and any later shown-once
secret without naming each. Self-contained on purpose, as 0005 is.

Revision ID: 0006
Revises: 0005
"""

from alembic import op

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None

BEFORE = (
    'position(\'"key":"pos_test_\'::bytea in body) = 0'
    ' AND position(\'"key":"pos_live_\'::bytea in body) = 0'
    ' AND position(\'"client_secret":"\'::bytea in body) = 0'
)
AFTER = BEFORE + " AND position('\"secret_redacted\":false'::bytea in body) = 0"


def upgrade() -> None:
    op.drop_constraint("idempotency_keys_no_secrets", "idempotency_keys", type_="check")
    op.create_check_constraint("idempotency_keys_no_secrets", "idempotency_keys", AFTER)


def downgrade() -> None:
    op.drop_constraint("idempotency_keys_no_secrets", "idempotency_keys", type_="check")
    op.create_check_constraint("idempotency_keys_no_secrets", "idempotency_keys", BEFORE)
