"""pos.order.v1.OrderService: translates protobuf <-> handlers, nothing more."""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence
from dataclasses import replace
from typing import TypeVar

import grpc

from pos.common.v1 import money_pb2
from pos.order.v1 import order_pb2, order_pb2_grpc
from pos.payment.v1 import payment_pb2
from pos_kit.errors import (
    DomainError,
    ErrorKind,
    FieldViolation,
    InvalidArgument,
    named_by,
    raise_if,
    require,
)
from pos_kit.idempotency import once_across_calls, request_fingerprint_of
from pos_kit.money import Money
from pos_kit.paging import page_of, page_request, time_field
from pos_kit.proto_money import from_proto, to_proto
from pos_kit.servicer import Servicer, across_calls, mutation, query
from pos_order.adapters.messages import (
    FULFILLMENT_STATUSES,
    FULFILLMENT_TYPES,
    OUTCOMES,
    STATUSES,
    TENDERS,
    cart_to_proto,
    order_to_proto,
    return_to_proto,
)
from pos_order.adapters.repository import OrderUow
from pos_order.domain.model import (
    FulfillmentRequest,
    GiftCardAsk,
    LineRequest,
    Order,
    SellingLocation,
    Tender,
)
from pos_order.domain.pricing import Manual
from pos_order.domain.returns import (
    ReceiptlessLimit,
    ReceiptlessLine,
    ReceiptlessRequest,
    ReturnLineRequest,
    ReturnRequest,
    SettlementOutcome,
    SettleRequest,
    TenderRefund,
    validate_receiptless,
)
from pos_order.entrypoints.fingerprints import CodePrinter
from pos_order.service import exchanges, returns
from pos_order.service.handlers import (
    carts,
    checkout,
    confirmation,
    customers,
    drafts,
    fulfillment,
    new_order,
    queries,
    settings,
    tenders,
)
from pos_order.service.ports import (
    CheckoutCommand,
    CheckoutPorts,
    CreateOrderCommand,
    DraftChange,
    OrderFilters,
    OrderSettings,
    PaymentResult,
    ReturnFilters,
)
from pos_order.service.saga import Policy, boundary

_T = TypeVar("_T")


async def _named(found: Awaitable[_T], fields: list[str]) -> _T:
    """A store (or other resource) a request's body names, looked up: missing, its 404 names
    the request's fields that named it, as an order's or a cart's does."""
    try:
        return await found
    except DomainError as exc:
        if exc.kind is not ErrorKind.NOT_FOUND:
            raise
        raise named_by(exc, fields) from None


def _takes_back(store: SellingLocation, fields: list[str]) -> None:
    """A store the merchant closed receives no stock and makes no sale: a return there is a
    409 `location_inactive` naming the request's fields that chose it, before anything is
    claimed (no field: nothing was asked of it)."""
    if store.inactive and fields:
        raise DomainError(
            f"location {store.id!r} is inactive: it no longer sells or receives stock",
            "location_inactive",
            [FieldViolation(f, "the location is inactive") for f in fields],
            {"location_id": store.id},
            ErrorKind.CONFLICT,
        )


def _tender(number: int) -> Tender | None:
    """None when unspecified or unknown alike: the checkout's validation then names the field
    beside every other bad one, rather than alone."""
    try:
        return TENDERS.optional(number, "tender_type")
    except InvalidArgument:
        return None


def _outcome(number: int) -> SettlementOutcome | None:
    try:
        return OUTCOMES.optional(number, "outcome")
    except InvalidArgument:
        return None


def _exchange_tender(i: int, t: order_pb2.ExchangeTender) -> exchanges.ExchangeTender:
    try:
        tender = TENDERS.optional(t.tender_type, f"tenders[{i}].tender_type")
    except InvalidArgument:
        tender = None
    return exchanges.ExchangeTender(
        tender,
        from_proto(f"tenders[{i}].amount", t.amount) if t.HasField("amount") else None,
        t.card_token,
        from_proto(f"tenders[{i}].cash_tendered", t.cash_tendered)
        if t.HasField("cash_tendered")
        else None,
        t.gift_card_code,
        t.external_reference,
    )


def _manual(found: order_pb2.ManualAdjustment, present: bool) -> Manual | None:
    if not present:
        return None
    return Manual(found.kind, found.value, found.reason, found.requested_by)


