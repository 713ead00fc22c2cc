"""Reservations on the running service: holds race for the last units and never oversell."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from typing import Any

import grpc
import psycopg
import pytest
import pytest_asyncio

from pos.inventory.v1 import inventory_pb2 as inv
from pos.inventory.v1 import inventory_pb2_grpc, stock_pb2_grpc
from pos.inventory.v1 import stock_pb2 as st
from pos_devstack.testing import Infra, InProcessService, serve_in_process
from pos_inventory.entrypoints.sweeper import sweep_once
from pos_kit.grpc_client import read_error

pytestmark = pytest.mark.asyncio(loop_scope="session")

MD = (("x-merchant-id", "mer_a"),)


@pytest_asyncio.fixture(loop_scope="session", scope="module")
async def svc(infra: Infra) -> AsyncIterator[InProcessService]:
    # A quick sweep, so the test of expiry on its own waits a fraction of a second.
    async with serve_in_process("inventory", infra, reservation_sweep_seconds=0.2) as running:
        yield running


def stock_stub(channel: grpc.aio.Channel) -> stock_pb2_grpc.StockServiceStub:
    return stock_pb2_grpc.StockServiceStub(channel)


async def _setup(svc: InProcessService, units: dict[str, int], tag: str) -> str:
    stub = inventory_pb2_grpc.InventoryServiceStub(svc.channel)
    loc = await stub.CreateLocation(
        inv.CreateLocationRequest(request_id=f"loc-{tag}", name="Store", currency="USD"),
        metadata=MD,
        timeout=5,
    )
    for sku, quantity in units.items():
        await stub.CreateProduct(
            inv.CreateProductRequest(
                request_id=f"p-{sku}", sku=sku, name=sku, price={"amount": 100, "currency": "USD"}
            ),
            metadata=MD,
            timeout=5,
        )
        await stub.AdjustStock(
            inv.AdjustStockRequest(
                request_id=f"r-{sku}-{tag}",
                sku=sku,
                location_id=loc.location.id,
                delta=quantity,
                reason=inv.ADJUSTMENT_REASON_RECEIVED,
            ),
            metadata=MD,
            timeout=5,
        )
    return str(loc.location.id)


def _hold(
    rid: str, loc: str, lines: list[tuple[str, int]], ttl: int = 600
) -> st.CreateReservationRequest:
    return st.CreateReservationRequest(
        request_id=rid,
        location_id=loc,
        lines=[st.StockLine(sku=s, quantity=q) for s, q in lines],
        ttl_seconds=ttl,
    )


def _db(svc: InProcessService, query: str, *args: object) -> list[tuple[object, ...]]:
    with psycopg.connect(svc.database_url) as conn:
        return conn.execute(query, args).fetchall()  # type: ignore[arg-type]


def _invariants(svc: InProcessService, sku: str, loc: str) -> tuple[int, int]:
    """(on_hand, reserved), after checking them against the ledger and the active holds."""
    ((on_hand, reserved),) = _db(
        svc,
        "SELECT on_hand, reserved FROM stock WHERE merchant_id='mer_a' AND sku=%s"
        " AND location_id=%s",
        sku,
        loc,
    )
    ((ledger,),) = _db(
        svc,
        "SELECT coalesce(sum(delta), 0) FROM stock_ledger WHERE merchant_id='mer_a'"
        " AND sku=%s AND location_id=%s",
        sku,
        loc,
    )
    ((held,),) = _db(
        svc,
        "SELECT coalesce(sum((l->>1)::bigint), 0) FROM reservations r,"
        " jsonb_array_elements(r.lines) l WHERE r.merchant_id='mer_a' AND r.status='active'"
        " AND r.location_id=%s AND l->>0 = %s",
        loc,
        sku,
    )
    assert ledger == on_hand
    assert held == reserved
    assert 0 <= int(reserved) <= int(on_hand)  # type: ignore[call-overload]
    return int(on_hand), int(reserved)  # type: ignore[call-overload]


async def _hold_as_a_till_would(
    stub: stock_pb2_grpc.StockServiceStub, request: st.CreateReservationRequest
) -> str:
    """ "held" or "out" (insufficient stock); a hold shed while every database connection was
    busy (a loaded machine) is retried with the same request_id, which applies at most once."""
    for attempt in range(50):
        try:
            await stub.CreateReservation(request, metadata=MD, timeout=60)
            return "held"
        except grpc.aio.AioRpcError as err:
            if err.code() == grpc.StatusCode.UNAVAILABLE:
                assert read_error(err).reason == "overloaded", err.details()
                await asyncio.sleep(0.05 * (attempt + 1))
                continue
            assert err.code() == grpc.StatusCode.FAILED_PRECONDITION, err.details()
            assert read_error(err).reason == "insufficient_stock"
            return "out"
    raise AssertionError(f"hold {request.request_id} was shed 50 times")


async def test_a_thousand_concurrent_holds_on_a_hundred_units_sell_exactly_a_hundred(
    svc: InProcessService,
) -> None:
    loc = await _setup(svc, {"HOT": 100}, "hot")
    # Many client connections, as many tills and web sessions would open.
    channels = [grpc.aio.insecure_channel(f"127.0.0.1:{svc.port}") for _ in range(20)]
    try:

        async def one(i: int) -> str:
            stub = stock_stub(channels[i % len(channels)])
            return await _hold_as_a_till_would(stub, _hold(f"h-{i}", loc, [("HOT", 1)]))

        outcomes = await asyncio.gather(*(one(i) for i in range(1000)))
    finally:
        for channel in channels:
            await channel.close()
    assert outcomes.count("held") == 100
    assert outcomes.count("out") == 900
    assert _invariants(svc, "HOT", loc) == (100, 100)


async def test_multi_line_holds_are_all_or_nothing_under_the_same_race(
    svc: InProcessService,
) -> None:
    loc = await _setup(svc, {"PAIR-A": 50, "PAIR-B": 30}, "pair")
    stub = stock_stub(svc.channel)

    async def one(i: int) -> str:
        # Half name the lines in the other order: the service sorts them, so none deadlock.
        lines = [("PAIR-A", 1), ("PAIR-B", 1)] if i % 2 else [("PAIR-B", 1), ("PAIR-A", 1)]
        return await _hold_as_a_till_would(stub, _hold(f"pair-{i}", loc, lines))

    outcomes = await asyncio.gather(*(one(i) for i in range(200)))
    assert outcomes.count("held") == 30
    assert _invariants(svc, "PAIR-A", loc) == (50, 30)
    assert _invariants(svc, "PAIR-B", loc) == (30, 30)


async def test_commit_sells_release_gives_back_and_each_applies_once(
    svc: InProcessService,
) -> None:
    loc = await _setup(svc, {"CYCLE": 10}, "cycle")
    stub = stock_stub(svc.channel)
    made = await stub.CreateReservation(_hold("c-1", loc, [("CYCLE", 4)]), metadata=MD, timeout=5)
    again = await stub.CreateReservation(_hold("c-1", loc, [("CYCLE", 4)]), metadata=MD, timeout=5)
    assert again == made  # the same request id: the same hold, held once
    assert _invariants(svc, "CYCLE", loc) == (10, 4)
    rid = made.reservation.id
    committed = await stub.CommitReservation(
        st.CommitReservationRequest(request_id="c-2", id=rid), metadata=MD, timeout=5
    )
    assert committed.reservation.status == st.RESERVATION_STATUS_COMMITTED
    await stub.CommitReservation(
        st.CommitReservationRequest(request_id="c-2", id=rid), metadata=MD, timeout=5
    )
    assert _invariants(svc, "CYCLE", loc) == (6, 0)
    with pytest.raises(grpc.aio.AioRpcError) as err:
        await stub.ReleaseReservation(
            st.ReleaseReservationRequest(request_id="c-3", id=rid), metadata=MD, timeout=5
        )
    assert read_error(err.value).reason == "reservation_committed"

    other = await stub.CreateReservation(_hold("c-4", loc, [("CYCLE", 6)]), metadata=MD, timeout=5)
    released = await stub.ReleaseReservation(
        st.ReleaseReservationRequest(request_id="c-5", id=other.reservation.id),
        metadata=MD,
        timeout=5,
    )
    assert released.reservation.status == st.RESERVATION_STATUS_RELEASED
    assert [lv.available for lv in released.levels] == [6]
    with pytest.raises(grpc.aio.AioRpcError) as err:
        await stub.CommitReservation(
            st.CommitReservationRequest(request_id="c-6", id=other.reservation.id),
            metadata=MD,
            timeout=5,
        )
    assert read_error(err.value).reason == "reservation_released"
    assert _invariants(svc, "CYCLE", loc) == (6, 0)
    with pytest.raises(grpc.aio.AioRpcError) as err:
        await stub.GetReservation(
            st.GetReservationRequest(id=rid), metadata=(("x-merchant-id", "mer_b"),), timeout=5
        )
    assert err.value.code() == grpc.StatusCode.NOT_FOUND


async def test_a_commit_sells_every_line_in_two_statements_on_the_stock(
    svc: InProcessService, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A commit changes its lines' rows as a sale does: the rows locked in one statement,
    then changed with their ledger entries in another, the levels answered in the hold's line
    order. Three statements a line (until 2026-12-05) kept the first row locked through all of
    them, and every other hold and sale of that SKU at the store queued behind it (the web
    pickup flow's profile: 30 ms a web order waiting on those rows)."""
    loc = await _setup(svc, {"TWO-A": 10, "TWO-B": 10, "TWO-C": 10}, "two")
    stub = stock_stub(svc.channel)
    lines = [("TWO-A", 1), ("TWO-B", 2), ("TWO-C", 3)]
    made = await stub.CreateReservation(_hold("two-1", loc, lines), metadata=MD, timeout=5)
    database = svc.database_url.rsplit("/", 1)[1]
    on_stock: list[str] = []
    execute = psycopg.AsyncCursor.execute

    async def counted(cursor: psycopg.AsyncCursor[Any], query: Any, *args: Any, **kw: Any) -> Any:
        text = query if isinstance(query, str) else str(query)
        if cursor.connection.info.dbname == database and " stock " in f" {text} ".replace("(", " "):
            on_stock.append(text)
        return await execute(cursor, query, *args, **kw)

    monkeypatch.setattr(psycopg.AsyncCursor, "execute", counted)
    committed = await stub.CommitReservation(
        st.CommitReservationRequest(request_id="two-2", id=made.reservation.id),
        metadata=MD,
        timeout=5,
    )
    monkeypatch.undo()
    assert len(on_stock) == 2, on_stock
    assert [(lv.sku, lv.on_hand, lv.reserved) for lv in committed.levels] == [
        ("TWO-A", 9, 0),
        ("TWO-B", 8, 0),
        ("TWO-C", 7, 0),
    ]
    for sku, quantity in lines:
        assert _invariants(svc, sku, loc) == (10 - quantity, 0)
    ledger = _db(
        svc,
        "SELECT sku, quantity, on_hand_after FROM stock_ledger WHERE reference = %s ORDER BY sku",
        made.reservation.id,
    )
    assert ledger == [("TWO-A", -1, 9), ("TWO-B", -2, 8), ("TWO-C", -3, 7)]


