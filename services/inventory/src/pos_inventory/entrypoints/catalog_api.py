"""The catalog's RPCs of pos.inventory.v1.InventoryService (products and prices)."""

from __future__ import annotations

from datetime import UTC

import grpc

from pos.inventory.v1 import inventory_pb2
from pos_inventory.adapters.messages import location_to_proto, product_to_proto
from pos_inventory.adapters.product_messages import STATUS_OF, create_input, fields_from_proto
from pos_inventory.adapters.repository import InventoryUow
from pos_inventory.domain.catalog import ProductFields
from pos_inventory.domain.search import ProductQuery
from pos_inventory.service import catalog, upsert
from pos_kit.errors import DomainError
from pos_kit.idempotency import once
from pos_kit.paging import decode_change, decode_token, encode_change, encode_token, page_size

I = inventory_pb2  # noqa: E741 - the module is named on every line below


class CatalogRpcs:
    """Mixed into InventoryApi, which provides _scoped()."""

    def _scoped(self) -> InventoryUow:
        raise NotImplementedError

    async def CreateProduct(
        self, request: I.CreateProductRequest, context: grpc.aio.ServicerContext
    ) -> I.CreateProductResponse:
        fields = fields_from_proto(create_input(request))
        async with self._scoped() as uow:

            async def work() -> I.CreateProductResponse:
                product = await catalog.add_product(uow, fields)
                return I.CreateProductResponse(product=product_to_proto(product))

            return await once(uow, "CreateProduct", request, I.CreateProductResponse, work)

    async def GetProduct(
        self, request: I.GetProductRequest, context: grpc.aio.ServicerContext
    ) -> I.GetProductResponse:
        async with self._scoped() as uow:
            product = await catalog.get_product(uow, request.id)
        return I.GetProductResponse(product=product_to_proto(product))

    async def ListProducts(
        self, request: I.ListProductsRequest, context: grpc.aio.ServicerContext
    ) -> I.ListProductsResponse:
        limit = page_size(request.page_size)
        changes = request.HasField("updated_since")
        async with self._scoped() as uow:
            if changes:
                since = request.updated_since.ToDatetime(tzinfo=UTC)
                found = await catalog.list_changed_products(
                    uow, limit + 1, since, decode_change(request.page_token)
                )
            else:
                found = await uow.products.list(limit + 1, decode_token(request.page_token))
        page = found[:limit]
        token = ""
        if len(found) > limit:
            last = page[-1]
            token = (
                encode_change(last.updated_at, last.id)
                if changes and last.updated_at is not None
                else encode_token(last.id)
            )
        return I.ListProductsResponse(
            products=[product_to_proto(p) for p in page], next_page_token=token
        )

    async def GetPrices(
        self, request: I.GetPricesRequest, context: grpc.aio.ServicerContext
    ) -> I.GetPricesResponse:
        async with self._scoped() as uow:
            found, location = await catalog.price_snapshot(
                uow, list(request.skus), request.location_id
            )
        response = I.GetPricesResponse(products=[product_to_proto(p) for p in found])
        if location is not None:
            response.location.CopyFrom(location_to_proto(location))
        return response

    # --- Catalog: versions, archive, batch upsert, search ------------------------------------

    async def UpdateProduct(
        self, request: I.UpdateProductRequest, context: grpc.aio.ServicerContext
    ) -> I.UpdateProductResponse:
        mask = set(request.update_mask.paths)
        fields = fields_from_proto(request.product, mask)
        async with self._scoped() as uow:

            async def work() -> I.UpdateProductResponse:
                product = await catalog.update_product(
                    uow, request.id, fields, mask, request.expected_version
                )
                return I.UpdateProductResponse(product=product_to_proto(product))

            return await once(uow, "UpdateProduct", request, I.UpdateProductResponse, work)

    async def ArchiveProduct(
        self, request: I.ArchiveProductRequest, context: grpc.aio.ServicerContext
    ) -> I.ArchiveProductResponse:
        async with self._scoped() as uow:

            async def work() -> I.ArchiveProductResponse:
                product = await catalog.archive_product(uow, request.id, request.expected_version)
                return I.ArchiveProductResponse(product=product_to_proto(product))

            return await once(uow, "ArchiveProduct", request, I.ArchiveProductResponse, work)

    async def UpsertProducts(
        self, request: I.UpsertProductsRequest, context: grpc.aio.ServicerContext
    ) -> I.UpsertProductsResponse:
        upsert.check_batch(len(request.products))  # before converting a million fields
        items: list[ProductFields | DomainError] = []
        for msg in request.products:
            try:
                items.append(fields_from_proto(msg))
            except DomainError as exc:
                items.append(exc)
        async with self._scoped() as uow:

            async def work() -> I.UpsertProductsResponse:
                results = await upsert.upsert_products(uow, items)
                return I.UpsertProductsResponse(results=[_result(r) for r in results])

            return await once(uow, "UpsertProducts", request, I.UpsertProductsResponse, work)

    async def SearchProducts(
        self, request: I.SearchProductsRequest, context: grpc.aio.ServicerContext
    ) -> I.SearchProductsResponse:
        limit = page_size(request.page_size)
        query = ProductQuery(
            request.query, request.sku, request.barcode, STATUS_OF.get(request.status)
        )
        async with self._scoped() as uow:
            found = await catalog.search_products(
                uow, query, limit + 1, decode_token(request.page_token)
            )
        page = found[:limit]
        return I.SearchProductsResponse(
            products=[product_to_proto(p) for p in page],
            next_page_token=encode_token(page[-1].id) if len(found) > limit else "",
        )


OUTCOMES = {
    upsert.Outcome.CREATED: I.UPSERT_OUTCOME_CREATED,
    upsert.Outcome.UPDATED: I.UPSERT_OUTCOME_UPDATED,
    upsert.Outcome.UNCHANGED: I.UPSERT_OUTCOME_UNCHANGED,
    upsert.Outcome.FAILED: I.UPSERT_OUTCOME_FAILED,
}


def _result(r: upsert.ItemResult) -> I.UpsertProductResult:
    msg = I.UpsertProductResult(
        index=r.index, external_id=r.external_id, outcome=OUTCOMES[r.outcome]
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
