"""Domain objects <-> pos.order.v1 protobuf messages."""

from __future__ import annotations

from pos.order.v1 import order_pb2
from pos.payment.v1 import payment_pb2
from pos_kit.enums import ProtoEnum
from pos_kit.money import Money
from pos_kit.proto_money import to_proto
from pos_order.domain.model import (
    FulfillmentStatus,
    FulfillmentType,
    Order,
    OrderLine,
    OrderStatus,
    Tender,
)
from pos_order.domain.pricing import PricingWarning, pricing_warnings
from pos_order.domain.returns import Return, SettlementOutcome
from pos_order.service.pricing import PricedCart

STATUSES = ProtoEnum(OrderStatus, order_pb2.OrderStatus)
TENDERS = ProtoEnum(Tender, payment_pb2.TenderType)
FULFILLMENT_TYPES = ProtoEnum(FulfillmentType, order_pb2.FulfillmentType)
FULFILLMENT_STATUSES = ProtoEnum(FulfillmentStatus, order_pb2.FulfillmentStatus)
# A pickup's deadline is shown while it waits to be collected.
WAITING_PICKUP = (FulfillmentStatus.RESERVED, FulfillmentStatus.READY_FOR_PICKUP)
OUTCOMES = ProtoEnum(SettlementOutcome, order_pb2.SettlementOutcome)


def warnings_to_proto(warnings: list[PricingWarning]) -> list[order_pb2.PricingWarning]:
    return [order_pb2.PricingWarning(code=w.code, message=w.message) for w in warnings]


def line_to_proto(ln: OrderLine) -> order_pb2.OrderLine:
    cur = ln.unit_price.currency
    return order_pb2.OrderLine(
        sku=ln.sku,
        name=ln.name,
        quantity=ln.quantity,
        unit_price=to_proto(ln.unit_price),
        line_total=to_proto(ln.line_total),
        fulfillment_id=ln.fulfillment_id,
        discount_total=to_proto(Money(ln.discount, cur)),
        tax_total=to_proto(Money(ln.tax, cur)),
        tax_category=ln.tax_category,
        discounts=[
            order_pb2.LineDiscount(
                promotion_id=d.promotion_id,
                amount=to_proto(Money(d.amount, cur)),
                reason=d.reason,
                requested_by=d.requested_by,
            )
            for d in ln.discounts
        ],
        taxes=[
            order_pb2.LineTax(
                name=name,
                amount=to_proto(Money(amount, cur)),
                rate_bps=ln.tax_rates.get(name, 0),
                # Unset on a line priced before it was kept.
                compound=ln.tax_compound.get(name),
            )
            for name, amount in ln.taxes
        ],
    )


def order_to_proto(o: Order) -> order_pb2.Order:
    cur = o.currency
    msg = order_pb2.Order(
        id=o.id,
        location_id=o.location_id,
        customer_id=o.customer_id,
        lines=[line_to_proto(ln) for ln in o.lines],
        subtotal=to_proto(o.totals.subtotal),
        discount_total=to_proto(o.totals.discount),
        tax_total=to_proto(o.totals.tax),
        total=to_proto(o.totals.total),
        status=STATUSES.to_proto(o.status),
        discounts_applied=o.discounts_applied,
        payment_id=o.payment_id,
        channel=o.channel,
        version=o.version,
        notes=o.notes,
        metadata=o.metadata,
        cancel_reason=o.cancel_reason,
        payment_ids=o.payment_ids,
        tender_types=o.tender_types,
        tender_amounts=o.tender_amounts,
        paid=to_proto(Money(o.paid, cur)),
        cancelled_total=to_proto(Money(o.cancelled_total, cur)),
        register_id=o.register_id,
        staff_id=o.staff_id,
        points_redeemed=o.saga.points,
        warnings=warnings_to_proto(o.warnings),
    )
    if o.saga.exchange_of:
        msg.exchange_of, msg.exchange_return_id = o.saga.exchange_of, o.saga.exchange_return_id
        msg.exchange_credit.CopyFrom(to_proto(Money(o.saga.credit, cur)))
    for t in o.tenders_to_record:
        taken = msg.tenders_to_record.add(
            tender_type=t.tender.value,
            amount=to_proto(Money(t.amount, cur)),
            refusal=t.record_refused,
        )
        if t.cash_tendered is not None:
            taken.cash_tendered.CopyFrom(to_proto(Money(t.cash_tendered, cur)))
            taken.change_due.CopyFrom(to_proto(Money(t.cash_tendered - t.amount, cur)))
    for line, ln in zip(msg.lines, o.lines, strict=True):
        line.id = ln.id
        if ln.gift_card:
            line.gift_card.gift_card_id = ln.gift_card_id
            line.gift_card.code_last4 = ln.gift_card_last4
    for f in o.fulfillments:
        out = msg.fulfillments.add(
            id=f.id,
            type=FULFILLMENT_TYPES.to_proto(f.type),
            status=FULFILLMENT_STATUSES.to_proto(f.status),
            location_id=f.location_id,
            reservation_id=f.reservation_id,
            carrier=f.carrier,
            tracking_number=f.tracking_number,
            amount=to_proto(Money(f.amount, cur)),
            captured=to_proto(Money(f.captured, cur)),
            refunded=to_proto(Money(f.refunded, cur)),
            ship_to=f.ship_to,
        )
        if f.destination is not None:
            out.destination.latitude, out.destination.longitude = f.destination
        if f.type is FulfillmentType.PICKUP and f.expires_at and f.status in WAITING_PICKUP:
            out.expires_at.FromDatetime(f.expires_at)
    for use in o.saga.coupons.uses:
        msg.coupons.add(
            coupon_id=use.coupon_id,
            promotion_id=use.promotion_id,
            code_hint=use.code_hint,
            status=o.saga.coupons.step.value,
        )
    for change in o.timeline:
        step = msg.timeline.add(status=change.status, reason=change.reason)
        step.at.FromDatetime(change.at)
    if o.created_at is not None:
        msg.created_at.FromDatetime(o.created_at)
    if o.updated_at is not None:
        msg.updated_at.FromDatetime(o.updated_at)
    return msg