async def test_bad_holds_are_refused_field_by_field_and_hold_nothing(
    svc: InProcessService,
) -> None:
    loc = await _setup(svc, {"BAD": 5}, "bad")
    stub = stock_stub(svc.channel)
    cases = [
        (_hold("b-1", loc, []), {"lines"}),
        (_hold("b-2", loc, [("BAD", 0), ("BAD", 1)]), {"lines[0].quantity", "lines[1].sku"}),
        (_hold("b-3", "", [("BAD", 1)], ttl=-5), {"location_id", "ttl_seconds"}),
    ]
    for request, fields in cases:
        with pytest.raises(grpc.aio.AioRpcError) as err:
            await stub.CreateReservation(request, metadata=MD, timeout=5)
        assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT
        assert {v.field for v in read_error(err.value).violations} == fields
    for request in (_hold("b-4", loc, [("NOPE", 1)]), _hold("b-5", "loc_nope", [("BAD", 1)])):
        with pytest.raises(grpc.aio.AioRpcError) as err:
            await stub.CreateReservation(request, metadata=MD, timeout=5)
        assert err.value.code() == grpc.StatusCode.NOT_FOUND
    with pytest.raises(grpc.aio.AioRpcError) as err:
        await stub.CreateReservation(_hold("b-6", loc, [("BAD", 6)]), metadata=MD, timeout=5)
    error = read_error(err.value)
    assert (error.reason, error.metadata["skus"], error.metadata["available"]) == (
        "insufficient_stock",
        "BAD",
        "5",
    )
    assert _invariants(svc, "BAD", loc) == (5, 0)


