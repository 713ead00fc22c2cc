"""The servicer toolkit: a gRPC method of ours is translation and nothing else.

    class CustomerApi(Servicer[CustomerUow], customer_pb2_grpc.CustomerServiceServicer):
        @mutation(customer_pb2.CreateCustomerResponse)
        async def CreateCustomer(self, request, uow):
            customer = await handlers.create_customer(uow, ...)
            return customer_pb2.CreateCustomerResponse(customer=customer_to_proto(customer))

The kit opens the unit of work bound to the caller's merchant (from the call context), and for
a mutation claims the request's `request_id`, replays the stored answer of an earlier identical
request, stores the new answer beside the effect and commits; the method's name is the
operation's name. Errors are mapped to gRPC statuses by the server's interceptor
(`pos_kit.grpc_server`), so a method never sees the gRPC context.

An operation that calls other services (`across_calls`) holds no transaction while they answer:
see `pos_kit.idempotency.once_across_calls`.
"""

from __future__ import annotations

import functools
from collections.abc import Awaitable, Callable
from typing import Any, Generic, Protocol, TypeVar

import grpc
from google.protobuf.message import Message

from pos_kit.context import current_merchant
from pos_kit.idempotency import Claim, HasRequestId, once, once_across_calls
from pos_kit.uow import UnitOfWork

U = TypeVar("U", bound=UnitOfWork)
Req = TypeVar("Req")
R = TypeVar("R", bound=Message)
P = TypeVar("P")
T = TypeVar("T")
S = TypeVar("S", bound="Servicer[Any]")

GrpcMethod = Callable[[S, Req, grpc.aio.ServicerContext], Awaitable[R]]


class Servicer(Generic[U]):
    """Base of every servicer: holds the factory of the service's unit of work."""

    def __init__(self, uow: Callable[[], U]) -> None:
        self.uow = uow

    def bound_uow(self) -> U:
        """A unit of work bound to the calling merchant: every repository it builds is too."""
        return self.uow().bind(current_merchant())


def mutation(
    response_type: type[R],
) -> Callable[[Callable[[S, Req, U], Awaitable[R]]], GrpcMethod[S, Req, R]]:
    """A state-changing RPC: run once per `request_id`, in one transaction, and commit."""

    def decorate(method: Callable[[S, Req, U], Awaitable[R]]) -> GrpcMethod[S, Req, R]:
        operation = method.__name__

        @functools.wraps(method)
        async def rpc(self: S, request: Req, context: grpc.aio.ServicerContext) -> R:
            async with self.bound_uow() as uow:
                return await once(
                    uow,
                    operation,
                    _with_request_id(request),
                    response_type,
                    functools.partial(method, self, request, uow),
                )

        return rpc

    return decorate


def query(method: Callable[[S, Req, U], Awaitable[R]]) -> GrpcMethod[S, Req, R]:
    """A read-only RPC: one READ ONLY unit of work bound to the caller's merchant (see
    `UnitOfWork.reading`: a write in it fails; it ends without dropping prepared statements)."""

    @functools.wraps(method)
    async def rpc(self: S, request: Req, context: grpc.aio.ServicerContext) -> R:
        async with self.bound_uow().reading() as uow:
            return await method(self, request, uow)

    return rpc


class CallingOperation(Protocol[U, P, T, R]):  # type: ignore[misc]
    """An operation in three steps, so that no transaction spans the calls to other services:
    `read` (in the claiming transaction), `call` (no connection held), `record` (the effect,
    its events and the answer, in one short transaction). An operation may also have
    `prepare()`: what it must ask other services before its claim's read, with no connection
    held (run on every attempt, a replay's too)."""

    async def read(self, uow: U) -> P: ...
    async def call(self, claim: Claim, read: P) -> T: ...
    async def record(self, uow: U, outcome: T) -> R: ...


def across_calls(
    response_type: type[R],
    fingerprint_of: Callable[[Any, Any], Any] | None = None,
) -> Callable[[Callable[[S, Req], CallingOperation[Any, Any, Any, R]]], GrpcMethod[S, Req, R]]:
    """A mutation that calls other services: the method validates the request and returns the
    operation's three steps; the kit runs them once per `request_id`. `fingerprint_of(self,
    request)` gives the request as its stored fingerprint is taken, for a request that carries
    a bearer secret (a gift card's code): the secret replaced by its keyed hash."""

    def decorate(
        method: Callable[[S, Req], CallingOperation[Any, Any, Any, R]],
    ) -> GrpcMethod[S, Req, R]:
        name = method.__name__

        @functools.wraps(method)
        async def rpc(self: S, request: Req, context: grpc.aio.ServicerContext) -> R:
            steps = method(self, request)  # refuses bad input before anything is claimed
            prepare = getattr(steps, "prepare", None)
            if prepare is not None:
                await prepare()
            printed = request if fingerprint_of is None else fingerprint_of(self, request)
            return await once_across_calls(
                self.bound_uow,
                name,
                _with_request_id(printed),
                response_type,
                steps.read,
                steps.call,
                steps.record,
            )

        return rpc

    return decorate


def _with_request_id(request: Any) -> HasRequestId:
    request_with_id: HasRequestId = request
    return request_with_id
