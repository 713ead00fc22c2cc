"""The background sweep: settles what a lost answer or a crash left pending (the reconciler),
and voids authorisations left uncaptured past their window. Every replica runs it; the row
locks the settling takes make two replicas settling the same thing harmless."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable
from datetime import timedelta

from sqlalchemy.ext.asyncio import AsyncEngine

from pos_kit.db import reads
from pos_payment.adapters.repository import OpenWork, PaymentUow, open_work
from pos_payment.service import handlers
from pos_payment.service.handlers import Policy
from pos_payment.service.ports import Processors, TerminalReader

log = logging.getLogger(__name__)

_SETTLE = {
    "payment": handlers.reconcile_payment,
    "operation": handlers.reconcile_operation,
    "refund": handlers.reconcile_refund,
    "expired": handlers.expire_authorization,
}


class Sweeper:
    def __init__(
        self,
        engine: AsyncEngine,
        uow: Callable[[], PaymentUow],
        processors: Processors,
        reader: TerminalReader,
        policy: Policy,
        interval: float,
        grace: timedelta,
    ) -> None:
        self._engine = engine
        self._uow = uow
        self._processors = processors
        self._reader = reader
        self._policy = policy
        self._interval = interval
        self._grace = grace

    async def sweep(self) -> int:
        """One pass; how many items it looked at."""
        async with reads(self._engine) as conn:
            work = await open_work(conn, self._grace)
        for item in work:
            try:
                await self._settle(item)
            except Exception:
                # One bad item must not stop the others; it is tried again next pass.
                log.exception("could not settle %s %s", item.kind, item.id)
        return len(work)

    async def _settle(self, item: OpenWork) -> None:
        def bound() -> PaymentUow:
            return self._uow().bind(item.merchant_id)

        if item.kind == "terminal":
            await handlers.settle_terminal(bound, self._reader, item.id, self._policy)
        else:
            await _SETTLE[item.kind](bound, self._processors, item.id, self._policy)

    async def run(self, stop: asyncio.Event) -> None:
        while not stop.is_set():
            try:
                await self.sweep()
            except Exception as exc:
                log.warning("payment sweep failed (%s); trying again", exc.__class__.__name__)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), self._interval)
