"""A cancel by a caller who may not refund asks the payment service what the order's payments
hold before anything is claimed, with no database connection held: real PostgreSQL, NATS
JetStream, and the inventory, payment and order services in this process.

The order service gets a pool of one connection that gives up after 1.5 s, and the cancel's
payment read is held at a relay until another request has run. A cancel that asked with its
claiming transaction open (as it once did) would keep the only connection, and the other
request would fail waiting for it.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator

import pytest
import pytest_asyncio
from test_cancel_races import CARD, KINDS, MERCHANT, Shop, relayed_shop

from pos.order.v1 import order_pb2
from pos_devstack.testing import Infra

pytestmark = pytest.mark.asyncio(loop_scope="session")


@pytest_asyncio.fixture(loop_scope="session", scope="module")
async def shop(infra: Infra) -> AsyncIterator[Shop]:
    # One connection, waited for at most 5 s: a cancel holding it while it waits at the relay
    # (until the test opens the gate) fails the other order whatever this wait, and 5 s leaves
    # the service's own tasks (relay, resumer) room to use it first on a loaded machine, which
    # 1.5 s did not always.
    pool_of_one = {
        "database_pool_size": 1,
        "database_pool_overflow": 0,
        "database_pool_timeout_seconds": 5.0,
    }
    async with relayed_shop(infra, **pool_of_one) as found:
        yield found


async def test_a_cancel_reading_the_payments_holds_no_connection(shop: Shop) -> None:
    order = await shop.create(KINDS["pickup"])
    await shop.tender(order.id, tender_type=CARD, card_token="tok_visa")
    gate = shop.relay.gate("GetOrderPayments")
    cancel = asyncio.ensure_future(
        shop.orders.CancelOrder(
            order_pb2.CancelOrderRequest(
                request_id=str(uuid.uuid4()), order_id=order.id, refund_not_permitted=True
            ),
            metadata=MERCHANT,
            timeout=20,
        )
    )
    try:
        arrived = asyncio.ensure_future(gate.arrived.wait())
        await asyncio.wait([cancel, arrived], return_when=asyncio.FIRST_COMPLETED)
        assert gate.arrived.is_set(), cancel.exception() if cancel.done() else "?"
        # The cancel waits at the relay: the only connection must be free for another order.
        other = await shop.create(KINDS["pickup"])
        assert other.status == order_pb2.ORDER_STATUS_PENDING_PAYMENT
    finally:
        gate.opened.set()
    answer = await cancel
    assert answer.order.status == order_pb2.ORDER_STATUS_CANCELLED
    assert await shop.money_held(order.id) == 0
