"""Registers and their devices (/v1/registers), and what happens at one: staff signing in
(/v1/register-sessions) and managers' overrides (/v1/overrides)."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Depends, Query, Request, Response
from pydantic import Field

from pos_gateway import audit, registers, staff
from pos_gateway import examples as ex
from pos_gateway.actions import principal_of
from pos_gateway.auth import Principal
from pos_gateway.clients import Services
from pos_gateway.idempotency import REDACTED
from pos_gateway.keys import ALL_SCOPES, REGISTER_SCOPES
from pos_gateway.permissions import PERMISSIONS
from pos_gateway.pins import PIN_PATTERN
from pos_gateway.problems import Problem
from pos_gateway.routes.common import (
    CREATE,
    LOCATION_OF_YOURS,
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
    problems,
    request_id,
    services,
    since_time,
    success,
)
from pos_gateway.routes.credentials import not_grantable
from pos_gateway.routes.settlement import location_of, open_location_of
from pos_gateway.schemas.registers import (
    Override,
    PairedRegister,
    PairingCode,
    Register,
    RegisterList,
    RegisterSession,
    SignInMemberList,
)
from pos_kit.context import merchant_var
from pos_kit.paging import encode_token
from pos_kit.text import CARD_NUMBER_NOT_ALLOWED, CARD_NUMBER_REASON, text_problem

router = APIRouter(prefix="/v1", tags=["registers"])
# The scope of this module's list cursors (pos_kit.paging): another list's are refused.
LIST_SCOPE = "gateway.registers"
Svc = Annotated[Services, Depends(services)]
PermissionName = Literal[PERMISSIONS]  # type: ignore[valid-type]


def ts(value: datetime | None) -> str | None:
    return None if value is None else value.strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z"


def _register_json(r: registers.Register) -> dict[str, Any]:
    return {"id": r.id, "location_id": r.location_id, "name": r.name, "status": r.status,
            "created_at": ts(r.created_at), "paired_at": ts(r.paired_at),
            "retired_at": ts(r.retired_at), "updated_at": ts(r.updated_at),
            "version": r.version}  # fmt: skip


def _etag(response: Response, r: registers.Register) -> Register:
    """The answer, with its version as the ETag for the next change's If-Match."""
    response.headers["ETag"] = f'"{r.version}"'
    return Register.model_validate(_register_json(r))


def _stale(exc: registers.VersionMismatch) -> Problem:
    """As every resource answers a stale If-Match: a 412 carrying the current version."""
    return Problem(412, "version_mismatch", str(exc),
                   extra={"current_version": exc.current_version})  # fmt: skip


def _missing(register_id: str) -> Problem:
    return Problem(404, "resource_missing", f"register {register_id!r} was not found",
                   extra={"resource": "register"})  # fmt: skip


def _reused() -> Problem:
    return Problem(
        422, "idempotency_key_reused", "this Idempotency-Key was used with a different request"
    )


def _merchant_only(principal: Principal) -> None:
    """Managing registers takes the merchant's credential, never a register's own."""
    if principal.register_id is not None:
        raise Problem(403, "insufficient_scope", "a register's credential cannot manage registers")


async def _at_open_location(svc: Services, merchant_id: str, found: registers.Register) -> None:
    """A register of a location the merchant closed (`status: inactive`) is not paired or
    changed: 409 `location_inactive` with the location's id, naming no field (the register
    chose the location, not the request). `merchant_id` is the register's: pairing is asked
    with no credential, the code alone says whose register it is."""
    merchant = merchant_var.set(merchant_id)
    try:
        await open_location_of(svc, found.location_id, "")
    finally:
        merchant_var.reset(merchant)


class RegisterIn(Body):
    model_config = example({"location_id": ex.LOCATION_ID, "name": "Till 1"})

    location_id: str = Field(min_length=1, max_length=64, description=LOCATION_OF_YOURS)
    name: Name


