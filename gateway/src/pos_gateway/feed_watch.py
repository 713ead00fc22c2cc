"""One watcher of a merchant's feed per gateway process, shared by that merchant's live streams.

A live stream (`GET /v1/events/stream`) used to ask the dispatcher for new events every 250 ms
on its own, so a replica holding a thousand idle streams asked four thousand times a second for
nothing. Now one task per merchant with streams in this process follows the head of the feed
(one unfiltered `ListEvents` every 250 ms, each page telling where the feed ends, `head`); a
stream sleeps until the head passes its own cursor, and only then reads its page (with its own
type filter; a stream with none, at the watcher's last cursor, takes the watcher's page).
Idle streams cost a timer each; the dispatcher sees one poll per merchant.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator
from dataclasses import dataclass, field

from pos.dispatcher.v1 import dispatcher_pb2 as pb
from pos_gateway.clients import Services

POLL_SECONDS = 0.25
PAGE_SIZE = 200  # the streams' own page size, so a shared page is what they would read
log = logging.getLogger(__name__)


@dataclass
class Head:
    """How far a merchant's feed is known to reach, and a way to wait for it to move."""

    sequence: int
    streams: int = 0
    moved: asyncio.Event = field(default_factory=asyncio.Event)
    task: asyncio.Task[None] | None = None
    # The watcher's last page and the cursor it was read after: a stream at that cursor with
    # no type filter takes it as its own page instead of asking the dispatcher again.
    last_after: int = -1
    last_page: pb.ListEventsResponse | None = None

    def page_after(self, cursor: int) -> pb.ListEventsResponse | None:
        return self.last_page if cursor == self.last_after else None

    def advance(self, sequence: int) -> None:
        if sequence > self.sequence:
            self.sequence = sequence
            # Everyone waiting on this generation wakes; later waiters get the next one.
            self.moved.set()
            self.moved = asyncio.Event()

    async def wait_past(self, cursor: int, seconds: float) -> bool:
        """True once the feed reaches past `cursor`; False after `seconds` without it."""
        if self.sequence > cursor:
            return True
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self.moved.wait(), seconds)
        return self.sequence > cursor


class FeedWatch:
    def __init__(self, poll_seconds: float = POLL_SECONDS) -> None:
        self.poll_seconds = poll_seconds
        self._heads: dict[str, Head] = {}

    @contextlib.asynccontextmanager
    async def following(self, svc: Services, merchant_id: str, known: int) -> AsyncIterator[Head]:
        """The merchant's head while the caller streams; its watcher runs while any does.

        Entered in the request's context (the merchant travels with every call the watcher
        makes, as the kit's client reads it from there)."""
        head = self._heads.get(merchant_id)
        if head is None:
            head = self._heads[merchant_id] = Head(known)
        head.streams += 1
        if head.task is None or head.task.done():
            head.task = asyncio.create_task(self._watch(svc, head))
        try:
            yield head
        finally:
            head.streams -= 1
            if head.streams == 0:
                self._heads.pop(merchant_id, None)
                if head.task is not None:
                    head.task.cancel()

    async def _watch(self, svc: Services, head: Head) -> None:
        while head.streams > 0:
            try:
                page = await svc.dispatcher.ListEvents(
                    pb.ListEventsRequest(after=head.sequence, page_size=PAGE_SIZE)
                )
            except asyncio.CancelledError:
                raise
            except Exception:  # the dispatcher restarting: its streams wait, then go on
                log.warning("the feed's head could not be read; trying again", exc_info=True)
                await asyncio.sleep(1.0)
                continue
            if page.events:
                head.last_after, head.last_page = head.sequence, page
            # Where the feed ends, as the dispatcher tells it (`head`): a watcher started by
            # a stream far behind (after=0, an old Last-Event-ID) knows it at once, instead
            # of walking the feed 200 events a call while the streams at the head waited.
            head.advance(max(page.next_after, page.head))
            if not page.has_more or head.sequence >= page.head > 0:
                await asyncio.sleep(self.poll_seconds)
