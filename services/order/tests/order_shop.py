"""The order service in this process beside the services it calls, and a shop to sell from."""

from __future__ import annotations

import importlib
from collections.abc import AsyncIterator
from contextlib import AbstractAsyncContextManager, AsyncExitStack, asynccontextmanager
from dataclasses import dataclass
from typing import Any

import grpc
import psycopg

from pos.common.v1 import money_pb2
from pos.inventory.v1 import inventory_pb2, inventory_pb2_grpc
from pos_devstack.natsd import free_port
from pos_devstack.testing import Infra, InProcessService, serve_in_process

# Short windows, so a crash test heals in seconds: an idle saga is the resumer's after 3 s,
# an unconfirmed order's holds last 6 s. Not shorter: a payment call answered in more than
# its 2.5 s on a loaded machine failed a sale the test needed whole (a 1 s timeout did, at a
# load of 11 on 2 cores), and the order it left was then resumed by the next case's process.
CRASH_SETTINGS: dict[str, Any] = {
    "saga_abandon_seconds": 3.0,
    "saga_sweep_seconds": 0.2,
    "payment_timeout_seconds": 2.5,
    "hold_seconds": 6,
    "shutdown_grace_seconds": 0.05,
}


@dataclass
class CrashStack:
    """Inventory and payment in this process, for order service processes started and stopped
    dead on one database (the crash tests)."""

    inventory_port: int
    payment_port: int
    inventory: grpc.aio.Channel
    order_db: str
    payment_db: str
    inventory_db: str
    nats_url: str

    def rows(self, url: str, query: str, *args: Any) -> list[tuple[Any, ...]]:
        with psycopg.connect(url) as conn:
            return list(conn.execute(query, args).fetchall())  # type: ignore[arg-type]


@asynccontextmanager
async def crash_stack(infra: Infra) -> AsyncIterator[CrashStack]:
    server = infra.new_nats()
    try:
        async with AsyncExitStack() as stack:
            inventory = await stack.enter_async_context(
                serve_in_process("inventory", infra, server.url, shutdown_grace_seconds=0.1)
            )
            # The payment reconciler settles a lost answer within a second.
            payment = await stack.enter_async_context(
                serve_in_process(
                    "payment",
                    infra,
                    server.url,
                    reconcile_after_seconds=0.5,
                    sweep_interval_seconds=0.2,
                    shutdown_grace_seconds=0.1,
                )
            )
            yield CrashStack(
                inventory.port,
                payment.port,
                inventory.channel,
                infra.service_database("order"),
                payment.database_url,
                inventory.database_url,
                server.url,
            )
    finally:
        server.stop()


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


async def serve_relay(stack: AsyncExitStack, handler: grpc.GenericRpcHandler) -> int:
    """A gRPC server on a free port passing calls through `handler` (a relay in front of a
    service, that a test slows, cuts or makes lose answers), stopped with `stack`; its port."""
    server = grpc.aio.server()
    server.add_generic_rpc_handlers((handler,))
    port = server.add_insecure_port("127.0.0.1:0")
    await server.start()
    stack.push_async_callback(server.stop, None)
    return port


async def tee_shop(inventory: grpc.aio.Channel, merchant: str, stock: int = 0) -> str:
    """The merchant's location (USD, no tax; it hands over pickups and ships) and a T-shirt at
    25.00, with `stock` of them received there; the location's id."""
    metadata = (("x-merchant-id", merchant),)
    catalog = inventory_pb2_grpc.InventoryServiceStub(inventory)
    location = await catalog.CreateLocation(
        inventory_pb2.CreateLocationRequest(
            request_id=f"{merchant}-loc",
            name="Main St",
            currency="USD",
            tax_rate_bps=0,
            pickup_enabled=True,
            ship_enabled=True,
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
    if stock:
        await catalog.AdjustStock(
            inventory_pb2.AdjustStockRequest(
                request_id=f"{merchant}-received",
                sku="TEE",
                location_id=location.location.id,
                delta=stock,
                reason=inventory_pb2.ADJUSTMENT_REASON_RECEIVED,
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
