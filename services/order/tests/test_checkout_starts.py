"""A request's start as PostgreSQL keeps it (`checkout_starts`): the order and return ids
derive from it, so every run of one start (a retry, the resumer's, a replay) reads the same
stored time and nonce, and a start made anew under the same request id (its order withdrawn)
derives another order id, however soon it comes."""

from __future__ import annotations

import pytest
from sqlalchemy import update

from pos_devstack.testing import Infra
from pos_kit.db import make_engine
from pos_kit.errors import RequestIdReused
from pos_kit.idempotency import Claim
from pos_order.adapters.repository import OrderUow
from pos_order.adapters.tables import checkout_starts, kit

pytestmark = pytest.mark.asyncio(loop_scope="session")

M = "mer_starts"


async def test_a_start_is_read_back_the_same_and_one_made_anew_derives_a_new_id(
    infra: Infra,
) -> None:
    engine = make_engine(infra.service_database("order"))
    try:
        async with OrderUow(engine, kit).bind(M) as uow:
            first = await uow.checkouts.start("req-1", b"fp")
            await uow.commit()
        assert first.fresh and first.nonce
        async with OrderUow(engine, kit).bind(M) as uow:
            again = await uow.checkouts.start("req-1", b"fp")
            await uow.commit()
        assert not again.fresh
        assert (again.at, again.nonce) == (first.at, first.nonce)
        order_id = first.claim(M, "req-1").derived_id("ord")
        assert again.claim(M, "req-1").derived_id("ord") == order_id
        async with OrderUow(engine, kit).bind(M) as uow:
            with pytest.raises(RequestIdReused):
                await uow.checkouts.start("req-1", b"another body")

        # Withdrawn, then started again at the very same moment: another order id all the same.
        async with OrderUow(engine, kit).bind(M) as uow:
            await uow.checkouts.forget("req-1")
            await uow.checkouts.start("req-1", b"fp")
            await uow.conn.execute(
                update(checkout_starts)
                .where(checkout_starts.c.request_id == "req-1")
                .values(started_at=first.at)
            )
            await uow.commit()
        async with OrderUow(engine, kit).bind(M) as uow:
            anew = await uow.checkouts.start("req-1", b"fp")
        assert anew.at == first.at and anew.nonce != first.nonce
        assert anew.claim(M, "req-1").derived_id("ord") != order_id

        # A start kept from before nonces derives its ids as it did then: its order is found.
        async with OrderUow(engine, kit).bind(M) as uow:
            await uow.conn.execute(
                update(checkout_starts)
                .where(checkout_starts.c.request_id == "req-1")
                .values(nonce=None)
            )
            await uow.commit()
        async with OrderUow(engine, kit).bind(M) as uow:
            old = await uow.checkouts.start("req-1", b"fp")
        assert old.nonce == ""
        assert old.claim(M, "req-1").derived_id("ord") == Claim(M, "req-1", first.at).derived_id(
            "ord"
        )
    finally:
        await engine.dispose()