async def test_a_hold_or_sourcing_naming_a_missing_sku_or_store_names_its_field(
    svc: InProcessService,
) -> None:
    """An unknown SKU or store in a hold or a sourcing is a NOT_FOUND naming the request's
    field, in the order the lines were sent (`lines[1].sku`, `location_id`,
    `pickup_location_id`), as an adjustment's, a count's and a transfer's are; nothing is
    held. Before, the refusal named no field, and the caller could not tell which line."""
    loc = await _setup(svc, {"ZZ-NAMED": 5}, "named")
    _db(svc, "UPDATE locations SET pickup_enabled = true WHERE id = %s RETURNING id", loc)
    stub = stock_stub(svc.channel)
    # The unknown SKU sorts before the known one: the field is the line as sent.
    lines = [("ZZ-NAMED", 1), ("AA-NOPE", 1)]
    holds = [
        (_hold("named-1", loc, lines), ["lines[1].sku"]),
        (_hold("named-2", "loc_nope", [("ZZ-NAMED", 1)]), ["location_id"]),
    ]
    for request, fields in holds:
        with pytest.raises(grpc.aio.AioRpcError) as err:
            await stub.CreateReservation(request, metadata=MD, timeout=5)
        assert err.value.code() == grpc.StatusCode.NOT_FOUND
        assert [v.field for v in read_error(err.value).violations] == fields
    for dry_run in (True, False):
        asks = [
            (st.ProposeSourcingRequest(
                request_id=f"named-s-{dry_run}",
                lines=[st.StockLine(sku=s, quantity=q) for s, q in lines],
                pickup_location_id=loc, dry_run=dry_run,
            ), ["lines[1].sku"]),
            (st.ProposeSourcingRequest(
                request_id=f"named-p-{dry_run}", lines=[st.StockLine(sku="ZZ-NAMED", quantity=1)],
                pickup_location_id="loc_nope", dry_run=dry_run,
            ), ["pickup_location_id"]),
        ]  # fmt: skip
        for ask, fields in asks:
            with pytest.raises(grpc.aio.AioRpcError) as err:
                await stub.ProposeSourcing(ask, metadata=MD, timeout=5)
            assert err.value.code() == grpc.StatusCode.NOT_FOUND
            assert [v.field for v in read_error(err.value).violations] == fields
    assert _invariants(svc, "ZZ-NAMED", loc) == (5, 0)


