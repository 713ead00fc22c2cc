"""What a register's shift report counts besides money, from other services' events: the
discounts of the orders confirmed at the register (the order service's `order_confirmed`,
which names the register since orders record it) and the managers' overrides granted there
(the gateway's `override_granted`)."""

from __future__ import annotations

from pos.gateway.v1 import events_pb2 as gateway_events
from pos.order.v1 import events_pb2 as order_events
from pos_payment.adapters.repository import PaymentUow
from pos_payment.adapters.shifts import SqlShiftRepository


def discounted_at_a_register(message: order_events.OrderConfirmed) -> bool:
    """Most orders need no transaction here: only a register's with a discount."""
    return bool(message.order.register_id) and message.order.discount_total.amount > 0


async def on_order_confirmed(uow: PaymentUow, message: order_events.OrderConfirmed) -> None:
    order = message.order
    if not order.register_id or order.discount_total.amount <= 0:
        return
    await SqlShiftRepository(uow.conn, uow.merchant_id).note_activity(
        "discount", order.id, order.register_id, order.discount_total.amount,
        order.discount_total.currency,
    )  # fmt: skip


async def on_override_granted(uow: PaymentUow, message: gateway_events.OverrideGranted) -> None:
    granted = message.override
    if not granted.register_id:
        return
    await SqlShiftRepository(uow.conn, uow.merchant_id).note_activity(
        "override", granted.id, granted.register_id
    )
