"""A dispatcher running for real (its own database and NATS, in the test's loop, on a clock the
test may move), a real HTTP receiver for its webhooks, and a way to publish integration events
as a service's relay does."""

from __future__ import annotations

import asyncio
import json
import logging
import socket
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import grpc
import pytest_asyncio
import uvicorn
from google.protobuf.message import Message
from pos_dispatcher.bootstrap import Dispatcher, Settings
from pos_dispatcher.entrypoints import grpc_api

from pos.dispatcher.v1 import dispatcher_pb2 as pb
from pos.dispatcher.v1 import dispatcher_pb2_grpc
from pos_devstack.natsd import LocalNats
from pos_devstack.testing import Infra, publish_as_relay, publish_made_event, until
from pos_kit import service as kit_service
from pos_kit.events import OutgoingEvent
from pos_kit.grpc_server import GrpcService


class Clock:
    """Real time plus an offset the test can add to (`travel`), or, once `freeze` is called,
    a fixed time only the test moves: three days of retries in a second."""

    def __init__(self) -> None:
        self.offset = timedelta(0)
        self.fixed: datetime | None = None

    def __call__(self) -> datetime:
        return self.fixed if self.fixed is not None else datetime.now(UTC) + self.offset

    def travel(self, by: timedelta) -> None:
        if self.fixed is not None:
            self.fixed += by
        else:
            self.offset += by

    def freeze(self) -> None:
        self.fixed = self()


@dataclass
class Received:
    headers: dict[str, str]
    body: str
    at: float
    path: str = "/hooks"

    def json(self) -> Any:
        return json.loads(self.body)


# A receiver's reply: status, headers, and seconds to wait first or an event to wait for.
Reply = tuple[int, dict[str, str], float | asyncio.Event]


