"""request_id idempotency for mutating RPCs: the effect and the stored answer commit together."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Protocol, TypeVar

from google.protobuf.message import Message

from pos_kit.uow import UnitOfWork

R = TypeVar("R", bound=Message)


class HasRequestId(Protocol):
    request_id: str

    def SerializeToString(self, *, deterministic: bool = ...) -> bytes: ...


async def once(
    uow: UnitOfWork,
    operation: str,
    request: HasRequestId,
    response_type: type[R],
    work: Callable[[], Awaitable[R]],
) -> R:
    """Run `work` and commit, or replay the stored answer of the same earlier request.

    A failed attempt rolls back its claim with everything else, so it may be retried.
    """
    stored = await uow.claim_request(
        uow.merchant_id,
        request.request_id,
        operation,
        request.SerializeToString(deterministic=True),
    )
    if stored is not None:
        return response_type.FromString(stored)
    response = await work()
    await uow.store_response(uow.merchant_id, request.request_id, response.SerializeToString())
    await uow.commit()
    return response
