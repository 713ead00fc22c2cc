"""The other services checkout calls, behind the ports the handlers use."""

from __future__ import annotations

import asyncio
import logging
import math
import time
from collections.abc import Awaitable, Callable
from datetime import UTC
from typing import TypeVar

import grpc
from google.protobuf.message import Message

from pos.customer.v1 import customer_pb2, customer_pb2_grpc, loyalty_pb2
from pos.inventory.v1 import inventory_pb2, inventory_pb2_grpc, stock_pb2, stock_pb2_grpc
from pos.payment.v1 import (
    gift_cards_pb2,
    gift_cards_pb2_grpc,
    payment_pb2,
    payment_pb2_grpc,
    shifts_pb2,
    shifts_pb2_grpc,
)
from pos.promotion.v1 import promotion_pb2, promotion_pb2_grpc
from pos_kit.context import remaining_seconds
from pos_kit.errors import (
    Conflict,
    DomainError,
    ErrorKind,
    FieldViolation,
    NotFound,
    Unavailable,
)
from pos_kit.grpc_client import downstream_timeout, read_error
from pos_kit.money import Money
from pos_kit.proto_money import to_proto
from pos_order.adapters.messages import TENDERS
from pos_order.domain.coupons import CouponUse
from pos_order.domain.model import (
    Allocation,
    OrderLine,
    Point,
    PricedItem,
    SellingLocation,
    Tender,
)
from pos_order.domain.pricing import Manual
from pos_order.domain.returns import Refunded, UnitsRefund
from pos_order.domain.tax import LocationTax
from pos_order.service.ports import (
    AppliedDiscount,
    CartContext,
    CustomerFound,
    DiscountQuote,
    IssuedCard,
    PaymentResult,
    RejectedCoupon,
    TenderAsk,
)
from pos_order.service.returns import RefundAsk

log = logging.getLogger(__name__)

_TRANSIENT = {grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.DEADLINE_EXCEEDED}


def _downstream(service: str, exc: grpc.aio.AioRpcError) -> DomainError:
    """A downstream answer as our own error: its domain errors pass through unchanged, a
    service's own word that something it needs is away (the card processor's
    `processor_unavailable`) included; a call that got no such word is `<service>_unavailable`."""
    remote = read_error(exc)
    if exc.code() in _TRANSIENT and not remote.reason:
        return Unavailable(f"the {service} service is unavailable", f"{service}_unavailable")
    return remote.to_domain()


Resp = TypeVar("Resp")


# How long a call waits, in all, for the same request (the same derived request id) that another
# driver of the order has in flight at the other service (two cancels of one fulfilment, a
# request beside the resumer): it is the same step, so its answer is ours too. Past this the
# other service's retryable `request_in_progress` stands.
IN_PROGRESS_WAIT_SECONDS = 5.0


class _Client:
    """A client of another service: each call bounded by the client's deadline (seconds; None:
    none), its failure as our own error (_downstream)."""

    _service: str
    _timeout: float | None = None

    async def _call(self, method: Callable[..., Awaitable[Resp]], request: Message) -> Resp:
        delay, waited = 0.05, 0.0
        while True:
            try:
                return await method(request, timeout=self._timeout)
            except grpc.aio.AioRpcError as exc:
                error = _downstream(self._service, exc)
            if error.code != "request_in_progress" or waited >= IN_PROGRESS_WAIT_SECONDS:
                raise error
            await asyncio.sleep(delay)
            waited += delay
            delay = min(delay * 2, 0.5)

    async def _call_if_found(
        self, method: Callable[..., Awaitable[Resp]], request: Message
    ) -> Resp | None:
        """As _call, but None when the other service has no such thing (NOT_FOUND)."""
        try:
            return await self._call(method, request)
        except DomainError as exc:
            if exc.kind is ErrorKind.NOT_FOUND:
                return None
            raise


