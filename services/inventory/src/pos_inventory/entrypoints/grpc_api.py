"""pos.inventory.v1.InventoryService: translates protobuf <-> handlers, nothing more."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC

import grpc

from pos.inventory.v1 import inventory_pb2, inventory_pb2_grpc
from pos_inventory.adapters.messages import (
    REASONS,
    level_to_proto,
    location_to_proto,
    product_to_proto,
)
from pos_inventory.adapters.repository import InventoryUow
from pos_inventory.domain.model import Adjustment
from pos_inventory.service import handlers
from pos_kit.context import current_merchant
from pos_kit.errors import FieldViolation, InvalidArgument
from pos_kit.idempotency import once
from pos_kit.paging import decode_change, decode_token, encode_change, encode_token, page_size
from pos_kit.proto_money import from_proto

I = inventory_pb2  # noqa: E741 - the module is named on every line below


class InventoryApi(inventory_pb2_grpc.InventoryServiceServicer):
    def __init__(self, uow: Callable[[], InventoryUow]) -> None:
        self._uow = uow

    def _scoped(self) -> InventoryUow:
        return self._uow().bind(current_merchant())

    async def CreateLocation(
        self, request: I.CreateLocationRequest, context: grpc.aio.ServicerContext
    ) -> I.CreateLocationResponse:
        async with self._scoped() as uow:

            async def work() -> I.CreateLocationResponse:
                location = await handlers.create_location(
                    uow, request.name, request.currency, request.tax_rate_bps
                )
                return I.CreateLocationResponse(location=location_to_proto(location))

            return await once(uow, "CreateLocation", request, I.CreateLocationResponse, work)

    async def ListLocations(
        self, request: I.ListLocationsRequest, context: grpc.aio.ServicerContext
    ) -> I.ListLocationsResponse:
        limit = page_size(request.page_size)
        async with self._scoped() as uow:
            found = await uow.locations.list(limit + 1, decode_token(request.page_token))
        page = found[:limit]
        return I.ListLocationsResponse(
            locations=[location_to_proto(x) for x in page],
            next_page_token=encode_token(page[-1].id) if len(found) > limit else "",
        )

    async def CreateProduct(
        self, request: I.CreateProductRequest, context: grpc.aio.ServicerContext
    ) -> I.CreateProductResponse:
        price = from_proto("price", request.price)
        async with self._scoped() as uow:

            async def work() -> I.CreateProductResponse:
                product = await handlers.create_product(uow, request.sku, request.name, price)
                return I.CreateProductResponse(product=product_to_proto(product))

            return await once(uow, "CreateProduct", request, I.CreateProductResponse, work)

    async def GetProduct(
        self, request: I.GetProductRequest, context: grpc.aio.ServicerContext
    ) -> I.GetProductResponse:
        async with self._scoped() as uow:
            product = await handlers.get_product(uow, request.id)
        return I.GetProductResponse(product=product_to_proto(product))

    async def ListProducts(
        self, request: I.ListProductsRequest, context: grpc.aio.ServicerContext
    ) -> I.ListProductsResponse:
        limit = page_size(request.page_size)
        changes = request.HasField("updated_since")
        async with self._scoped() as uow:
            if changes:
                since = request.updated_since.ToDatetime(tzinfo=UTC)
                found = await handlers.list_changed_products(
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
            found, location = await handlers.price_snapshot(
                uow, list(request.skus), request.location_id
            )
        response = I.GetPricesResponse(products=[product_to_proto(p) for p in found])
        if location is not None:
            response.location.CopyFrom(location_to_proto(location))
        return response

    async def AdjustStock(
        self, request: I.AdjustStockRequest, context: grpc.aio.ServicerContext
    ) -> I.AdjustStockResponse:
        reason = REASONS.get(request.reason)
        if reason is None:
            raise InvalidArgument(
                "reason is required", [FieldViolation("reason", "must be a known reason")]
            )
        # A client's SOLD adjustment is a manual decrease: only sales from orders may go negative.
        adjustment = Adjustment(request.sku, request.location_id, request.delta, reason)
        async with self._scoped() as uow:

            async def work() -> I.AdjustStockResponse:
                level = await handlers.adjust_stock(uow, adjustment)
                return I.AdjustStockResponse(level=level_to_proto(level))

            return await once(uow, "AdjustStock", request, I.AdjustStockResponse, work)

    async def GetStockLevels(
        self, request: I.GetStockLevelsRequest, context: grpc.aio.ServicerContext
    ) -> I.GetStockLevelsResponse:
        async with self._scoped() as uow:
            levels = await handlers.stock_levels(
                uow, list(request.skus), request.location_id or None
            )
        return I.GetStockLevelsResponse(levels=[level_to_proto(x) for x in levels])


SERVICE_NAME = inventory_pb2.DESCRIPTOR.services_by_name["InventoryService"].full_name
