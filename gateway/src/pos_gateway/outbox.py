"""The gateway's integration events: registers created, renamed, paired and retired, staff
created, updated and deactivated, overrides granted.

Registers, staff and overrides are the gateway's own data (gateway/README.md), so their events
are the gateway's to publish, the way every service publishes its own: an outbox row written in
the same transaction as the change (`publish`), and the kit's relay (`relay`) sending committed
rows to the POS_GATEWAY stream, where the dispatcher reads them into the partner feed. A change
that rolls back publishes nothing; one that commits is published even if the process dies
before NATS answers.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from datetime import datetime

from google.protobuf.message import Message
from google.protobuf.timestamp_pb2 import Timestamp
from opentelemetry.propagate import inject
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from pos_gateway.settings import GatewaySettings
from pos_gateway.tables import outbox
from pos_kit.events import make_event
from pos_kit.relay import OutboxRelay
from pos_kit.streams import connect, ensure_stream, stream_config
from pos_kit.tls import client_context

SERVICE = "gateway"
log = logging.getLogger(__name__)


async def publish(conn: AsyncConnection, merchant_id: str, message: Message) -> None:
    """Write the event to the outbox in the caller's transaction."""
    event = make_event(message, merchant_id)
    carrier: dict[str, str] = {}
    inject(carrier)
    await conn.execute(
        outbox.insert().values(
            event_id=event.event_id,
            subject=event.subject,
            event_type=event.event_type,
            merchant_id=event.merchant_id,
            payload=event.payload,
            traceparent=carrier.get("traceparent"),
        )
    )


def stamp(value: datetime | None) -> Timestamp | None:
    """A protobuf timestamp, None (unset) for None."""
    if value is None:
        return None
    out = Timestamp()
    out.FromDatetime(value)
    return out


async def relay(engine: AsyncEngine, settings: GatewaySettings, stop: asyncio.Event) -> None:
    """Background task: wait for NATS (the API serves without it; rows wait in the outbox),
    make sure the stream is there, then relay until stopped."""
    tls = client_context(settings.nats_tls_ca) if settings.nats_tls else None
    try:
        nc = await connect(settings.nats_servers, "pos-gateway-relay", stop, tls=tls)
    except Exception:
        return  # stopped before NATS answered
    try:
        js = nc.jetstream()
        while not stop.is_set():
            try:
                await ensure_stream(js, stream_config(SERVICE, settings.stream_replicas))
                break
            except Exception as exc:
                log.warning("could not set up the gateway stream (%s); retrying",
                            exc.__class__.__name__)  # fmt: skip
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(stop.wait(), 0.5)
        await OutboxRelay(engine, outbox, js).run(stop)
    finally:
        with contextlib.suppress(Exception):
            await nc.close()
