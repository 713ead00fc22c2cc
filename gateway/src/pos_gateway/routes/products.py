"""The catalog: /v1/products (variants, barcodes, versions, archive, batch upsert, search)."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from fastapi import APIRouter, Depends, Query, Response
from google.protobuf.field_mask_pb2 import FieldMask
from pydantic import ConfigDict, Field, StrictBool

from pos.inventory.v1 import inventory_pb2
from pos_gateway import examples as ex
from pos_gateway.clients import Services
from pos_gateway.convert import to_json, to_model, to_page
from pos_gateway.problems import Problem, public_code
from pos_gateway.routes.common import (
    CREATE,
    Body,
    Cursor,
    IfMatch,
    Limit,
    MoneyIn,
    Patch,
    PathId,
    Sku,
    UpdatedSince,
    expected_version,
    op,
    patched,
    request_id,
    services,
    timestamp,
    version_checked,
)
from pos_gateway.schemas.catalog import (
    TAX_CATEGORY,
    Barcode,
    BatchUpsertResult,
    OptionName,
    OptionValue,
    Product,
    ProductList,
)

router = APIRouter(prefix="/v1", tags=["catalog"])
Svc = Annotated[Services, Depends(services)]
MAX_BATCH = 1000
# Unset or empty: the service's default, "standard".
TAX_CATEGORY_OR_EMPTY = f"^({TAX_CATEGORY.strip('^$')})?$"

TEE: dict[str, Any] = {
    "sku": "TEE-BLK",
    "name": "Tee, black",
    "price": {"amount": 2599, "currency": "USD"},
    "description": "Organic cotton",
    "category": "Apparel",
    "tax_category": "standard",
    "external_id": "shopify-8123",
    "barcodes": ["4006381333931"],
    "variants": [
        {"sku": "TEE-BLK-M", "name": "M", "options": {"size": "M"}, "barcodes": ["036000291452"]},
        {"sku": "TEE-BLK-XL", "name": "XL", "options": {"size": "XL"},
         "price": {"amount": 2899, "currency": "USD"},
         "unit_cost": {"amount": 1150, "currency": "USD"}},
    ],
    "unit_cost": {"amount": 990, "currency": "USD"},
}  # fmt: skip
UNIT_COST = (
    "What a unit costs you, in the price's currency (unset: not known). A register sale whose "
    "manual discount or entered price leaves a line below it needs the `sell_below_cost` "
    "permission"
)


class VariantIn(Body):
    sku: Sku = Field(description="Unique per merchant")
    name: str = Field("", max_length=200)
    options: dict[OptionName, OptionValue] = Field(
        default_factory=dict, max_length=10, examples=[{"size": "M"}]
    )
    price: MoneyIn | None = Field(None, description="Unset: the product's price")
    barcodes: list[Barcode] = Field(default_factory=list, max_length=20)
    unit_cost: MoneyIn | None = Field(None, description="Unset: the product's unit cost")

    def pb(self) -> inventory_pb2.ProductVariant:
        msg = inventory_pb2.ProductVariant(
            sku=self.sku, name=self.name, options=self.options, barcodes=self.barcodes
        )
        if self.price is not None:
            msg.price.CopyFrom(self.price.pb())
        if self.unit_cost is not None:
            msg.unit_cost.CopyFrom(self.unit_cost.pb())
        return msg


class ProductIn(Body):
    model_config = ConfigDict(extra="forbid", json_schema_extra={"examples": [TEE]})

    sku: Sku
    name: str = Field(min_length=1, max_length=200)
    price: MoneyIn
    description: str = Field("", max_length=5000)
    category: str = Field("", max_length=100)
    tax_category: str = Field(
        "",
        pattern=TAX_CATEGORY_OR_EMPTY,
        max_length=32,
        description='A lower-case code; empty means "standard"',
        examples=["food"],
    )
    external_id: str = Field("", max_length=255, description="Your id; unique per merchant")
    barcodes: list[Barcode] = Field(
        default_factory=list,
        max_length=20,
        description="GTIN-8/12/13/14 (check digit checked) or a shop code of letters and digits",
    )
    variants: list[VariantIn] = Field(default_factory=list, max_length=100)
    open_price: StrictBool = Field(
        False,
        description="The price is entered at the sale (a line's `unit_price`); `price` is a "
        "suggestion",
    )
    unit_cost: MoneyIn | None = Field(None, description=UNIT_COST)

    def pb(self) -> inventory_pb2.ProductInput:
        msg = inventory_pb2.ProductInput(
            sku=self.sku,
            name=self.name,
            price=self.price.pb(),
            description=self.description,
            category=self.category,
            tax_category=self.tax_category,
            external_id=self.external_id,
            barcodes=self.barcodes,
            variants=[v.pb() for v in self.variants],
            open_price=self.open_price,
        )
        if self.unit_cost is not None:
            msg.unit_cost.CopyFrom(self.unit_cost.pb())
        return msg


class ProductPatch(Patch):
    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={"examples": [{"name": "Tee, jet black", "price": TEE["price"]}]},
    )

    sku: Sku | None = None
    name: str | None = Field(None, min_length=1, max_length=200)
    price: MoneyIn | None = None
    description: str | None = Field(None, max_length=5000)
    category: str | None = Field(None, max_length=100)
    tax_category: str | None = Field(None, pattern=TAX_CATEGORY_OR_EMPTY, max_length=32)
    external_id: str | None = Field(None, max_length=255)
    barcodes: list[Barcode] | None = Field(None, max_length=20, description="Replaces the list")
    variants: list[VariantIn] | None = Field(
        None, max_length=100, description="Replaces the list; a variant keeps its id by SKU"
    )
    open_price: StrictBool | None = None
    unit_cost: MoneyIn | None = Field(None, description="null: no longer known")

    CLEARABLE = frozenset({"unit_cost"})


class UpsertItem(ProductIn):
    external_id: str = Field(min_length=1, max_length=255, description="The upsert key")


class BatchUpsertIn(Body):
    model_config = ConfigDict(extra="forbid", json_schema_extra={"examples": [{"products": [TEE]}]})

    products: list[UpsertItem] = Field(min_length=1, max_length=MAX_BATCH)


def _bad(field: str, reason: str) -> Problem:
    return Problem(
        400, "invalid_request", f"{field} {reason}", [{"field": field, "reason": reason}]
    )


def _product(response: Response, product: inventory_pb2.Product) -> Product:
    response.headers["ETag"] = f'"{product.version}"'
    return to_model(Product, product)


@router.post(
    "/products", **op("catalog:write", "Create a product", CREATE, example=ex.PRODUCT, status=201)
)
async def create_product(body: ProductIn, svc: Svc, response: Response) -> Product:
    """A product with its own SKU and optional variants, each sold under its own SKU. SKUs and
    barcodes are unique per merchant across products and variants (409 `sku_taken`,
    `barcode_taken`, `external_id_taken`). Rules across fields (each a 400 naming the field):
    an all-digit barcode is a GTIN-8, -12, -13 or -14 with a valid check digit; the product's
    and its variants' SKUs all differ, and so do all their barcodes; a variant's price is in
    the product's currency, and so is any `unit_cost`.
    """
    fields = body.pb()
    request = inventory_pb2.CreateProductRequest(
        request_id=request_id(),
        sku=fields.sku,
        name=fields.name,
        price=fields.price,
        description=fields.description,
        category=fields.category,
        tax_category=fields.tax_category,
        external_id=fields.external_id,
        barcodes=fields.barcodes,
        variants=fields.variants,
        open_price=fields.open_price,
    )
    if fields.HasField("unit_cost"):
        request.unit_cost.CopyFrom(fields.unit_cost)
    answer = await svc.inventory.CreateProduct(request)
    return _product(response, answer.product)


def _status(status: str | None) -> inventory_pb2.ProductStatus.ValueType:
    if status is None:
        return inventory_pb2.PRODUCT_STATUS_UNSPECIFIED
    return inventory_pb2.ProductStatus.Value(f"PRODUCT_STATUS_{status.upper()}")


@router.get(
    "/products", **op("catalog:read", "List or search products", example=ex.page(ex.PRODUCT))
)
async def list_products(
    svc: Svc,
    limit: Limit = 50,
    cursor: Cursor = None,
    updated_since: UpdatedSince = None,
    query: Annotated[
        str | None,
        Query(max_length=200, description="Words of name, description or SKU; each a prefix"),
    ] = None,
    sku: Annotated[
        str | None, Query(max_length=64, description="Exact SKU of a product or a variant")
    ] = None,
    barcode: Annotated[
        str | None, Query(max_length=48, description="Exact barcode; a UPC-A finds its EAN-13")
    ] = None,
    status: Annotated[
        Literal["active", "archived"] | None,
        Query(description="Only this status (not with `updated_since`)"),
    ] = None,
) -> ProductList:
    """Without a search parameter: every product by id (of one `status`, if given), or with
    `updated_since` the change feed (oldest change first; every status: a feed of one would
    never tell you a product left it, so `status` with `updated_since` is a 400). With `query`,
    `sku` or `barcode` (combinable, not with `updated_since`): the matching products by id; a
    blank `sku` or `barcode` is a 400 naming it."""
    if query is None and sku is None and barcode is None:
        if status is not None and updated_since is not None:
            raise _bad("status", "cannot be combined with updated_since")
        request = inventory_pb2.ListProductsRequest(
            page_size=limit, page_token=cursor or "", status=_status(status)
        )
        if updated_since is not None:
            request.updated_since.CopyFrom(timestamp(updated_since))
        answer = await svc.inventory.ListProducts(request)
        return to_page(ProductList, answer.products, answer.next_page_token)
    if updated_since is not None:
        raise _bad("updated_since", "cannot be combined with query, sku or barcode")
    for name, exact in (("sku", sku), ("barcode", barcode)):
        # An exact SKU or barcode of nothing matches nothing: a blank one is a mistake, named.
        if exact is not None and not exact.strip():
            raise _bad(name, "must not be blank")
    search = inventory_pb2.SearchProductsRequest(
        query=query or "",
        sku=sku or "",
        barcode=barcode or "",
        page_size=limit,
        page_token=cursor or "",
        status=_status(status),
    )
    found = await svc.inventory.SearchProducts(search)
    return to_page(ProductList, found.products, found.next_page_token)


@router.get(
    "/products/{product_id}", **op("catalog:read", "Get a product", (404,), example=ex.PRODUCT)
)
async def get_product(product_id: PathId, svc: Svc, response: Response) -> Product:
    """Archived products are still returned (`status: archived`). The ETag is the version."""
    answer = await svc.inventory.GetProduct(inventory_pb2.GetProductRequest(id=product_id))
    return _product(response, answer.product)


@router.patch(
    "/products/{product_id}",
    **op("catalog:write", "Update a product", (404, 409, 412), example=ex.PRODUCT),
)
async def update_product(
    product_id: PathId, body: ProductPatch, svc: Svc, response: Response, if_match: IfMatch = None
) -> Product:
    """Only the fields sent change; `barcodes` and `variants` are replaced whole; a field sent
    as null is a 400 naming it. Send
    `If-Match: "<version>"` to update only the version you saw: a stale one is a 412 with
    `current_version`. A change bumps `version` and `updated_at`; sending what is already
    there changes nothing. The product as changed keeps the rules of creating one (barcodes'
    check digits, SKUs and barcodes that differ, variants priced in the product's currency).
    A SKU the change would take away (renamed, a variant dropped) while it has units on hand
    or held is a 409 `sku_has_stock` naming `skus`: stock is kept by SKU, so bring it to zero
    first (the batch upsert refuses such an item the same way)."""
    sent = patched(body)
    fields = inventory_pb2.ProductInput(
        sku=body.sku or "", name=body.name or "", description=body.description or "",
        category=body.category or "", tax_category=body.tax_category or "",
        external_id=body.external_id or "", barcodes=body.barcodes or [],
        variants=[v.pb() for v in body.variants or []], open_price=bool(body.open_price),
    )  # fmt: skip
    if body.price is not None:
        fields.price.CopyFrom(body.price.pb())
    if body.unit_cost is not None:
        fields.unit_cost.CopyFrom(body.unit_cost.pb())
    request = inventory_pb2.UpdateProductRequest(
        request_id=request_id(),
        id=product_id,
        expected_version=expected_version(if_match),
        product=fields,
        update_mask=FieldMask(paths=sorted(sent)),
    )
    answer = await version_checked(svc.inventory.UpdateProduct(request))
    return _product(response, answer.product)


@router.post(
    "/products/{product_id}/archive",
    **op("catalog:write", "Archive a product", (404, 412, *CREATE), example=ex.PRODUCT),
)
async def archive_product(
    product_id: PathId, svc: Svc, response: Response, if_match: IfMatch = None
) -> Product:
    """The product stays readable and searchable but can no longer be sold: checkouts of its
    SKUs answer 409 `product_archived`. Archiving an archived product changes nothing."""
    request = inventory_pb2.ArchiveProductRequest(
        request_id=request_id(), id=product_id, expected_version=expected_version(if_match)
    )
    answer = await version_checked(svc.inventory.ArchiveProduct(request))
    return _product(response, answer.product)


@router.delete(
    "/products/{product_id}",
    **op("catalog:write", "Delete (archive) a product", (404, 412, *CREATE), example=ex.PRODUCT),
)
async def delete_product(
    product_id: PathId, svc: Svc, response: Response, if_match: IfMatch = None
) -> Product:
    """A product is never erased: its sales, returns and stock history name it. Deleting it
    archives it, exactly as `POST /v1/products/{id}/archive` does (no longer sold: checkouts of
    its SKUs answer 409 `product_archived`; still readable, listed with `status=archived`), and
    answers it archived; `POST /v1/products/{id}/unarchive` puts it back on sale. Deleting an
    archived product changes nothing. `If-Match` as for a change."""
    return await archive_product(product_id, svc, response, if_match)


@router.post(
    "/products/{product_id}/unarchive",
    **op("catalog:write", "Put an archived product back on sale", (404, 412, *CREATE),
         example=ex.PRODUCT),
)  # fmt: skip
async def unarchive_product(
    product_id: PathId, svc: Svc, response: Response, if_match: IfMatch = None
) -> Product:
    """Its status is `active` again and its SKUs sell as before (they stayed its own while it
    was archived), announced as `product.updated`. A product that is not archived is answered
    as it is, nothing changed. Send `If-Match: "<version>"` to change only the version you saw:
    a stale one is a 412."""
    request = inventory_pb2.UnarchiveProductRequest(
        request_id=request_id(), id=product_id, expected_version=expected_version(if_match)
    )
    answer = await version_checked(svc.inventory.UnarchiveProduct(request))
    return _product(response, answer.product)


@router.post(
    "/products/batch-upsert",
    **op("catalog:write", "Create or replace up to 1000 products", CREATE, example=ex.UPSERTED),
)
async def batch_upsert(body: BatchUpsertIn, svc: Svc) -> BatchUpsertResult:
    """Each item is keyed by its `external_id` and replaces the whole product it names (status
    is kept). Items are independent: the answer is a 200 with one result per item, in order,
    each `created`, `updated`, `unchanged` or `failed` with its own `error` (`code`, `detail`,
    `errors[]` with fields relative to the item): an item keeps the rules of creating a
    product, and an `external_id`, SKU or barcode is in one item only (`duplicate_in_batch`).
    A body that does not match the schema (more than 1000 items, a wrong type) is a 400 for the
    whole batch and writes nothing. The same `Idempotency-Key` replays the first answer without
    applying anything again."""
    answer = await svc.inventory.UpsertProducts(
        inventory_pb2.UpsertProductsRequest(
            request_id=request_id(), products=[item.pb() for item in body.products]
        )
    )
    results = [_result(r) for r in answer.results]
    summary = {s: 0 for s in ("created", "updated", "unchanged", "failed")}
    for r in results:
        summary[r["status"]] += 1
    return BatchUpsertResult.model_validate({"data": results, "summary": summary})


def _result(r: inventory_pb2.UpsertProductResult) -> dict[str, Any]:
    status = inventory_pb2.UpsertOutcome.Name(r.outcome).removeprefix("UPSERT_OUTCOME_").lower()
    out: dict[str, Any] = {
        "index": r.index,
        "external_id": r.external_id,
        "status": status,
        "product": to_json(r.product) if r.HasField("product") else None,
        "error": None,
    }
    if r.HasField("error"):
        out["error"] = {
            "code": public_code(r.error.code),
            "detail": r.error.message,
            "errors": [{"field": f.field, "reason": f.description} for f in r.error.field_errors],
        }
    return out
