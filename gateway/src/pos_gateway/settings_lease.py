"""The merchant's settings lease, held by one change of the settings at a time.

The order settings as the API shows them are two services' (the order service's fields and the
payment service's authorisation window), with one version. Two writes in two services cannot
be one transaction, so every change of either (PATCH /v1/order-settings, PUT
/v1/payment-settings) takes the merchant's lease in the order service first and checks the
version under it: no other change can come between its check and its writes, so a change
refused (412) has written nothing, and one that passes its check cannot be refused by another
half way. No transaction is held meanwhile: the lease is a row, taken and released each in its
own short transaction, and lapses by itself should its holder die.
"""

from __future__ import annotations

import asyncio
import logging
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass

import grpc

from pos.order.v1 import order_pb2
from pos_gateway.clients import Services
from pos_gateway.problems import RETRY_UNAVAILABLE_AFTER, Problem

log = logging.getLogger(__name__)

# Far beyond a change's own calls (each bounded by the gateway's deadline); the longest a
# change waits for a holder that died.
LEASE_SECONDS = 30
# Asked again this often while another change holds it (changes of the settings are rare).
_AGAIN_AFTER = (0.01, 0.02, 0.05, 0.1)


@dataclass(frozen=True)
class Lease:
    holder: str
    # The order service's settings, read as the lease was taken: none changes them while held.
    order: order_pb2.OrderSettings


@asynccontextmanager
async def settings_leased(svc: Services) -> AsyncIterator[Lease]:
    """Wait for the merchant's settings lease, hold it for the block, then release it."""
    holder = uuid.uuid4().hex
    loop = asyncio.get_running_loop()
    give_up = loop.time() + LEASE_SECONDS + 5
    asked = 0
    while True:
        answer: order_pb2.LeaseOrderSettingsResponse = await svc.order.LeaseOrderSettings(
            order_pb2.LeaseOrderSettingsRequest(holder=holder, lease_seconds=LEASE_SECONDS)
        )
        if answer.granted:
            break
        if loop.time() > give_up:
            raise Problem(
                503,
                "service_unavailable",
                "another change of the settings is still under way",
                headers={"Retry-After": str(RETRY_UNAVAILABLE_AFTER)},
            )
        await asyncio.sleep(_AGAIN_AFTER[min(asked, len(_AGAIN_AFTER) - 1)])
        asked += 1
    try:
        yield Lease(holder, answer.settings)
    finally:
        try:
            await svc.order.ReleaseOrderSettings(
                order_pb2.ReleaseOrderSettingsRequest(holder=holder)
            )
        except grpc.aio.AioRpcError as exc:
            # It lapses by itself: the next change waits that long at most.
            log.warning("the settings lease was not released: %s", exc.code().name)
