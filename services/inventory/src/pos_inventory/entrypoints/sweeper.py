"""The background loop that expires due reservations and gives their units back."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable

from pos_inventory.adapters.repository import InventoryUow
from pos_inventory.service import reservations
from pos_kit.grpc_server import BackgroundTask

log = logging.getLogger(__name__)

BATCH = 500


def expiry_sweep(uow: Callable[[], InventoryUow], interval_seconds: float) -> BackgroundTask:
    """A task for ServiceRuntime.background. Every replica may run it: SKIP LOCKED shares the
    due reservations out, so a hold expires within one interval of its time whoever sweeps."""

    async def run(stop: asyncio.Event) -> None:
        while not stop.is_set():
            try:
                await sweep_once(uow)
            except Exception as exc:  # the database may be restarting; try again next round
                log.warning("reservation expiry sweep failed: %s", exc.__class__.__name__)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), interval_seconds)

    return run


async def sweep_once(uow: Callable[[], InventoryUow]) -> int:
    """Expire everything due now, a batch a transaction; returns how many expired."""
    total = 0
    while True:
        async with uow() as work:
            expired = await reservations.expire_due(work, BATCH)
            await work.commit()
        total += expired
        if expired < BATCH:
            return total
