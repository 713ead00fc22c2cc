"""Shifts and cash drawers, the payment service running for real on PostgreSQL and NATS: cash
payments and refunds taken at a register count towards the shift open there, and a close
always finds expected = float + cash sales - cash refunds + pay-ins - pay-outs, also when sales
on two registers of a location race each other and the close."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

import grpc
import psycopg
import pytest
import pytest_asyncio
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy import event
from sqlalchemy.engine import Engine

from pos.common.v1 import money_pb2
from pos.payment.v1 import (
    gift_cards_pb2,
    gift_cards_pb2_grpc,
    payment_pb2,
    payment_pb2_grpc,
    shifts_pb2,
    shifts_pb2_grpc,
)
from pos_devstack.testing import Infra, serve_in_process
from pos_kit.grpc_client import read_error
from pos_kit.ids import new_id

pytestmark = pytest.mark.asyncio(loop_scope="session")

P, S = payment_pb2, shifts_pb2


@dataclass
class Running:
    payments: payment_pb2_grpc.PaymentServiceStub
    shifts: shifts_pb2_grpc.ShiftServiceStub
    database_url: str
    cards: gift_cards_pb2_grpc.GiftCardServiceStub


@pytest_asyncio.fixture(loop_scope="session")
async def running(infra: Infra) -> AsyncIterator[Running]:
    async with serve_in_process("payment", infra, sweep_interval_seconds=3600.0) as svc:
        yield Running(
            payment_pb2_grpc.PaymentServiceStub(svc.channel),
            shifts_pb2_grpc.ShiftServiceStub(svc.channel),
            svc.database_url,
            gift_cards_pb2_grpc.GiftCardServiceStub(svc.channel),
        )


def usd(amount: int) -> money_pb2.Money:
    return money_pb2.Money(amount=amount, currency="USD")


def at(register: str = "", merchant: str = "mer_shifts", staff: str = "stf_1") -> Any:
    found = [("x-merchant-id", merchant)]
    if register:
        found += [("x-register-id", register), ("x-staff-id", staff)]
    return tuple(found)


async def open_shift(r: Running, register: str, float_: int, **kw: Any) -> Any:
    answer = await r.shifts.OpenShift(
        S.OpenShiftRequest(
            request_id=new_id("req"), location_id="loc_1", opening_float=usd(float_)
        ),
        metadata=at(register, **kw),
        timeout=10,
    )
    return answer.shift


async def cash_sale(r: Running, register: str, amount: int, **kw: Any) -> Any:
    answer = await r.payments.CreatePayment(
        P.CreatePaymentRequest(
            request_id=new_id("req"), order_id=new_id("ord"), tender_type=P.TENDER_TYPE_CASH,
            amount=usd(amount), cash_tendered=usd(amount), capture=True,
        ),
        metadata=at(register, **kw),
        timeout=10,
    )  # fmt: skip
    return answer.payment


async def card_sale(r: Running, register: str, amount: int) -> Any:
    answer = await r.payments.CreatePayment(
        P.CreatePaymentRequest(
            request_id=new_id("req"), order_id=new_id("ord"), tender_type=P.TENDER_TYPE_CARD,
            amount=usd(amount), card_token="tok_visa", capture=True,
        ),
        metadata=at(register),
        timeout=10,
    )  # fmt: skip
    return answer.payment


async def refund(r: Running, register: str, payment_id: str, amount: int) -> None:
    await r.payments.CreateRefund(
        P.CreateRefundRequest(request_id=new_id("req"), payment_id=payment_id, amount=usd(amount)),
        metadata=at(register),
        timeout=10,
    )


async def move(r: Running, register: str, shift: str, kind: int, amount: int, reason: str) -> Any:
    return await r.shifts.RecordDrawerMovement(
        S.RecordDrawerMovementRequest(
            request_id=new_id("req"), shift_id=shift, kind=kind, amount=usd(amount), reason=reason
        ),
        metadata=at(register),
        timeout=10,
    )


async def close(r: Running, register: str, shift: str, counted: int) -> Any:
    answer = await r.shifts.CloseShift(
        S.CloseShiftRequest(request_id=new_id("req"), shift_id=shift, counted_cash=usd(counted)),
        metadata=at(register),
        timeout=10,
    )
    return answer.shift


async def refused(call: Any) -> tuple[grpc.StatusCode, str]:
    with pytest.raises(grpc.aio.AioRpcError) as err:
        await call
    return err.value.code(), read_error(err.value).reason


async def test_a_shift_counts_its_registers_cash_and_closes_over_or_short(running: Running) -> None:
    r = running
    till, other = new_id("reg"), new_id("reg")
    shift = await open_shift(r, till, 10_000)
    assert (shift.status, shift.report.expected_cash.amount) == (S.SHIFT_STATUS_OPEN, 10_000)
    code = await refused(open_shift(r, till, 500))
    assert code == (grpc.StatusCode.FAILED_PRECONDITION, "shift_already_open")

    sold = await cash_sale(r, till, 1840)
    await card_sale(r, till, 5000)
    await cash_sale(r, other, 999)  # another register: not this drawer
    await cash_sale(r, "", 777)  # the back office (no register): not a drawer at all
    await refund(r, till, sold.id, 840)
    await move(r, till, shift.id, S.DRAWER_MOVEMENT_KIND_PAY_IN, 500, "change from the bank")
    await move(r, till, shift.id, S.DRAWER_MOVEMENT_KIND_PAY_OUT, 300, "window cleaner")
    opened = await move(r, till, shift.id, S.DRAWER_MOVEMENT_KIND_NO_SALE, 0, "customer change")
    assert opened.movement.staff_id == "stf_1" and opened.movement.register_id == till

    closed = await close(r, till, shift.id, 11_190)
    report = closed.report
    assert report.expected_cash.amount == 10_000 + 1840 - 840 + 500 - 300
    assert (closed.counted_cash.amount, closed.over_short) == (11_190, -10)
    assert (report.cash_sales.amount, report.cash_refunds.amount) == (1840, 840)
    assert (report.pay_ins.amount, report.pay_outs.amount, report.no_sale_count) == (500, 300, 1)
    tenders = {t.name: (t.captured.amount, t.refunded.amount) for t in report.tenders}
    assert tenders == {"cash": (1840, 840), "card": (5000, 0)}
    assert closed.status == S.SHIFT_STATUS_CLOSED and closed.closed_by == "stf_1"

    # Closed: nothing moves it any more, and a sale after it belongs to no shift.
    assert (await refused(close(r, till, shift.id, 1)))[1] == "shift_closed"
    late = move(r, till, shift.id, S.DRAWER_MOVEMENT_KIND_PAY_IN, 1, "late")
    assert (await refused(late))[1] == "shift_closed"
    await cash_sale(r, till, 100)
    again = await r.shifts.GetShift(S.GetShiftRequest(id=shift.id), metadata=at(till), timeout=10)
    assert again.shift.report.expected_cash.amount == report.expected_cash.amount
    # Another register does not see it; another merchant neither.
    hidden = r.shifts.GetShift(S.GetShiftRequest(id=shift.id), metadata=at(other), timeout=10)
    assert (await refused(hidden))[0] == grpc.StatusCode.NOT_FOUND
    foreign = r.shifts.GetShift(
        S.GetShiftRequest(id=shift.id), metadata=at(merchant="mer_else"), timeout=10
    )
    assert (await refused(foreign))[0] == grpc.StatusCode.NOT_FOUND
    # The shift's events are in the outbox, each with the whole shift.
    with psycopg.connect(r.database_url) as conn:
        types = [row[0] for row in conn.execute("SELECT event_type FROM outbox ORDER BY 1")]
    assert {"pos.payment.v1.ShiftOpened", "pos.payment.v1.ShiftClosed"} <= set(types)


async def test_closing_a_closed_shift_is_shift_closed_whatever_currency_it_names(
    running: Running,
) -> None:
    """The state conflict comes first: a closed shift closed again naming another currency
    than its own is a `shift_closed` (409 at the gateway), not a 400 on the currency a close
    could never take anyway; its count stays as it was closed."""
    r = running
    till = new_id("reg")
    shift = await open_shift(r, till, 1000)
    await close(r, till, shift.id, 1000)
    again = r.shifts.CloseShift(
        S.CloseShiftRequest(
            request_id=new_id("req"),
            shift_id=shift.id,
            counted_cash=money_pb2.Money(amount=5, currency="EUR"),
        ),
        metadata=at(till),
        timeout=10,
    )
    assert await refused(again) == (grpc.StatusCode.FAILED_PRECONDITION, "shift_closed")
    got = await r.shifts.GetShift(S.GetShiftRequest(id=shift.id), metadata=at(till), timeout=10)
    assert (got.shift.counted_cash.amount, got.shift.over_short) == (1000, 0)


async def test_bad_drawer_input_is_refused_and_writes_nothing(running: Running) -> None:
    r = running
    till = new_id("reg")
    assert (await refused(open_shift(r, "", 100)))[0] == grpc.StatusCode.INVALID_ARGUMENT
    shift = await open_shift(r, till, 100)
    for kind, amount, reason in (
        (S.DRAWER_MOVEMENT_KIND_PAY_OUT, 0, "nothing"),
        (S.DRAWER_MOVEMENT_KIND_PAY_IN, 100, "  "),
        (S.DRAWER_MOVEMENT_KIND_NO_SALE, 100, "money on a no-sale"),
        (S.DRAWER_MOVEMENT_KIND_UNSPECIFIED, 100, "what"),
    ):
        code = await refused(move(r, till, shift.id, kind, amount, reason))
        assert code[0] == grpc.StatusCode.INVALID_ARGUMENT, (kind, amount, reason)
    got = await r.shifts.GetShift(S.GetShiftRequest(id=shift.id), metadata=at(till), timeout=10)
    assert got.shift.report.expected_cash.amount == 100
    assert got.shift.report.no_sale_count == 0


# A register's work in a shift: cash sales (each maybe refunded in part), card sales,
# pay-ins and pay-outs, in any order.
OPS = st.lists(
    st.one_of(
        st.tuples(st.just("cash"), st.integers(1, 50_000), st.integers(0, 100)),
        st.tuples(st.just("card"), st.integers(1, 50_000), st.just(0)),
        st.tuples(st.just("in"), st.integers(1, 20_000), st.just(0)),
        st.tuples(st.just("out"), st.integers(1, 20_000), st.just(0)),
    ),
    max_size=8,
)


async def test_a_pay_out_takes_no_more_than_the_drawer_holds(running: Running) -> None:
    """A pay-out past the cash the drawer is expected to hold is refused (409
    `insufficient_cash_in_drawer`, naming the amount) and records nothing; up to it, it is
    made, and the drawer then holds nothing."""
    r = running
    till = new_id("reg")
    shift = await open_shift(r, till, 1000)
    await cash_sale(r, till, 500)
    with pytest.raises(grpc.aio.AioRpcError) as err:
        await move(r, till, shift.id, S.DRAWER_MOVEMENT_KIND_PAY_OUT, 1501, "supplier")
    refusal = read_error(err.value)
    assert (err.value.code(), refusal.reason) == (
        grpc.StatusCode.FAILED_PRECONDITION,
        "insufficient_cash_in_drawer",
    )
    assert refusal.metadata["expected_cash"] == "1500"
    assert [v.field for v in refusal.violations] == ["amount.amount"]
    got = await r.shifts.GetShift(S.GetShiftRequest(id=shift.id), metadata=at(till), timeout=10)
    assert (got.shift.report.pay_outs.amount, got.shift.report.expected_cash.amount) == (0, 1500)

    made = await move(r, till, shift.id, S.DRAWER_MOVEMENT_KIND_PAY_OUT, 1500, "supplier")
    assert made.shift.report.expected_cash.amount == 0
    empty = move(r, till, shift.id, S.DRAWER_MOVEMENT_KIND_PAY_OUT, 1, "one more")
    assert (await refused(empty))[1] == "insufficient_cash_in_drawer"
    # Paying in still works, and what it brought can be paid out again.
    await move(r, till, shift.id, S.DRAWER_MOVEMENT_KIND_PAY_IN, 200, "change from the bank")
    await move(r, till, shift.id, S.DRAWER_MOVEMENT_KIND_PAY_OUT, 200, "back to the bank")


async def test_pay_ins_never_take_the_drawer_past_the_money_ceiling(running: Running) -> None:
    """Each pay-in is at most 10^12 minor units, the ceiling of every amount of the API; so is
    the cash a drawer is expected to hold. A pay-in that would take it past is refused
    (INVALID_ARGUMENT naming `amount.amount`, saying how much it may still take) and records
    nothing: repeated pay-ins took the drawer past it, and its expected cash past what a
    close could count."""
    r = running
    till = new_id("reg")
    ceiling = 10**12
    shift = await open_shift(r, till, 1000)
    half = ceiling // 2
    await move(r, till, shift.id, S.DRAWER_MOVEMENT_KIND_PAY_IN, half, "from the bank")
    with pytest.raises(grpc.aio.AioRpcError) as err:
        await move(r, till, shift.id, S.DRAWER_MOVEMENT_KIND_PAY_IN, half, "from the bank")
    assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    refusal = read_error(err.value)
    assert [v.field for v in refusal.violations] == ["amount.amount"]
    assert str(half - 1000) in refusal.violations[0].description
    got = await r.shifts.GetShift(S.GetShiftRequest(id=shift.id), metadata=at(till), timeout=10)
    assert got.shift.report.pay_ins.amount == half
    assert got.shift.report.expected_cash.amount == half + 1000
    # Up to the ceiling it is taken, and the drawer then closes counted to the cent.
    made = await move(r, till, shift.id, S.DRAWER_MOVEMENT_KIND_PAY_IN, half - 1000, "bank")
    assert made.shift.report.expected_cash.amount == ceiling
    refusal_code = await refused(move(r, till, shift.id, S.DRAWER_MOVEMENT_KIND_PAY_IN, 1, "x"))
    assert refusal_code[0] == grpc.StatusCode.INVALID_ARGUMENT
    closed = await close(r, till, shift.id, ceiling)
    assert closed.over_short == 0


async def _work(
    r: Running, register: str, shift: str, ops: list[tuple[str, int, int]], float_: int
) -> int:
    """Run one register's work; what the drawer should have moved by, by the model. A pay-out
    past what the drawer holds then is refused and moves nothing."""
    moved = 0
    for kind, amount, percent_back in ops:
        if kind == "cash":
            sale = await cash_sale(r, register, amount)
            moved += amount
            back = amount * percent_back // 100
            if back:
                await refund(r, register, sale.id, back)
                moved -= back
        elif kind == "card":
            await card_sale(r, register, amount)
        elif kind == "in":
            await move(r, register, shift, S.DRAWER_MOVEMENT_KIND_PAY_IN, amount, "in")
            moved += amount
        elif amount > float_ + moved:
            out = move(r, register, shift, S.DRAWER_MOVEMENT_KIND_PAY_OUT, amount, "out")
            assert (await refused(out))[1] == "insufficient_cash_in_drawer"
        else:
            await move(r, register, shift, S.DRAWER_MOVEMENT_KIND_PAY_OUT, amount, "out")
            moved -= amount
    return moved


@settings(
    max_examples=10,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(
    floats=st.tuples(st.integers(0, 100_000), st.integers(0, 100_000)),
    work=st.tuples(OPS, OPS),
    racing=st.integers(1, 5_000),
)
async def test_expected_cash_is_float_plus_cash_in_minus_cash_out_across_two_registers(
    running: Running,
    floats: tuple[int, int],
    work: tuple[list[tuple[str, int, int]], list[tuple[str, int, int]]],
    racing: int,
) -> None:
    r = running
    tills = (new_id("reg"), new_id("reg"))
    shifts = [await open_shift(r, t, f) for t, f in zip(tills, floats, strict=True)]
    # Both registers of the location sell at the same time.
    moved = await asyncio.gather(
        *(
            _work(r, t, s.id, ops, f)
            for t, s, ops, f in zip(tills, shifts, work, floats, strict=True)
        )
    )
    # A cash sale races the first register's close: it lands in the shift or after it,
    # never half in (the close's total is what the shift holds once closed).
    sale, closed = await asyncio.gather(
        cash_sale(r, tills[0], racing), close(r, tills[0], shifts[0].id, 0)
    )
    counted_racer = await r.payments.GetPayment(
        P.GetPaymentRequest(id=sale.id), metadata=at(tills[0]), timeout=10
    )
    with psycopg.connect(r.database_url) as conn:
        row = conn.execute(
            "SELECT shift_id FROM payments WHERE id = %s", (counted_racer.payment.id,)
        ).fetchone()
    raced_in = row is not None and row[0] == shifts[0].id
    expected = floats[0] + moved[0] + (racing if raced_in else 0)
    assert closed.report.expected_cash.amount == expected
    assert closed.over_short == -expected
    counted = floats[1] + moved[1] + 7
    second = await close(r, tills[1], shifts[1].id, counted)
    assert second.report.expected_cash.amount == floats[1] + moved[1]
    assert second.over_short == counted - (floats[1] + moved[1])


async def test_a_refund_paid_in_cash_at_a_register_is_a_pay_out_of_its_shift(
    running: Running,
) -> None:
    """A return's refund the processor refused, paid in cash at a register with an open shift:
    the drawer's pay-out, with the return in its reason, once however often it is asked. Paid
    externally, or in cash away from a register, no drawer moves."""
    register = new_id("reg")
    shift = await open_shift(running, register, 10_000)
    sale = await card_sale(running, register, 4000)

    def paid(return_id: str, amount: int, tender: int, metadata: Any) -> Any:
        return running.payments.RecordOutOfBandRefund(
            P.RecordOutOfBandRefundRequest(
                request_id=new_id("req"), order_id=sale.order_id, return_id=return_id,
                amounts=[P.TenderAmount(payment_id=sale.id, amount=usd(amount))],
                tender_type=tender, reference="receipt 88",
            ),
            metadata=metadata,
            timeout=10,
        )  # fmt: skip

    cash = await paid("ret_cash", 1500, P.TENDER_TYPE_CASH, at(register))
    assert cash.record.shift_id == shift.id and cash.record.drawer_movement_id
    again = await paid("ret_cash", 1500, P.TENDER_TYPE_CASH, at(register))
    assert again.record == cash.record
    await paid("ret_transfer", 1000, P.TENDER_TYPE_EXTERNAL, at(register))
    await paid("ret_office", 500, P.TENDER_TYPE_CASH, at())

    got = await running.shifts.GetShift(
        S.GetShiftRequest(id=shift.id), metadata=at(register), timeout=10
    )
    report = got.shift.report
    assert report.pay_outs.amount == 1500
    assert report.expected_cash.amount == 10_000 - 1500
    with psycopg.connect(running.database_url) as conn:
        rows = conn.execute(
            "SELECT id, kind, amount, reason, staff_id FROM drawer_movements WHERE shift_id = %s",
            (shift.id,),
        ).fetchall()
    assert [(r[0], r[1], r[2], r[4]) for r in rows] == [
        (cash.record.drawer_movement_id, "pay_out", 1500, "stf_1")
    ]
    assert "ret_cash" in rows[0][3]
    closed = await close(running, register, shift.id, 8500)
    assert closed.over_short == 0


async def test_a_cash_refund_through_the_payments_api_needs_a_registers_open_shift(
    running: Running,
) -> None:
    """A refund asked through the payments API (`cash_needs_open_shift`, as the gateway asks
    it) that gives cash back comes out of the asking register's drawer. From the back office,
    or at a register with no shift open, it would count in no shift: refused before anything
    is written (409 `cash_refund_needs_open_shift` naming `amount`, or the named tender's
    `amounts[i].payment_id`). At a register with a shift open it is made and that shift counts
    it. A card refund needs no drawer; a return's refund (the flag unset) is not refused."""
    r = running
    till, bare = new_id("reg"), new_id("reg")
    shift = await open_shift(r, till, 10_000)
    sold = await cash_sale(r, till, 3000)
    card = await card_sale(r, till, 2000)

    def asked(register: str, **fields: Any) -> Any:
        request = P.CreateRefundRequest(request_id=new_id("req"), cash_needs_open_shift=True)
        for name, value in fields.items():
            if name == "amounts":
                request.amounts.extend(value)
            elif name == "amount":
                request.amount.CopyFrom(value)
            else:
                setattr(request, name, value)
        return r.payments.CreateRefund(request, metadata=at(register), timeout=10)

    async def problem(call: Any) -> Any:
        with pytest.raises(grpc.aio.AioRpcError) as err:
            await call
        assert err.value.code() == grpc.StatusCode.FAILED_PRECONDITION
        found = read_error(err.value)
        assert found.reason == "cash_refund_needs_open_shift"
        return found

    back_office = await problem(asked("", payment_id=sold.id, amount=usd(500)))
    assert [v.field for v in back_office.violations] == ["amount"]
    assert sold.id in back_office.violations[0].description
    named = P.TenderAmount(payment_id=sold.id, amount=usd(500))
    by_order = await problem(asked("", order_id=sold.order_id, amounts=[named]))
    assert [v.field for v in by_order.violations] == ["amounts[0].payment_id"]
    no_shift = await problem(asked(bare, payment_id=sold.id))
    assert bare in no_shift.violations[0].description
    listed = await r.payments.ListRefunds(
        P.ListRefundsRequest(payment_id=sold.id), metadata=at(), timeout=10
    )
    assert list(listed.refunds) == []
    got = await r.payments.GetPayment(P.GetPaymentRequest(id=sold.id), metadata=at(), timeout=10)
    assert got.payment.refunded.amount == 0

    # A card goes back to the card: no drawer needed.
    carded = await asked("", payment_id=card.id, amount=usd(500))
    assert [x.status for x in carded.refunds] == [P.REFUND_STATUS_SUCCEEDED]
    # At the register with its shift open: made, and counted in that shift.
    made = await asked(till, payment_id=sold.id, amount=usd(500))
    assert [x.amount.amount for x in made.refunds] == [500]
    # A return's refund (the order service's, the flag unset) was checked when it was taken.
    await refund(r, "", sold.id, 200)
    report = (
        await r.shifts.GetShift(S.GetShiftRequest(id=shift.id), metadata=at(till), timeout=10)
    ).shift.report
    assert report.cash_refunds.amount == 500
    assert report.expected_cash.amount == 10_000 + 3000 - 500


