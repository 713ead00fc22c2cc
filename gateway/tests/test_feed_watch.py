"""The shared head of a merchant's feed that live streams sleep on (feed_watch.Head)."""

from __future__ import annotations

import asyncio
from types import SimpleNamespace

from pos.dispatcher.v1 import dispatcher_pb2 as pb
from pos_gateway.feed_watch import FeedWatch, Head


async def test_streams_sleep_until_the_feed_passes_their_cursor() -> None:
    head = Head(10)
    behind = asyncio.create_task(head.wait_past(10, 5.0))
    ahead = asyncio.create_task(head.wait_past(12, 0.3))
    await asyncio.sleep(0.05)
    assert not behind.done()  # nothing new yet: asleep, not polling
    head.advance(11)
    assert await asyncio.wait_for(behind, 1.0) is True
    # Not far enough for the other: it wakes on the move, sleeps on, and gives up at its time.
    assert await ahead is False
    # A stream already behind the head does not wait at all.
    assert await asyncio.wait_for(head.wait_past(3, 5.0), 0.1) is True


async def test_the_head_never_moves_back_and_a_later_move_wakes_later_sleepers() -> None:
    head = Head(20)
    head.advance(15)
    assert head.sequence == 20
    first = asyncio.create_task(head.wait_past(20, 5.0))
    await asyncio.sleep(0.01)
    head.advance(21)
    assert await asyncio.wait_for(first, 1.0) is True
    second = asyncio.create_task(head.wait_past(21, 5.0))
    await asyncio.sleep(0.01)
    assert not second.done()  # the earlier generation's wake-up is not this sleeper's
    head.advance(25)
    assert await asyncio.wait_for(second, 1.0) is True


class _LongFeed:
    """A dispatcher's ListEvents over a feed of `last` events (pages of at most 200), with
    `head` as the dispatcher tells it; counts what it is asked."""

    def __init__(self, last: int) -> None:
        self.last = last
        self.asked: list[int] = []

    async def ListEvents(self, request: pb.ListEventsRequest) -> pb.ListEventsResponse:
        self.asked.append(request.after)
        end = min(request.after + (request.page_size or 50), self.last)
        events = [pb.Event(sequence=n) for n in range(request.after + 1, end + 1)]
        return pb.ListEventsResponse(
            events=events,
            next_after=end if events else request.after,
            has_more=end < self.last,
            head=self.last,
        )


async def test_the_watcher_learns_the_head_at_once_when_a_stream_starts_far_behind_it() -> None:
    """A stream resuming far back (`after=0`, an old Last-Event-ID) starts the merchant's
    watcher at its own cursor. The watcher reads where the feed ends from the first page
    (`head`), so a stream at the head hears of a new event at once; it walked the feed 200
    events a call before, and the live streams waited for it to pass the head (minutes for a
    busy merchant's month)."""
    feed = _LongFeed(1_000_000)
    svc = SimpleNamespace(dispatcher=feed)
    watch = FeedWatch(poll_seconds=0.01)
    async with watch.following(svc, "mer_1", 0) as head:  # type: ignore[arg-type]
        assert await head.wait_past(999_999, 2.0)
        assert len(feed.asked) <= 2, f"{len(feed.asked)} pages read to find the head"
        feed.last += 1  # a new event: the stream at the head is woken for it
        assert await head.wait_past(1_000_000, 2.0)
