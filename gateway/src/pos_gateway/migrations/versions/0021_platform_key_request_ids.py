"""The request ids of the keys the platform issued are the platform's: prefixed `platform/`
(admin.platform_request_id), apart from the merchant's own Idempotency-Keys

Revision ID: 0021
Revises: 0020

A key issued by POST /v1/admin/merchants/{id}/api-keys kept the platform's Idempotency-Key as
its `request_id`, under the same unique (merchant_id, request_id) as the keys the merchant
makes and rolls: the merchant sending that key was refused as reusing it, or answered the
platform's key and made none. Those keys are found by their `api_key.created` entry (by no
credential, `issued_by: platform`, the same request id), so a retry of the platform's request
still finds its key. A key the platform issued before those entries were written cannot be
told from the merchant's and keeps its id. The audit log is append-only: its entries keep
theirs.
"""

from alembic import op

revision = "0021"
down_revision = "0020"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.execute(
        """
        UPDATE api_keys AS k SET request_id = 'platform/' || k.request_id
        FROM audit_log AS a
        WHERE a.merchant_id = k.merchant_id AND a.resource_type = 'api_key'
          AND a.resource_id = k.id AND a.action = 'api_key.created'
          AND a.credential_id IS NULL AND a.details ->> 'issued_by' = 'platform'
          AND a.request_id = k.request_id AND k.request_id NOT LIKE 'platform/%'
        """
    )


def downgrade() -> None:
    # Back to the bare key, but where the merchant has since used it for a key of its own
    # (the unique index would refuse the second).
    op.execute(
        """
        UPDATE api_keys AS k SET request_id = substr(k.request_id, length('platform/') + 1)
        WHERE k.request_id LIKE 'platform/%' AND NOT EXISTS (
          SELECT 1 FROM api_keys AS o WHERE o.merchant_id = k.merchant_id
            AND o.request_id = substr(k.request_id, length('platform/') + 1))
        """
    )
