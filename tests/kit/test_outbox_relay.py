"""The outbox relay against real PostgreSQL and NATS: nothing lost, nothing published twice."""

from __future__ import annotations

import asyncio
import socket
import subprocess
import sys
import textwrap
import time

import nats
import pytest
from nats.js.api import StreamConfig
from sqlalchemy import select, update

from pos.customer.v1 import events_pb2
from pos_customer.adapters.tables import kit
from pos_devstack.testing import Infra
from pos_kit.db import make_engine
from pos_kit.events import EVENT_ID_HEADER, make_event
from pos_kit.relay import OutboxRelay
from pos_kit.streams import StoppedWaiting, connect, ensure_service_streams, stream_name
from pos_kit.uow import UnitOfWork

pytestmark = pytest.mark.asyncio(loop_scope="session")


def _event(name: str) -> events_pb2.LoyaltyPointsEarned:
    return events_pb2.LoyaltyPointsEarned(customer_id=name, order_id="ord_1", points=5, balance=5)


async def _stream_messages(js, service: str) -> list:  # type: ignore[no-untyped-def]
    info = await js.stream_info(stream_name(service))
    found = []
    for seq in range(info.state.first_seq, info.state.last_seq + 1):
        if info.state.messages == 0:
            break
        found.append(await js.get_msg(stream_name(service), seq))
    return found


async def _wait_for(predicate, limit: float = 15.0) -> None:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + limit
    while not await predicate():
        if time.monotonic() > deadline:
            raise AssertionError("condition not met before the deadline")
        await asyncio.sleep(0.05)


async def test_event_written_while_nats_is_down_is_published_after_it_returns(
    infra: Infra,
) -> None:
    server = infra.new_nats()
    engine = make_engine(infra.service_database("customer"))
    nc = await nats.connect(server.url, max_reconnect_attempts=-1, reconnect_time_wait=0.2)
    js = nc.jetstream()
    await ensure_service_streams(js, "customer")
    relay = OutboxRelay(engine, kit, js, publish_timeout=0.5)
    try:
        server.stop()
        async with UnitOfWork(engine, kit) as uow:
            outgoing = make_event(_event("cus_while_down"), "mer_a")
            uow.emit(outgoing)
            await uow.commit()

        # The write went on; publishing fails and the row stays unpublished.
        with pytest.raises(Exception):  # noqa: B017 - any transport error is the point here
            await relay.publish_batch()
        async with engine.connect() as conn:
            pending = await conn.scalar(
                select(kit.outbox.c.published_at).where(kit.outbox.c.event_id == outgoing.event_id)
            )
        assert pending is None

        server.start()  # same port and store: the stream survives

        async def published() -> bool:
            try:
                return await relay.publish_batch() >= 1
            except Exception:
                return False

        await _wait_for(published)
        messages = await _stream_messages(js, "customer")
        ids = [m.headers[EVENT_ID_HEADER] for m in messages]
        assert ids.count(outgoing.event_id) == 1
        payload = next(m for m in messages if m.headers[EVENT_ID_HEADER] == outgoing.event_id)
        assert events_pb2.LoyaltyPointsEarned.FromString(payload.data).customer_id == (
            "cus_while_down"
        )
    finally:
        await nc.close()
        await engine.dispose()
        server.stop()


async def test_republishing_after_a_crash_between_ack_and_commit_is_deduplicated(
    infra: Infra,
) -> None:
    server = infra.new_nats()
    engine = make_engine(infra.service_database("customer"))
    nc = await nats.connect(server.url)
    js = nc.jetstream()
    await ensure_service_streams(js, "customer")
    relay = OutboxRelay(engine, kit, js)
    try:
        async with UnitOfWork(engine, kit) as uow:
            uow.emit(make_event(_event("cus_dup"), "mer_a"))
            await uow.commit()
        assert await relay.publish_batch() == 1
        # As if the relay died after the ack but before marking the row: it goes out again.
        async with engine.begin() as conn:
            await conn.execute(update(kit.outbox).values(published_at=None))
        assert await relay.publish_batch() == 1
        assert len(await _stream_messages(js, "customer")) == 1
    finally:
        await nc.close()
        await engine.dispose()
        server.stop()


async def test_process_killed_between_commit_and_publish_loses_nothing(infra: Infra) -> None:
    server = infra.new_nats()
    url = infra.service_database("customer")
    # A process commits an event, then dies at once (SIGKILL) before any relay could run.
    script = textwrap.dedent(
        f"""
        import asyncio, os, signal
        from pos.customer.v1 import events_pb2
        from pos_customer.adapters.tables import kit
        from pos_kit.db import make_engine
        from pos_kit.events import make_event
        from pos_kit.uow import UnitOfWork

        async def main():
            engine = make_engine({url!r})
            async with UnitOfWork(engine, kit) as uow:
                uow.emit(make_event(events_pb2.LoyaltyPointsEarned(customer_id="cus_killed"), "m"))
                await uow.commit()
            os.kill(os.getpid(), signal.SIGKILL)

        asyncio.run(main())
        """
    )
    proc = subprocess.run(  # noqa: ASYNC221 - the test waits on purpose for the crash
        [sys.executable, "-c", script], capture_output=True, timeout=60
    )
    assert proc.returncode == -9, proc.stderr.decode()

    engine = make_engine(url)
    nc = await nats.connect(server.url)
    js = nc.jetstream()
    try:
        await ensure_service_streams(js, "customer")
        stop = asyncio.Event()
        relay = OutboxRelay(engine, kit, js)
        task = asyncio.create_task(relay.run(stop))

        async def arrived() -> bool:
            messages = await _stream_messages(js, "customer")
            return any(
                events_pb2.LoyaltyPointsEarned.FromString(m.data).customer_id == "cus_killed"
                for m in messages
            )

        await _wait_for(arrived)
        stop.set()
        await task
    finally:
        await nc.close()
        await engine.dispose()
        server.stop()


async def test_stream_config_keeps_a_duplicate_window(infra: Infra) -> None:
    nc = await nats.connect(infra.nats_url)
    try:
        js = nc.jetstream()
        await ensure_service_streams(js, "promotion")
        info = await js.stream_info(stream_name("promotion"))
        config: StreamConfig = info.config
        assert config.duplicate_window and config.duplicate_window >= 60
        assert config.subjects == ["pos.promotion.v1.>"]
    finally:
        await nc.close()


async def test_waiting_for_nats_ends_when_the_service_stops() -> None:
    # A port held and never listened on: every attempt is refused, so `connect` keeps waiting
    # until told to stop, and then it must give up at once instead of holding up a shutdown.
    with socket.socket() as held:
        held.bind(("127.0.0.1", 0))
        stop = asyncio.Event()
        waiting = asyncio.create_task(
            connect([f"nats://127.0.0.1:{held.getsockname()[1]}"], "test", stop)
        )
        await asyncio.sleep(0.3)
        assert not waiting.done()  # still retrying
        stop.set()
        with pytest.raises(StoppedWaiting):
            await asyncio.wait_for(waiting, 5)
