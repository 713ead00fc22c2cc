"""The other services checkout calls, behind the ports the handlers use."""

from __future__ import annotations

import logging

import grpc

from pos.customer.v1 import customer_pb2, customer_pb2_grpc
from pos.inventory.v1 import inventory_pb2, inventory_pb2_grpc
from pos.payment.v1 import payment_pb2, payment_pb2_grpc
from pos.promotion.v1 import promotion_pb2, promotion_pb2_grpc
from pos_kit.errors import DomainError, Unavailable
from pos_kit.grpc_client import read_error
from pos_kit.money import Money
from pos_kit.proto_money import to_proto
from pos_order.adapters.messages import TENDERS
from pos_order.domain.model import OrderLine, PricedItem, SellingLocation, Tender
from pos_order.service.ports import DiscountQuote, PaymentResult

log = logging.getLogger(__name__)

_TRANSIENT = {grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.DEADLINE_EXCEEDED}


def _downstream(service: str, exc: grpc.aio.AioRpcError) -> DomainError:
    """A downstream answer as our own error: its domain errors pass through unchanged."""
    if exc.code() in _TRANSIENT:
        return Unavailable(f"the {service} service is unavailable", f"{service}_unavailable")
    return read_error(exc).to_domain()


class InventoryCatalog:
    def __init__(self, channel: grpc.aio.Channel) -> None:
        self._stub = inventory_pb2_grpc.InventoryServiceStub(channel)

    async def price_snapshot(
        self, location_id: str, skus: list[str]
    ) -> tuple[SellingLocation, dict[str, PricedItem]]:
        try:
            answer = await self._stub.GetPrices(
                inventory_pb2.GetPricesRequest(skus=skus, location_id=location_id)
            )
        except grpc.aio.AioRpcError as exc:
            raise _downstream("inventory", exc) from None
        loc = answer.location
        items = {
            p.sku: PricedItem(p.sku, p.name, Money(p.price.amount, p.price.currency))
            for p in answer.products
        }
        return SellingLocation(loc.id, loc.currency, loc.tax_rate_bps), items


class CustomerDirectory:
    """Asks the customer service about a customer id the read model has not seen yet."""

    def __init__(self, channel: grpc.aio.Channel, timeout: float = 1.0) -> None:
        self._stub = customer_pb2_grpc.CustomerServiceStub(channel)
        self._timeout = timeout

    async def version_of(self, customer_id: str) -> int | None:
        try:
            answer = await self._stub.GetCustomer(
                customer_pb2.GetCustomerRequest(id=customer_id), timeout=self._timeout
            )
        except grpc.aio.AioRpcError as exc:
            if exc.code() == grpc.StatusCode.NOT_FOUND:
                return None
            raise _downstream("customer", exc) from None
        return int(answer.customer.version)


class PromotionDiscounts:
    """Discounts are worth a short wait, not a lost sale: on failure we sell at list price."""

    def __init__(self, channel: grpc.aio.Channel, timeout: float = 0.3) -> None:
        self._stub = promotion_pb2_grpc.PromotionServiceStub(channel)
        self._timeout = timeout

    async def quote(self, lines: list[OrderLine], currency: str) -> DiscountQuote:
        request = promotion_pb2.CalculateDiscountsRequest(
            currency=currency,
            lines=[
                promotion_pb2.CartLine(
                    sku=ln.sku, quantity=ln.quantity, unit_price=to_proto(ln.unit_price)
                )
                for ln in lines
            ],
        )
        try:
            answer = await self._stub.CalculateDiscounts(request, timeout=self._timeout)
        except grpc.aio.AioRpcError as exc:
            if exc.code() in _TRANSIENT:
                log.warning("promotion unavailable; selling at list price")
                return DiscountQuote(Money.zero(currency), applied=False)
            raise read_error(exc).to_domain() from None
        total = answer.total_discount
        return DiscountQuote(Money(total.amount, total.currency or currency), applied=True)


class PaymentService:
    def __init__(self, channel: grpc.aio.Channel) -> None:
        self._stub = payment_pb2_grpc.PaymentServiceStub(channel)

    async def charge(
        self,
        request_id: str,
        order_id: str,
        location_id: str,
        tender: Tender,
        amount: Money,
        cash_tendered: Money | None,
        card_token: str,
    ) -> PaymentResult:
        request = payment_pb2.AuthorizeAndCaptureRequest(
            request_id=request_id,
            order_id=order_id,
            location_id=location_id,
            tender_type=TENDERS.to_proto(tender),
            amount=to_proto(amount),
            card_token=card_token,
        )
        if cash_tendered is not None:
            request.cash_tendered.CopyFrom(to_proto(cash_tendered))
        try:
            answer = await self._stub.AuthorizeAndCapture(request)
        except grpc.aio.AioRpcError as exc:
            raise _downstream("payment", exc) from None
        payment = answer.payment
        captured = payment.status == payment_pb2.PAYMENT_STATUS_CAPTURED
        return PaymentResult(payment.id, captured, payment)