@router.post(
    "/registers",
    **op("registers:manage", "Create a register at a location", (404, *CREATE),
         example=ex.NEW_REGISTER, status=201),
)  # fmt: skip
async def create_register(
    body: RegisterIn, request: Request, svc: Svc, response: Response
) -> Register:
    """The register is `unpaired` until a device exchanges a pairing code for it, at
    `version` 1 (also the ETag). Announced as `register.created` (a retry of the same request
    announces nothing again). A location the merchant closed (`status: inactive`) is a 409
    `location_inactive`."""
    principal = principal_of(request)
    _merchant_only(principal)
    await open_location_of(svc, body.location_id, "location_id")
    try:
        made = await registers.create(
            request.app.state.engine, principal.merchant_id, body.location_id, body.name,
            audit.actor_of(principal), request_id(),
        )  # fmt: skip
    except registers.RequestReused:
        raise _reused() from None
    return _etag(response, made)


@router.get(
    "/registers",
    **op("registers:read", "List registers", (404,), example=ex.page(ex.REGISTER)),
)
async def list_registers(
    request: Request,
    svc: Svc,
    location_id: Annotated[QueryId | None, Query(description=UNKNOWN_LOCATION)] = None,
    limit: Limit = 50,
    cursor: Cursor = None,
    updated_since: UpdatedSince = None,
) -> RegisterList:
    """Newest first, or with `updated_since` the change feed (oldest change first). A
    register's own credential sees its location's registers only."""
    principal = principal_of(request)
    if location_id and principal.register_id is None:
        await location_of(svc, location_id, "location_id")
    location_id = principal.location_id or location_id
    scope = bound(LIST_SCOPE, location_id, updated_since)
    if updated_since is not None:
        changed = await registers.changed(
            request.app.state.engine, principal.merchant_id, location_id,
            since_time(updated_since), change_after(cursor, scope), limit + 1,
        )  # fmt: skip
        return RegisterList.model_validate(
            {"data": [_register_json(r) for r in changed[:limit]],
             "next_cursor": next_change(changed, limit, scope)}
        )  # fmt: skip
    found = await registers.listed(
        request.app.state.engine,
        principal.merchant_id,
        location_id,
        cursor_after(cursor, scope),
        limit + 1,
    )
    data = [_register_json(r) for r in found[:limit]]
    more = len(found) > limit
    return RegisterList.model_validate(
        {"data": data, "next_cursor": encode_token(data[-1]["id"], scope) if more else None}
    )


async def _register(request: Request, register_id: str) -> registers.Register:
    principal = principal_of(request)
    found = await registers.get(request.app.state.engine, principal.merchant_id, register_id)
    # A register's credential knows only its own location's registers.
    if found is None or principal.location_id not in (None, found.location_id):
        raise _missing(register_id)
    return found


@router.get(
    "/registers/{register_id}",
    **op("registers:read", "Get a register", (404,), example=ex.REGISTER),
)
async def get_register(register_id: PathId, request: Request, response: Response) -> Register:
    """The ETag is the version, for `If-Match` on a change."""
    return _etag(response, await _register(request, register_id))


class RegisterPatch(Patch):
    model_config = example({"name": "Front Till"})

    name: Name | None = None


