"""JetStream connections and streams: one stream per owning service plus a dead-letter stream."""

from __future__ import annotations

import asyncio
import logging
import ssl
from collections.abc import Coroutine
from typing import Any, TypeVar

import nats
from nats.aio.client import Client as NATS
from nats.js import JetStreamContext
from nats.js.api import DiscardPolicy, RetentionPolicy, StorageType, StreamConfig
from nats.js.errors import NotFoundError

SERVICES = ("inventory", "promotion", "customer", "payment", "order")
DLQ_STREAM = "POS_DLQ"
DLQ_PREFIX = "pos.dlq"
# JetStream drops a re-published event with the same Nats-Msg-Id inside this window.
DUPLICATE_WINDOW_SECONDS = 120.0

T = TypeVar("T")
log = logging.getLogger(__name__)


def stream_name(service: str) -> str:
    return f"POS_{service.upper()}"


def stream_config(service: str, replicas: int = 1) -> StreamConfig:
    return StreamConfig(
        num_replicas=replicas,
        name=stream_name(service),
        subjects=[f"pos.{service}.v1.>"],
        retention=RetentionPolicy.LIMITS,
        storage=StorageType.FILE,
        discard=DiscardPolicy.OLD,
        max_age=30 * 24 * 3600.0,
        duplicate_window=DUPLICATE_WINDOW_SECONDS,
    )


async def ensure_stream(js: JetStreamContext, config: StreamConfig) -> None:
    """Create the stream if it is missing; owners and consumers may both call this."""
    assert config.name is not None
    try:
        await js.stream_info(config.name)
    except NotFoundError:
        try:
            await js.add_stream(config)
        except Exception:
            # Another process created it between our look and our add: that is fine.
            await js.stream_info(config.name)


async def ensure_service_streams(js: JetStreamContext, *services: str, replicas: int = 1) -> None:
    for service in services:
        await ensure_stream(js, stream_config(service, replicas))
    await ensure_stream(
        js,
        StreamConfig(
            name=DLQ_STREAM,
            subjects=[f"{DLQ_PREFIX}.>"],
            storage=StorageType.FILE,
            max_age=30 * 24 * 3600.0,
            duplicate_window=DUPLICATE_WINDOW_SECONDS,
            num_replicas=replicas,
        ),
    )


class StoppedWaiting(Exception):
    """`connect` was told to stop (the service is stopping) before NATS answered."""


async def connect(
    servers: list[str],
    name: str,
    stop: asyncio.Event | None = None,
    tls: ssl.SSLContext | None = None,
) -> NATS:
    """Connect, retrying until NATS answers: a service starts and takes writes without it.
    With `tls` (tls:// servers), the server's certificate is verified with that context.
    Setting `stop` ends the wait at once (StoppedWaiting): a service whose NATS is down still
    shuts down promptly."""
    delay = 0.2
    while True:
        # The client retries on its own (max_reconnect_attempts=-1); this loop is for what it
        # gives up on (a TLS or an authorisation failure, say).
        attempt = nats.connect(
            servers=servers,
            name=name,
            tls=tls,
            connect_timeout=2,
            max_reconnect_attempts=-1,
            reconnect_time_wait=0.5,
            allow_reconnect=True,
        )
        try:
            return await _unless_stopped(attempt, stop)
        except StoppedWaiting:
            raise
        except Exception as exc:
            log.warning("NATS not reachable (%s); retrying", exc.__class__.__name__)
        await _unless_stopped(asyncio.sleep(delay), stop)
        delay = min(delay * 2, 5.0)


async def _unless_stopped(work: Coroutine[Any, Any, T], stop: asyncio.Event | None) -> T:
    if stop is None:
        return await work
    task = asyncio.ensure_future(work)
    stopped = asyncio.ensure_future(stop.wait())
    try:
        await asyncio.wait((task, stopped), return_when=asyncio.FIRST_COMPLETED)
    finally:
        stopped.cancel()
        if not task.done():
            task.cancel()
            # Bounded: a cancellation the client's own retry loop swallows must not hold up a
            # shutdown (the task is then left to the loop's end).
            await asyncio.wait((task,), timeout=1.0)
    if not task.done() or task.cancelled():
        raise StoppedWaiting("stopped before NATS answered")
    return task.result()