class InventoryCatalog(_Client):
    _service = "inventory"

    def __init__(self, channel: grpc.aio.Channel) -> None:
        self._stub = inventory_pb2_grpc.InventoryServiceStub(channel)

    async def price_snapshot(
        self, location_id: str, skus: list[str]
    ) -> tuple[SellingLocation, dict[str, PricedItem]]:
        if not skus:  # gift card lines only: the selling location is all there is to price
            return await self.location(location_id), {}
        answer = await self._call(
            self._stub.GetPrices, inventory_pb2.GetPricesRequest(skus=skus, location_id=location_id)
        )
        loc = answer.location
        items = {
            p.sku: PricedItem(
                p.sku,
                p.name,
                Money(p.price.amount, p.price.currency),
                tax_category=p.tax_category,
                product_id=p.id,
                category=p.category,
                open_price=p.open_price,
                unit_cost=p.unit_cost.amount if p.HasField("unit_cost") else None,
            )
            for p in answer.products
        }
        location = SellingLocation(
            loc.id,
            loc.currency,
            loc.tax_rate_bps,
            dict(loc.tax_rates_bps),
            loc.time_zone,
            loc.prices_include_tax,
            tuple(
                LocationTax(t.name, t.rate_bps, dict(t.rates_bps), t.compound) for t in loc.taxes
            ),
            pickup_enabled=loc.pickup_enabled,
            ship_enabled=loc.ship_enabled,
            inactive=loc.status == inventory_pb2.LOCATION_STATUS_INACTIVE,
        )
        return location, items

    async def location(self, location_id: str) -> SellingLocation:
        """Inventory has no single-location read: the merchant's list, page by page (a merchant
        has few locations). Another merchant's location is not in it: a 404 like any other."""
        token = ""
        while True:
            page = await self._call(
                self._stub.ListLocations,
                inventory_pb2.ListLocationsRequest(page_size=200, page_token=token),
            )
            for loc in page.locations:
                if loc.id == location_id:
                    return SellingLocation(
                        loc.id,
                        loc.currency,
                        loc.tax_rate_bps,
                        pickup_enabled=loc.pickup_enabled,
                        ship_enabled=loc.ship_enabled,
                        inactive=loc.status == inventory_pb2.LOCATION_STATUS_INACTIVE,
                    )
            token = page.next_page_token
            if not token:
                raise NotFound("location", location_id)


class CustomerDirectory(_Client):
    """Asks the customer service about a customer id the read model has not seen yet."""

    _service = "customer"

    def __init__(self, channel: grpc.aio.Channel, timeout: float = 1.0) -> None:
        self._stub = customer_pb2_grpc.CustomerServiceStub(channel)
        self._timeout = timeout

    async def find(self, customer_id: str) -> CustomerFound | None:
        answer = await self._call_if_found(
            self._stub.GetCustomer, customer_pb2.GetCustomerRequest(id=customer_id)
        )
        if answer is None:
            return None
        customer = answer.customer
        # A duplicate merged away answers with where it went (status `merged`).
        merged_into = customer.merged_into if customer.status == "merged" else ""
        return CustomerFound(int(customer.version), merged_into)

    # -- loyalty points an order redeems (ports.Loyalty) ---------------------------------------

    async def available(self, customer_id: str) -> int | None:
        # A duplicate merged away whose merge this service has not heard of yet: its points
        # went to the survivor, whose points a sale naming it holds (the customer service
        # follows the merge there), so they are the survivor's to price.
        current = customer_id
        for _ in range(10):
            answer = await self._call_if_found(
                self._stub.GetCustomer, customer_pb2.GetCustomerRequest(id=current)
            )
            if answer is None:
                return None
            customer = answer.customer
            if customer.status == "merged" and customer.merged_into:
                current = customer.merged_into
                continue
            return int(customer.loyalty_points - customer.points_held)
        return None

    async def point_value(self) -> int:
        answer = await self._call(
            self._stub.GetLoyaltyProgram, loyalty_pb2.GetLoyaltyProgramRequest()
        )
        program = answer.program
        return int(program.point_value_minor) if program.enabled else 0

    async def hold(
        self, request_id: str, order_id: str, customer_id: str, points: int, currency: str
    ) -> int:
        answer = await self._call(
            self._stub.HoldPoints,
            loyalty_pb2.HoldPointsRequest(
                request_id=request_id,
                order_id=order_id,
                customer_id=customer_id,
                points=points,
                currency=currency,
            ),
        )
        return int(answer.hold.discount.amount)

    async def finalize(self, request_id: str, order_id: str) -> None:
        await self._call(
            self._stub.FinalizePoints,
            loyalty_pb2.FinalizePointsRequest(request_id=request_id, order_id=order_id),
        )

    async def release(self, request_id: str, order_id: str) -> None:
        await self._call(
            self._stub.ReleasePoints,
            loyalty_pb2.ReleasePointsRequest(request_id=request_id, order_id=order_id),
        )

    async def reverse(self, request_id: str, order_id: str, reason: str) -> None:
        await self._call(
            self._stub.ReverseOrderPoints,
            loyalty_pb2.ReverseOrderPointsRequest(
                request_id=request_id, order_id=order_id, reason=reason
            ),
        )


