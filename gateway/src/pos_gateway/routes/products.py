"""The catalog: /v1/products."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Depends
from pydantic import Field

from pos.inventory.v1 import inventory_pb2
from pos_gateway.clients import Services
from pos_gateway.convert import to_json
from pos_gateway.routes.common import (
    Body,
    Cursor,
    Limit,
    MoneyIn,
    UpdatedSince,
    op,
    page,
    request_id,
    services,
    timestamp,
)

router = APIRouter(prefix="/v1", tags=["catalog"])
Svc = Annotated[Services, Depends(services)]


class ProductIn(Body):
    sku: str = Field(min_length=1, max_length=64)
    name: str = Field(min_length=1, max_length=200)
    price: MoneyIn


@router.post("/products", status_code=201, **op("catalog:write", "Create a product"))
async def create_product(body: ProductIn, svc: Svc) -> dict[str, Any]:
    answer = await svc.inventory.CreateProduct(
        inventory_pb2.CreateProductRequest(
            request_id=request_id(), sku=body.sku, name=body.name, price=body.price.pb()
        )
    )
    return to_json(answer.product)


@router.get("/products", **op("catalog:read", "List products"))
async def list_products(
    svc: Svc, limit: Limit = 50, cursor: Cursor = None, updated_since: UpdatedSince = None
) -> dict[str, Any]:
    request = inventory_pb2.ListProductsRequest(page_size=limit, page_token=cursor or "")
    if updated_since is not None:
        request.updated_since.CopyFrom(timestamp(updated_since))
    answer = await svc.inventory.ListProducts(request)
    return page([to_json(x) for x in answer.products], answer.next_page_token)


@router.get("/products/{product_id}", **op("catalog:read", "Get a product"))
async def get_product(product_id: str, svc: Svc) -> dict[str, Any]:
    answer = await svc.inventory.GetProduct(inventory_pb2.GetProductRequest(id=product_id))
    return to_json(answer.product)
