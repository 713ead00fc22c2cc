"""An order line's taxes as they were charged, with the real services (PostgreSQL, NATS,
inventory, payment and order in this process): each tax's rate and whether it compounded on
the taxes listed before it are kept with the line, so the store's settings changing after the
sale do not change what the order (and its receipt) says it was charged."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack
from dataclasses import dataclass
from typing import Any

import psycopg
import pytest
import pytest_asyncio
from google.protobuf import field_mask_pb2
from order_shop import serve_order
from psycopg.types.json import Jsonb

from pos.common.v1 import money_pb2
from pos.inventory.v1 import inventory_pb2, inventory_pb2_grpc
from pos.order.v1 import order_pb2, order_pb2_grpc
from pos_devstack.testing import Infra, serve_in_process

pytestmark = pytest.mark.asyncio(loop_scope="session")

MERCHANT = (("x-merchant-id", "mer_line_tax"),)
GST = inventory_pb2.LocationTax(name="gst", rate_bps=500)
QST = inventory_pb2.LocationTax(name="qst", rate_bps=1000, compound=True)


@dataclass
class Shop:
    orders: order_pb2_grpc.OrderServiceStub
    catalog: inventory_pb2_grpc.InventoryServiceStub
    order_db: str
    store: str


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
            made = await catalog.CreateLocation(
                inventory_pb2.CreateLocationRequest(
                    request_id="line-tax-store",
                    name="Rue Principale",
                    currency="USD",
                    taxes=[GST, QST],
                ),
                metadata=MERCHANT,
                timeout=5,
            )
            await catalog.CreateProduct(
                inventory_pb2.CreateProductRequest(
                    request_id="line-tax-tee",
                    sku="TEE",
                    name="Tee",
                    price=money_pb2.Money(amount=10000, currency="USD"),
                ),
                metadata=MERCHANT,
                timeout=5,
            )
            yield Shop(
                order_pb2_grpc.OrderServiceStub(order.channel),
                catalog,
                order.database_url,
                made.location.id,
            )
    finally:
        server.stop()


async def _taxes(shop: Shop, order_id: str) -> list[tuple[str, int, int, bool | None]]:
    found = await shop.orders.GetOrder(
        order_pb2.GetOrderRequest(id=order_id), metadata=MERCHANT, timeout=5
    )
    (line,) = found.order.lines
    return [
        (t.name, t.rate_bps, t.amount.amount, t.compound if t.HasField("compound") else None)
        for t in line.taxes
    ]


async def test_a_line_keeps_whether_each_tax_compounded_as_it_was_charged(shop: Shop) -> None:
    """qst 10 % compounding on gst 5 %: 10 % of 100.00 + 5.00. The store then stops
    compounding it: the order still says it compounded, as it was charged; a line saved before
    the flag was kept says nothing of it (its receipt reads the store's settings)."""
    made = await shop.orders.CreateOrder(
        order_pb2.CreateOrderRequest(
            request_id=str(uuid.uuid4()),
            channel="web",
            location_id=shop.store,
            lines=[order_pb2.OrderLineRequest(sku="TEE", quantity=1)],
            draft=True,
        ),
        metadata=MERCHANT,
        timeout=20,
    )
    order_id = made.order.id
    charged = [("gst", 500, 500, False), ("qst", 1000, 1050, True)]
    assert await _taxes(shop, order_id) == charged

    plain = inventory_pb2.LocationTax(name="qst", rate_bps=1000)
    await shop.catalog.UpdateLocation(
        inventory_pb2.UpdateLocationRequest(
            request_id=str(uuid.uuid4()),
            id=shop.store,
            taxes=[GST, plain],
            update_mask=field_mask_pb2.FieldMask(paths=["taxes"]),
        ),
        metadata=MERCHANT,
        timeout=5,
    )
    assert await _taxes(shop, order_id) == charged

    # Saved before the flag was kept: unset, not a guess.
    with psycopg.connect(shop.order_db) as conn:
        row = conn.execute("SELECT lines FROM orders WHERE id = %s", (order_id,)).fetchone()
        assert row is not None
        lines: list[dict[str, Any]] = row[0]
        assert [ln.get("tax_compound") for ln in lines] == [{"gst": False, "qst": True}]
        for ln in lines:
            del ln["tax_compound"]
        conn.execute("UPDATE orders SET lines = %s WHERE id = %s", (Jsonb(lines), order_id))
    assert await _taxes(shop, order_id) == [("gst", 500, 500, None), ("qst", 1000, 1050, None)]
