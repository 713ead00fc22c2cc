"""A variant's SKU is stocked like a product's own: every stock operation on the running service
accepts it, and a SKU the catalog does not sell is still a 404 naming it."""

from __future__ import annotations

from collections.abc import AsyncIterator

import grpc
import pytest
import pytest_asyncio

from pos.inventory.v1 import inventory_pb2 as inv
from pos.inventory.v1 import inventory_pb2_grpc, stock_pb2_grpc
from pos.inventory.v1 import stock_pb2 as st
from pos_devstack.testing import Infra, InProcessService, serve_in_process
from pos_kit.grpc_client import read_error

pytestmark = pytest.mark.asyncio(loop_scope="session")

# A merchant of its own: the service's database is shared with the other test modules.
MD = (("x-merchant-id", "mer_variants"),)
USD = {"amount": 1500, "currency": "USD"}


@pytest_asyncio.fixture(loop_scope="session", scope="module")
async def svc(infra: Infra) -> AsyncIterator[InProcessService]:
    async with serve_in_process("inventory", infra) as running:
        yield running


async def _location(svc: InProcessService, tag: str) -> str:
    stub = inventory_pb2_grpc.InventoryServiceStub(svc.channel)
    made = await stub.CreateLocation(
        inv.CreateLocationRequest(
            request_id=f"vloc-{tag}",
            name=f"Store {tag}",
            currency="USD",
            pickup_enabled=True,
            ship_enabled=True,
        ),
        metadata=MD,
        timeout=5,
    )
    return str(made.location.id)


async def _tee(svc: InProcessService, sku: str) -> inv.Product:
    stub = inventory_pb2_grpc.InventoryServiceStub(svc.channel)
    made = await stub.CreateProduct(
        inv.CreateProductRequest(
            request_id=f"vp-{sku}",
            sku=sku,
            name="Tee",
            price=USD,
            variants=[
                inv.ProductVariant(sku=f"{sku}-M", name="M", options={"size": "M"}),
                inv.ProductVariant(sku=f"{sku}-L", name="L", options={"size": "L"}),
            ],
        ),
        metadata=MD,
        timeout=5,
    )
    return made.product


def _adjust(rid: str, sku: str, loc: str, delta: int) -> inv.AdjustStockRequest:
    return inv.AdjustStockRequest(
        request_id=rid,
        sku=sku,
        location_id=loc,
        delta=delta,
        reason=inv.ADJUSTMENT_REASON_RECEIVED if delta > 0 else inv.ADJUSTMENT_REASON_DAMAGED,
    )


async def _level(svc: InProcessService, sku: str, loc: str) -> tuple[int, int, int]:
    stub = inventory_pb2_grpc.InventoryServiceStub(svc.channel)
    got = await stub.GetStockLevels(
        inv.GetStockLevelsRequest(skus=[sku], location_id=loc), metadata=MD, timeout=5
    )
    (level,) = got.levels
    return level.on_hand, level.reserved, level.available


async def test_a_variant_sku_is_adjusted_counted_moved_held_and_sourced(
    svc: InProcessService,
) -> None:
    await _tee(svc, "VTEE")
    here, there = await _location(svc, "here"), await _location(svc, "there")
    inventory = inventory_pb2_grpc.InventoryServiceStub(svc.channel)
    stock = stock_pb2_grpc.StockServiceStub(svc.channel)
    sku = "VTEE-M"

    received = await inventory.AdjustStock(_adjust("v-recv", sku, here, 10), metadata=MD, timeout=5)
    assert (received.level.sku, received.level.on_hand) == (sku, 10)

    counted = await stock.CountStock(
        st.CountStockRequest(
            request_id="v-count", sku=sku, location_id=here, quantity=12, expected_on_hand=10
        ),
        metadata=MD,
        timeout=5,
    )
    assert counted.level.on_hand == 12

    moved = await stock.TransferStock(
        st.TransferStockRequest(
            request_id="v-move",
            from_location_id=here,
            to_location_id=there,
            lines=[st.StockLine(sku=sku, quantity=2)],
        ),
        metadata=MD,
        timeout=5,
    )
    assert {(lv.location_id, lv.on_hand) for lv in moved.levels} == {(here, 10), (there, 2)}

    low = await stock.SetLowStockThreshold(
        st.SetLowStockThresholdRequest(request_id="v-low", sku=sku, threshold=3),
        metadata=MD,
        timeout=5,
    )
    assert (low.sku, low.threshold) == (sku, 3)

    def hold(rid: str, quantity: int) -> st.CreateReservationRequest:
        return st.CreateReservationRequest(
            request_id=rid, location_id=here, lines=[st.StockLine(sku=sku, quantity=quantity)]
        )

    held = await stock.CreateReservation(hold("v-hold-1", 4), metadata=MD, timeout=5)
    assert await _level(svc, sku, here) == (10, 4, 6)
    await stock.CommitReservation(
        st.CommitReservationRequest(request_id="v-commit", id=held.reservation.id),
        metadata=MD,
        timeout=5,
    )
    assert await _level(svc, sku, here) == (6, 0, 6)
    held = await stock.CreateReservation(hold("v-hold-2", 5), metadata=MD, timeout=5)
    released = await stock.ReleaseReservation(
        st.ReleaseReservationRequest(request_id="v-release", id=held.reservation.id),
        metadata=MD,
        timeout=5,
    )
    assert released.reservation.status == st.RESERVATION_STATUS_RELEASED
    assert await _level(svc, sku, here) == (6, 0, 6)
    # More than there is: short, with what is available, not "unknown product".
    with pytest.raises(grpc.aio.AioRpcError) as err:
        await stock.CreateReservation(hold("v-hold-3", 7), metadata=MD, timeout=5)
    assert read_error(err.value).reason == "insufficient_stock"

    sourced = await stock.ProposeSourcing(
        st.ProposeSourcingRequest(
            request_id="v-source",
            lines=[st.StockLine(sku=sku, quantity=2)],
            pickup_location_id=here,
        ),
        metadata=MD,
        timeout=5,
    )
    assert sourced.strategy == st.SOURCING_STRATEGY_PICKUP
    (allocation,) = sourced.allocations
    assert (allocation.location_id, allocation.reservation_id != "") == (here, True)
    assert await _level(svc, sku, here) == (6, 2, 4)

    history = await stock.ListStockHistory(
        st.ListStockHistoryRequest(sku=sku, location_id=here), metadata=MD, timeout=5
    )
    # Received, counted, moved out, sold from the hold.
    assert len(history.entries) == 4
    assert sum(e.delta for e in history.entries) == 6


