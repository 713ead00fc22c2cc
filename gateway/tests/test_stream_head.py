"""A live stream opened with no position starts at the head of the feed, which the dispatcher
tells in one page (`head`): it no longer reads the whole feed first.

The real gateway application against its real database, and a dispatcher of the test's own
(gRPC, in process) holding a long feed, that counts what it is asked.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import gateway_alone
import grpc
import pytest
import pytest_asyncio
from google.protobuf.timestamp_pb2 import Timestamp

from pos.dispatcher.v1 import dispatcher_pb2 as pb
from pos.dispatcher.v1 import dispatcher_pb2_grpc
from pos_devstack.natsd import free_port
from pos_devstack.testing import Infra
from pos_gateway.routes import events as event_routes

pytestmark = pytest.mark.asyncio(loop_scope="session")

SECRET = "stream-head-test-secret-0123456789abcdef"
HEAD = 1_000_000  # a busy merchant's month: 5,000 pages of 200
STAMP = Timestamp(seconds=1_796_000_000)


class LongFeed(dispatcher_pb2_grpc.DispatcherServiceServicer):  # type: ignore[misc]
    """A feed of `last` events, and one more once a reader is at its end; `old`: a
    dispatcher from before `head`."""

    def __init__(self) -> None:
        self.asked: list[tuple[int, int]] = []
        self.old = False
        self.last = HEAD
        self.grown = False

    async def ListEvents(self, request: pb.ListEventsRequest, context: Any) -> Any:
        self.asked.append((request.after, request.page_size))
        if request.after == self.last and not self.grown:
            self.last, self.grown = self.last + 1, True
        last = self.last
        size = request.page_size or 50
        events = [
            pb.Event(
                id=f"evt_{n}",
                type="promotion.deleted",
                sequence=n,
                merchant_id="mer_1",
                occurred_at=STAMP,
                data_json=f'{{"object": {{"id": "promo_{n}"}}}}',
            )
            for n in range(request.after + 1, min(request.after + size, last) + 1)
        ]
        answer = pb.ListEventsResponse(
            events=events,
            next_after=events[-1].sequence if events else request.after,
            has_more=bool(events) and events[-1].sequence < last,
        )
        if not self.old:
            answer.head = last
        return answer


@pytest_asyncio.fixture(scope="module", loop_scope="session")
async def feed() -> AsyncIterator[tuple[LongFeed, str]]:
    servicer = LongFeed()
    server = grpc.aio.server()
    dispatcher_pb2_grpc.add_DispatcherServiceServicer_to_server(servicer, server)
    address = f"127.0.0.1:{free_port()}"
    server.add_insecure_port(address)
    await server.start()
    try:
        yield servicer, address
    finally:
        await server.stop(None)


async def test_a_stream_from_now_starts_at_the_head_in_one_call(
    infra: Infra, feed: tuple[LongFeed, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    servicer, address = feed
    # The stream ends soon on its own (a client would reconnect), so its answer can be read.
    monkeypatch.setattr(event_routes, "STREAM_SECONDS", 1.0)
    url = infra.service_database("gateway")
    key = await gateway_alone.merchant_key(url, SECRET, "Stream head")
    made = gateway_alone.settings(url, SECRET, dispatcher_addr=address)
    async with gateway_alone.serve(made, key) as (_, http):
        answer = await http.get("/v1/events/stream", timeout=30)
        assert answer.status_code == 200, answer.text
        # The event after the head comes; none of the million before it.
        assert f"id: {HEAD + 1}\n" in answer.text
        assert "id: 1\n" not in answer.text
        walked = [after for after, _ in servicer.asked if 0 < after < HEAD]
        assert walked == [], f"read {len(walked)} pages of the feed before the head"

        # A dispatcher from before `head` is walked to its end, as before (a short feed).
        servicer.asked.clear()
        servicer.old, servicer.last, servicer.grown = True, 450, False
        answer = await http.get("/v1/events/stream", timeout=30)
        assert answer.status_code == 200, answer.text
        assert "id: 451\n" in answer.text and "id: 450\n" not in answer.text
