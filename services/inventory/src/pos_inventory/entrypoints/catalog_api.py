"""The catalog's RPCs of pos.inventory.v1.InventoryService (products and prices)."""

from __future__ import annotations

from datetime import UTC

import grpc

from pos.inventory.v1 import inventory_pb2
from pos_inventory.adapters.messages import location_to_proto, product_to_proto
from pos_inventory.adapters.repository import InventoryUow
from pos_inventory.service import catalog
from pos_kit.idempotency import once
from pos_kit.paging import decode_change, decode_token, encode_change, encode_token, page_size
from pos_kit.proto_money import from_proto

I = inventory_pb2  # noqa: E741 - the module is named on every line below


class CatalogRpcs:
    """Mixed into InventoryApi, which provides _scoped()."""

    def _scoped(self) -> InventoryUow:
        raise NotImplementedError

    async def CreateProduct(
        self, request: I.CreateProductRequest, context: grpc.aio.ServicerContext
    ) -> I.CreateProductResponse:
        price = from_proto("price", request.price)
        async with self._scoped() as uow:

            async def work() -> I.CreateProductResponse:
                product = await catalog.create_product(uow, request.sku, request.name, price)
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
