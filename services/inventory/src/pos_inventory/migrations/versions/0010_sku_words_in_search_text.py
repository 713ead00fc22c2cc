"""products.search_text holds each SKU's words too

PostgreSQL's text parser reads a SKU such as `MUG-042` as the word `mug` and the signed integer
`-042`, so the catalog's text search (`?query=`, split into words: `mug:* & 042:*`) never found
a product by its SKU or by the SKU's number. The domain now appends each SKU's words to the
text it indexes (`Product.search_text`); this fills them in for the products written before.

Revision ID: 0010
Revises: 0009
"""

from alembic import op

revision = "0010"
down_revision = "0009"
branch_labels = None
depends_on = None


def upgrade() -> None:
    # The same words as the domain's SKU_WORD: SKUs hold letters, digits and '._/-' only.
    op.execute(
        "UPDATE products p SET search_text = concat_ws(' ', nullif(p.search_text, ''), ("
        "  SELECT string_agg(trim(regexp_replace(s.sku, '[^A-Za-z0-9_]+', ' ', 'g')), ' ')"
        "  FROM product_skus s WHERE s.merchant_id = p.merchant_id AND s.product_id = p.id"
        "))"
    )


def downgrade() -> None:
    # The extra words only widen what a search finds; a product's next write recomputes them.
    pass
