"""Shift use cases: open, record a drawer movement, close. One handler each; the register
and the member acting come from the call (pos_kit.context), never from the request body."""

from __future__ import annotations

from typing import Protocol

from sqlalchemy.exc import IntegrityError

from pos_kit.errors import Conflict, NotFound, raise_if
from pos_kit.ids import new_id
from pos_kit.paging import PageRequest
from pos_payment.domain.shifts import (
    Movement,
    MovementKind,
    Shift,
    ShiftClosed,
    ShiftFilter,
    ShiftOpened,
    ShiftStatus,
    check_currency_of,
    check_pay_in,
    check_pay_out,
    money_violations,
    validate_filter,
    validate_movement,
    validate_open,
)


class ShiftRepository(Protocol):
    async def add(self, shift: Shift) -> None: ...
    async def open_at(self, register_id: str) -> Shift | None: ...
    async def get(self, shift_id: str, *, lock: bool = False) -> Shift | None: ...
    async def list(self, page: PageRequest, filters: ShiftFilter) -> list[Shift]: ...
    async def save(self, shift: Shift) -> None: ...
    async def add_movement(self, movement: Movement) -> Movement: ...


class Uow(Protocol):
    @property
    def shifts(self) -> ShiftRepository: ...
    def publish(self, event: object) -> None: ...


async def list_shifts(uow: Uow, page: PageRequest, filters: ShiftFilter) -> list[Shift]:
    """Newest first, or with `page.since` the change feed; each filter narrows it."""
    validate_filter(filters)
    return await uow.shifts.list(page, filters)


def _already_open() -> Conflict:
    return Conflict("a shift is already open at this register", "shift_already_open")


async def open_shift(
    uow: Uow, location_id: str, register_id: str, staff_id: str, amount: int, currency: str
) -> Shift:
    validate_open(location_id, register_id, amount, currency)
    if await uow.shifts.open_at(register_id) is not None:
        raise _already_open()
    shift = Shift(new_id("shf"), location_id, register_id, currency, amount, staff_id)
    try:
        await uow.shifts.add(shift)
    except IntegrityError:
        # Another open of the same register won the race (the one-open-shift index).
        raise _already_open() from None
    opened = await uow.shifts.get(shift.id)
    assert opened is not None
    uow.publish(ShiftOpened(opened))
    return opened


async def shift_of(uow: Uow, shift_id: str, register_id: str, *, lock: bool = False) -> Shift:
    """A register sees only its own shifts; the back office (no register) sees every one."""
    shift = await uow.shifts.get(shift_id, lock=lock)
    if shift is None or (register_id and shift.register_id != register_id):
        raise NotFound("shift", shift_id)
    return shift


async def record_movement(
    uow: Uow,
    shift_id: str,
    register_id: str,
    staff_id: str,
    kind: MovementKind,
    amount: int,
    currency: str,
    reason: str,
) -> tuple[Movement, Shift]:
    validate_movement(kind, amount, currency, reason)
    shift = await shift_of(uow, shift_id, register_id, lock=True)
    if shift.status is ShiftStatus.CLOSED:
        raise Conflict("the shift is closed", "shift_closed")
    if kind is not MovementKind.NO_SALE:
        check_currency_of(shift, currency, "amount")
    if kind is MovementKind.PAY_OUT:
        check_pay_out(shift, amount)
    if kind is MovementKind.PAY_IN:
        check_pay_in(shift, amount)
    movement = await uow.shifts.add_movement(
        Movement(new_id("drw"), shift.id, kind, amount, shift.currency, reason.strip(),
                 staff_id, register_id or shift.register_id)
    )  # fmt: skip
    after = await uow.shifts.get(shift.id)
    assert after is not None
    return movement, after


async def close_shift(
    uow: Uow, shift_id: str, register_id: str, staff_id: str, counted: int, currency: str
) -> Shift:
    raise_if(money_violations(counted, currency, "counted_cash", positive=False))
    # The row lock waits for every sale already attributed to the shift (at_register.py);
    # the totals are read after it, so they hold every one of them.
    shift = await shift_of(uow, shift_id, register_id, lock=True)
    if shift.status is ShiftStatus.CLOSED:
        # The state first: a closed shift takes no count, in its currency or another.
        raise Conflict("the shift is already closed", "shift_closed")
    check_currency_of(shift, currency, "counted_cash")
    shift.close(counted, staff_id)
    await uow.shifts.save(shift)
    uow.publish(ShiftClosed(shift))
    return shift
