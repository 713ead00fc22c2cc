"""Reads of orders."""

from __future__ import annotations

from pos_kit.errors import NotFound, raise_if, require
from pos_kit.paging import PageRequest
from pos_order.domain.model import Order
from pos_order.service.ports import OrderFilters, OrderUnitOfWork


async def get_order(uow: OrderUnitOfWork, order_id: str) -> Order:
    order = await uow.orders.get(order_id)
    if order is None:
        raise NotFound("order", order_id)
    return order


async def list_orders(
    uow: OrderUnitOfWork, page: PageRequest, filters: OrderFilters | None = None
) -> list[Order]:
    f = filters or OrderFilters()
    if f.created_since is not None and f.created_before is not None:
        # An empty window is a mistake (the two swapped), never a silent empty list.
        raise_if(
            require(
                f.created_before > f.created_since, "created_before", "must be after created_since"
            )
        )
    return await uow.orders.list(page, f)
