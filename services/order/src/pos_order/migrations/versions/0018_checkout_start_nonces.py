"""a request's start keeps a random nonce its order and return ids derive from: a start made
anew under the same request id (its order withdrawn) derives new ids, even within the same
millisecond

Revision ID: 0018
Revises: 0017
"""

import sqlalchemy as sa
from alembic import op

revision = "0018"
down_revision = "0017"
branch_labels = None
depends_on = None


def upgrade() -> None:
    # Nullable, no default: a start made before this keeps deriving its ids as it did (from its
    # time and request id alone), so a retry of it still finds its order.
    op.add_column("checkout_starts", sa.Column("nonce", sa.Text(), nullable=True))


def downgrade() -> None:
    op.drop_column("checkout_starts", "nonce")
