"""Every return of an order, read page by page: a refund's check of its lines and a receipt
count all of them, however many the order has (the list RPC pages, as the public list does)."""

from __future__ import annotations

from pos.order.v1 import order_pb2
from pos_gateway.clients import Services
from pos_kit.paging import MAX_PAGE_SIZE


async def order_returns(svc: Services, order_id: str) -> list[order_pb2.Return]:
    found: list[order_pb2.Return] = []
    token = ""
    while True:
        page = await svc.order.ListReturns(
            order_pb2.ListReturnsRequest(
                order_id=order_id, page_size=MAX_PAGE_SIZE, page_token=token
            )
        )
        found += page.returns
        token = page.next_page_token
        if not token:
            return found
