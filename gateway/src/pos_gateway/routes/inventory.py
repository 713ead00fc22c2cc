"""Locations and stock: /v1/locations, /v1/inventory."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from fastapi import APIRouter, Depends, Query
from pydantic import Field

from pos.inventory.v1 import inventory_pb2
from pos_gateway.clients import Services
from pos_gateway.convert import to_json
from pos_gateway.routes.common import (
    Body,
    Cursor,
    Limit,
    op,
    page,
    request_id,
    services,
)

router = APIRouter(prefix="/v1", tags=["locations and inventory"])
Svc = Annotated[Services, Depends(services)]


class LocationIn(Body):
    name: str = Field(min_length=1, max_length=200)
    currency: str = Field(pattern=r"^[A-Z]{3}$", examples=["USD"])
    tax_rate_bps: int = Field(0, ge=0, le=10_000, description="825 = 8.25 %")


REASONS = {
    "received": inventory_pb2.ADJUSTMENT_REASON_RECEIVED,
    "sold": inventory_pb2.ADJUSTMENT_REASON_SOLD,
    "returned": inventory_pb2.ADJUSTMENT_REASON_RETURNED,
    "damaged": inventory_pb2.ADJUSTMENT_REASON_DAMAGED,
    "correction": inventory_pb2.ADJUSTMENT_REASON_CORRECTION,
}


class AdjustmentIn(Body):
    sku: str = Field(min_length=1, max_length=64)
    location_id: str = Field(min_length=1, max_length=64)
    delta: int = Field(description="Signed change of on-hand units; never zero")
    reason: Literal["received", "sold", "returned", "damaged", "correction"]


@router.post("/locations", status_code=201, **op("inventory:write", "Create a location"))
async def create_location(body: LocationIn, svc: Svc) -> dict[str, Any]:
    answer = await svc.inventory.CreateLocation(
        inventory_pb2.CreateLocationRequest(request_id=request_id(), **body.model_dump())
    )
    return to_json(answer.location)


@router.get("/locations", **op("inventory:read", "List locations"))
async def list_locations(svc: Svc, limit: Limit = 50, cursor: Cursor = None) -> dict[str, Any]:
    answer = await svc.inventory.ListLocations(
        inventory_pb2.ListLocationsRequest(page_size=limit, page_token=cursor or "")
    )
    return page([to_json(x) for x in answer.locations], answer.next_page_token)


@router.get("/inventory", **op("inventory:read", "Stock levels of SKUs"))
async def stock_levels(
    svc: Svc,
    sku: Annotated[list[str], Query(min_length=1, max_length=200)],
    location_id: Annotated[str | None, Query(max_length=64)] = None,
) -> dict[str, Any]:
    answer = await svc.inventory.GetStockLevels(
        inventory_pb2.GetStockLevelsRequest(skus=sku, location_id=location_id or "")
    )
    return page([to_json(x) for x in answer.levels], "")


@router.post(
    "/inventory/adjustments", status_code=201, **op("inventory:write", "Adjust stock with a reason")
)
async def adjust_stock(body: AdjustmentIn, svc: Svc) -> dict[str, Any]:
    answer = await svc.inventory.AdjustStock(
        inventory_pb2.AdjustStockRequest(
            request_id=request_id(),
            sku=body.sku,
            location_id=body.location_id,
            delta=body.delta,
            reason=REASONS[body.reason],
        )
    )
    return to_json(answer.level)
