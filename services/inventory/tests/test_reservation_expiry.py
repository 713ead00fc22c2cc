"""A hold past its time that the sweep has not reached yet: a commit or release of it ends it
as expired, as the sweep would (its units back once, `reservation_expired` published). A commit
is refused with `reservation_expired` (nothing was sold); a release answers the hold in its
final state, expired, as a release of a released one answers it: its units are let go either
way. The sweep then finds nothing to give back again."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator

import grpc
import psycopg
import pytest
import pytest_asyncio
from sqlalchemy import text
from test_reservations import _db, _hold, _invariants, _setup, stock_stub

from pos.inventory.v1 import inventory_pb2 as inv
from pos.inventory.v1 import inventory_pb2_grpc
from pos.inventory.v1 import stock_events_pb2 as inv_events
from pos.inventory.v1 import stock_pb2 as st
from pos_devstack.testing import Infra, InProcessService, serve_in_process
from pos_inventory.entrypoints.sweeper import sweep_once
from pos_inventory.service import reservations
from pos_kit.grpc_client import read_error

pytestmark = pytest.mark.asyncio(loop_scope="session")

MD = (("x-merchant-id", "mer_a"),)


@pytest_asyncio.fixture(loop_scope="session", scope="module")
async def svc(infra: Infra) -> AsyncIterator[InProcessService]:
    # The sweep runs once at start and then not for an hour: a due hold stays unswept until
    # a test sweeps it.
    async with serve_in_process("inventory", infra, reservation_sweep_seconds=3600) as running:
        yield running


def _events(svc: InProcessService, kind: str, reservation_id: str) -> int:
    """How many `reservation_<kind>` events of this reservation were written to the outbox."""
    event = {"expired": inv_events.ReservationExpired, "released": inv_events.ReservationReleased}
    rows = _db(
        svc,
        "SELECT payload FROM outbox WHERE subject = %s",
        f"pos.inventory.v1.reservation_{kind}",
    )
    decoded = [event[kind].FromString(bytes(payload)) for (payload,) in rows]  # type: ignore[arg-type]
    return sum(1 for e in decoded if e.reservation.id == reservation_id)


def _due(svc: InProcessService, reservation_id: str) -> None:
    """Its time is up (moved into the past rather than waited for)."""
    _db(
        svc,
        "UPDATE reservations SET expires_at = now() - interval '1 second' WHERE id = %s"
        " RETURNING id",
        reservation_id,
    )


async def test_a_due_hold_not_yet_swept_ends_as_expired_when_committed(
    svc: InProcessService,
) -> None:
    loc = await _setup(svc, {"DUE-commit": 5}, "due-commit")
    sku = "DUE-commit"
    stub = stock_stub(svc.channel)
    made = await stub.CreateReservation(
        _hold("d-commit-1", loc, [(sku, 3)]), metadata=MD, timeout=5
    )
    rid = made.reservation.id
    _due(svc, rid)
    assert _invariants(svc, sku, loc) == (5, 3)  # not swept: still held

    async def ask(request_id: str) -> grpc.aio.AioRpcError:
        with pytest.raises(grpc.aio.AioRpcError) as err:
            await stub.CommitReservation(
                st.CommitReservationRequest(request_id=request_id, id=rid),
                metadata=MD,
                timeout=5,
            )
        return err.value

    refused = await ask("d-commit-2")
    assert refused.code() == grpc.StatusCode.FAILED_PRECONDITION
    assert read_error(refused).reason == "reservation_expired"
    got = await stub.GetReservation(st.GetReservationRequest(id=rid), metadata=MD, timeout=5)
    assert got.reservation.status == st.RESERVATION_STATUS_EXPIRED
    assert _invariants(svc, sku, loc) == (5, 0)  # given back, nothing sold
    assert (_events(svc, "expired", rid), _events(svc, "released", rid)) == (1, 0)

    # The same request again, and the sweep: nothing is given back twice.
    assert read_error(await ask("d-commit-2")).reason == "reservation_expired"
    await sweep_once(svc.runtime.uow)
    assert _invariants(svc, sku, loc) == (5, 0)
    assert (_events(svc, "expired", rid), _events(svc, "released", rid)) == (1, 0)


async def test_a_due_hold_not_yet_swept_released_answers_it_expired(
    svc: InProcessService,
) -> None:
    loc = await _setup(svc, {"DUE-release": 5}, "due-release")
    sku = "DUE-release"
    stub = stock_stub(svc.channel)
    made = await stub.CreateReservation(
        _hold("d-release-1", loc, [(sku, 3)]), metadata=MD, timeout=5
    )
    rid = made.reservation.id
    _due(svc, rid)
    assert _invariants(svc, sku, loc) == (5, 3)  # not swept: still held

    async def release(request_id: str) -> st.ReleaseReservationResponse:
        request = st.ReleaseReservationRequest(request_id=request_id, id=rid)
        answer: st.ReleaseReservationResponse = await stub.ReleaseReservation(
            request, metadata=MD, timeout=5
        )
        return answer

    released = await release("d-release-2")
    assert released.reservation.status == st.RESERVATION_STATUS_EXPIRED
    assert [(lv.sku, lv.on_hand, lv.reserved) for lv in released.levels] == [(sku, 5, 0)]
    assert _invariants(svc, sku, loc) == (5, 0)  # given back once, by its expiry
    assert (_events(svc, "expired", rid), _events(svc, "released", rid)) == (1, 0)

    # The same request again, another one, and the sweep: nothing is given back twice.
    assert await release("d-release-2") == released
    again = await release("d-release-3")
    assert again.reservation.status == st.RESERVATION_STATUS_EXPIRED
    await sweep_once(svc.runtime.uow)
    assert _invariants(svc, sku, loc) == (5, 0)
    assert (_events(svc, "expired", rid), _events(svc, "released", rid)) == (1, 0)


async def test_a_release_of_a_swept_hold_answers_it_expired(svc: InProcessService) -> None:
    loc = await _setup(svc, {"SWEPT": 2}, "swept")
    stub = stock_stub(svc.channel)
    made = await stub.CreateReservation(_hold("sw-1", loc, [("SWEPT", 2)]), metadata=MD, timeout=5)
    _due(svc, made.reservation.id)
    assert await sweep_once(svc.runtime.uow) >= 1
    released = await stub.ReleaseReservation(
        st.ReleaseReservationRequest(request_id="sw-2", id=made.reservation.id),
        metadata=MD,
        timeout=5,
    )
    assert released.reservation.status == st.RESERVATION_STATUS_EXPIRED
    assert [(lv.on_hand, lv.reserved) for lv in released.levels] == [(2, 0)]
    assert _invariants(svc, "SWEPT", loc) == (2, 0)
    assert _events(svc, "expired", made.reservation.id) == 1
    assert _events(svc, "released", made.reservation.id) == 0


async def test_a_new_hold_is_not_refused_for_units_a_due_hold_still_holds(
    svc: InProcessService,
) -> None:
    """A hold past its time holds nothing by its terms: a new hold (or a transfer) short only
    because the sweep has not reached it ends it as expired, as the sweep would, and takes
    the units. Before, the last unit of a SKU was refused for up to a sweep interval."""
    loc = await _setup(svc, {"DUE-retake": 2}, "due-retake")
    sku = "DUE-retake"
    stub = stock_stub(svc.channel)
    old = await stub.CreateReservation(_hold("rt-1", loc, [(sku, 2)]), metadata=MD, timeout=5)
    rid = old.reservation.id
    _due(svc, rid)
    assert _invariants(svc, sku, loc) == (2, 2)  # not swept: still held

    new = await stub.CreateReservation(_hold("rt-2", loc, [(sku, 2)]), metadata=MD, timeout=5)
    assert new.reservation.status == st.RESERVATION_STATUS_ACTIVE
    assert [(lv.on_hand, lv.reserved) for lv in new.levels] == [(2, 2)]
    got = await stub.GetReservation(st.GetReservationRequest(id=rid), metadata=MD, timeout=5)
    assert got.reservation.status == st.RESERVATION_STATUS_EXPIRED
    assert _invariants(svc, sku, loc) == (2, 2)  # the new hold's two, not four
    assert _events(svc, "expired", rid) == 1
    # Replayed, the new hold is the same answer; the sweep finds nothing left to give back.
    again = await stub.CreateReservation(_hold("rt-2", loc, [(sku, 2)]), metadata=MD, timeout=5)
    assert again == new
    await sweep_once(svc.runtime.uow)
    assert _invariants(svc, sku, loc) == (2, 2)
    assert _events(svc, "expired", rid) == 1

    # Short with no due hold behind it: refused as before.
    with pytest.raises(grpc.aio.AioRpcError) as err:
        await stub.CreateReservation(_hold("rt-3", loc, [(sku, 1)]), metadata=MD, timeout=5)
    assert read_error(err.value).reason == "insufficient_stock"


async def test_a_transfer_is_not_refused_for_units_a_due_hold_still_holds(
    svc: InProcessService,
) -> None:
    here = await _setup(svc, {"DUE-move": 3}, "due-move-here")
    there = await _setup(svc, {}, "due-move-there")
    sku = "DUE-move"
    stub = stock_stub(svc.channel)
    old = await stub.CreateReservation(_hold("mv-1", here, [(sku, 3)]), metadata=MD, timeout=5)
    _due(svc, old.reservation.id)
    moved = await stub.TransferStock(
        st.TransferStockRequest(
            request_id="mv-2",
            from_location_id=here,
            to_location_id=there,
            lines=[st.StockLine(sku=sku, quantity=3)],
        ),
        metadata=MD,
        timeout=5,
    )
    assert sorted((lv.location_id == here, lv.on_hand, lv.reserved) for lv in moved.levels) == [
        (False, 3, 0),
        (True, 0, 0),
    ]
    assert _events(svc, "expired", old.reservation.id) == 1


async def test_a_write_off_is_not_refused_for_units_a_due_hold_still_holds(
    svc: InProcessService,
) -> None:
    """A write-off takes only units no hold has promised; a hold past its time promises none
    (it can no longer be committed), so a write-off short only because the sweep has not
    reached it goes through, as every read already promised those units. Short with a live
    hold behind it: refused, naming `delta`."""
    loc = await _setup(svc, {"DUE-loss": 3}, "due-loss")
    sku = "DUE-loss"
    stub = stock_stub(svc.channel)
    inventory = inventory_pb2_grpc.InventoryServiceStub(svc.channel)
    old = await stub.CreateReservation(_hold("wo-1", loc, [(sku, 2)]), metadata=MD, timeout=5)

    def loss(request_id: str, units: int) -> inv.AdjustStockRequest:
        return inv.AdjustStockRequest(
            request_id=request_id, sku=sku, location_id=loc, delta=-units,
            reason=inv.ADJUSTMENT_REASON_DAMAGED,
        )  # fmt: skip

    with pytest.raises(grpc.aio.AioRpcError) as err:
        await inventory.AdjustStock(loss("wo-2", 2), metadata=MD, timeout=5)
    refused = read_error(err.value)
    assert refused.reason == "insufficient_stock"
    assert [v.field for v in refused.violations] == ["delta"]
    assert _invariants(svc, sku, loc) == (3, 2)

    _due(svc, old.reservation.id)
    written = await inventory.AdjustStock(loss("wo-2", 2), metadata=MD, timeout=5)
    assert (written.level.on_hand, written.level.reserved) == (1, 0)
    # The sweep then ends the hold and gives its units back, once: nothing held, one left.
    await sweep_once(svc.runtime.uow)
    assert _invariants(svc, sku, loc) == (1, 0)
    assert _events(svc, "expired", old.reservation.id) == 1


async def test_a_due_hold_not_yet_swept_reads_expired_and_holds_nothing_in_any_read(
    svc: InProcessService,
) -> None:
    """A hold past its time holds nothing by its terms, swept or not: read, it is `expired`
    (as the sweep will write it), and availability, stock levels, nearby stock and sourcing
    promise its units. Before, it read `active` and its units stayed out of every read for up
    to a sweep interval (only a new hold or a transfer took them back). The sweep still ends
    it: its state and its event are written once."""
    sku = "DUE-read"
    stub = stock_stub(svc.channel)
    inventory = inventory_pb2_grpc.InventoryServiceStub(svc.channel)
    made_loc = await inventory.CreateLocation(
        inv.CreateLocationRequest(
            request_id="loc-due-read",
            name="Due store",
            currency="USD",
            geo=inv.GeoPoint(latitude=-33.9, longitude=18.4),
            pickup_enabled=True,
            ship_enabled=True,
        ),
        metadata=MD,
        timeout=5,
    )
    loc = made_loc.location.id
    await inventory.CreateProduct(
        inv.CreateProductRequest(
            request_id=f"p-{sku}", sku=sku, name=sku, price={"amount": 100, "currency": "USD"}
        ),
        metadata=MD,
        timeout=5,
    )
    await inventory.AdjustStock(
        inv.AdjustStockRequest(
            request_id="r-due-read",
            sku=sku,
            location_id=loc,
            delta=3,
            reason=inv.ADJUSTMENT_REASON_RECEIVED,
        ),
        metadata=MD,
        timeout=5,
    )
    made = await stub.CreateReservation(_hold("dr-1", loc, [(sku, 2)]), metadata=MD, timeout=5)
    rid = made.reservation.id
    _due(svc, rid)
    assert _db(svc, "SELECT status FROM reservations WHERE id = %s", rid) == [("active",)]

    got = await stub.GetReservation(st.GetReservationRequest(id=rid), metadata=MD, timeout=5)
    assert got.reservation.status == st.RESERVATION_STATUS_EXPIRED

    available = await stub.GetAvailability(
        st.GetAvailabilityRequest(skus=[sku]), metadata=MD, timeout=5
    )
    ((item,),) = [list(available.skus)]
    assert (item.on_hand, item.reserved, item.available) == (3, 0, 3)
    assert [(lv.reserved, lv.available) for lv in item.locations] == [(0, 3)]

    levels = await inventory.GetStockLevels(
        inv.GetStockLevelsRequest(skus=[sku], location_id=loc), metadata=MD, timeout=5
    )
    assert [(lv.on_hand, lv.reserved, lv.available) for lv in levels.levels] == [(3, 0, 3)]

    lines = [st.StockLine(sku=sku, quantity=3)]
    nearby = await stub.FindNearbyStock(
        st.FindNearbyStockRequest(lines=lines, near=inv.GeoPoint(latitude=-33.9, longitude=18.5)),
        metadata=MD,
        timeout=5,
    )
    assert [x.location.id for x in nearby.locations] == [loc]

    destination = inv.GeoPoint(latitude=-33.9, longitude=18.5)
    dry = await stub.ProposeSourcing(
        st.ProposeSourcingRequest(lines=lines, destination=destination, dry_run=True),
        metadata=MD,
        timeout=5,
    )
    assert [(a.location_id, [(x.sku, x.quantity) for x in a.lines]) for a in dry.allocations] == [
        (loc, [(sku, 3)])
    ]
    # Sourced for real, the proposal holds: the due hold ends as expired, as the sweep would.
    sourced = await stub.ProposeSourcing(
        st.ProposeSourcingRequest(request_id="dr-2", lines=lines, destination=destination),
        metadata=MD,
        timeout=5,
    )
    assert [a.location_id for a in sourced.allocations] == [loc]
    assert sourced.allocations[0].reservation_id
    assert _invariants(svc, sku, loc) == (3, 3)
    assert _events(svc, "expired", rid) == 1
    await sweep_once(svc.runtime.uow)
    assert _db(svc, "SELECT status FROM reservations WHERE id = %s", rid) == [("expired",)]
    assert _invariants(svc, sku, loc) == (3, 3)
    assert _events(svc, "expired", rid) == 1


async def test_the_sweep_still_ends_a_due_hold_that_was_only_read(
    svc: InProcessService,
) -> None:
    loc = await _setup(svc, {"DUE-sweep": 4}, "due-sweep")
    sku = "DUE-sweep"
    stub = stock_stub(svc.channel)
    made = await stub.CreateReservation(_hold("ds-1", loc, [(sku, 4)]), metadata=MD, timeout=5)
    rid = made.reservation.id
    _due(svc, rid)
    got = await stub.GetReservation(st.GetReservationRequest(id=rid), metadata=MD, timeout=5)
    assert got.reservation.status == st.RESERVATION_STATUS_EXPIRED
    assert got.reservation.updated_at.ToDatetime() >= made.reservation.updated_at.ToDatetime()
    assert _invariants(svc, sku, loc) == (4, 4)  # a read writes nothing
    await sweep_once(svc.runtime.uow)
    assert _invariants(svc, sku, loc) == (4, 0)
    assert _events(svc, "expired", rid) == 1
    swept = await stub.GetReservation(st.GetReservationRequest(id=rid), metadata=MD, timeout=5)
    assert swept.reservation.status == st.RESERVATION_STATUS_EXPIRED


async def _due_holds(
    svc: InProcessService, loc: str, sku: str, count: int, tag: str, seconds_ago: int
) -> list[str]:
    """`count` holds of one unit each, all past their time by `seconds_ago`."""
    stub = stock_stub(svc.channel)
    ids = []
    for i in range(count):
        made = await stub.CreateReservation(
            _hold(f"{tag}-{i}", loc, [(sku, 1)]), metadata=MD, timeout=5
        )
        ids.append(made.reservation.id)
    _db(
        svc,
        "UPDATE reservations SET expires_at = now() - make_interval(secs => %s)"
        " WHERE id = ANY(%s) RETURNING id",
        seconds_ago,
        ids,
    )
    return ids


async def test_due_holds_of_other_skus_do_not_hide_the_one_in_the_way(
    svc: InProcessService,
) -> None:
    """A hold or a move short only because of a due hold finds it however many due holds of
    other SKUs at the location are older. Before, the oldest 100 due holds there were read and
    then narrowed to the short SKUs: 100 due holds of other SKUs hid it, and the write was
    refused `insufficient_stock` for units nothing held by its terms."""
    loc = await _setup(svc, {"HIDE-other": 100, "HIDE-held": 1, "HIDE-moved": 1}, "hide")
    there = await _setup(svc, {}, "hide-there")
    stub = stock_stub(svc.channel)
    await _due_holds(svc, loc, "HIDE-other", 100, "hide-o", seconds_ago=60)
    (held,) = await _due_holds(svc, loc, "HIDE-held", 1, "hide-h", seconds_ago=1)
    (moved,) = await _due_holds(svc, loc, "HIDE-moved", 1, "hide-m", seconds_ago=1)

    new = await stub.CreateReservation(
        _hold("hide-new", loc, [("HIDE-held", 1)]), metadata=MD, timeout=5
    )
    assert new.reservation.status == st.RESERVATION_STATUS_ACTIVE
    assert _invariants(svc, "HIDE-held", loc) == (1, 1)
    assert _events(svc, "expired", held) == 1

    await stub.TransferStock(
        st.TransferStockRequest(
            request_id="hide-move",
            from_location_id=loc,
            to_location_id=there,
            lines=[st.StockLine(sku="HIDE-moved", quantity=1)],
        ),
        metadata=MD,
        timeout=5,
    )
    assert _invariants(svc, "HIDE-moved", loc) == (0, 0)
    assert _events(svc, "expired", moved) == 1
    # Only the holds in the way were ended; the sweep ends the others.
    assert _invariants(svc, "HIDE-other", loc) == (100, 100)


async def test_a_hold_short_by_more_due_holds_than_one_refusal_names_is_not_refused(
    svc: InProcessService,
) -> None:
    """A refusal names at most 100 due holds in the way; the hold ends them and is tried
    again as long as due holds are in the way. Before, it was tried once more only: short by
    101 due holds' units, it was refused though every unit it wanted was free by its terms."""
    loc = await _setup(svc, {"MANY-due": 101}, "many-due")
    stub = stock_stub(svc.channel)
    due = await _due_holds(svc, loc, "MANY-due", 101, "many", seconds_ago=1)
    assert _invariants(svc, "MANY-due", loc) == (101, 101)

    new = await stub.CreateReservation(
        _hold("many-new", loc, [("MANY-due", 101)]), metadata=MD, timeout=30
    )
    assert new.reservation.status == st.RESERVATION_STATUS_ACTIVE
    assert [(lv.on_hand, lv.reserved) for lv in new.levels] == [(101, 101)]
    assert _invariants(svc, "MANY-due", loc) == (101, 101)  # the new hold's, not twice
    assert sum(_events(svc, "expired", rid) for rid in due) == 101