async def test_sourcing_in_a_currency_picks_only_stores_selling_in_it(
    svc: InProcessService,
) -> None:
    """An order's stores all sell in its currency: sourcing asked for one ships from no store
    of another, however near, and a pickup at one is refused naming it; nothing is held."""
    loc = await _setup(svc, {"CUR-MUG": 2}, "cur")
    _db(svc, "UPDATE locations SET ship_enabled = true, pickup_enabled = true,"
        " currency = 'EUR' WHERE id = %s RETURNING id", loc)  # fmt: skip
    stub = stock_stub(svc.channel)
    lines = [st.StockLine(sku="CUR-MUG", quantity=1)]
    there = inv.GeoPoint(latitude=0, longitude=0)
    refused = await stub.ProposeSourcing(
        st.ProposeSourcingRequest(request_id="cur-1", lines=lines, destination=there,
                                  currency="USD"),
        metadata=MD, timeout=5,
    )  # fmt: skip
    assert refused.strategy == st.SOURCING_STRATEGY_UNFULFILLABLE and not refused.allocations
    with pytest.raises(grpc.aio.AioRpcError) as err:
        await stub.ProposeSourcing(
            st.ProposeSourcingRequest(request_id="cur-2", lines=lines, pickup_location_id=loc,
                                      currency="USD"),
            metadata=MD, timeout=5,
        )  # fmt: skip
    assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert [v.field for v in read_error(err.value).violations] == ["pickup_location_id"]
    assert _invariants(svc, "CUR-MUG", loc) == (2, 0)
    sourced = await stub.ProposeSourcing(
        st.ProposeSourcingRequest(request_id="cur-3", lines=lines, destination=there,
                                  currency="EUR"),
        metadata=MD, timeout=5,
    )  # fmt: skip
    assert [a.location_id for a in sourced.allocations] == [loc]
    assert _invariants(svc, "CUR-MUG", loc) == (2, 1)


