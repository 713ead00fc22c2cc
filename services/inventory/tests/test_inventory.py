"""Inventory: validation rules, and the running service against real PostgreSQL and NATS."""

from __future__ import annotations

import asyncio
import time

import grpc
import nats
import psycopg
import pytest

from pos.common.v1 import money_pb2
from pos.inventory.v1 import inventory_pb2 as inv
from pos.inventory.v1 import inventory_pb2_grpc
from pos.order.v1 import events_pb2 as order_events
from pos.order.v1 import order_pb2
from pos_devstack.testing import Infra, InProcessService, serve_in_process
from pos_inventory.domain.model import Adjustment, Reason, validate_adjustment, validate_product
from pos_kit.errors import InvalidArgument
from pos_kit.events import EVENT_ID_HEADER, EVENT_TYPE_HEADER, MERCHANT_HEADER
from pos_kit.grpc_client import read_error
from pos_kit.money import Money
from pos_kit.streams import ensure_service_streams

MD = (("x-merchant-id", "mer_a"),)
OTHER = (("x-merchant-id", "mer_b"),)


def test_product_and_adjustment_rules() -> None:
    with pytest.raises(InvalidArgument) as err:
        validate_product("has space", "", Money(-1, "USD"))
    assert {v.field for v in err.value.violations} == {"sku", "name", "price.amount"}
    with pytest.raises(InvalidArgument) as err:
        validate_adjustment(Adjustment("SKU", "loc_1", 0, Reason.RECEIVED))
    assert [v.field for v in err.value.violations] == ["delta"]


async def _setup(stub: inventory_pb2_grpc.InventoryServiceStub, sku: str, units: int) -> str:
    location = await stub.CreateLocation(
        inv.CreateLocationRequest(
            request_id=f"loc-{sku}", name="Store", currency="USD", tax_rate_bps=825
        ),
        metadata=MD,
        timeout=5,
    )
    await stub.CreateProduct(
        inv.CreateProductRequest(
            request_id=f"prod-{sku}",
            sku=sku,
            name=sku,
            price=money_pb2.Money(amount=1000, currency="USD"),
        ),
        metadata=MD,
        timeout=5,
    )
    if units:
        await stub.AdjustStock(
            inv.AdjustStockRequest(
                request_id=f"recv-{sku}",
                sku=sku,
                location_id=location.location.id,
                delta=units,
                reason=inv.ADJUSTMENT_REASON_RECEIVED,
            ),
            metadata=MD,
            timeout=5,
        )
    return location.location.id


def _ledger_sum(svc: InProcessService, sku: str) -> tuple[int, int]:
    with psycopg.connect(svc.database_url) as conn:
        ledger = conn.execute(
            "SELECT coalesce(sum(delta), 0) FROM stock_ledger WHERE sku = %s", (sku,)
        ).fetchone()
        on_hand = conn.execute("SELECT on_hand FROM stock WHERE sku = %s", (sku,)).fetchone()
    assert ledger is not None and on_hand is not None
    return int(ledger[0]), int(on_hand[0])


async def test_concurrent_decreases_never_oversell(infra: Infra) -> None:
    async with serve_in_process("inventory", infra) as svc:
        stub = inventory_pb2_grpc.InventoryServiceStub(svc.channel)
        location = await _setup(stub, "HOT", 100)

        async def take_one(i: int) -> bool:
            try:
                await stub.AdjustStock(
                    inv.AdjustStockRequest(
                        request_id=f"take-{i}",
                        sku="HOT",
                        location_id=location,
                        delta=-1,
                        reason=inv.ADJUSTMENT_REASON_DAMAGED,
                    ),
                    metadata=MD,
                    timeout=30,
                )
            except grpc.aio.AioRpcError as exc:
                assert read_error(exc).reason == "insufficient_stock"
                return False
            return True

        results = await asyncio.gather(*(take_one(i) for i in range(300)))
        assert sum(results) == 100
        ledger, on_hand = _ledger_sum(svc, "HOT")
        assert on_hand == 0
        assert ledger == on_hand


