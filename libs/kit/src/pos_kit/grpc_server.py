"""The grpc.aio server every service runs: health, reflection, call context, error mapping.

Every RPC of ours must carry a deadline and the merchant in metadata; calls without them are
refused before any handler runs, and so are requests with NUL or a card number in any string
(`message_text`). Domain errors become a gRPC status with google.rpc details
(ErrorInfo.reason = the stable code, BadRequest for field problems). Any other exception is
logged here and answered as INTERNAL with no detail, so internals never leak.
"""

from __future__ import annotations

import asyncio
import logging
import signal
import time
from collections.abc import Awaitable, Callable, Coroutine, Sequence
from typing import Any

import grpc
from google.protobuf import any_pb2
from google.rpc import code_pb2, error_details_pb2, status_pb2
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_health.v1._async import HealthServicer
from grpc_reflection.v1alpha import reflection
from grpc_status import rpc_status
from sqlalchemy.exc import TimeoutError as PoolTimeout

from pos_kit.context import (
    MERCHANT_HEADER,
    REGISTER_HEADER,
    REQUEST_ID_HEADER,
    STAFF_HEADER,
    deadline_var,
    merchant_var,
    register_var,
    request_id_var,
    staff_var,
)
from pos_kit.db import lost_to_another_transaction
from pos_kit.errors import DomainError, Unavailable
from pos_kit.grpc_errors import STATUS_OF_KIND
from pos_kit.message_text import check_request
from pos_kit.tls import GrpcTls

log = logging.getLogger(__name__)

ERROR_DOMAIN = "omnitill.dev"
# Infrastructure services that answer without our call context (probes, tooling).
_OPEN_SERVICES = ("/grpc.health.v1.", "/grpc.reflection.")


# The status travels in a trailer, and gRPC clients refuse metadata over 8 KiB by default
# (answering RESOURCE_EXHAUSTED instead of the error): a status is kept well inside that, base64
# and all, by shortening long values and dropping the tail of long violation lists.
STATUS_BUDGET = 5_000
_LONGEST_VALUE = 500


