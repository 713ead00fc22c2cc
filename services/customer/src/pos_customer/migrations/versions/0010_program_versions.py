"""every version of the loyalty program, with the time it took effect

Revision ID: 0010
Revises: 0009

A sale earns under the program in force when it was made, not when its event is heard. The
program each merchant holds now is kept as in force since -infinity: nothing says when it
took effect, and every sale before the next change earned or would earn under it, as it did.
"""

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects.postgresql import JSONB

revision = "0010"
down_revision = "0009"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "loyalty_program_versions",
        sa.Column("merchant_id", sa.Text(), nullable=False),
        sa.Column("version", sa.BigInteger(), nullable=False),
        sa.Column("program", JSONB(), nullable=False),
        sa.Column("effective_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("merchant_id", "version", name="loyalty_program_versions_pkey"),
    )
    op.create_index(
        "loyalty_program_versions_effective",
        "loyalty_program_versions",
        ["merchant_id", "effective_at"],
    )
    op.execute(
        "INSERT INTO loyalty_program_versions (merchant_id, version, program, effective_at)"
        " SELECT merchant_id, version, program, '-infinity' FROM loyalty_programs"
    )


def downgrade() -> None:
    op.drop_table("loyalty_program_versions")
