"""pos.promotion.v1.PromotionService: translates protobuf <-> handlers, nothing more."""

from __future__ import annotations

from collections.abc import Callable

import grpc

from pos.promotion.v1 import promotion_pb2, promotion_pb2_grpc
from pos_kit.context import current_merchant
from pos_kit.idempotency import once
from pos_kit.paging import decode_token, encode_token, page_size
from pos_promotion.adapters import messages
from pos_promotion.adapters.repository import PromotionUow
from pos_promotion.service import handlers
from pos_promotion.service.ports import ActivePromotions


class PromotionApi(promotion_pb2_grpc.PromotionServiceServicer):
    def __init__(self, uow: Callable[[], PromotionUow], active: ActivePromotions) -> None:
        self._uow = uow
        self._active = active

    async def CreatePromotion(
        self, request: promotion_pb2.CreatePromotionRequest, context: grpc.aio.ServicerContext
    ) -> promotion_pb2.CreatePromotionResponse:
        minimum = (
            messages.money_input(request.minimum_subtotal)
            if request.HasField("minimum_subtotal")
            else None
        )
        async with self._uow().bind(current_merchant()) as uow:

            async def work() -> promotion_pb2.CreatePromotionResponse:
                promotion = await handlers.create_promotion(
                    uow, request.name, request.percent_off_bps, minimum
                )
                return promotion_pb2.CreatePromotionResponse(
                    promotion=messages.promotion_to_proto(promotion)
                )

            return await once(
                uow, "CreatePromotion", request, promotion_pb2.CreatePromotionResponse, work
            )

    async def GetPromotion(
        self, request: promotion_pb2.GetPromotionRequest, context: grpc.aio.ServicerContext
    ) -> promotion_pb2.GetPromotionResponse:
        async with self._uow().bind(current_merchant()) as uow:
            promotion = await handlers.get_promotion(uow, request.id)
        return promotion_pb2.GetPromotionResponse(promotion=messages.promotion_to_proto(promotion))

    async def ListPromotions(
        self, request: promotion_pb2.ListPromotionsRequest, context: grpc.aio.ServicerContext
    ) -> promotion_pb2.ListPromotionsResponse:
        limit = page_size(request.page_size)
        after = decode_token(request.page_token)
        async with self._uow().bind(current_merchant()) as uow:
            found = await handlers.list_promotions(uow, limit + 1, after)
        page = found[:limit]
        token = encode_token(page[-1].id) if len(found) > limit else ""
        return promotion_pb2.ListPromotionsResponse(
            promotions=[messages.promotion_to_proto(p) for p in page], next_page_token=token
        )

    async def CalculateDiscounts(
        self,
        request: promotion_pb2.CalculateDiscountsRequest,
        context: grpc.aio.ServicerContext,
    ) -> promotion_pb2.CalculateDiscountsResponse:
        discounts = await handlers.calculate_discounts(
            self._active,
            current_merchant(),
            messages.cart_lines(request.lines),
            request.currency,
        )
        return messages.discounts_to_proto(discounts)


def registrar(
    uow: Callable[[], PromotionUow], active: ActivePromotions
) -> Callable[[grpc.aio.Server], None]:
    def register(server: grpc.aio.Server) -> None:
        promotion_pb2_grpc.add_PromotionServiceServicer_to_server(PromotionApi(uow, active), server)

    return register


SERVICE_NAME = promotion_pb2.DESCRIPTOR.services_by_name["PromotionService"].full_name