@router.patch(
    "/registers/{register_id}",
    **op("registers:manage", "Change a register", (404, 409, 412),
         example={**ex.REGISTER, "name": "Front Till", "version": 3}),
)  # fmt: skip
async def update_register(
    register_id: PathId,
    body: RegisterPatch,
    request: Request,
    response: Response,
    svc: Svc,
    if_match: IfMatch = None,
) -> Register:
    """Renames the register (the name on receipts, in shift reports and in the audit log).
    Only the fields given change (one sent as null is a 400 naming it, nothing changed); a
    body with no field is a 400. Each change bumps `version`; the name it already has changes
    nothing. Send `If-Match: "<version>"` to change only the version you saw: a stale one is
    a 412 `version_mismatch` with `current_version`, and nothing changes. Its device and
    whoever is signed in at it go on as before. A retired register is a 409
    `register_retired`; one at a location the merchant closed (`status: inactive`) a 409
    `location_inactive` with its `location_id`, and nothing changes. Announced as
    `register.updated` and kept in the audit log. A register's own credential cannot change
    registers (403)."""
    patched(body)
    principal = principal_of(request)
    _merchant_only(principal)
    version = expected_version(if_match)
    await _at_open_location(svc, principal.merchant_id, await _register(request, register_id))
    assert body.name is not None  # the only field, and not null: patched() saw one
    try:
        changed = await registers.rename(
            request.app.state.engine, principal.merchant_id, register_id, body.name,
            audit.actor_of(principal), request_id(), version,
        )  # fmt: skip
    except registers.VersionMismatch as exc:
        raise _stale(exc) from None
    except registers.Refused:
        raise Problem(409, "register_retired", "a retired register cannot be changed") from None
    if changed is None:
        raise _missing(register_id)
    return _etag(response, changed)


@router.post(
    "/registers/{register_id}/retire",
    **op("registers:manage", "Retire a register", (404, 412, *CREATE),
         example=ex.RETIRED_REGISTER),
)  # fmt: skip
async def retire_register(
    register_id: PathId, request: Request, response: Response, if_match: IfMatch = None
) -> Register:
    """For good: its device's credential stops at once and whoever was signed in at it is
    signed out; bumps `version`. Send `If-Match: "<version>"` to retire only the version you
    saw (as on a change): a stale one is a 412 `version_mismatch` with `current_version`, and
    nothing changes. Retiring a retired register changes nothing."""
    principal = principal_of(request)
    _merchant_only(principal)
    try:
        retired = await registers.retire(
            request.app.state.engine, principal.merchant_id, register_id,
            audit.actor_of(principal), request_id(), expected_version(if_match),
        )  # fmt: skip
    except registers.VersionMismatch as exc:
        raise _stale(exc) from None
    if retired is None:
        raise _missing(register_id)
    return _etag(response, retired)


@router.post(
    "/registers/{register_id}/pairing-codes",
    **op("registers:manage", "Issue a pairing code for a register's device", (404, *CREATE),
         example=ex.PAIRING_CODE, status=201, shown_once=("code",)),
)  # fmt: skip
async def create_pairing_code(register_id: PathId, request: Request, svc: Svc) -> PairingCode:
    """A code of ten characters, valid ten minutes, exchanged once by the device at
    `POST /v1/registers/pair` for the register's credential. A retired register is a 409
    `register_retired`; one at a location the merchant closed (`status: inactive`) a 409
    `location_inactive` with its `location_id`, and no code is issued. Pairing again
    replaces the earlier device: its credential stops.

    The code hands out a credential with every register scope (`catalog:read`,
    `inventory:read`, `customers:read`, `customers:write`, `promotions:read`, `orders:read`,
    `orders:write`, `payments:read`, `payments:write`, `registers:read`, `register:session`),
    so, as for API keys, the credential issuing it must hold each of them as well as
    `registers:manage` (one holding every scope, such as a merchant's full key, may): any it
    lacks is a 403 `scope_not_grantable` naming them (`errors[]` on `scopes`), and no code is
    issued. A register's credential has no mode of its own and counts as test (it can never
    make a live key), so a test credential may pair as a live one may."""
    principal = principal_of(request)
    _merchant_only(principal)
    # Without this, `registers:manage` alone would be a way to every register scope: the
    # device redeeming the code gets them all, whatever the issuer held.
    beyond = [s for s in ALL_SCOPES if s in REGISTER_SCOPES and s not in principal.scopes]
    if beyond:
        raise not_grantable(beyond)
    await _at_open_location(svc, principal.merchant_id, await _register(request, register_id))
    state = request.app.state
    try:
        issued = await registers.new_pairing_code(
            state.engine, state.secret, principal.merchant_id, register_id,
            audit.actor_of(principal), request_id(),
        )  # fmt: skip
    except registers.RequestReused:
        raise _reused() from None
    except registers.Refused:
        raise Problem(409, "register_retired", "a retired register cannot be paired") from None
    if issued is None:
        raise _missing(register_id)
    code, expires = issued
    return PairingCode.model_validate(
        {"register_id": register_id, "code": code, "expires_at": ts(expires),
         REDACTED: code is None}
    )  # fmt: skip