async def test_an_expired_hold_gives_its_units_back_and_cannot_be_committed(
    svc: InProcessService,
) -> None:
    loc = await _setup(svc, {"TTL": 3}, "ttl")
    stub = stock_stub(svc.channel)
    made = await stub.CreateReservation(_hold("t-1", loc, [("TTL", 2)]), metadata=MD, timeout=5)
    # Its time is up (moved into the past rather than waited for).
    _db(
        svc,
        "UPDATE reservations SET expires_at = now() - interval '1 second' WHERE id = %s"
        " RETURNING id",
        made.reservation.id,
    )
    with pytest.raises(grpc.aio.AioRpcError) as err:
        await stub.CommitReservation(
            st.CommitReservationRequest(request_id="t-2", id=made.reservation.id),
            metadata=MD,
            timeout=5,
        )
    assert read_error(err.value).reason == "reservation_expired"
    await sweep_once(svc.runtime.uow)
    got = await stub.GetReservation(
        st.GetReservationRequest(id=made.reservation.id), metadata=MD, timeout=5
    )
    assert got.reservation.status == st.RESERVATION_STATUS_EXPIRED
    assert _invariants(svc, "TTL", loc) == (3, 0)


async def test_the_service_expires_holds_on_its_own(svc: InProcessService) -> None:
    loc = await _setup(svc, {"SWEEP": 1}, "sweep")
    stub = stock_stub(svc.channel)
    made = await stub.CreateReservation(
        _hold("s-1", loc, [("SWEEP", 1)], ttl=1), metadata=MD, timeout=5
    )
    deadline = time.monotonic() + 30
    # What the sweep wrote: a read answers a hold past its time `expired` before it is swept.
    stored = "SELECT status FROM reservations WHERE id = %s"
    while _db(svc, stored, made.reservation.id) != [("expired",)]:
        assert time.monotonic() < deadline, "the hold never expired"
        await asyncio.sleep(0.1)  # polling the outcome, bounded by the deadline
    got = await stub.GetReservation(
        st.GetReservationRequest(id=made.reservation.id), metadata=MD, timeout=5
    )
    assert got.reservation.status == st.RESERVATION_STATUS_EXPIRED
    assert _invariants(svc, "SWEEP", loc) == (1, 0)