@dataclass
class Receiver:
    """A real HTTP server. `answer` decides each reply: (status, headers, seconds to wait), or
    an event to wait for instead of seconds (an answer held until the test lets it go)."""

    port: int = 0
    got: list[Received] = field(default_factory=list)
    answer: Callable[[Received], Reply] = lambda r: (204, {}, 0.0)
    # The body of each reply other than a 204 (an endpoint may answer any bytes).
    reply: bytes = b"thanks"

    @property
    def url(self) -> str:
        return self.at("/hooks")

    def at(self, path: str) -> str:
        return f"http://127.0.0.1:{self.port}{path}"

    async def app(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            return
        body = b""
        while True:
            message = await receive()
            body += message.get("body", b"")
            if not message.get("more_body"):
                break
        heard = Received(
            {k.decode().lower(): v.decode() for k, v in scope["headers"]},
            body.decode(),
            time.monotonic(),
            scope["path"],
        )
        self.got.append(heard)
        status, headers, wait = self.answer(heard)
        if isinstance(wait, asyncio.Event):
            await wait.wait()
        elif wait:
            await asyncio.sleep(wait)
        await send(
            {
                "type": "http.response.start",
                "status": status,
                "headers": [(k.encode(), v.encode()) for k, v in headers.items()],
            }
        )
        await send({"type": "http.response.body", "body": b"" if status == 204 else self.reply})

    def ids(self) -> set[str]:
        return {r.headers["webhook-id"] for r in self.got}


@dataclass
class Running:
    infra: Infra
    nats: LocalNats
    database_url: str
    clock: Clock
    settings: dict[str, Any]
    parts: Dispatcher | None = None
    server: GrpcService | None = None
    channel: grpc.aio.Channel | None = None
    stub: dispatcher_pb2_grpc.DispatcherServiceStub = field(init=False)

    async def start(self) -> None:
        config = Settings(  # type: ignore[call-arg]
            database_url=self.database_url,
            nats_url=self.nats.url,
            grpc_host="127.0.0.1",
            grpc_port=0,
            dispatcher_secret_keys="a-test-key-for-sealing-webhook-secrets",
            **{"webhook_allow_private_networks": True, **self.settings},
        )
        self.parts = Dispatcher(config, self.clock)
        self.server = kit_service.grpc_service(
            "dispatcher",
            config,
            grpc_api.registrar(self.parts.runtime.uow),
            grpc_api.SERVICE_NAME,
        )
        await self.server.start(self.parts.runtime.tasks())
        self.channel = grpc.aio.insecure_channel(f"127.0.0.1:{self.server.port}")
        self.stub = dispatcher_pb2_grpc.DispatcherServiceStub(self.channel)

    async def stop(self) -> None:
        if self.channel is not None:
            await self.channel.close()
        if self.server is not None:
            await self.server.stop()
        if self.parts is not None:
            await self.parts.runtime.close()
        self.parts = self.server = self.channel = None

    @property
    def worker(self) -> Any:
        assert self.parts is not None
        return self.parts.worker

    async def publish(self, message: Message, merchant: str = "mer_a") -> str:
        """As a service's outbox relay publishes an integration event."""
        return await publish_as_relay(self.nats.url, message, merchant)

    async def publish_made(self, event: OutgoingEvent) -> str:
        """As the relay publishes an outbox row, again after a failure: the same event."""
        return await publish_made_event(self.nats.url, event)

    async def call(self, method: str, request: Message, merchant: str = "mer_a") -> Any:
        return await getattr(self.stub, method)(
            request, metadata=(("x-merchant-id", merchant),), timeout=10
        )

    async def subscribe(
        self, url: str, types: list[str], merchant: str = "mer_a", request_id: str = ""
    ) -> pb.CreateSubscriptionResponse:
        request = pb.CreateSubscriptionRequest(
            request_id=request_id or f"sub-{uuid.uuid4().hex}", url=url, event_types=types
        )
        answer: pb.CreateSubscriptionResponse = await self.call(
            "CreateSubscription", request, merchant
        )
        return answer

    async def deliveries(self, subscription_id: str, merchant: str = "mer_a") -> list[pb.Delivery]:
        page = await self.call(
            "ListDeliveries",
            pb.ListDeliveriesRequest(subscription_id=subscription_id, page_size=200),
            merchant,
        )
        return list(page.deliveries)

    async def subscription(self, subscription_id: str, merchant: str = "mer_a") -> pb.Subscription:
        got = await self.call(
            "GetSubscription", pb.GetSubscriptionRequest(id=subscription_id), merchant
        )
        return got.subscription  # type: ignore[no-any-return]

    @staticmethod
    async def eventually(check: Callable[[], Awaitable[bool]], limit: float = 20.0) -> None:
        """Wait for a background task to make `check` true; fail past `limit` seconds."""
        deadline = time.monotonic() + limit
        while not await check():
            if time.monotonic() > deadline:
                raise AssertionError("condition not met before the deadline")
            await asyncio.sleep(0.05)

    async def feed(self, merchant: str = "mer_a", after: int = 0) -> list[pb.Event]:
        out: list[pb.Event] = []
        while True:
            page = await self.call(
                "ListEvents", pb.ListEventsRequest(after=after, page_size=200), merchant
            )
            out += page.events
            after = page.next_after
            if not page.has_more:
                return out


async def close_quietly(nc: Any) -> None:
    """Close a test publisher's connection whatever state the server left it in.

    When the NATS server stops under the connection, nats-py's close waits on a
    transport that is already gone and can raise CancelledError out of that
    wait although nobody cancelled this task; the message was published (or
    the publish raised before), so the close has nothing left to say.
    """
    try:
        await nc.close()
    except asyncio.CancelledError:
        task = asyncio.current_task()
        if task is not None and task.cancelling():
            raise
    except Exception as exc:  # a failed close loses nothing, see above
        logging.getLogger(__name__).debug("test publisher close: %r", exc)


@pytest_asyncio.fixture(loop_scope="session")
async def receiver() -> AsyncIterator[Receiver]:
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    made = Receiver(port=sock.getsockname()[1])
    server = uvicorn.Server(
        uvicorn.Config(made.app, log_level="warning", lifespan="off", interface="asgi3")
    )
    task = asyncio.create_task(server.serve(sockets=[sock]))
    await until(lambda: server.started)
    try:
        yield made
    finally:
        server.should_exit = True
        await task


@pytest_asyncio.fixture(loop_scope="session")
async def dispatcher(infra: Infra) -> AsyncIterator[Running]:
    server = infra.new_nats()
    running = Running(infra, server, infra.service_database("dispatcher"), Clock(), {})
    await running.start()
    try:
        yield running
    finally:
        await running.stop()


@pytest_asyncio.fixture(loop_scope="session")
async def patient_dispatcher(infra: Infra) -> AsyncIterator[Running]:
    """Waits for an endpoint's answer as long as the settings allow (30 s, not 5 s): a test
    holding answers until it lets them go would otherwise, on a loaded machine, see the held
    deliveries time out and the next ones go out in their slots."""
    server = infra.new_nats()
    running = Running(
        infra, server, infra.service_database("dispatcher"), Clock(),
        {"webhook_timeout_seconds": 30.0},
    )  # fmt: skip
    await running.start()
    try:
        yield running
    finally:
        await running.stop()


@pytest_asyncio.fixture(loop_scope="session")
async def strict_dispatcher(infra: Infra) -> AsyncIterator[Running]:
    """As deployed for real: no private or loopback addresses."""
    server = infra.new_nats()
    running = Running(
        infra,
        server,
        infra.service_database("dispatcher"),
        Clock(),
        {"webhook_allow_private_networks": False},
    )
    await running.start()
    try:
        yield running
    finally:
        await running.stop()
