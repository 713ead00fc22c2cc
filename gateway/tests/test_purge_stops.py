"""The gateway's hourly purge stops when its app stops, even when its cancellation was
swallowed on the way (turned into an error of the database layer's, which the purge, tried
again next hour, takes for a failure).

Seen in CI: a purge cancelled by an app's shutdown slept on for its hour as `cancelling`, and the
test session's event loop, closing, waited for it."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from pos_gateway.app import _purge_hourly

pytestmark = pytest.mark.asyncio(loop_scope="session")


class SwallowingStore:
    """An idempotency store whose purge turns its task's cancellation into an error."""

    def __init__(self) -> None:
        self.entered = asyncio.Event()

    async def purge_expired(self) -> int:
        self.entered.set()
        try:
            await asyncio.Event().wait()
        except asyncio.CancelledError:
            raise RuntimeError("query cancelled") from None
        return 0


async def test_a_purge_cancelled_mid_statement_stops_instead_of_sleeping_its_hour() -> None:
    store = SwallowingStore()
    engine: Any = None  # the audit purge fails on it at once, as a database gone away would
    purging = asyncio.create_task(_purge_hourly(store, engine))  # type: ignore[arg-type]
    await store.entered.wait()

    purging.cancel()
    done, _ = await asyncio.wait({purging}, timeout=10)

    assert purging in done and purging.cancelled()
