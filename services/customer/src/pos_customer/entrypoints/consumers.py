"""Events this service consumes: a confirmed order earns points and enters the customer's
purchase history."""

from __future__ import annotations

from collections.abc import Iterable
from datetime import UTC

from pos.order.v1 import events_pb2 as order_events
from pos.order.v1 import order_pb2
from pos_customer.adapters.repository import CustomerUow
from pos_customer.domain.loyalty import Sale, SaleLine
from pos_customer.service import points


def names_a_customer(
    message: order_events.OrderConfirmed
    | order_events.OrderCancelled
    | order_events.OrderReturned
    | order_events.OrderFulfillmentUpdated,
) -> bool:
    """Only a sale to a known customer earns points; the rest need no transaction here. Of a
    fulfilment's updates, only its cancellation or expiry matters (it says what it gave back)."""
    if isinstance(message, order_events.OrderFulfillmentUpdated):
        return bool(message.order.customer_id) and message.HasField("goods_given_back")
    return bool(message.order.customer_id)


def _paid_for(order: order_pb2.Order) -> list[SaleLine]:
    """Each line at what was paid for it before tax: its total less its discounts, and less
    its own tax where the prices contain it (a VAT store: the order's total is its subtotal
    less its discounts); a line priced before lines kept these is at its total."""
    inclusive = bool(order.tax_total.amount) and (
        order.total.amount == order.subtotal.amount - order.discount_total.amount
    )
    return [
        SaleLine(
            line.sku,
            line.line_total.amount
            - line.discount_total.amount
            - (line.tax_total.amount if inclusive else 0),
            line.HasField("gift_card"),
            line.id,
            line.quantity,
        )
        for line in order.lines
    ]


def sale_of(message: order_events.OrderConfirmed) -> Sale:
    order = message.order
    return Sale(
        order_id=order.id,
        customer_id=order.customer_id,
        location_id=order.location_id,
        currency=order.total.currency,
        total_minor=order.total.amount,
        tax_minor=order.tax_total.amount,
        lines=tuple(_paid_for(order)),
        # The tenders that paid it, for a program that earns on some tenders only (an order
        # from before orders named them carries none, and earns as before).
        # Cash taken while the payment service was away paid too, though in no payment yet:
        # without it such a sale would name no tender and earn on every program.
        tenders=(*order.tender_types, *(t.tender_type for t in order.tenders_to_record)),
        tender_amounts=(
            *order.tender_amounts,
            *(t.amount.amount for t in order.tenders_to_record),
        ),
        ordered_at=order.created_at.ToDatetime(tzinfo=UTC)
        if order.HasField("created_at")
        else None,
        # The event's time is the confirmation's (written in the transaction that confirmed
        # the order): when the sale was made, whenever it is heard.
        sold_at=message.meta.occurred_at.ToDatetime(tzinfo=UTC)
        if message.HasField("meta") and message.meta.HasField("occurred_at")
        else None,
    )


async def on_order_confirmed(uow: CustomerUow, message: order_events.OrderConfirmed) -> None:
    await points.credit_sale(uow, sale_of(message))


async def on_order_cancelled(uow: CustomerUow, message: order_events.OrderCancelled) -> None:
    """A confirmed order cancelled afterwards gives back what it earned (and what it redeemed),
    once: the saga may have asked for the same reversal already (ReverseOrderPoints), and an
    order cancelled before it was confirmed earned nothing."""
    await points.reverse_cancelled(uow, message.order.id)


def _units(lines: Iterable[tuple[str, int]]) -> dict[str, int] | None:
    """Units by line id; None when there are none or one has no id (the event cannot say)."""
    units: dict[str, int] = {}
    for line_id, quantity in lines:
        if not line_id:
            return None
        units[line_id] = units.get(line_id, 0) + quantity
    return units or None


async def on_order_returned(uow: CustomerUow, message: order_events.OrderReturned) -> None:
    """Returned units take back the points they earned (see points.reverse_returned): by the
    return's lines, what each earned at the sale (an excluded SKU or a gift card nothing; an
    exchange's credited units count, as the new order earns on them; money refunded outside a
    return takes nothing). For an order whose lines were not recorded at its earn: the share of
    the order's goods its returns took back so far, or, in an event from before it said so, the
    order's total less what its tenders still hold."""
    order = message.order
    if not order.id:
        return  # a return without a receipt: store credit, no order that earned points
    if message.HasField("goods_total"):
        total, returned = message.goods_total.amount, message.goods_returned.amount
    else:
        total, returned = order.total.amount, order.total.amount - order.paid.amount
    units = _units((ln.line_id, ln.quantity) for ln in message.order_return.lines)
    await points.reverse_returned(uow, order.id, message.order_return.id, total, returned, units)


async def on_fulfillment_updated(
    uow: CustomerUow, message: order_events.OrderFulfillmentUpdated
) -> None:
    """A fulfilment cancelled or expired after the order earned: its goods never reached the
    customer, so the points its lines' units earned go back, as a return's do (or, for an order
    whose lines were not recorded, the share of the goods by the same growing figure returns
    use: what the order's returns and its cancelled fulfilments took back so far)."""
    if not message.HasField("goods_given_back"):
        return
    mine = message.fulfillment_id
    units = _units((ln.id, ln.quantity) for ln in message.order.lines if ln.fulfillment_id == mine)
    await points.reverse_returned(
        uow,
        message.order.id,
        mine,
        message.goods_total.amount,
        message.goods_given_back.amount,
        units,
    )