async def test_a_closed_shifts_report_does_not_move_with_later_captures_and_refunds(
    running: Running,
) -> None:
    """A card authorised at the till and captured in parts (a pickup beside in-store goods,
    a split shipment): each capture counts in the shift open at the payment's register when
    it is captured. The closed shift's report stays as it was closed; a capture after the
    close counts in the register's next shift (or in none while no shift is open there),
    and a refund, a void or another capture of it never rewrites the closed one."""
    r = running
    till = new_id("reg")
    first = await open_shift(r, till, 1000)
    authorised = await r.payments.CreatePayment(
        P.CreatePaymentRequest(
            request_id=new_id("req"), order_id=new_id("ord"), tender_type=P.TENDER_TYPE_CARD,
            amount=usd(9000), card_token="tok_visa", capture=False,
        ),
        metadata=at(till),
        timeout=10,
    )  # fmt: skip
    payment = authorised.payment.id

    async def capture(amount: int, register: str = "") -> None:
        await r.payments.CapturePayment(
            P.CapturePaymentRequest(request_id=new_id("req"), payment_id=payment,
                                    amount=usd(amount)),
            metadata=at(register),
            timeout=10,
        )  # fmt: skip

    async def tenders(shift: str) -> dict[str, tuple[int, int, int, int]]:
        got = await r.shifts.GetShift(S.GetShiftRequest(id=shift), metadata=at(), timeout=10)
        return {
            t.name: (t.captured.amount, t.captured_count, t.refunded.amount, t.refunded_count)
            for t in got.shift.report.tenders
        }

    await capture(2000)  # the in-store goods, at the till
    closed = await close(r, till, first.id, 1000)
    at_close = {t.name: (t.captured.amount, t.refunded.amount) for t in closed.report.tenders}
    assert at_close == {"card": (2000, 0)}
    assert await tenders(first.id) == {"card": (2000, 1, 0, 0)}

    await capture(3000)  # handed over from the back office while no shift is open there
    assert await tenders(first.id) == {"card": (2000, 1, 0, 0)}
    second = await open_shift(r, till, 1000)
    await capture(1000, till)  # handed over at the till during its next shift
    await refund(r, "", payment, 500)  # given back from the back office: in no drawer
    assert await tenders(first.id) == {"card": (2000, 1, 0, 0)}
    assert await tenders(second.id) == {"card": (1000, 1, 0, 0)}
    await refund(r, till, payment, 700)
    await r.payments.VoidPayment(
        P.VoidPaymentRequest(
            request_id=new_id("req"), payment_id=payment, release_uncaptured_rest=True
        ),
        metadata=at(till),
        timeout=10,
    )
    assert await tenders(first.id) == {"card": (2000, 1, 0, 0)}
    assert await tenders(second.id) == {"card": (1000, 1, 700, 1)}
    done = await close(r, till, second.id, 1000)
    assert done.over_short == 0


