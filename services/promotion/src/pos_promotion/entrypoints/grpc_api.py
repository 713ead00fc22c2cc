"""pos.promotion.v1.PromotionService: translates protobuf <-> handlers, nothing more."""

from __future__ import annotations

from collections.abc import Callable

import grpc

from pos.promotion.v1 import promotion_pb2, promotion_pb2_grpc
from pos_kit.context import current_merchant
from pos_kit.errors import FieldViolation, InvalidArgument
from pos_kit.idempotency import once
from pos_kit.money import Money, MoneyError, check_currency
from pos_kit.paging import decode_token, encode_token, page_size
from pos_kit.proto_money import from_proto, to_proto
from pos_promotion.adapters.messages import promotion_to_proto
from pos_promotion.adapters.repository import PromotionUow
from pos_promotion.domain.model import CartLine
from pos_promotion.service import handlers


class PromotionApi(promotion_pb2_grpc.PromotionServiceServicer):
    def __init__(self, uow: Callable[[], PromotionUow]) -> None:
        self._uow = uow

    async def CreatePromotion(
        self, request: promotion_pb2.CreatePromotionRequest, context: grpc.aio.ServicerContext
    ) -> promotion_pb2.CreatePromotionResponse:
        minimum = (
            from_proto("minimum_subtotal", request.minimum_subtotal)
            if request.HasField("minimum_subtotal")
            else None
        )
        async with self._uow().bind(current_merchant()) as uow:

            async def work() -> promotion_pb2.CreatePromotionResponse:
                promotion = await handlers.create_promotion(
                    uow, request.name, request.percent_off_bps, minimum
                )
                return promotion_pb2.CreatePromotionResponse(
                    promotion=promotion_to_proto(promotion)
                )

            return await once(
                uow, "CreatePromotion", request, promotion_pb2.CreatePromotionResponse, work
            )

    async def ListPromotions(
        self, request: promotion_pb2.ListPromotionsRequest, context: grpc.aio.ServicerContext
    ) -> promotion_pb2.ListPromotionsResponse:
        limit = page_size(request.page_size)
        async with self._uow().bind(current_merchant()) as uow:
            found = await handlers.list_promotions(uow, limit + 1, decode_token(request.page_token))
        page = found[:limit]
        token = encode_token(page[-1].id) if len(found) > limit else ""
        return promotion_pb2.ListPromotionsResponse(
            promotions=[promotion_to_proto(p) for p in page], next_page_token=token
        )

    async def CalculateDiscounts(
        self,
        request: promotion_pb2.CalculateDiscountsRequest,
        context: grpc.aio.ServicerContext,
    ) -> promotion_pb2.CalculateDiscountsResponse:
        try:
            currency = check_currency(request.currency)
        except MoneyError as exc:
            raise InvalidArgument(
                "currency is not valid", [FieldViolation("currency", str(exc))]
            ) from None
        lines = [
            CartLine(ln.sku, ln.quantity, from_proto(f"lines[{i}].unit_price", ln.unit_price))
            for i, ln in enumerate(request.lines)
        ]
        async with self._uow().bind(current_merchant()) as uow:
            applied = await handlers.calculate_discounts(uow, lines, currency)
        total = Money.zero(currency)
        for discount in applied:
            total = total + discount.amount
        return promotion_pb2.CalculateDiscountsResponse(
            discounts=[
                promotion_pb2.AppliedDiscount(
                    promotion_id=d.promotion_id, amount=to_proto(d.amount), reason=d.reason
                )
                for d in applied
            ],
            total_discount=to_proto(total),
        )


SERVICE_NAME = promotion_pb2.DESCRIPTOR.services_by_name["PromotionService"].full_name
