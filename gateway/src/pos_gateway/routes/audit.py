"""The audit log (/v1/audit-log) and how long it is kept (/v1/audit-settings)."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any

from fastapi import APIRouter, Query, Request, Response
from pydantic import Field

from pos_gateway import audit
from pos_gateway import examples as ex
from pos_gateway.actions import principal_of
from pos_gateway.problems import Problem
from pos_gateway.routes.common import (
    INT32,
    TIME_SCHEMA,
    Body,
    Cursor,
    IfMatch,
    InRange,
    Limit,
    QueryId,
    Rfc3339,
    bound,
    cursor_after,
    example,
    expected_version,
    op,
    request_id,
    timestamp,
)
from pos_gateway.routes.registers import ts
from pos_gateway.schemas.registers import AuditEntryList, AuditSettings
from pos_kit.paging import encode_token

router = APIRouter(prefix="/v1", tags=["audit"])
# The scope of this module's list cursors (pos_kit.paging): another list's are refused.
LIST_SCOPE = "gateway.audit-log"
Time = Annotated[
    datetime | None, Rfc3339, InRange, Query(description="RFC 3339", json_schema_extra=TIME_SCHEMA)
]
Action = Annotated[
    str | None,
    Query(max_length=64, pattern=r"^[a-z_]+(\.[a-z_*]+)?$",
          description="One action (`refund`), or every action of a kind (`staff.*`)"),
]  # fmt: skip


def _entry_json(row: dict[str, Any]) -> dict[str, Any]:
    keep = ("id", "action", "staff_id", "approved_by", "register_id", "credential_id",
            "resource_type", "resource_id", "details")  # fmt: skip
    return {**{k: row[k] for k in keep}, "occurred_at": ts(row["occurred_at"])}


@router.get(
    "/audit-log",
    **op("audit:read", "List the audit log", example=ex.page(ex.AUDIT_ENTRY)),
)
async def list_audit_log(
    request: Request,
    action: Action = None,
    staff_id: Annotated[QueryId | None, Query(description="Who did it, or approved it")] = None,
    register_id: Annotated[QueryId | None, Query(description="At which register")] = None,
    resource_id: Annotated[QueryId | None, Query(description="What it was done to")] = None,
    since: Time = None,
    until: Time = None,
    limit: Limit = 50,
    cursor: Cursor = None,
) -> AuditEntryList:
    """Newest first. Entries are never changed; they are dropped after the retention period
    (`/v1/audit-settings`). Ids that are not yours match nothing. `since` and `until`
    together: the second after the first, else a 400 naming `until`."""
    if since is not None:
        timestamp(since, "since")
    if until is not None:
        timestamp(until, "until")
    if since is not None and until is not None and until <= since:
        # An empty window is a mistake (the two swapped), never a page of no activity.
        raise Problem(400, "invalid_request", "the request is not valid",
                      [{"field": "until", "reason": "must be after since"}])  # fmt: skip
    filters = audit.Filters(action, staff_id, register_id, resource_id, since, until)
    scope = bound(LIST_SCOPE, action, staff_id, register_id, resource_id, since, until)
    found = await audit.entries(
        request.app.state.engine, principal_of(request).merchant_id, filters,
        cursor_after(cursor, scope), limit + 1,
    )  # fmt: skip
    data = [_entry_json(r) for r in found[:limit]]
    more = len(found) > limit
    return AuditEntryList.model_validate(
        {"data": data, "next_cursor": encode_token(data[-1]["id"], scope) if more else None}
    )


@router.get(
    "/audit-settings",
    **op("audit:read", "How long the audit log is kept", example=ex.AUDIT_SETTINGS),
)
async def get_audit_settings(request: Request, response: Response) -> AuditSettings:
    """The ETag is the version, for `If-Match` on a change."""
    found = await audit.retention_days(request.app.state.engine, principal_of(request).merchant_id)
    return _settings(response, found)


def _settings(response: Response, found: audit.Retention) -> AuditSettings:
    response.headers["ETag"] = f'"{found.version}"'
    return AuditSettings(
        retention_days=found.days, updated_at=ts(found.updated_at), version=found.version
    )


class AuditSettingsIn(Body):
    model_config = example({"retention_days": 730})

    retention_days: int = Field(
        ge=audit.MIN_RETENTION_DAYS, le=audit.MAX_RETENTION_DAYS, json_schema_extra=INT32,
        description="Entries older than this many days are dropped (30 to 3650; 365 unless set)",
    )  # fmt: skip


@router.put(
    "/audit-settings",
    **op("audit:manage", "Set how long the audit log is kept", (412,),
         example={**ex.AUDIT_SETTINGS, "version": 2}),
)  # fmt: skip
async def put_audit_settings(
    body: AuditSettingsIn, request: Request, response: Response, if_match: IfMatch = None
) -> AuditSettings:
    """The change is itself in the audit log (`settings.audit_retention_changed`, from and
    to) and bumps `version`; the same period again changes nothing. Send `If-Match:
    "<version>"` to change only the version you saw: a stale one is a 412 `version_mismatch`
    with `current_version`."""
    principal = principal_of(request)
    version = expected_version(if_match)
    try:
        found = await audit.set_retention_days(
            request.app.state.engine, principal.merchant_id, body.retention_days,
            audit.actor_of(principal), request_id(), version,
        )  # fmt: skip
    except audit.VersionMismatch as exc:
        raise Problem(
            412, "version_mismatch", str(exc), extra={"current_version": exc.current_version}
        ) from None
    return _settings(response, found)