class PairIn(Body):
    model_config = example({"code": ex.PAIRING_CODE["code"]})

    code: str = Field(
        min_length=1, max_length=32, description="The pairing code, as shown (any case)"
    )


PAIR_ERRORS = (400, 401, 409, 413, 429)
_PAIR_ANSWERS = problems(*PAIR_ERRORS)
_PAIR_ANSWERS[429] = {
    **_PAIR_ANSWERS[429],
    "headers": {
        "Retry-After": {
            "description": "Seconds to wait before the next attempt",
            "schema": {"type": "integer", "format": "int32", "minimum": 0, "maximum": 3600},
        }
    },
}


@router.post(
    "/registers/pair",
    summary="Pair a device with a register: a pairing code for the register's credential",
    description="Takes no credential: the pairing code is it. The code is used once; an "
    "unknown, used or expired code is a 401 `pairing_code_invalid` (which of the three is not "
    "said). The answer's `credential` is shown once: the device keeps it and sends it as "
    "`Authorization: Bearer ...`. It works only at the register's location (another "
    "location's resources are 404s) and only for the register scopes (anything else is a "
    "403). Attempts are limited per client address (429). A register whose location the "
    "merchant closed (`status: inactive`) is not paired: a 409 `location_inactive` with its "
    "`location_id`, and the code is not spent (it pairs once the location is reopened, "
    "while it lasts).",
    status_code=201,
    responses={201: success(ex.PAIRED), **_PAIR_ANSWERS},
    openapi_extra={"x-shown-once": ["credential"]},
)
async def pair_register(body: PairIn, request: Request, svc: Svc) -> PairedRegister:
    refused = text_problem("code", body.code)
    if refused == CARD_NUMBER_REASON:
        raise Problem(400, CARD_NUMBER_NOT_ALLOWED, "card numbers are never accepted",
                      [{"field": "code", "reason": refused}])  # fmt: skip
    state = request.app.state
    client = request.client.host if request.client is not None else "unknown"
    decision = await state.code_lookups.decide("pair:" + client)
    if not decision.allowed:
        raise Problem(429, "rate_limited", "too many pairing attempts; retry later",
                      headers={"Retry-After": str(decision.retry_after)})  # fmt: skip
    code = body.code.strip().upper()
    held = await registers.held_by(state.engine, state.secret, code)
    if held is not None:
        await _at_open_location(svc, *held)
    try:
        paired = await registers.pair(state.engine, state.secret, code)
    except registers.Refused as exc:
        if exc.reason == "register_retired":
            raise Problem(409, "register_retired", "the register was retired") from None
        raise Problem(
            401, "pairing_code_invalid",
            "the pairing code is unknown, used or expired: ask for a new one",
        ) from None  # fmt: skip
    return PairedRegister.model_validate(
        {"register": _register_json(paired.register), "credential": paired.credential,
         "scopes": sorted(REGISTER_SCOPES)}
    )  # fmt: skip


# --- at the register ------------------------------------------------------------------------

session_router = APIRouter(prefix="/v1", tags=["staff"])


def _at_register(request: Request) -> Principal:
    principal = principal_of(request)
    if principal.register_id is None or principal.location_id is None:
        raise Problem(403, "register_credential_required",
                      "only a paired register's own credential can do this")  # fmt: skip
    return principal


