"""A sourcing that loses the race for the units it proposed sources again.

A sourcing reads the levels, proposes where to ship from, then holds there. Another write
may take those units in between: the sourcing is then proposed again on the levels as they
now are (another store, a split, or `unfulfillable` with what is short), as a sourcing made a
moment later would be, never refused for want of units the proposal no longer counts on.

The race is forced, not hoped for: a connection holds an uncommitted hold on the nearest
store's row, so the sourcing stands at its own hold there until that one commits."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator
from typing import Any

import grpc
import psycopg
import pytest
import pytest_asyncio
from test_sku_stock_race import stands_on

from pos.inventory.v1 import inventory_pb2 as inv
from pos.inventory.v1 import inventory_pb2_grpc, stock_pb2_grpc
from pos.inventory.v1 import stock_pb2 as st
from pos_devstack.testing import Infra, InProcessService, serve_in_process
from pos_kit.grpc_client import read_error
from pos_kit.ids import new_id

pytestmark = pytest.mark.asyncio(loop_scope="session")

MERCHANT = "mer_sourcingrace"
MD = (("x-merchant-id", MERCHANT),)


@pytest_asyncio.fixture(loop_scope="session", scope="module")
async def svc(infra: Infra) -> AsyncIterator[InProcessService]:
    async with serve_in_process("inventory", infra) as running:
        yield running


async def _store(stub: Any, name: str, latitude: float) -> str:
    made = await stub.CreateLocation(
        inv.CreateLocationRequest(
            request_id=new_id("req"),
            name=name,
            currency="USD",
            ship_enabled=True,
            geo=inv.GeoPoint(latitude=latitude, longitude=-89.0),
        ),
        metadata=MD,
        timeout=5,
    )
    return str(made.location.id)


async def _receive(stub: Any, sku: str, location_id: str, units: int) -> None:
    await stub.AdjustStock(
        inv.AdjustStockRequest(
            request_id=new_id("req"),
            sku=sku,
            location_id=location_id,
            delta=units,
            reason=inv.ADJUSTMENT_REASON_RECEIVED,
        ),
        metadata=MD,
        timeout=5,
    )


async def _outcome(call: Any) -> Any:
    try:
        return await call
    except grpc.aio.AioRpcError as exc:
        return read_error(exc)


@pytest.mark.parametrize("far_units", [2, 0])
async def test_a_sourcing_outrun_for_its_units_sources_again(
    svc: InProcessService, far_units: int
) -> None:
    """Two stores ship, 2 units each (or none at the far one). A sourcing of 2 proposes the
    near store; before its hold there, another hold takes the near store's 2 units. The
    sourcing is proposed again: the far store ships them, held there; with none there, the
    answer is `unfulfillable`, nothing held. Before, it was refused FAILED_PRECONDITION
    `insufficient_stock` though the far store had the units."""
    catalog = inventory_pb2_grpc.InventoryServiceStub(svc.channel)
    sku = f"RACE-{new_id('x')[-8:]}".upper()
    await catalog.CreateProduct(
        inv.CreateProductRequest(
            request_id=new_id("req"), sku=sku, name="Tee", price={"amount": 100, "currency": "USD"}
        ),
        metadata=MD,
        timeout=5,
    )
    near = await _store(catalog, "Near", 40.0)
    far = await _store(catalog, "Far", 42.0)
    await _receive(catalog, sku, near, 2)
    if far_units:
        await _receive(catalog, sku, far, far_units)
    stub = stock_pb2_grpc.StockServiceStub(svc.channel)
    ask = st.ProposeSourcingRequest(
        request_id=new_id("req"),
        lines=[st.StockLine(sku=sku, quantity=2)],
        destination=inv.GeoPoint(latitude=40.0, longitude=-89.0),
    )
    async with (
        await psycopg.AsyncConnection.connect(svc.database_url) as other,
        await psycopg.AsyncConnection.connect(svc.database_url, autocommit=True) as watcher,
    ):
        # Another till's hold of the near store's 2 units, not yet committed.
        await other.execute(
            "INSERT INTO reservations (merchant_id, id, location_id, status, lines, expires_at)"
            " VALUES (%s, %s, %s, 'active', %s, now() + interval '1 hour')",
            (MERCHANT, new_id("res"), near, json.dumps([[sku, 2]])),
        )
        await other.execute(
            "UPDATE stock SET reserved = reserved + 2"
            " WHERE merchant_id = %s AND sku = %s AND location_id = %s",
            (MERCHANT, sku, near),
        )
        going = asyncio.ensure_future(_outcome(stub.ProposeSourcing(ask, metadata=MD, timeout=30)))
        waiter = await stands_on(watcher, other.info.backend_pid, going)
        assert waiter is not None, f"the sourcing did not wait for the near store: {going.result()}"
        await other.commit()
        started = time.monotonic()
        sourced = await going
        assert time.monotonic() - started < 10

    assert isinstance(sourced, st.ProposeSourcingResponse), sourced
    levels = await catalog.GetStockLevels(
        inv.GetStockLevelsRequest(skus=[sku]), metadata=MD, timeout=5
    )
    reserved = {level.location_id: level.reserved for level in levels.levels}
    if far_units:
        assert sourced.strategy == st.SOURCING_STRATEGY_SINGLE
        (allocation,) = sourced.allocations
        assert allocation.location_id == far
        assert allocation.reservation_id
        assert reserved == {near: 2, far: 2}
    else:
        assert sourced.strategy == st.SOURCING_STRATEGY_UNFULFILLABLE
        assert list(sourced.allocations) == []
        assert [(line.sku, line.quantity) for line in sourced.short] == [(sku, 2)]
        assert reserved == {near: 2}
