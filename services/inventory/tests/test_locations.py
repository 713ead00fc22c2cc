"""A merchant's locations are bounded (handlers.MAX_LOCATIONS), so every answer with an entry
per location is bounded too; the bound holds under concurrent additions."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime

import pytest
from inventory_db import Db
from sqlalchemy import insert

from pos_inventory.adapters.tables import locations
from pos_inventory.domain.model import Location, LocationStatus
from pos_inventory.service import handlers
from pos_kit.errors import Conflict, InvalidArgument
from pos_kit.ids import new_id
from pos_kit.paging import PageRequest

pytestmark = pytest.mark.asyncio(loop_scope="session")


async def _merchant_with(db: Db, count: int) -> str:
    merchant = new_id("mer")
    rows = [
        {"merchant_id": merchant, "id": new_id("loc"), "name": f"Store {n}", "currency": "USD",
         "tax_rate_bps": 0}
        for n in range(count)
    ]  # fmt: skip
    async with db.engine.begin() as conn:
        await conn.execute(insert(locations), rows)
    return merchant


async def _add(db: Db, merchant: str) -> Location | Conflict:
    try:
        async with db.tx(merchant) as uow:
            return await handlers.create_location(uow, Location("", "One more", "USD", 0))
    except Conflict as refused:
        return refused


async def test_a_merchant_at_the_limit_cannot_add_a_location(db: Db) -> None:
    merchant = await _merchant_with(db, handlers.MAX_LOCATIONS)
    refused = await _add(db, merchant)
    assert isinstance(refused, Conflict)
    assert refused.code == "location_limit_reached"
    async with db.tx(merchant) as uow:
        assert await uow.locations.count_for_add() == handlers.MAX_LOCATIONS


async def test_two_additions_racing_for_the_last_place_add_one(db: Db) -> None:
    merchant = await _merchant_with(db, handlers.MAX_LOCATIONS - 1)
    answers = await asyncio.gather(*(_add(db, merchant) for _ in range(4)))
    assert sum(isinstance(a, Location) for a in answers) == 1
    assert sum(isinstance(a, Conflict) for a in answers) == 3
    async with db.tx(merchant) as uow:
        assert len(await uow.locations.all()) == handlers.MAX_LOCATIONS


async def test_a_feed_of_locations_is_not_narrowed_by_status(db: Db) -> None:
    """The `updated_since` feed is every status, as products' is: a feed of `active` ones
    would never show a location leaving it (closed), so `status` with `updated_since` is
    refused naming `status`. Without `updated_since`, `status` narrows the list."""
    merchant = await _merchant_with(db, 1)
    async with db.uow(merchant) as uow:
        listed = await handlers.list_locations(uow, PageRequest(limit=10), LocationStatus.ACTIVE)
        assert len(listed) == 1
        feed = PageRequest(limit=10, since=datetime(2026, 1, 1, tzinfo=UTC))
        assert len(await handlers.list_locations(uow, feed)) == 1
        with pytest.raises(InvalidArgument) as refused:
            await handlers.list_locations(uow, feed, LocationStatus.ACTIVE)
    assert [v.field for v in refused.value.violations] == ["status"]
