"""Points expire on their own: a background task runs the expiry of every merchant whose
program has one, once an interval."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable
from datetime import UTC, datetime

from pos_customer.adapters.repository import CustomerUow, merchants_with_expiry
from pos_customer.service import points
from pos_kit.grpc_server import BackgroundTask

log = logging.getLogger(__name__)


def points_expiry(uow: Callable[[], CustomerUow], interval_seconds: float) -> BackgroundTask:
    """A task for ServiceRuntime.background. Every replica may run it: expiry locks each
    customer's row and reads what is left to expire after the lock, so two sweeps at once
    expire the points once."""

    async def run(stop: asyncio.Event) -> None:
        while not stop.is_set():
            try:
                await expire_all(uow, datetime.now(UTC))
            except Exception as exc:  # the database may be restarting; try again next round
                log.warning("points expiry sweep failed: %s", exc.__class__.__name__)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), interval_seconds)

    return run


async def expire_all(uow: Callable[[], CustomerUow], now: datetime) -> int:
    """Expire what is due at `now` for every merchant, one transaction each; the points."""
    async with uow().reading() as reader:
        merchants = await merchants_with_expiry(reader.conn)
    total = 0
    for merchant in merchants:
        async with uow().bind(merchant) as work:
            _, expired = await points.expire(work, now)
            await work.commit()
        total += expired
    return total