def _entered(
    where: str,
    line: order_pb2.CheckoutLine | order_pb2.OrderLineRequest | order_pb2.ExchangeLine,
) -> Money | None:
    """An open-price product's price as entered at the sale (`where`: the line's field)."""
    if not line.HasField("unit_price"):
        return None
    return from_proto(f"{where}.unit_price", line.unit_price)


def _command(request: order_pb2.CheckoutRequest, fingerprint: bytes) -> CheckoutCommand:
    cash: Money | None = None
    if request.HasField("cash_tendered"):
        cash = from_proto("cash_tendered", request.cash_tendered)
    return CheckoutCommand(
        request_id=request.request_id,
        location_id=request.location_id,
        customer_id=request.customer_id,
        lines=[_line(i, ln) for i, ln in enumerate(request.lines)],
        tender=_tender(request.tender_type),
        cash_tendered=cash,
        card_token=request.card_token,
        coupon_codes=tuple(request.coupon_codes),
        order_manual=_manual(request.order_manual, request.HasField("order_manual")),
        redeem_points=request.redeem_points,
        fingerprint=fingerprint,
        below_cost_permitted=not request.below_cost_not_permitted,
    )


def _line(
    i: int, line: order_pb2.CheckoutLine | order_pb2.OrderLineRequest, fulfillment: int = 0
) -> LineRequest:
    card = None
    if line.HasField("gift_card"):
        amount = from_proto(f"lines[{i}].gift_card.amount", line.gift_card.amount)
        card = GiftCardAsk(amount, line.gift_card.code)
    return LineRequest(
        line.sku,
        line.quantity,
        fulfillment,
        manual=_manual(line.manual, line.HasField("manual")),
        unit_price=_entered(f"lines[{i}]", line),
        gift_card=card,
    )


def _line_requests(found: Sequence[order_pb2.OrderLineRequest]) -> list[LineRequest]:
    return [_line(i, ln, ln.fulfillment) for i, ln in enumerate(found)]


def _issued(order: order_pb2.Order, shown: dict[str, str]) -> list[order_pb2.IssuedGiftCard]:
    """The gift cards this run activated, with their codes: added to the answer after it was
    stored, so a replay of the request has none."""
    return [
        order_pb2.IssuedGiftCard(
            line_id=ln.id, gift_card_id=ln.gift_card.gift_card_id, code=shown[ln.id]
        )
        for ln in order.lines
        if ln.id in shown
    ]


def _fulfillment_requests(
    found: Sequence[order_pb2.FulfillmentRequest],
) -> list[FulfillmentRequest]:
    return [
        FulfillmentRequest(
            FULFILLMENT_TYPES.from_proto(f.type, f"fulfillments[{i}].type"),
            f.location_id,
            # Kept trimmed: spaces alone are no address (required for a shipment).
            f.ship_to.strip(),
            (f.destination.latitude, f.destination.longitude)
            if f.HasField("destination")
            else None,
        )
        for i, f in enumerate(found)
    ]


def _create_command(
    request: order_pb2.CreateOrderRequest, fingerprint: bytes
) -> CreateOrderCommand:
    return CreateOrderCommand(
        request_id=request.request_id,
        channel=request.channel,
        location_id=request.location_id,
        customer_id=request.customer_id,
        lines=_line_requests(request.lines),
        fulfillments=_fulfillment_requests(request.fulfillments),
        notes=request.notes,
        metadata=dict(request.metadata),
        coupon_codes=tuple(request.coupon_codes),
        order_manual=_manual(request.order_manual, request.HasField("order_manual")),
        redeem_points=request.redeem_points,
        fingerprint=fingerprint,
        draft=request.draft,
        below_cost_permitted=not request.below_cost_not_permitted,
    )


# What UpdateDraftOrder's update_mask may name.
DRAFT_FIELDS = frozenset(
    {"customer_id", "lines", "fulfillments", "coupon_codes", "order_manual", "redeem_points",
     "notes", "metadata"}
)  # fmt: skip


