"""Promotions: /v1/promotions."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends
from pydantic import Field

from pos.promotion.v1 import promotion_pb2
from pos_gateway import examples as ex
from pos_gateway.clients import Services
from pos_gateway.convert import to_model, to_page
from pos_gateway.routes.common import (
    CREATE,
    INT32,
    Body,
    Cursor,
    Limit,
    MoneyIn,
    PathId,
    example,
    op,
    request_id,
    services,
)
from pos_gateway.schemas.people import Promotion, PromotionList

router = APIRouter(prefix="/v1", tags=["promotions"])
Svc = Annotated[Services, Depends(services)]


class PromotionIn(Body):
    model_config = example(
        {
            "name": "10% off orders over $50",
            "percent_off_bps": 1000,
            "minimum_subtotal": {"amount": 5000, "currency": "USD"},
        }
    )

    name: str = Field(min_length=1, max_length=200)
    percent_off_bps: int = Field(
        ge=1, le=10_000, json_schema_extra=INT32, description="1000 = 10 % off"
    )
    minimum_subtotal: MoneyIn | None = None


@router.post(
    "/promotions",
    **op("promotions:write", "Create a promotion", CREATE, example=ex.PROMOTION, status=201),
)
async def create_promotion(body: PromotionIn, svc: Svc) -> Promotion:
    request = promotion_pb2.CreatePromotionRequest(
        request_id=request_id(), name=body.name, percent_off_bps=body.percent_off_bps
    )
    if body.minimum_subtotal is not None:
        request.minimum_subtotal.CopyFrom(body.minimum_subtotal.pb())
    answer = await svc.promotion.CreatePromotion(request)
    return to_model(Promotion, answer.promotion)


@router.get(
    "/promotions", **op("promotions:read", "List promotions", example=ex.page(ex.PROMOTION))
)
async def list_promotions(svc: Svc, limit: Limit = 50, cursor: Cursor = None) -> PromotionList:
    answer = await svc.promotion.ListPromotions(
        promotion_pb2.ListPromotionsRequest(page_size=limit, page_token=cursor or "")
    )
    return to_page(PromotionList, answer.promotions, answer.next_page_token)


@router.get(
    "/promotions/{promotion_id}",
    **op("promotions:read", "Get a promotion", (404,), example=ex.PROMOTION),
)
async def get_promotion(promotion_id: PathId, svc: Svc) -> Promotion:
    answer = await svc.promotion.GetPromotion(promotion_pb2.GetPromotionRequest(id=promotion_id))
    return to_model(Promotion, answer.promotion)