async def test_a_refund_of_a_sale_from_a_closed_shift_counts_in_the_shift_giving_it_back(
    running: Running,
) -> None:
    """Tenders of every kind taken in one shift (a card with a tip, a gift card, cash) and
    given back in part in the register's next shift: the refunds count in the shift that
    gave them back, the cash one out of its drawer, and the closed shift's report stays as it
    was closed, the tip in its card total."""
    r = running
    till = new_id("reg")
    first = await open_shift(r, till, 500)

    async def sale(tender: int, **fields: Any) -> Any:
        answer = await r.payments.CreatePayment(
            P.CreatePaymentRequest(request_id=new_id("req"), order_id=new_id("ord"),
                                   tender_type=tender, capture=True, **fields),
            metadata=at(till),
            timeout=10,
        )  # fmt: skip
        return answer.payment

    card = await sale(P.TENDER_TYPE_CARD, amount=usd(5000), tip=usd(500), card_token="tok_visa")
    gift = await sale(P.TENDER_TYPE_GIFT_CARD, amount=usd(2000), gift_card_code="gc_probe")
    cash = await cash_sale(r, till, 3000)
    closed = await close(r, till, first.id, 3500)
    as_closed = closed.report
    tenders = {t.name: (t.captured.amount, t.refunded.amount) for t in as_closed.tenders}
    assert tenders == {"card": (5500, 0), "gift_card": (2000, 0), "cash": (3000, 0)}

    second = await open_shift(r, till, 500)
    for paid, amount in ((card, 700), (gift, 500), (cash, 1000)):
        await refund(r, till, paid.id, amount)
    got = await r.shifts.GetShift(S.GetShiftRequest(id=first.id), metadata=at(till), timeout=10)
    assert got.shift.report == as_closed
    done = await close(r, till, second.id, 0)
    tenders = {t.name: (t.captured.amount, t.refunded.amount) for t in done.report.tenders}
    assert tenders == {"card": (0, 700), "gift_card": (0, 500), "cash": (0, 1000)}
    assert (done.report.expected_cash.amount, done.over_short) == (500 - 1000, 500)


