"""gRPC channels to other services: call context forwarded, deadlines always set and shrinking."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import grpc
from google.rpc import error_details_pb2
from grpc_status import rpc_status

from pos_kit.context import (
    MERCHANT_HEADER,
    REGISTER_HEADER,
    REQUEST_ID_HEADER,
    STAFF_HEADER,
    merchant_var,
    register_var,
    remaining_seconds,
    request_id_var,
    staff_var,
)
from pos_kit.errors import DomainError, ErrorKind, FieldViolation
from pos_kit.grpc_errors import KIND_OF_STATUS
from pos_kit.tls import GrpcTls

DEFAULT_TIMEOUT = 5.0

# A downstream call ends this share of the time left before the call it serves (at most
# ANSWER_MARGIN_SECONDS), so the server still has time to record what it knows and answer in
# its own words (a 503 naming the service that did not answer, a sale whose cash is recorded
# later), instead of its caller hearing only that its own deadline passed.
ANSWER_MARGIN_SHARE = 0.1
ANSWER_MARGIN_SECONDS = 1.0


def downstream_timeout(timeout: float, remaining: float | None) -> float:
    """The deadline of a call made while serving one with `remaining` seconds left."""
    if remaining is None:
        return timeout
    margin = min(ANSWER_MARGIN_SECONDS, remaining * ANSWER_MARGIN_SHARE)
    return max(0.0, min(timeout, remaining - margin))


class ContextClientInterceptor(grpc.aio.UnaryUnaryClientInterceptor):  # type: ignore[misc]
    def __init__(self, default_timeout: float = DEFAULT_TIMEOUT) -> None:
        self._default = default_timeout

    async def intercept_unary_unary(
        self,
        continuation: Callable[[grpc.aio.ClientCallDetails, Any], Any],
        details: grpc.aio.ClientCallDetails,
        request: Any,
    ) -> Any:
        metadata = list(details.metadata or ())
        present = {k for k, _ in metadata}
        merchant = merchant_var.get()
        if merchant and MERCHANT_HEADER not in present:
            metadata.append((MERCHANT_HEADER, merchant))
        request_id = request_id_var.get()
        if request_id and REQUEST_ID_HEADER not in present:
            metadata.append((REQUEST_ID_HEADER, request_id))
        for header, var in ((REGISTER_HEADER, register_var), (STAFF_HEADER, staff_var)):
            value = var.get()
            if value and header not in present:
                metadata.append((header, value))
        timeout = details.timeout if details.timeout is not None else self._default
        # Never let a downstream call outlive the call it serves.
        timeout = downstream_timeout(timeout, remaining_seconds())
        new_details = grpc.aio.ClientCallDetails(
            method=details.method,
            timeout=timeout,
            metadata=grpc.aio.Metadata(*metadata),
            credentials=details.credentials,
            wait_for_ready=details.wait_for_ready,
        )
        return await continuation(new_details, request)


# The largest answer a channel takes. gRPC's default is 4 MiB, but the API promises answers far
# larger: stock levels or availability of every SKU asked (200 at REST, 500 over gRPC) at each
# of up to 1,000 locations, some 130 bytes a level at worst (a 64-character SKU, a location id,
# three int64 and a stamp): 66 MB for 500 SKUs (tests/kit/test_message_size.py builds it). Past
# the limit the call failed RESOURCE_EXHAUSTED ("Received message larger than max") though the
# service had answered. About twice the worst case, so the bound is never what refuses; a
# limit, not an allocation: a channel holds what it receives, no more.
MAX_RECEIVE_BYTES = 128 * 1024 * 1024


def channel(
    target: str, default_timeout: float = DEFAULT_TIMEOUT, tls: GrpcTls | None = None
) -> grpc.aio.Channel:
    """A channel that spreads calls over every address the name resolves to (every pod behind
    a headless Service), instead of pinning one connection to one replica. With `tls`, the
    server's certificate must be signed by its CA and name the host of `target`."""
    if "://" not in target and not target.startswith(("dns:", "unix:", "ipv4:", "ipv6:")):
        target = f"dns:///{target}"
    interceptors = [ContextClientInterceptor(default_timeout)]
    options = [
        ("grpc.keepalive_time_ms", 30_000),
        ("grpc.enable_retries", 1),
        ("grpc.lb_policy_name", "round_robin"),
        # A restarted or rescheduled replica is reconnected within a second, not minutes.
        ("grpc.initial_reconnect_backoff_ms", 100),
        ("grpc.max_reconnect_backoff_ms", 1000),
        ("grpc.max_receive_message_length", MAX_RECEIVE_BYTES),
    ]
    if tls is None:
        return grpc.aio.insecure_channel(target, interceptors=interceptors, options=options)
    return grpc.aio.secure_channel(
        target, tls.channel_credentials(), interceptors=interceptors, options=options
    )


@dataclass
class RemoteError:
    """A downstream failure, read from its gRPC status and google.rpc details."""

    status: grpc.StatusCode
    message: str
    reason: str = ""
    violations: list[FieldViolation] = field(default_factory=list)
    metadata: dict[str, str] = field(default_factory=dict)

    def to_domain(self) -> DomainError:
        return DomainError(
            self.message, self.reason or self.status.name.lower(), self.violations,
            self.metadata, KIND_OF_STATUS.get(self.status, ErrorKind.INTERNAL),
        )  # fmt: skip


def read_error(exc: grpc.aio.AioRpcError) -> RemoteError:
    error = RemoteError(exc.code(), exc.details() or "")
    try:
        status = rpc_status.from_call(exc)
    except ValueError:
        status = None
    if status is None:
        return error
    for detail in status.details:
        if detail.Is(error_details_pb2.ErrorInfo.DESCRIPTOR):
            info = error_details_pb2.ErrorInfo()
            detail.Unpack(info)
            error.reason = info.reason
            error.metadata = dict(info.metadata)
        elif detail.Is(error_details_pb2.BadRequest.DESCRIPTOR):
            bad = error_details_pb2.BadRequest()
            detail.Unpack(bad)
            error.violations = [
                FieldViolation(v.field, v.description) for v in bad.field_violations
            ]
    return error
