"""Domain events -> the integration events of pos.payment.v1: one mapper per event, each
carrying the whole payment or refund as GetPayment / GetRefund return it."""

from __future__ import annotations

from pos.payment.v1 import events_pb2
from pos_kit.events import EventRegistry
from pos_payment.adapters.messages import (
    money,
    payment_to_proto,
    refund_to_proto,
    terminal_to_proto,
)
from pos_payment.domain.model import (
    PaymentAuthorized,
    PaymentCaptured,
    PaymentFailed,
    PaymentUpdated,
    PaymentVoided,
    RefundCreated,
    RefundFailed,
    RefundSucceeded,
    TerminalCheckoutUpdated,
)

REGISTRY = EventRegistry()


@REGISTRY.maps(PaymentAuthorized)
def _authorized(event: PaymentAuthorized) -> events_pb2.PaymentAuthorized:
    return events_pb2.PaymentAuthorized(payment=payment_to_proto(event.payment))


@REGISTRY.maps(PaymentCaptured)
def _captured(event: PaymentCaptured) -> events_pb2.PaymentCaptured:
    return events_pb2.PaymentCaptured(
        payment=payment_to_proto(event.payment),
        amount=money(event.amount, event.payment.currency),
    )


@REGISTRY.maps(PaymentVoided)
def _voided(event: PaymentVoided) -> events_pb2.PaymentVoided:
    return events_pb2.PaymentVoided(payment=payment_to_proto(event.payment), reason=event.reason)


@REGISTRY.maps(PaymentFailed)
def _failed(event: PaymentFailed) -> events_pb2.PaymentFailed:
    return events_pb2.PaymentFailed(payment=payment_to_proto(event.payment))


@REGISTRY.maps(PaymentUpdated)
def _updated(event: PaymentUpdated) -> events_pb2.PaymentUpdated:
    return events_pb2.PaymentUpdated(payment=payment_to_proto(event.payment))


@REGISTRY.maps(RefundCreated)
def _refund_created(event: RefundCreated) -> events_pb2.RefundCreated:
    return events_pb2.RefundCreated(refund=refund_to_proto(event.refund))


@REGISTRY.maps(RefundSucceeded)
def _refund_succeeded(event: RefundSucceeded) -> events_pb2.RefundSucceeded:
    return events_pb2.RefundSucceeded(
        refund=refund_to_proto(event.refund), payment=payment_to_proto(event.payment)
    )


@REGISTRY.maps(RefundFailed)
def _refund_failed(event: RefundFailed) -> events_pb2.RefundFailed:
    return events_pb2.RefundFailed(refund=refund_to_proto(event.refund))


@REGISTRY.maps(TerminalCheckoutUpdated)
def _terminal_updated(event: TerminalCheckoutUpdated) -> events_pb2.TerminalCheckoutUpdated:
    return events_pb2.TerminalCheckoutUpdated(checkout=terminal_to_proto(event.checkout))
