"""Locations, products and stock: /v1/locations, /v1/products, /v1/inventory."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from fastapi import APIRouter, Depends, Query
from pydantic import Field

from pos.inventory.v1 import inventory_pb2
from pos_gateway import examples as ex
from pos_gateway.clients import Services
from pos_gateway.convert import to_json
from pos_gateway.routes.common import (
    CREATE,
    Body,
    Currency,
    Cursor,
    Limit,
    MoneyIn,
    Sku,
    UpdatedSince,
    example,
    op,
    page,
    request_id,
    services,
    timestamp,
)

router = APIRouter(prefix="/v1", tags=["catalog and inventory"])
Svc = Annotated[Services, Depends(services)]


class LocationIn(Body):
    model_config = example({"name": "Harbor Store", "currency": "USD", "tax_rate_bps": 700})

    name: str = Field(min_length=1, max_length=200)
    currency: Currency
    tax_rate_bps: int = Field(0, ge=0, le=10_000, description="825 = 8.25 %")


class ProductIn(Body):
    model_config = example(
        {
            "sku": "TEE-BLK-M",
            "name": "Black T-shirt (M)",
            "price": {"amount": 2500, "currency": "USD"},
        }
    )

    sku: Sku
    name: str = Field(min_length=1, max_length=200)
    price: MoneyIn


REASONS = {
    "received": inventory_pb2.ADJUSTMENT_REASON_RECEIVED,
    "sold": inventory_pb2.ADJUSTMENT_REASON_SOLD,
    "returned": inventory_pb2.ADJUSTMENT_REASON_RETURNED,
    "damaged": inventory_pb2.ADJUSTMENT_REASON_DAMAGED,
    "correction": inventory_pb2.ADJUSTMENT_REASON_CORRECTION,
}


class AdjustmentIn(Body):
    model_config = example(
        {"sku": "TEE-BLK-M", "location_id": ex.LOCATION_ID, "delta": 24, "reason": "received"}
    )

    sku: Sku
    location_id: str = Field(min_length=1, max_length=64)
    delta: int = Field(
        ge=-1_000_000_000,
        le=1_000_000_000,
        description="Signed change of on-hand units; never zero",
        json_schema_extra={"not": {"const": 0}},
    )
    reason: Literal["received", "sold", "returned", "damaged", "correction"]


@router.post(
    "/locations",
    **op("inventory:write", "Create a location", CREATE, example=ex.LOCATION, status=201),
)
async def create_location(body: LocationIn, svc: Svc) -> dict[str, Any]:
    answer = await svc.inventory.CreateLocation(
        inventory_pb2.CreateLocationRequest(request_id=request_id(), **body.model_dump())
    )
    return to_json(answer.location)


@router.get("/locations", **op("inventory:read", "List locations", example=ex.page(ex.LOCATION)))
async def list_locations(svc: Svc, limit: Limit = 50, cursor: Cursor = None) -> dict[str, Any]:
    answer = await svc.inventory.ListLocations(
        inventory_pb2.ListLocationsRequest(page_size=limit, page_token=cursor or "")
    )
    return page([to_json(x) for x in answer.locations], answer.next_page_token)


@router.post(
    "/products", **op("catalog:write", "Create a product", CREATE, example=ex.PRODUCT, status=201)
)
async def create_product(body: ProductIn, svc: Svc) -> dict[str, Any]:
    answer = await svc.inventory.CreateProduct(
        inventory_pb2.CreateProductRequest(
            request_id=request_id(), sku=body.sku, name=body.name, price=body.price.pb()
        )
    )
    return to_json(answer.product)


@router.get("/products", **op("catalog:read", "List products", example=ex.page(ex.PRODUCT)))
async def list_products(
    svc: Svc, limit: Limit = 50, cursor: Cursor = None, updated_since: UpdatedSince = None
) -> dict[str, Any]:
    request = inventory_pb2.ListProductsRequest(page_size=limit, page_token=cursor or "")
    if updated_since is not None:
        request.updated_since.CopyFrom(timestamp(updated_since))
    answer = await svc.inventory.ListProducts(request)
    return page([to_json(x) for x in answer.products], answer.next_page_token)


@router.get(
    "/products/{product_id}", **op("catalog:read", "Get a product", (404,), example=ex.PRODUCT)
)
async def get_product(product_id: str, svc: Svc) -> dict[str, Any]:
    answer = await svc.inventory.GetProduct(inventory_pb2.GetProductRequest(id=product_id))
    return to_json(answer.product)


@router.get(
    "/inventory",
    **op(
        "inventory:read",
        "Stock levels of SKUs",
        (404,),
        example={"data": [ex.STOCK_LEVEL], "next_cursor": None},
    ),
)
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
    "/inventory/adjustments",
    **op(
        "inventory:write",
        "Adjust stock with a reason",
        (404, *CREATE),
        example=ex.STOCK_LEVEL,
        status=201,
    ),
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
