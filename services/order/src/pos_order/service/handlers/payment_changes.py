"""What the order service does when it hears of a refund or a void made outside it."""

from __future__ import annotations

from pos_order.service.handlers.new_order import announce_change
from pos_order.service.ports import OrderUnitOfWork
from pos_order.service.saga import now


async def refund_made(
    uow: OrderUnitOfWork, order_id: str, payment_id: str, refunded_in_all: int
) -> None:
    """A refund of one of the order's payments succeeded at the payment service (a return's,
    or one made through the payments API): the order's `paid` and balance count it, a new
    version announced (`order_updated`). Nothing for a payment that is no tender of an order
    here, nor for a refund the order counted already (a return's, counted when the return
    recorded it)."""
    order = await uow.orders.get(order_id, lock=True)
    if order is not None and order.refunded_in_all(payment_id, refunded_in_all):
        order.payments_heard(now())
        await uow.orders.save(order)
        announce_change(uow, order)


async def payment_voided(
    uow: OrderUnitOfWork, order_id: str, payment_id: str, voided: int = 0
) -> None:
    """A payment of the order voided at the payment service (`voided`: what it released): its
    tender no longer pays, or no more than it captured; a new version announced
    (`order_updated`). Nothing for a void the order counts already (one its saga made)."""
    order = await uow.orders.get(order_id, lock=True)
    if order is not None and order.payment_voided(payment_id, voided):
        order.payments_heard(now())
        await uow.orders.save(order)
        announce_change(uow, order)