_MANUAL_KINDS = {
    "percent": promotion_pb2.MANUAL_KIND_PERCENT,
    "amount": promotion_pb2.MANUAL_KIND_AMOUNT,
    "price": promotion_pb2.MANUAL_KIND_PRICE,
}


def _manual(m: Manual | None) -> promotion_pb2.ManualAdjustment | None:
    if m is None:
        return None
    return promotion_pb2.ManualAdjustment(
        kind=_MANUAL_KINDS[m.kind], value=m.value, reason=m.reason, requested_by=m.requested_by
    )


def cart_request(
    lines: list[OrderLine], currency: str, cart: CartContext | None
) -> promotion_pb2.CalculateDiscountsRequest:
    cart = cart or CartContext()
    return promotion_pb2.CalculateDiscountsRequest(
        currency=currency,
        lines=[
            promotion_pb2.CartLine(
                sku=ln.sku,
                quantity=ln.quantity,
                unit_price=to_proto(ln.unit_price),
                product_id=ln.product_id,
                categories=[ln.category] if ln.category else [],
                manual=_manual(ln.manual),
            )
            for ln in lines
        ],
        location_id=cart.location_id,
        location_time_zone=cart.time_zone,
        channel=cart.channel,
        customer_id=cart.customer_id,
        coupon_codes=list(cart.coupon_codes),
        order_manual=_manual(cart.order_manual),
        customer_groups=list(cart.customer_groups),
    )


_LEVELS = {promotion_pb2.OFFER_LEVEL_ITEM: "item", promotion_pb2.OFFER_LEVEL_ORDER: "order"}


