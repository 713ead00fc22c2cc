"""reservations are listed by location, by status and by SKU: an index for each filter

`GET /v1/reservations` (ListReservations) lists a merchant's holds by id, narrowed by
`location_id`, `status` or `sku`; only the primary key (merchant_id, id) served it, so each
page of a store's holds, of the few active among the finished ones, or of a SKU's walked the
merchant's holds by id and filtered them. (merchant_id, location_id, id) and (merchant_id,
status, id) read one store's or one stored status's holds in id order, a page at a time after
the cursor; a GIN index (jsonb_path_ops) on `lines` finds the holds with a line of a SKU
(`lines @> '[["SKU"]]'`).

Revision ID: 0014
Revises: 0013
"""

from alembic import op

revision = "0014"
down_revision = "0013"
branch_labels = None
depends_on = None


def upgrade() -> None:
    # Built concurrently, outside the migration's transaction: every hold and sourcing writes
    # to this table, and a plain CREATE INDEX would block them for as long as a long history
    # takes to index.
    with op.get_context().autocommit_block():
        op.create_index(
            "reservations_by_location",
            "reservations",
            ["merchant_id", "location_id", "id"],
            postgresql_concurrently=True,
        )
        op.create_index(
            "reservations_by_status",
            "reservations",
            ["merchant_id", "status", "id"],
            postgresql_concurrently=True,
        )
        op.create_index(
            "reservations_by_sku",
            "reservations",
            ["lines"],
            postgresql_using="gin",
            postgresql_ops={"lines": "jsonb_path_ops"},
            postgresql_concurrently=True,
        )


def downgrade() -> None:
    op.drop_index("reservations_by_sku", table_name="reservations")
    op.drop_index("reservations_by_status", table_name="reservations")
    op.drop_index("reservations_by_location", table_name="reservations")
