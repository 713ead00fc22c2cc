"""Integration events (protobuf, per service) -> public events (a type and a JSON snapshot).

The snapshot is built by the gateway's own conversion into the gateway's own answer model,
the same two steps its `GET` route takes for the resource, so the `data.object` of an event
is what `GET` returned at that version, field for field.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from google.protobuf.descriptor import Descriptor
from google.protobuf.message import Message
from pydantic import BaseModel

from pos.customer.v1 import events_pb2 as customer_events
from pos.gateway.v1 import events_pb2 as gateway_events
from pos.inventory.v1 import events_pb2 as inventory_events
from pos.inventory.v1 import stock_events_pb2 as stock_events
from pos.order.v1 import events_pb2 as order_events
from pos.order.v1 import order_pb2
from pos.payment.v1 import events_pb2 as payment_events
from pos.payment.v1 import gift_cards_pb2 as gift_card_messages
from pos.payment.v1 import shifts_pb2 as shift_messages
from pos.promotion.v1 import events_pb2 as promotion_events
from pos.promotion.v1 import promotion_pb2
from pos_gateway.convert import to_json, to_model
from pos_gateway.schemas.catalog import Product
from pos_gateway.schemas.gift_cards import GiftCard, GiftCardMoved
from pos_gateway.schemas.orders import Order
from pos_gateway.schemas.payments import Payment, Refund, TerminalCheckout
from pos_gateway.schemas.people import Customer, PointsEntry
from pos_gateway.schemas.promotions import Coupon, Promotion
from pos_gateway.schemas.registers import Override, Register, Shift, StaffMember
from pos_gateway.schemas.returns import Return
from pos_gateway.schemas.stock import Location, Reservation, StockLevel
from pos_kit.ids import derived_id


@dataclass(frozen=True, slots=True)
class PublicEvent:
    id: str
    type: str
    resource_id: str
    occurred_at: datetime
    data: dict[str, Any]


def _object(model: type[BaseModel], message: Message) -> dict[str, Any]:
    return {"object": to_model(model, message).model_dump(mode="json")}


def _stamped(message: Any, *times: str) -> Any:
    """A shift or register as GET answers it, with its `updated_at`: one an older producer
    sent without it (an event in the stream from before the field) takes the latest of its
    other times, which is when it last changed."""
    if message.HasField("updated_at"):
        return message
    present = [getattr(message, name) for name in times if message.HasField(name)]
    if not present:
        return message
    filled = type(message)()
    filled.CopyFrom(message)
    filled.updated_at.CopyFrom(max(present, key=lambda stamp: stamp.ToNanoseconds()))
    return filled


_SHIFT_TIMES = ("closed_at", "opened_at")
_REGISTER_TIMES = ("retired_at", "paired_at", "created_at")


def _register(message: Any) -> dict[str, Any]:
    """A register as GET answers it. One an older gateway sent without a version (an event in
    the stream from before registers counted them) is at version 1, where the gateway's
    migration started every register made until then."""
    register = _stamped(message, *_REGISTER_TIMES)
    if register.version == 0:
        filled = type(register)()
        filled.CopyFrom(register)
        filled.version = 1
        register = filled
    return _object(Register, register)


def _use(m: Any) -> dict[str, Any]:
    """A coupon's use: the coupon, and beside it the order and customer ("" when the sale named
    none) it was redeemed or given back by."""
    coupon = m.coupon
    if coupon.status == promotion_pb2.COUPON_STATUS_UNSPECIFIED:
        # An older producer's event (in the stream from before coupons had a status): no
        # coupon could be deactivated then, so it was active.
        coupon = type(coupon)()
        coupon.CopyFrom(m.coupon)
        coupon.status = promotion_pb2.COUPON_STATUS_ACTIVE
    return {**_object(Coupon, coupon), "order_id": m.order_id, "customer_id": m.customer_id}


def _fulfillment_updated(m: order_events.OrderFulfillmentUpdated) -> list[Part]:
    """The order, and beside it which of its fulfilments changed and the status the change
    took it to (the words of the order's `fulfillments[]`), so a partner acts on that
    fulfilment without searching the order for it. An event from before the status was sent
    takes it from the order's snapshot."""
    data = _object(Order, m.order)
    data["fulfillment_id"] = m.fulfillment_id
    if m.fulfillment_status != order_pb2.FULFILLMENT_STATUS_UNSPECIFIED:
        status = order_pb2.FulfillmentStatus.Name(m.fulfillment_status)
        data["fulfillment_status"] = status.removeprefix("FULFILLMENT_STATUS_").lower()
    else:
        shown = [f for f in data["object"]["fulfillments"] if f["id"] == m.fulfillment_id]
        data["fulfillment_status"] = shown[0]["status"] if shown else ""
    return [("order.fulfillment_updated", m.order.id, data)]


def _level_id(level: Any) -> str:
    return f"{level.location_id}:{level.sku}"


# What each part of an order event's data is, for erasure (`pos_kit.personal`): the order is
# the object, but for order.returned, whose object is the return with the order beside it.
ORDER_EVENT_OBJECT: dict[str, Descriptor] = {"object": order_pb2.Order.DESCRIPTOR}
ORDER_EVENT_PARTS: dict[str, dict[str, Descriptor]] = {
    "order.returned": {"object": order_pb2.Return.DESCRIPTOR, "order": order_pb2.Order.DESCRIPTOR},
}


# One entry per integration event type the dispatcher reads: (public type, resource id, data).
Part = tuple[str, str, dict[str, Any]]


def _product(kind: str) -> Callable[[Any], list[Part]]:
    return lambda m: [(f"product.{kind}", m.product.id, _object(Product, m.product))]


def _reservation(kind: str, levels: bool = True) -> Callable[[Any], list[Part]]:
    # A hold moves `reserved` (and `available`) of each level it touches: partners following
    # stock see those changes as inventory.changed, after the reservation's own event. A commit
    # sells the units: each line is a ledger entry whose StockChanged already is that level's
    # inventory.changed, so its own levels would announce the same change twice.
    def parts(m: Any) -> list[Part]:
        own = (f"reservation.{kind}", m.reservation.id, _object(Reservation, m.reservation))
        if not levels:
            return [own]
        moved = [("inventory.changed", _level_id(v), _object(StockLevel, v)) for v in m.levels]
        return [own, *moved]

    return parts


def _payment(kind: str) -> Callable[[Any], list[Part]]:
    return lambda m: [(f"payment.{kind}", m.payment.id, _object(Payment, m.payment))]


def _refund(kind: str) -> Callable[[Any], list[Part]]:
    return lambda m: [(f"refund.{kind}", m.refund.id, _object(Refund, m.refund))]


def _refund_succeeded(m: payment_events.RefundSucceeded) -> list[Part]:
    """The refund, then the payment it moved (`refunded`, a new version) as it stands after
    it: `payment.updated`, so a copy of payments kept from events misses no version. An event
    from a producer that did not send the payment: the refund alone."""
    parts = _refund("succeeded")(m)
    if m.HasField("payment"):
        parts.append(("payment.updated", m.payment.id, _object(Payment, m.payment)))
    return parts


def _loyalty(m: customer_events.LoyaltyPointsEarned) -> list[Part]:
    # The accrual's entry as the points history (GET /v1/customers/{id}/points) lists it, as
    # the other point events carry theirs; `balance` (its `balance_after`) stays, as the
    # event's object carried it first. One an older producer sent without the entry (in the
    # stream from before it): the accrual as it was.
    if m.HasField("entry"):
        return [
            (
                "loyalty.points_earned",
                m.customer_id,
                {"object": {**_object(PointsEntry, m.entry)["object"], "balance": m.balance}},
            )
        ]
    accrual = to_json(m)
    for kept_out in ("meta", "entry"):
        accrual.pop(kept_out, None)
    return [("loyalty.points_earned", m.customer_id, {"object": accrual})]


def _points(kind: str) -> Callable[[Any], list[Part]]:
    return lambda m: [
        (f"loyalty.points_{kind}", m.entry.customer_id, _object(PointsEntry, m.entry))
    ]


def _low_stock(m: stock_events.LowStock) -> list[Part]:
    # The level (its SKU, location and what is available) is the object, as GET answers it;
    # the threshold it fell to or below is the SKU's setting, not the level's, so it rides
    # beside it: without it a partner could not tell how far below the alert the stock is.
    data = _object(StockLevel, m.level)
    data["threshold"] = m.threshold
    return [("inventory.low_stock", _level_id(m.level), data)]


def _merged(m: customer_events.CustomerMerged) -> list[Part]:
    # The survivor as GET answers it, and beside it the duplicate merged into it: the only
    # word a partner mirroring customers gets that the duplicate is gone (now `merged`).
    data = _object(Customer, m.winner)
    data["merged_customer_id"] = m.loser_id
    return [("customer.merged", m.winner.id, data)]


def _tier(m: customer_events.LoyaltyTierChanged) -> list[Part]:
    change = to_json(m)
    change.pop("meta", None)
    return [("loyalty.tier_changed", m.customer_id, {"object": change})]


# Public events that carry a customer's personal data: an erasure redacts them in the feed.
CUSTOMER_SNAPSHOTS = ("customer.created", "customer.updated", "customer.merged")
# Public events whose object is a points entry of the customer: an erasure keeps the entry and
# blanks its `reason`, free text (an adjustment's is typed by a person), as the customer
# service blanks it in its ledger.
POINTS_ENTRIES = (
    "loyalty.points_earned", "loyalty.points_redeemed", "loyalty.points_adjusted",
    "loyalty.points_expired",
)  # fmt: skip


MAPPERS: dict[type[Message], Callable[[Any], list[Part]]] = {
    inventory_events.LocationCreated: lambda m: [
        ("location.created", m.location.id, _object(Location, m.location))
    ],
    inventory_events.LocationUpdated: lambda m: [
        ("location.updated", m.location.id, _object(Location, m.location))
    ],
    inventory_events.ProductCreated: _product("created"),
    inventory_events.ProductUpdated: _product("updated"),
    inventory_events.ProductArchived: _product("archived"),
    inventory_events.StockChanged: lambda m: [
        ("inventory.changed", _level_id(m.level), _object(StockLevel, m.level))
    ],
    stock_events.LowStock: _low_stock,
    stock_events.ReservationCreated: _reservation("created"),
    stock_events.ReservationCommitted: _reservation("committed", levels=False),
    stock_events.ReservationReleased: _reservation("released"),
    stock_events.ReservationExpired: _reservation("expired"),
    order_events.OrderCreated: lambda m: [("order.created", m.order.id, _object(Order, m.order))],
    order_events.OrderConfirmed: lambda m: [
        ("order.confirmed", m.order.id, _object(Order, m.order))
    ],
    order_events.OrderUpdated: lambda m: [("order.updated", m.order.id, _object(Order, m.order))],
    order_events.OrderCancelled: lambda m: [
        ("order.cancelled", m.order.id, _object(Order, m.order))
    ],
    order_events.OrderCompleted: lambda m: [
        ("order.completed", m.order.id, _object(Order, m.order))
    ],
    order_events.OrderFulfillmentUpdated: _fulfillment_updated,
    # The return is the object; the order as it stands after it rides beside it (null for a
    # return without a receipt, which has none).
    order_events.OrderReturned: lambda m: [
        (
            "order.returned",
            m.order_return.id,
            {
                **_object(Return, m.order_return),
                "order": _object(Order, m.order)["object"] if m.HasField("order") else None,
            },
        )
    ],
    payment_events.PaymentAuthorized: _payment("authorized"),
    payment_events.PaymentCaptured: _payment("captured"),
    payment_events.PaymentVoided: _payment("voided"),
    payment_events.PaymentFailed: _payment("failed"),
    payment_events.PaymentUpdated: _payment("updated"),
    payment_events.RefundCreated: _refund("created"),
    payment_events.RefundSucceeded: _refund_succeeded,
    payment_events.RefundFailed: _refund("failed"),
    gift_card_messages.GiftCardActivityCreated: lambda m: [
        ("gift_card.activity_created", m.gift_card.id, _object(GiftCardMoved, m))
    ],
    # A new version of the card that wrote no activity (its customer merged away): the card
    # as GET /v1/gift-cards/{id} answers it.
    gift_card_messages.GiftCardUpdated: lambda m: [
        ("gift_card.updated", m.gift_card.id, _object(GiftCard, m.gift_card))
    ],
    shift_messages.ShiftOpened: lambda m: [
        ("shift.opened", m.shift.id, _object(Shift, _stamped(m.shift, *_SHIFT_TIMES)))
    ],
    shift_messages.ShiftClosed: lambda m: [
        ("shift.closed", m.shift.id, _object(Shift, _stamped(m.shift, *_SHIFT_TIMES)))
    ],
    gateway_events.RegisterCreated: lambda m: [
        (
            "register.created",
            m.register.id,
            _register(m.register),
        )
    ],
    gateway_events.RegisterUpdated: lambda m: [
        (
            "register.updated",
            m.register.id,
            _register(m.register),
        )
    ],
    gateway_events.RegisterPaired: lambda m: [
        (
            "register.paired",
            m.register.id,
            _register(m.register),
        )
    ],
    gateway_events.RegisterRetired: lambda m: [
        (
            "register.retired",
            m.register.id,
            _register(m.register),
        )
    ],
    gateway_events.StaffCreated: lambda m: [
        ("staff.created", m.staff.id, _object(StaffMember, m.staff))
    ],
    gateway_events.StaffUpdated: lambda m: [
        ("staff.updated", m.staff.id, _object(StaffMember, m.staff))
    ],
    gateway_events.StaffDeactivated: lambda m: [
        ("staff.deactivated", m.staff.id, _object(StaffMember, m.staff))
    ],
    gateway_events.OverrideGranted: lambda m: [
        ("override.granted", m.override.id, _object(Override, m.override))
    ],
    payment_events.TerminalCheckoutUpdated: lambda m: [
        ("terminal_checkout.updated", m.checkout.id, _object(TerminalCheckout, m.checkout))
    ],
    promotion_events.PromotionCreated: lambda m: [
        ("promotion.created", m.promotion.id, _object(Promotion, m.promotion))
    ],
    promotion_events.PromotionUpdated: lambda m: [
        ("promotion.updated", m.promotion.id, _object(Promotion, m.promotion))
    ],
    promotion_events.PromotionEnded: lambda m: [
        ("promotion.ended", m.promotion.id, _object(Promotion, m.promotion))
    ],
    # A tombstone: the id only (a partner mirroring promotions drops it).
    promotion_events.PromotionDeleted: lambda m: [
        ("promotion.deleted", m.promotion_id, {"object": {"id": m.promotion_id}})
    ],
    promotion_events.CouponRedeemed: lambda m: [("coupon.redeemed", m.coupon.id, _use(m))],
    promotion_events.CouponReleased: lambda m: [("coupon.released", m.coupon.id, _use(m))],
    customer_events.CustomerCreated: lambda m: [
        ("customer.created", m.customer.id, _object(Customer, m.customer))
    ],
    customer_events.CustomerUpdated: lambda m: [
        ("customer.updated", m.customer.id, _object(Customer, m.customer))
    ],
    customer_events.LoyaltyPointsEarned: _loyalty,
    customer_events.CustomerMerged: _merged,
    # A tombstone: the id only.
    customer_events.CustomerErased: lambda m: [
        ("customer.erased", m.customer_id, {"object": {"id": m.customer_id}})
    ],
    customer_events.LoyaltyPointsRedeemed: _points("redeemed"),
    customer_events.LoyaltyPointsAdjusted: _points("adjusted"),
    customer_events.LoyaltyPointsExpired: _points("expired"),
    customer_events.LoyaltyTierChanged: _tier,
}

# The streams the dispatcher reads, and the message types of each.
SOURCES: dict[str, list[type[Message]]] = {}
for _kind in MAPPERS:
    SOURCES.setdefault(_kind.DESCRIPTOR.full_name.split(".")[1], []).append(_kind)


def public_events(message: Message) -> list[PublicEvent]:
    """The public events of one integration event, in the order a partner should see them. The
    first keeps the integration event's id; the others get ids derived from it, so the same
    integration event always yields the same public ids (a redelivery is recognised)."""
    meta = getattr(message, "meta")  # noqa: B009 - every integration event has one
    occurred = meta.occurred_at.ToDatetime(tzinfo=UTC)
    millis = int(occurred.timestamp() * 1000)
    out = []
    for i, (kind, resource, data) in enumerate(MAPPERS[type(message)](message)):
        event_id = meta.event_id if i == 0 else derived_id("evt", millis, meta.event_id, str(i))
        out.append(PublicEvent(event_id, kind, resource, occurred, data))
    return out
