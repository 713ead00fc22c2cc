"""gRPC stubs for the five services and the dispatcher, one channel each, shared by all."""

from __future__ import annotations

from dataclasses import dataclass

import grpc

from pos.customer.v1 import customer_pb2_grpc
from pos.dispatcher.v1 import dispatcher_pb2_grpc
from pos.inventory.v1 import inventory_pb2_grpc, stock_pb2_grpc
from pos.order.v1 import order_pb2_grpc
from pos.payment.v1 import (
    gift_cards_pb2_grpc,
    payment_pb2_grpc,
    settlement_pb2_grpc,
    shifts_pb2_grpc,
)
from pos.promotion.v1 import promotion_pb2_grpc
from pos_gateway.settings import GatewaySettings
from pos_kit.grpc_client import channel


@dataclass
class Services:
    channels: dict[str, grpc.aio.Channel]
    inventory: inventory_pb2_grpc.InventoryServiceStub
    promotion: promotion_pb2_grpc.PromotionServiceStub
    customer: customer_pb2_grpc.CustomerServiceStub
    payment: payment_pb2_grpc.PaymentServiceStub
    order: order_pb2_grpc.OrderServiceStub
    dispatcher: dispatcher_pb2_grpc.DispatcherServiceStub
    # Served by the inventory process, on its channel.
    stock: stock_pb2_grpc.StockServiceStub
    # Served by the payment process, on its channel.
    gift_cards: gift_cards_pb2_grpc.GiftCardServiceStub
    settlement: settlement_pb2_grpc.SettlementServiceStub
    shifts: shifts_pb2_grpc.ShiftServiceStub

    async def close(self) -> None:
        for ch in self.channels.values():
            await ch.close()


def connect(settings: GatewaySettings) -> Services:
    timeout, tls = settings.request_timeout_seconds, settings.grpc_tls
    chans = {
        "inventory": channel(settings.inventory_addr, timeout, tls),
        "promotion": channel(settings.promotion_addr, timeout, tls),
        "customer": channel(settings.customer_addr, timeout, tls),
        "payment": channel(settings.payment_addr, timeout, tls),
        "order": channel(settings.order_addr, timeout, tls),
        "dispatcher": channel(settings.dispatcher_addr, timeout, tls),
    }
    return Services(
        chans,
        inventory_pb2_grpc.InventoryServiceStub(chans["inventory"]),
        promotion_pb2_grpc.PromotionServiceStub(chans["promotion"]),
        customer_pb2_grpc.CustomerServiceStub(chans["customer"]),
        payment_pb2_grpc.PaymentServiceStub(chans["payment"]),
        order_pb2_grpc.OrderServiceStub(chans["order"]),
        dispatcher_pb2_grpc.DispatcherServiceStub(chans["dispatcher"]),
        stock_pb2_grpc.StockServiceStub(chans["inventory"]),
        gift_cards_pb2_grpc.GiftCardServiceStub(chans["payment"]),
        settlement_pb2_grpc.SettlementServiceStub(chans["payment"]),
        shifts_pb2_grpc.ShiftServiceStub(chans["payment"]),
    )
