"""JetStream connections and streams: one stream per owning service plus a dead-letter stream."""

from __future__ import annotations

import asyncio
import logging
import ssl

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


async def connect(
    servers: list[str],
    name: str,
    stop: asyncio.Event | None = None,
    tls: ssl.SSLContext | None = None,
) -> NATS:
    """Connect, retrying until NATS answers: a service starts and takes writes without it.
    With `tls` (tls:// servers), the server's certificate is verified with that context."""
    delay = 0.2
    while True:
        try:
            return await nats.connect(
                servers=servers,
                name=name,
                tls=tls,
                connect_timeout=2,
                max_reconnect_attempts=-1,
                reconnect_time_wait=0.5,
                allow_reconnect=True,
            )
        except Exception as exc:
            if stop is not None and stop.is_set():
                raise
            log.warning("NATS not reachable (%s); retrying", exc.__class__.__name__)
            await asyncio.sleep(delay)
            delay = min(delay * 2, 5.0)
