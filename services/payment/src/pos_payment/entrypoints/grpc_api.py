"""pos.payment.v1.PaymentService: translates protobuf <-> handlers, nothing more."""

from __future__ import annotations

from collections.abc import Callable

import grpc

from pos.payment.v1 import payment_pb2, payment_pb2_grpc
from pos_kit.context import current_merchant
from pos_kit.idempotency import once
from pos_payment.adapters.messages import payment_to_proto
from pos_payment.adapters.repository import PaymentUow
from pos_payment.domain.model import ChargeRequest, TenderType, validate_charge
from pos_payment.domain.processor import CardProcessor
from pos_payment.service import handlers

_TENDERS = {
    payment_pb2.TENDER_TYPE_CASH: TenderType.CASH,
    payment_pb2.TENDER_TYPE_CARD: TenderType.CARD,
}


def charge_request(request: payment_pb2.AuthorizeAndCaptureRequest) -> ChargeRequest:
    cash = request.cash_tendered
    return ChargeRequest(
        order_id=request.order_id,
        tender=_TENDERS.get(request.tender_type),
        amount=request.amount.amount,
        currency=request.amount.currency,
        cash_tendered=(cash.amount, cash.currency) if request.HasField("cash_tendered") else None,
        card_token=request.card_token,
    )


class PaymentApi(payment_pb2_grpc.PaymentServiceServicer):
    def __init__(self, uow: Callable[[], PaymentUow], processor: CardProcessor) -> None:
        self._uow = uow
        self._processor = processor

    async def AuthorizeAndCapture(
        self,
        request: payment_pb2.AuthorizeAndCaptureRequest,
        context: grpc.aio.ServicerContext,
    ) -> payment_pb2.AuthorizeAndCaptureResponse:
        # Validated before the unit of work opens: `once` stores a hash of the request bytes,
        # and a refused card number must not reach the database even as a hash.
        charge = validate_charge(charge_request(request))
        merchant = current_merchant()
        async with self._uow().bind(merchant) as uow:

            async def work() -> payment_pb2.AuthorizeAndCaptureResponse:
                payment = await handlers.authorize_and_capture(
                    uow, self._processor, charge, f"{merchant}/{request.request_id}"
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


def registrar(
    uow: Callable[[], PaymentUow], processor: CardProcessor
) -> Callable[[grpc.aio.Server], None]:
    def register(server: grpc.aio.Server) -> None:
        payment_pb2_grpc.add_PaymentServiceServicer_to_server(PaymentApi(uow, processor), server)

    return register


SERVICE_NAME = payment_pb2.DESCRIPTOR.services_by_name["PaymentService"].full_name
