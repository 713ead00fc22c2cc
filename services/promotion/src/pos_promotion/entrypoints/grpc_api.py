"""pos.promotion.v1.PromotionService: translates protobuf <-> handlers, nothing more."""

from __future__ import annotations

from collections.abc import Callable

import grpc

from pos.promotion.v1 import promotion_pb2, promotion_pb2_grpc
from pos_kit.context import current_merchant
from pos_kit.paging import page_of, page_request
from pos_kit.servicer import Servicer, mutation, query
from pos_promotion.adapters import messages
from pos_promotion.adapters.repository import PromotionUow
from pos_promotion.service import handlers
from pos_promotion.service.ports import ActivePromotions

# The active promotions of one merchant, read with no unit of work (see CalculateDiscounts).
ActiveReader = Callable[[str], ActivePromotions]


class PromotionApi(Servicer[PromotionUow], promotion_pb2_grpc.PromotionServiceServicer):
    def __init__(self, uow: Callable[[], PromotionUow], active: ActiveReader) -> None:
        super().__init__(uow)
        self.active = active

    @mutation(promotion_pb2.CreatePromotionResponse)
    async def CreatePromotion(
        self, request: promotion_pb2.CreatePromotionRequest, uow: PromotionUow
    ) -> promotion_pb2.CreatePromotionResponse:
        minimum = (
            messages.money_input(request.minimum_subtotal)
            if request.HasField("minimum_subtotal")
            else None
        )
        promotion = await handlers.create_promotion(
            uow, request.name, request.percent_off_bps, minimum
        )
        return promotion_pb2.CreatePromotionResponse(
            promotion=messages.promotion_to_proto(promotion)
        )

    @query
    async def GetPromotion(
        self, request: promotion_pb2.GetPromotionRequest, uow: PromotionUow
    ) -> promotion_pb2.GetPromotionResponse:
        promotion = await handlers.get_promotion(uow, request.id)
        return promotion_pb2.GetPromotionResponse(promotion=messages.promotion_to_proto(promotion))

    @query
    async def ListPromotions(
        self, request: promotion_pb2.ListPromotionsRequest, uow: PromotionUow
    ) -> promotion_pb2.ListPromotionsResponse:
        page = page_request(request)
        found, token = page_of(await handlers.list_promotions(uow, page), page)
        return promotion_pb2.ListPromotionsResponse(
            promotions=[messages.promotion_to_proto(p) for p in found], next_page_token=token
        )

    async def CalculateDiscounts(
        self,
        request: promotion_pb2.CalculateDiscountsRequest,
        context: grpc.aio.ServicerContext,
    ) -> promotion_pb2.CalculateDiscountsResponse:
        # Not a @query: that opens a unit of work, and its BEGIN and ROLLBACK would double the
        # round trips of the checkout's discount hop, one autocommit SELECT.
        discounts = await handlers.calculate_discounts(
            self.active(current_merchant()),
            messages.cart_lines(request.lines),
            request.currency,
        )
        return messages.discounts_to_proto(discounts)


def registrar(
    uow: Callable[[], PromotionUow], active: ActiveReader
) -> Callable[[grpc.aio.Server], None]:
    def register(server: grpc.aio.Server) -> None:
        promotion_pb2_grpc.add_PromotionServiceServicer_to_server(PromotionApi(uow, active), server)

    return register


SERVICE_NAME = promotion_pb2.DESCRIPTOR.services_by_name["PromotionService"].full_name
