"""A tier change's re-tiering past its first batch: a background task finishes it, a batch a
transaction, for every merchant with some left (service/points.py `retier_next`)."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable

from pos_customer.adapters.repository import CustomerUow, merchants_retiering
from pos_customer.service import points
from pos_kit.grpc_server import BackgroundTask

log = logging.getLogger(__name__)


def retiering(uow: Callable[[], CustomerUow], interval_seconds: float) -> BackgroundTask:
    """A task for ServiceRuntime.background. Every replica may run it: each batch takes the
    merchant's program row first, so two passes take turns and never re-tier a batch twice."""

    async def run(stop: asyncio.Event) -> None:
        while not stop.is_set():
            try:
                await retier_all(uow, stop)
            except Exception as exc:  # the database may be restarting; try again next round
                log.warning("re-tiering pass failed: %s", exc.__class__.__name__)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), interval_seconds)

    return run


async def retier_all(uow: Callable[[], CustomerUow], stop: asyncio.Event | None = None) -> int:
    """Finish every merchant's re-tiering left to do, one transaction a batch; the batches."""
    async with uow().reading() as reader:
        merchants = await merchants_retiering(reader.conn)
    batches = 0
    for merchant in merchants:
        more = True
        while more and not (stop and stop.is_set()):
            async with uow().bind(merchant) as work:
                more = await points.retier_next(work)
                await work.commit()
            batches += 1
    return batches
