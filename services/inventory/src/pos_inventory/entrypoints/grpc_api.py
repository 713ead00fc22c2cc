"""pos.inventory.v1.InventoryService: translates protobuf <-> handlers, nothing more.

Locations and single stock changes are here; the catalog's RPCs are in catalog_api.py, and
pos.inventory.v1.StockService in stock_api.py.
"""

from __future__ import annotations

from collections.abc import Callable

import grpc

from pos.inventory.v1 import inventory_pb2, inventory_pb2_grpc
from pos_inventory.adapters.messages import (
    LOCATION_STATUSES,
    REASONS,
    entry_to_proto,
    level_to_proto,
    location_changes,
    location_from_proto,
    location_to_proto,
    when,
)
from pos_inventory.adapters.repository import InventoryUow
from pos_inventory.domain.model import Adjustment
from pos_inventory.entrypoints.catalog_api import CatalogRpcs
from pos_inventory.service import handlers
from pos_kit.paging import page_of, page_request
from pos_kit.servicer import mutation, query

I = inventory_pb2  # noqa: E741 - the module is named on every line below


class InventoryApi(CatalogRpcs, inventory_pb2_grpc.InventoryServiceServicer):
    @mutation(I.CreateLocationResponse)
    async def CreateLocation(
        self, request: I.CreateLocationRequest, uow: InventoryUow
    ) -> I.CreateLocationResponse:
        location = await handlers.create_location(uow, location_from_proto(request))
        return I.CreateLocationResponse(location=location_to_proto(location))

    @mutation(I.UpdateLocationResponse)
    async def UpdateLocation(
        self, request: I.UpdateLocationRequest, uow: InventoryUow
    ) -> I.UpdateLocationResponse:
        location = await handlers.update_location(
            uow, request.id, location_changes(request), request.expected_version
        )
        return I.UpdateLocationResponse(location=location_to_proto(location))

    @query
    async def ListLocations(
        self, request: I.ListLocationsRequest, uow: InventoryUow
    ) -> I.ListLocationsResponse:
        page = page_request(request)  # its tokens are bound to the status filter too
        status = LOCATION_STATUSES.optional(request.status, "status")
        found, token = page_of(await handlers.list_locations(uow, page, status), page)
        return I.ListLocationsResponse(
            locations=[location_to_proto(x) for x in found], next_page_token=token
        )

    @mutation(I.AdjustStockResponse)
    async def AdjustStock(
        self, request: I.AdjustStockRequest, uow: InventoryUow
    ) -> I.AdjustStockResponse:
        # A client's SOLD adjustment is a manual decrease: only sales from orders may go negative.
        adjustment = Adjustment(
            request.sku,
            request.location_id,
            request.delta,
            REASONS.from_proto(request.reason, "reason"),
            request.reference,
            occurred_at=when(request.occurred_at, request.HasField("occurred_at")),
            note=request.note,
        )
        level, entry = await handlers.adjust_stock(uow, adjustment)
        return I.AdjustStockResponse(level=level_to_proto(level), entry=entry_to_proto(entry))

    @query
    async def GetStockLevels(
        self, request: I.GetStockLevelsRequest, uow: InventoryUow
    ) -> I.GetStockLevelsResponse:
        if not request.skus:
            at, token = await handlers.stock_at(uow, request.location_id, page_request(request))
            return I.GetStockLevelsResponse(
                levels=[level_to_proto(x) for x in at], next_page_token=token
            )
        levels = await handlers.stock_levels(uow, list(request.skus), request.location_id or None)
        return I.GetStockLevelsResponse(levels=[level_to_proto(x) for x in levels])


def registrar(uow: Callable[[], InventoryUow]) -> Callable[[grpc.aio.Server], None]:
    def register(server: grpc.aio.Server) -> None:
        inventory_pb2_grpc.add_InventoryServiceServicer_to_server(InventoryApi(uow), server)

    return register


SERVICE_NAME = inventory_pb2.DESCRIPTOR.services_by_name["InventoryService"].full_name
