"""The resumer: after a crash of any process, every saga left unfinished is taken further
(finished when it can be, compensated when it was abandoned), and every order with something
due (an unconfirmed order's holds running out, a pickup not collected) is dealt with. Every
replica runs it; the order row's lock orders two replicas on one order, and the steps they call
are idempotent by their derived request ids."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable
from datetime import timedelta

from sqlalchemy import and_, func, or_, select
from sqlalchemy.ext.asyncio import AsyncEngine

from pos_kit.context import merchant_var
from pos_kit.db import reads
from pos_order.adapters.repository import OrderUow
from pos_order.adapters.tables import order_returns, orders
from pos_order.service import returns, saga
from pos_order.service.ports import CheckoutPorts
from pos_order.service.saga import Policy

log = logging.getLogger(__name__)


class Resumer:
    def __init__(
        self,
        engine: AsyncEngine,
        uow: Callable[[], OrderUow],
        ports: CheckoutPorts,
        policy: Policy,
        interval: float,
        return_ports: returns.ReturnPorts | None = None,
    ) -> None:
        self._engine = engine
        self._uow = uow
        self._ports = ports
        self._policy = policy
        self._interval = interval
        self._return_ports = return_ports

    async def due(self, limit: int = 100) -> list[tuple[str, str]]:
        idle = func.now() - self._policy.abandon_after
        query = (
            select(orders.c.merchant_id, orders.c.id)
            .where(
                or_(
                    and_(orders.c.saga_state != "done", orders.c.touched_at < idle),
                    and_(orders.c.due_at.is_not(None), orders.c.due_at <= func.now()),
                )
            )
            .order_by(orders.c.touched_at)
            .limit(limit)
        )
        async with reads(self._engine) as conn:
            rows = (await conn.execute(query)).all()
        return [(r.merchant_id, r.id) for r in rows]

    async def pending_returns(self, limit: int = 100) -> list[tuple[str, str]]:
        idle = func.now() - self._policy.abandon_after
        query = (
            select(order_returns.c.merchant_id, order_returns.c.id)
            .where(
                order_returns.c.status == "pending",
                # Refused for good: it waits for a person (SettleReturn), not for a retry.
                order_returns.c.refusal == "",
                order_returns.c.touched_at < idle,
            )
            .order_by(order_returns.c.touched_at)
            .limit(limit)
        )
        async with reads(self._engine) as conn:
            rows = (await conn.execute(query)).all()
        return [(r.merchant_id, r.id) for r in rows]

    async def sweep_returns(self) -> int:
        """Returns left pending past the abandon time: their refund and restock asked again
        under the same ids, then completed."""
        if self._return_ports is None:
            return 0
        found = await self.pending_returns()
        for merchant, return_id in found:

            def bound(m: str = merchant) -> OrderUow:
                return self._uow().bind(m)

            token = merchant_var.set(merchant)
            try:
                await returns.resume(bound, self._return_ports, return_id)
            except Exception as exc:
                log.warning("could not resume return %s: %s", return_id, exc)
                await _put_back(bound, return_id=return_id)
            finally:
                merchant_var.reset(token)
        return len(found)

    async def sweep(self) -> int:
        """One pass; how many orders and returns it looked at."""
        looked = await self.sweep_returns()
        found = await self.due()
        for merchant, order_id in found:

            def bound(m: str = merchant) -> OrderUow:
                return self._uow().bind(m)

            # The calls to other services carry the order's merchant, as a request's would.
            token = merchant_var.set(merchant)
            try:
                await saga.resume(bound, self._ports, order_id, self._policy)
            except Exception as exc:
                # One order must not stop the others; it is tried again after its window.
                log.warning("could not resume order %s: %s", order_id, exc)
                await _put_back(bound, order_id=order_id)
            finally:
                merchant_var.reset(token)
        return looked + len(found)

    async def run(self, stop: asyncio.Event) -> None:
        while not stop.is_set():
            try:
                await self.sweep()
            except Exception as exc:
                log.warning("order resumer pass failed (%s); trying again", type(exc).__name__)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), self._interval)


async def _put_back(
    new_uow: Callable[[], OrderUow], order_id: str = "", return_id: str = ""
) -> None:
    """One that failed goes to the back of the queue, out of the way until its window has
    passed again: otherwise the oldest failures, tried first on every pass, would fill the
    pass's limit and the others behind them would never be resumed."""
    try:
        async with new_uow() as uow:
            if return_id:
                await uow.returns.touch(return_id)
            else:
                await uow.orders.touch(order_id)
            await uow.commit()
    except Exception as exc:
        log.warning("could not put a failed resumption back (%s)", type(exc).__name__)


def abandon_after(seconds: float) -> timedelta:
    return timedelta(seconds=seconds)
