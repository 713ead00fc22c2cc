"""Shift domain objects <-> pos.payment.v1 protobuf messages, and their two events."""

from __future__ import annotations

from pos.payment.v1 import settlement_pb2
from pos.payment.v1 import shifts_pb2 as S
from pos_kit.enums import ProtoEnum
from pos_kit.events import EventRegistry
from pos_payment.adapters.messages import money
from pos_payment.domain.shifts import (
    Movement,
    MovementKind,
    Shift,
    ShiftClosed,
    ShiftOpened,
    ShiftStatus,
)

SHIFT_STATUSES = ProtoEnum(ShiftStatus, S.ShiftStatus)
KINDS = ProtoEnum(MovementKind, S.DrawerMovementKind)

REGISTRY = EventRegistry()


def shift_to_proto(shift: Shift) -> S.Shift:
    c = shift.currency
    t = shift.totals
    msg = S.Shift(
        id=shift.id,
        location_id=shift.location_id,
        register_id=shift.register_id,
        status=S.ShiftStatus.ValueType(SHIFT_STATUSES.to_proto(shift.status)),
        opened_by=shift.opened_by,
        closed_by=shift.closed_by,
        opening_float=money(shift.opening_float, c),
        over_short=shift.over_short,
        report=S.ShiftReport(
            expected_cash=money(shift.expected, c),
            cash_sales=money(t.cash_sales, c),
            cash_refunds=money(t.cash_refunds, c),
            pay_ins=money(t.pay_ins, c),
            pay_outs=money(t.pay_outs, c),
            no_sale_count=t.no_sales,
            discounts=money(t.discounts, c),
            discounted_orders=t.discounted_orders,
            override_count=t.overrides,
            gift_cards_sold=money(t.gift_cards_sold, c),
            gift_cards_sold_cash=money(t.gift_cards_sold_cash, c),
            gift_cards_redeemed=money(t.gift_cards_redeemed, c),
            tenders=[
                settlement_pb2.TenderTotals(
                    name=line.tender,
                    captured=money(line.taken, line.currency or c),
                    captured_count=line.taken_count,
                    refunded=money(line.refunded, line.currency or c),
                    refunded_count=line.refunded_count,
                    net=money(line.taken - line.refunded, line.currency or c),
                )
                for line in shift.tenders
            ],
        ),
        version=shift.version,
    )
    if shift.counted_cash is not None:
        msg.counted_cash.CopyFrom(money(shift.counted_cash, c))
    if shift.opened_at is not None:
        msg.opened_at.FromDatetime(shift.opened_at)
    if shift.closed_at is not None:
        msg.closed_at.FromDatetime(shift.closed_at)
    if shift.updated_at is not None:
        msg.updated_at.FromDatetime(shift.updated_at)
    return msg


def movement_to_proto(m: Movement) -> S.DrawerMovement:
    msg = S.DrawerMovement(
        id=m.id,
        shift_id=m.shift_id,
        kind=S.DrawerMovementKind.ValueType(KINDS.to_proto(m.kind)),
        amount=money(m.amount, m.currency),
        reason=m.reason,
        staff_id=m.staff_id,
        register_id=m.register_id,
    )
    if m.created_at is not None:
        msg.created_at.FromDatetime(m.created_at)
    return msg


@REGISTRY.maps(ShiftOpened)
def _opened(event: ShiftOpened) -> S.ShiftOpened:
    return S.ShiftOpened(shift=shift_to_proto(event.shift))


@REGISTRY.maps(ShiftClosed)
def _closed(event: ShiftClosed) -> S.ShiftClosed:
    return S.ShiftClosed(shift=shift_to_proto(event.shift))