async def test_every_stock_mutation_replayed_with_its_request_id_applies_once(
    svc: InProcessService,
) -> None:
    here = await _setup(svc, {"ONCE": 10}, "once")
    there = await _setup(svc, {}, "once-there")
    stub = stock_stub(svc.channel)
    calls = [
        (
            stub.CountStock,
            st.CountStockRequest(request_id="o-count", sku="ONCE", location_id=here, quantity=9),
        ),
        (
            stub.TransferStock,
            st.TransferStockRequest(
                request_id="o-move",
                from_location_id=here,
                to_location_id=there,
                lines=[st.StockLine(sku="ONCE", quantity=2)],
            ),
        ),
        (
            stub.SetLowStockThreshold,
            st.SetLowStockThresholdRequest(request_id="o-low", sku="ONCE", threshold=1),
        ),
        (
            stub.ProposeSourcing,
            st.ProposeSourcingRequest(
                request_id="o-source",
                lines=[st.StockLine(sku="ONCE", quantity=3)],
                pickup_location_id=here,
            ),
        ),
    ]
    _db(svc, "UPDATE locations SET pickup_enabled = true WHERE id = %s RETURNING id", here)
    for call, request in calls:
        first = await call(request, metadata=MD, timeout=5)
        again = await call(request, metadata=MD, timeout=5)
        assert again == first
    sourced = first
    (rid,) = [a.reservation_id for a in sourced.allocations]
    release = st.ReleaseReservationRequest(request_id="o-release", id=rid)
    assert await stub.ReleaseReservation(release, metadata=MD, timeout=5) == (
        await stub.ReleaseReservation(release, metadata=MD, timeout=5)
    )
    # Counted 9, moved 2 away once, held 3 once and released: 7 here, 2 there, nothing held.
    assert _invariants(svc, "ONCE", here) == (7, 0)
    assert _invariants(svc, "ONCE", there) == (2, 0)
    ((entries,),) = _db(
        svc, "SELECT count(*) FROM stock_ledger WHERE merchant_id='mer_a' AND sku='ONCE'"
    )
    assert entries == 4  # the receipt, the count, and the transfer's two legs


async def test_a_dry_run_sourcing_holds_nothing_and_is_answered_fresh_every_time(
    svc: InProcessService,
) -> None:
    here = await _setup(svc, {"DRY": 2}, "dry")
    _db(svc, "UPDATE locations SET pickup_enabled = true WHERE id = %s RETURNING id", here)
    stub = stock_stub(svc.channel)
    ask = st.ProposeSourcingRequest(
        request_id="dry-1", lines=[st.StockLine(sku="DRY", quantity=3)], pickup_location_id=here
    )
    short = await stub.ProposeSourcing(ask, metadata=MD, timeout=5)
    assert short.strategy == st.SOURCING_STRATEGY_UNFULFILLABLE
    # The same request_id on a dry run: not a reuse, since a dry run is never stored.
    ask.dry_run = True
    assert (await stub.ProposeSourcing(ask, metadata=MD, timeout=5)).strategy == short.strategy
    inv_stub = inventory_pb2_grpc.InventoryServiceStub(svc.channel)
    await inv_stub.AdjustStock(
        inv.AdjustStockRequest(
            request_id="dry-more",
            sku="DRY",
            location_id=here,
            delta=1,
            reason=inv.ADJUSTMENT_REASON_RECEIVED,
        ),
        metadata=MD,
        timeout=5,
    )
    # The same dry run again sees the new stock (nothing was stored under its request_id),
    # and a dry run needs no request_id at all.
    for request_id in ("dry-1", ""):
        ask.request_id = request_id
        fresh = await stub.ProposeSourcing(ask, metadata=MD, timeout=5)
        assert fresh.strategy == st.SOURCING_STRATEGY_PICKUP
        assert [a.reservation_id for a in fresh.allocations] == [""]
    assert _invariants(svc, "DRY", here) == (3, 0)


async def test_an_archived_products_units_are_not_held(svc: InProcessService) -> None:
    """A hold is a sale in waiting: an archived product's units are refused (409
    `product_archived`, naming the SKU, as a checkout is) and nothing is held, even beside a
    sellable line; the product's units stay as they were."""
    loc = await _setup(svc, {"ARCH-1": 4, "LIVE-1": 4}, "arch")
    catalog = inventory_pb2_grpc.InventoryServiceStub(svc.channel)
    found = await catalog.SearchProducts(
        inv.SearchProductsRequest(sku="ARCH-1"), metadata=MD, timeout=5
    )
    await catalog.ArchiveProduct(
        inv.ArchiveProductRequest(request_id="arch-1", id=found.products[0].id),
        metadata=MD,
        timeout=5,
    )
    stub = stock_stub(svc.channel)
    with pytest.raises(grpc.aio.AioRpcError) as err:
        await stub.CreateReservation(
            _hold("arch-h1", loc, [("LIVE-1", 1), ("ARCH-1", 1)]), metadata=MD, timeout=5
        )
    assert err.value.code() == grpc.StatusCode.FAILED_PRECONDITION
    error = read_error(err.value)
    assert (error.reason, error.metadata["skus"]) == ("product_archived", "ARCH-1")
    # The line at fault is named as sent, as an unknown SKU's is.
    assert [v.field for v in error.violations] == ["lines[1].sku"]
    assert _invariants(svc, "ARCH-1", loc) == (4, 0)
    assert _invariants(svc, "LIVE-1", loc) == (4, 0)
    held = await stub.CreateReservation(
        _hold("arch-h2", loc, [("LIVE-1", 1)]), metadata=MD, timeout=5
    )
    assert held.reservation.id