def cart_to_proto(cart: PricedCart) -> order_pb2.CalculateCartResponse:
    cur = cart.location.currency
    t = cart.totals
    return order_pb2.CalculateCartResponse(
        lines=[line_to_proto(ln) for ln in cart.lines],
        discounts=[
            order_pb2.CartDiscount(
                promotion_id=d.promotion_id,
                amount=to_proto(Money(d.amount, cur)),
                reason=d.reason,
                level=d.level,
                requested_by=d.requested_by,
            )
            for d in cart.quote.discounts
        ],
        subtotal=to_proto(t.subtotal),
        discount_total=to_proto(t.discount),
        tax_total=to_proto(t.tax),
        total=to_proto(t.total),
        discounts_applied=cart.quote.applied,
        rejected_coupons=[
            order_pb2.RejectedCoupon(code_index=r.index, reason=r.reason, message=r.message)
            for r in cart.quote.rejected
        ],
        tax_inclusive=cart.location.tax_table.inclusive,
        warnings=warnings_to_proto(pricing_warnings(cart.quote.applied)),
    )


def return_to_proto(r: Return) -> order_pb2.Return:
    cur = r.currency
    msg = order_pb2.Return(
        id=r.id,
        order_id=r.order_id,
        lines=[
            order_pb2.ReturnLine(
                line_id=ln.line_id,
                sku=ln.sku,
                quantity=ln.quantity,
                restock=ln.restock,
                location_id=ln.location_id,
                amount=to_proto(Money(ln.amount, cur)),
            )
            for ln in r.lines
        ],
        reason=r.reason,
        override_reason=r.override_reason,
        amount=to_proto(Money(r.amount, cur)),
        status=r.status.value,
        customer_id=r.customer_id,
        store_credit_gift_card_id=r.store_credit_gift_card_id,
        register_id=r.register_id,
        staff_id=r.staff_id,
        shift_id=r.shift_id,
        refunds=[
            order_pb2.ReturnRefund(
                refund_id=x.refund_id,
                payment_id=x.payment_id,
                amount=to_proto(Money(x.amount, cur)),
                status=x.status,
            )
            for x in r.refunds
        ],
    )
    if r.exchange_order_id:
        msg.exchange_order_id = r.exchange_order_id
        msg.credited.CopyFrom(to_proto(Money(r.credited, cur)))
    msg.refusal_code = r.refusal
    if r.settlement is not None:
        s = r.settlement
        msg.settlement.CopyFrom(
            order_pb2.ReturnSettlement(
                outcome=OUTCOMES.to_proto(s.outcome),
                amount=to_proto(Money(s.amount, cur)),
                reference=s.reference,
                reason=s.reason,
                settled_by=s.settled_by,
            )
        )
        if s.tender:
            msg.settlement.tender_type = TENDERS.to_proto(Tender(s.tender))
        if s.settled_at is not None:
            msg.settlement.settled_at.FromDatetime(s.settled_at)
    if r.created_at is not None:
        msg.created_at.FromDatetime(r.created_at)
    if r.completed_at is not None:
        msg.completed_at.FromDatetime(r.completed_at)
    if r.updated_at is not None:
        msg.updated_at.FromDatetime(r.updated_at)
    return msg
