"""Each merchant's active offers, held in memory so a calculation reads nothing in the common
case.

Kept right by the promotions' own events: every replica listens to `pos.promotion.v1.>` (a plain
NATS subscription, so each replica sees every event, which a shared durable consumer would not)
and forgets the merchant named in the event's header. The replica that made a change also
forgets it at once, so its next answer already sees it. A load that raced an invalidation is not
kept (a generation number per merchant), and entries expire after `ttl` seconds anyway, which
bounds how stale a replica can be if NATS is down.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Awaitable, Callable
from typing import Any

from pos_kit.events import MERCHANT_HEADER
from pos_kit.runtime import ServiceRuntime
from pos_promotion.domain.model import Promotion

log = logging.getLogger(__name__)
SUBJECTS = "pos.promotion.v1.>"

Loader = Callable[[str], Awaitable[list[Promotion]]]


class ActiveOffers:
    def __init__(self, load: Loader, ttl: float = 60.0) -> None:
        self._load = load
        self._ttl = ttl
        self._entries: dict[str, tuple[float, list[Promotion]]] = {}
        self._generation: dict[str, int] = {}
        self._inflight: dict[str, asyncio.Future[list[Promotion]]] = {}
        self.loads = 0  # how many times the database was read (tests and the benchmark)

    async def active(self, merchant_id: str) -> list[Promotion]:
        entry = self._entries.get(merchant_id)
        if entry is not None and entry[0] > time.monotonic():
            return entry[1]
        pending = self._inflight.get(merchant_id)
        if pending is not None:  # one read per merchant at a time, however many callers wait
            return await asyncio.shield(pending)
        future: asyncio.Future[list[Promotion]] = asyncio.get_running_loop().create_future()
        self._inflight[merchant_id] = future
        generation = self._generation.get(merchant_id, 0)
        try:
            self.loads += 1
            found = await self._load(merchant_id)
        except BaseException as exc:
            future.set_exception(exc)
            future.exception()  # retrieved: nobody else may be waiting
            raise
        finally:
            self._inflight.pop(merchant_id, None)
        if self._generation.get(merchant_id, 0) == generation:
            self._entries[merchant_id] = (time.monotonic() + self._ttl, found)
        future.set_result(found)
        return found

    def invalidate(self, merchant_id: str) -> None:
        self._generation[merchant_id] = self._generation.get(merchant_id, 0) + 1
        self._entries.pop(merchant_id, None)


def invalidator(
    runtime: ServiceRuntime[Any], cache: ActiveOffers
) -> Callable[[asyncio.Event], Any]:
    """A background task: once messaging is up, forget a merchant on each of its events."""

    async def run(stop: asyncio.Event) -> None:
        waiting = asyncio.create_task(runtime.ready.wait())
        stopping = asyncio.create_task(stop.wait())
        await asyncio.wait({waiting, stopping}, return_when=asyncio.FIRST_COMPLETED)
        waiting.cancel()
        if stop.is_set() or runtime.nats is None:
            stopping.cancel()
            return

        async def on_event(msg: Any) -> None:
            merchant = (msg.headers or {}).get(MERCHANT_HEADER)
            if merchant:
                cache.invalidate(merchant)

        sub = await runtime.nats.subscribe(SUBJECTS, cb=on_event)
        try:
            await stopping
        finally:
            with contextlib.suppress(Exception):
                await sub.unsubscribe()

    return run