async def test_sourcing_an_archived_product_is_refused_dry_run_or_not(
    svc: InProcessService,
) -> None:
    """A dry run answers what the real call would: an archived product's units are not
    sourced (409 `product_archived`, naming the SKU), with stock or without, and nothing is
    held."""
    loc = await _setup(svc, {"ARCH-S": 4, "LIVE-S": 4}, "arch-s")
    _db(svc, "UPDATE locations SET pickup_enabled = true WHERE id = %s RETURNING id", loc)
    catalog = inventory_pb2_grpc.InventoryServiceStub(svc.channel)
    found = await catalog.SearchProducts(
        inv.SearchProductsRequest(sku="ARCH-S"), metadata=MD, timeout=5
    )
    await catalog.ArchiveProduct(
        inv.ArchiveProductRequest(request_id="arch-s", id=found.products[0].id),
        metadata=MD,
        timeout=5,
    )
    stub = stock_stub(svc.channel)
    for i, (dry_run, wanted) in enumerate([(True, 1), (False, 1), (True, 9), (False, 9)]):
        ask = st.ProposeSourcingRequest(
            request_id=f"arch-s-{i}",
            lines=[
                st.StockLine(sku="LIVE-S", quantity=1),
                st.StockLine(sku="ARCH-S", quantity=wanted),
            ],
            pickup_location_id=loc,
            dry_run=dry_run,
        )
        with pytest.raises(grpc.aio.AioRpcError) as err:
            await stub.ProposeSourcing(ask, metadata=MD, timeout=5)
        assert err.value.code() == grpc.StatusCode.FAILED_PRECONDITION, (dry_run, wanted)
        error = read_error(err.value)
        assert (error.reason, error.metadata["skus"]) == ("product_archived", "ARCH-S")
        assert [v.field for v in error.violations] == ["lines[1].sku"]
    assert _invariants(svc, "ARCH-S", loc) == (4, 0)
    assert _invariants(svc, "LIVE-S", loc) == (4, 0)
    live = st.ProposeSourcingRequest(
        lines=[st.StockLine(sku="LIVE-S", quantity=1)], pickup_location_id=loc, dry_run=True
    )
    assert (await stub.ProposeSourcing(live, metadata=MD, timeout=5)).strategy == (
        st.SOURCING_STRATEGY_PICKUP
    )


async def test_nearby_stock_of_an_archived_product_is_refused(svc: InProcessService) -> None:
    """Nearby stock is where a customer can buy: an archived product is not for sale, so its
    SKU is refused (409 `product_archived`, naming it), as a sourcing's dry run is, with
    stock or without; before, the locations holding its units were listed."""
    loc = await _setup(svc, {"ARCH-N": 4, "LIVE-N": 4}, "arch-n")
    _db(
        svc,
        "UPDATE locations SET latitude = 52.37, longitude = 4.89 WHERE id = %s RETURNING id",
        loc,
    )
    catalog = inventory_pb2_grpc.InventoryServiceStub(svc.channel)
    found = await catalog.SearchProducts(
        inv.SearchProductsRequest(sku="ARCH-N"), metadata=MD, timeout=5
    )
    await catalog.ArchiveProduct(
        inv.ArchiveProductRequest(request_id="arch-n", id=found.products[0].id),
        metadata=MD,
        timeout=5,
    )
    stub = stock_stub(svc.channel)
    near = inv.GeoPoint(latitude=52.37, longitude=4.9)
    for lines in ([("ARCH-N", 1)], [("ARCH-N", 9), ("LIVE-N", 1)]):
        ask = st.FindNearbyStockRequest(
            lines=[st.StockLine(sku=s, quantity=q) for s, q in lines], near=near
        )
        with pytest.raises(grpc.aio.AioRpcError) as err:
            await stub.FindNearbyStock(ask, metadata=MD, timeout=5)
        assert err.value.code() == grpc.StatusCode.FAILED_PRECONDITION, lines
        error = read_error(err.value)
        assert (error.reason, error.metadata["skus"]) == ("product_archived", "ARCH-N")
    live = st.FindNearbyStockRequest(lines=[st.StockLine(sku="LIVE-N", quantity=1)], near=near)
    listed = await stub.FindNearbyStock(live, metadata=MD, timeout=5)
    assert loc in [x.location.id for x in listed.locations]


