"""The shared head of a merchant's feed that live streams sleep on (feed_watch.Head)."""

from __future__ import annotations

import asyncio

from pos_gateway.feed_watch import Head


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
