"""Domain errors: a kind, a stable machine code, and field-level detail.

Domain code raises these and knows nothing of transports. The kit's gRPC layer
(`pos_kit.grpc_server`) maps the kind to a status code and adds a google.rpc.ErrorInfo
(reason = code) and, for field problems, a google.rpc.BadRequest; the gateway turns those into
RFC 9457 problems. Nothing else about an exception ever leaves a process.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from dataclasses import dataclass, field
from enum import StrEnum

from pos_kit.text import CARD_NUMBER_NOT_ALLOWED, CARD_NUMBER_REASON


class ErrorKind(StrEnum):
    """What went wrong, as a caller must react to it."""

    INVALID = "invalid"  # the request itself is wrong: fix it, do not retry
    NOT_FOUND = "not_found"
    ALREADY_EXISTS = "already_exists"
    CONFLICT = "conflict"  # current state refuses it (stale version, no stock, ...)
    RETRY = "retry"  # lost a race or still in progress: the same request may be retried
    UNAVAILABLE = "unavailable"  # transient: retry later with the same request_id
    TIMEOUT = "timeout"
    UNAUTHENTICATED = "unauthenticated"
    FORBIDDEN = "forbidden"
    EXHAUSTED = "exhausted"  # a quota or limit
    INTERNAL = "internal"


@dataclass(frozen=True, slots=True)
class FieldViolation:
    field: str
    description: str


@dataclass
class DomainError(Exception):
    message: str
    code: str = "invalid_request"
    violations: list[FieldViolation] = field(default_factory=list)
    metadata: dict[str, str] = field(default_factory=dict)
    kind: ErrorKind = ErrorKind.CONFLICT

    def __str__(self) -> str:
        return self.message


class InvalidArgument(DomainError):
    def __init__(
        self,
        message: str,
        violations: list[FieldViolation] | None = None,
        code: str = "invalid_argument",
    ) -> None:
        super().__init__(message, code, violations or [], {}, ErrorKind.INVALID)


class NotFound(DomainError):
    """No such resource for this merchant (another merchant's is the same: nothing tells
    them apart). `fields`: the request fields that named it, when it was named in the body
    (`lines[1].sku`, `customer_id`), each a field violation like a 400's, so the caller
    learns which reference to fix; a resource named by the path needs none."""

    def __init__(self, resource: str, resource_id: str, fields: Iterable[str] = ()) -> None:
        super().__init__(
            f"{resource} {resource_id!r} was not found",
            "resource_missing",
            missing_at(resource, fields),
            {"resource": resource},
            ErrorKind.NOT_FOUND,
        )


def missing_at(resource: str, fields: Iterable[str]) -> list[FieldViolation]:
    """The field violations of a reference to a resource the merchant does not have."""
    return [FieldViolation(f, f"no such {resource}") for f in fields]


def named_by(error: DomainError, fields: Iterable[str]) -> DomainError:
    """A NotFound, ours or another service's (read back from its status, so of no class of
    its own), told as the caller's request fields that named the missing resource: the callee
    names its own request's fields, or none, and only the caller knows which of its fields
    the reference came from. The code, message and metadata stay as they were."""
    resource = error.metadata.get("resource", "resource")
    return DomainError(
        error.message,
        error.code,
        missing_at(resource, fields),
        dict(error.metadata),
        error.kind,
    )


class AlreadyExists(DomainError):
    def __init__(
        self,
        message: str,
        code: str = "already_exists",
        violations: list[FieldViolation] | None = None,
    ) -> None:
        super().__init__(message, code, violations or [], {}, ErrorKind.ALREADY_EXISTS)


class Conflict(DomainError):
    """A precondition on current state failed (stale version, insufficient stock, ...)."""

    def __init__(self, message: str, code: str, metadata: dict[str, str] | None = None) -> None:
        super().__init__(message, code, [], metadata or {}, ErrorKind.CONFLICT)


class Unavailable(DomainError):
    def __init__(self, message: str, code: str = "service_unavailable") -> None:
        super().__init__(message, code, [], {}, ErrorKind.UNAVAILABLE)


class RequestIdReused(DomainError):
    def __init__(self) -> None:
        super().__init__(
            "this request_id was already used for a different request",
            "idempotency_key_reused",
            [],
            {},
            ErrorKind.INVALID,
        )


class RequestInProgress(DomainError):
    """The same request is still being worked on elsewhere: retry shortly (the gateway: 409)."""

    def __init__(self) -> None:
        super().__init__(
            "a request with this request_id is still in progress; retry shortly",
            "request_in_progress",
            [],
            {},
            ErrorKind.RETRY,
        )


class AnswerWithdrawn(DomainError):
    """The answer stored for this request_id was withdrawn: it held personal data that has
    since been erased. The request id stays spent: a retry under it is told so (NOT_FOUND with
    the withdrawal's code, e.g. `customer_erased`) and never runs again.

    The stored form (`stored()`) starts with a NUL byte, which no serialized protobuf message
    does (field number 0 is invalid), so it cannot be taken for an answer, nor an answer for it.
    """

    MARK = b"\x00withdrawn\x00"

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message, code, [], {}, ErrorKind.NOT_FOUND)

    def stored(self) -> bytes:
        return self.MARK + json.dumps({"code": self.code, "message": self.message}).encode()

    @classmethod
    def raise_if_stored(cls, stored: bytes | None) -> None:
        """Raise the withdrawal this stored answer is, if it is one."""
        if stored is not None and bytes(stored[: len(cls.MARK)]) == cls.MARK:
            found = json.loads(bytes(stored[len(cls.MARK) :]))
            raise cls(str(found["code"]), str(found["message"]))


def require(condition: bool, field_name: str, description: str) -> list[FieldViolation]:
    """One field check; collect the results and raise InvalidArgument once with all of them."""
    return [] if condition else [FieldViolation(field_name, description)]


def raise_if(violations: list[FieldViolation], message: str = "the request is not valid") -> None:
    """InvalidArgument naming every violation; `card_number_not_allowed` when one of them is a
    card number (as the kit's check of every request says)."""
    if any(v.description == CARD_NUMBER_REASON for v in violations):
        raise InvalidArgument(
            "card numbers are never accepted", violations, code=CARD_NUMBER_NOT_ALLOWED
        )
    if violations:
        raise InvalidArgument(message, violations)
