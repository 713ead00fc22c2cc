"""Order flows on in-memory fakes, each one path the state machine may take only rarely: a
pickup captured at confirmation then cancelled (refunded, back in stock), a pickup expiring
after its capture, a split shipment capturing each share, short stock holding nothing.
The machine's rules and invariants drive and check them (test_lifecycle_machine.py)."""

from __future__ import annotations

from typing import Any

from test_lifecycle_machine import UNITS, OrderLifecycle

from pos_order.domain.model import FulfillmentStatus, OrderStatus


class Pick:
    """Stands for hypothesis' `data`: draws the value it was given."""

    def __init__(self, value: Any) -> None:
        self.value = value

    def draw(self, _: object) -> Any:
        return self.value


def _check(m: OrderLifecycle) -> None:
    m.money_is_what_the_customer_keeps_paying_for()
    m.stock_is_held_sold_or_released()


def _paid_pickup(m: OrderLifecycle, quantity: int = 2) -> str:
    m.create("pickup", quantity)
    order_id = m.order_ids[-1]
    m.tender(Pick(m.order(order_id)), "tok_visa", False)
    _check(m)
    return order_id


def test_a_pickup_captured_at_confirmation_then_cancelled_is_refunded_and_restocked() -> None:
    m = OrderLifecycle()
    m.merchant_settings(True)
    order_id = _paid_pickup(m)
    m.confirm(Pick(m.order(order_id)))
    assert m.payments.kept(order_id) == m.order(order_id).totals.total.amount
    assert m.stock.on_hand["TEE"] == UNITS - 2
    _check(m)
    m.cancel(Pick(m.order(order_id)))
    assert m.order(order_id).status is OrderStatus.CANCELLED
    assert m.payments.kept(order_id) == 0 and m.payments.held(order_id) == 0
    assert m.stock.on_hand["TEE"] == UNITS and m.stock.available("TEE") == UNITS
    _check(m)


def test_a_pickup_expiring_after_its_capture_is_refunded_and_restocked() -> None:
    m = OrderLifecycle()
    m.merchant_settings(True)
    order_id = _paid_pickup(m)
    m.confirm(Pick(m.order(order_id)))
    m.expire(Pick(m.order(order_id)))
    order = m.order(order_id)
    assert order.status is OrderStatus.CANCELLED and order.cancel_reason == "expired"
    assert m.payments.kept(order_id) == 0
    assert m.stock.on_hand["TEE"] == UNITS
    _check(m)


def test_a_pickup_captured_at_hand_over_expires_with_its_authorisation_voided() -> None:
    m = OrderLifecycle()
    order_id = _paid_pickup(m)
    m.confirm(Pick(m.order(order_id)))
    assert m.payments.kept(order_id) == 0 and m.payments.held(order_id) > 0
    m.expire(Pick(m.order(order_id)))
    assert m.payments.held(order_id) == 0
    _check(m)


def test_a_split_shipment_captures_each_share_at_shipment() -> None:
    m = OrderLifecycle()
    m.create("split", 2)
    order_id = m.order_ids[-1]
    m.tender(Pick(m.order(order_id)), "tok_visa", True)  # part of it
    m.tender(Pick(m.order(order_id)), "tok_declined", False)  # declined: still pending
    assert m.order(order_id).status is OrderStatus.PENDING_PAYMENT
    m.tender(Pick(m.order(order_id)), "tok_visa", False)  # the rest
    m.confirm(Pick(m.order(order_id)))
    first, second = m.order(order_id).fulfillments
    m.step(Pick((order_id, first.id, FulfillmentStatus.SHIPPED)))
    assert m.payments.kept(order_id) == first.amount
    _check(m)
    m.step(Pick((order_id, second.id, FulfillmentStatus.SHIPPED)))
    for f in (first, second):
        m.step(Pick((order_id, f.id, FulfillmentStatus.DELIVERED)))
    order = m.order(order_id)
    assert order.status is OrderStatus.COMPLETED
    assert m.payments.kept(order_id) == order.totals.total.amount
    _check(m)


def test_short_stock_refuses_the_order_and_holds_nothing() -> None:
    m = OrderLifecycle()
    _paid_pickup(m, quantity=3)
    m.create("pickup", 3)
    m.create("shipment", 1)  # refused: the three left are held
    assert m.order(m.order_ids[-1]).status is OrderStatus.CANCELLED
    assert m.order(m.order_ids[-1]).cancel_reason == "insufficient_stock"
    assert m.stock.available("TEE") == 0
    _check(m)