def status_for(error: DomainError) -> status_pb2.Status:
    status = _status(error, error.violations, error.metadata)
    violations, metadata = error.violations, error.metadata
    while status.ByteSize() > STATUS_BUDGET:
        metadata = {k: v[:_LONGEST_VALUE] for k, v in metadata.items()}
        if len(violations) > 1:
            violations = violations[: len(violations) // 2]
        elif violations:
            violations = []
        elif any(len(v) > 100 for v in metadata.values()):
            metadata = {k: v[:100] for k, v in metadata.items()}
        else:
            break
        status = _status(error, violations, metadata)
    return status


def _status(
    error: DomainError, violations: list[Any], metadata: dict[str, str]
) -> status_pb2.Status:
    details = []
    info = error_details_pb2.ErrorInfo(reason=error.code, domain=ERROR_DOMAIN, metadata=metadata)
    packed = any_pb2.Any()
    packed.Pack(info)
    details.append(packed)
    if violations:
        bad = error_details_pb2.BadRequest(
            field_violations=[
                error_details_pb2.BadRequest.FieldViolation(
                    field=v.field[:_LONGEST_VALUE], description=v.description[:_LONGEST_VALUE]
                )
                for v in violations
            ]
        )
        packed_bad = any_pb2.Any()
        packed_bad.Pack(bad)
        details.append(packed_bad)
    return status_pb2.Status(
        code=getattr(code_pb2, STATUS_OF_KIND[error.kind].name),
        message=error.message[:_LONGEST_VALUE],
        details=details,
    )


class CallContextInterceptor(grpc.aio.ServerInterceptor):  # type: ignore[misc]
    async def intercept_service(
        self,
        continuation: Callable[[grpc.HandlerCallDetails], Awaitable[grpc.RpcMethodHandler]],
        details: grpc.HandlerCallDetails,
    ) -> grpc.RpcMethodHandler:
        handler = await continuation(details)
        method = details.method
        if handler is None or handler.unary_unary is None or method.startswith(_OPEN_SERVICES):
            return handler
        inner = handler.unary_unary

        async def wrapped(request: Any, context: grpc.aio.ServicerContext) -> Any:
            metadata = {k: v for k, v in context.invocation_metadata() or () if isinstance(v, str)}
            remaining = context.time_remaining()
            if remaining is None:
                await context.abort(
                    grpc.StatusCode.INVALID_ARGUMENT, "every call must carry a deadline"
                )
            merchant = metadata.get(MERCHANT_HEADER, "")
            if not merchant:
                await context.abort(
                    grpc.StatusCode.UNAUTHENTICATED, f"missing {MERCHANT_HEADER} metadata"
                )
            tokens = (
                merchant_var.set(merchant),
                request_id_var.set(metadata.get(REQUEST_ID_HEADER)),
                deadline_var.set(time.monotonic() + float(remaining or 0)),
                register_var.set(metadata.get(REGISTER_HEADER) or None),
                staff_var.set(metadata.get(STAFF_HEADER) or None),
            )
            try:
                check_request(request)
                return await inner(request, context)
            except DomainError as error:
                await context.abort_with_status(rpc_status.to_status(status_for(error)))
            except (asyncio.CancelledError, grpc.aio.AbortError):
                raise
            except PoolTimeout:
                # Every database connection stayed busy for the pool's whole wait: overload,
                # which a caller may retry (with the same request_id), not an internal fault.
                log.warning("%s: no database connection free in time", method)
                await context.abort_with_status(
                    rpc_status.to_status(
                        status_for(Unavailable("the service is overloaded; retry", "overloaded"))
                    )
                )
            except Exception as exc:
                if not lost_to_another_transaction(exc):
                    log.exception("unhandled error in %s", method)
                    await context.abort(grpc.StatusCode.INTERNAL, "internal error")
                # PostgreSQL aborted the transaction for another's sake (a deadlock it broke):
                # nothing of it was applied, and the same request may be sent again.
                log.warning("%s: the transaction lost to another (%s)", method, exc)
                await context.abort_with_status(
                    rpc_status.to_status(
                        status_for(
                            Unavailable(
                                "the request collided with another one; retry it", "contention"
                            )
                        )
                    )
                )
            finally:
                merchant_var.reset(tokens[0])
                request_id_var.reset(tokens[1])
                deadline_var.reset(tokens[2])
                register_var.reset(tokens[3])
                staff_var.reset(tokens[4])

        return grpc.unary_unary_rpc_method_handler(
            wrapped,
            request_deserializer=handler.request_deserializer,
            response_serializer=handler.response_serializer,
        )


Registrar = Callable[[grpc.aio.Server], None]
BackgroundTask = Callable[[asyncio.Event], Coroutine[Any, Any, None]]


class GrpcService:
    """A gRPC server plus the background tasks (relay, consumers) that live in the same process."""

    def __init__(
        self,
        name: str,
        registrars: Sequence[Registrar],
        service_names: Sequence[str],
        host: str,
        port: int,
        grace_seconds: float = 10.0,
        tls: GrpcTls | None = None,
        health_port: int = 0,
    ) -> None:
        self.name = name
        self.server = grpc.aio.server(
            interceptors=[CallContextInterceptor()],
            options=[
                ("grpc.so_reuseport", 0),
                ("grpc.max_receive_message_length", 8 * 1024 * 1024),
                # Clients reconnect (and re-resolve) every few minutes, so replicas added by an
                # autoscaler start taking calls without anyone restarting.
                ("grpc.max_connection_age_ms", 5 * 60 * 1000),
                ("grpc.max_connection_age_grace_ms", 30 * 1000),
            ],
        )
        self.health = HealthServicer()
        health_pb2_grpc.add_HealthServicer_to_server(self.health, self.server)
        for register in registrars:
            register(self.server)
        self._service_names = list(service_names)
        reflection.enable_server_reflection(
            [
                *self._service_names,
                reflection.SERVICE_NAME,
                health_pb2.DESCRIPTOR.services_by_name["Health"].full_name,
            ],
            self.server,
        )
        self.address = f"{host}:{port}"
        self.tls = tls is not None and tls.serves
        if tls is not None and tls.serves:
            self.port = self.server.add_secure_port(self.address, tls.server_credentials())
        else:
            self.port = self.server.add_insecure_port(self.address)
        # The kubelet's gRPC probe speaks no TLS: with TLS on, health alone (no call of ours)
        # is answered in plaintext on a port of its own.
        self.health_server: grpc.aio.Server | None = None
        self.health_port = 0
        if health_port:
            self.health_server = grpc.aio.server(options=[("grpc.so_reuseport", 0)])
            health_pb2_grpc.add_HealthServicer_to_server(self.health, self.health_server)
            self.health_port = self.health_server.add_insecure_port(f"{host}:{health_port}")
        self._grace = grace_seconds
        self.stop_event = asyncio.Event()
        self._tasks: list[asyncio.Task[None]] = []

    async def start(self, background: Sequence[BackgroundTask] = ()) -> None:
        await self.server.start()
        if self.health_server is not None:
            await self.health_server.start()
        for name in ["", *self._service_names]:
            await self.health.set(name, health_pb2.HealthCheckResponse.SERVING)
        self._tasks = [asyncio.create_task(task(self.stop_event)) for task in background]
        log.info(
            "%s serving gRPC%s on port %d", self.name, " over TLS" if self.tls else "", self.port
        )

    async def stop(self) -> None:
        """Graceful: report NOT_SERVING, drain in-flight calls, then stop background work."""
        await self.health.enter_graceful_shutdown()
        await self.server.stop(self._grace)
        if self.health_server is not None:
            await self.health_server.stop(0)
        self.stop_event.set()
        if self._tasks:
            _, pending = await asyncio.wait(self._tasks, timeout=self._grace)
            for task in pending:
                task.cancel()
            await asyncio.gather(*pending, return_exceptions=True)

    async def run_until_signalled(self, background: Sequence[BackgroundTask] = ()) -> None:
        await self.start(background)
        loop = asyncio.get_running_loop()
        stopping = asyncio.Event()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, stopping.set)
        await stopping.wait()
        log.info("%s shutting down", self.name)
        await self.stop()
