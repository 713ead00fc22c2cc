"""Per-call context: the merchant, the request id and the deadline of the call being served.

Set by the gRPC server interceptor from metadata, read by the gRPC client interceptor so that
downstream calls carry the same merchant and request id and never outlive the caller's deadline.
"""

from __future__ import annotations

import time
from contextvars import ContextVar

MERCHANT_HEADER = "x-merchant-id"
REQUEST_ID_HEADER = "x-request-id"

# Who acts at a till: the register a call comes from and the staff member signed in at it
# (the gateway sets them from a register's credential); empty for any other caller.
REGISTER_HEADER = "x-register-id"
STAFF_HEADER = "x-staff-id"

merchant_var: ContextVar[str | None] = ContextVar("merchant_id", default=None)
register_var: ContextVar[str | None] = ContextVar("register_id", default=None)
staff_var: ContextVar[str | None] = ContextVar("staff_id", default=None)
request_id_var: ContextVar[str | None] = ContextVar("request_id", default=None)
# Absolute deadline on the monotonic clock.
deadline_var: ContextVar[float | None] = ContextVar("deadline", default=None)


def current_merchant() -> str:
    merchant = merchant_var.get()
    if not merchant:
        raise RuntimeError("no merchant in the current call context")
    return merchant


def remaining_seconds() -> float | None:
    deadline = deadline_var.get()
    return None if deadline is None else max(0.0, deadline - time.monotonic())
