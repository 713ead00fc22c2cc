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
from google.protobuf import field_mask_pb2
from order_shop import serve_order, tee_shop

from pos.common.v1 import money_pb2
from pos.inventory.v1 import inventory_pb2, inventory_pb2_grpc
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


async def test_an_archived_product_changed_is_not_priced_and_unarchived_is_again(
    infra: Infra,
) -> None:
    """The read model a register sale is priced from while inventory is down holds only what
    is on sale: an archived product leaves it, a change to it while archived (its name) does
    not bring it back, and unarchiving it does."""
    server = infra.new_nats()
    merchant = (("x-merchant-id", "mer_archived_prices"),)
    async with AsyncExitStack() as stack:
        payment = await stack.enter_async_context(serve_in_process("payment", infra, server.url))
        inventory = await stack.enter_async_context(
            serve_in_process("inventory", infra, server.url)
        )
        order = await stack.enter_async_context(
            serve_order(infra, server.url, inventory.port, payment.port)
        )
        await tee_shop(inventory.channel, "mer_archived_prices")
        catalog = inventory_pb2_grpc.InventoryServiceStub(inventory.channel)

        def known(sku: str) -> bool:
            with psycopg.connect(order.database_url) as conn:
                row = conn.execute("SELECT 1 FROM catalog_prices WHERE sku = %s", (sku,))
                return row.fetchone() is not None

        await until(lambda: known("TEE"))
        found = await catalog.SearchProducts(
            inventory_pb2.SearchProductsRequest(sku="TEE"), metadata=merchant, timeout=5
        )
        tee = found.products[0].id
        await catalog.ArchiveProduct(
            inventory_pb2.ArchiveProductRequest(request_id=str(uuid.uuid4()), id=tee),
            metadata=merchant,
            timeout=5,
        )
        await until(lambda: not known("TEE"))
        await catalog.UpdateProduct(
            inventory_pb2.UpdateProductRequest(
                request_id=str(uuid.uuid4()),
                id=tee,
                product=inventory_pb2.ProductInput(name="T-shirt (old)"),
                update_mask=field_mask_pb2.FieldMask(paths=["name"]),
            ),
            metadata=merchant,
            timeout=5,
        )
        # A product made after the change: once its price is known, the change was heard.
        await catalog.CreateProduct(
            inventory_pb2.CreateProductRequest(
                request_id=str(uuid.uuid4()),
                sku="MARK",
                name="Marker",
                price=money_pb2.Money(amount=100, currency="USD"),
            ),
            metadata=merchant,
            timeout=5,
        )
        await until(lambda: known("MARK"))
        assert not known("TEE")

        back = await catalog.UnarchiveProduct(
            inventory_pb2.UnarchiveProductRequest(request_id=str(uuid.uuid4()), id=tee),
            metadata=merchant,
            timeout=5,
        )
        assert back.product.status == inventory_pb2.PRODUCT_STATUS_ACTIVE
        await until(lambda: known("TEE"))
    server.stop()