async def test_cash_in_another_currency_than_the_open_shifts_is_refused_and_cards_are_listed_apart(
    running: Running,
) -> None:
    """A drawer holds its shift's currency only: a cash payment, or a cash refund, at a
    register whose open shift counts another currency is refused (409
    `shift_currency_mismatch` naming `amount.currency`), and nothing is written. A card taken
    there in another currency moves no drawer: the report lists it on a tender line of its own
    currency, never in the shift's totals and never dropped."""
    r = running
    till = new_id("reg")
    elsewhere = await cash_sale(r, "", 2500)  # a USD cash sale from the back office
    shift = (
        await r.shifts.OpenShift(
            S.OpenShiftRequest(
                request_id=new_id("req"), location_id="loc_1",
                opening_float=money_pb2.Money(amount=10_000, currency="EUR"),
            ),
            metadata=at(till),
            timeout=10,
        )
    ).shift  # fmt: skip

    order = new_id("ord")
    with pytest.raises(grpc.aio.AioRpcError) as err:
        await r.payments.CreatePayment(
            P.CreatePaymentRequest(
                request_id=new_id("req"), order_id=order, tender_type=P.TENDER_TYPE_CASH,
                amount=usd(1000), cash_tendered=usd(1000), capture=True,
            ),
            metadata=at(till),
            timeout=10,
        )  # fmt: skip
    refusal = read_error(err.value)
    assert (err.value.code(), refusal.reason) == (
        grpc.StatusCode.FAILED_PRECONDITION,
        "shift_currency_mismatch",
    )
    assert [v.field for v in refusal.violations] == ["amount.currency"]
    assert refusal.metadata["shift_currency"] == "EUR"
    listed = r.payments.ListPayments(
        P.ListPaymentsRequest(order_id=order), metadata=at(), timeout=10
    )
    assert (await refused(listed))[0] == grpc.StatusCode.NOT_FOUND  # no payment of it

    for flagged in (True, False):
        with pytest.raises(grpc.aio.AioRpcError) as err:
            await r.payments.CreateRefund(
                P.CreateRefundRequest(
                    request_id=new_id("req"), payment_id=elsewhere.id, amount=usd(500),
                    cash_needs_open_shift=flagged,
                ),
                metadata=at(till),
                timeout=10,
            )  # fmt: skip
        refusal = read_error(err.value)
        assert (err.value.code(), refusal.reason) == (
            grpc.StatusCode.FAILED_PRECONDITION,
            "shift_currency_mismatch",
        )
        assert [v.field for v in refusal.violations] == ["amount.currency"]
    got = await r.payments.GetPayment(
        P.GetPaymentRequest(id=elsewhere.id), metadata=at(), timeout=10
    )
    assert got.payment.refunded.amount == 0

    card = await card_sale(r, till, 4000)
    await refund(r, till, card.id, 1000)
    closed = (
        await r.shifts.CloseShift(
            S.CloseShiftRequest(
                request_id=new_id("req"), shift_id=shift.id,
                counted_cash=money_pb2.Money(amount=10_000, currency="EUR"),
            ),
            metadata=at(till),
            timeout=10,
        )
    ).shift  # fmt: skip
    report = closed.report
    assert (report.expected_cash.amount, report.expected_cash.currency) == (10_000, "EUR")
    assert (report.cash_sales.amount, report.cash_refunds.amount) == (0, 0)
    lines = [
        (t.name, t.captured.currency, t.captured.amount, t.refunded.amount, t.net.amount)
        for t in report.tenders
    ]
    assert lines == [("card", "USD", 4000, 1000, 3000)]


