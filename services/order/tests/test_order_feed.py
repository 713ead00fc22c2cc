"""The order list as a change feed (`updated_since`): oldest change first, resumed from its
cursor to the end, never skipping a change and never showing a row again for bookkeeping that
changed nothing (the resumer's `touch`). Real PostgreSQL, the order service's repository."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import select, update

from pos_devstack.testing import Infra
from pos_kit.db import make_engine
from pos_kit.money import Money
from pos_kit.paging import PageRequest, decode_change, encode_change
from pos_order.adapters import repository
from pos_order.adapters.repository import OrderUow
from pos_order.adapters.tables import kit, selling_locations
from pos_order.domain.model import Order, OrderLine, SellingLocation, compute_totals
from pos_order.service import saga


def _order(n: int) -> Order:
    lines = [OrderLine("TEE", "Tee", 1, Money(1000 + n, "USD"), "F1")]
    return Order(
        id=f"ord_{uuid.uuid4().hex}",
        location_id="loc_1",
        customer_id="",
        lines=lines,
        totals=compute_totals(lines, Money(0, "USD"), 825),
        discounts_applied=True,
    )


async def _feed(new_uow: object, since: datetime, limit: int) -> list[tuple[str, int]]:
    """Every page of the feed from `since`, as a partner follows it: (id, version) each."""
    seen: list[tuple[str, int]] = []
    token = ""
    for _ in range(50):
        page = PageRequest(limit, since=since, cursor=decode_change(token))
        async with new_uow().reading() as uow:  # type: ignore[operator]
            found = await uow.orders.list(page)
        seen += [(o.id, o.version) for o in found[:limit]]
        if len(found) <= limit:
            return seen
        token = encode_change(found[limit - 1].updated_at, found[limit - 1].id)
    raise AssertionError("the feed never ended")


async def test_the_order_feed_pages_to_its_end_in_change_order(infra: Infra) -> None:
    engine = make_engine(infra.service_database("order"))
    merchant = f"mer_feed_{uuid.uuid4().hex[:8]}"

    def new_uow() -> OrderUow:
        return OrderUow(engine, kit).bind(merchant)

    try:
        since = datetime.now(UTC) - timedelta(seconds=1)
        made = [_order(n) for n in range(5)]
        for order in made:
            async with new_uow() as uow:
                assert await uow.orders.add(order)
                await uow.commit()
        # The first order changes last; the third is only touched (bookkeeping).
        await saga.change(new_uow, made[0].id, lambda o: setattr(o, "notes", "changed"))
        async with new_uow() as uow:
            await uow.orders.touch(made[2].id)
            await uow.commit()

        seen = await _feed(new_uow, since, limit=2)
        ids = [order_id for order_id, _ in seen]
        assert ids == [o.id for o in made[1:]] + [made[0].id]  # oldest change first, once each
        assert dict(seen)[made[0].id] == made[0].version + 1

        # Polling again from the last change seen finds only what changed since.
        async with new_uow().reading() as uow:
            last = await uow.orders.get(made[0].id)
        assert last is not None
        assert [i for i, _ in await _feed(new_uow, last.updated_at, limit=2)] == [made[0].id]
    finally:
        await engine.dispose()


async def test_a_store_confirmed_moments_ago_is_not_read_again(
    infra: Infra, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A sale writes its store's live rates into the read model; one at the same store with
    the same rates within `CONFIRMED_FOR` reads nothing (the row is left as another writer, an
    event, made it); after that window the live rates are written again."""
    engine = make_engine(infra.service_database("order"))
    merchant = f"mer_rates_{uuid.uuid4().hex[:8]}"
    store = SellingLocation("loc_1", "USD", 825)

    async def remember() -> None:
        async with OrderUow(engine, kit).bind(merchant) as uow:
            await uow.prices.remember_location(store)
            await uow.commit()

    try:
        await remember()
        async with engine.begin() as conn:  # another writer (a location event) changes it
            await conn.execute(
                update(selling_locations)
                .where(selling_locations.c.merchant_id == merchant)
                .values(tax_rate_bps=900)
            )
        await remember()
        async with engine.connect() as conn:
            found = select(selling_locations.c.tax_rate_bps).where(
                selling_locations.c.merchant_id == merchant
            )
            assert (await conn.execute(found)).scalar_one() == 900  # not read, not written
            monkeypatch.setattr(repository, "CONFIRMED_FOR", 0.0)
            await remember()
            await conn.rollback()
            assert (await conn.execute(found)).scalar_one() == 825  # read again, corrected
    finally:
        await engine.dispose()
