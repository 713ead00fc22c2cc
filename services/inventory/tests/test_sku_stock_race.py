"""A SKU keeps its stock under any interleaving: a change that takes a SKU off its product (a
rename, a variant renamed, a batch upsert item) and a stock write that may create the SKU's
level (an adjustment, a count) exclude each other. Whichever goes first, the other sees its
effect: the change is a 409 `sku_has_stock`, or the write a 404. Never units under a SKU no
product has, which a later product given that SKU would inherit.

Each interleaving is forced, not hoped for: a third connection holds an uncommitted row the
one that should go first needs for its write, so it stands still after its own check while
the other runs; `pg_blocking_pids` says who waits on whom."""

from __future__ import annotations

import asyncio
import functools
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import grpc
import psycopg
import pytest
import pytest_asyncio

from pos.inventory.v1 import inventory_pb2 as inv
from pos.inventory.v1 import inventory_pb2_grpc, stock_pb2_grpc
from pos.inventory.v1 import stock_pb2 as st
from pos_devstack.testing import Infra, InProcessService, serve_in_process
from pos_kit.grpc_client import RemoteError, read_error
from pos_kit.ids import new_id

pytestmark = pytest.mark.asyncio(loop_scope="session")

MERCHANT = "mer_skurace"
MD = (("x-merchant-id", MERCHANT),)
USD = {"amount": 1500, "currency": "USD"}
ROUNDS = 3  # every interleaving below is forced, so a few rounds each are enough

Outcome = Any | RemoteError  # a response, or the error the call answered
MISSING = (grpc.StatusCode.NOT_FOUND, "resource_missing")


@pytest_asyncio.fixture(loop_scope="session", scope="module")
async def svc(infra: Infra) -> AsyncIterator[InProcessService]:
    async with serve_in_process("inventory", infra) as running:
        yield running


@pytest_asyncio.fixture(loop_scope="session", scope="module")
async def loc(svc: InProcessService) -> str:
    made = await inventory_pb2_grpc.InventoryServiceStub(svc.channel).CreateLocation(
        inv.CreateLocationRequest(request_id=rid(), name="Race store", currency="USD"),
        metadata=MD,
        timeout=5,
    )
    return str(made.location.id)


def rid() -> str:
    return new_id("req")


def sku_of(tag: str) -> str:
    return f"{tag}-{new_id('x')[-10:]}".upper()


async def outcome(call: Awaitable[Any]) -> Outcome:
    try:
        return await call
    except grpc.aio.AioRpcError as exc:
        return read_error(exc)


def refused(got: Outcome) -> tuple[grpc.StatusCode, str] | None:
    return (got.status, got.reason) if isinstance(got, RemoteError) else None


class Catalog:
    """A product with a variant, and the three ways to take one of its SKUs away."""

    def __init__(self, svc: InProcessService) -> None:
        self.stub = inventory_pb2_grpc.InventoryServiceStub(svc.channel)

    async def tee(self, sku: str) -> inv.Product:
        made = await self.stub.CreateProduct(
            inv.CreateProductRequest(
                request_id=rid(),
                sku=sku,
                name="Tee",
                price=USD,
                external_id=f"ext-{sku}",
                variants=[self.variant(f"{sku}-M", "M"), self.variant(f"{sku}-L", "L")],
            ),
            metadata=MD,
            timeout=5,
        )
        return made.product

    async def rounds(
        self, how: str, tag: str
    ) -> AsyncIterator[tuple[inv.Product, tuple[str, str, Callable[[], Awaitable[Any]]]]]:
        """ROUNDS new products, each with a change `how` taking one of its SKUs away."""
        for _ in range(ROUNDS):
            tee = await self.tee(sku_of(tag))
            yield tee, self.takes_away(how, tee)

    @staticmethod
    def variant(sku: str, size: str) -> inv.ProductVariant:
        return inv.ProductVariant(sku=sku, name=size, options={"size": size})

    def update(self, tee: inv.Product, **fields: Any) -> Callable[[], Awaitable[Any]]:
        """An UpdateProduct of `fields`, made when called: a gRPC call starts when made."""
        return lambda: self.stub.UpdateProduct(
            inv.UpdateProductRequest(
                request_id=rid(),
                id=tee.id,
                product=inv.ProductInput(**fields),
                update_mask={"paths": sorted(fields)},
            ),
            metadata=MD,
            timeout=30,
        )

    def takes_away(
        self, how: str, tee: inv.Product
    ) -> tuple[str, str, Callable[[], Awaitable[Any]]]:
        """(the SKU taken away, the SKU given instead, the call, made when called)."""
        if how == "product sku":
            old, new = tee.sku, f"{tee.sku}-N"
            return old, new, self.update(tee, sku=new)
        if how == "variant sku":
            old, new = f"{tee.sku}-M", f"{tee.sku}-M2"
            sizes = [self.variant(new, "M"), self.variant(f"{tee.sku}-L", "L")]
            return old, new, self.update(tee, variants=sizes)
        # "upsert": a batch item renaming the product
        old, new = tee.sku, f"{tee.sku}-N"
        return old, new, lambda: self.upsert(tee, new)

    async def upsert(self, tee: inv.Product, new: str) -> Any:
        got = await self.stub.UpsertProducts(
            inv.UpsertProductsRequest(
                request_id=rid(),
                products=[
                    inv.ProductInput(
                        sku=new,
                        name="Tee",
                        price=USD,
                        external_id=tee.external_id,
                        variants=[self.variant(v.sku, v.name) for v in tee.variants],
                    )
                ],
            ),
            metadata=MD,
            timeout=30,
        )
        (result,) = got.results
        if result.outcome == inv.UPSERT_OUTCOME_FAILED:
            # Read as the refusal of an update, so every way is checked alike.
            return RemoteError(grpc.StatusCode.FAILED_PRECONDITION, "", result.error.code)
        return result

    async def owner(self, sku: str) -> list[str]:
        found = await self.stub.SearchProducts(
            inv.SearchProductsRequest(sku=sku), metadata=MD, timeout=5
        )
        return [p.id for p in found.products]

    async def on_hand(self, sku: str) -> int:
        got = await self.stub.GetStockLevels(
            inv.GetStockLevelsRequest(skus=[sku]), metadata=MD, timeout=5
        )
        return sum(level.on_hand for level in got.levels)


