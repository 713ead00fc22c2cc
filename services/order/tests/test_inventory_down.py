"""Inventory down: a register sale goes on, priced from the order service's read model (prices
from inventory's product events, the location's tax rate from its last sale), while a pickup,
which must hold stock, is a 503. Real PostgreSQL, NATS JetStream, inventory, payment and order
services in this process; the inventory service is stopped halfway."""

from __future__ import annotations

import uuid
from contextlib import AsyncExitStack

import grpc
import psycopg
import pytest
from order_shop import serve_order, tee_shop

from pos.order.v1 import order_pb2, order_pb2_grpc
from pos.payment.v1 import payment_pb2
from pos_devstack.testing import Infra, serve_in_process, until
from pos_kit.grpc_client import read_error

pytestmark = pytest.mark.asyncio(loop_scope="session")

MERCHANT = (("x-merchant-id", "mer_inv_down"),)


def _sale() -> order_pb2.CheckoutRequest:
    return order_pb2.CheckoutRequest(
        request_id=str(uuid.uuid4()),
        location_id="",
        lines=[order_pb2.CheckoutLine(sku="TEE", quantity=2)],
        tender_type=payment_pb2.TENDER_TYPE_CARD,
        card_token="tok_visa",
    )


async def test_inventory_down_register_sales_go_on_and_holds_are_refused(infra: Infra) -> None:
    server = infra.new_nats()
    async with AsyncExitStack() as stack:
        payment = await stack.enter_async_context(serve_in_process("payment", infra, server.url))
        inventory_stack = AsyncExitStack()
        inventory = await inventory_stack.enter_async_context(
            serve_in_process("inventory", infra, server.url, shutdown_grace_seconds=0.1)
        )
        order = await stack.enter_async_context(
            serve_order(infra, server.url, inventory.port, payment.port)
        )
        stub = order_pb2_grpc.OrderServiceStub(order.channel)
        location = await tee_shop(inventory.channel, "mer_inv_down")

        def prices_known() -> bool:
            with psycopg.connect(order.database_url) as conn:
                row = conn.execute("SELECT price FROM catalog_prices WHERE sku = 'TEE'").fetchone()
            return row is not None and row[0] == 2500

        await until(prices_known)  # from the product's event
        request = _sale()
        request.location_id = location
        first = await stub.Checkout(request, metadata=MERCHANT, timeout=10)
        await inventory_stack.aclose()  # inventory goes away

        request = _sale()
        request.location_id = location
        sold = await stub.Checkout(request, metadata=MERCHANT, timeout=10)
        assert sold.order.status == order_pb2.ORDER_STATUS_COMPLETED
        assert sold.order.total == first.order.total
        assert sold.payment.status == payment_pb2.PAYMENT_STATUS_CAPTURED

        with pytest.raises(grpc.aio.AioRpcError) as err:
            await stub.CreateOrder(
                order_pb2.CreateOrderRequest(
                    request_id=str(uuid.uuid4()),
                    channel="web",
                    location_id=location,
                    lines=[order_pb2.OrderLineRequest(sku="TEE", quantity=1)],
                    fulfillments=[
                        order_pb2.FulfillmentRequest(
                            type=order_pb2.FULFILLMENT_TYPE_PICKUP, location_id=location
                        )
                    ],
                ),
                metadata=MERCHANT,
                timeout=10,
            )
        assert err.value.code() == grpc.StatusCode.UNAVAILABLE
        assert read_error(err.value).reason == "inventory_unavailable"
    server.stop()
