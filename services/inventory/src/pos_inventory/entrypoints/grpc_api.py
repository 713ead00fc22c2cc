"""pos.inventory.v1.InventoryService: translates protobuf <-> handlers, nothing more."""

from __future__ import annotations

from collections.abc import Callable

import grpc

from pos.inventory.v1 import inventory_pb2, inventory_pb2_grpc
from pos_inventory.adapters.messages import (
    REASONS,
    entry_to_proto,
    level_to_proto,
    location_from_proto,
    location_to_proto,
    when,
)
from pos_inventory.adapters.repository import InventoryUow
from pos_inventory.domain.model import Adjustment
from pos_inventory.entrypoints.catalog_api import CatalogRpcs
from pos_inventory.service import handlers
from pos_kit.context import current_merchant
from pos_kit.errors import FieldViolation, InvalidArgument
from pos_kit.idempotency import once
from pos_kit.paging import decode_token, encode_token, page_size

I = inventory_pb2  # noqa: E741 - the module is named on every line below


class InventoryApi(CatalogRpcs, inventory_pb2_grpc.InventoryServiceServicer):
    def __init__(self, uow: Callable[[], InventoryUow]) -> None:
        self._uow = uow

    def _scoped(self) -> InventoryUow:
        return self._uow().bind(current_merchant())

    async def CreateLocation(
        self, request: I.CreateLocationRequest, context: grpc.aio.ServicerContext
    ) -> I.CreateLocationResponse:
        async with self._scoped() as uow:

            async def work() -> I.CreateLocationResponse:
                location = await handlers.create_location(uow, location_from_proto(request))
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

    async def AdjustStock(
        self, request: I.AdjustStockRequest, context: grpc.aio.ServicerContext
    ) -> I.AdjustStockResponse:
        reason = REASONS.get(request.reason)
        if reason is None:
            raise InvalidArgument(
                "reason is required", [FieldViolation("reason", "must be a known reason")]
            )
        # A client's SOLD adjustment is a manual decrease: only sales from orders may go negative.
        adjustment = Adjustment(
            request.sku,
            request.location_id,
            request.delta,
            reason,
            occurred_at=when(request.occurred_at, request.HasField("occurred_at")),
            note=request.note,
        )
        async with self._scoped() as uow:

            async def work() -> I.AdjustStockResponse:
                level, entry = await handlers.adjust_stock(uow, adjustment)
                return I.AdjustStockResponse(
                    level=level_to_proto(level), entry=entry_to_proto(entry)
                )

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
