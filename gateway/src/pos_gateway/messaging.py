"""The gateway's JetStream connection, opened on first use (only the admin API needs it).

Requests do not wait long for it: NATS unreachable is a 503 problem at once, and the next
request tries again.
"""

from __future__ import annotations

import asyncio
import contextlib

import nats
from nats.aio.client import Client as NATS
from nats.js import JetStreamContext

from pos_gateway.problems import Problem
from pos_gateway.settings import GatewaySettings
from pos_kit.tls import client_context

CONNECT_TIMEOUT_SECONDS = 2.0


class JetStreamLink:
    def __init__(self, settings: GatewaySettings) -> None:
        self._settings = settings
        self._client: NATS | None = None
        self._lock = asyncio.Lock()

    async def jetstream(self) -> JetStreamContext:
        async with self._lock:
            if self._client is None or self._client.is_closed:
                self._client = await self._connect()
            return self._client.jetstream()

    async def _connect(self) -> NATS:
        settings = self._settings
        tls = client_context(settings.nats_tls_ca) if settings.nats_tls else None
        try:
            return await nats.connect(
                servers=settings.nats_servers,
                name="pos-gateway",
                tls=tls,
                connect_timeout=CONNECT_TIMEOUT_SECONDS,
                allow_reconnect=True,
                max_reconnect_attempts=3,
            )
        except Exception:
            raise Problem(
                503,
                "messaging_unavailable",
                "the message broker cannot be reached; retry shortly",
                headers={"Retry-After": "5"},
            ) from None

    async def close(self) -> None:
        if self._client is not None and not self._client.is_closed:
            with contextlib.suppress(Exception):
                await self._client.close()
        self._client = None
