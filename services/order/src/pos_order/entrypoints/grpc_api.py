"""pos.order.v1.OrderService: translates protobuf <-> handlers, nothing more."""

from __future__ import annotations

from collections.abc import Callable

import grpc

from pos.order.v1 import order_pb2, order_pb2_grpc
from pos.payment.v1 import payment_pb2
from pos_kit.errors import InvalidArgument
from pos_kit.money import Money
from pos_kit.paging import page_of, page_request
from pos_kit.proto_money import from_proto
from pos_kit.servicer import Servicer, across_calls, query
from pos_order.adapters.messages import TENDERS, order_to_proto
from pos_order.adapters.repository import OrderUow
from pos_order.domain.model import LineRequest, Order, Tender
from pos_order.service import handlers
from pos_order.service.ports import CheckoutCommand, CheckoutPorts, PaymentResult


def _tender(number: int) -> Tender | None:
    """None when unspecified or unknown alike: the checkout's validation then names the field
    beside every other bad one, rather than alone."""
    try:
        return TENDERS.optional(number, "tender_type")
    except InvalidArgument:
        return None


def _command(request: order_pb2.CheckoutRequest) -> CheckoutCommand:
    cash: Money | None = None
    if request.HasField("cash_tendered"):
        cash = from_proto("cash_tendered", request.cash_tendered)
    return CheckoutCommand(
        request_id=request.request_id,
        location_id=request.location_id,
        customer_id=request.customer_id,
        lines=[LineRequest(ln.sku, ln.quantity) for ln in request.lines],
        tender=_tender(request.tender_type),
        cash_tendered=cash,
        card_token=request.card_token,
    )


def _checkout_response(order: Order, payment: PaymentResult) -> order_pb2.CheckoutResponse:
    response = order_pb2.CheckoutResponse(order=order_to_proto(order))
    if isinstance(payment.raw, payment_pb2.Payment):
        response.payment.CopyFrom(payment.raw)
    return response


class OrderApi(Servicer[OrderUow], order_pb2_grpc.OrderServiceServicer):
    def __init__(self, uow: Callable[[], OrderUow], ports: CheckoutPorts) -> None:
        super().__init__(uow)
        self.ports = ports

    @across_calls(order_pb2.CheckoutResponse)
    def Checkout(
        self, request: order_pb2.CheckoutRequest
    ) -> handlers.Checkout[order_pb2.CheckoutResponse]:
        # No transaction is held while inventory, promotion and payment answer.
        return handlers.Checkout(_command(request), self.ports, _checkout_response)

    @query
    async def GetOrder(
        self, request: order_pb2.GetOrderRequest, uow: OrderUow
    ) -> order_pb2.GetOrderResponse:
        order = await handlers.get_order(uow, request.id)
        return order_pb2.GetOrderResponse(order=order_to_proto(order))

    @query
    async def ListOrders(
        self, request: order_pb2.ListOrdersRequest, uow: OrderUow
    ) -> order_pb2.ListOrdersResponse:
        page = page_request(request)
        found, token = page_of(await handlers.list_orders(uow, page), page)
        return order_pb2.ListOrdersResponse(
            orders=[order_to_proto(o) for o in found], next_page_token=token
        )


def registrar(
    uow: Callable[[], OrderUow], ports: CheckoutPorts
) -> Callable[[grpc.aio.Server], None]:
    def register(server: grpc.aio.Server) -> None:
        order_pb2_grpc.add_OrderServiceServicer_to_server(OrderApi(uow, ports), server)

    return register


SERVICE_NAME = order_pb2.DESCRIPTOR.services_by_name["OrderService"].full_name
