"""The catalog's RPCs of pos.inventory.v1.InventoryService (products and prices)."""

from __future__ import annotations

from pos.inventory.v1 import inventory_pb2
from pos_inventory.adapters.messages import location_to_proto, product_to_proto
from pos_inventory.adapters.product_messages import STATUSES, create_input, fields_from_proto
from pos_inventory.adapters.repository import InventoryUow
from pos_inventory.domain.catalog import ProductFields
from pos_inventory.domain.search import ProductQuery
from pos_inventory.service import catalog, upsert
from pos_kit.enums import ProtoEnum
from pos_kit.errors import DomainError
from pos_kit.paging import page_of, page_request
from pos_kit.servicer import Servicer, mutation, query

I = inventory_pb2  # noqa: E741 - the module is named on every line below

OUTCOMES = ProtoEnum(upsert.Outcome, I.UpsertOutcome)


class CatalogRpcs(Servicer[InventoryUow]):
    """Mixed into InventoryApi (grpc_api.py)."""

    @mutation(I.CreateProductResponse)
    async def CreateProduct(
        self, request: I.CreateProductRequest, uow: InventoryUow
    ) -> I.CreateProductResponse:
        product = await catalog.add_product(uow, fields_from_proto(create_input(request)))
        return I.CreateProductResponse(product=product_to_proto(product))

    @query
    async def GetProduct(
        self, request: I.GetProductRequest, uow: InventoryUow
    ) -> I.GetProductResponse:
        product = await catalog.get_product(uow, request.id)
        return I.GetProductResponse(product=product_to_proto(product))

    @query
    async def ListProducts(
        self, request: I.ListProductsRequest, uow: InventoryUow
    ) -> I.ListProductsResponse:
        page = page_request(request)
        status = STATUSES.optional(request.status, "status")
        found, token = page_of(await catalog.list_products(uow, page, status), page)
        return I.ListProductsResponse(
            products=[product_to_proto(p) for p in found], next_page_token=token
        )

    @query
    async def GetPrices(
        self, request: I.GetPricesRequest, uow: InventoryUow
    ) -> I.GetPricesResponse:
        found, location = await catalog.price_snapshot(uow, list(request.skus), request.location_id)
        response = I.GetPricesResponse(products=[product_to_proto(p) for p in found])
        if location is not None:
            response.location.CopyFrom(location_to_proto(location))
        return response

    # --- Catalog: versions, archive, batch upsert, search ------------------------------------

    @mutation(I.UpdateProductResponse)
    async def UpdateProduct(
        self, request: I.UpdateProductRequest, uow: InventoryUow
    ) -> I.UpdateProductResponse:
        mask = set(request.update_mask.paths)
        product = await catalog.update_product(
            uow,
            request.id,
            fields_from_proto(request.product, mask),
            mask,
            request.expected_version,
        )
        return I.UpdateProductResponse(product=product_to_proto(product))

    @mutation(I.ArchiveProductResponse)
    async def ArchiveProduct(
        self, request: I.ArchiveProductRequest, uow: InventoryUow
    ) -> I.ArchiveProductResponse:
        product = await catalog.archive_product(uow, request.id, request.expected_version)
        return I.ArchiveProductResponse(product=product_to_proto(product))

    @mutation(I.UnarchiveProductResponse)
    async def UnarchiveProduct(
        self, request: I.UnarchiveProductRequest, uow: InventoryUow
    ) -> I.UnarchiveProductResponse:
        product = await catalog.unarchive_product(uow, request.id, request.expected_version)
        return I.UnarchiveProductResponse(product=product_to_proto(product))

    @mutation(I.UpsertProductsResponse)
    async def UpsertProducts(
        self, request: I.UpsertProductsRequest, uow: InventoryUow
    ) -> I.UpsertProductsResponse:
        upsert.check_batch(len(request.products))  # before converting a million fields
        items: list[ProductFields | DomainError] = []
        for msg in request.products:
            try:
                items.append(fields_from_proto(msg))
            except DomainError as exc:  # one bad item fails alone, in its result
                items.append(exc)
        results = await upsert.upsert_products(uow, items)
        return I.UpsertProductsResponse(results=[_result(r) for r in results])

    @query
    async def SearchProducts(
        self, request: I.SearchProductsRequest, uow: InventoryUow
    ) -> I.SearchProductsResponse:
        page = page_request(request)
        search = ProductQuery(
            request.query,
            request.sku,
            request.barcode,
            STATUSES.optional(request.status, "status"),
        )
        found, token = page_of(await catalog.search_products(uow, search, page), page)
        return I.SearchProductsResponse(
            products=[product_to_proto(p) for p in found], next_page_token=token
        )


def _result(r: upsert.ItemResult) -> I.UpsertProductResult:
    msg = I.UpsertProductResult(
        index=r.index, external_id=r.external_id, outcome=OUTCOMES.to_proto(r.outcome)
    )
    if r.product is not None:
        msg.product.CopyFrom(product_to_proto(r.product))
    if r.error is not None:
        msg.error.CopyFrom(
            I.ItemError(
                code=r.error.code,
                message=r.error.message,
                field_errors=[
                    I.FieldError(field=v.field, description=v.description)
                    for v in r.error.violations
                ],
            )
        )
    return msg