async def test_catalog_prices_and_levels(infra: Infra) -> None:
    async with serve_in_process("inventory", infra) as svc:
        stub = inventory_pb2_grpc.InventoryServiceStub(svc.channel)
        location = await _setup(stub, "MUG", 5)
        prices = await stub.GetPrices(
            inv.GetPricesRequest(skus=["MUG"], location_id=location), metadata=MD, timeout=5
        )
        assert [p.sku for p in prices.products] == ["MUG"]
        assert prices.location.tax_rate_bps == 825

        with pytest.raises(grpc.aio.AioRpcError) as err:
            await stub.GetPrices(inv.GetPricesRequest(skus=["MUG", "NOPE"]), metadata=MD, timeout=5)
        assert err.value.code() == grpc.StatusCode.NOT_FOUND
        assert read_error(err.value).metadata["skus"] == "NOPE"

        with pytest.raises(grpc.aio.AioRpcError) as err:
            await stub.CreateProduct(
                inv.CreateProductRequest(
                    request_id="dup",
                    sku="MUG",
                    name="Mug again",
                    price=money_pb2.Money(amount=1, currency="USD"),
                ),
                metadata=MD,
                timeout=5,
            )
        assert read_error(err.value).reason == "sku_taken"

        levels = await stub.GetStockLevels(
            inv.GetStockLevelsRequest(skus=["MUG"], location_id=location), metadata=MD, timeout=5
        )
        assert [(x.on_hand, x.available) for x in levels.levels] == [(5, 5)]
        # Another merchant sees none of it.
        theirs = await stub.ListProducts(inv.ListProductsRequest(), metadata=OTHER, timeout=5)
        assert list(theirs.products) == []
        with pytest.raises(grpc.aio.AioRpcError) as err:
            await stub.AdjustStock(
                inv.AdjustStockRequest(
                    request_id="x",
                    sku="MUG",
                    location_id=location,
                    delta=1,
                    reason=inv.ADJUSTMENT_REASON_RECEIVED,
                ),
                metadata=OTHER,
                timeout=5,
            )
        assert err.value.code() == grpc.StatusCode.NOT_FOUND


async def test_an_adjustment_replayed_applies_once(infra: Infra) -> None:
    async with serve_in_process("inventory", infra) as svc:
        stub = inventory_pb2_grpc.InventoryServiceStub(svc.channel)
        location = await _setup(stub, "CAP", 0)
        request = inv.AdjustStockRequest(
            request_id="recv-once",
            sku="CAP",
            location_id=location,
            delta=7,
            reason=inv.ADJUSTMENT_REASON_RECEIVED,
        )
        for _ in range(3):
            answer = await stub.AdjustStock(request, metadata=MD, timeout=5)
            assert answer.level.on_hand == 7
        assert _ledger_sum(svc, "CAP") == (7, 7)


async def test_a_confirmed_sale_decrements_stock_and_may_go_negative(infra: Infra) -> None:
    server = infra.new_nats()
    try:
        async with serve_in_process("inventory", infra, server.url) as svc:
            stub = inventory_pb2_grpc.InventoryServiceStub(svc.channel)
            location = await _setup(stub, "TEE", 1)
            confirmed = order_events.OrderConfirmed(
                order=order_pb2.Order(
                    id="ord_9",
                    location_id=location,
                    lines=[order_pb2.OrderLine(sku="TEE", quantity=3)],
                )
            )
            nc = await nats.connect(server.url)
            js = nc.jetstream()
            await ensure_service_streams(js, "order")
            for transport_id in ("a", "b"):  # delivered twice: applied once
                await js.publish(
                    "pos.order.v1.order_confirmed",
                    confirmed.SerializeToString(),
                    headers={
                        "Nats-Msg-Id": transport_id,
                        EVENT_ID_HEADER: "evt_sale_9",
                        EVENT_TYPE_HEADER: "pos.order.v1.OrderConfirmed",
                        MERCHANT_HEADER: "mer_a",
                    },
                )
            await nc.close()
            consumer = svc.runtime.consumers[0]
            deadline = time.monotonic() + 20
            while consumer.applied + consumer.duplicates < 2:
                assert time.monotonic() < deadline, "the sale was not consumed"
                await asyncio.sleep(0.02)
            levels = await stub.GetStockLevels(
                inv.GetStockLevelsRequest(skus=["TEE"], location_id=location),
                metadata=MD,
                timeout=5,
            )
            assert levels.levels[0].on_hand == -2  # flagged by being negative, not hidden
            assert _ledger_sum(svc, "TEE") == (-2, -2)
    finally:
        server.stop()