def _draft_change(request: order_pb2.UpdateDraftOrderRequest) -> DraftChange:
    mask = set(request.update_mask.paths)
    unknown = sorted(mask - DRAFT_FIELDS)
    raise_if(
        [FieldViolation("update_mask", f"names no field of a draft: {', '.join(unknown)}")]
        if unknown
        else require(bool(mask), "update_mask", "must name at least one field")
    )
    return DraftChange(
        request_id=request.request_id,
        order_id=request.order_id,
        expected_version=request.expected_version,
        customer_id=request.customer_id if "customer_id" in mask else None,
        lines=_line_requests(request.lines) if "lines" in mask else None,
        fulfillments=_fulfillment_requests(request.fulfillments)
        if "fulfillments" in mask
        else None,
        coupon_codes=tuple(request.coupon_codes) if "coupon_codes" in mask else None,
        order_manual=_manual(request.order_manual, request.HasField("order_manual"))
        if "order_manual" in mask
        else None,
        redeem_points=request.redeem_points if "redeem_points" in mask else None,
        notes=request.notes if "notes" in mask else None,
        metadata=dict(request.metadata) if "metadata" in mask else None,
        # A field named in the mask and left unset clears it (AIP-134): here the only one whose
        # unset value is no value of its own.
        clear_order_manual="order_manual" in mask and not request.HasField("order_manual"),
        manual_limit_bps=request.manual_limit_bps if request.HasField("manual_limit_bps") else None,
        below_cost_permitted=not request.below_cost_not_permitted,
    )


def _unjudged(request: order_pb2.UpdateDraftOrderRequest) -> order_pb2.UpdateDraftOrderRequest:
    """The edit as its fingerprint is taken: without the caller's discount limit and whether
    it may sell below cost, which say who may ask, not what is asked (a retry allowed by a
    manager's override is the same edit)."""
    printed = order_pb2.UpdateDraftOrderRequest()
    printed.CopyFrom(request)
    printed.ClearField("manual_limit_bps")
    printed.below_cost_not_permitted = False
    return printed


def _payment(payment: PaymentResult | None) -> payment_pb2.Payment | None:
    if payment is not None and isinstance(payment.raw, payment_pb2.Payment):
        return payment.raw
    return None


def _checkout_response(order: Order, payment: PaymentResult | None) -> order_pb2.CheckoutResponse:
    return order_pb2.CheckoutResponse(
        order=order_to_proto(order), payment=_payment(payment), sold_below_cost=_below_cost(order)
    )


def _below_cost(order: Order) -> bool:
    return any(ln.below_cost for ln in order.lines)


def _tender_response(order: Order, payment: PaymentResult | None) -> order_pb2.AddTenderResponse:
    return order_pb2.AddTenderResponse(order=order_to_proto(order), payment=_payment(payment))


def _refunds(refunded: dict[str, int], currency: str) -> list[payment_pb2.TenderAmount]:
    return [
        payment_pb2.TenderAmount(payment_id=pid, amount=to_proto(Money(amount, currency)))
        for pid, amount in refunded.items()
        if amount > 0
    ]


def _settings(s: OrderSettings) -> order_pb2.OrderSettings:
    return order_pb2.OrderSettings(
        capture_pickup_at_order=s.capture_pickup_at_order,
        pickup_expiry_seconds=s.pickup_expiry_seconds,
        hold_seconds=s.hold_seconds,
        return_window_days=s.return_window_days,
        return_policy_text=s.return_policy_text,
        version=s.version,
        receiptless_limit=order_pb2.ReceiptlessLimit(
            amount=s.receiptless_limit.amount, days=s.receiptless_limit.days
        )
        if s.receiptless_limit is not None
        else None,
    )


