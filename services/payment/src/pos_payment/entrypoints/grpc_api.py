"""pos.payment.v1.PaymentService: translates protobuf <-> handlers, nothing more."""

from __future__ import annotations

from collections.abc import Callable

import grpc

from pos.payment.v1 import payment_pb2, payment_pb2_grpc
from pos_kit.context import current_merchant
from pos_kit.idempotency import once
from pos_kit.proto_money import from_proto
from pos_payment.adapters.messages import payment_to_proto
from pos_payment.adapters.repository import PaymentUow
from pos_payment.domain.model import TenderType
from pos_payment.service import handlers
from pos_payment.service.ports import CardProcessor

_TENDERS = {
    payment_pb2.TENDER_TYPE_CASH: TenderType.CASH,
    payment_pb2.TENDER_TYPE_CARD: TenderType.CARD,
}


class PaymentApi(payment_pb2_grpc.PaymentServiceServicer):
    def __init__(self, uow: Callable[[], PaymentUow], processor: CardProcessor) -> None:
        self._uow = uow
        self._processor = processor

    async def AuthorizeAndCapture(
        self,
        request: payment_pb2.AuthorizeAndCaptureRequest,
        context: grpc.aio.ServicerContext,
    ) -> payment_pb2.AuthorizeAndCaptureResponse:
        amount = from_proto("amount", request.amount)
        cash = (
            from_proto("cash_tendered", request.cash_tendered)
            if request.HasField("cash_tendered")
            else None
        )
        async with self._uow().bind(current_merchant()) as uow:

            async def work() -> payment_pb2.AuthorizeAndCaptureResponse:
                payment = await handlers.authorize_and_capture(
                    uow,
                    self._processor,
                    request.order_id,
                    _TENDERS.get(request.tender_type),
                    amount,
                    cash,
                    request.card_token,
                )
                return payment_pb2.AuthorizeAndCaptureResponse(payment=payment_to_proto(payment))

            return await once(
                uow,
                "AuthorizeAndCapture",
                request,
                payment_pb2.AuthorizeAndCaptureResponse,
                work,
            )

    async def GetPayment(
        self, request: payment_pb2.GetPaymentRequest, context: grpc.aio.ServicerContext
    ) -> payment_pb2.GetPaymentResponse:
        async with self._uow().bind(current_merchant()) as uow:
            payment = await handlers.get_payment(uow, request.id)
        return payment_pb2.GetPaymentResponse(payment=payment_to_proto(payment))


SERVICE_NAME = payment_pb2.DESCRIPTOR.services_by_name["PaymentService"].full_name
