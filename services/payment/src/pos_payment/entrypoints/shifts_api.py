"""pos.payment.v1.ShiftService: translates protobuf <-> the shift handlers, nothing more."""

from __future__ import annotations

from collections.abc import Callable

import grpc

from pos.payment.v1 import shifts_pb2 as S
from pos.payment.v1 import shifts_pb2_grpc
from pos_kit.context import register_var, staff_var
from pos_kit.paging import page_of, page_request, time_field
from pos_kit.servicer import Servicer, mutation, query
from pos_payment.adapters.shift_messages import (
    KINDS,
    SHIFT_STATUSES,
    movement_to_proto,
    shift_to_proto,
)
from pos_payment.adapters.shifts import ShiftUow
from pos_payment.domain.shifts import ShiftFilter
from pos_payment.service import shifts as handlers


def _actor() -> tuple[str, str]:
    return register_var.get() or "", staff_var.get() or ""


class ShiftApi(Servicer[ShiftUow], shifts_pb2_grpc.ShiftServiceServicer):
    @mutation(S.OpenShiftResponse)
    async def OpenShift(self, request: S.OpenShiftRequest, uow: ShiftUow) -> S.OpenShiftResponse:
        register, staff = _actor()
        shift = await handlers.open_shift(
            uow, request.location_id, register, staff, request.opening_float.amount,
            request.opening_float.currency,
        )  # fmt: skip
        return S.OpenShiftResponse(shift=shift_to_proto(shift))

    @query
    async def GetShift(self, request: S.GetShiftRequest, uow: ShiftUow) -> S.GetShiftResponse:
        shift = await handlers.shift_of(uow, request.id, _actor()[0])
        return S.GetShiftResponse(shift=shift_to_proto(shift))

    @query
    async def ListShifts(self, request: S.ListShiftsRequest, uow: ShiftUow) -> S.ListShiftsResponse:
        page = page_request(request)
        register = _actor()[0]
        if register and request.register_id not in ("", register):
            # A register reads its own shifts only: another's are none of its own.
            return S.ListShiftsResponse()
        filters = ShiftFilter(
            register_id=register or request.register_id,
            location_id=request.location_id,
            status=SHIFT_STATUSES.optional(request.status, "status"),
            opened_since=time_field(request, "opened_since"),
            opened_before=time_field(request, "opened_before"),
        )
        found, token = page_of(await handlers.list_shifts(uow, page, filters), page)
        return S.ListShiftsResponse(
            shifts=[shift_to_proto(s) for s in found], next_page_token=token
        )

    @mutation(S.RecordDrawerMovementResponse)
    async def RecordDrawerMovement(
        self, request: S.RecordDrawerMovementRequest, uow: ShiftUow
    ) -> S.RecordDrawerMovementResponse:
        register, staff = _actor()
        kind = KINDS.from_proto(request.kind, "kind")
        movement, shift = await handlers.record_movement(
            uow, request.shift_id, register, staff, kind, request.amount.amount,
            request.amount.currency, request.reason,
        )  # fmt: skip
        return S.RecordDrawerMovementResponse(
            movement=movement_to_proto(movement), shift=shift_to_proto(shift)
        )

    @mutation(S.CloseShiftResponse)
    async def CloseShift(self, request: S.CloseShiftRequest, uow: ShiftUow) -> S.CloseShiftResponse:
        register, staff = _actor()
        shift = await handlers.close_shift(
            uow, request.shift_id, register, staff, request.counted_cash.amount,
            request.counted_cash.currency,
        )  # fmt: skip
        return S.CloseShiftResponse(shift=shift_to_proto(shift))


def registrar(uow: Callable[[], ShiftUow]) -> Callable[[grpc.aio.Server], None]:
    def register(server: grpc.aio.Server) -> None:
        shifts_pb2_grpc.add_ShiftServiceServicer_to_server(ShiftApi(uow), server)

    return register


SERVICE_NAME = S.DESCRIPTOR.services_by_name["ShiftService"].full_name