class DiscountDeadline:
    """How long a pricing waits for the promotion service.

    A loaded promotion service answers a pricing in more than the short deadline while it is
    up (a sale's p50 is ~600 ms at 32 connections): a short deadline alone sold those sales at
    list price while nothing was down. So a pricing waits the normal deadline, long enough for
    a loaded service. But a hung service (or one whose calls hang on the network) would then
    cost every sale the normal deadline: after a call given the normal deadline fails, the
    sales of the next `cool_off` seconds wait only the short one, and once it is over one call
    is given the normal deadline again (its failure begins another cool-off). A failure within
    the cool-off does not prolong it, or a service that is up again but slower than the short
    deadline would never be given the normal one while sales go on. Any answer ends the
    cool-off at once. A cart whose discounts cannot be dropped (a coupon or a manual discount:
    a 503 on failure) always waits the normal deadline: a short one would only turn a slow
    answer into a refused sale. A call cut shorter by the deadline of the call it serves (a
    caller's own deadline nearly spent) that runs out is that caller's time running out, not
    the promotion service failing: it begins no cool-off (`failed` is not told of it)."""

    def __init__(
        self,
        normal: float,
        short: float,
        cool_off: float,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.normal, self.short, self._cool_off, self._clock = normal, short, cool_off, clock
        self._cooling_until = -math.inf

    def timeout(self, must_answer: bool) -> float:
        if must_answer or self._clock() >= self._cooling_until:
            return self.normal
        return self.short

    def failed(self, timeout: float) -> None:
        if timeout == self.normal:
            self._cooling_until = self._clock() + self._cool_off

    def answered(self) -> None:
        self._cooling_until = -math.inf


class PromotionDiscounts:
    """Discounts are worth a wait, not a lost sale: on failure we sell at list price, unless the
    customer named a coupon or a manual discount was given (then the sale waits: a 503, never
    full price). How long a pricing waits: DiscountDeadline."""

    def __init__(
        self,
        channel: grpc.aio.Channel,
        timeout: float = 2.0,
        short_timeout: float = 0.3,
        cool_off: float = 10.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._stub = promotion_pb2_grpc.PromotionServiceStub(channel)
        self.deadline = DiscountDeadline(timeout, short_timeout, cool_off, clock)

    async def quote(
        self, lines: list[OrderLine], currency: str, cart: CartContext | None = None
    ) -> DiscountQuote:
        request = cart_request(lines, currency, cart)
        must_answer = (cart is not None and cart.must_ask) or any(ln.manual for ln in lines)
        timeout = self.deadline.timeout(must_answer)
        # What the call is given: less than `timeout` when the call it serves has less left
        # (the channel's interceptor cuts it so).
        given = downstream_timeout(timeout, remaining_seconds())
        try:
            answer = await self._stub.CalculateDiscounts(request, timeout=timeout)
        except grpc.aio.AioRpcError as exc:
            if exc.code() not in _TRANSIENT:
                self.deadline.answered()
                raise read_error(exc).to_domain() from None
            if exc.code() is not grpc.StatusCode.DEADLINE_EXCEEDED or given >= timeout:
                # The promotion service away, or not answering within all it was given: a
                # deadline cut short by the caller's own ran out on the caller, not on it.
                self.deadline.failed(timeout)
            if must_answer:
                raise Unavailable(
                    "the promotion service is unavailable: a coupon or a manual discount "
                    "cannot be applied now",
                    "promotion_unavailable",
                ) from None
            log.warning("promotion unavailable; selling at list price")
            return DiscountQuote(Money.zero(currency), applied=False)
        self.deadline.answered()
        total = answer.total_discount
        codes = [c.strip().upper() for c in request.coupon_codes]
        rejected = tuple(
            RejectedCoupon(
                codes.index(r.code.strip().upper()) if r.code.strip().upper() in codes else 0,
                r.reason,
                r.message,
            )
            for r in answer.rejected_coupons
        )
        discounts = tuple(
            AppliedDiscount(
                d.promotion_id,
                d.amount.amount,
                d.reason,
                _LEVELS.get(d.level, "order"),
                tuple((x.line_index, x.amount.amount) for x in d.lines),
                d.requested_by,
            )
            for d in answer.discounts
        )
        return DiscountQuote(
            Money(total.amount, total.currency or currency),
            applied=True,
            rejected=rejected,
            discounts=discounts,
            line_discounts=tuple(m.amount for m in answer.line_discounts),
        )


class PromotionCoupons(_Client):
    """The saga's coupon steps; each request id derives from the order."""

    _service = "promotion"

    def __init__(self, channel: grpc.aio.Channel, timeout: float = 2.0) -> None:
        self._stub = promotion_pb2_grpc.PromotionServiceStub(channel)
        self._timeout = timeout

    async def reserve(
        self,
        request_id: str,
        order_id: str,
        lines: list[OrderLine],
        currency: str,
        cart: CartContext,
    ) -> list[CouponUse]:
        request = promotion_pb2.ReserveCouponsRequest(
            request_id=request_id,
            order_id=order_id,
            codes=list(cart.coupon_codes),
            customer_id=cart.customer_id,
            cart=cart_request(lines, currency, cart),
        )
        try:
            answer = await self._call(self._stub.ReserveCoupons, request)
        except DomainError as exc:
            raise _as_coupon_codes(exc) from None
        return [CouponUse(r.coupon_id, r.promotion_id, r.code_hint) for r in answer.reservations]

    async def redeem(self, request_id: str, order_id: str) -> None:
        await self._call(
            self._stub.RedeemCoupons,
            promotion_pb2.RedeemCouponsRequest(request_id=request_id, order_id=order_id),
        )

    async def release(self, request_id: str, order_id: str) -> None:
        await self._call(
            self._stub.ReleaseCoupons,
            promotion_pb2.ReleaseCouponsRequest(request_id=request_id, order_id=order_id),
        )


def _as_coupon_codes(exc: DomainError) -> DomainError:
    """The promotion service names a code by its own request's field (`codes[1]`); the caller
    sent it as `coupon_codes[1]`, which is what the refusal must say to them."""
    if exc.message.startswith("codes["):
        exc.message = f"coupon_{exc.message}"
    exc.violations = [
        FieldViolation(f"coupon_{v.field}", v.description) if v.field.startswith("codes[") else v
        for v in exc.violations
    ]
    return exc


_STATUS = {
    payment_pb2.PAYMENT_STATUS_PENDING: "pending",
    payment_pb2.PAYMENT_STATUS_AUTHORIZED: "authorized",
    payment_pb2.PAYMENT_STATUS_CAPTURED: "captured",
    payment_pb2.PAYMENT_STATUS_FAILED: "failed",
    payment_pb2.PAYMENT_STATUS_VOIDED: "voided",
}


def _result(payment: payment_pb2.Payment) -> PaymentResult:
    return PaymentResult(
        payment.id,
        _STATUS.get(payment.status, "pending"),
        payment,
        captured_amount=payment.captured.amount,
        refunded_amount=payment.refunded.amount,
        amount=payment.total.amount or payment.amount.amount,
        voided_amount=payment.voided.amount,
        decline_code=payment.decline_code,
    )


def _tender_amounts(amounts: list[RefundAsk]) -> list[payment_pb2.TenderAmount]:
    return [
        payment_pb2.TenderAmount(payment_id=a.payment_id, amount=to_proto(a.amount))
        for a in amounts
    ]


class PaymentService(_Client):
    """Every call carries a request id derived from the order (`<order>/<step>/<n>`), so the
    payment service replays rather than acts twice; a deadline bounds each, shorter than the
    time the resumer waits before it takes over an idle saga."""

    _service = "payment"

    def __init__(self, channel: grpc.aio.Channel, timeout: float = 10.0) -> None:
        self._stub = payment_pb2_grpc.PaymentServiceStub(channel)
        self._shifts = shifts_pb2_grpc.ShiftServiceStub(channel)
        self._timeout = timeout

    async def open_shift_at(self, register_id: str) -> str:
        """The id of the shift open at the register, or "" for none. A register has at most
        one open, and it is its newest (another opens only once it is closed)."""
        answer = await self._call(
            self._shifts.ListShifts,
            shifts_pb2.ListShiftsRequest(page_size=1, register_id=register_id),
        )
        newest = answer.shifts[0] if answer.shifts else None
        if newest is None or newest.status != shifts_pb2.SHIFT_STATUS_OPEN:
            return ""
        return str(newest.id)

    async def charge(
        self,
        request_id: str,
        order_id: str,
        location_id: str,
        tender: Tender,
        amount: Money,
        cash_tendered: Money | None,
        card_token: str,
        needs_shift: bool = False,
    ) -> PaymentResult:
        request = payment_pb2.AuthorizeAndCaptureRequest(
            request_id=request_id,
            order_id=order_id,
            location_id=location_id,
            tender_type=TENDERS.to_proto(tender),
            amount=to_proto(amount),
            card_token=card_token,
            cash_needs_open_shift=needs_shift,
        )
        if cash_tendered is not None:
            request.cash_tendered.CopyFrom(to_proto(cash_tendered))
        answer = await self._call(self._stub.AuthorizeAndCapture, request)
        return _result(answer.payment)

    async def take(
        self, request_id: str, order_id: str, location_id: str, ask: TenderAsk
    ) -> PaymentResult:
        request = payment_pb2.CreatePaymentRequest(
            request_id=request_id,
            order_id=order_id,
            location_id=location_id,
            tender_type=TENDERS.to_proto(ask.tender),
            amount=to_proto(ask.amount),
            capture=ask.capture,
            card_token=ask.card_token,
            gift_card_code=ask.gift_card_code,
            external_reference=ask.external_reference,
            # A tender's cash (an order's, an exchange's) at a register is checked against
            # its open shift first (`drawer_open_for_cash`); the payment service checks again
            # as it takes it, so a close between the two refuses it rather than leave it in
            # no shift. Without a register (the back office) it asks for nothing.
            cash_needs_open_shift=True,
        )
        if ask.cash_tendered is not None:
            request.cash_tendered.CopyFrom(to_proto(ask.cash_tendered))
        answer = await self._call(self._stub.CreatePayment, request)
        return _result(answer.payment)

    async def capture(self, request_id: str, payment_id: str, amount: Money) -> PaymentResult:
        answer = await self._call(
            self._stub.CapturePayment,
            payment_pb2.CapturePaymentRequest(
                request_id=request_id, payment_id=payment_id, amount=to_proto(amount)
            ),
        )
        if answer.status == payment_pb2.OPERATION_STATUS_FAILED:
            raise Conflict("the capture was refused by the processor", "capture_failed")
        if answer.status == payment_pb2.OPERATION_STATUS_PENDING:
            raise Unavailable("the capture's answer is not known yet", "payment_pending")
        return _result(answer.payment)

    async def void(self, request_id: str, payment_id: str) -> PaymentResult:
        answer = await self._call(
            self._stub.VoidPayment,
            # The order voids what nothing of it will capture any more: the rest of a payment
            # its fulfilments captured in part included.
            payment_pb2.VoidPaymentRequest(
                request_id=request_id, payment_id=payment_id, release_uncaptured_rest=True
            ),
        )
        return _result(answer.payment)

    async def refund(self, request_id: str, payment_id: str, amount: Money) -> None:
        await self._call(
            self._stub.CreateRefund,
            payment_pb2.CreateRefundRequest(
                request_id=request_id,
                payment_id=payment_id,
                amount=to_proto(amount),
                reason="order cancelled",
            ),
        )

    async def refund_order(
        self,
        request_id: str,
        order_id: str,
        amounts: list[RefundAsk],
        reason: str,
        lines: list[tuple[str, int]],
        exchange_order_id: str = "",
    ) -> list[Refunded]:
        """A return's refund: the amount per tender planned with the return, one request
        (`exchange_order_id`: drawn on the credit set aside for that exchange's new order)."""
        answer = await self._call(
            self._stub.CreateRefund,
            payment_pb2.CreateRefundRequest(
                request_id=request_id,
                order_id=order_id,
                amounts=_tender_amounts(amounts),
                reason=reason,
                lines=[payment_pb2.RefundLine(sku=s, quantity=q) for s, q in lines if s],
                exchange_order_id=exchange_order_id,
            ),
        )
        in_all = {p.id: p.refunded.amount for p in answer.payments}
        return [
            Refunded(
                r.id,
                r.payment_id,
                r.amount.amount,
                payment_pb2.RefundStatus.Name(r.status).removeprefix("REFUND_STATUS_").lower(),
                in_all.get(r.payment_id),
            )
            for r in answer.refunds
        ]

    async def credit_exchange(
        self, request_id: str, order_id: str, exchange_order_id: str, amounts: list[RefundAsk]
    ) -> None:
        await self._call(
            self._stub.CreditExchange,
            payment_pb2.CreditExchangeRequest(
                request_id=request_id,
                order_id=order_id,
                exchange_order_id=exchange_order_id,
                amounts=_tender_amounts(amounts),
            ),
        )

    async def release_exchange_credit(self, request_id: str, exchange_order_id: str) -> None:
        await self._call(
            self._stub.ReleaseExchangeCredit,
            payment_pb2.ReleaseExchangeCreditRequest(
                request_id=request_id, exchange_order_id=exchange_order_id
            ),
        )

    async def refund_status(self, refund_id: str) -> str:
        answer = await self._call(self._stub.GetRefund, payment_pb2.GetRefundRequest(id=refund_id))
        return (
            payment_pb2.RefundStatus.Name(answer.refund.status)
            .removeprefix("REFUND_STATUS_")
            .lower()
        )

    async def refunds_of(self, order_id: str) -> list[UnitsRefund]:
        found: list[UnitsRefund] = []
        token = ""
        while True:
            page = await self._call_if_found(
                self._stub.ListRefunds,
                payment_pb2.ListRefundsRequest(order_id=order_id, page_size=200, page_token=token),
            )
            if page is None:
                return found
            for f in page.refunds:
                lines = tuple((x.sku, x.quantity) for x in f.lines)
                found.append(
                    UnitsRefund(
                        f.id,
                        f.amount.amount,
                        f.status == payment_pb2.REFUND_STATUS_FAILED,
                        f.created_at.ToDatetime(tzinfo=UTC),
                        (f.created_at.ToNanoseconds(), f.reason, lines),
                        lines,
                        f.reason,
                    )
                )
            token = page.next_page_token
            if not token:
                return found

    async def record_out_of_band(
        self,
        request_id: str,
        order_id: str,
        return_id: str,
        amounts: list[RefundAsk],
        tender: str,
        reference: str,
        whole: bool = False,
    ) -> None:
        await self._call(
            self._stub.RecordOutOfBandRefund,
            payment_pb2.RecordOutOfBandRefundRequest(
                request_id=request_id,
                order_id=order_id,
                return_id=return_id,
                amounts=_tender_amounts(amounts),
                tender_type=TENDERS.to_proto(Tender(tender)),
                reference=reference,
                whole=whole,
            ),
        )

    async def of_order(self, order_id: str) -> list[PaymentResult]:
        answer = await self._call_if_found(
            self._stub.GetOrderPayments, payment_pb2.GetOrderPaymentsRequest(order_id=order_id)
        )
        if answer is None:
            return []  # nothing was ever taken for it
        return [_result(p) for p in answer.payments]


class StockService(_Client):
    """Holds for pickup and shipment at the inventory service (reservations with a TTL)."""

    _service = "inventory"

    def __init__(self, channel: grpc.aio.Channel, timeout: float = 5.0) -> None:
        self._stub = stock_pb2_grpc.StockServiceStub(channel)
        self._catalog = inventory_pb2_grpc.InventoryServiceStub(channel)
        self._timeout = timeout

    async def hold(
        self,
        request_id: str,
        location_id: str,
        lines: list[tuple[str, int]],
        ttl_seconds: int,
        reference: str,
    ) -> str:
        answer = await self._call(
            self._stub.CreateReservation,
            stock_pb2.CreateReservationRequest(
                request_id=request_id,
                location_id=location_id,
                lines=[stock_pb2.StockLine(sku=s, quantity=q) for s, q in lines],
                ttl_seconds=ttl_seconds,
                reference=reference,
            ),
        )
        return str(answer.reservation.id)

    async def source(
        self,
        request_id: str,
        lines: list[tuple[str, int]],
        destination: Point,
        ttl_seconds: int,
        reference: str,
        currency: str,
    ) -> list[Allocation]:
        return await self._sourcing(
            stock_pb2.ProposeSourcingRequest(
                request_id=request_id,
                lines=[stock_pb2.StockLine(sku=s, quantity=q) for s, q in lines],
                destination=inventory_pb2.GeoPoint(
                    latitude=destination[0], longitude=destination[1]
                ),
                ttl_seconds=ttl_seconds,
                reference=reference,
                currency=currency,
            )
        )

    async def propose(
        self, lines: list[tuple[str, int]], destination: Point, currency: str
    ) -> list[Allocation]:
        return await self._sourcing(
            stock_pb2.ProposeSourcingRequest(
                lines=[stock_pb2.StockLine(sku=s, quantity=q) for s, q in lines],
                destination=inventory_pb2.GeoPoint(
                    latitude=destination[0], longitude=destination[1]
                ),
                dry_run=True,
                currency=currency,
            )
        )

    async def _sourcing(self, request: stock_pb2.ProposeSourcingRequest) -> list[Allocation]:
        answer = await self._call(self._stub.ProposeSourcing, request)
        if answer.strategy == stock_pb2.SOURCING_STRATEGY_UNFULFILLABLE or not answer.allocations:
            short = ",".join(f"{s.sku}:{s.quantity}" for s in answer.short)
            raise Conflict(
                f"not enough stock to ship: {short or 'the lines'}",
                "insufficient_stock",
                {"short": short},
            )
        return [
            Allocation(a.location_id, [(ln.sku, ln.quantity) for ln in a.lines], a.reservation_id)
            for a in answer.allocations
        ]

    async def commit(self, request_id: str, reservation_id: str) -> None:
        await self._call(
            self._stub.CommitReservation,
            stock_pb2.CommitReservationRequest(request_id=request_id, id=reservation_id),
        )

    async def release(self, request_id: str, reservation_id: str) -> None:
        await self._call(
            self._stub.ReleaseReservation,
            stock_pb2.ReleaseReservationRequest(request_id=request_id, id=reservation_id),
        )

    async def return_to_stock(
        self,
        request_id: str,
        location_id: str,
        sku: str,
        quantity: int,
        reference: str,
        note: str,
        reason: int = inventory_pb2.ADJUSTMENT_REASON_RETURNED,
    ) -> None:
        """Returned units back on the shelf at the returning store, once (by request id);
        the ledger entry names what brought them back (`reference`)."""
        await self._call(
            self._catalog.AdjustStock,
            inventory_pb2.AdjustStockRequest(
                request_id=request_id,
                sku=sku,
                location_id=location_id,
                delta=quantity,
                reason=reason,  # type: ignore[arg-type]
                note=note,
                reference=reference,
            ),
        )

    async def restock(
        self, request_id: str, location_id: str, lines: list[tuple[str, int]], reference: str
    ) -> None:
        """An uncollected order's units back on the shelf, a request per SKU. The goods never
        left the store: the sale's entry is corrected (`correction`, the order's id), no
        customer returned anything."""
        for sku, quantity in lines:
            await self.return_to_stock(
                f"{request_id}/{sku}", location_id, sku, quantity, reference,
                f"order {reference}: not collected",
                inventory_pb2.ADJUSTMENT_REASON_CORRECTION,
            )  # fmt: skip


class GiftCardIssuer(_Client):
    """Gift card lines: a pre-printed code reserved (ReserveGiftCardCode) before its order is
    saved, activated (IssueGiftCard) when the order is confirmed, deactivated (and its codes'
    reservations released) when it is cancelled, each under the saga's derived request id."""

    _service = "payment"

    def __init__(self, channel: grpc.aio.Channel, timeout: float = 10.0) -> None:
        self._stub = gift_cards_pb2_grpc.GiftCardServiceStub(channel)
        self._timeout = timeout

    async def issue(
        self,
        request_id: str,
        amount: Money,
        code: str,
        order_id: str,
        line_id: str,
        customer_id: str,
        location_id: str,
        reason: str = "sale",
    ) -> IssuedCard:
        try:
            answer = await self._call(
                self._stub.IssueGiftCard,
                gift_cards_pb2.IssueGiftCardRequest(
                    request_id=request_id,
                    amount=to_proto(amount),
                    code=code,
                    customer_id=customer_id,
                    order_id=order_id,
                    order_line_id=line_id,
                    reason=reason,
                    location_id=location_id,
                ),
            )
        except DomainError as exc:
            # Its field errors name the payment service's request (`amount.amount`), which
            # this service's caller never sent: the caller names its own field, if any.
            exc.violations = []
            raise
        card = answer.gift_card
        return IssuedCard(card.id, card.code_last4, answer.code)

    async def deactivate(
        self, request_id: str, gift_card_id: str, reason: str, expected_balance: int = 0
    ) -> None:
        await self._call(
            self._stub.DeactivateGiftCard,
            gift_cards_pb2.DeactivateGiftCardRequest(
                request_id=request_id,
                id=gift_card_id,
                reason=reason,
                expected_balance=expected_balance,
            ),
        )

    async def balance(self, gift_card_id: str) -> int | None:
        answer = await self._call_if_found(
            self._stub.GetGiftCard, gift_cards_pb2.GetGiftCardRequest(id=gift_card_id)
        )
        if answer is None:
            return None
        if answer.gift_card.status != gift_cards_pb2.GIFT_CARD_STATUS_ACTIVE:
            return 0
        return int(answer.gift_card.balance.amount)

    async def max_balance(self) -> int:
        answer = await self._call(
            self._stub.GetGiftCardSettings, gift_cards_pb2.GetGiftCardSettingsRequest()
        )
        return int(answer.settings.max_balance)

    async def reserve_code(
        self, request_id: str, code: str, order_id: str, line_id: str, ttl_seconds: int
    ) -> None:
        await self._call(
            self._stub.ReserveGiftCardCode,
            gift_cards_pb2.ReserveGiftCardCodeRequest(
                request_id=request_id,
                code=code,
                order_id=order_id,
                order_line_id=line_id,
                ttl_seconds=ttl_seconds,
            ),
        )

    async def card_of_line(self, order_id: str, line_id: str) -> str | None:
        answer = await self._call(
            self._stub.ListGiftCards,
            gift_cards_pb2.ListGiftCardsRequest(order_id=order_id, page_size=100),
        )
        return next((c.id for c in answer.gift_cards if c.order_line_id == line_id), None)

    async def release_codes(self, request_id: str, order_id: str) -> None:
        await self._call(
            self._stub.ReleaseGiftCardCodes,
            gift_cards_pb2.ReleaseGiftCardCodesRequest(request_id=request_id, order_id=order_id),
        )