async def test_nearby_stock_of_an_unknown_sku_is_not_found_naming_it(
    svc: InProcessService,
) -> None:
    """A SKU no product sells under is NOT_FOUND naming its line and the SKU, as a sourcing's
    and a hold's are; before, nearby stock answered an empty list, as if no store had it."""
    loc = await _setup(svc, {"KNOWN-N": 4}, "unknown-n")
    _db(
        svc,
        "UPDATE locations SET latitude = 52.37, longitude = 4.89 WHERE id = %s RETURNING id",
        loc,
    )
    stub = stock_stub(svc.channel)
    ask = st.FindNearbyStockRequest(
        lines=[st.StockLine(sku="KNOWN-N", quantity=1), st.StockLine(sku="NO-SUCH-N", quantity=1)],
        near=inv.GeoPoint(latitude=52.37, longitude=4.9),
    )
    with pytest.raises(grpc.aio.AioRpcError) as err:
        await stub.FindNearbyStock(ask, metadata=MD, timeout=5)
    assert err.value.code() == grpc.StatusCode.NOT_FOUND
    error = read_error(err.value)
    assert error.metadata["skus"] == "NO-SUCH-N"
    assert [v.field for v in error.violations] == ["lines[1].sku"]


async def test_nearby_stock_answers_as_many_of_the_nearest_as_asked_up_to_a_page(
    svc: InProcessService,
) -> None:
    """`page_size` (REST `limit`, at most 200) is how many of the nearest come back: 150
    stocked stores asked for 150 are 150, nearest first. Before, the service stopped at 100
    whatever was asked, and the answer, with no further page, read as all there was."""
    md = (("x-merchant-id", "mer_near"),)
    catalog = inventory_pb2_grpc.InventoryServiceStub(svc.channel)
    await catalog.CreateProduct(
        inv.CreateProductRequest(
            request_id="near-p", sku="NEAR", name="n", price={"amount": 1, "currency": "USD"}
        ),
        metadata=md,
        timeout=5,
    )
    stores = 150
    for i in range(stores):
        made = await catalog.CreateLocation(
            inv.CreateLocationRequest(
                request_id=f"near-l{i}", name=f"Store {i}", currency="USD",
                geo=inv.GeoPoint(latitude=50 + i / 100, longitude=4.0),
            ),
            metadata=md,
            timeout=5,
        )  # fmt: skip
        await catalog.AdjustStock(
            inv.AdjustStockRequest(
                request_id=f"near-a{i}", sku="NEAR", location_id=made.location.id, delta=1,
                reason=inv.ADJUSTMENT_REASON_RECEIVED,
            ),
            metadata=md,
            timeout=5,
        )  # fmt: skip
    ask = st.FindNearbyStockRequest(
        lines=[st.StockLine(sku="NEAR", quantity=1)],
        near=inv.GeoPoint(latitude=50, longitude=4.0),
        page_size=stores,
    )
    found = await stock_stub(svc.channel).FindNearbyStock(ask, metadata=md, timeout=10)
    assert [x.location.name for x in found.locations] == [f"Store {i}" for i in range(stores)]
