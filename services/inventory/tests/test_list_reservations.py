"""ListReservations: a merchant's holds by id in pages, each as GetReservation reads it (a hold
past its time is `expired`, swept or not), narrowed by the status read and the location; a
location the merchant does not have is NOT_FOUND naming `location_id`, and another merchant's
holds are never listed. There was no way to list holds at all: a hold whose id a client lost
could be found only by waiting for it to expire."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import grpc
import psycopg
import pytest
import pytest_asyncio
from inventory_db import Db
from sqlalchemy import Select, text
from sqlalchemy.ext.compiler import compiles
from sqlalchemy.sql.compiler import SQLCompiler
from sqlalchemy.sql.expression import ClauseElement, Executable

from pos.inventory.v1 import inventory_pb2 as inv
from pos.inventory.v1 import inventory_pb2_grpc, stock_pb2_grpc
from pos.inventory.v1 import stock_pb2 as st
from pos_devstack.testing import Infra, InProcessService, serve_in_process
from pos_inventory.adapters.reservations import SqlReservations
from pos_inventory.domain.reservations import ReservationStatus
from pos_kit.grpc_client import read_error
from pos_kit.ids import new_id
from pos_kit.paging import PageRequest

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


class _Explain(Executable, ClauseElement):
    """`EXPLAIN` of a statement, its parameters bound as the statement's own would be."""

    inherit_cache = False

    def __init__(self, statement: Select[Any]) -> None:
        self.statement = statement


@compiles(_Explain, "postgresql")
def _explain_sql(element: _Explain, compiler: SQLCompiler, **kw: Any) -> str:
    return "EXPLAIN " + compiler.process(element.statement, **kw)


async def test_each_filter_of_the_list_reads_an_index_of_its_own(db: Db) -> None:
    """The list's queries as the planner takes them on a table of 40,000 holds of one merchant
    (100 stores, 1,000 SKUs, one in a hundred active, a page after a cursor too) beside 40,000
    active holds of other merchants: `location_id`, `status` and `sku` each read an index of
    their own, not every hold of the merchant by id, filtered (nor every merchant's active
    holds, by the sweep's index). Before, none had one: a store's holds, the few
    active ones among a history of finished ones, or a SKU's, were found by walking all the
    merchant's holds. The rows are written, analysed and explained in a transaction rolled
    back, so no other test sees them."""
    merchant = new_id("mer")
    async with db.engine.connect() as conn:
        await conn.begin()
        await conn.execute(
            text(
                """
                INSERT INTO reservations
                    (merchant_id, id, location_id, status, lines, reference, expires_at)
                SELECT CASE WHEN i <= 40000 THEN :merchant ELSE 'mer_other_' || (i % 7) END,
                       'res_' || lpad(i::text, 26, '0'),
                       'loc_' || (i % 100),
                       CASE WHEN i % 100 = 0 OR i > 40000 THEN 'active'
                            WHEN i % 3 = 0 THEN 'committed'
                            WHEN i % 3 = 1 THEN 'released' ELSE 'expired' END,
                       jsonb_build_array(jsonb_build_array('SKU-' || (i % 1000), 1)),
                       '',
                       now() + CASE WHEN i % 100 = 0 OR i > 40000 THEN interval '1 hour'
                                    ELSE interval '-1 hour' END
                FROM generate_series(1, 80000) AS i
                """
            ),
            {"merchant": merchant},
        )
        await conn.execute(text("ANALYZE reservations"))
        # A SKU of 40 holds as most of a catalog's are: not one the statistics sampled (a
        # SKU held as often as a page's worth is rightly read by id, filtered).
        sku = (
            await conn.execute(
                text(
                    """
                    SELECT 'SKU-' || s FROM generate_series(0, 999) AS s
                    WHERE NOT EXISTS (
                        SELECT 1 FROM pg_stats
                        WHERE tablename = 'reservations' AND attname = 'lines'
                          AND strpos(coalesce(histogram_bounds::text, '')
                                     || coalesce(most_common_vals::text, ''),
                                     'SKU-' || s || '\\"') > 0
                    )
                    LIMIT 1
                    """
                )
            )
        ).scalar_one()
        store = SqlReservations(conn, merchant)
        after = "res_" + "1".zfill(26)

        async def plan(
            status: ReservationStatus | None = None, location_id: str = "", sku: str = ""
        ) -> str:
            query = store.listing(PageRequest(limit=50, after=after), status, location_id, sku)
            return "\n".join(row[0] for row in await conn.execute(_Explain(query)))

        for filters, index in (
            ({"location_id": "loc_7"}, "reservations_by_location"),
            ({"status": ReservationStatus.ACTIVE}, "reservations_by_status"),
            ({"sku": sku}, "reservations_by_sku"),
        ):
            found = await plan(**filters)
            assert index in found, (filters, found)
        # Said of the stored columns, each status lists the holds read in it, a due hold
        # stored active among the expired.
        due = "res_" + "100".zfill(26)
        await conn.execute(
            text("UPDATE reservations SET expires_at = now() - interval '1 second' WHERE id = :id"),
            {"id": due},
        )
        every = await store.list(PageRequest(limit=40000), None, "", "")
        assert len(every) == 40000
        for status in ReservationStatus:
            listed = await store.list(PageRequest(limit=40000), status, "", "")
            assert [r.id for r in listed] == [r.id for r in every if r.status is status], status
            assert listed, status
        assert next(r for r in every if r.id == due).status is ReservationStatus.EXPIRED
        await conn.rollback()
