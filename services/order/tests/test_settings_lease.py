"""The merchant's settings lease (one change of the order settings, and of the authorisation
window shown with them, at a time): one holder at a time, a lapsed lease taken over by the next,
and a change made under a lease only while it is still its holder's."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass

import grpc
import psycopg
import pytest
import pytest_asyncio
from order_shop import serve_order

from pos.order.v1 import order_pb2, order_pb2_grpc
from pos_devstack.natsd import free_port
from pos_devstack.testing import Infra
from pos_kit.grpc_client import read_error

pytestmark = pytest.mark.asyncio(loop_scope="session")


@dataclass
class Order:
    stub: order_pb2_grpc.OrderServiceStub
    db: str

    def merchant(self) -> tuple[tuple[str, str], ...]:
        return (("x-merchant-id", f"mer_lease_{uuid.uuid4().hex[:10]}"),)

    async def lease(self, md: tuple[tuple[str, str], ...], holder: str) -> bool:
        answer = await self.stub.LeaseOrderSettings(
            order_pb2.LeaseOrderSettingsRequest(holder=holder, lease_seconds=30),
            metadata=md,
            timeout=5,
        )
        return answer.granted

    async def change(
        self, md: tuple[tuple[str, str], ...], hold: int, lease: str
    ) -> order_pb2.UpdateOrderSettingsResponse:
        answer: order_pb2.UpdateOrderSettingsResponse = await self.stub.UpdateOrderSettings(
            order_pb2.UpdateOrderSettingsRequest(
                request_id=str(uuid.uuid4()), hold_seconds=hold, lease=lease
            ),
            metadata=md,
            timeout=5,
        )
        return answer


@pytest_asyncio.fixture(loop_scope="session", scope="module")
async def order(infra: Infra) -> AsyncIterator[Order]:
    # Nothing of inventory or payment is asked here: their addresses stay unanswered.
    server = infra.new_nats()
    async with serve_order(infra, server.url, free_port(), free_port()) as running:
        yield Order(
            order_pb2_grpc.OrderServiceStub(running.channel),
            running.database_url.replace("+psycopg", ""),
        )


async def test_one_holder_at_a_time_and_a_lapsed_holder_changes_nothing(order: Order) -> None:
    md = order.merchant()
    assert await order.lease(md, "first")
    assert await order.lease(md, "first")  # its own, extended
    assert not await order.lease(md, "second")
    changed = await order.change(md, 1200, "first")
    assert (changed.settings.hold_seconds, changed.settings.version) == (1200, 2)
    # A holder that stalled past its lease, which the next change took over: its change,
    # arriving late, is refused and changes nothing.
    with psycopg.connect(order.db) as conn:
        conn.execute(
            "UPDATE order_settings_leases SET expires_at = now() - interval '1 second'"
            " WHERE merchant_id = %s",
            (md[0][1],),
        )
    assert await order.lease(md, "second")
    with pytest.raises(grpc.aio.AioRpcError) as refused:
        await order.change(md, 1300, "first")
    assert read_error(refused.value).reason == "version_mismatch"
    # Released by another than its holder: still held; by its holder: free.
    await order.stub.ReleaseOrderSettings(
        order_pb2.ReleaseOrderSettingsRequest(holder="first"), metadata=md, timeout=5
    )
    assert not await order.lease(md, "third")
    assert (await order.change(md, 1400, "second")).settings.version == 3
    await order.stub.ReleaseOrderSettings(
        order_pb2.ReleaseOrderSettingsRequest(holder="second"), metadata=md, timeout=5
    )
    assert await order.lease(md, "third")
    found = await order.stub.GetOrderSettings(
        order_pb2.GetOrderSettingsRequest(), metadata=md, timeout=5
    )
    assert (found.settings.hold_seconds, found.settings.version) == (1400, 3)


async def test_a_lease_asked_for_wrongly_is_refused(order: Order) -> None:
    md = order.merchant()
    for holder, seconds in (("", 30), ("h", 0), ("h", 301)):
        with pytest.raises(grpc.aio.AioRpcError) as refused:
            await order.stub.LeaseOrderSettings(
                order_pb2.LeaseOrderSettingsRequest(holder=holder, lease_seconds=seconds),
                metadata=md,
                timeout=5,
            )
        assert refused.value.code() == grpc.StatusCode.INVALID_ARGUMENT