def refusal(exc: staff.Refused) -> Problem:
    status = {"resource_missing": 404, "staff_deactivated": 409, "role_name_taken": 409,
              "role_built_in": 409, "role_in_use": 409,
              "version_mismatch": 412}.get(exc.reason, 403)  # fmt: skip
    extra = {k: (ts(v) if isinstance(v, datetime) else v) for k, v in exc.extra.items()
             if k != "field"}  # fmt: skip
    # A missing reference the body names reads as every one does: `no such <resource>`.
    missing = exc.reason == "resource_missing" and "resource" in exc.extra
    reason = f"no such {exc.extra['resource']}" if missing else exc.detail
    errors = [{"field": exc.extra["field"], "reason": reason}] if "field" in exc.extra else []
    if status == 409 and errors:
        status = 400 if exc.reason != "role_name_taken" else 409
    return Problem(status, exc.reason, exc.detail, errors, extra=extra)


def session_json(s: staff.Session) -> dict[str, Any]:
    return {"id": s.id, "register_id": s.register_id, "staff_id": s.staff_id,
            "started_at": ts(s.started_at), "ended_at": ts(s.ended_at)}  # fmt: skip


class SignInIn(Body):
    model_config = example({"staff_id": ex.STAFF_ID, "pin": "4821"})

    staff_id: str = Field(min_length=1, max_length=64)
    pin: str = Field(pattern=PIN_PATTERN, max_length=8, description="4 to 8 digits")


AT_REGISTER = (404, *CREATE)


@session_router.post(
    "/register-sessions",
    **op("register:session", "Sign a staff member in at this register", AT_REGISTER,
         example=ex.REGISTER_SESSION, status=201),
)  # fmt: skip
async def sign_in(body: SignInIn, request: Request, svc: Svc) -> RegisterSession:
    """With a paired register's own credential. Whoever was signed in at it is signed out;
    what the register does from now on is done by this member. A wrong PIN is a 403
    `pin_incorrect` (with `attempts_left`); after five in a row the member is locked for 15
    minutes (403 `staff_locked`, with `locked_until`); both are in the audit log. Twenty wrong
    PINs at one register within 15 minutes, for any members, spend its budget: it signs no one
    in until they age out (403 `register_pin_budget_exhausted`). A member
    who does not work at the register's location is a 403 `staff_not_at_location`; one
    deactivated a 409 `staff_deactivated` (another merchant's, or none, a 404). A register
    of a location the merchant closed (`status: inactive`) signs no one in: a 409
    `location_inactive` with its `location_id`, naming no field, before the PIN is checked
    (as it is not paired there)."""
    principal = _at_register(request)
    await open_location_of(svc, principal.location_id or "", "")
    state = request.app.state
    try:
        session = await staff.sign_in(
            state.engine, state.secret, principal.merchant_id, principal.register_id or "",
            principal.location_id or "", body.staff_id, body.pin,
        )  # fmt: skip
    except staff.Refused as exc:
        raise refusal(exc) from None
    return RegisterSession.model_validate(session_json(session))


# The scope of the sign-in list's cursors: another list's are refused.
MEMBERS_SCOPE = "gateway.register-members"


@session_router.get(
    "/register-sessions/members",
    **op("register:session", "Who may sign in at this register",
         example=ex.page({k: ex.STAFF[k] for k in ("id", "name", "role", "locked_until")})),
)  # fmt: skip
async def sign_in_members(
    request: Request, limit: Limit = 50, cursor: Cursor = None
) -> SignInMemberList:
    """With a paired register's own credential: the active members who work at its location,
    newest first, for the till's sign-in picker (a register may not list staff: that is the
    back office's `staff:manage`). Their id, name, role and any lock; never a PIN."""
    principal = _at_register(request)
    assert principal.location_id is not None
    scope = bound(MEMBERS_SCOPE, principal.location_id)
    found = await staff.listed(
        request.app.state.engine, principal.merchant_id, principal.location_id,
        cursor_after(cursor, scope), limit + 1, active_only=True,
    )  # fmt: skip
    data = [{"id": m.id, "name": m.name, "role": m.role, "locked_until": ts(m.locked_until)}
            for m in found[:limit]]  # fmt: skip
    more = len(found) > limit
    return SignInMemberList.model_validate(
        {"data": data, "next_cursor": encode_token(found[limit - 1].id, scope) if more else None}
    )


