"""pos.payment.v1.PaymentService: translates protobuf <-> handlers, nothing more."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any, Generic, TypeVar

import grpc
from google.protobuf.message import Message

from pos.common.v1 import money_pb2
from pos.payment.v1 import payment_pb2, payment_pb2_grpc
from pos_kit.context import current_merchant, register_var, staff_var
from pos_kit.paging import page_of, page_request, time_field
from pos_kit.servicer import Servicer, across_calls, mutation, query
from pos_payment.adapters import messages
from pos_payment.adapters.gift_cards import CodeHasher
from pos_payment.adapters.messages import (
    OPERATION_STATUSES,
    STATUSES,
    TENDERS,
    credit_to_proto,
    order_payments_to_proto,
    out_of_band_to_proto,
    payment_to_proto,
    refund_to_proto,
    settings_to_proto,
    terminal_to_proto,
)
from pos_payment.adapters.repository import PaymentUow
from pos_payment.domain.model import (
    ChargeRequest,
    CreatedWindow,
    Payment,
    RefundLine,
    validate_charge,
)
from pos_payment.service import handlers
from pos_payment.service.handlers import Amount, Policy
from pos_payment.service.ports import Processors, TerminalReader

P = TypeVar("P")
T = TypeVar("T")
X = TypeVar("X")
R = TypeVar("R", bound=Message)


@dataclass
class Answering(Generic[P, T, X, R]):
    """A handler's three steps, whose recorded result becomes the RPC's response."""

    steps: Any
    respond: Callable[[X], R]

    def read(self, uow: PaymentUow) -> Awaitable[P]:
        result: Awaitable[P] = self.steps.read(uow)
        return result

    def call(self, claim: object, read: P) -> Awaitable[T]:
        result: Awaitable[T] = self.steps.call(claim, read)
        return result

    async def record(self, uow: PaymentUow, outcome: T) -> R:
        return self.respond(await self.steps.record(uow, outcome))


def _amount(message: Any, name: str) -> Amount | None:
    if not message.HasField(name):
        return None
    money: money_pb2.Money = getattr(message, name)
    return money.amount, money.currency


def _created_window(request: Any) -> CreatedWindow:
    """A list request's `created_since` and `created_before`, each unset for none."""
    return CreatedWindow(
        time_field(request, "created_since"), time_field(request, "created_before")
    )


def charge_request(request: payment_pb2.CreatePaymentRequest) -> ChargeRequest:
    return ChargeRequest(
        order_id=request.order_id,
        tender=TENDERS.optional(request.tender_type, "tender_type"),
        amount=request.amount.amount,
        currency=request.amount.currency,
        cash_tendered=_amount(request, "cash_tendered"),
        card_token=request.card_token,
        reference=request.reference,
        location_id=request.location_id,
        tip=_amount(request, "tip"),
        capture=request.capture,
        gift_card_code=request.gift_card_code,
        external_reference=request.external_reference,
        cash_needs_open_shift=request.cash_needs_open_shift,
    )


def _in_store(request: payment_pb2.AuthorizeAndCaptureRequest) -> payment_pb2.CreatePaymentRequest:
    created = payment_pb2.CreatePaymentRequest(
        request_id=request.request_id,
        order_id=request.order_id,
        tender_type=request.tender_type,
        amount=request.amount,
        card_token=request.card_token,
        location_id=request.location_id,
        capture=True,
        cash_needs_open_shift=request.cash_needs_open_shift,
    )
    if request.HasField("cash_tendered"):
        created.cash_tendered.CopyFrom(request.cash_tendered)
    if request.HasField("tip"):
        created.tip.CopyFrom(request.tip)
    return created


def _created(payment: Payment) -> payment_pb2.CreatePaymentResponse:
    return payment_pb2.CreatePaymentResponse(payment=payment_to_proto(payment))


