"""ListReservations: a merchant's holds by id in pages, each as GetReservation reads it (a hold
past its time is `expired`, swept or not), narrowed by the status read and the location; a
location the merchant does not have is NOT_FOUND naming `location_id`, and another merchant's
holds are never listed. There was no way to list holds at all: a hold whose id a client lost
could be found only by waiting for it to expire."""

from __future__ import annotations

from collections.abc import AsyncIterator

import grpc
import psycopg
import pytest
import pytest_asyncio

from pos.inventory.v1 import inventory_pb2 as inv
from pos.inventory.v1 import inventory_pb2_grpc, stock_pb2_grpc
from pos.inventory.v1 import stock_pb2 as st
from pos_devstack.testing import Infra, InProcessService, serve_in_process
from pos_kit.grpc_client import read_error
from pos_kit.ids import new_id

pytestmark = pytest.mark.asyncio(loop_scope="session")


@pytest_asyncio.fixture(loop_scope="session", scope="module")
async def svc(infra: Infra) -> AsyncIterator[InProcessService]:
    # No sweep in the test's time: a due hold stays active in storage, expired as read.
    async with serve_in_process("inventory", infra, reservation_sweep_seconds=3600) as running:
        yield running


async def _store(
    svc: InProcessService, md: tuple[tuple[str, str], ...], sku: str, first: bool
) -> str:
    """A location with 100 units of `sku` (its product made with the merchant's `first`)."""
    stub = inventory_pb2_grpc.InventoryServiceStub(svc.channel)
    loc = await stub.CreateLocation(
        inv.CreateLocationRequest(request_id=new_id("rq"), name="Store", currency="USD"),
        metadata=md,
        timeout=5,
    )
    if first:
        await stub.CreateProduct(
            inv.CreateProductRequest(
                request_id=new_id("rq"), sku=sku, name=sku, price={"amount": 100, "currency": "USD"}
            ),
            metadata=md,
            timeout=5,
        )
    await stub.AdjustStock(
        inv.AdjustStockRequest(
            request_id=new_id("rq"),
            sku=sku,
            location_id=loc.location.id,
            delta=100,
            reason=inv.ADJUSTMENT_REASON_RECEIVED,
        ),
        metadata=md,
        timeout=5,
    )
    return str(loc.location.id)


async def test_reservations_are_listed_by_id_in_pages_filtered_as_read(
    svc: InProcessService,
) -> None:
    md = (("x-merchant-id", new_id("mer")),)
    stub = stock_pb2_grpc.StockServiceStub(svc.channel)
    here, there = await _store(svc, md, "LR-MUG", True), await _store(svc, md, "LR-MUG", False)

    async def hold(loc: str) -> str:
        made = await stub.CreateReservation(
            st.CreateReservationRequest(
                request_id=new_id("rq"), location_id=loc, lines=[st.StockLine(sku="LR-MUG",
                quantity=1)], ttl_seconds=600,
            ),
            metadata=md,
            timeout=5,
        )  # fmt: skip
        return str(made.reservation.id)

    held = [await hold(here), await hold(here), await hold(there), await hold(here)]
    released, due = held[1], held[3]
    await stub.ReleaseReservation(
        st.ReleaseReservationRequest(request_id=new_id("rq"), id=released), metadata=md, timeout=5
    )
    with psycopg.connect(svc.database_url) as conn:  # its time is up, not waited for
        conn.execute(
            "UPDATE reservations SET expires_at = now() - interval '1 second' WHERE id = %s",
            (due,),
        )

    async def listed(**filters: object) -> list[tuple[str, int]]:
        found: list[tuple[str, int]] = []
        token = ""
        while True:
            page = await stub.ListReservations(
                st.ListReservationsRequest(page_size=2, page_token=token, **filters),  # type: ignore[arg-type]
                metadata=md,
                timeout=5,
            )
            assert len(page.reservations) <= 2
            found += [(r.id, r.status) for r in page.reservations]
            if not (token := page.next_page_token):
                return found

    every = await listed()
    assert [i for i, _ in every] == sorted(held)
    status = dict(every)
    assert status[released] == st.RESERVATION_STATUS_RELEASED
    assert status[due] == st.RESERVATION_STATUS_EXPIRED  # as read: not yet swept
    one = await stub.GetReservation(st.GetReservationRequest(id=due), metadata=md, timeout=5)
    assert one.reservation.status == status[due]
    assert await listed(status=st.RESERVATION_STATUS_ACTIVE) == sorted(
        (i, st.RESERVATION_STATUS_ACTIVE) for i in (held[0], held[2])
    )
    assert [i for i, _ in await listed(status=st.RESERVATION_STATUS_EXPIRED)] == [due]
    assert [i for i, _ in await listed(location_id=there)] == [held[2]]
    assert [i for i, _ in await listed(location_id=here, status=st.RESERVATION_STATUS_ACTIVE)] == [
        held[0]
    ]

    # A SKU held on one of a hold's lines; none of another SKU.
    assert [i for i, _ in await listed(sku="LR-MUG")] == sorted(held)
    assert await listed(sku="LR-NONE") == []

    # Another merchant sees none of them, and the location is none of theirs: 404 on the field.
    other = (("x-merchant-id", new_id("mer")),)
    theirs = await stub.ListReservations(st.ListReservationsRequest(), metadata=other, timeout=5)
    assert list(theirs.reservations) == []
    with pytest.raises(grpc.aio.AioRpcError) as refused:
        await stub.ListReservations(
            st.ListReservationsRequest(location_id=here), metadata=other, timeout=5
        )
    assert refused.value.code() == grpc.StatusCode.NOT_FOUND
    assert [v.field for v in read_error(refused.value).violations] == ["location_id"]

    # A cursor pages on only with the filters it was made with.
    first = await stub.ListReservations(
        st.ListReservationsRequest(page_size=1), metadata=md, timeout=5
    )
    with pytest.raises(grpc.aio.AioRpcError) as stale:
        await stub.ListReservations(
            st.ListReservationsRequest(
                page_size=1, page_token=first.next_page_token, location_id=here
            ),
            metadata=md,
            timeout=5,
        )
    assert stale.value.code() == grpc.StatusCode.INVALID_ARGUMENT
