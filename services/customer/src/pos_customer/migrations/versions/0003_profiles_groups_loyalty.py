"""complete profiles, search terms, groups, the loyalty program, the points ledger and holds,
purchase history and erasures

Revision ID: 0003
Revises: 0002
"""

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.alter_column("customers", "email", nullable=True)
    op.drop_index("customers_email", table_name="customers")
    op.create_index(
        "customers_email",
        "customers",
        ["merchant_id", "email"],
        unique=True,
        postgresql_where=sa.text("email IS NOT NULL"),
    )
    add: list[sa.Column[object]] = [
        sa.Column("phone", sa.Text(), nullable=True),
        sa.Column("external_id", sa.Text(), nullable=True),
        sa.Column(
            "addresses",
            postgresql.JSONB(),
            nullable=False,
            server_default=sa.text("'[]'::jsonb"),
        ),
        sa.Column("birthday", sa.Date(), nullable=True),
        sa.Column("notes", sa.Text(), nullable=False, server_default=""),
        sa.Column("consent_granted", sa.Boolean(), nullable=False, server_default=sa.text("false")),
        sa.Column("consent_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("consent_channel", sa.Text(), nullable=False, server_default=""),
        sa.Column(
            "tags", sa.ARRAY(sa.Text()), nullable=False, server_default=sa.text("'{}'::text[]")
        ),
        sa.Column("status", sa.Text(), nullable=False, server_default="active"),
        sa.Column("merged_into", sa.Text(), nullable=True),
        sa.Column("points_held", sa.BigInteger(), nullable=False, server_default="0"),
        sa.Column("tier", sa.Text(), nullable=False, server_default=""),
    ]
    for column in add:
        op.add_column("customers", column)
    op.create_index(
        "customers_external_id",
        "customers",
        ["merchant_id", "external_id"],
        unique=True,
        postgresql_where=sa.text("external_id IS NOT NULL"),
    )
    op.create_index(
        "customers_phone",
        "customers",
        ["merchant_id", "phone"],
        postgresql_where=sa.text("phone IS NOT NULL"),
    )

    op.create_table(
        "customer_terms",
        sa.Column("merchant_id", sa.Text(), nullable=False),
        sa.Column("term", sa.Text(collation="C"), nullable=False),
        sa.Column("customer_id", sa.Text(), nullable=False),
        sa.PrimaryKeyConstraint("merchant_id", "term", "customer_id", name="customer_terms_pkey"),
    )
    op.create_index("customer_terms_customer", "customer_terms", ["merchant_id", "customer_id"])

    op.create_table(
        "customer_groups",
        sa.Column("merchant_id", sa.Text(), nullable=False),
        sa.Column("id", sa.Text(), nullable=False),
        sa.Column("name", sa.Text(), nullable=False),
        sa.Column("description", sa.Text(), nullable=False, server_default=""),
        sa.Column(
            "created_at", sa.DateTime(timezone=True), nullable=False, server_default=sa.func.now()
        ),
        sa.PrimaryKeyConstraint("merchant_id", "id", name="customer_groups_pkey"),
    )
    op.create_index("customer_groups_name", "customer_groups", ["merchant_id", "name"], unique=True)
    op.create_table(
        "group_members",
        sa.Column("merchant_id", sa.Text(), nullable=False),
        sa.Column("group_id", sa.Text(), nullable=False),
        sa.Column("customer_id", sa.Text(), nullable=False),
        sa.Column(
            "added_at", sa.DateTime(timezone=True), nullable=False, server_default=sa.func.now()
        ),
        sa.PrimaryKeyConstraint(
            "merchant_id", "group_id", "customer_id", name="group_members_pkey"
        ),
        sa.ForeignKeyConstraint(
            ["merchant_id", "group_id"],
            ["customer_groups.merchant_id", "customer_groups.id"],
            name="group_members_group_fkey",
            ondelete="CASCADE",
        ),
    )
    op.create_index("group_members_customer", "group_members", ["merchant_id", "customer_id"])

    op.create_table(
        "loyalty_programs",
        sa.Column("merchant_id", sa.Text(), nullable=False),
        sa.Column("program", postgresql.JSONB(), nullable=False),
        sa.Column("version", sa.BigInteger(), nullable=False, server_default="1"),
        sa.PrimaryKeyConstraint("merchant_id", name="loyalty_programs_pkey"),
    )
    op.create_table(
        "points_ledger",
        sa.Column("merchant_id", sa.Text(), nullable=False),
        sa.Column("id", sa.Text(), nullable=False),
        sa.Column("seq", sa.BigInteger(), sa.Identity(always=False), nullable=False),
        sa.Column("customer_id", sa.Text(), nullable=False),
        sa.Column("kind", sa.Text(), nullable=False),
        sa.Column("points", sa.BigInteger(), nullable=False),
        sa.Column("balance_after", sa.BigInteger(), nullable=False),
        sa.Column("order_id", sa.Text(), nullable=True),
        sa.Column("reason", sa.Text(), nullable=False, server_default=""),
        sa.Column(
            "created_at", sa.DateTime(timezone=True), nullable=False, server_default=sa.func.now()
        ),
        sa.PrimaryKeyConstraint("merchant_id", "id", name="points_ledger_pkey"),
    )
    op.create_index(
        "points_ledger_order",
        "points_ledger",
        ["merchant_id", "kind", "order_id"],
        unique=True,
        postgresql_where=sa.text("order_id IS NOT NULL"),
    )
    op.create_index(
        "points_ledger_customer", "points_ledger", ["merchant_id", "customer_id", "seq"]
    )
    # The old one-row-per-order accruals become the ledger's first "earned" entries.
    op.execute(
        """
        INSERT INTO points_ledger
            (merchant_id, id, customer_id, kind, points, balance_after, order_id, created_at)
        SELECT merchant_id, 'pte_' || substr(md5(merchant_id || '/' || order_id), 1, 26),
               customer_id, 'earned', points,
               sum(points) OVER (PARTITION BY merchant_id, customer_id
                                 ORDER BY created_at, order_id),
               order_id, created_at
        FROM loyalty_ledger ORDER BY created_at, order_id
        """
    )
    op.drop_table("loyalty_ledger")
    op.create_table(
        "points_holds",
        sa.Column("merchant_id", sa.Text(), nullable=False),
        sa.Column("order_id", sa.Text(), nullable=False),
        sa.Column("customer_id", sa.Text(), nullable=False),
        sa.Column("points", sa.BigInteger(), nullable=False),
        sa.Column("status", sa.Text(), nullable=False),
        sa.Column("currency", sa.Text(), nullable=False, server_default=""),
        sa.Column("point_value_minor", sa.BigInteger(), nullable=False, server_default="1"),
        sa.Column(
            "created_at", sa.DateTime(timezone=True), nullable=False, server_default=sa.func.now()
        ),
        sa.PrimaryKeyConstraint("merchant_id", "order_id", name="points_holds_pkey"),
    )
    op.create_index("points_holds_customer", "points_holds", ["merchant_id", "customer_id"])
    op.create_table(
        "purchases",
        sa.Column("merchant_id", sa.Text(), nullable=False),
        sa.Column("order_id", sa.Text(), nullable=False),
        sa.Column("customer_id", sa.Text(), nullable=False),
        sa.Column("location_id", sa.Text(), nullable=False),
        sa.Column("total_amount", sa.BigInteger(), nullable=False),
        sa.Column("currency", sa.Text(), nullable=False),
        sa.Column("points_earned", sa.BigInteger(), nullable=False, server_default="0"),
        sa.Column("ordered_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("status", sa.Text(), nullable=False, server_default="confirmed"),
        sa.PrimaryKeyConstraint("merchant_id", "order_id", name="purchases_pkey"),
    )
    op.create_index("purchases_customer", "purchases", ["merchant_id", "customer_id", "ordered_at"])
    op.create_table(
        "erasures",
        sa.Column("merchant_id", sa.Text(), nullable=False),
        sa.Column("customer_id", sa.Text(), nullable=False),
        sa.Column("requested_by", sa.Text(), nullable=False, server_default=""),
        sa.Column(
            "erased_at", sa.DateTime(timezone=True), nullable=False, server_default=sa.func.now()
        ),
        sa.PrimaryKeyConstraint("merchant_id", "customer_id", name="erasures_pkey"),
    )


def downgrade() -> None:
    raise NotImplementedError("the points ledger replaced loyalty_ledger; restore a backup")
