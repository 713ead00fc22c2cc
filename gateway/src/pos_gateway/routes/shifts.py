"""Shifts and cash drawers at a register: /v1/shifts (kept by the payment service)."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Literal

from fastapi import APIRouter, Depends, Query, Request
from pydantic import Field

from pos.payment.v1 import shifts_pb2
from pos_gateway import examples as ex
from pos_gateway.actions import guarded, principal_of, signed_in
from pos_gateway.clients import Services
from pos_gateway.convert import to_json, to_model, to_page
from pos_gateway.problems import Problem
from pos_gateway.routes.common import (
    CREATE,
    TIME_SCHEMA,
    UNKNOWN_LOCATION,
    Body,
    Cursor,
    InRange,
    Limit,
    MoneyIn,
    PathId,
    QueryId,
    Rfc3339,
    UpdatedSince,
    example,
    known_register,
    op,
    register_missing,
    request_id,
    services,
    timestamp,
)
from pos_gateway.routes.settlement import location_of, open_location_of
from pos_gateway.schemas.registers import DrawerMovementMade, Shift, ShiftList

router = APIRouter(prefix="/v1", tags=["registers"])
Svc = Annotated[Services, Depends(services)]

OpenedSince = Annotated[
    datetime | None,
    Rfc3339,
    InRange,
    Query(
        description="Only shifts opened at or after this RFC 3339 time",
        json_schema_extra=TIME_SCHEMA,
    ),
]
OpenedBefore = Annotated[
    datetime | None,
    Rfc3339,
    InRange,
    Query(
        description="Only shifts opened before this RFC 3339 time", json_schema_extra=TIME_SCHEMA
    ),
]
_STATUSES = {"open": shifts_pb2.SHIFT_STATUS_OPEN, "closed": shifts_pb2.SHIFT_STATUS_CLOSED}
_KINDS = {
    "pay_in": shifts_pb2.DRAWER_MOVEMENT_KIND_PAY_IN,
    "pay_out": shifts_pb2.DRAWER_MOVEMENT_KIND_PAY_OUT,
    "no_sale": shifts_pb2.DRAWER_MOVEMENT_KIND_NO_SALE,
}


class ShiftIn(Body):
    model_config = example({"opening_float": {"amount": 10000, "currency": "USD"}})

    opening_float: MoneyIn = Field(description="The cash in the drawer at the start")


@router.post(
    "/shifts",
    **op("payments:write", "Open a shift on this register", (404, *CREATE), example=ex.SHIFT,
         status=201),
)  # fmt: skip
async def open_shift(body: ShiftIn, request: Request, svc: Svc) -> Shift:
    """With a paired register's own credential and a member signed in. From now until the
    close, the cash payments and cash refunds taken at this register count towards the
    shift. A register with a shift open already is a 409 `shift_already_open`; a float in
    another currency than the location's a 400; at a location the merchant closed (`status:
    inactive`) a 409 `location_inactive`."""
    principal = signed_in(principal_of(request))
    if principal.register_id is None or principal.location_id is None:
        raise Problem(403, "register_credential_required",
                      "a shift is opened from the register's own credential")  # fmt: skip
    location = await open_location_of(svc, principal.location_id, "")
    if body.opening_float.currency != location.currency:
        raise Problem(400, "invalid_request", "the float must be in the location's currency",
                      [{"field": "opening_float.currency",
                        "reason": f"must be {location.currency}"}])  # fmt: skip
    async with guarded(request, "shift.opened") as done:
        answer = await svc.shifts.OpenShift(
            shifts_pb2.OpenShiftRequest(
                request_id=request_id(), location_id=principal.location_id,
                opening_float=body.opening_float.pb(),
            )
        )  # fmt: skip
        done.resource = ("shift", answer.shift.id)
        done.details = {"opening_float": body.opening_float.amount}
    return to_model(Shift, answer.shift)


@router.get("/shifts", **op("payments:read", "List shifts", (404,), example=ex.page(ex.SHIFT)))
async def list_shifts(
    request: Request,
    svc: Svc,
    register_id: Annotated[
        QueryId | None,
        Query(
            description="Only this register's; a register sees its own only; one you do not "
            "have is a 404 problem"
        ),
    ] = None,
    location_id: Annotated[QueryId | None, Query(description=UNKNOWN_LOCATION)] = None,
    status: Annotated[
        Literal["open", "closed"] | None, Query(description="Only shifts in this status")
    ] = None,
    opened_since: OpenedSince = None,
    opened_before: OpenedBefore = None,
    limit: Limit = 50,
    cursor: Cursor = None,
    updated_since: UpdatedSince = None,
) -> ShiftList:
    """Newest first, or with `updated_since` the change feed (oldest change first: a shift
    moves in it when it is opened or closed); each with its report as it stands. Each filter
    narrows the list (`opened_since` and `opened_before` together: a day's shifts, the second
    after the first, else a 400 naming `opened_before`)."""
    if location_id:
        await location_of(svc, location_id, "location_id")
    if register_id:
        await known_register(request, register_id)
        own = principal_of(request).register_id
        if own is not None and register_id != own:
            # Another register of its location is one a register knows, but its shifts are
            # not the register's to read (GetShift answers them 404 too).
            raise register_missing(register_id)
    ask = shifts_pb2.ListShiftsRequest(
        page_size=limit, page_token=cursor or "", register_id=register_id or "",
        location_id=location_id or "",
        status=_STATUSES[status] if status else shifts_pb2.SHIFT_STATUS_UNSPECIFIED,
    )  # fmt: skip
    if updated_since is not None:
        ask.updated_since.CopyFrom(timestamp(updated_since))
    if opened_since is not None:
        ask.opened_since.CopyFrom(timestamp(opened_since, "opened_since"))
    if opened_before is not None:
        ask.opened_before.CopyFrom(timestamp(opened_before, "opened_before"))
    answer = await svc.shifts.ListShifts(ask)
    return to_page(ShiftList, answer.shifts, answer.next_page_token)


@router.get("/shifts/{shift_id}", **op("payments:read", "Get a shift", (404,), example=ex.SHIFT))
async def get_shift(shift_id: PathId, svc: Svc) -> Shift:
    """With its report as it stands: an open shift's expected cash so far."""
    answer = await svc.shifts.GetShift(shifts_pb2.GetShiftRequest(id=shift_id))
    return to_model(Shift, answer.shift)


class MovementIn(Body):
    model_config = example(
        {"kind": "pay_out", "amount": {"amount": 1000, "currency": "USD"},
         "reason": "window cleaner"}
    )  # fmt: skip

    kind: Literal["pay_in", "pay_out", "no_sale"]
    amount: MoneyIn | None = Field(None, description="Required for a pay-in or a pay-out")
    reason: str = Field(min_length=1, max_length=500)


@router.post(
    "/shifts/{shift_id}/drawer-movements",
    **op("payments:write", "Pay in, pay out, or open the drawer without a sale",
         (404, *CREATE), example={"movement": ex.DRAWER_MOVEMENT, "shift": ex.SHIFT},
         status=201),
)  # fmt: skip
async def record_drawer_movement(
    shift_id: PathId, body: MovementIn, request: Request, svc: Svc
) -> DrawerMovementMade:
    """Each with a reason, the member and the register. A no-sale open takes the `no_sale`
    permission or a manager's override (403 `permission_required`) and moves no money; so
    does a pay-out, cash taken out of the drawer outside a sale (a pay-in needs none); a
    pay-in or pay-out needs an amount in the shift's currency; a pay-out past the cash the
    drawer is expected to hold is a 409 `insufficient_cash_in_drawer` naming `amount.amount`
    (with `expected_cash`), and a pay-in that would take it past 10^12 minor units (the
    ceiling of every amount) a 400 naming `amount.amount`; either way nothing is recorded.
    A closed shift is a 409 `shift_closed`. Each is in the audit log. Cash moves at the
    drawer: only the register's own credential records a movement (403
    `register_credential_required`), as it opens the shift; the back office may close a
    shift left open."""
    if principal_of(request).register_id is None:
        # Another merchant's shift (or none) is still the 404 any id of theirs is.
        await svc.shifts.GetShift(shifts_pb2.GetShiftRequest(id=shift_id))
        raise Problem(403, "register_credential_required",
                      "the drawer is moved from the register's own credential")  # fmt: skip
    if body.kind != "no_sale" and body.amount is None:
        raise Problem(400, "invalid_request", "a pay-in or pay-out needs an amount",
                      [{"field": "amount", "reason": "is required"}])  # fmt: skip
    movement = shifts_pb2.RecordDrawerMovementRequest(
        request_id=request_id(), shift_id=shift_id, kind=_KINDS[body.kind], reason=body.reason
    )
    if body.amount is not None:
        movement.amount.CopyFrom(body.amount.pb())
    # Cash out of the drawer outside a sale opens it as a no-sale does: the same permission.
    permission = "no_sale" if body.kind in ("no_sale", "pay_out") else None
    async with guarded(request, f"drawer.{body.kind}", permission) as done:
        answer = await svc.shifts.RecordDrawerMovement(movement)
        done.resource = ("shift", shift_id)
        done.details = {"movement_id": answer.movement.id, "reason": body.reason,
                        "amount": answer.movement.amount.amount}  # fmt: skip
    return DrawerMovementMade.model_validate(
        {"movement": to_json(answer.movement), "shift": to_json(answer.shift)}
    )


class CloseIn(Body):
    model_config = example({"counted_cash": {"amount": 13980, "currency": "USD"}})

    counted_cash: MoneyIn


@router.post(
    "/shifts/{shift_id}/close",
    **op("payments:write", "Close a shift with the counted cash", (404, *CREATE),
         example=ex.CLOSED_SHIFT),
)  # fmt: skip
async def close_shift(shift_id: PathId, body: CloseIn, request: Request, svc: Svc) -> Shift:
    """The answer holds the expected cash, the counted cash and the over/short (negative:
    short), and the shift's report by tender. Every cash sale and refund taken at the
    register while it was open is counted, also one racing the close. A closed shift is a
    409 `shift_closed`."""
    async with guarded(request, "shift.closed") as done:
        answer = await svc.shifts.CloseShift(
            shifts_pb2.CloseShiftRequest(
                request_id=request_id(), shift_id=shift_id, counted_cash=body.counted_cash.pb()
            )
        )
        done.resource = ("shift", shift_id)
        done.details = {"counted_cash": answer.shift.counted_cash.amount,
                        "expected_cash": answer.shift.report.expected_cash.amount,
                        "over_short": answer.shift.over_short}  # fmt: skip
    return to_model(Shift, answer.shift)
