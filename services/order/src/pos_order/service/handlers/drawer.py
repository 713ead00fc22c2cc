"""Cash at a register: the shift a cash tender or a cash refund counts in."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence

from pos_kit.errors import Conflict, DomainError, ErrorKind, FieldViolation
from pos_order.domain.model import Order, Tender
from pos_order.domain.returns import refuse_cancel_cash_without_drawer
from pos_order.service.handlers.new_order import at_register
from pos_order.service.ports import CheckoutPorts

# Cash at a register with no shift open: refused here, or by the payment service as it takes
# the cash (the shift closed after it was read here).
CASH_NEEDS_SHIFT = "cash_needs_open_shift"

# How long a cash sale at a register waits to learn whether a shift is open there.
SHIFT_READ_SECONDS = 1.0


async def drawer_open_for_cash(
    ports: CheckoutPorts, tender: object, fields: Sequence[str] = ("tender_type",)
) -> None:
    """Cash taken at a register goes in its drawer, which the shift open there counts: with
    none open it would count in no shift (a gift card sold for cash there, or cash given
    back, is refused the same way). A cash tender at a register with no shift open is a 409
    `cash_needs_open_shift` naming `tender_type`, before anything is saved or charged. From
    the back office (no register) cash is taken as before; cards need no shift. While the
    payment service is away the shift cannot be read: the cash sale goes on, as one does then
    (recorded later, in the shift open at the register when it is). `fields`: the request's
    fields naming the cash tender (an exchange's `tenders[i].tender_type`)."""
    register_id, _ = at_register()
    if tender is not Tender.CASH or not register_id:
        return
    try:
        # A deadline of its own: a payment service that takes the call and never answers
        # must leave the sale its own call's time (the till hears of it before the gateway's
        # deadline), not spend it here.
        shift = await asyncio.wait_for(
            ports.payments.open_shift_at(register_id), SHIFT_READ_SECONDS
        )
    except TimeoutError:
        return
    except DomainError as exc:
        if exc.kind is ErrorKind.UNAVAILABLE:
            return
        raise
    if shift:
        return
    refused = Conflict(
        f"cash goes in the drawer of register {register_id}, which has no shift open: open one "
        "first, or take another tender",
        CASH_NEEDS_SHIFT,
        {"register_id": register_id},
    )
    refused.violations = [
        FieldViolation(f, "cash needs a shift open at the register") for f in fields
    ]
    raise refused


async def shift_for_cash(ports: CheckoutPorts, order: Order) -> str:
    """The shift open at the asking register, read before a cancel's claim with no connection
    held, when the order took cash (a cancel may give it back); "" otherwise."""
    register_id, _ = at_register()
    if not register_id or not any(t.tender is Tender.CASH for t in order.saga.tenders):
        return ""
    return await ports.payments.open_shift_at(register_id)


def cancelled_at_drawer(order: Order, key: str, to_cash: list[str], shift_id: str) -> None:
    """A cancel a caller asks, being marked (`key`: the fulfilment, "" for the whole order):
    cash it gives back leaves a drawer, so it follows the returns' rule (refused from the back
    office or at a register with no shift open, before anything is written), and the
    register and member it is asked at are kept with the order, so its refunds are asked as
    from there whoever finishes them (`saga.giving_back_at`): the cash counts in that
    register's open shift."""
    register_id, staff_id = at_register()
    refuse_cancel_cash_without_drawer(
        to_cash, "fulfillment_id" if key else "order_id", register_id, shift_id
    )
    order.saga.cancelled_at[key] = (register_id, staff_id)
