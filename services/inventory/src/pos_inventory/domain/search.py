"""What a catalog search asks for."""

from __future__ import annotations

import re
from dataclasses import dataclass

from pos_inventory.domain.barcodes import barcode_key
from pos_inventory.domain.catalog import ProductStatus
from pos_kit.errors import raise_if, require

MAX_QUERY = 200
# Text search matches words of letters and digits; the rest of a query (`_` too: PostgreSQL's
# parser reads it as a separator) only separates them.
WORD = re.compile(r"[^\W_]")


@dataclass(frozen=True)
class ProductQuery:
    text: str = ""
    sku: str = ""
    barcode: str = ""
    status: ProductStatus | None = None

    @property
    def barcode_key(self) -> str:
        return barcode_key(self.barcode) if self.barcode else ""


def validate_query(query: ProductQuery) -> None:
    raise_if(
        require(len(query.text) <= MAX_QUERY, "query", f"must be at most {MAX_QUERY} characters")
        + require(len(query.sku) <= 64, "sku", "must be at most 64 characters")
        + require(len(query.barcode) <= 48, "barcode", "must be at most 48 characters")
        + require(
            bool(query.text.strip() or query.sku or query.barcode),
            "query",
            "name a query, a sku or a barcode",
        )
        # `%`, `--` or `_` holds no word to look for: searched as nothing, it found every product.
        + require(
            not query.text.strip() or bool(WORD.search(query.text)),
            "query",
            "must hold a letter or a digit",
        )
    )
