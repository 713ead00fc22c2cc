"""pos.order.v1.OrderService: translates protobuf <-> handlers, nothing more."""

from __future__ import annotations

from collections.abc import Callable

import grpc

from pos.order.v1 import order_pb2, order_pb2_grpc
from pos.payment.v1 import payment_pb2
from pos_kit.context import current_merchant
from pos_kit.idempotency import Claim, once_across_calls
from pos_kit.money import Money
from pos_kit.paging import decode_token, encode_token, page_size
from pos_kit.proto_money import from_proto
from pos_order.adapters.messages import order_to_proto
from pos_order.adapters.repository import OrderUow
from pos_order.domain.model import LineRequest, Tender, validate_checkout
from pos_order.service import handlers
from pos_order.service.ports import (
    Catalog,
    CheckoutCommand,
    CustomerLookup,
    Discounts,
    Payments,
)

_TENDERS = {payment_pb2.TENDER_TYPE_CASH: Tender.CASH, payment_pb2.TENDER_TYPE_CARD: Tender.CARD}


def _command(request: order_pb2.CheckoutRequest) -> CheckoutCommand:
    cash: Money | None = None
    if request.HasField("cash_tendered"):
        cash = from_proto("cash_tendered", request.cash_tendered)
    return CheckoutCommand(
        request_id=request.request_id,
        location_id=request.location_id,
        customer_id=request.customer_id,
        lines=[LineRequest(ln.sku, ln.quantity) for ln in request.lines],
        tender=_TENDERS.get(request.tender_type),
        cash_tendered=cash,
        card_token=request.card_token,
    )


class OrderApi(order_pb2_grpc.OrderServiceServicer):
    def __init__(
        self,
        uow: Callable[[], OrderUow],
        catalog: Catalog,
        discounts: Discounts,
        payments: Payments,
        customers: CustomerLookup,
    ) -> None:
        self._uow = uow
        self._catalog = catalog
        self._discounts = discounts
        self._payments = payments
        self._customers = customers

    async def Checkout(
        self, request: order_pb2.CheckoutRequest, context: grpc.aio.ServicerContext
    ) -> order_pb2.CheckoutResponse:
        cmd = _command(request)
        # Bad input is refused before a request id is claimed: nothing to undo.
        validate_checkout(cmd.location_id, cmd.lines, cmd.tender)
        merchant = current_merchant()

        def new_uow() -> OrderUow:
            return self._uow().bind(merchant)

        async def read(uow: OrderUow) -> bool:
            return await handlers.is_known_customer(uow, cmd.customer_id)

        async def call(claim: Claim, known_customer: bool) -> handlers.Sale:
            return await handlers.sell(
                claim.derived_id("ord"),
                known_customer,
                self._catalog,
                self._discounts,
                self._payments,
                self._customers,
                cmd,
            )

        async def record(uow: OrderUow, sale: handlers.Sale) -> order_pb2.CheckoutResponse:
            order = await handlers.record_sale(uow, sale)
            response = order_pb2.CheckoutResponse(order=order_to_proto(order))
            if isinstance(sale.payment.raw, payment_pb2.Payment):
                response.payment.CopyFrom(sale.payment.raw)
            return response

        # No transaction is held while inventory, promotion and payment answer.
        return await once_across_calls(
            new_uow, "Checkout", request, order_pb2.CheckoutResponse, read, call, record
        )

    async def GetOrder(
        self, request: order_pb2.GetOrderRequest, context: grpc.aio.ServicerContext
    ) -> order_pb2.GetOrderResponse:
        async with self._uow().bind(current_merchant()) as uow:
            order = await handlers.get_order(uow, request.id)
        return order_pb2.GetOrderResponse(order=order_to_proto(order))

    async def ListOrders(
        self, request: order_pb2.ListOrdersRequest, context: grpc.aio.ServicerContext
    ) -> order_pb2.ListOrdersResponse:
        limit = page_size(request.page_size)
        async with self._uow().bind(current_merchant()) as uow:
            found = await handlers.list_orders(uow, limit + 1, decode_token(request.page_token))
        page = found[:limit]
        token = encode_token(page[-1].id) if len(found) > limit else ""
        return order_pb2.ListOrdersResponse(
            orders=[order_to_proto(o) for o in page], next_page_token=token
        )


SERVICE_NAME = order_pb2.DESCRIPTOR.services_by_name["OrderService"].full_name
