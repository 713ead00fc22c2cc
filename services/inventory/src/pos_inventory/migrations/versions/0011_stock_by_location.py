"""stock is read by location: an index on (merchant_id, location_id, sku)

`GET /v1/inventory?location_id=` lists a store's levels by SKU in pages; the primary key starts
with the SKU, so each page walked the merchant's stock at every location. The index reads one
location's rows in SKU order, a page at a time.

Revision ID: 0011
Revises: 0010
"""

from alembic import op

revision = "0011"
down_revision = "0010"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_index("stock_by_location", "stock", ["merchant_id", "location_id", "sku"])


def downgrade() -> None:
    op.drop_index("stock_by_location", table_name="stock")