def writer(svc: InProcessService, what: str, sku: str, loc: str) -> Awaitable[Any]:
    """A stock write that creates the SKU's level at `loc` with 5 units."""
    if what == "adjustment":
        return inventory_pb2_grpc.InventoryServiceStub(svc.channel).AdjustStock(
            inv.AdjustStockRequest(
                request_id=rid(),
                sku=sku,
                location_id=loc,
                delta=5,
                reason=inv.ADJUSTMENT_REASON_RECEIVED,
            ),
            metadata=MD,
            timeout=30,
        )
    return stock_pb2_grpc.StockServiceStub(svc.channel).CountStock(
        st.CountStockRequest(request_id=rid(), sku=sku, location_id=loc, quantity=5),
        metadata=MD,
        timeout=30,
    )


async def waiting_on(watcher: psycopg.AsyncConnection[Any], pid: int) -> int | None:
    """The backend waiting for a lock `pid` holds, if one is."""
    row = await (
        await watcher.execute(
            "SELECT pid FROM pg_stat_activity WHERE %s = ANY(pg_blocking_pids(pid))", (pid,)
        )
    ).fetchone()
    return int(row[0]) if row else None


async def stands_on(
    watcher: psycopg.AsyncConnection[Any], pid: int, call: asyncio.Task[Any]
) -> int | None:
    """Wait until a backend waits for a lock `pid` holds (that backend's pid), or until `call`
    has answered (None)."""
    deadline = time.monotonic() + 20
    while not call.done():
        waiter = await waiting_on(watcher, pid)
        if waiter is not None:
            return waiter
        assert time.monotonic() < deadline, "neither waiting nor answered"
        await asyncio.sleep(0.01)
    return None


class Blocker:
    """A connection holding an uncommitted row until `release`: whoever writes the same key
    waits for it, after everything it did before that write."""

    def __init__(self, conn: psycopg.AsyncConnection[Any]) -> None:
        self.conn = conn
        self.pid = conn.info.backend_pid

    async def hold(self, sql: str, *params: str) -> None:
        await self.conn.execute(sql, params)

    async def release(self) -> None:
        await self.conn.rollback()

    async def in_order(
        self,
        watcher: psycopg.AsyncConnection[Any],
        first: Callable[[], Awaitable[Any]],
        then: Callable[[], Awaitable[Any]],
    ) -> tuple[Outcome, Outcome]:
        """`first` stopped at its write on the held row, `then` runs, and `first` goes on:
        their outcomes. `then` waits for `first`'s transaction (the fix) or answers at once
        (the race); either way `first` is let go only after."""
        going = asyncio.ensure_future(outcome(first()))
        waiter = await stands_on(watcher, self.pid, going)
        assert waiter is not None, f"the first did not wait for the held row: {going.result()}"
        coming = asyncio.ensure_future(outcome(then()))
        await stands_on(watcher, waiter, coming)
        await self.release()
        return await going, await coming


@pytest_asyncio.fixture(loop_scope="session")
async def conns(svc: InProcessService) -> AsyncIterator[tuple[Blocker, Any]]:
    async with (
        await psycopg.AsyncConnection.connect(svc.database_url) as blocking,
        await psycopg.AsyncConnection.connect(svc.database_url, autocommit=True) as watcher,
    ):
        yield Blocker(blocking), watcher


HOW = ["product sku", "variant sku", "upsert"]
WRITERS = ["adjustment", "count"]


