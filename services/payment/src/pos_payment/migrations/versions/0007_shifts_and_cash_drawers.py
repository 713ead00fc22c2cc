"""shifts, cash drawer movements, and the register, member and shift of payments and refunds

Revision ID: 0007
Revises: 0006
"""

import sqlalchemy as sa
from alembic import op

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None

NOW = sa.text("now()")


def upgrade() -> None:
    for table in ("payments", "refunds"):
        for column in ("register_id", "staff_id", "shift_id"):
            op.add_column(table, sa.Column(column, sa.Text(), server_default="", nullable=False))
        op.create_index(
            f"{table}_shift",
            table,
            ["merchant_id", "shift_id"],
            postgresql_where=sa.text("shift_id <> ''"),
        )
    op.create_table(
        "shifts",
        sa.Column("merchant_id", sa.Text(), nullable=False),
        sa.Column("id", sa.Text(), nullable=False),
        sa.Column("location_id", sa.Text(), nullable=False),
        sa.Column("register_id", sa.Text(), nullable=False),
        sa.Column("status", sa.Text(), nullable=False),
        sa.Column("currency", sa.Text(), nullable=False),
        sa.Column("opening_float", sa.BigInteger(), nullable=False),
        sa.Column("opened_by", sa.Text(), server_default="", nullable=False),
        sa.Column("closed_by", sa.Text(), server_default="", nullable=False),
        sa.Column("counted_cash", sa.BigInteger(), nullable=True),
        sa.Column("expected_cash", sa.BigInteger(), nullable=True),
        sa.Column("version", sa.BigInteger(), server_default="1", nullable=False),
        sa.Column("opened_at", sa.DateTime(timezone=True), server_default=NOW, nullable=False),
        sa.Column("closed_at", sa.DateTime(timezone=True), nullable=True),
        sa.PrimaryKeyConstraint("merchant_id", "id", name="shifts_pkey"),
    )
    op.create_index(
        "shifts_open_per_register",
        "shifts",
        ["merchant_id", "register_id"],
        unique=True,
        postgresql_where=sa.text("status = 'open'"),
    )
    op.create_table(
        "drawer_movements",
        sa.Column("merchant_id", sa.Text(), nullable=False),
        sa.Column("id", sa.Text(), nullable=False),
        sa.Column("shift_id", sa.Text(), nullable=False),
        sa.Column("kind", sa.Text(), nullable=False),
        sa.Column("amount", sa.BigInteger(), nullable=False),
        sa.Column("currency", sa.Text(), nullable=False),
        sa.Column("reason", sa.Text(), nullable=False),
        sa.Column("staff_id", sa.Text(), server_default="", nullable=False),
        sa.Column("register_id", sa.Text(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), server_default=NOW, nullable=False),
        sa.PrimaryKeyConstraint("merchant_id", "id", name="drawer_movements_pkey"),
    )
    op.create_index("drawer_movements_shift", "drawer_movements", ["merchant_id", "shift_id"])


def downgrade() -> None:
    op.drop_table("drawer_movements")
    op.drop_table("shifts")
    for table in ("payments", "refunds"):
        op.drop_index(f"{table}_shift", table)
        for column in ("register_id", "staff_id", "shift_id"):
            op.drop_column(table, column)
