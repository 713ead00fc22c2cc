"""Deadlines across hops: a call made while serving another ends before it, early enough that the
server still answers in its own words when the service it called never does."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import grpc
import pytest
from google.protobuf import wrappers_pb2

from pos_kit.context import MERCHANT_HEADER
from pos_kit.grpc_client import channel, downstream_timeout
from pos_kit.grpc_server import CallContextInterceptor

CALL = "/test.Relay/Call"
S = wrappers_pb2.StringValue


def _unary(handler: object) -> grpc.GenericRpcHandler:
    return grpc.method_handlers_generic_handler(
        "test.Relay",
        {
            "Call": grpc.unary_unary_rpc_method_handler(
                handler, request_deserializer=S.FromString, response_serializer=S.SerializeToString
            )
        },
    )


async def _serve(handler: object) -> tuple[grpc.aio.Server, int]:
    server = grpc.aio.server(interceptors=[CallContextInterceptor()])
    server.add_generic_rpc_handlers([_unary(handler)])
    port = server.add_insecure_port("127.0.0.1:0")
    await server.start()
    return server, port


@pytest.fixture
async def relay() -> AsyncIterator[grpc.aio.Channel]:
    """A front service whose call asks a back service that never answers, and answers
    "gave up" itself when that call fails: what a client of the front hears is the point."""
    never = asyncio.Event()

    async def back(request: S, context: grpc.aio.ServicerContext) -> S:
        await never.wait()
        return S(value="never")

    back_server, back_port = await _serve(back)
    to_back = channel(f"127.0.0.1:{back_port}", default_timeout=30.0)

    async def front(request: S, context: grpc.aio.ServicerContext) -> S:
        call = to_back.unary_unary(
            CALL, request_serializer=S.SerializeToString, response_deserializer=S.FromString
        )
        try:
            return await call(request)  # type: ignore[no-any-return]
        except grpc.aio.AioRpcError as exc:
            return S(value=f"gave up: {exc.code().name}")

    front_server, front_port = await _serve(front)
    client = grpc.aio.insecure_channel(f"127.0.0.1:{front_port}")
    yield client
    await client.close()
    await to_back.close()
    never.set()
    await front_server.stop(0)
    await back_server.stop(0)


async def test_a_server_answers_before_its_callers_deadline_when_its_own_call_hangs(
    relay: grpc.aio.Channel,
) -> None:
    call = relay.unary_unary(
        CALL, request_serializer=S.SerializeToString, response_deserializer=S.FromString
    )
    answer = await call(S(value="sale"), timeout=2.0, metadata=((MERCHANT_HEADER, "m_1"),))
    # Without the margin the front's call ends with the client's deadline, and the client hears
    # DEADLINE_EXCEEDED instead of the front's answer. An answer at all came before the client's
    # deadline (past it the call raises); a clock read after it could be later on a loaded
    # machine with nothing wrong, so none is asserted on.
    assert answer.value == "gave up: DEADLINE_EXCEEDED"


def test_the_margin_is_a_share_of_the_time_left_and_at_most_a_second() -> None:
    assert downstream_timeout(5.0, None) == 5.0
    assert downstream_timeout(0.3, 10.0) == 0.3
    assert downstream_timeout(10.0, 10.0) == pytest.approx(9.0)
    assert downstream_timeout(60.0, 30.0) == pytest.approx(29.0)
    assert downstream_timeout(5.0, 2.0) == pytest.approx(1.8)
    assert downstream_timeout(5.0, 0.0) == 0.0
