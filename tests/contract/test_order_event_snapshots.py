"""Every event of a ship-from-store order, in each state it passes through, fits the public
model: the dispatcher builds each snapshot with the gateway's `Order` (what GET answers), and one
that does not fit is dead-lettered as poison, so partners never hear of the order.

A shipment sent with a `destination` and no store has no store until sourcing holds its lines.
An order was once announced (`order.created`) before that, and one refused for want of stock was
kept, cancelled, with that empty store: the feed dead-lettered both events, and every list of the
merchant's orders that held one answered 500. Such rows are still in databases, and an order
cancelled before its sourcing answered (its driver gone, the resumer's) still has no store: all
are read, listed and announced as GET answers them.
"""

from __future__ import annotations

import copy
from datetime import UTC, datetime

import pytest
from pos_dispatcher.adapters.snapshots import PublicEvent, public_events

from pos.order.v1 import events_pb2
from pos_gateway.convert import to_model, to_page
from pos_gateway.schemas.orders import Order as PublicOrder
from pos_gateway.schemas.orders import OrderList
from pos_kit.money import Money
from pos_order.adapters.events import REGISTRY
from pos_order.adapters.messages import order_to_proto
from pos_order.domain.model import (
    Allocation,
    FulfillmentRequest,
    FulfillmentStatus,
    FulfillmentType,
    LineRequest,
    Order,
    OrderCreated,
    OrderLine,
    Tender,
    TenderRecord,
    TenderState,
    Totals,
    build_fulfillments,
)
from pos_order.domain.returns import OrderReturned, Return, ReturnLine, ReturnStatus

USD = "USD"
AT = datetime(2026, 12, 3, 9, 30, tzinfo=UTC)
F = FulfillmentStatus


def _ship_from_store() -> Order:
    """A web order of five T-shirts shipped to a destination, no store named: as saved."""
    lines = [OrderLine("TEE", "T-shirt", 5, Money(1000, USD), id="L1")]
    total = Money(5000, USD)
    totals = Totals(total, Money(0, USD), Money(0, USD), total)
    order = Order("ord_1", "loc_web", "cus_1", lines, totals, True, channel="web")
    wanted = [FulfillmentRequest(FulfillmentType.SHIPMENT, "", "1 Main St", (39.7, -89.6))]
    order.fulfillments = build_fulfillments("ord_1", wanted, lines, [LineRequest("TEE", 5)], 5000)
    order.created_at = order.updated_at = AT
    order.saga.announce_when_held = True  # as CreateOrder saves an order with stock to hold
    order.created(AT, announce=False)
    return order


def _told(order: Order) -> list[PublicEvent]:
    """The order's events as the dispatcher makes them public, each as it was raised (its
    snapshot is the order at that moment): integration event, bytes, public event."""
    told = []
    for event in order.events:
        outgoing = REGISTRY.to_outgoing(copy.deepcopy(event), "mer_a")
        kind = getattr(events_pb2, outgoing.event_type.rsplit(".", 1)[1])
        told += public_events(kind.FromString(outgoing.payload))
    order.events.clear()
    return told


def _stores(event: PublicEvent) -> list[str]:
    order = event.data.get("order", event.data["object"])
    return [f["location_id"] for f in order["fulfillments"]]


def test_every_event_of_a_sourced_order_in_each_state_fits_the_public_model() -> None:
    order = _ship_from_store()
    assert _told(order) == []  # not announced before its stock is held
    (shipment,) = order.fulfillments
    order.source(shipment.id, [Allocation("loc_a", [("TEE", 3)], "res_a"),
                               Allocation("loc_b", [("TEE", 2)], "res_b")])  # fmt: skip
    order.announce_if_held()
    (created,) = _told(order)
    assert created.type == "order.created" and _stores(created) == ["loc_a", "loc_b"]
    assert created.data["object"]["status"] == "pending_payment"
    cancelled_later = copy.deepcopy(order)

    paid = TenderRecord(1, Tender.CARD, 5000, "ord_1/payment/1", payment_id="pay_1")
    paid.state = TenderState.AUTHORIZED
    order.saga.tenders.append(paid)
    order.confirm(AT)
    seen = _told(order)
    for f in order.fulfillments:
        order.fulfillment_moved(f, F.PICKED, AT)
        order.fulfillment_moved(f, F.SHIPPED, AT, "UPS", f"1Z{f.id[-1]}")
        order.fulfillment_moved(f, F.DELIVERED, AT)
        seen += _told(order)
    ret = Return("ret_1", "ord_1", [ReturnLine("L1", "TEE", 1, True, "loc_a", 1000)], "damaged",
                 USD, 1000, ReturnStatus.COMPLETED, created_at=AT, completed_at=AT)  # fmt: skip
    order.events.append(OrderReturned(order, ret, 1000))
    seen += _told(order)
    cancelled_later.begin_cancel("requested")
    cancelled_later.cancelled(AT)
    seen += _told(cancelled_later)

    assert [e.type for e in seen] == [
        "order.confirmed",
        *["order.fulfillment_updated"] * 6,
        "order.completed",
        "order.returned",
        "order.cancelled",
    ]
    assert all(_stores(e) == ["loc_a", "loc_b"] for e in seen)
    # Each fulfilment's step says which fulfilment moved, and to what.
    moved = [
        (e.data["fulfillment_id"], e.data["fulfillment_status"])
        for e in seen
        if e.type == "order.fulfillment_updated"
    ]
    assert moved == [
        (f.id, s) for f in order.fulfillments for s in ("picked", "shipped", "delivered")
    ]


@pytest.mark.parametrize("reason", ["insufficient_stock", "abandoned"])
def test_an_order_whose_shipment_was_never_sourced_is_told_and_read_with_no_store(
    reason: str,
) -> None:
    """`insufficient_stock`: a refused order an earlier version kept; `abandoned`: one the
    resumer cancelled before its sourcing answered. Its store is empty, as the document says."""
    order = _ship_from_store()
    order.events.append(OrderCreated(order))  # announced before sourcing, as once it was
    (created,) = _told(order)
    assert created.type == "order.created" and _stores(created) == [""]
    order.begin_cancel(reason)
    order.cancelled(AT)
    (cancelled,) = _told(order)
    assert cancelled.type == "order.cancelled" and _stores(cancelled) == [""]

    message = order_to_proto(order)
    listed = to_page(OrderList, [message, order_to_proto(_ship_from_store())])
    assert [o.fulfillments[0].location_id for o in listed.data] == ["", ""]
    assert to_model(PublicOrder, message).cancel_reason == reason


def test_a_return_without_a_receipt_is_told_with_no_order() -> None:
    """Store credit for units with no order: `order.returned` with the return as `object`
    (as `GET /v1/returns/{id}` answers it) and `order` null."""
    ret = Return("ret_2", "", [ReturnLine("", "TEE", 1, True, "loc_a", 1000)], "no_receipt",
                 USD, 1000, ReturnStatus.COMPLETED, created_at=AT, completed_at=AT,
                 customer_id="cus_1", store_credit_gift_card_id="gc_1")  # fmt: skip
    outgoing = REGISTRY.to_outgoing(OrderReturned(None, ret), "mer_a")
    (told,) = public_events(events_pb2.OrderReturned.FromString(outgoing.payload))
    assert told.type == "order.returned"
    assert told.data["object"]["id"] == "ret_2" and told.data["object"]["order_id"] == ""
    assert told.data["object"]["store_credit_gift_card_id"] == "gc_1"
    assert told.data["order"] is None
