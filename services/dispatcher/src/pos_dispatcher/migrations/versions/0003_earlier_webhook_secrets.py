"""webhook_subscriptions.earlier_secrets: a rotation within another's overlap keeps the secret
that one retired signing to the end of its own overlap

Revision ID: 0003
Revises: 0002
"""

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column(
        "webhook_subscriptions",
        sa.Column(
            "earlier_secrets",
            sa.ARRAY(sa.LargeBinary()),
            nullable=False,
            server_default=sa.text("'{}'::bytea[]"),
        ),
    )
    op.add_column(
        "webhook_subscriptions",
        sa.Column(
            "earlier_secrets_until",
            sa.ARRAY(sa.DateTime(timezone=True)),
            nullable=False,
            server_default=sa.text("'{}'::timestamptz[]"),
        ),
    )


def downgrade() -> None:
    op.drop_column("webhook_subscriptions", "earlier_secrets_until")
    op.drop_column("webhook_subscriptions", "earlier_secrets")
