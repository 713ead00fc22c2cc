"""The cart preview of a shipment naming no store, with the real services (PostgreSQL, NATS,
inventory, payment and order in this process): taxed where inventory's sourcing proposes to
ship it from now, holding nothing, as the same cart sold is taxed where sourcing holds it; no
store can ship it: the sale's refusal."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack
from dataclasses import dataclass

import grpc
import pytest
import pytest_asyncio
from order_shop import serve_order

from pos.common.v1 import money_pb2
from pos.inventory.v1 import inventory_pb2, inventory_pb2_grpc
from pos.order.v1 import order_pb2, order_pb2_grpc
from pos_devstack.testing import Infra, serve_in_process
from pos_kit.grpc_client import read_error

pytestmark = pytest.mark.asyncio(loop_scope="session")

MERCHANT = (("x-merchant-id", "mer_sourced_preview"),)
DESTINATION = inventory_pb2.GeoPoint(latitude=39.78, longitude=-89.65)


@dataclass
class Shop:
    orders: order_pb2_grpc.OrderServiceStub
    catalog: inventory_pb2_grpc.InventoryServiceStub
    seller: str  # 10 %, far from the parcel's destination, no stock
    warehouse: str  # 5 %, near it, 3 T-shirts


async def _location(
    catalog: inventory_pb2_grpc.InventoryServiceStub,
    name: str,
    tax: int,
    geo: inventory_pb2.GeoPoint,
) -> str:
    made = await catalog.CreateLocation(
        inventory_pb2.CreateLocationRequest(
            request_id=f"sourced-preview-{name}",
            name=name,
            currency="USD",
            tax_rate_bps=tax,
            geo=geo,
            ship_enabled=True,
        ),
        metadata=MERCHANT,
        timeout=5,
    )
    return str(made.location.id)


@pytest_asyncio.fixture(loop_scope="session", scope="module")
async def shop(infra: Infra) -> AsyncIterator[Shop]:
    server = infra.new_nats()
    try:
        async with AsyncExitStack() as stack:
            inventory = await stack.enter_async_context(
                serve_in_process("inventory", infra, server.url)
            )
            payment = await stack.enter_async_context(
                serve_in_process("payment", infra, server.url)
            )
            order = await stack.enter_async_context(
                serve_order(infra, server.url, inventory.port, payment.port)
            )
            catalog = inventory_pb2_grpc.InventoryServiceStub(inventory.channel)
            far = inventory_pb2.GeoPoint(latitude=47.0, longitude=-122.0)
            seller = await _location(catalog, "Seller", 1000, far)
            warehouse = await _location(catalog, "Warehouse", 500, DESTINATION)
            await catalog.CreateProduct(
                inventory_pb2.CreateProductRequest(
                    request_id="sourced-preview-tee",
                    sku="TEE",
                    name="Tee",
                    price=money_pb2.Money(amount=2500, currency="USD"),
                ),
                metadata=MERCHANT,
                timeout=5,
            )
            await catalog.AdjustStock(
                inventory_pb2.AdjustStockRequest(
                    request_id="sourced-preview-received",
                    sku="TEE",
                    location_id=warehouse,
                    delta=3,
                    reason=inventory_pb2.ADJUSTMENT_REASON_RECEIVED,
                ),
                metadata=MERCHANT,
                timeout=5,
            )
            yield Shop(order_pb2_grpc.OrderServiceStub(order.channel), catalog, seller, warehouse)
    finally:
        server.stop()


def _lines(quantity: int) -> list[order_pb2.OrderLineRequest]:
    return [order_pb2.OrderLineRequest(sku="TEE", quantity=quantity)]


SHIPMENT = order_pb2.FulfillmentRequest(
    type=order_pb2.FULFILLMENT_TYPE_SHIPMENT, ship_to="1 Main St", destination=DESTINATION
)


async def _available(shop: Shop) -> int:
    found = await shop.catalog.GetStockLevels(
        inventory_pb2.GetStockLevelsRequest(skus=["TEE"], location_id=shop.warehouse),
        metadata=MERCHANT,
        timeout=5,
    )
    return sum(level.on_hand - level.reserved for level in found.levels)


async def test_the_preview_of_a_sourced_shipment_is_taxed_where_its_sale_is(shop: Shop) -> None:
    preview = await shop.orders.CalculateCart(
        order_pb2.CalculateCartRequest(
            location_id=shop.seller, channel="web", lines=_lines(2), fulfillments=[SHIPMENT]
        ),
        metadata=MERCHANT,
        timeout=20,
    )
    # 2 x 25.00 at the warehouse's 5 % (the selling store's 10 % would be 5.00).
    assert (preview.subtotal.amount, preview.tax_total.amount, preview.total.amount) == (
        5000, 250, 5250,
    )  # fmt: skip
    assert [(t.name, t.rate_bps) for t in preview.lines[0].taxes] == [("tax", 500)]
    assert await _available(shop) == 3  # nothing held

    sold = await shop.orders.CreateOrder(
        order_pb2.CreateOrderRequest(
            request_id=str(uuid.uuid4()),
            channel="web",
            location_id=shop.seller,
            lines=_lines(2),
            fulfillments=[SHIPMENT],
        ),
        metadata=MERCHANT,
        timeout=20,
    )
    assert [f.location_id for f in sold.order.fulfillments] == [shop.warehouse]
    order = sold.order
    assert (order.subtotal, order.tax_total, order.total) == (
        preview.subtotal, preview.tax_total, preview.total,
    )  # fmt: skip
    assert [list(ln.taxes) for ln in order.lines] == [list(ln.taxes) for ln in preview.lines]

    # One left: no store can ship two, and the preview says so as the sale would.
    with pytest.raises(grpc.aio.AioRpcError) as refused:
        await shop.orders.CalculateCart(
            order_pb2.CalculateCartRequest(
                location_id=shop.seller, channel="web", lines=_lines(2), fulfillments=[SHIPMENT]
            ),
            metadata=MERCHANT,
            timeout=20,
        )
    assert read_error(refused.value).reason == "insufficient_stock"
