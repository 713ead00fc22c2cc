"""Catalog answers: products with their variants, and the batch upsert's results."""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import Field

from pos_gateway.routes.common import INT32
from pos_gateway.schemas.base import Answer, FieldError, Id, Money, Page, Sku, Timestamp, Version

# What the inventory service accepts (pos_inventory.domain.barcodes, .catalog): a GTIN, or a
# code the shop prints itself; tax categories are short lower-case codes.
BARCODE = r"^[A-Za-z0-9][A-Za-z0-9._-]{0,47}$"
Barcode = Annotated[str, Field(pattern=BARCODE, max_length=48, examples=["4006381333931"])]
TAX_CATEGORY = r"^[a-z][a-z0-9_]{0,31}$"
OptionName = Annotated[str, Field(min_length=1, max_length=50)]
OptionValue = Annotated[str, Field(max_length=100)]


class ProductVariant(Answer):
    id: Id
    sku: Sku
    name: str = Field(max_length=200)
    options: dict[OptionName, OptionValue] = Field(max_length=10, examples=[{"size": "M"}])
    price: Money | None = Field(description="null: sold at the product's price")
    barcodes: list[Barcode] = Field(max_length=20)
    unit_cost: Money | None = Field(None, description="null: the product's unit cost")


class Product(Answer):
    id: Id
    sku: Sku
    name: str = Field(min_length=1, max_length=200)
    price: Money
    version: Version
    created_at: Timestamp
    updated_at: Timestamp
    description: str = Field(max_length=5000)
    category: str = Field(max_length=100)
    tax_category: str = Field(pattern=TAX_CATEGORY, max_length=32, examples=["standard"])
    status: Literal["active", "archived"]
    external_id: str = Field(max_length=255, description="Your id; empty when unset")
    barcodes: list[Barcode] = Field(max_length=20)
    variants: list[ProductVariant] = Field(max_length=100)
    open_price: bool = Field(False, description="The price is entered at the sale")
    unit_cost: Money | None = Field(
        None,
        description="What a unit costs you, in the price's currency; null when not known. A "
        "register sale whose manual discount or entered price leaves a line below it needs "
        "the `sell_below_cost` permission",
    )


class ItemError(Answer):
    code: str = Field(max_length=64, examples=["sku_taken"])
    detail: str = Field(max_length=2000)
    # Far above what one item (at most 100 variants of a few dozen fields) can be wrong in.
    errors: list[FieldError] = Field(max_length=10_000, description="Fields relative to the item")


class UpsertResult(Answer):
    index: int = Field(ge=0, le=999, json_schema_extra=INT32, description="Position in the batch")
    external_id: str = Field(max_length=255)
    status: Literal["created", "updated", "unchanged", "failed"]
    product: Product | None = Field(description="null when the item failed")
    error: ItemError | None = Field(description="Set when the item failed; nothing was written")


Tally = Annotated[int, Field(ge=0, le=1000, json_schema_extra=INT32)]


class UpsertSummary(Answer):
    created: Tally
    updated: Tally
    unchanged: Tally
    failed: Tally


class BatchUpsertResult(Answer):
    data: list[UpsertResult] = Field(max_length=1000, description="One per item, in order")
    summary: UpsertSummary


class ProductList(Page[Product]):
    pass