async def test_a_hold_of_many_lines_each_short_only_by_a_due_hold_is_not_refused(
    svc: InProcessService,
) -> None:
    """A hold stops at its first short line; its refusal names the due holds in the way of
    that line and of every line after it, so one round ends them all. Before, it named only
    those of the lines short as read, which leaves due holds out: the next line short only by
    a due hold was not among them, and each such line cost a refusal and a retry of its own
    (a hold of more lines than the retries allow was refused)."""
    skus = [f"LINES-{i:02}" for i in range(25)]
    loc = await _setup(svc, dict.fromkeys(skus, 1), "lines")
    stub = stock_stub(svc.channel)
    due = [(await _due_holds(svc, loc, sku, 1, f"lines-{sku}", seconds_ago=1))[0] for sku in skus]

    new = await stub.CreateReservation(
        _hold("lines-new", loc, [(sku, 1) for sku in skus]), metadata=MD, timeout=30
    )
    assert new.reservation.status == st.RESERVATION_STATUS_ACTIVE
    assert [(lv.sku, lv.on_hand, lv.reserved) for lv in new.levels] == [(sku, 1, 1) for sku in skus]
    assert sum(_events(svc, "expired", rid) for rid in due) == len(skus)


async def test_a_hold_is_not_refused_when_another_ends_the_due_hold_in_its_way_first(
    svc: InProcessService,
) -> None:
    """A refused hold ends the due holds in its way and is tried again; one of them may have
    been ended meanwhile by the sweep or another write (whose refusal named it too), its
    units given back all the same. Before, only a hold this request ended itself counted: it
    found every one ended already and stood by its refusal, `insufficient_stock` for units
    nothing held any more. The interleaving is forced: the other party holds the due hold's
    lock until the refused hold waits for it, then ends it as the sweep would, and commits."""
    sku = "RACE-due"
    loc = await _setup(svc, {sku: 1}, "race-due")
    stub = stock_stub(svc.channel)
    (old,) = await _due_holds(svc, loc, sku, 1, "race-old", seconds_ago=1)
    async with (
        await psycopg.AsyncConnection.connect(svc.database_url, autocommit=True) as watcher,
        svc.runtime.uow().bind("mer_a") as other,
    ):
        assert (await other.reservations.get(old, lock=True)) is not None
        pid = await other.conn.scalar(text("SELECT pg_backend_pid()"))
        call = asyncio.ensure_future(
            stub.CreateReservation(_hold("race-new", loc, [(sku, 1)]), metadata=MD, timeout=30)
        )
        deadline = time.monotonic() + 20
        while not await (
            await watcher.execute(
                "SELECT 1 FROM pg_stat_activity WHERE %s = ANY(pg_blocking_pids(pid))", (pid,)
            )
        ).fetchone():
            assert not call.done(), "the hold answered without ending the due hold"
            assert time.monotonic() < deadline, "the refused hold never waited for the due one"
            await asyncio.sleep(0.01)
        assert await reservations.expire_reservation(other, old)
        await other.commit()
    new = await call
    assert new.reservation.status == st.RESERVATION_STATUS_ACTIVE
    assert _invariants(svc, sku, loc) == (1, 1)
    assert _events(svc, "expired", old) == 1
