"""The order service in this process beside the services it calls, and a shop to sell from."""

from __future__ import annotations

import importlib
from collections.abc import AsyncIterator
from contextlib import AbstractAsyncContextManager, AsyncExitStack, asynccontextmanager
from typing import Any

import grpc
import psycopg

from pos.common.v1 import money_pb2
from pos.inventory.v1 import inventory_pb2, inventory_pb2_grpc
from pos_devstack.natsd import free_port
from pos_devstack.testing import Infra, InProcessService, serve_in_process


@asynccontextmanager
async def serve_order_on(
    database_url: str,
    nats_url: str,
    inventory_port: int,
    payment_port: int,
    **settings: Any,
) -> AsyncIterator[InProcessService]:
    """The order service on a database that already has its data: what a restarted process
    finds. Nothing of an earlier process's memory is carried over."""
    bootstrap = importlib.import_module("pos_order.bootstrap")
    config = bootstrap.Settings(
        database_url=database_url,
        nats_url=nats_url,
        grpc_host="127.0.0.1",
        grpc_port=0,
        inventory_addr=f"127.0.0.1:{inventory_port}",
        payment_addr=f"127.0.0.1:{payment_port}",
        customer_addr=f"127.0.0.1:{free_port()}",
        promotion_addr=f"127.0.0.1:{free_port()}",
        **settings,
    )
    runtime, server = bootstrap.build(config)
    await server.start(runtime.tasks())
    channel = grpc.aio.insecure_channel(f"127.0.0.1:{server.port}")
    try:
        yield InProcessService(channel, runtime, database_url, server.port)
    finally:
        await channel.close()
        await server.stop()
        await runtime.close()


def serve_order(
    infra: Infra,
    nats_url: str,
    inventory_port: int,
    payment_port: int,
    customer_port: int | None = None,
    promotion_port: int | None = None,
    **settings: Any,
) -> AbstractAsyncContextManager[InProcessService]:
    """Without a promotion service, promotion is away (nothing listens at its address): sales
    go on at list price, as documented. Without a customer service, checkouts here name no
    customer."""
    return serve_in_process(
        "order",
        infra,
        nats_url,
        inventory_addr=f"127.0.0.1:{inventory_port}",
        payment_addr=f"127.0.0.1:{payment_port}",
        customer_addr=f"127.0.0.1:{customer_port or free_port()}",
        promotion_addr=f"127.0.0.1:{promotion_port or free_port()}",
        **settings,
    )


async def serve_all(
    stack: AsyncExitStack, infra: Infra, nats_url: str, *services: str
) -> list[InProcessService]:
    """The named services in this process, on this NATS server, until the stack closes."""
    return [
        await stack.enter_async_context(serve_in_process(name, infra, nats_url))
        for name in services
    ]


async def tee_shop(inventory: grpc.aio.Channel, merchant: str) -> str:
    """The merchant's location (USD, no tax) and a T-shirt at 25.00; the location's id."""
    metadata = (("x-merchant-id", merchant),)
    catalog = inventory_pb2_grpc.InventoryServiceStub(inventory)
    location = await catalog.CreateLocation(
        inventory_pb2.CreateLocationRequest(
            request_id=f"{merchant}-loc", name="Main St", currency="USD", tax_rate_bps=0
        ),
        metadata=metadata,
        timeout=5,
    )
    await catalog.CreateProduct(
        inventory_pb2.CreateProductRequest(
            request_id=f"{merchant}-tee",
            sku="TEE",
            name="T-shirt",
            price=money_pb2.Money(amount=2500, currency="USD"),
        ),
        metadata=metadata,
        timeout=5,
    )
    return location.location.id


def payments_for(payment_db: str, order_id: str) -> int:
    """How many payments the payment service recorded for the order."""
    with psycopg.connect(payment_db) as conn:
        row = conn.execute(
            "SELECT count(*) FROM payments WHERE order_id = %s", (order_id,)
        ).fetchone()
    assert row is not None
    return int(row[0])