async def test_gift_card_value_moved_at_a_register_outside_a_payment_counts_in_its_shift(
    running: Running,
) -> None:
    """A card sold on its own and loads at a register count in its open shift as gift cards
    sold, those paid in cash also in the expected cash; redemptions less refunds to cards as
    gift cards redeemed. Cash paid with no shift open (the back office, a bare register) is
    refused (409 `cash_needs_open_shift` naming `paid_in_cash`) and writes nothing; store
    credit is no sale; value moved from the back office is in no shift."""
    r = running
    G = gift_cards_pb2
    till, bare = new_id("reg"), new_id("reg")
    shift = await open_shift(r, till, 1000)

    async def issue(register: str, amount: int, **fields: Any) -> Any:
        return await r.cards.IssueGiftCard(
            G.IssueGiftCardRequest(request_id=new_id("req"), amount=usd(amount), **fields),
            metadata=at(register),
            timeout=10,
        )

    async def load(register: str, card: str, amount: int, cash: bool) -> Any:
        return await r.cards.LoadGiftCard(
            G.LoadGiftCardRequest(
                request_id=new_id("req"), id=card, amount=usd(amount), paid_in_cash=cash
            ),
            metadata=at(register),
            timeout=10,
        )

    sold = await issue(till, 5000, paid_in_cash=True)
    await load(till, sold.gift_card.id, 2000, False)
    await load(till, sold.gift_card.id, 1000, True)
    await r.cards.RedeemGiftCard(
        G.RedeemGiftCardRequest(request_id=new_id("req"), code=sold.code, amount=usd(1500)),
        metadata=at(till),
        timeout=10,
    )
    await r.cards.RefundToGiftCard(
        G.RefundToGiftCardRequest(request_id=new_id("req"), id=sold.gift_card.id,
                                  amount=usd(500)),
        metadata=at(till),
        timeout=10,
    )  # fmt: skip
    await issue(till, 3000, reason="store_credit")  # no sale: not in the shift
    await load("", sold.gift_card.id, 700, False)  # the back office: in no shift
    for register in ("", bare):
        with pytest.raises(grpc.aio.AioRpcError) as err:
            await issue(register, 900, paid_in_cash=True)
        refusal = read_error(err.value)
        assert (err.value.code(), refusal.reason) == (
            grpc.StatusCode.FAILED_PRECONDITION,
            "cash_needs_open_shift",
        )
        assert [v.field for v in refusal.violations] == ["paid_in_cash"]
        with pytest.raises(grpc.aio.AioRpcError) as err:
            await load(register, sold.gift_card.id, 900, True)
        assert read_error(err.value).reason == "cash_needs_open_shift"
    card = await r.cards.GetGiftCard(
        G.GetGiftCardRequest(id=sold.gift_card.id), metadata=at(), timeout=10
    )
    assert card.gift_card.balance.amount == 5000 + 2000 + 1000 - 1500 + 500 + 700

    got = await r.shifts.GetShift(S.GetShiftRequest(id=shift.id), metadata=at(till), timeout=10)
    report = got.shift.report
    assert report.gift_cards_sold.amount == 5000 + 2000 + 1000
    assert report.gift_cards_sold_cash.amount == 5000 + 1000
    assert report.gift_cards_redeemed.amount == 1500 - 500
    assert report.expected_cash.amount == 1000 + 6000
    closed = await close(r, till, shift.id, 7000)
    assert (closed.report.expected_cash.amount, closed.over_short) == (7000, 0)


