"""Staff members and roles: /v1/staff, /v1/roles."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from fastapi import APIRouter, Depends, Query, Request, Response
from pydantic import Field

from pos.inventory.v1 import inventory_pb2
from pos_gateway import audit, staff
from pos_gateway import examples as ex
from pos_gateway.actions import principal_of
from pos_gateway.clients import Services
from pos_gateway.permissions import PERMISSIONS
from pos_gateway.pins import PIN_PATTERN
from pos_gateway.problems import Problem
from pos_gateway.routes.common import (
    CREATE,
    INT32,
    UNKNOWN_LOCATION,
    Body,
    Cursor,
    IfMatch,
    Limit,
    Name,
    Patch,
    PathId,
    QueryId,
    UpdatedSince,
    bound,
    change_after,
    cursor_after,
    example,
    expected_version,
    next_change,
    op,
    patched,
    request_id,
    services,
    since_time,
)
from pos_gateway.routes.registers import refusal, ts
from pos_gateway.routes.settlement import location_of, locations_of
from pos_gateway.schemas.registers import Role, RoleList, StaffList, StaffMember
from pos_kit.paging import encode_token

router = APIRouter(prefix="/v1", tags=["staff"])
# The scope of this module's list cursors (pos_kit.paging): another list's are refused.
LIST_SCOPE = "gateway.staff"
ROLES_SCOPE = "gateway.roles"
Svc = Annotated[Services, Depends(services)]
PermissionName = Literal[PERMISSIONS]  # type: ignore[valid-type]
RoleName = Annotated[
    str,
    Field(min_length=1, max_length=64, description="`cashier`, `manager`, `admin` or a role id"),
]
Pin = Annotated[str, Field(pattern=PIN_PATTERN, max_length=8, description="4 to 8 digits")]


def _member_json(m: staff.Member) -> dict[str, Any]:
    return {"id": m.id, "name": m.name, "role": m.role, "location_ids": m.location_ids,
            "status": m.status, "locked_until": ts(m.locked_until), "version": m.version,
            "created_at": ts(m.created_at), "updated_at": ts(m.updated_at)}  # fmt: skip


def _etag(response: Response, m: staff.Member) -> StaffMember:
    response.headers["ETag"] = f'"{m.version}"'
    return StaffMember.model_validate(_member_json(m))


def _reused() -> Problem:
    return Problem(
        422, "idempotency_key_reused", "this Idempotency-Key was used with a different request"
    )


def _closed(found: list[inventory_pb2.Location], sent: list[str]) -> dict[str, str]:
    """The locations sent that the merchant closed (`status: inactive`), each with the entry
    as sent that first named it (`location_ids[1]`), in the order sent."""
    closed = {loc.id for loc in found if loc.status == inventory_pb2.LOCATION_STATUS_INACTIVE}
    named: dict[str, str] = {}
    for index, location_id in enumerate(sent):
        if location_id in closed:
            named.setdefault(location_id, f"location_ids[{index}]")
    return named


def _location_inactive(location_id: str, fields: list[str]) -> Problem:
    """409 `location_inactive`, as a register or a shift at a closed location is refused."""
    return Problem(
        409,
        "location_inactive",
        f"location {location_id!r} is inactive: no member is given a location the merchant closed",
        [{"field": f, "reason": "the location is inactive"} for f in fields],
        extra={"location_id": location_id},
    )


def _manager(request: Request) -> audit.Actor:
    principal = principal_of(request)
    if principal.register_id is not None:
        raise Problem(403, "insufficient_scope", "a register's credential cannot manage staff")
    return audit.actor_of(principal)


class StaffIn(Body):
    model_config = example(
        {"name": "Ada Cashier", "role": "cashier", "location_ids": [ex.LOCATION_ID],
         "pin": "4821"}
    )  # fmt: skip

    name: Name
    role: RoleName
    location_ids: list[Annotated[str, Field(min_length=1, max_length=64)]] = Field(
        min_length=1, max_length=100, description="Where the member works; each one of yours"
    )
    pin: Pin


@router.post(
    "/staff",
    **op("staff:manage", "Create a staff member", (404, *CREATE), example=ex.STAFF, status=201),
)
async def create_staff(body: StaffIn, request: Request, svc: Svc) -> StaffMember:
    """The PIN is stored only as a slow keyed hash and never shown again. An unknown role or
    location is a 404; a location the merchant closed (`status: inactive`) a 409
    `location_inactive` naming each such entry (`location_ids[1]`), and nothing is made."""
    actor = _manager(request)
    # Checked as sent, so a refusal names the entry the client wrote (`location_ids[2]`), not
    # its place in the list without repeats; stored without them.
    found = await locations_of(svc, body.location_ids, "location_ids")
    if closed := _closed(found, body.location_ids):
        raise _location_inactive(next(iter(closed)), list(closed.values()))
    locations = list(dict.fromkeys(body.location_ids))
    state = request.app.state
    fields = {"name": body.name, "role": body.role, "location_ids": locations}
    try:
        made = await staff.create(
            state.engine, state.secret, principal_of(request).merchant_id, fields, body.pin,
            actor, request_id(),
        )  # fmt: skip
    except staff.RequestReused:
        raise _reused() from None
    except staff.Refused as exc:
        raise refusal(exc) from None
    return StaffMember.model_validate(_member_json(made))


@router.get("/staff", **op("staff:manage", "List staff", (404,), example=ex.page(ex.STAFF)))
async def list_staff(
    request: Request,
    svc: Svc,
    location_id: Annotated[QueryId | None, Query(description=UNKNOWN_LOCATION)] = None,
    limit: Limit = 50,
    cursor: Cursor = None,
    updated_since: UpdatedSince = None,
) -> StaffList:
    """Newest first, or with `updated_since` the change feed (oldest change first);
    deactivated members too; never a PIN."""
    _manager(request)
    if location_id:
        await location_of(svc, location_id, "location_id")
    scope = bound(LIST_SCOPE, location_id, updated_since)
    if updated_since is not None:
        changed = await staff.changed(
            request.app.state.engine, principal_of(request).merchant_id, location_id,
            since_time(updated_since), change_after(cursor, scope), limit + 1,
        )  # fmt: skip
        return StaffList.model_validate(
            {"data": [_member_json(m) for m in changed[:limit]],
             "next_cursor": next_change(changed, limit, scope)}
        )  # fmt: skip
    found = await staff.listed(
        request.app.state.engine, principal_of(request).merchant_id, location_id,
        cursor_after(cursor, scope), limit + 1,
    )  # fmt: skip
    data = [_member_json(m) for m in found[:limit]]
    more = len(found) > limit
    return StaffList.model_validate(
        {"data": data, "next_cursor": encode_token(data[-1]["id"], scope) if more else None}
    )


def _staff_missing(staff_id: str) -> Problem:
    return Problem(404, "resource_missing", f"staff member {staff_id!r} was not found",
                   extra={"resource": "staff"})  # fmt: skip


@router.get("/staff/{staff_id}", **op("staff:manage", "Get a staff member", (404,),
                                      example=ex.STAFF))  # fmt: skip
async def get_staff(staff_id: PathId, request: Request, response: Response) -> StaffMember:
    """The ETag is the version, for `If-Match` on a change. A lock after five wrong PINs
    (`locked_until` set) is a new version too, announced as `staff.updated` and in the
    `updated_since` feed; a lock running out is not."""
    _manager(request)
    found = await staff.get(request.app.state.engine, principal_of(request).merchant_id, staff_id)
    if found is None:
        raise _staff_missing(staff_id)
    return _etag(response, found)


class StaffPatch(Patch):
    model_config = example({"role": "manager", "pin": "9034"})

    name: Name | None = None
    role: RoleName | None = None
    location_ids: list[Annotated[str, Field(min_length=1, max_length=64)]] | None = Field(
        None, min_length=1, max_length=100
    )
    pin: Pin | None = Field(None, description="A new PIN; it also lifts a lock")


@router.patch(
    "/staff/{staff_id}",
    **op("staff:manage", "Change a staff member", (404, 409, 412),
         example={**ex.STAFF, "version": 2}),
)  # fmt: skip
async def update_staff(
    staff_id: PathId,
    body: StaffPatch,
    request: Request,
    response: Response,
    svc: Svc,
    if_match: IfMatch = None,
) -> StaffMember:
    """Only the fields given change (one sent as null is a 400 naming it, nothing changed);
    each change bumps `version`. Send `If-Match:
    "<version>"` to change only the version you saw: a stale one is a 412 `version_mismatch`
    with `current_version`, and nothing changes. A deactivated member is a 409
    `staff_deactivated`. A location the merchant closed (`status: inactive`) that the member
    does not work at already is a 409 `location_inactive` naming each such entry
    (`location_ids[1]`), nothing changed; one they work at stays theirs when sent again. A
    body with no field is a 400, nothing changed."""
    patched(body)
    actor = _manager(request)
    version = expected_version(if_match)
    fields: dict[str, Any] = {}
    closed: dict[str, str] = {}
    if body.name is not None:
        fields["name"] = body.name
    if body.role is not None:
        fields["role"] = body.role
    if body.location_ids is not None:
        found = await locations_of(svc, body.location_ids, "location_ids")
        closed = _closed(found, body.location_ids)
        fields["location_ids"] = list(dict.fromkeys(body.location_ids))
    state = request.app.state
    try:
        changed = await staff.update_member(
            state.engine, state.secret, principal_of(request).merchant_id, staff_id, fields,
            body.pin, actor, request_id(), version, closed,
        )  # fmt: skip
    except staff.LocationInactive as exc:
        raise _location_inactive(exc.location_id, exc.fields) from None
    except staff.Refused as exc:
        raise refusal(exc) from None
    if changed is None:
        raise _staff_missing(staff_id)
    return _etag(response, changed)


@router.post(
    "/staff/{staff_id}/deactivate",
    **op("staff:manage", "Deactivate a staff member", (404, 412, *CREATE),
         example={**ex.STAFF, "status": "deactivated", "version": 2}),
)  # fmt: skip
async def deactivate_staff(
    staff_id: PathId, request: Request, response: Response, if_match: IfMatch = None
) -> StaffMember:
    """For good: signed out of every register at once, never signs in again; bumps
    `version`. Send `If-Match: "<version>"` to deactivate only the version you saw (as on a
    change): a stale one is a 412 `version_mismatch` with `current_version`, and nothing
    changes. Deactivating a deactivated member changes nothing."""
    actor = _manager(request)
    state = request.app.state
    try:
        gone = await staff.deactivate(
            state.engine, principal_of(request).merchant_id, staff_id, actor, request_id(),
            expected_version(if_match),
        )  # fmt: skip
    except staff.Refused as exc:
        raise refusal(exc) from None
    if gone is None:
        raise _staff_missing(staff_id)
    return _etag(response, gone)


class RoleIn(Body):
    model_config = example(
        {"name": "shift lead", "permissions": ["refund", "no_sale"], "discount_limit_bps": 2000}
    )

    name: Name
    permissions: list[PermissionName] = Field(max_length=len(PERMISSIONS))
    discount_limit_bps: int = Field(
        0, ge=0, le=10_000, json_schema_extra=INT32,
        description="The largest discount given without an override (1000 = 10 %)",
    )  # fmt: skip


def _role_json(r: staff.Role) -> dict[str, Any]:
    return {"id": r.id, "name": r.name, "permissions": r.permissions,
            "discount_limit_bps": r.discount_limit_bps, "built_in": r.built_in,
            "version": r.version, "updated_at": ts(r.updated_at)}  # fmt: skip


@router.post(
    "/roles",
    **op("staff:manage", "Create a role", CREATE, example=ex.ROLE, status=201),
)
async def create_role(body: RoleIn, request: Request) -> Role:
    """A role of your own, named by its id in a member's `role`. A name already taken in any
    case, outer spaces aside (the built-in ones included), is a 409 `role_name_taken`."""
    actor = _manager(request)
    permissions = [p for p in PERMISSIONS if p in body.permissions]
    try:
        made = await staff.create_role(
            request.app.state.engine, principal_of(request).merchant_id, body.name, permissions,
            body.discount_limit_bps, actor, request_id(),
        )  # fmt: skip
    except staff.RequestReused:
        raise _reused() from None
    except staff.Refused as exc:
        raise refusal(exc) from None
    return Role.model_validate(_role_json(made))


@router.get("/roles", **op("staff:manage", "List roles", example=ex.listed(ex.ROLE)))
async def list_roles(
    request: Request, limit: Limit = 50, cursor: Cursor = None, updated_since: UpdatedSince = None
) -> RoleList:
    """The built-in roles (`cashier`: no permission, discounts up to 10 %; `manager` and
    `admin`: every permission), then yours by id, in pages: a merchant may make any number
    of roles. With `updated_since` the change feed (oldest change first: a role made or
    changed, a new `version`, moves to its end), polled again from the last `updated_at` seen
    without missing one; the built-in roles never change and are not in it."""
    _manager(request)
    if updated_since is not None:
        scope = bound(ROLES_SCOPE, updated_since)
        changed = await staff.changed_roles(
            request.app.state.engine, principal_of(request).merchant_id,
            since_time(updated_since), change_after(cursor, scope), limit + 1,
        )  # fmt: skip
        return RoleList.model_validate(
            {"data": [_role_json(r) for r in changed[:limit]],
             "next_cursor": next_change(changed, limit, scope)}
        )  # fmt: skip
    found = await staff.list_roles(
        request.app.state.engine, principal_of(request).merchant_id,
        cursor_after(cursor, ROLES_SCOPE), limit + 1,
    )  # fmt: skip
    data = [_role_json(r) for r in found[:limit]]
    more = len(found) > limit
    return RoleList.model_validate(
        {"data": data, "next_cursor": encode_token(data[-1]["id"], ROLES_SCOPE) if more else None}
    )


def _role_missing(role_id: str) -> Problem:
    return Problem(404, "resource_missing", f"role {role_id!r} was not found",
                   extra={"resource": "role"})  # fmt: skip


def _role_etag(response: Response, r: staff.Role) -> Role:
    response.headers["ETag"] = f'"{r.version}"'
    return Role.model_validate(_role_json(r))


@router.get("/roles/{role_id}", **op("staff:manage", "Get a role", (404,), example=ex.ROLE))
async def get_role(role_id: PathId, request: Request, response: Response) -> Role:
    """A built-in role (its id is its name) or one of yours. The ETag is the version, for
    `If-Match` on a change."""
    _manager(request)
    found = await staff.get_role(
        request.app.state.engine, principal_of(request).merchant_id, role_id
    )
    if found is None:
        raise _role_missing(role_id)
    return _role_etag(response, found)


class RolePatch(Patch):
    model_config = example({"name": "senior shift lead", "permissions": ["refund", "void"]})

    name: Name | None = None
    permissions: list[PermissionName] | None = Field(None, max_length=len(PERMISSIONS))
    discount_limit_bps: int | None = Field(
        None, ge=0, le=10_000, json_schema_extra=INT32,
        description="The largest discount given without an override (1000 = 10 %)",
    )  # fmt: skip


@router.patch(
    "/roles/{role_id}",
    **op("staff:manage", "Change a role", (404, 409, 412), example={**ex.ROLE, "version": 2}),
)
async def update_role(
    role_id: PathId,
    body: RolePatch,
    request: Request,
    response: Response,
    if_match: IfMatch = None,
) -> Role:
    """Only the fields given change (one sent as null is a 400 naming it, nothing changed);
    `permissions` replaces the list. Each change bumps `version`; what the role already is
    changes nothing. Send `If-Match: "<version>"` to change only the version you saw: a stale
    one is a 412 `version_mismatch` with `current_version`, and nothing changes. A name
    another role has, in any case, outer spaces aside (the built-in ones included), is a 409
    `role_name_taken`; a built-in role is a 409 `role_built_in`. Members with the role act
    with its new permissions from their next action on. A body with no field is a 400."""
    patched(body)
    actor = _manager(request)
    version = expected_version(if_match)
    fields: dict[str, Any] = {}
    if body.name is not None:
        fields["name"] = body.name
    if body.permissions is not None:
        fields["permissions"] = [p for p in PERMISSIONS if p in body.permissions]
    if body.discount_limit_bps is not None:
        fields["discount_limit_bps"] = body.discount_limit_bps
    try:
        changed = await staff.update_role(
            request.app.state.engine, principal_of(request).merchant_id, role_id, fields,
            actor, request_id(), version,
        )  # fmt: skip
    except staff.Refused as exc:
        raise refusal(exc) from None
    if changed is None:
        raise _role_missing(role_id)
    return _role_etag(response, changed)


@router.delete(
    "/roles/{role_id}",
    **op("staff:manage", "Delete a role no active member has", (404, 409, 412),
         example=ex.ROLE),
)  # fmt: skip
async def delete_role(role_id: PathId, request: Request, if_match: IfMatch = None) -> Role:
    """Answers the role as it was. While an active staff member has it, a 409 `role_in_use`
    with `staff_count` (give them another role first); a built-in role is a 409
    `role_built_in`. Send `If-Match: "<version>"` to delete only the version you saw: a stale
    one is a 412 `version_mismatch`. A deactivated member keeps the role's id as it was."""
    actor = _manager(request)
    version = expected_version(if_match)
    try:
        gone = await staff.delete_role(
            request.app.state.engine, principal_of(request).merchant_id, role_id, actor,
            request_id(), version,
        )  # fmt: skip
    except staff.Refused as exc:
        raise refusal(exc) from None
    if gone is None:
        raise _role_missing(role_id)
    return Role.model_validate(_role_json(gone))