@session_router.get(
    "/register-sessions/current",
    **op("register:session", "Who is signed in at this register", (404,),
         example=ex.REGISTER_SESSION),
)  # fmt: skip
async def current_session(request: Request) -> RegisterSession:
    """No one signed in is a 404."""
    principal = _at_register(request)
    found = None
    if principal.session_id is not None:
        found = await staff.current_session(request.app.state.engine, principal.session_id)
    if found is None:
        raise Problem(
            404, "resource_missing", "no one is signed in at this register",
            extra={"resource": "register session"},
        )  # fmt: skip
    return RegisterSession.model_validate(session_json(found))


@session_router.post(
    "/register-sessions/current/end",
    **op("register:session", "Sign out of this register", AT_REGISTER,
         example={**ex.REGISTER_SESSION, "ended_at": ex.UPDATED}),
)  # fmt: skip
async def sign_out(request: Request) -> RegisterSession:
    principal = _at_register(request)
    ended = None
    if principal.session_id is not None:
        ended = await staff.sign_out(
            request.app.state.engine, principal.merchant_id, principal.session_id,
            audit.actor_of(principal),
        )  # fmt: skip
    if ended is None:
        raise Problem(
            404, "resource_missing", "no one is signed in at this register",
            extra={"resource": "register session"},
        )  # fmt: skip
    return RegisterSession.model_validate(session_json(ended))


class OverrideIn(Body):
    model_config = example({"manager_id": ex.MANAGER_ID, "pin": "7359", "permission": "refund"})

    manager_id: str = Field(min_length=1, max_length=64)
    pin: str = Field(pattern=PIN_PATTERN, max_length=8, description="The manager's PIN")
    permission: PermissionName


def override_json(o: staff.Override) -> dict[str, Any]:
    return {"id": o.id, "permission": o.permission, "requested_by": o.requested_by,
            "approved_by": o.approved_by, "register_id": o.register_id,
            "granted_at": ts(o.granted_at), "expires_at": ts(o.expires_at),
            "used_at": ts(o.used_at)}  # fmt: skip


@session_router.post(
    "/overrides",
    **op("register:session", "A manager's override for one action at this register",
         AT_REGISTER, example=ex.OVERRIDE, status=201),
)  # fmt: skip
async def grant_override(body: OverrideIn, request: Request, svc: Svc) -> Override:
    """The manager gives their PIN at the register; the signed-in member's next action that
    needs `permission` (within two minutes, once) then succeeds, and its audit entry names
    both. The manager must hold the permission (403 `approver_lacks_permission`) and work at
    the location; wrong PINs count towards the manager's lock as at sign-in. A deactivated
    manager is a 409 `staff_deactivated`. A register of a location the merchant closed
    (`status: inactive`) grants no override: a 409 `location_inactive` with its
    `location_id`, naming no field, before the PIN is checked (as it signs no one in)."""
    principal = _at_register(request)
    await open_location_of(svc, principal.location_id or "", "")
    state = request.app.state
    session = None
    if principal.session_id is not None:
        session = await staff.current_session(state.engine, principal.session_id)
    if session is None:
        raise Problem(403, "staff_sign_in_required", "no staff member is signed in here")
    try:
        granted = await staff.grant_override(
            state.engine, state.secret, principal.merchant_id, principal.register_id or "",
            principal.location_id or "", session, body.manager_id, body.pin, body.permission,
            request_id(),
        )  # fmt: skip
    except staff.RequestReused:
        raise _reused() from None
    except staff.Refused as exc:
        raise refusal(exc) from None
    return Override.model_validate(override_json(granted))