class OrderApi(Servicer[OrderUow], order_pb2_grpc.OrderServiceServicer):
    def __init__(
        self,
        uow: Callable[[], OrderUow],
        ports: CheckoutPorts,
        policy: Policy,
        return_ports: returns.ReturnPorts | None = None,
        *,
        code_key: str,
    ) -> None:
        super().__init__(uow)
        self.ports = ports
        self.codes = CodePrinter(code_key)
        self.policy = policy
        self.return_ports = return_ports or returns.ReturnPorts(
            ports.payments,  # type: ignore[arg-type]
            ports.stock,  # type: ignore[arg-type]
            ports.gift_cards,
        )

    async def Checkout(
        self, request: order_pb2.CheckoutRequest, context: grpc.aio.ServicerContext
    ) -> order_pb2.CheckoutResponse:
        # No transaction is held while inventory, promotion and payment answer.
        printed = self.codes.sale(request)
        steps = checkout.Checkout(
            _command(request, request_fingerprint_of("Checkout", printed)),
            self.ports,
            self.bound_uow,
            self.policy,
            _checkout_response,
        )
        answer = await once_across_calls(
            self.bound_uow,
            "Checkout",
            printed,
            order_pb2.CheckoutResponse,
            steps.read,
            steps.call,
            steps.record,
            # A call cut off (the gateway's deadline) leaves its claim behind: a till's retry
            # takes the sale over once it ends, which must come before the resumer gives the
            # sale up as abandoned (a till retrying all along would otherwise hear "in
            # progress" until its sale was cancelled). Two runs at once are safe: every step's
            # request id derives from the order, and the first to record wins.
            lease_seconds=self.policy.abandon_after.total_seconds() * 2 / 3,
        )
        if steps.confirmed_in_record:
            await boundary(self.policy, "after_confirm_commit")
        if steps.shown:
            answer.gift_cards.extend(_issued(answer.order, steps.shown))
        return answer

    @across_calls(order_pb2.CreateOrderResponse, fingerprint_of=lambda self, r: self.codes.sale(r))
    def CreateOrder(
        self, request: order_pb2.CreateOrderRequest
    ) -> drafts.CreateOrder[order_pb2.CreateOrderResponse]:
        fingerprint = request_fingerprint_of("CreateOrder", self.codes.sale(request))
        return drafts.CreateOrder(
            _create_command(request, fingerprint),
            self.ports,
            self.bound_uow,
            self.policy,
            lambda o: order_pb2.CreateOrderResponse(
                order=order_to_proto(o), sold_below_cost=_below_cost(o)
            ),
        )

    @across_calls(order_pb2.UpdateDraftOrderResponse, fingerprint_of=lambda _, r: _unjudged(r))
    def UpdateDraftOrder(
        self, request: order_pb2.UpdateDraftOrderRequest
    ) -> (
        drafts.UpdateDraftOrder[order_pb2.UpdateDraftOrderResponse]
        | drafts.AnnotateOrder[order_pb2.UpdateDraftOrderResponse]
    ):
        change = _draft_change(request)

        def answer(o: Order) -> order_pb2.UpdateDraftOrderResponse:
            return order_pb2.UpdateDraftOrderResponse(
                order=order_to_proto(o), sold_below_cost=_below_cost(o)
            )

        if set(request.update_mask.paths) <= drafts.ANNOTATIONS:
            # Notes and metadata alone: any order's, nothing priced again.
            return drafts.AnnotateOrder(change, self.bound_uow, answer)
        return drafts.UpdateDraftOrder(change, self.ports, self.bound_uow, self.policy, answer)

    @across_calls(
        order_pb2.SubmitOrderResponse, fingerprint_of=lambda self, r: self.codes.submit(r)
    )
    def SubmitOrder(
        self, request: order_pb2.SubmitOrderRequest
    ) -> drafts.SubmitOrder[order_pb2.SubmitOrderResponse]:
        return drafts.SubmitOrder(
            request.request_id,
            request.order_id,
            tuple(request.coupon_codes),
            self.ports,
            self.bound_uow,
            self.policy,
            lambda o: order_pb2.SubmitOrderResponse(
                order=order_to_proto(o), sold_below_cost=_below_cost(o)
            ),
            below_cost_permitted=not request.below_cost_not_permitted,
        )

    @across_calls(order_pb2.AddTenderResponse, fingerprint_of=lambda self, r: self.codes.tender(r))
    def AddTender(
        self, request: order_pb2.AddTenderRequest
    ) -> tenders.AddTender[order_pb2.AddTenderResponse]:
        amount = from_proto("amount", request.amount) if request.HasField("amount") else None
        cash = (
            from_proto("cash_tendered", request.cash_tendered)
            if request.HasField("cash_tendered")
            else None
        )
        cmd = tenders.TenderCommand(
            request_id=request.request_id,
            order_id=request.order_id,
            ask=None,
            tender=_tender(request.tender_type),
            amount=amount,
            card_token=request.card_token,
            cash_tendered=cash,
            gift_card_code=request.gift_card_code,
            external_reference=request.external_reference,
            fingerprint=request_fingerprint_of("AddTender", self.codes.tender(request)),
        )
        return tenders.AddTender(cmd, self.ports, self.bound_uow, self.policy, _tender_response)

    async def ConfirmOrder(
        self, request: order_pb2.ConfirmOrderRequest, context: grpc.aio.ServicerContext
    ) -> order_pb2.ConfirmOrderResponse:
        steps = confirmation.ConfirmOrder(
            request.order_id,
            self.ports,
            self.bound_uow,
            self.policy,
            lambda o: order_pb2.ConfirmOrderResponse(order=order_to_proto(o)),
        )
        await steps.prepare()
        answer = await once_across_calls(
            self.bound_uow,
            "ConfirmOrder",
            request,
            order_pb2.ConfirmOrderResponse,
            steps.read,
            steps.call,
            steps.record,
        )
        if steps.shown:
            answer.gift_cards.extend(_issued(answer.order, steps.shown))
        return answer

    @across_calls(order_pb2.CancelOrderResponse)
    def CancelOrder(
        self, request: order_pb2.CancelOrderRequest
    ) -> confirmation.CancelOrder[order_pb2.CancelOrderResponse]:
        return confirmation.CancelOrder(
            request.order_id,
            self.ports,
            self.bound_uow,
            self.policy,
            lambda o, refunded: order_pb2.CancelOrderResponse(
                order=order_to_proto(o), refunds=_refunds(refunded, o.currency)
            ),
            refund_not_permitted=request.refund_not_permitted,
        )

    @across_calls(order_pb2.RecordHeldTendersResponse)
    def RecordHeldTenders(
        self, request: order_pb2.RecordHeldTendersRequest
    ) -> tenders.RecordHeldTenders[order_pb2.RecordHeldTendersResponse]:
        return tenders.RecordHeldTenders(
            request.order_id,
            self.ports,
            self.bound_uow,
            lambda o: order_pb2.RecordHeldTendersResponse(order=order_to_proto(o)),
        )

    async def UpdateFulfillment(
        self, request: order_pb2.UpdateFulfillmentRequest, context: grpc.aio.ServicerContext
    ) -> order_pb2.UpdateFulfillmentResponse:
        try:
            to = FULFILLMENT_STATUSES.optional(request.status, "status")
        except InvalidArgument:
            to = None
        # Kept trimmed: spaces alone are no carrier or tracking number (required at shipped),
        # and a retry padded otherwise is the same step.
        step = fulfillment.FulfillmentStep(
            request.order_id,
            request.fulfillment_id,
            to,
            request.carrier.strip(),
            request.tracking_number.strip(),
        )
        steps = fulfillment.UpdateFulfillment(
            step,
            self.ports,
            self.bound_uow,
            self.policy,
            lambda o: order_pb2.UpdateFulfillmentResponse(order=order_to_proto(o)),
            refunds_of=self.return_ports.payments.refunds_of,
        )
        # What the payments refunded, read before anything is claimed: a hand-over or a
        # shipment of an order whose money went back is refused at the claim.
        await steps.prepare()
        return await once_across_calls(
            self.bound_uow,
            "UpdateFulfillment",
            request,
            order_pb2.UpdateFulfillmentResponse,
            steps.read,
            steps.call,
            steps.record,
        )

    @across_calls(order_pb2.CancelFulfillmentResponse)
    def CancelFulfillment(
        self, request: order_pb2.CancelFulfillmentRequest
    ) -> fulfillment.CancelFulfillment[order_pb2.CancelFulfillmentResponse]:
        return fulfillment.CancelFulfillment(
            request.order_id,
            request.fulfillment_id,
            self.ports,
            self.bound_uow,
            self.policy,
            lambda o, refunded: order_pb2.CancelFulfillmentResponse(
                order=order_to_proto(o), refunds=_refunds(refunded, o.currency)
            ),
            refund_not_permitted=request.refund_not_permitted,
        )

    async def CalculateCart(
        self, request: order_pb2.CalculateCartRequest, context: grpc.aio.ServicerContext
    ) -> order_pb2.CalculateCartResponse:
        # No transaction: inventory and promotion answer with no connection held (the read
        # model is read in a short one of its own only while inventory is down).
        cmd = carts.CartCommand(
            location_id=request.location_id,
            channel=request.channel,
            customer_id=request.customer_id,
            lines=_line_requests(request.lines),
            fulfillments=_fulfillment_requests(request.fulfillments),
            coupon_codes=tuple(request.coupon_codes),
            order_manual=_manual(request.order_manual, request.HasField("order_manual")),
            redeem_points=request.redeem_points,
        )
        cart = await carts.calculate_cart(cmd, self.ports, self.bound_uow)
        return cart_to_proto(cart)

    async def CreateReturn(
        self, request: order_pb2.CreateReturnRequest, context: grpc.aio.ServicerContext
    ) -> order_pb2.CreateReturnResponse:
        register_id, staff_id = new_order.at_register()
        req = ReturnRequest(
            request_id=request.request_id,
            order_id=request.order_id,
            lines=[
                ReturnLineRequest(ln.line_id, ln.quantity, ln.restock, ln.location_id)
                for ln in request.lines
            ],
            reason=request.reason,
            override_reason=request.override_reason,
            tender_amounts=[
                TenderRefund(t.payment_id, amount.amount, amount.currency)
                for i, t in enumerate(request.tender_amounts)
                for amount in (from_proto(f"tender_amounts[{i}].amount", t.amount),)
            ],
            fingerprint=request_fingerprint_of("CreateReturn", request),
            register_id=register_id,
            staff_id=staff_id,
        )
        steps = returns.CreateReturn(
            req,
            self.return_ports,
            self.bound_uow,
            self.policy,
            lambda r, o: order_pb2.CreateReturnResponse(
                order_return=return_to_proto(r),
                order=order_to_proto(o),  # type: ignore[arg-type]
            ),
        )
        await self._stores_taking_back(req.lines)
        await steps.balances()
        if steps.restocked_at_order_store:
            # Units naming no store go back to the order's: a closed one receives none, as a
            # store named on the line does not (whoever calls, the gateway or not).
            store = await self.ports.catalog.location(steps.order_store)  # type: ignore[attr-defined]
            _takes_back(store, steps.restocked_at_order_store)
        return await once_across_calls(
            self.bound_uow,
            "CreateReturn",
            request,
            order_pb2.CreateReturnResponse,
            steps.read,
            steps.call,
            steps.record,
        )

    async def _stores_taking_back(self, lines: list[ReturnLineRequest]) -> None:
        """A store named to take units back must be the merchant's: checked before anything is
        claimed, so a return naming another merchant's store writes nothing (404, naming each
        line that named it: `lines[i].location_id`)."""
        for location_id in sorted({ln.location_id for ln in lines} - {""}):
            fields = [f"lines[{i}].location_id" for i, ln in enumerate(lines)
                      if ln.location_id == location_id]  # fmt: skip
            store = await _named(self.ports.catalog.location(location_id), fields)  # type: ignore[attr-defined]
            # Units go back on the shelf there: a closed store receives none.
            _takes_back(store, [f"lines[{i}].location_id" for i, ln in enumerate(lines)
                                if ln.location_id == location_id and ln.restock])  # fmt: skip

    async def CreateReceiptlessReturn(
        self, request: order_pb2.CreateReceiptlessReturnRequest, context: grpc.aio.ServicerContext
    ) -> order_pb2.CreateReceiptlessReturnResponse:
        req = ReceiptlessRequest(
            request_id=request.request_id,
            location_id=request.location_id,
            customer_id=request.customer_id,
            lines=[ReceiptlessLine(ln.sku, ln.quantity, ln.restock) for ln in request.lines],
            reason=request.reason,
            fingerprint=request_fingerprint_of("CreateReceiptlessReturn", request),
        )
        validate_receiptless(req)
        # Before anything is claimed: the store and the customer must be the merchant's (a
        # 404 otherwise, as for a made-up id); the store's currency is the credit's. The
        # credit is recorded under the customer as a sale would be: a duplicate merged away
        # is its survivor, whose store credit it is.
        survivor, _ = await customers.current_customer(
            self.bound_uow, self.ports.customers, req.customer_id
        )
        req = replace(req, customer_id=survivor)
        store = await _named(
            self.ports.catalog.location(req.location_id),  # type: ignore[attr-defined]
            ["location_id"],
        )
        _takes_back(store, ["location_id"])
        steps = returns.CreateReceiptlessReturn(
            req,
            store.currency,
            self.return_ports,
            self.bound_uow,
            self.policy,
            lambda r, card: order_pb2.CreateReceiptlessReturnResponse(
                order_return=return_to_proto(r),
                store_credit=order_pb2.IssuedGiftCard(gift_card_id=card),
            ),
        )
        answer = await once_across_calls(
            self.bound_uow,
            "CreateReceiptlessReturn",
            request,
            order_pb2.CreateReceiptlessReturnResponse,
            steps.read,
            steps.call,
            steps.record,
        )
        if steps.shown:  # only the run that issued the card shows its code; none was stored
            answer.store_credit.code = steps.shown
        return answer

    async def CreateExchange(
        self, request: order_pb2.CreateExchangeRequest, context: grpc.aio.ServicerContext
    ) -> order_pb2.CreateExchangeResponse:
        printed = self.codes.exchange(request)
        req = exchanges.ExchangeRequest(
            request_id=request.request_id,
            order_id=request.order_id,
            lines=[
                ReturnLineRequest(ln.line_id, ln.quantity, ln.restock, ln.location_id)
                for ln in request.lines
            ],
            new_lines=[
                exchanges.NewLine(
                    ln.sku, ln.quantity, ln.location_id, _entered(f"new_lines[{i}]", ln)
                )
                for i, ln in enumerate(request.new_lines)
            ],
            reason=request.reason,
            override_reason=request.override_reason,
            tenders=[_exchange_tender(i, t) for i, t in enumerate(request.tenders)],
            location_id=request.location_id,
            refund_not_permitted=request.refund_not_permitted,
            below_cost_permitted=not request.below_cost_not_permitted,
            fingerprint=request_fingerprint_of("CreateExchange", printed),
        )
        steps = exchanges.CreateExchange(
            req,
            self.ports,
            self.return_ports,
            self.bound_uow,
            self.policy,
            lambda r, new, old: order_pb2.CreateExchangeResponse(
                order_return=return_to_proto(r),
                order=order_to_proto(new),
                original_order=order_to_proto(old),
                charged=to_proto(Money(max(0, new.totals.total.amount - r.amount), r.currency)),
                refunded=to_proto(Money(max(0, r.amount - new.totals.total.amount), r.currency)),
                sold_below_cost=_below_cost(new),
            ),
        )
        await self._stores_taking_back(req.lines)
        await steps.prepare()
        return await once_across_calls(
            self.bound_uow,
            "CreateExchange",
            printed,
            order_pb2.CreateExchangeResponse,
            steps.read,
            steps.call,
            steps.record,
        )

    @across_calls(order_pb2.SettleReturnResponse)
    def SettleReturn(
        self, request: order_pb2.SettleReturnRequest
    ) -> returns.SettleReturn[order_pb2.SettleReturnResponse]:
        tender = _tender(request.tender_type)
        req = SettleRequest(
            request_id=request.request_id,
            order_id=request.order_id,
            return_id=request.return_id,
            outcome=_outcome(request.outcome),
            tender=tender.value if tender is not None else "",
            reference=request.reference,
            reason=request.reason,
            settled_by=request.settled_by,
        )
        return returns.SettleReturn(
            req,
            self.return_ports,
            lambda r, o: order_pb2.SettleReturnResponse(
                order_return=return_to_proto(r), order=order_to_proto(o)
            ),
        )

    @query
    async def ListReturns(
        self, request: order_pb2.ListReturnsRequest, uow: OrderUow
    ) -> order_pb2.ListReturnsResponse:
        page = page_request(request)
        filters = ReturnFilters(
            order_id=request.order_id,
            status=request.status,
            register_id=request.register_id,
            staff_id=request.staff_id,
            created_since=time_field(request, "created_since"),
            created_before=time_field(request, "created_before"),
        )
        found, token = page_of(await returns.list_returns(uow, filters, page), page)
        return order_pb2.ListReturnsResponse(
            returns=[return_to_proto(r) for r in found], next_page_token=token
        )

    async def HoldOrderForRefund(
        self, request: order_pb2.HoldOrderForRefundRequest, context: grpc.aio.ServicerContext
    ) -> order_pb2.HoldOrderForRefundResponse:
        # Not stored per request id: held again by its retry, never answered from memory.
        async with self.bound_uow() as uow:
            held = await returns.hold_for_refund(
                uow, request.order_id, request.request_id, request.before_confirmation
            )
            await uow.commit()
        return order_pb2.HoldOrderForRefundResponse(held=held)

    async def ReleaseOrderForRefund(
        self, request: order_pb2.ReleaseOrderForRefundRequest, context: grpc.aio.ServicerContext
    ) -> order_pb2.ReleaseOrderForRefundResponse:
        async with self.bound_uow() as uow:
            await uow.returns.release_refund_hold(request.order_id, request.request_id)
            await uow.commit()
        return order_pb2.ReleaseOrderForRefundResponse()

    async def CheckRefundUnits(
        self, request: order_pb2.CheckRefundUnitsRequest, context: grpc.aio.ServicerContext
    ) -> order_pb2.CheckRefundUnitsResponse:
        named = [(ln.sku, ln.quantity) for ln in request.lines]
        most = await returns.check_refund_units(
            self.bound_uow, self.return_ports, request.order_id, named, request.amount.amount
        )
        return order_pb2.CheckRefundUnitsResponse(
            at_most=money_pb2.Money(amount=most, currency=request.amount.currency)
        )

    @query
    async def GetReturn(
        self, request: order_pb2.GetReturnRequest, uow: OrderUow
    ) -> order_pb2.GetReturnResponse:
        found = await returns.get_return(uow, request.id)
        return order_pb2.GetReturnResponse(order_return=return_to_proto(found))

    @query
    async def GetOrder(
        self, request: order_pb2.GetOrderRequest, uow: OrderUow
    ) -> order_pb2.GetOrderResponse:
        order = await queries.get_order(uow, request.id)
        return order_pb2.GetOrderResponse(order=order_to_proto(order))

    @query
    async def ListOrders(
        self, request: order_pb2.ListOrdersRequest, uow: OrderUow
    ) -> order_pb2.ListOrdersResponse:
        page = page_request(request)
        filters = OrderFilters(
            status=STATUSES.optional(request.status, "status"),
            channel=request.channel,
            location_id=request.location_id,
            customer_id=request.customer_id,
            fulfillment_status=FULFILLMENT_STATUSES.optional(
                request.fulfillment_status, "fulfillment_status"
            ),
            register_id=request.register_id,
            staff_id=request.staff_id,
            created_since=time_field(request, "created_since"),
            created_before=time_field(request, "created_before"),
        )
        found, token = page_of(await queries.list_orders(uow, page, filters), page)
        return order_pb2.ListOrdersResponse(
            orders=[order_to_proto(o) for o in found], next_page_token=token
        )

    @query
    async def GetOrderSettings(
        self, request: order_pb2.GetOrderSettingsRequest, uow: OrderUow
    ) -> order_pb2.GetOrderSettingsResponse:
        found = await settings.get_settings(uow, self.policy)
        return order_pb2.GetOrderSettingsResponse(settings=_settings(found))

    @mutation(order_pb2.UpdateOrderSettingsResponse)
    async def UpdateOrderSettings(
        self, request: order_pb2.UpdateOrderSettingsRequest, uow: OrderUow
    ) -> order_pb2.UpdateOrderSettingsResponse:
        change = settings.SettingsChange(
            capture_pickup_at_order=(
                request.capture_pickup_at_order
                if request.HasField("capture_pickup_at_order")
                else None
            ),
            pickup_expiry_seconds=(
                request.pickup_expiry_seconds if request.HasField("pickup_expiry_seconds") else None
            ),
            hold_seconds=request.hold_seconds if request.HasField("hold_seconds") else None,
            return_window_days=(
                request.return_window_days if request.HasField("return_window_days") else None
            ),
            return_policy_text=(
                request.return_policy_text if request.HasField("return_policy_text") else None
            ),
            receiptless_limit=(
                ReceiptlessLimit(request.receiptless_limit.amount, request.receiptless_limit.days)
                if request.HasField("receiptless_limit")
                else None
            ),
            clear_receiptless_limit=request.clear_receiptless_limit,
        )
        before, found = await settings.update_settings(
            uow, self.policy, change, request.expected_version, request.lease
        )
        return order_pb2.UpdateOrderSettingsResponse(
            settings=_settings(found), previous=_settings(before)
        )

    async def LeaseOrderSettings(
        self, request: order_pb2.LeaseOrderSettingsRequest, context: grpc.aio.ServicerContext
    ) -> order_pb2.LeaseOrderSettingsResponse:
        # Not stored per request: asked again, the lease is taken (or extended) again.
        async with self.bound_uow() as uow:
            granted, found = await settings.lease_settings(
                uow, self.policy, request.holder, request.lease_seconds
            )
            await uow.commit()
        return order_pb2.LeaseOrderSettingsResponse(granted=granted, settings=_settings(found))

    async def ReleaseOrderSettings(
        self, request: order_pb2.ReleaseOrderSettingsRequest, context: grpc.aio.ServicerContext
    ) -> order_pb2.ReleaseOrderSettingsResponse:
        async with self.bound_uow() as uow:
            await uow.settings.release(request.holder)
            await uow.commit()
        return order_pb2.ReleaseOrderSettingsResponse()


def registrar(
    uow: Callable[[], OrderUow],
    ports: CheckoutPorts,
    policy: Policy,
    return_ports: returns.ReturnPorts | None = None,
    *,
    code_key: str,
) -> Callable[[grpc.aio.Server], None]:
    def register(server: grpc.aio.Server) -> None:
        order_pb2_grpc.add_OrderServiceServicer_to_server(
            OrderApi(uow, ports, policy, return_ports, code_key=code_key), server
        )

    return register


SERVICE_NAME = order_pb2.DESCRIPTOR.services_by_name["OrderService"].full_name
