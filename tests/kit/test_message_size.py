"""The largest answer the API promises passes through the platform's channels whole.

Stock levels and availability answer every SKU asked (200 at REST, `MAX_SKUS_PER_CALL` over
gRPC) at each of up to `MAX_LOCATIONS` locations in one answer. gRPC's channels take 4 MiB by
default: past it the call failed RESOURCE_EXHAUSTED after the service had answered, and the
gateway told the caller to slow down (429) in gRPC's words."""

from __future__ import annotations

import grpc
import pytest
from google.protobuf import timestamp_pb2

from pos.inventory.v1 import inventory_pb2, stock_pb2
from pos_gateway.problems import from_rpc_error
from pos_inventory.domain.ledger import MAX_UNITS
from pos_inventory.domain.model import MAX_SKUS_PER_CALL
from pos_inventory.service.handlers import MAX_LOCATIONS
from pos_kit.grpc_client import MAX_RECEIVE_BYTES, channel
from pos_kit.ids import new_id

CALL = "/test.Stock/GetAvailability"


def _worst_case() -> stock_pb2.GetAvailabilityResponse:
    """Every SKU 64 characters (the longest), every location holding a level of each, every
    figure as many bytes as it can take (a negative on_hand is ten)."""
    locations = [new_id("loc") for _ in range(MAX_LOCATIONS)]
    stamp = timestamp_pb2.Timestamp(seconds=4_102_444_799, nanos=999_999_999)
    answer = stock_pb2.GetAvailabilityResponse()
    for i in range(MAX_SKUS_PER_CALL):
        sku = f"{i:03d}".ljust(64, "X")
        item = answer.skus.add(sku=sku, on_hand=-MAX_UNITS, reserved=MAX_UNITS)
        item.locations.extend(
            inventory_pb2.StockLevel(
                sku=sku,
                location_id=location,
                on_hand=-MAX_UNITS,
                reserved=MAX_UNITS,
                available=0,
                updated_at=stamp,
            )
            for location in locations
        )
    return answer


@pytest.mark.asyncio
async def test_the_largest_answer_the_api_promises_is_received_whole() -> None:
    answer = _worst_case()
    size = answer.ByteSize()
    assert size > 4 * 1024 * 1024  # beyond gRPC's default
    assert 2 * size <= MAX_RECEIVE_BYTES  # with room to spare
    payload = answer.SerializeToString()

    async def serve(request: bytes, context: grpc.aio.ServicerContext) -> bytes:
        return payload

    server = grpc.aio.server()
    server.add_generic_rpc_handlers(
        [
            grpc.method_handlers_generic_handler(
                "test.Stock", {"GetAvailability": grpc.unary_unary_rpc_method_handler(serve)}
            )
        ]
    )
    port = server.add_insecure_port("127.0.0.1:0")
    await server.start()
    to_server = channel(f"127.0.0.1:{port}", default_timeout=30.0)
    try:
        received = await to_server.unary_unary(CALL)(b"")
    finally:
        await to_server.close()
        await server.stop(None)
    assert len(received) == size


def test_a_message_too_large_is_an_internal_error_not_a_429_in_grpcs_words() -> None:
    """gRPC's own RESOURCE_EXHAUSTED (a message or its metadata over a limit) carries no
    reason of ours: nothing the caller can slow down for, and its text is the platform's."""
    too_large = grpc.aio.AioRpcError(
        grpc.StatusCode.RESOURCE_EXHAUSTED,
        grpc.aio.Metadata(),
        grpc.aio.Metadata(),
        "Received message larger than max (4218844 vs. 4194304)",
    )
    problem = from_rpc_error(too_large)
    assert (problem.status, problem.code) == (500, "internal_error")
    assert "message" not in problem.detail and "4194304" not in problem.detail
    assert "Retry-After" not in problem.headers
