"""who and where: the register and staff member of a register sale

Revision ID: 0006
Revises: 0005
"""

import sqlalchemy as sa
from alembic import op

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column("orders", sa.Column("register_id", sa.Text(), server_default="", nullable=False))
    op.add_column("orders", sa.Column("staff_id", sa.Text(), server_default="", nullable=False))
    op.create_index(
        "orders_by_register",
        "orders",
        ["merchant_id", "register_id", "id"],
        unique=False,
        postgresql_where=sa.text("register_id <> ''"),
    )
    op.create_index(
        "orders_by_staff",
        "orders",
        ["merchant_id", "staff_id", "id"],
        unique=False,
        postgresql_where=sa.text("staff_id <> ''"),
    )


def downgrade() -> None:
    op.drop_index(
        "orders_by_staff", table_name="orders", postgresql_where=sa.text("staff_id <> ''")
    )
    op.drop_index(
        "orders_by_register", table_name="orders", postgresql_where=sa.text("register_id <> ''")
    )
    op.drop_column("orders", "staff_id")
    op.drop_column("orders", "register_id")