async def test_a_sku_no_product_or_variant_has_is_still_a_404_naming_it(
    svc: InProcessService,
) -> None:
    await _tee(svc, "VKNOWN")
    here, there = await _location(svc, "nope-a"), await _location(svc, "nope-b")
    inventory = inventory_pb2_grpc.InventoryServiceStub(svc.channel)
    stock = stock_pb2_grpc.StockServiceStub(svc.channel)
    await inventory.AdjustStock(_adjust("n-recv", "VKNOWN-L", here, 5), metadata=MD, timeout=5)
    lines = [st.StockLine(sku="VKNOWN-L", quantity=1), st.StockLine(sku="VKNOWN-XXL", quantity=1)]
    calls = [
        (inventory.AdjustStock, _adjust("n-1", "VKNOWN-XXL", here, 1)),
        (
            stock.CountStock,
            st.CountStockRequest(request_id="n-2", sku="VKNOWN-XXL", location_id=here, quantity=1),
        ),
        (
            stock.TransferStock,
            st.TransferStockRequest(
                request_id="n-3", from_location_id=here, to_location_id=there, lines=lines
            ),
        ),
        (
            stock.CreateReservation,
            st.CreateReservationRequest(request_id="n-4", location_id=here, lines=lines),
        ),
        (
            stock.SetLowStockThreshold,
            st.SetLowStockThresholdRequest(request_id="n-5", sku="VKNOWN-XXL", threshold=1),
        ),
        (
            stock.ProposeSourcing,
            st.ProposeSourcingRequest(request_id="n-6", lines=lines, pickup_location_id=here),
        ),
    ]
    for call, request in calls:
        with pytest.raises(grpc.aio.AioRpcError) as err:
            await call(request, metadata=MD, timeout=5)
        assert err.value.code() == grpc.StatusCode.NOT_FOUND, request
        assert "VKNOWN-XXL" in (err.value.details() or "")
        assert "VKNOWN-L" not in (err.value.details() or "").replace("VKNOWN-XXL", "")
    # Another merchant's variant is as unknown as a made-up one.
    with pytest.raises(grpc.aio.AioRpcError) as err:
        await inventory.AdjustStock(
            _adjust("n-7", "VKNOWN-L", here, 1), metadata=(("x-merchant-id", "mer_b"),), timeout=5
        )
    assert err.value.code() == grpc.StatusCode.NOT_FOUND
    # Nothing moved or was held.
    assert await _level(svc, "VKNOWN-L", here) == (5, 0, 5)


async def test_an_archived_products_variant_is_stocked_like_its_own_sku(
    svc: InProcessService,
) -> None:
    product = await _tee(svc, "VOLD")
    here = await _location(svc, "old")
    inventory = inventory_pb2_grpc.InventoryServiceStub(svc.channel)
    await inventory.AdjustStock(_adjust("a-1", "VOLD-M", here, 3), metadata=MD, timeout=5)
    await inventory.ArchiveProduct(
        inv.ArchiveProductRequest(request_id="a-archive", id=product.id), metadata=MD, timeout=5
    )
    for rid, sku in (("a-2", "VOLD"), ("a-3", "VOLD-M")):
        written_off = await inventory.AdjustStock(
            _adjust(rid, sku, here, -1 if sku == "VOLD-M" else 1), metadata=MD, timeout=5
        )
        assert written_off.level.sku == sku
    assert await _level(svc, "VOLD-M", here) == (2, 0, 2)