@pytest.mark.parametrize("what", WRITERS)
@pytest.mark.parametrize("how", HOW)
async def test_a_write_that_checked_the_sku_first_makes_the_rename_a_409(
    svc: InProcessService, loc: str, conns: tuple[Blocker, Any], how: str, what: str
) -> None:
    """The write has found the SKU in the catalog and is about to create its level (held there
    by an uncommitted row of that level) when the change comes: the change waits for it and
    is refused, `sku_has_stock`; the units stay under a SKU the product still sells."""
    blocker, watcher = conns
    catalog = Catalog(svc)
    async for tee, (old, new, change) in catalog.rounds(how, "RW"):
        await blocker.hold(
            "INSERT INTO stock (merchant_id, sku, location_id, on_hand) VALUES (%s, %s, %s, 0)",
            MERCHANT,
            old,
            loc,
        )
        wrote, changed = await blocker.in_order(
            watcher, functools.partial(writer, svc, what, old, loc), change
        )

        assert refused(wrote) is None, wrote
        assert refused(changed) == (grpc.StatusCode.FAILED_PRECONDITION, "sku_has_stock"), changed
        assert await catalog.on_hand(old) == 5
        assert await catalog.owner(old) == [tee.id]
        assert await catalog.owner(new) == []


@pytest.mark.parametrize("what", WRITERS)
@pytest.mark.parametrize("how", HOW)
async def test_a_rename_that_checked_the_stock_first_makes_the_write_a_404(
    svc: InProcessService, loc: str, conns: tuple[Blocker, Any], how: str, what: str
) -> None:
    """The change has found no stock under the SKU and is about to give the product its new
    SKU (held there by an uncommitted claim of that SKU) when the write comes: the write waits
    for it and, the SKU gone, is a 404 naming it; nothing is left under the old SKU."""
    blocker, watcher = conns
    catalog = Catalog(svc)
    async for tee, (old, new, change) in catalog.rounds(how, "RF"):
        await blocker.hold(
            "INSERT INTO product_skus (merchant_id, sku, product_id) VALUES (%s, %s, 'prod_x')",
            MERCHANT,
            new,
        )
        changed, wrote = await blocker.in_order(
            watcher, change, functools.partial(writer, svc, what, old, loc)
        )

        assert refused(changed) is None, changed
        assert refused(wrote) == MISSING, wrote
        assert isinstance(wrote, RemoteError) and wrote.metadata["skus"] == old
        assert await catalog.on_hand(old) == 0
        assert await catalog.owner(old) == []
        assert await catalog.owner(new) == [tee.id]


async def test_a_change_that_keeps_every_sku_lets_writes_through(
    svc: InProcessService, loc: str, conns: tuple[Blocker, Any]
) -> None:
    """A change of anything else (here the name and a new barcode) keeps the product's SKUs
    where they were: a write of its stock meanwhile neither waits for it nor is refused."""
    blocker, watcher = conns
    catalog = Catalog(svc)
    tee = await catalog.tee(sku_of("KEEP"))
    await blocker.hold(
        "INSERT INTO product_barcodes (merchant_id, barcode, product_id, sku)"
        " VALUES (%s, 'SHELF-1', 'prod_x', 'X')",
        MERCHANT,
    )
    change = catalog.update(tee, name="Tee, again", barcodes=["SHELF-1"])
    changing = asyncio.ensure_future(outcome(change()))
    changed_by = await stands_on(watcher, blocker.pid, changing)
    assert changed_by is not None, f"the change did not wait to write: {changing.result()}"
    try:
        for sku in (tee.sku, f"{tee.sku}-M"):
            writing = asyncio.ensure_future(outcome(writer(svc, "adjustment", sku, loc)))
            assert await stands_on(watcher, changed_by, writing) is None, "the write waited"
            assert refused(writing.result()) is None, writing.result()
    finally:
        await blocker.release()
    assert refused(await changing) is None
    assert (await catalog.on_hand(tee.sku), await catalog.on_hand(f"{tee.sku}-M")) == (5, 5)


async def test_a_rename_racing_adjustments_never_leaves_stock_behind(
    svc: InProcessService, loc: str
) -> None:
    """The probe that found it, unordered: a rename and three adjustments at once, many times.
    The rename is refused or every adjustment after it is a 404: never units under a SKU no
    product has."""
    catalog = Catalog(svc)
    for _ in range(20):
        tee = await catalog.tee(sku_of("RACE"))
        old, new, change = catalog.takes_away("product sku", tee)
        changed, *wrote = await asyncio.gather(
            outcome(change()), *(outcome(writer(svc, "adjustment", old, loc)) for _ in range(3))
        )
        added = 5 * sum(refused(w) is None for w in wrote)
        assert all(refused(w) in (None, MISSING) for w in wrote), wrote
        if refused(changed) is None:
            assert added == 0, wrote
            assert (await catalog.owner(old), await catalog.owner(new)) == ([], [tee.id])
        else:
            assert refused(changed) == (grpc.StatusCode.FAILED_PRECONDITION, "sku_has_stock")
            assert await catalog.owner(old) == [tee.id]
        assert await catalog.on_hand(old) == added