async def test_a_page_of_shifts_is_reported_in_as_many_queries_as_one_shift(
    running: Running,
) -> None:
    """ListShifts reads the reports of a whole page in a fixed number of queries: a page of
    six shifts (each with cash, a card and a drawer movement) costs what a page of one does,
    and each report is the one GetShift answers."""
    r = running
    few, many = new_id("reg"), new_id("reg")
    for register, count in ((few, 1), (many, 6)):
        for _ in range(count):
            shift = await open_shift(r, register, 1000)
            sale = await cash_sale(r, register, 500)
            await card_sale(r, register, 700)
            await refund(r, register, sale.id, 100)
            await move(r, register, shift.id, S.DRAWER_MOVEMENT_KIND_PAY_IN, 50, "change")
            await close(r, register, shift.id, 1450)

    statements: list[str] = []

    def counted(conn: Any, cursor: Any, statement: str, *args: Any) -> None:
        statements.append(statement)

    async def listed(register: str) -> tuple[int, Any]:
        statements.clear()
        # A listener sends every statement SQLAlchemy's way (pos_kit.direct), where it is
        # seen; the class keeps that flag after the listener is removed, so it is put back,
        # or every later engine of this process would leave the driver's way too.
        had_events = Engine._has_events
        event.listen(Engine, "before_cursor_execute", counted)
        try:
            answer = await r.shifts.ListShifts(
                S.ListShiftsRequest(page_size=50, register_id=register), metadata=at(), timeout=10
            )
        finally:
            event.remove(Engine, "before_cursor_execute", counted)
            Engine._has_events = had_events
        return len(statements), answer.shifts

    one, (only,) = await listed(few)
    six, page = await listed(many)
    assert len(page) == 6
    assert six == one, (one, six)
    for shift in (only, *page):
        got = await r.shifts.GetShift(S.GetShiftRequest(id=shift.id), metadata=at(), timeout=10)
        assert got.shift.report == shift.report
        assert shift.report.expected_cash.amount == 1000 + 500 - 100 + 50
