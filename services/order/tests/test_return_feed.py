"""The return list as a change feed (`updated_since`): oldest change first, resumed from its
cursor to the end, never skipping a change (a slow transaction holds the feed back instead),
and never showing a return again for the resumer's bookkeeping (`touch`), which changed
nothing. Real PostgreSQL, the order service's repository."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta

from pos_devstack.testing import Infra
from pos_kit.db import make_engine
from pos_kit.paging import PageRequest, decode_change, encode_change
from pos_order.adapters.repository import OrderUow
from pos_order.adapters.tables import kit
from pos_order.domain.returns import Return, ReturnLine, ReturnStatus
from pos_order.service.ports import ReturnFilters


def _return(n: int) -> Return:
    return Return(
        id=f"ret_{uuid.uuid4().hex}",
        order_id=f"ord_{n}",
        lines=[ReturnLine("L1", "TEE", 1, True, "loc_1", 1000 + n)],
        reason="unwanted",
        currency="USD",
        amount=1000 + n,
        created_at=datetime.now(UTC),
    )


async def _feed(new_uow: object, since: datetime, limit: int) -> list[tuple[str, str]]:
    """Every page of the feed from `since`, as a partner follows it: (id, status) each."""
    seen: list[tuple[str, str]] = []
    token = ""
    for _ in range(50):
        page = PageRequest(limit, since=since, cursor=decode_change(token))
        async with new_uow().reading() as uow:  # type: ignore[operator]
            found = await uow.returns.page(ReturnFilters(), page)
        seen += [(r.id, r.status.value) for r in found[:limit]]
        if len(found) <= limit:
            return seen
        token = encode_change(found[limit - 1].updated_at, found[limit - 1].id)
    raise AssertionError("the feed never ended")


async def test_the_return_feed_pages_to_its_end_in_change_order(infra: Infra) -> None:
    engine = make_engine(infra.service_database("order"))
    merchant = f"mer_rfeed_{uuid.uuid4().hex[:8]}"

    def new_uow() -> OrderUow:
        return OrderUow(engine, kit).bind(merchant)

    try:
        since = datetime.now(UTC) - timedelta(seconds=1)
        made = [_return(n) for n in range(5)]
        for ret in made:
            async with new_uow() as uow:
                await uow.returns.add(ret)
                await uow.commit()
        assert all(r.updated_at is not None for r in made)
        # The first return completes last; the third is only touched (the resumer's retry).
        async with new_uow() as uow:
            first = await uow.returns.get(made[0].id)
            assert first is not None
            first.status, first.completed_at = ReturnStatus.COMPLETED, datetime.now(UTC)
            await uow.returns.save(first)
            await uow.returns.touch(made[2].id)
            await uow.commit()
        assert first.updated_at is not None and first.updated_at > made[4].updated_at  # type: ignore[operator]

        seen = await _feed(new_uow, since, limit=2)
        assert [i for i, _ in seen] == [r.id for r in made[1:]] + [made[0].id]  # once each
        assert dict(seen)[made[0].id] == "completed"

        # Polling again from the last change seen finds only what changed since.
        assert [i for i, _ in await _feed(new_uow, first.updated_at, limit=2)] == [made[0].id]
    finally:
        await engine.dispose()


async def test_a_slow_return_holds_the_feed_back_instead_of_being_skipped(infra: Infra) -> None:
    """A return written early in a transaction that commits late is stamped before one a fast
    transaction committed meanwhile: the feed shows neither until the slow one ends, so a
    poller resuming from the fast one's stamp does not skip the slow one."""
    engine = make_engine(infra.service_database("order"), pool_size=4)
    merchant = f"mer_rslow_{uuid.uuid4().hex[:8]}"

    def new_uow() -> OrderUow:
        return OrderUow(engine, kit).bind(merchant)

    try:
        since = datetime.now(UTC) - timedelta(seconds=1)
        slow_return, fast_return = _return(1), _return(2)
        async with new_uow() as slow:
            await slow.returns.add(slow_return)
            async with new_uow() as fast:
                await fast.returns.add(fast_return)
                await fast.commit()
            # Committed, but not shown yet: the slow return, still open, is stamped before it.
            assert await _feed(new_uow, since, limit=10) == []
            await slow.commit()
        assert [i for i, _ in await _feed(new_uow, since, limit=10)] == [
            slow_return.id,
            fast_return.id,
        ]
    finally:
        await engine.dispose()
