"""The inventory service running for real: gRPC in, PostgreSQL, events through JetStream."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass

import grpc
import nats
import psycopg
import pytest
import pytest_asyncio
from nats.js.api import DeliverPolicy

from pos.common.v1 import money_pb2
from pos.inventory.v1 import events_pb2 as inv_events
from pos.inventory.v1 import inventory_pb2 as inv
from pos.inventory.v1 import inventory_pb2_grpc
from pos.order.v1 import events_pb2 as order_events
from pos.order.v1 import order_pb2
from pos_devstack.natsd import LocalNats
from pos_devstack.testing import Infra
from pos_inventory import bootstrap
from pos_kit.events import EVENT_ID_HEADER, EVENT_TYPE_HEADER, MERCHANT_HEADER
from pos_kit.grpc_client import read_error
from pos_kit.streams import ensure_service_streams

pytestmark = pytest.mark.asyncio(loop_scope="session")

Stub = inventory_pb2_grpc.InventoryServiceStub


@dataclass
class Running:
    stub: Stub
    port: int
    nats: LocalNats
    runtime: object
    database_url: str


@pytest_asyncio.fixture(loop_scope="session", scope="module")
async def running(infra: Infra) -> AsyncIterator[Running]:
    # A NATS of its own, so the streams this module reads hold only its events.
    server = infra.new_nats()
    url = infra.service_database("inventory")
    runtime, service = bootstrap.build(
        bootstrap.Settings(  # type: ignore[call-arg]  # the rest comes from defaults
            database_url=url, nats_url=server.url, grpc_host="127.0.0.1", grpc_port=0
        )
    )
    await service.start(runtime.tasks())
    channel = grpc.aio.insecure_channel(f"127.0.0.1:{service.port}")
    try:
        yield Running(Stub(channel), service.port, server, runtime, url)
    finally:
        await channel.close()
        await service.stop()
        await runtime.close()
        server.stop()


def md(merchant: str = "mer_a") -> tuple[tuple[str, str], ...]:
    return (("x-merchant-id", merchant),)


def usd(amount: int) -> money_pb2.Money:
    return money_pb2.Money(amount=amount, currency="USD")


async def _location(stub: Stub, rid: str, merchant: str = "mer_a") -> str:
    answer = await stub.CreateLocation(
        inv.CreateLocationRequest(request_id=rid, name="Store", currency="USD", tax_rate_bps=825),
        metadata=md(merchant),
        timeout=5,
    )
    return str(answer.location.id)


async def _product(stub: Stub, sku: str, merchant: str = "mer_a") -> inv.Product:
    answer = await stub.CreateProduct(
        inv.CreateProductRequest(request_id=f"prod-{sku}", sku=sku, name=sku, price=usd(1000)),
        metadata=md(merchant),
        timeout=5,
    )
    product: inv.Product = answer.product
    return product


async def _receive(stub: Stub, sku: str, location: str, units: int) -> inv.StockLevel:
    answer = await stub.AdjustStock(
        inv.AdjustStockRequest(
            request_id=f"recv-{sku}-{units}",
            sku=sku,
            location_id=location,
            delta=units,
            reason=inv.ADJUSTMENT_REASON_RECEIVED,
        ),
        metadata=md(),
        timeout=5,
    )
    level: inv.StockLevel = answer.level
    return level


def _ledger(running: Running, sku: str) -> tuple[int, int, int]:
    """(sum of the ledger, on_hand, lowest on_hand the ledger ever recorded) for one SKU."""
    with psycopg.connect(running.database_url) as conn:
        ledger = conn.execute(
            "SELECT coalesce(sum(delta), 0), coalesce(min(on_hand_after), 0) FROM stock_ledger"
            " WHERE merchant_id = 'mer_a' AND sku = %s",
            (sku,),
        ).fetchone()
        on_hand = conn.execute(
            "SELECT on_hand FROM stock WHERE merchant_id = 'mer_a' AND sku = %s", (sku,)
        ).fetchone()
    assert ledger is not None and on_hand is not None
    return int(ledger[0]), int(on_hand[0]), int(ledger[1])


async def _published(running: Running, subject: str, match: object) -> bytes:
    """The payload of the first event on `subject` whose decoded form satisfies `match`."""
    nc = await nats.connect(running.nats.url)
    try:
        js = nc.jetstream()
        await ensure_service_streams(js, "inventory")
        sub = await js.subscribe(subject, ordered_consumer=True, deliver_policy=DeliverPolicy.ALL)
        deadline = time.monotonic() + 20
        while True:
            assert time.monotonic() < deadline, f"nothing matching on {subject}"
            try:
                msg = await sub.next_msg(timeout=0.5)
            except TimeoutError:  # nats' own, or asyncio's when the deadline ran out first
                continue
            if match(msg.data):  # type: ignore[operator]
                return bytes(msg.data)
    finally:
        await nc.close()


async def test_bad_input_is_refused_field_by_field(running: Running) -> None:
    cases = [
        (
            running.stub.CreateLocation,
            inv.CreateLocationRequest(request_id="bad-1", name="", currency="usd", tax_rate_bps=-1),
            {"name", "currency", "tax_rate_bps"},
        ),
        (
            running.stub.CreateLocation,
            inv.CreateLocationRequest(
                request_id="bad-2", name="Store", currency="USD", tax_rate_bps=10_001
            ),
            {"tax_rate_bps"},
        ),
        (
            running.stub.CreateProduct,
            inv.CreateProductRequest(request_id="bad-3", sku="a b", name="", price=usd(-5)),
            {"sku", "name", "price.amount"},
        ),
        (
            running.stub.CreateProduct,
            inv.CreateProductRequest(request_id="bad-4", sku="OK", name="Ok"),
            {"price.currency"},
        ),
        (
            running.stub.AdjustStock,
            inv.AdjustStockRequest(request_id="bad-5", sku="X", location_id="loc_x", delta=1),
            {"reason"},
        ),
        (
            running.stub.AdjustStock,
            inv.AdjustStockRequest(
                request_id="bad-6", reason=inv.ADJUSTMENT_REASON_CORRECTION, delta=0
            ),
            {"sku", "location_id", "delta"},
        ),
        (running.stub.GetPrices, inv.GetPricesRequest(), {"skus"}),
        (running.stub.GetStockLevels, inv.GetStockLevelsRequest(), {"skus"}),
        # An enum value this version does not know is refused, not read as some default.
        (
            running.stub.CreateLocation,
            inv.CreateLocationRequest(request_id="bad-7", name="S", currency="USD", kind=99),
            {"kind"},
        ),
        (running.stub.SearchProducts, inv.SearchProductsRequest(query="x", status=99), {"status"}),
    ]
    for call, request, fields in cases:
        with pytest.raises(grpc.aio.AioRpcError) as err:
            await call(request, metadata=md(), timeout=5)
        assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT, request
        assert {v.field for v in read_error(err.value).violations} == fields, request


async def test_each_mutation_replayed_applies_once(running: Running) -> None:
    request = inv.CreateLocationRequest(
        request_id="rep-loc", name="Replay", currency="EUR", tax_rate_bps=2000
    )
    first = await running.stub.CreateLocation(request, metadata=md("mer_rep"), timeout=5)
    again = await running.stub.CreateLocation(request, metadata=md("mer_rep"), timeout=5)
    assert again == first
    listed = await running.stub.ListLocations(
        inv.ListLocationsRequest(), metadata=md("mer_rep"), timeout=5
    )
    assert [x.id for x in listed.locations] == [first.location.id]

    product = inv.CreateProductRequest(request_id="rep-prod", sku="REP", name="R", price=usd(5))
    made = await running.stub.CreateProduct(product, metadata=md("mer_rep"), timeout=5)
    # A replay answers as the first time, not with sku_taken.
    assert await running.stub.CreateProduct(product, metadata=md("mer_rep"), timeout=5) == made

    adjust = inv.AdjustStockRequest(
        request_id="rep-adj",
        sku="REP",
        location_id=first.location.id,
        delta=7,
        reason=inv.ADJUSTMENT_REASON_RECEIVED,
    )
    for _ in range(3):
        answer = await running.stub.AdjustStock(adjust, metadata=md("mer_rep"), timeout=5)
        assert answer.level.on_hand == 7
    levels = await running.stub.GetStockLevels(
        inv.GetStockLevelsRequest(skus=["REP"]), metadata=md("mer_rep"), timeout=5
    )
    assert [x.on_hand for x in levels.levels] == [7]


async def test_a_request_id_reused_with_another_body_is_refused(running: Running) -> None:
    location = await _location(running.stub, "reuse-loc")
    await _product(running.stub, "REUSE")
    await _receive(running.stub, "REUSE", location, 4)
    reused = [
        (
            running.stub.CreateLocation,
            inv.CreateLocationRequest(
                request_id="reuse-loc", name="Other", currency="USD", tax_rate_bps=0
            ),
        ),
        (
            running.stub.CreateProduct,
            inv.CreateProductRequest(request_id="prod-REUSE", sku="REUSE2", name="x", price=usd(1)),
        ),
        (
            running.stub.AdjustStock,
            inv.AdjustStockRequest(
                request_id="recv-REUSE-4",
                sku="REUSE",
                location_id=location,
                delta=40,
                reason=inv.ADJUSTMENT_REASON_RECEIVED,
            ),
        ),
    ]
    for call, request in reused:
        with pytest.raises(grpc.aio.AioRpcError) as err:
            await call(request, metadata=md(), timeout=5)
        assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT
        assert read_error(err.value).reason == "idempotency_key_reused"
    assert _ledger(running, "REUSE")[:2] == (4, 4)


async def test_another_merchants_ids_behave_as_missing(running: Running) -> None:
    location = await _location(running.stub, "iso-loc")
    product = await _product(running.stub, "ISO")
    await _receive(running.stub, "ISO", location, 3)
    other = md("mer_iso_b")
    with pytest.raises(grpc.aio.AioRpcError) as err:
        await running.stub.GetProduct(
            inv.GetProductRequest(id=product.id), metadata=other, timeout=5
        )
    assert err.value.code() == grpc.StatusCode.NOT_FOUND
    with pytest.raises(grpc.aio.AioRpcError) as err:
        await running.stub.GetPrices(inv.GetPricesRequest(skus=["ISO"]), metadata=other, timeout=5)
    assert err.value.code() == grpc.StatusCode.NOT_FOUND
    with pytest.raises(grpc.aio.AioRpcError) as err:
        await running.stub.AdjustStock(
            inv.AdjustStockRequest(
                request_id="iso-adj",
                sku="ISO",
                location_id=location,
                delta=1,
                reason=inv.ADJUSTMENT_REASON_RECEIVED,
            ),
            metadata=other,
            timeout=5,
        )
    assert err.value.code() == grpc.StatusCode.NOT_FOUND
    levels = await running.stub.GetStockLevels(
        inv.GetStockLevelsRequest(skus=["ISO"]), metadata=other, timeout=5
    )
    assert list(levels.levels) == []
    theirs = await running.stub.ListLocations(inv.ListLocationsRequest(), metadata=other, timeout=5)
    assert list(theirs.locations) == []
    # The same sku is free for them.
    assert (await _product(running.stub, "ISO", "mer_iso_b")).id != product.id


async def test_catalog_is_paged_and_skus_are_unique(running: Running) -> None:
    merchant = md("mer_pages")
    made = [(await _product(running.stub, f"PG-{i}", "mer_pages")).id for i in range(5)]
    seen: list[str] = []
    token = ""
    while True:
        page = await running.stub.ListProducts(
            inv.ListProductsRequest(page_size=2, page_token=token), metadata=merchant, timeout=5
        )
        assert len(page.products) <= 2
        seen += [p.id for p in page.products]
        token = page.next_page_token
        if not token:
            break
    assert sorted(seen) == sorted(made) and len(seen) == 5
    with pytest.raises(grpc.aio.AioRpcError) as err:
        await running.stub.CreateProduct(
            inv.CreateProductRequest(request_id="dup", sku="PG-0", name="again", price=usd(1)),
            metadata=merchant,
            timeout=5,
        )
    assert err.value.code() == grpc.StatusCode.ALREADY_EXISTS
    assert read_error(err.value).reason == "sku_taken"
    got = await running.stub.GetProduct(
        inv.GetProductRequest(id=made[0]), metadata=merchant, timeout=5
    )
    assert (got.product.sku, got.product.price.amount) == ("PG-0", 1000)


async def test_prices_in_one_call_and_unknown_skus_named(running: Running) -> None:
    location = await _location(running.stub, "price-loc")
    await _product(running.stub, "P-MUG")
    await _product(running.stub, "P-CAP")
    prices = await running.stub.GetPrices(
        inv.GetPricesRequest(skus=["P-CAP", "P-MUG"], location_id=location),
        metadata=md(),
        timeout=5,
    )
    assert [(p.sku, p.price.amount) for p in prices.products] == [("P-CAP", 1000), ("P-MUG", 1000)]
    assert (prices.location.id, prices.location.tax_rate_bps) == (location, 825)
    with pytest.raises(grpc.aio.AioRpcError) as err:
        await running.stub.GetPrices(
            inv.GetPricesRequest(skus=["P-MUG", "NOPE-2", "NOPE-1"]), metadata=md(), timeout=5
        )
    assert err.value.code() == grpc.StatusCode.NOT_FOUND
    assert read_error(err.value).metadata["skus"] == "NOPE-1,NOPE-2"
    assert "NOPE-1" in (err.value.details() or "")


async def test_stock_levels_and_refused_decreases(running: Running) -> None:
    location = await _location(running.stub, "lvl-loc")
    await _product(running.stub, "LVL")
    await _product(running.stub, "LVL-NEVER")
    assert (await _receive(running.stub, "LVL", location, 5)).available == 5
    with pytest.raises(grpc.aio.AioRpcError) as err:
        await running.stub.AdjustStock(
            inv.AdjustStockRequest(
                request_id="lvl-too-many",
                sku="LVL",
                location_id=location,
                delta=-6,
                reason=inv.ADJUSTMENT_REASON_SOLD,  # a manual SOLD may not go negative
            ),
            metadata=md(),
            timeout=5,
        )
    assert err.value.code() == grpc.StatusCode.FAILED_PRECONDITION
    assert read_error(err.value).reason == "insufficient_stock"
    levels = await running.stub.GetStockLevels(
        inv.GetStockLevelsRequest(skus=["LVL", "LVL-NEVER"], location_id=location),
        metadata=md(),
        timeout=5,
    )
    assert [(x.sku, x.on_hand, x.reserved, x.available) for x in levels.levels] == [
        ("LVL", 5, 0, 5),
        ("LVL-NEVER", 0, 0, 0),
    ]
    assert _ledger(running, "LVL")[:2] == (5, 5)


async def test_concurrent_decreases_from_many_connections_never_oversell(
    running: Running,
) -> None:
    location = await _location(running.stub, "hot-loc")
    await _product(running.stub, "HOT")
    await _receive(running.stub, "HOT", location, 100)
    channels = [grpc.aio.insecure_channel(f"127.0.0.1:{running.port}") for _ in range(20)]
    try:

        async def take_one(i: int) -> bool:
            # 300 callers queue on one stock row through a pool of 20 connections: on a busy
            # machine the last ones wait past the pool's wait and are told `overloaded`
            # (nothing done), which a client retries with the same request_id (a retry never
            # takes twice: the ledger below would show it).
            for attempt in range(50):
                try:
                    await Stub(channels[i % len(channels)]).AdjustStock(
                        inv.AdjustStockRequest(
                            request_id=f"take-{i}",
                            sku="HOT",
                            location_id=location,
                            delta=-1,
                            reason=inv.ADJUSTMENT_REASON_DAMAGED,
                        ),
                        metadata=md(),
                        timeout=60,
                    )
                except grpc.aio.AioRpcError as exc:
                    if read_error(exc).reason == "overloaded":
                        await asyncio.sleep(0.05 * (attempt + 1))
                        continue
                    assert read_error(exc).reason == "insufficient_stock", exc
                    return False
                return True
            raise AssertionError(f"decrease {i} was refused as overloaded 50 times")

        results = await asyncio.gather(*(take_one(i) for i in range(300)))
    finally:
        await asyncio.gather(*(c.close() for c in channels))
    assert sum(results) == 100
    ledger, on_hand, lowest = _ledger(running, "HOT")
    assert (ledger, on_hand, lowest) == (0, 0, 0)


async def test_changes_are_published_through_jetstream(running: Running) -> None:
    location = await _location(running.stub, "evt-loc")
    product = await _product(running.stub, "EVT")
    await _receive(running.stub, "EVT", location, 9)
    created = inv_events.ProductCreated.FromString(
        await _published(
            running,
            "pos.inventory.v1.product_created",
            lambda data: inv_events.ProductCreated.FromString(data).product.sku == "EVT",
        )
    )
    assert created.product.id == product.id
    assert created.meta.merchant_id == "mer_a"
    changed = inv_events.StockChanged.FromString(
        await _published(
            running,
            "pos.inventory.v1.stock_changed",
            lambda data: inv_events.StockChanged.FromString(data).level.sku == "EVT",
        )
    )
    assert (changed.delta, changed.level.on_hand, changed.reason) == (
        9,
        9,
        inv.ADJUSTMENT_REASON_RECEIVED,
    )


async def test_a_confirmed_sale_delivered_twice_decrements_once_and_may_go_negative(
    running: Running,
) -> None:
    location = await _location(running.stub, "sale-loc")
    await _product(running.stub, "TEE")
    await _receive(running.stub, "TEE", location, 1)
    confirmed = order_events.OrderConfirmed(
        order=order_pb2.Order(
            id="ord_9", location_id=location, lines=[order_pb2.OrderLine(sku="TEE", quantity=3)]
        )
    )
    consumer = running.runtime.consumers[0]  # type: ignore[attr-defined]
    before = consumer.applied + consumer.duplicates
    nc = await nats.connect(running.nats.url)
    try:
        js = nc.jetstream()
        await ensure_service_streams(js, "order")
        for transport_id in ("a", "b"):  # as if the order relay published it twice
            await js.publish(
                "pos.order.v1.order_confirmed",
                confirmed.SerializeToString(),
                headers={
                    "Nats-Msg-Id": f"sale-{transport_id}",
                    EVENT_ID_HEADER: "evt_sale_9",
                    EVENT_TYPE_HEADER: "pos.order.v1.OrderConfirmed",
                    MERCHANT_HEADER: "mer_a",
                },
            )
    finally:
        await nc.close()
    deadline = time.monotonic() + 20
    while consumer.applied + consumer.duplicates < before + 2:
        assert time.monotonic() < deadline, "the sale was not consumed"
        await asyncio.sleep(0.02)
    levels = await running.stub.GetStockLevels(
        inv.GetStockLevelsRequest(skus=["TEE"], location_id=location), metadata=md(), timeout=5
    )
    assert levels.levels[0].on_hand == -2  # flagged by being negative, not hidden
    assert _ledger(running, "TEE")[:2] == (-2, -2)
    with psycopg.connect(running.database_url) as conn:
        sold = conn.execute(
            "SELECT reason, reference, delta FROM stock_ledger WHERE sku = 'TEE' AND delta < 0"
        ).fetchall()
    assert sold == [("sold", "ord_9", -3)]