def _authorized_and_captured(payment: Payment) -> payment_pb2.AuthorizeAndCaptureResponse:
    return payment_pb2.AuthorizeAndCaptureResponse(payment=payment_to_proto(payment))


def _captured(result: tuple[Payment, Any]) -> payment_pb2.CapturePaymentResponse:
    payment, op = result
    return payment_pb2.CapturePaymentResponse(
        payment=payment_to_proto(payment),
        amount=messages.money(op.amount, payment.currency),
        status=payment_pb2.OperationStatus.ValueType(OPERATION_STATUSES.to_proto(op.status)),
    )


def _voided(result: tuple[Payment, Any]) -> payment_pb2.VoidPaymentResponse:
    payment, op = result
    return payment_pb2.VoidPaymentResponse(
        payment=payment_to_proto(payment),
        status=payment_pb2.OperationStatus.ValueType(OPERATION_STATUSES.to_proto(op.status)),
    )


def _refunded(done: handlers.RefundsDone) -> payment_pb2.CreateRefundResponse:
    return payment_pb2.CreateRefundResponse(
        refunds=[refund_to_proto(r) for r in done.refunds],
        payments=[payment_to_proto(p) for p in done.payments],
    )


class PaymentApi(Servicer[PaymentUow], payment_pb2_grpc.PaymentServiceServicer):
    def __init__(
        self,
        uow: Callable[[], PaymentUow],
        processors: Processors,
        reader: TerminalReader,
        policy: Policy,
        hasher: CodeHasher | None = None,
    ) -> None:
        super().__init__(uow)
        self.processors = processors
        self.reader = reader
        self.policy = policy
        self.hasher = hasher

    def _masked(self, request: payment_pb2.CreatePaymentRequest) -> Any:
        """The request as its fingerprint is stored: a gift card's code replaced by its keyed
        hash (a plain hash of a short code could be searched for)."""
        if not request.gift_card_code or self.hasher is None:
            return request
        masked = payment_pb2.CreatePaymentRequest()
        masked.CopyFrom(request)
        masked.gift_card_code = self.hasher(current_merchant(), request.gift_card_code).hex()
        return masked

    def _take(self, request: payment_pb2.CreatePaymentRequest) -> handlers.TakePayment:
        # Validated before anything is claimed: the kit stores a hash of the request, and a
        # refused card number must not reach the database even as a hash.
        charge = validate_charge(charge_request(request))
        return handlers.TakePayment(
            charge,
            request.request_id,
            self.processors,
            self.bound_uow,
            self.policy,
            register_var.get() or "",
        )

    @across_calls(payment_pb2.AuthorizeAndCaptureResponse)
    def AuthorizeAndCapture(self, request: payment_pb2.AuthorizeAndCaptureRequest) -> Any:
        return Answering(self._take(_in_store(request)), _authorized_and_captured)

    @across_calls(payment_pb2.CreatePaymentResponse, fingerprint_of=_masked)
    def CreatePayment(self, request: payment_pb2.CreatePaymentRequest) -> Any:
        return Answering(self._take(request), _created)

    @across_calls(payment_pb2.CapturePaymentResponse)
    def CapturePayment(self, request: payment_pb2.CapturePaymentRequest) -> Any:
        steps = handlers.CapturePayment(
            request.payment_id,
            _amount(request, "amount"),
            request.request_id,
            self.processors,
            self.bound_uow,
            self.policy,
        )
        return Answering(steps, _captured)

    @across_calls(payment_pb2.VoidPaymentResponse)
    def VoidPayment(self, request: payment_pb2.VoidPaymentRequest) -> Any:
        steps = handlers.VoidPayment(
            request.payment_id,
            request.request_id,
            self.processors,
            self.bound_uow,
            self.policy,
            uncaptured_rest=request.release_uncaptured_rest,
        )
        return Answering(steps, _voided)

    @across_calls(payment_pb2.CreateRefundResponse)
    def CreateRefund(self, request: payment_pb2.CreateRefundRequest) -> Any:
        ask = handlers.validate_refund(
            handlers.RefundAsk(
                payment_id=request.payment_id,
                order_id=request.order_id,
                amount=_amount(request, "amount"),
                named=[
                    (a.payment_id, (a.amount.amount, a.amount.currency)) for a in request.amounts
                ],
                reason=request.reason,
                lines=[RefundLine(x.sku, x.quantity) for x in request.lines],
                exchange_order_id=request.exchange_order_id,
                cash_needs_open_shift=request.cash_needs_open_shift,
                register_id=register_var.get() or "",
            )
        )
        steps = handlers.RefundPayments(ask, request.request_id, self.processors, self.policy)
        return Answering(steps, _refunded)

    @query
    async def GetPayment(
        self, request: payment_pb2.GetPaymentRequest, uow: PaymentUow
    ) -> payment_pb2.GetPaymentResponse:
        payment = await handlers.get_payment(uow, request.id)
        return payment_pb2.GetPaymentResponse(payment=payment_to_proto(payment))

    @query
    async def ListPayments(
        self, request: payment_pb2.ListPaymentsRequest, uow: PaymentUow
    ) -> payment_pb2.ListPaymentsResponse:
        page = page_request(request)
        status = STATUSES.optional(request.status, "status")
        found = await handlers.list_payments(
            uow, page, request.order_id, request.location_id, status, _created_window(request)
        )
        items, token = page_of(found, page)
        return payment_pb2.ListPaymentsResponse(
            payments=[payment_to_proto(p) for p in items], next_page_token=token
        )

    @query
    async def GetOrderPayments(
        self, request: payment_pb2.GetOrderPaymentsRequest, uow: PaymentUow
    ) -> payment_pb2.GetOrderPaymentsResponse:
        summary, total = await handlers.order_payments(
            uow, request.order_id, _amount(request, "order_total")
        )
        return order_payments_to_proto(summary, total)

    @query
    async def GetRefund(
        self, request: payment_pb2.GetRefundRequest, uow: PaymentUow
    ) -> payment_pb2.GetRefundResponse:
        refund = await handlers.get_refund(uow, request.id)
        return payment_pb2.GetRefundResponse(refund=refund_to_proto(refund))

    @query
    async def ListRefunds(
        self, request: payment_pb2.ListRefundsRequest, uow: PaymentUow
    ) -> payment_pb2.ListRefundsResponse:
        page = page_request(request)
        found = await handlers.list_refunds(
            uow,
            page,
            request.payment_id,
            request.order_id,
            request.location_id,
            _created_window(request),
        )
        items, token = page_of(found, page)
        return payment_pb2.ListRefundsResponse(
            refunds=[refund_to_proto(r) for r in items], next_page_token=token
        )

    @mutation(payment_pb2.CreateTerminalCheckoutResponse)
    async def CreateTerminalCheckout(
        self, request: payment_pb2.CreateTerminalCheckoutRequest, uow: PaymentUow
    ) -> payment_pb2.CreateTerminalCheckoutResponse:
        checkout = await handlers.create_terminal_checkout(
            uow,
            self.reader,
            self.policy,
            request.request_id,
            (request.order_id, request.reference, request.location_id, request.device_id),
            (request.amount.amount, request.amount.currency),
            _amount(request, "tip"),
        )
        return payment_pb2.CreateTerminalCheckoutResponse(checkout=terminal_to_proto(checkout))

    @query
    async def GetTerminalCheckout(
        self, request: payment_pb2.GetTerminalCheckoutRequest, uow: PaymentUow
    ) -> payment_pb2.GetTerminalCheckoutResponse:
        checkout = await handlers.get_terminal_checkout(uow, request.id)
        return payment_pb2.GetTerminalCheckoutResponse(checkout=terminal_to_proto(checkout))

    @query
    async def GetPaymentSettings(
        self, request: payment_pb2.GetPaymentSettingsRequest, uow: PaymentUow
    ) -> payment_pb2.GetPaymentSettingsResponse:
        chosen = await handlers.get_settings(uow, self.policy)
        return payment_pb2.GetPaymentSettingsResponse(settings=settings_to_proto(chosen))

    @mutation(payment_pb2.UpdatePaymentSettingsResponse)
    async def UpdatePaymentSettings(
        self, request: payment_pb2.UpdatePaymentSettingsRequest, uow: PaymentUow
    ) -> payment_pb2.UpdatePaymentSettingsResponse:
        before, chosen = await handlers.update_settings(
            uow, self.policy, request.authorization_window_seconds, request.expected_version
        )
        return payment_pb2.UpdatePaymentSettingsResponse(
            settings=settings_to_proto(chosen), previous=settings_to_proto(before)
        )

    @mutation(payment_pb2.CreditExchangeResponse)
    async def CreditExchange(
        self, request: payment_pb2.CreditExchangeRequest, uow: PaymentUow
    ) -> payment_pb2.CreditExchangeResponse:
        credit, payments = await handlers.credit_exchange(
            uow,
            request.order_id,
            request.exchange_order_id,
            [(a.payment_id, a.amount.amount, a.amount.currency) for a in request.amounts],
        )
        return payment_pb2.CreditExchangeResponse(
            credit=credit_to_proto(credit), payments=[payment_to_proto(p) for p in payments]
        )

    @mutation(payment_pb2.ReleaseExchangeCreditResponse)
    async def ReleaseExchangeCredit(
        self, request: payment_pb2.ReleaseExchangeCreditRequest, uow: PaymentUow
    ) -> payment_pb2.ReleaseExchangeCreditResponse:
        credit = await handlers.release_exchange_credit(uow, request.exchange_order_id)
        return payment_pb2.ReleaseExchangeCreditResponse(credit=credit_to_proto(credit))

    @mutation(payment_pb2.RecordOutOfBandRefundResponse)
    async def RecordOutOfBandRefund(
        self, request: payment_pb2.RecordOutOfBandRefundRequest, uow: PaymentUow
    ) -> payment_pb2.RecordOutOfBandRefundResponse:
        # The register and member of the call (the gateway's, through the order service): cash
        # handed over there comes out of that register's drawer.
        record, payments = await handlers.record_out_of_band_refund(
            uow,
            request.order_id,
            request.return_id,
            [(a.payment_id, a.amount.amount, a.amount.currency) for a in request.amounts],
            TENDERS.optional(request.tender_type, "tender_type"),
            request.reference,
            register_var.get() or "",
            staff_var.get() or "",
            whole=request.whole,
        )
        return payment_pb2.RecordOutOfBandRefundResponse(
            record=out_of_band_to_proto(record), payments=[payment_to_proto(p) for p in payments]
        )

    @across_calls(payment_pb2.CancelTerminalCheckoutResponse)
    def CancelTerminalCheckout(self, request: payment_pb2.CancelTerminalCheckoutRequest) -> Any:
        return Answering(handlers.CancelTerminalCheckout(request.id, self.reader), _cancelled)


def _cancelled(checkout: Any) -> payment_pb2.CancelTerminalCheckoutResponse:
    return payment_pb2.CancelTerminalCheckoutResponse(checkout=terminal_to_proto(checkout))


def registrar(
    uow: Callable[[], PaymentUow],
    processors: Processors,
    reader: TerminalReader,
    policy: Policy,
    hasher: CodeHasher | None = None,
) -> Callable[[grpc.aio.Server], None]:
    def register(server: grpc.aio.Server) -> None:
        payment_pb2_grpc.add_PaymentServiceServicer_to_server(
            PaymentApi(uow, processors, reader, policy, hasher), server
        )

    return register


SERVICE_NAME = payment_pb2.DESCRIPTOR.services_by_name["PaymentService"].full_name
