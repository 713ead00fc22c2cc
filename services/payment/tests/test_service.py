"""The payment service running for real, against PostgreSQL and NATS: authorise, capture in
parts, void, refunds, split tender, pending payments and the reconciler, and never a duplicate
charge."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import UTC, timedelta
from typing import Any

import grpc
import psycopg
import pytest
import pytest_asyncio

from pos.common.v1 import money_pb2
from pos.payment.v1 import events_pb2, payment_pb2, payment_pb2_grpc, shifts_pb2, shifts_pb2_grpc
from pos_devstack.testing import TEST_CARD_NUMBERS, Infra, serve_in_process
from pos_kit.db import make_engine
from pos_kit.grpc_client import read_error
from pos_kit.ids import new_id
from pos_kit.money import Money
from pos_payment import bootstrap
from pos_payment.adapters.repository import open_work
from pos_payment.adapters.sandbox import CARD_TOKENS, SandboxProcessor, SandboxReader, Script
from pos_payment.domain.model import ChargeRequest, Outcome, TenderType, validate_charge
from pos_payment.domain.processor import ProcessorUnavailable
from pos_payment.service import handlers

pytestmark = pytest.mark.asyncio(loop_scope="session")

USD = "USD"
P = payment_pb2


@dataclass
class Running:
    stub: payment_pb2_grpc.PaymentServiceStub
    database_url: str
    runtime: Any
    settings: bootstrap.Settings
    shifts: shifts_pb2_grpc.ShiftServiceStub

    def sql(self, query: str) -> list[tuple[Any, ...]]:
        with psycopg.connect(self.database_url) as conn:
            return conn.execute(query).fetchall()

    def calls(self, key: str) -> int:
        """How many times the sandbox processor was asked under this idempotency key."""
        rows = self.sql(f"SELECT calls FROM sandbox_processor_calls WHERE key = '{key}'")  # noqa: S608
        return int(rows[0][0]) if rows else 0

    async def sweep(self) -> None:
        await bootstrap.sweeper_for(self.runtime, self.settings).sweep()


@pytest_asyncio.fixture(loop_scope="session")
async def running(infra: Infra) -> AsyncIterator[Running]:
    async with _serve(infra, reader_delay=0.0) as service:
        yield service


@asynccontextmanager
async def _serve(infra: Infra, reader_delay: float) -> AsyncIterator[Running]:
    # The reconciler may look at pending work at once, and the background sweep stays out of
    # the way (the tests run the sweep themselves, when they need it; its one pass at start
    # may still come late, after a test has begun).
    overrides: dict[str, Any] = {
        "reconcile_after_seconds": 0.0,
        "sweep_interval_seconds": 3600.0,
        "sandbox_reader_delay_seconds": reader_delay,
    }
    async with serve_in_process("payment", infra, **overrides) as svc:
        settings = bootstrap.Settings(
            database_url=svc.database_url,
            nats_url=infra.nats_url,
            **overrides,
        )
        yield Running(
            payment_pb2_grpc.PaymentServiceStub(svc.channel),
            svc.database_url,
            svc.runtime,
            settings,
            shifts_pb2_grpc.ShiftServiceStub(svc.channel),
        )


def md(merchant: str = "mer_a") -> tuple[tuple[str, str], ...]:
    return (("x-merchant-id", merchant),)


def usd(amount: int) -> money_pb2.Money:
    return money_pb2.Money(amount=amount, currency=USD)


def card(rid: str, order: str, amount: int, source: str = "tok_visa", capture: bool = True) -> Any:
    return P.CreatePaymentRequest(
        request_id=rid,
        order_id=order,
        tender_type=P.TENDER_TYPE_CARD,
        amount=usd(amount),
        card_token=source,
        capture=capture,
    )


async def pay(running: Running, request: Any, merchant: str = "mer_a") -> Any:
    answer = await running.stub.CreatePayment(request, metadata=md(merchant), timeout=10)
    return answer.payment


async def code_of(call: Any) -> tuple[grpc.StatusCode, str]:
    with pytest.raises(grpc.aio.AioRpcError) as err:
        await call
    return err.value.code(), read_error(err.value).reason


def rid() -> str:
    return new_id("req")


# --- authorise, capture, void ------------------------------------------------------------------


async def test_an_in_store_card_sale_is_captured_at_once(running: Running) -> None:
    payment = await pay(running, card(rid(), "ord_store", 6040, "tok_mastercard"))
    assert payment.status == P.PAYMENT_STATUS_CAPTURED
    assert (payment.authorized.amount, payment.captured.amount) == (6040, 6040)
    assert payment.card_summary == "mastercard •••• 4444"
    assert (payment.card_brand, payment.card_last4) == ("mastercard", "4444")


async def test_authorise_then_capture_in_parts_then_void_the_rest(running: Running) -> None:
    payment = await pay(running, card(rid(), "ord_remote", 10_000, capture=False))
    assert payment.status == P.PAYMENT_STATUS_AUTHORIZED
    assert payment.HasField("expires_at")
    first = await running.stub.CapturePayment(
        P.CapturePaymentRequest(request_id=rid(), payment_id=payment.id, amount=usd(3000)),
        metadata=md(),
        timeout=10,
    )
    assert first.status == P.OPERATION_STATUS_SUCCEEDED
    assert first.payment.status == P.PAYMENT_STATUS_CAPTURED
    assert first.payment.captured.amount == 3000
    second = await running.stub.CapturePayment(
        P.CapturePaymentRequest(request_id=rid(), payment_id=payment.id, amount=usd(2500)),
        metadata=md(),
        timeout=10,
    )
    assert second.payment.captured.amount == 5500
    # More than is left of the authorisation: a clear refusal, nothing captured.
    code, reason = await code_of(
        running.stub.CapturePayment(
            P.CapturePaymentRequest(request_id=rid(), payment_id=payment.id, amount=usd(4501)),
            metadata=md(),
            timeout=10,
        )
    )
    assert (code, reason) == (grpc.StatusCode.FAILED_PRECONDITION, "amount_exceeds_authorization")
    voided = await running.stub.VoidPayment(
        P.VoidPaymentRequest(request_id=rid(), payment_id=payment.id, release_uncaptured_rest=True),
        metadata=md(),
        timeout=10,
    )
    assert voided.payment.voided.amount == 4500
    assert voided.payment.status == P.PAYMENT_STATUS_CAPTURED  # what was captured stays so
    code, reason = await code_of(
        running.stub.CapturePayment(
            P.CapturePaymentRequest(request_id=rid(), payment_id=payment.id),
            metadata=md(),
            timeout=10,
        )
    )
    assert code == grpc.StatusCode.FAILED_PRECONDITION


async def test_a_captured_payment_is_not_voided_unless_its_rest_is_asked_for(
    running: Running,
) -> None:
    """A void of a payment with anything captured, in full or in part, is refused
    (`payment_captured`) by the payment service itself, under the payment's lock in the
    transaction that would void it, and changes nothing: no void asked of the processor, no
    operation kept. The callers that release the rest on purpose (an order ending, the expiry
    sweep) say so (`release_uncaptured_rest`)."""
    part = await pay(running, card(rid(), "ord_part_void", 5000, capture=False))
    await running.stub.CapturePayment(
        P.CapturePaymentRequest(request_id=rid(), payment_id=part.id, amount=usd(2000)),
        metadata=md(),
        timeout=10,
    )
    whole = await pay(running, card(rid(), "ord_whole_void", 3000))
    for payment in (part, whole):
        before = (
            await running.stub.GetPayment(
                P.GetPaymentRequest(id=payment.id), metadata=md(), timeout=10
            )
        ).payment
        key = rid()
        code, reason = await code_of(
            running.stub.VoidPayment(
                P.VoidPaymentRequest(request_id=key, payment_id=payment.id),
                metadata=md(),
                timeout=10,
            )
        )
        assert (code, reason) == (grpc.StatusCode.FAILED_PRECONDITION, "payment_captured")
        after = (
            await running.stub.GetPayment(
                P.GetPaymentRequest(id=payment.id), metadata=md(), timeout=10
            )
        ).payment
        assert after == before
        assert (after.status, after.voided.amount) == (P.PAYMENT_STATUS_CAPTURED, 0)
        assert running.calls(f"mer_a/{key}") == 0
        kept = f"SELECT count(*) FROM payment_operations WHERE request_key = 'mer_a/{key}'"  # noqa: S608
        assert running.sql(kept) == [(0,)]
    # The rest of the one captured in part, asked for on purpose: released, the capture kept.
    rest = await running.stub.VoidPayment(
        P.VoidPaymentRequest(request_id=rid(), payment_id=part.id, release_uncaptured_rest=True),
        metadata=md(),
        timeout=10,
    )
    assert (rest.payment.status, rest.payment.captured.amount, rest.payment.voided.amount) == (
        P.PAYMENT_STATUS_CAPTURED,
        2000,
        3000,
    )


async def test_a_voided_authorisation_is_final(running: Running) -> None:
    payment = await pay(running, card(rid(), "ord_void", 2000, capture=False))
    voided = await running.stub.VoidPayment(
        P.VoidPaymentRequest(request_id=rid(), payment_id=payment.id), metadata=md(), timeout=10
    )
    assert voided.payment.status == P.PAYMENT_STATUS_VOIDED
    for call in (
        running.stub.CapturePayment(
            P.CapturePaymentRequest(request_id=rid(), payment_id=payment.id),
            metadata=md(),
            timeout=10,
        ),
        running.stub.VoidPayment(
            P.VoidPaymentRequest(request_id=rid(), payment_id=payment.id), metadata=md(), timeout=10
        ),
        running.stub.CreateRefund(
            P.CreateRefundRequest(request_id=rid(), payment_id=payment.id),
            metadata=md(),
            timeout=10,
        ),
    ):
        code, _ = await code_of(call)
        assert code == grpc.StatusCode.FAILED_PRECONDITION


async def test_a_decline_is_a_failed_payment_with_its_code(running: Running) -> None:
    payment = await pay(running, card(rid(), "ord_decl", 500, "tok_insufficient_funds"))
    assert payment.status == P.PAYMENT_STATUS_FAILED
    assert payment.decline_code == "insufficient_funds"
    assert payment.decline_reason


async def test_the_sandbox_empty_gift_card_is_refused_as_a_real_one_is(running: Running) -> None:
    """`gc_empty` holds nothing: refused `insufficient_funds` naming the amount with what it
    holds, as a real card holding too little is, not declined; no payment is kept."""
    before = running.sql("SELECT count(*) FROM payments")[0][0]
    request = P.CreatePaymentRequest(
        request_id=rid(),
        order_id="ord_empty_card",
        tender_type=P.TENDER_TYPE_GIFT_CARD,
        amount=usd(500),
        gift_card_code="gc_empty",
        capture=True,
    )
    with pytest.raises(grpc.aio.AioRpcError) as err:
        await running.stub.CreatePayment(request, metadata=md(), timeout=10)
    refused = read_error(err.value)
    assert (err.value.code(), refused.reason) == (
        grpc.StatusCode.FAILED_PRECONDITION,
        "insufficient_funds",
    )
    assert [(v.field, v.description) for v in refused.violations] == [
        ("amount.amount", "must be at most 0, what the gift card holds")
    ]
    assert running.sql("SELECT count(*) FROM payments")[0][0] == before


async def test_the_in_store_rpc_the_order_service_calls_still_answers(running: Running) -> None:
    request = P.AuthorizeAndCaptureRequest(
        request_id=rid(),
        order_id="ord_legacy",
        tender_type=P.TENDER_TYPE_CASH,
        amount=usd(1840),
        cash_tendered=usd(2000),
    )
    first = await running.stub.AuthorizeAndCapture(request, metadata=md(), timeout=10)
    again = await running.stub.AuthorizeAndCapture(request, metadata=md(), timeout=10)
    assert again == first
    assert first.payment.status == P.PAYMENT_STATUS_CAPTURED
    assert first.payment.change_due.amount == 160


# --- never a duplicate charge --------------------------------------------------------------


async def test_a_thousand_replays_and_two_hundred_concurrent_duplicates_charge_once(
    running: Running,
) -> None:
    replayed = card("r-replay", "ord_replay", 1234)
    first = await pay(running, replayed)
    for _ in range(1000):
        assert await pay(running, replayed) == first
    assert running.calls("mer_a/r-replay") == 1

    concurrent = card("r-concurrent", "ord_concurrent", 4321)
    answers = await asyncio.gather(
        *(running.stub.CreatePayment(concurrent, metadata=md(), timeout=30) for _ in range(200)),
        return_exceptions=True,
    )
    ok = [a.payment for a in answers if not isinstance(a, BaseException)]
    refused = [a for a in answers if isinstance(a, BaseException)]
    # Duplicates that meet the first still in flight are told to retry; none charges again.
    assert all(isinstance(e, grpc.aio.AioRpcError) for e in refused)
    assert all(read_error(e).reason == "request_in_progress" for e in refused)
    assert ok and all(p == ok[0] for p in ok)
    assert running.calls("mer_a/r-concurrent") == 1
    assert await pay(running, concurrent) == ok[0]
    count = running.sql("SELECT count(*) FROM payments WHERE order_id = 'ord_concurrent'")
    assert count == [(1,)]


# --- refunds -------------------------------------------------------------------------------


async def test_refunds_never_exceed_what_was_captured_even_when_concurrent(
    running: Running,
) -> None:
    payment = await pay(running, card(rid(), "ord_refunds", 1000))
    answers = await asyncio.gather(
        *(
            running.stub.CreateRefund(
                P.CreateRefundRequest(request_id=rid(), payment_id=payment.id, amount=usd(30)),
                metadata=md(),
                timeout=30,
            )
            for _ in range(100)
        ),
        return_exceptions=True,
    )
    refunded = [a.refunds[0] for a in answers if not isinstance(a, BaseException)]
    refused = [a for a in answers if isinstance(a, BaseException)]
    assert all(r.status == P.REFUND_STATUS_SUCCEEDED for r in refunded)
    assert sum(r.amount.amount for r in refunded) <= 1000
    assert len(refunded) == 33  # 33 x 30 = 990; the 34th would pass 1000
    assert {read_error(e).reason for e in refused} == {"amount_exceeds_refundable"}
    got = await running.stub.GetPayment(
        P.GetPaymentRequest(id=payment.id), metadata=md(), timeout=10
    )
    assert got.payment.refunded.amount == 990


async def test_money_set_aside_for_an_exchange_is_refunded_only_by_a_return_of_it(
    running: Running,
) -> None:
    """3,000 of a 5,000 sale pays for an exchange's new order. No refund of the sale takes it
    (a 409 naming `amount`, refunding nothing): only one naming the new order draws on it, and
    a failed one of those would put it back. Setting aside more than is left is refused whole;
    a credit released before it was set aside can no longer be."""
    order = f"ord_{rid()}"
    visa = await pay(running, card(rid(), order, 5000))

    def credit(amount: int, new: str, request_id: str = "") -> Any:
        return running.stub.CreditExchange(
            P.CreditExchangeRequest(
                request_id=request_id or rid(),
                order_id=order,
                exchange_order_id=new,
                amounts=[P.TenderAmount(payment_id=visa.id, amount=usd(amount))],
            ),
            metadata=md(),
            timeout=10,
        )

    def refund(amount: int | None = None, **extra: Any) -> Any:
        request = P.CreateRefundRequest(request_id=rid(), order_id=order, **extra)
        if amount is not None:
            request.amount.CopyFrom(usd(amount))
        return running.stub.CreateRefund(request, metadata=md(), timeout=10)

    made = await credit(3000, "ord_new_1")
    assert made.credit.status == P.EXCHANGE_CREDIT_STATUS_APPLIED
    assert [p.credited.amount for p in made.payments] == [3000]
    assert (await credit(3000, "ord_new_1")).credit == made.credit  # asked again: as it stands
    assert await code_of(credit(2001, "ord_new_2")) == (
        grpc.StatusCode.FAILED_PRECONDITION,
        "amount_exceeds_refundable",
    )

    with pytest.raises(grpc.aio.AioRpcError) as err:
        await refund(5000)
    problem = read_error(err.value)
    assert (problem.reason, problem.metadata["refundable"]) == ("amount_exceeds_refundable", "2000")
    assert [v.field for v in problem.violations] == ["amount"]
    assert "exchange" in problem.violations[0].description
    rest = await refund()  # all that is left
    assert [r.amount.amount for r in rest.refunds] == [2000]
    assert await code_of(refund(1)) == (
        grpc.StatusCode.FAILED_PRECONDITION,
        "amount_exceeds_refundable",
    )

    # A return of the new order's goods gives the credit back: named amounts, within it.
    over = refund(
        exchange_order_id="ord_new_1",
        amounts=[P.TenderAmount(payment_id=visa.id, amount=usd(3001))],
    )
    assert (await code_of(over))[1] == "amount_exceeds_refundable"
    back = await refund(
        exchange_order_id="ord_new_1",
        amounts=[P.TenderAmount(payment_id=visa.id, amount=usd(1000))],
    )
    assert [p.credited.amount for p in back.payments] == [2000]
    assert [p.refunded.amount for p in back.payments] == [3000]
    unknown = refund(
        exchange_order_id="ord_no_credit",
        amounts=[P.TenderAmount(payment_id=visa.id, amount=usd(1))],
    )
    assert (await code_of(unknown))[0] == grpc.StatusCode.NOT_FOUND

    # An exchange not made: released, what is left of it is refundable again.
    released = await running.stub.ReleaseExchangeCredit(
        P.ReleaseExchangeCreditRequest(request_id=rid(), exchange_order_id="ord_new_1"),
        metadata=md(),
        timeout=10,
    )
    assert released.credit.status == P.EXCHANGE_CREDIT_STATUS_RELEASED
    assert [r.amount.amount for r in (await refund()).refunds] == [2000]
    # Released before it was ever set aside: a late request cannot set it aside.
    await running.stub.ReleaseExchangeCredit(
        P.ReleaseExchangeCreditRequest(request_id=rid(), exchange_order_id="ord_new_3"),
        metadata=md(),
        timeout=10,
    )
    assert (await code_of(credit(1, "ord_new_3")))[1] == "exchange_credit_released"
    # Another merchant's order is not found.
    other = running.stub.CreditExchange(
        P.CreditExchangeRequest(
            request_id=rid(),
            order_id=order,
            exchange_order_id="ord_new_4",
            amounts=[P.TenderAmount(payment_id=visa.id, amount=usd(1))],
        ),
        metadata=md("mer_b"),
        timeout=10,
    )
    assert (await code_of(other))[0] == grpc.StatusCode.NOT_FOUND


async def test_an_exchange_of_an_exchange_carries_the_credit_on_and_back(
    running: Running,
) -> None:
    """3,000 of a 5,000 sale pays for order B; B exchanged in turn carries 2,000 of that credit
    on to order C: still set aside on the sale's card, now C's. B's credit keeps 1,000 (a
    draw on it for more is refused); C's is drawn by naming C against B; another order's
    payment cannot be named; C's exchange not made puts the rest back on B's credit."""
    order, b, c = f"ord_{rid()}", f"ord_{rid()}", f"ord_{rid()}"
    visa = await pay(running, card(rid(), order, 5000))
    stranger = await pay(running, card(rid(), f"ord_{rid()}", 700))

    def credit(on: str, new: str, amount: int, payment: str = visa.id) -> Any:
        return running.stub.CreditExchange(
            P.CreditExchangeRequest(
                request_id=rid(),
                order_id=on,
                exchange_order_id=new,
                amounts=[P.TenderAmount(payment_id=payment, amount=usd(amount))],
            ),
            metadata=md(),
            timeout=10,
        )

    def draw(on: str, new: str, amount: int) -> Any:
        return running.stub.CreateRefund(
            P.CreateRefundRequest(
                request_id=rid(),
                order_id=on,
                exchange_order_id=new,
                amounts=[P.TenderAmount(payment_id=visa.id, amount=usd(amount))],
            ),
            metadata=md(),
            timeout=10,
        )

    async def credited() -> int:
        got = await running.stub.GetPayment(
            P.GetPaymentRequest(id=visa.id), metadata=md(), timeout=10
        )
        return got.payment.credited.amount

    await credit(order, b, 3000)
    assert await code_of(credit(b, c, 3001)) == (
        grpc.StatusCode.FAILED_PRECONDITION,
        "amount_exceeds_refundable",
    )
    assert (await code_of(credit(b, c, 1, stranger.id)))[0] == grpc.StatusCode.INVALID_ARGUMENT
    made = await credit(b, c, 2000)
    assert made.credit.order_id == b and await credited() == 3000

    assert (await code_of(draw(order, b, 1001)))[1] == "amount_exceeds_refundable"
    await draw(b, c, 500)  # a return of C's goods
    assert await credited() == 2500

    await running.stub.ReleaseExchangeCredit(
        P.ReleaseExchangeCreditRequest(request_id=rid(), exchange_order_id=c),
        metadata=md(),
        timeout=10,
    )
    assert await credited() == 2500  # still set aside: B's again
    assert (await code_of(draw(order, b, 2501)))[1] == "amount_exceeds_refundable"
    await draw(order, b, 2500)
    assert await credited() == 0


async def test_a_draw_on_a_credit_lowers_that_credit_not_the_one_carried_beside_it(
    running: Running,
) -> None:
    """Credit B holds 3,000 of a sale's card; a return of B's goods draws 2,000; an exchange
    of B carries 600 on to C. B has 400 left: a draw of 401 on B is refused (it would take
    C's money), C's 600 stay drawable."""
    order, b, c = f"ord_{rid()}", f"ord_{rid()}", f"ord_{rid()}"
    visa = await pay(running, card(rid(), order, 5000))

    def tender(amount: int) -> list[Any]:
        return [P.TenderAmount(payment_id=visa.id, amount=usd(amount))]

    async def credit(on: str, new: str, amount: int) -> Any:
        return await running.stub.CreditExchange(
            P.CreditExchangeRequest(
                request_id=rid(), order_id=on, exchange_order_id=new, amounts=tender(amount)
            ),
            metadata=md(),
            timeout=10,
        )

    def draw(on: str, new: str, amount: int) -> Any:
        return running.stub.CreateRefund(
            P.CreateRefundRequest(
                request_id=rid(), order_id=on, exchange_order_id=new, amounts=tender(amount)
            ),
            metadata=md(),
            timeout=10,
        )

    await credit(order, b, 3000)
    await draw(order, b, 2000)
    await credit(b, c, 600)
    assert (await code_of(draw(order, b, 401)))[1] == "amount_exceeds_refundable"
    await draw(order, b, 400)
    await draw(b, c, 600)
    got = await running.stub.GetPayment(P.GetPaymentRequest(id=visa.id), metadata=md(), timeout=10)
    assert (got.payment.refunded.amount, got.payment.credited.amount) == (3000, 0)


async def test_a_refund_paid_out_of_band_is_never_refunded_again(running: Running) -> None:
    """A return's 3,000 of a 5,000 card sale was refused at the processor and paid in cash
    instead. Recorded against the payment, it is no longer refundable: a refund asking for it
    is a 409 naming `amount` and saying why, and nothing is refunded. Asked again (the same
    request, or another for the same return), nothing more is set aside. Past what a payment
    has left to refund, only what is left is set aside; bad input is a field error."""
    order = f"ord_{rid()}"
    visa = await pay(running, card(rid(), order, 5000))

    def record(amount: int, return_id: str = "ret_1", request_id: str = "", **extra: Any) -> Any:
        fields: dict[str, Any] = {
            "request_id": request_id or rid(),
            "order_id": order,
            "return_id": return_id,
            "amounts": [P.TenderAmount(payment_id=visa.id, amount=usd(amount))],
            "tender_type": P.TENDER_TYPE_CASH,
            "reference": "till 2, receipt 4471",
            **extra,
        }
        return running.stub.RecordOutOfBandRefund(
            P.RecordOutOfBandRefundRequest(**fields), metadata=md(), timeout=10
        )

    def refund(amount: int | None = None) -> Any:
        request = P.CreateRefundRequest(request_id=rid(), order_id=order)
        if amount is not None:
            request.amount.CopyFrom(usd(amount))
        return running.stub.CreateRefund(request, metadata=md(), timeout=10)

    bad = [
        (record(1, tender_type=P.TENDER_TYPE_CARD), ["tender_type"]),
        (record(0), ["amounts[0].amount.amount"]),
        (record(1, return_id=""), ["return_id"]),
    ]
    for call, fields in bad:
        with pytest.raises(grpc.aio.AioRpcError) as err:
            await call
        assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT
        assert [v.field for v in read_error(err.value).violations] == fields
    request_id = rid()
    made = await record(3000, request_id=request_id)
    assert [p.paid_out_of_band.amount for p in made.payments] == [3000]
    assert [a.amount.amount for a in made.record.set_aside] == [3000]
    assert made.record.shift_id == ""  # not at a register: no drawer
    assert await record(3000, request_id=request_id) == made  # the same request: replayed
    again = await record(3000)  # another request for the same return: as it stands
    assert again.record == made.record
    assert [p.paid_out_of_band.amount for p in again.payments] == [3000]

    with pytest.raises(grpc.aio.AioRpcError) as err:
        await refund(5000)
    problem = read_error(err.value)
    assert (problem.reason, problem.metadata["refundable"]) == ("amount_exceeds_refundable", "2000")
    assert [v.field for v in problem.violations] == ["amount"]
    assert "paid out of band" in problem.violations[0].description
    assert [r.amount.amount for r in (await refund()).refunds] == [2000]  # all that is left

    # A second return's 2,500 paid out of band when nothing is left to refund: recorded,
    # nothing more set aside.
    late = await record(2500, return_id="ret_2")
    assert [a.amount.amount for a in late.record.amounts] == [2500]
    assert [a.amount.amount for a in late.record.set_aside] == [0]
    assert [p.paid_out_of_band.amount for p in late.payments] == [3000]
    other = running.stub.RecordOutOfBandRefund(
        P.RecordOutOfBandRefundRequest(
            request_id=rid(),
            order_id=order,
            return_id="ret_3",
            amounts=[P.TenderAmount(payment_id=visa.id, amount=usd(1))],
            tender_type=P.TENDER_TYPE_EXTERNAL,
        ),
        metadata=md("mer_b"),
        timeout=10,
    )
    assert (await code_of(other))[0] == grpc.StatusCode.NOT_FOUND


async def test_money_set_aside_or_paid_another_way_is_announced_as_the_payment_updated(
    running: Running,
) -> None:
    """`credited` and `paid_out_of_band` change the payment with no other event of it: each
    change is a `payment_updated` carrying the payment as it now stands (its new version), so
    a copy kept from the event feed never misses one."""
    order = f"ord_{rid()}"
    visa = await pay(running, card(rid(), order, 5000))

    def updates() -> list[P.Payment]:
        rows = running.sql(
            "SELECT payload FROM outbox WHERE subject = 'pos.payment.v1.payment_updated' "
            "ORDER BY seq"
        )
        found = [events_pb2.PaymentUpdated.FromString(r[0]).payment for r in rows]
        return [p for p in found if p.id == visa.id]

    assert updates() == []
    made = await running.stub.CreditExchange(
        P.CreditExchangeRequest(
            request_id=rid(),
            order_id=order,
            exchange_order_id=f"ord_{rid()}",
            amounts=[P.TenderAmount(payment_id=visa.id, amount=usd(1000))],
        ),
        metadata=md(),
        timeout=10,
    )
    await running.stub.ReleaseExchangeCredit(
        P.ReleaseExchangeCreditRequest(
            request_id=rid(), exchange_order_id=made.credit.exchange_order_id
        ),
        metadata=md(),
        timeout=10,
    )
    paid = await running.stub.RecordOutOfBandRefund(
        P.RecordOutOfBandRefundRequest(
            request_id=rid(),
            order_id=order,
            return_id=f"ret_{rid()}",
            amounts=[P.TenderAmount(payment_id=visa.id, amount=usd(700))],
            tender_type=P.TENDER_TYPE_CASH,
        ),
        metadata=md(),
        timeout=10,
    )

    seen = updates()
    assert [(p.credited.amount, p.paid_out_of_band.amount) for p in seen] == [
        (1000, 0),
        (0, 0),
        (0, 700),
    ]
    assert [p.version for p in seen] == [visa.version + 1, visa.version + 2, visa.version + 3]
    got = await running.stub.GetPayment(P.GetPaymentRequest(id=visa.id), metadata=md(), timeout=10)
    assert seen[-1] == got.payment == paid.payments[0]


async def test_split_tender_refund_spreads_from_the_last_tender_back(running: Running) -> None:
    order = "ord_split"
    gift = await pay(
        running,
        P.CreatePaymentRequest(
            request_id=rid(),
            order_id=order,
            tender_type=P.TENDER_TYPE_GIFT_CARD,
            amount=usd(2000),
            gift_card_code="gc_birthday_7731",
            capture=True,
        ),
    )
    cash = await pay(
        running,
        P.CreatePaymentRequest(
            request_id=rid(),
            order_id=order,
            tender_type=P.TENDER_TYPE_CASH,
            amount=usd(1500),
            cash_tendered=usd(2000),
            capture=True,
        ),
    )
    visa = await pay(running, card(rid(), order, 3000, "tok_visa"))
    assert (gift.card_last4, cash.change_due.amount) == ("7731", 500)

    summary = await running.stub.GetOrderPayments(
        P.GetOrderPaymentsRequest(order_id=order, order_total=usd(7000)), metadata=md(), timeout=10
    )
    assert (summary.captured.amount, summary.balance_due.amount) == (6500, 500)
    assert [p.id for p in summary.payments] == [gift.id, cash.id, visa.id]

    answer = await running.stub.CreateRefund(
        P.CreateRefundRequest(
            request_id=rid(),
            order_id=order,
            amount=usd(4000),
            reason="returned",
            lines=[P.RefundLine(sku="TEE-BLK-M", quantity=1)],
        ),
        metadata=md(),
        timeout=10,
    )
    # The card taken last gives back all it can, then cash; the gift card is not touched.
    assert [(r.payment_id, r.amount.amount) for r in answer.refunds] == [
        (visa.id, 3000),
        (cash.id, 1000),
    ]
    assert all(r.status == P.REFUND_STATUS_SUCCEEDED for r in answer.refunds)
    assert answer.refunds[0].lines[0].sku == "TEE-BLK-M"
    # The payments as they stand after the refunds, for a caller keeping its own copy; and
    # each refund's event carries its payment as it stood after that refund.
    assert {(p.id, p.refunded.amount) for p in answer.payments} == {
        (visa.id, 3000),
        (cash.id, 1000),
    }
    succeeded = [
        events_pb2.RefundSucceeded.FromString(row[0])
        for row in running.sql(
            "SELECT payload FROM outbox WHERE subject = 'pos.payment.v1.refund_succeeded'"
        )
    ]
    assert {
        (e.refund.id, e.payment.id, e.payment.refunded.amount)
        for e in succeeded
        if e.refund.order_id == order
    } == {(r.id, r.payment_id, r.amount.amount) for r in answer.refunds}
    named = await running.stub.CreateRefund(
        P.CreateRefundRequest(
            request_id=rid(),
            order_id=order,
            amounts=[P.TenderAmount(payment_id=gift.id, amount=usd(500))],
        ),
        metadata=md(),
        timeout=10,
    )
    assert [(r.payment_id, r.amount.amount) for r in named.refunds] == [(gift.id, 500)]
    code, reason = await code_of(
        running.stub.CreateRefund(
            P.CreateRefundRequest(request_id=rid(), order_id=order, amount=usd(2001)),
            metadata=md(),
            timeout=10,
        )
    )
    assert (code, reason) == (grpc.StatusCode.FAILED_PRECONDITION, "amount_exceeds_refundable")
    listed = await running.stub.ListRefunds(
        P.ListRefundsRequest(order_id=order), metadata=md(), timeout=10
    )
    assert len(listed.refunds) == 3


async def test_a_refund_naming_units_says_how_much_it_gives_back(running: Running) -> None:
    """A refund with `lines` (a price adjustment, a gesture on an item) and no amount is
    INVALID_ARGUMENT naming `amount`, and nothing is refunded: absent, the amount meant all
    that is left, so a refund meant for one unit gave back the whole sale (the units' worth
    is what a return refunds). With `amount`, or the amounts per tender, it is made."""
    order = "ord_units_named"
    visa = await pay(running, card(rid(), order, 4000, "tok_visa"))
    tee = [P.RefundLine(sku="TEE-BLK-M", quantity=1)]
    for ask in (
        P.CreateRefundRequest(request_id=rid(), order_id=order, lines=tee),
        P.CreateRefundRequest(request_id=rid(), payment_id=visa.id, lines=tee),
    ):
        with pytest.raises(grpc.aio.AioRpcError) as err:
            await running.stub.CreateRefund(ask, metadata=md(), timeout=10)
        assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT
        assert [v.field for v in read_error(err.value).violations] == ["amount"]
    listed = await running.stub.ListRefunds(
        P.ListRefundsRequest(order_id=order), metadata=md(), timeout=10
    )
    assert list(listed.refunds) == []
    made = await running.stub.CreateRefund(
        P.CreateRefundRequest(request_id=rid(), order_id=order, lines=tee, amount=usd(500)),
        metadata=md(),
        timeout=10,
    )
    assert [r.amount.amount for r in made.refunds] == [500]
    named = await running.stub.CreateRefund(
        P.CreateRefundRequest(
            request_id=rid(),
            order_id=order,
            lines=tee,
            amounts=[P.TenderAmount(payment_id=visa.id, amount=usd(300))],
        ),
        metadata=md(),
        timeout=10,
    )
    assert [r.amount.amount for r in named.refunds] == [300]


# --- pending and the reconciler ------------------------------------------------------------


async def test_a_lost_answer_leaves_the_payment_pending_until_the_reconciler_looks_it_up(
    running: Running,
) -> None:
    request = card("r-timeout", "ord_timeout", 2500, "tok_timeout")
    payment = await pay(running, request)
    assert payment.status == P.PAYMENT_STATUS_PENDING
    assert await pay(running, request) == payment  # a retry replays; nothing is asked again
    await running.sweep()
    got = await running.stub.GetPayment(
        P.GetPaymentRequest(id=payment.id), metadata=md(), timeout=10
    )
    assert got.payment.status == P.PAYMENT_STATUS_CAPTURED  # the processor's truth
    assert got.payment.captured.amount == 2500
    assert running.calls("mer_a/r-timeout") == 1  # looked up, never charged again


async def test_a_backlog_of_one_kind_of_pending_work_starves_no_other(running: Running) -> None:
    """The sweep's work list is bounded; a backlog of payments whose answers were lost (an
    acquirer's bad hour) fills it no further than its share: the card readers' answers and the
    expiries are still looked at in the same pass. Before, the first kinds took the whole list
    and a reader's customer waited as long as the backlog lasted."""
    for _ in range(3):
        await pay(running, card(rid(), new_id("ord"), 500, "tok_timeout"))  # left pending
    await send_to_reader(running, "sandbox_reader_timeout")
    engine = make_engine(running.database_url)
    try:
        async with engine.connect() as conn:
            work = await open_work(conn, timedelta(0), limit=2)
    finally:
        await engine.dispose()
    kinds = [w.kind for w in work]
    assert "terminal" in kinds
    assert all(kinds.count(kind) <= 2 for kind in set(kinds))


async def test_an_unreachable_processor_is_retryable_and_keeps_nothing(running: Running) -> None:
    request = card("r-unreachable", "ord_unreachable", 700, "tok_processing_error")
    code, reason = await code_of(running.stub.CreatePayment(request, metadata=md(), timeout=10))
    assert (code, reason) == (grpc.StatusCode.UNAVAILABLE, "processor_unavailable")
    rows = running.sql("SELECT count(*) FROM payments WHERE order_id = 'ord_unreachable'")
    assert rows == [(0,)]


async def test_an_expired_authorisation_is_voided_and_cannot_be_captured(infra: Infra) -> None:
    overrides: dict[str, Any] = {
        "authorization_window_seconds": 0.2,
        "sweep_interval_seconds": 3600.0,
    }
    async with serve_in_process("payment", infra, **overrides) as svc:
        stub = payment_pb2_grpc.PaymentServiceStub(svc.channel)
        answer = await stub.CreatePayment(
            card(rid(), "ord_expiry", 900, capture=False), metadata=md(), timeout=10
        )
        payment = answer.payment
        await asyncio.sleep(0.3)  # the window itself is what is under test
        code, reason = await code_of(
            stub.CapturePayment(
                P.CapturePaymentRequest(request_id=rid(), payment_id=payment.id),
                metadata=md(),
                timeout=10,
            )
        )
        assert (code, reason) == (grpc.StatusCode.FAILED_PRECONDITION, "authorization_expired")
        settings = bootstrap.Settings(
            database_url=svc.database_url, nats_url=infra.nats_url, **overrides
        )
        await bootstrap.sweeper_for(svc.runtime, settings).sweep()
        got = await stub.GetPayment(P.GetPaymentRequest(id=payment.id), metadata=md(), timeout=10)
        assert got.payment.status == P.PAYMENT_STATUS_VOIDED
        assert got.payment.voided.amount == 900
        with psycopg.connect(svc.database_url) as conn:
            subjects = [r[0] for r in conn.execute("SELECT subject FROM outbox ORDER BY seq")]
            payload = conn.execute(
                "SELECT payload FROM outbox WHERE subject = 'pos.payment.v1.payment_voided'"
            ).fetchone()
        assert subjects == ["pos.payment.v1.payment_authorized", "pos.payment.v1.payment_voided"]
        assert payload is not None
        assert events_pb2.PaymentVoided.FromString(payload[0]).reason == "expired"


async def test_a_merchants_own_window_dates_its_new_authorisations(running: Running) -> None:
    settings = await running.stub.GetPaymentSettings(
        P.GetPaymentSettingsRequest(), metadata=md("mer_window"), timeout=10
    )
    assert settings.settings.authorization_window_seconds == 7 * 24 * 3600  # the default
    assert not settings.settings.HasField("updated_at")
    changed = await running.stub.UpdatePaymentSettings(
        P.UpdatePaymentSettingsRequest(request_id=rid(), authorization_window_seconds=120),
        metadata=md("mer_window"),
        timeout=10,
    )
    assert changed.settings.authorization_window_seconds == 120
    payment = await pay(running, card(rid(), "ord_window", 100, capture=False), "mer_window")
    window = payment.expires_at.ToDatetime() - payment.updated_at.ToDatetime()
    assert 110 <= window.total_seconds() <= 120
    other = await pay(running, card(rid(), "ord_window", 100, capture=False))
    assert (other.expires_at.ToDatetime() - other.updated_at.ToDatetime()).days == 6
    code, _ = await code_of(
        running.stub.UpdatePaymentSettings(
            P.UpdatePaymentSettingsRequest(request_id=rid(), authorization_window_seconds=59),
            metadata=md("mer_window"),
            timeout=10,
        )
    )
    assert code == grpc.StatusCode.INVALID_ARGUMENT


# --- bad input, tenancy, card data ----------------------------------------------------------


async def test_bad_input_is_refused_and_writes_nothing(running: Running) -> None:
    payment = await pay(running, card(rid(), "ord_bad", 1000))
    before = running.sql("SELECT count(*) FROM payments")[0][0]
    cases = [
        running.stub.GetPayment(
            P.GetPaymentRequest(id=payment.id), metadata=md("mer_b"), timeout=10
        ),
        running.stub.CapturePayment(
            P.CapturePaymentRequest(request_id=rid(), payment_id="pay_nope"),
            metadata=md(),
            timeout=10,
        ),
        running.stub.CreateRefund(
            P.CreateRefundRequest(
                request_id=rid(),
                payment_id=payment.id,
                amount=money_pb2.Money(amount=10, currency="EUR"),
            ),
            metadata=md(),
            timeout=10,
        ),
        running.stub.CreateRefund(
            P.CreateRefundRequest(request_id=rid(), payment_id=payment.id),
            metadata=md("mer_b"),
            timeout=10,
        ),
        running.stub.CreatePayment(
            card(rid(), "ord_bad", 100, TEST_CARD_NUMBERS[0]), metadata=md(), timeout=10
        ),
        running.stub.CreatePayment(
            card(rid(), "ord_bad", 100, "tok_nope"), metadata=md(), timeout=10
        ),
    ]
    codes = [await code_of(c) for c in cases]
    assert codes == [
        (grpc.StatusCode.NOT_FOUND, "resource_missing"),
        (grpc.StatusCode.NOT_FOUND, "resource_missing"),
        (grpc.StatusCode.INVALID_ARGUMENT, "currency_mismatch"),
        (grpc.StatusCode.NOT_FOUND, "resource_missing"),
        (grpc.StatusCode.INVALID_ARGUMENT, "card_number_not_allowed"),
        (grpc.StatusCode.INVALID_ARGUMENT, "invalid_argument"),
    ]
    assert running.sql("SELECT count(*) FROM payments")[0][0] == before
    assert running.sql("SELECT count(*) FROM refunds WHERE order_id = 'ord_bad'") == [(0,)]


async def test_no_token_or_card_number_is_kept_anywhere(
    running: Running, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    tokens = ["tok_visa", "tok_amex", "tok_declined", "tok_timeout", "gc_secret_code_9911"]
    for n, token in enumerate(tokens):
        gift = token.startswith("gc_")
        await pay(
            running,
            P.CreatePaymentRequest(
                request_id=f"r-dump-{n}",
                order_id="ord_dump",
                tender_type=P.TENDER_TYPE_GIFT_CARD if gift else P.TENDER_TYPE_CARD,
                amount=usd(100),
                card_token="" if gift else token,
                gift_card_code=token if gift else "",
                capture=True,
            ),
        )
    await code_of(
        running.stub.CreatePayment(
            card(rid(), "ord_dump", 100, TEST_CARD_NUMBERS[2]), metadata=md()
        )
    )
    tables = [
        "payments",
        "payment_operations",
        "refunds",
        "outbox",
        "processed_requests",
        "sandbox_processor_calls",
    ]
    dump = " ".join(
        str(row)
        for table in tables
        for row in running.sql(f"SELECT * FROM {table}")  # noqa: S608
    )
    await running.sweep()  # the reconciler's lookups log too
    logged = "\n".join(r.getMessage() + str(r.args) + str(r.exc_info) for r in caplog.records)
    assert caplog.records  # the run did log: the grep below is not of nothing
    for secret in [*tokens, *TEST_CARD_NUMBERS]:
        assert secret not in dump
        assert secret not in logged
    assert "9911" in dump  # the gift card's last four are kept, as a card's are


async def test_lists_filter_by_order_and_status(running: Running) -> None:
    kept = await pay(running, card(rid(), "ord_list", 100, capture=False))
    await pay(running, card(rid(), "ord_list", 100, "tok_declined"))
    listed = await running.stub.ListPayments(
        P.ListPaymentsRequest(order_id="ord_list", status=P.PAYMENT_STATUS_AUTHORIZED),
        metadata=md(),
        timeout=10,
    )
    assert [p.id for p in listed.payments] == [kept.id]
    # Another merchant's order is unknown, word for word like one that never existed.
    code, reason = await code_of(
        running.stub.ListPayments(
            P.ListPaymentsRequest(order_id="ord_list"), metadata=md("mer_b"), timeout=10
        )
    )
    assert (code, reason) == (grpc.StatusCode.NOT_FOUND, "resource_missing")


# --- card-present terminal checkouts ---------------------------------------------------------


async def send_to_reader(running: Running, device: str, amount: int = 1500) -> Any:
    answer = await running.stub.CreateTerminalCheckout(
        P.CreateTerminalCheckoutRequest(
            request_id=rid(),
            order_id=new_id("ord"),
            location_id="loc_front",
            device_id=device,
            amount=usd(amount),
            tip=usd(200),
        ),
        metadata=md(),
        timeout=10,
    )
    assert answer.checkout.status == P.TERMINAL_CHECKOUT_STATUS_PENDING
    return answer.checkout


async def terminal(running: Running, checkout_id: str) -> Any:
    answer = await running.stub.GetTerminalCheckout(
        P.GetTerminalCheckoutRequest(id=checkout_id), metadata=md(), timeout=10
    )
    return answer.checkout


@pytest.mark.parametrize(
    ("device", "status", "payment_status"),
    [
        ("sandbox_reader_approve", P.TERMINAL_CHECKOUT_STATUS_COMPLETED, P.PAYMENT_STATUS_CAPTURED),
        ("sandbox_reader_decline", P.TERMINAL_CHECKOUT_STATUS_DECLINED, P.PAYMENT_STATUS_FAILED),
        ("sandbox_reader_cancel", P.TERMINAL_CHECKOUT_STATUS_CANCELLED, None),
    ],
)
async def test_a_terminal_checkout_stays_pending_until_the_reader_answers(
    running: Running, device: str, status: int, payment_status: int | None
) -> None:
    checkout = await send_to_reader(running, device)
    await running.sweep()
    settled = await terminal(running, checkout.id)
    assert settled.status == status
    events = running.sql(
        "SELECT payload FROM outbox"
        " WHERE subject = 'pos.payment.v1.terminal_checkout_updated' ORDER BY seq"
    )
    seen = [events_pb2.TerminalCheckoutUpdated.FromString(e[0]).checkout for e in events]
    assert [c.status for c in seen if c.id == checkout.id] == [
        P.TERMINAL_CHECKOUT_STATUS_PENDING,
        status,
    ]
    if payment_status is None:
        assert settled.payment_id == ""
        return
    payment = await running.stub.GetPayment(
        P.GetPaymentRequest(id=settled.payment_id), metadata=md(), timeout=10
    )
    assert payment.payment.status == payment_status
    assert payment.payment.total.amount == 1700  # the tip rides on top
    assert payment.payment.location_id == "loc_front"


async def test_a_card_reader_sale_at_a_register_counts_in_the_shift_open_there(
    running: Running,
) -> None:
    """A register sends a sale to its card reader; the reader's answer is recorded later, by
    the sweep (no register in its call). The payment is the register's all the same: its
    card is in the shift open there, and a refund of it at the register leaves the card's
    net what was kept. Before, the sale was in no shift and the refund took the card's net
    below zero."""
    merchant, till = new_id("mer"), new_id("reg")
    at_till = (("x-merchant-id", merchant), ("x-register-id", till), ("x-staff-id", "stf_1"))
    opened = await running.shifts.OpenShift(
        shifts_pb2.OpenShiftRequest(
            request_id=rid(), location_id="loc_front", opening_float=usd(0)
        ),
        metadata=at_till,
        timeout=10,
    )
    sent = await running.stub.CreateTerminalCheckout(
        P.CreateTerminalCheckoutRequest(
            request_id=rid(),
            reference="till sale",
            location_id="loc_front",
            device_id="sandbox_reader_approve",
            amount=usd(1500),
            tip=usd(200),
        ),
        metadata=at_till,
        timeout=10,
    )
    await running.sweep()
    settled = await running.stub.GetTerminalCheckout(
        P.GetTerminalCheckoutRequest(id=sent.checkout.id), metadata=md(merchant), timeout=10
    )
    assert settled.checkout.status == P.TERMINAL_CHECKOUT_STATUS_COMPLETED
    await running.stub.CreateRefund(
        P.CreateRefundRequest(
            request_id=rid(), payment_id=settled.checkout.payment_id, amount=usd(500)
        ),
        metadata=at_till,
        timeout=10,
    )
    shift = await running.shifts.GetShift(
        shifts_pb2.GetShiftRequest(id=opened.shift.id), metadata=at_till, timeout=10
    )
    tenders = {
        t.name: (t.captured.amount, t.captured_count, t.refunded.amount, t.net.amount)
        for t in shift.shift.report.tenders
    }
    assert tenders == {"card": (1700, 1, 500, 1200)}


async def test_a_silent_reader_times_out_at_the_deadline(running: Running) -> None:
    checkout = await send_to_reader(running, "sandbox_reader_timeout")
    await running.sweep()
    assert (await terminal(running, checkout.id)).status == P.TERMINAL_CHECKOUT_STATUS_PENDING
    running.sql(
        "UPDATE terminal_checkouts SET deadline = now() - interval '1 second' "  # noqa: S608
        f"WHERE id = '{checkout.id}' RETURNING id"
    )
    await running.sweep()
    assert (await terminal(running, checkout.id)).status == P.TERMINAL_CHECKOUT_STATUS_TIMED_OUT


async def test_a_refund_request_is_answered_with_its_own_refunds_only(running: Running) -> None:
    """Request ids may hold '/' (the gateway's `key:<Idempotency-Key>` for a key holding one):
    one may begin with another's and a '/'. A refund request under `<base>/refund` after one
    under `<base>/refund/2` is its own: it refunds its payment. Until 2026-12-05 the refunds of
    a request were looked up as every key beginning `<merchant>/<request id>/`, which held the
    other request's: it was answered with that refund, of another payment, and refunded
    nothing."""
    base = f"key:sale-{rid()}"
    first = await pay(running, card(rid(), new_id("ord"), 1000))
    second = await pay(running, card(rid(), new_id("ord"), 1000))

    async def refund(request_id: str, payment: Any, amount: int) -> Any:
        ask = P.CreateRefundRequest(request_id=request_id, payment_id=payment.id,
                                    amount=usd(amount))  # fmt: skip
        return await running.stub.CreateRefund(ask, metadata=md(), timeout=10)

    earlier = await refund(f"{base}/refund/2", first, 100)
    answer = await refund(f"{base}/refund", second, 200)

    [made] = answer.refunds
    assert (made.payment_id, made.amount.amount) == (second.id, 200)
    assert made.id != earlier.refunds[0].id
    [after] = answer.payments
    assert (after.id, after.refunded.amount) == (second.id, 200)
    # Asked again, each request answers its own refund, and nothing more is refunded.
    assert (await refund(f"{base}/refund", second, 200)).refunds == answer.refunds
    assert (await refund(f"{base}/refund/2", first, 100)).refunds == earlier.refunds


async def test_refunds_keyed_before_the_change_are_still_their_requests(
    running: Running,
) -> None:
    """A refund request whose first run crashed before 2026-12-05 finds its refunds under the
    keys they were written with (`<merchant>/<request id>/<n>`) when it runs again, and only
    those: not the refunds of a request whose id begins with its own and a '/'."""
    paid = await pay(running, card(rid(), new_id("ord"), 1000))
    base = f"key:old-{rid()}"
    made = {}
    for request_id in (base, f"{base}/x"):
        ask = P.CreateRefundRequest(request_id=request_id, payment_id=paid.id, amount=usd(100))
        answer = await running.stub.CreateRefund(ask, metadata=md(), timeout=10)
        made[request_id] = answer.refunds[0].id
        running.sql(
            f"UPDATE refunds SET request_key = 'mer_a/{request_id}/000' "  # noqa: S608
            f"WHERE id = '{answer.refunds[0].id}' RETURNING id"
        )
    async with running.runtime.uow().bind("mer_a").reading() as uow:
        found = await uow.refunds.of_request(
            handlers.refund_keys("mer_a", base), handlers.request_key("mer_a", base)
        )
    assert [r.id for r in found] == [made[base]]


async def test_a_readers_key_is_never_a_refunds_key(running: Running) -> None:
    """A refund's processor key is no other request's: a checkout sent to a reader that never
    answers, under the request id `<r>/000` of a refund's `<r>`, stays pending. Until
    2026-12-05 a refund's key was `<merchant>/<request id>/000`, the key of a request whose id
    is `<request id>/000`: the reader's answer was looked up under it, found the refund's
    (approved), and the checkout was completed and its payment captured with no card read."""
    base = f"key:reader-{rid()}"
    paid = await pay(running, card(rid(), new_id("ord"), 1000))
    ask = P.CreateRefundRequest(request_id=base, payment_id=paid.id, amount=usd(100))
    await running.stub.CreateRefund(ask, metadata=md(), timeout=10)
    sent = await running.stub.CreateTerminalCheckout(
        P.CreateTerminalCheckoutRequest(
            request_id=f"{base}/000",
            reference="counter 2",
            location_id="loc_front",
            device_id="sandbox_reader_timeout",
            amount=usd(99_999),
        ),
        metadata=md(),
        timeout=10,
    )
    await running.sweep()
    checkout = await terminal(running, sent.checkout.id)
    assert (checkout.status, checkout.payment_id) == (P.TERMINAL_CHECKOUT_STATUS_PENDING, "")


async def test_the_register_cancels_a_pending_checkout_once(running: Running) -> None:
    checkout = await send_to_reader(running, "sandbox_reader_timeout")
    cancel = P.CancelTerminalCheckoutRequest(request_id=rid(), id=checkout.id)
    answer = await running.stub.CancelTerminalCheckout(cancel, metadata=md(), timeout=10)
    assert answer.checkout.status == P.TERMINAL_CHECKOUT_STATUS_CANCELLED
    again = await running.stub.CancelTerminalCheckout(cancel, metadata=md(), timeout=10)
    assert again == answer  # a retry replays
    # Another cancel of it (a second tap at the register) finds it cancelled: the same answer.
    later = await running.stub.CancelTerminalCheckout(
        P.CancelTerminalCheckoutRequest(request_id=rid(), id=checkout.id),
        metadata=md(),
        timeout=10,
    )
    assert later.checkout == answer.checkout
    assert _terminal_updates(running, checkout.id) == [
        P.TERMINAL_CHECKOUT_STATUS_PENDING,
        P.TERMINAL_CHECKOUT_STATUS_CANCELLED,
    ]


def _terminal_updates(running: Running, checkout_id: str) -> list[int]:
    events = running.sql(
        "SELECT payload FROM outbox"
        " WHERE subject = 'pos.payment.v1.terminal_checkout_updated' ORDER BY seq"
    )
    seen = [events_pb2.TerminalCheckoutUpdated.FromString(e[0]).checkout for e in events]
    return [c.status for c in seen if c.id == checkout_id]


async def test_concurrent_cancels_of_one_checkout_all_answer_it_cancelled(
    running: Running,
) -> None:
    """Each cancel answers as a sequential one would: the checkout, cancelled, whether it
    cancelled it or found it cancelled by another (before or while it ran); one write."""
    checkout = await send_to_reader(running, "sandbox_reader_timeout")

    async def cancel(request_id: str) -> Any:
        request = P.CancelTerminalCheckoutRequest(request_id=request_id, id=checkout.id)
        return await running.stub.CancelTerminalCheckout(request, metadata=md(), timeout=10)

    answers = await asyncio.gather(*(cancel(rid()) for _ in range(5)))
    answers.append(await cancel(rid()))
    ended = await terminal(running, checkout.id)
    assert ended.status == P.TERMINAL_CHECKOUT_STATUS_CANCELLED
    assert [a.checkout for a in answers] == [ended] * 6
    assert _terminal_updates(running, checkout.id) == [
        P.TERMINAL_CHECKOUT_STATUS_PENDING,
        P.TERMINAL_CHECKOUT_STATUS_CANCELLED,
    ]

    # One request id sent five times at once: one runs, the others are told it is still
    # running (ABORTED) or replay its answer; none is a refusal of the checkout.
    again = await send_to_reader(running, "sandbox_reader_timeout")
    one = P.CancelTerminalCheckoutRequest(request_id=rid(), id=again.id)
    results = await asyncio.gather(
        *(running.stub.CancelTerminalCheckout(one, metadata=md(), timeout=10) for _ in range(5)),
        return_exceptions=True,
    )
    cancelled = await terminal(running, again.id)
    for result in results:
        if isinstance(result, grpc.aio.AioRpcError):
            assert result.code() == grpc.StatusCode.ABORTED, result
        else:
            assert result.checkout == cancelled
    assert any(not isinstance(r, BaseException) for r in results)
    replay = await running.stub.CancelTerminalCheckout(one, metadata=md(), timeout=10)
    assert replay.checkout == cancelled


async def test_a_checkout_that_ended_otherwise_cannot_be_cancelled(running: Running) -> None:
    # Paid (or declined) at the reader, or timed out: not cancelled, and never will be.
    paid = await send_to_reader(running, "sandbox_reader_approve")
    await running.sweep()
    assert (await terminal(running, paid.id)).status == P.TERMINAL_CHECKOUT_STATUS_COMPLETED
    for _ in range(2):
        code, reason = await code_of(
            running.stub.CancelTerminalCheckout(
                P.CancelTerminalCheckoutRequest(request_id=rid(), id=paid.id),
                metadata=md(),
                timeout=10,
            )
        )
        assert (code, reason) == (grpc.StatusCode.FAILED_PRECONDITION, "terminal_checkout_final")


async def test_a_customer_quicker_than_the_register_has_paid(infra: Infra) -> None:
    # The service's own readers answer only after an hour, so its sweep (whose pass at start
    # may come late) cannot record the customer's answer before the register's cancel does:
    # the customer's word comes from this test's reader, which answers at once.
    async with _serve(infra, reader_delay=3600.0) as running:
        checkout = await send_to_reader(running, "sandbox_reader_approve")
        reader = SandboxReader(running.runtime.engine, delay_seconds=0.0)
        await _customer_pays_then_register_cancels(running, reader, checkout)


async def _customer_pays_then_register_cancels(
    running: Running, reader: SandboxReader, checkout: Any
) -> None:
    assert checkout.created_at  # the card is presented before the register cancels
    await reader.answer(
        checkout.device_id,
        f"mer_a/{checkout_request_id(running, checkout.id)}",
        Money(1700, USD),
        checkout.created_at.ToDatetime(tzinfo=UTC),
    )
    try:
        answer = await running.stub.CancelTerminalCheckout(
            P.CancelTerminalCheckoutRequest(request_id=rid(), id=checkout.id),
            metadata=md(),
            timeout=10,
        )
        ended = answer.checkout
    except grpc.aio.AioRpcError as err:
        # The service's sweep may have read the customer's answer (the readers share its
        # record) before the cancel came: then the cancel finds the checkout final already.
        assert read_error(err).reason == "terminal_checkout_final"
        ended = (
            await running.stub.GetTerminalCheckout(
                P.GetTerminalCheckoutRequest(id=checkout.id), metadata=md(), timeout=10
            )
        ).checkout
    # Either way the customer who paid has paid, and the register is told so.
    assert ended.status == P.TERMINAL_CHECKOUT_STATUS_COMPLETED
    assert ended.payment_id


def checkout_request_id(running: Running, checkout_id: str) -> str:
    key = running.sql(f"SELECT request_key FROM terminal_checkouts WHERE id = '{checkout_id}'")  # noqa: S608
    return str(key[0][0]).removeprefix("mer_a/")


async def test_an_unknown_reader_is_a_field_error(running: Running) -> None:
    with pytest.raises(grpc.aio.AioRpcError) as err:
        await send_to_reader(running, "reader_in_the_back")
    assert [v.field for v in read_error(err.value).violations] == ["device_id"]


async def test_a_terminal_checkout_past_the_ceiling_or_with_a_blank_reference_is_refused(
    running: Running,
) -> None:
    """The amount and the tip are each at most 10^12 minor units, and so is what the reader
    charges, their sum: past it, INVALID_ARGUMENT naming the field that took it past (the tip
    when there is one). A reference of spaces only is no reference. Nothing is written."""
    before = running.sql("SELECT count(*) FROM terminal_checkouts")[0][0]
    ceiling = 10**12

    async def refused_fields(**given: Any) -> list[str]:
        fields = {
            "request_id": rid(),
            "order_id": new_id("ord"),
            "location_id": "loc_front",
            "device_id": "sandbox_reader_approve",
            "amount": usd(1500),
            **given,
        }
        with pytest.raises(grpc.aio.AioRpcError) as err:
            await running.stub.CreateTerminalCheckout(
                P.CreateTerminalCheckoutRequest(**fields), metadata=md(), timeout=10
            )
        assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT
        return [v.field for v in read_error(err.value).violations]

    assert await refused_fields(amount=usd(ceiling), tip=usd(1)) == ["tip.amount"]
    assert await refused_fields(amount=usd(ceiling // 2 + 1), tip=usd(ceiling // 2)) == [
        "tip.amount"
    ]
    assert await refused_fields(amount=usd(ceiling + 1)) == ["amount.amount"]
    assert await refused_fields(order_id="", reference="   ") == ["reference"]
    assert await refused_fields(reference=" \t ") == ["reference"]
    assert running.sql("SELECT count(*) FROM terminal_checkouts")[0][0] == before
    # Up to the ceiling, it is sent.
    answer = await running.stub.CreateTerminalCheckout(
        P.CreateTerminalCheckoutRequest(
            request_id=rid(), reference="lane 3", location_id="loc_front",
            device_id="sandbox_reader_decline", amount=usd(ceiling - 5), tip=usd(5),
        ),
        metadata=md(),
        timeout=10,
    )  # fmt: skip
    assert answer.checkout.status == P.TERMINAL_CHECKOUT_STATUS_PENDING


# --- two replicas, one database --------------------------------------------------------------


async def test_two_replicas_on_one_database_never_double_charge_or_over_refund(
    infra: Infra,
) -> None:
    """The service keeps no state between requests: duplicates and refunds spread over two
    replicas behave as on one."""
    url = infra.service_database("payment")
    settings = bootstrap.Settings(
        database_url=url,
        nats_url=infra.nats_url,
        grpc_host="127.0.0.1",
        grpc_port=0,
        sweep_interval_seconds=3600.0,
    )
    replicas = [bootstrap.build(settings) for _ in range(2)]
    channels = []
    try:
        for runtime, server in replicas:
            await server.start(runtime.tasks())
            channels.append(grpc.aio.insecure_channel(f"127.0.0.1:{server.port}"))
        stubs = [payment_pb2_grpc.PaymentServiceStub(c) for c in channels]

        async def send(n: int, request: Any) -> Any:
            return await stubs[n % 2].CreatePayment(request, metadata=md(), timeout=30)

        duplicate = card("r-two-replicas", "ord_two_replicas", 5000)
        answers = await asyncio.gather(
            *(send(n, duplicate) for n in range(100)), return_exceptions=True
        )
        paid = [a.payment for a in answers if not isinstance(a, BaseException)]
        assert paid and all(p == paid[0] for p in paid)
        for refused in (a for a in answers if isinstance(a, grpc.aio.AioRpcError)):
            assert read_error(refused).reason == "request_in_progress"

        async def refund(n: int) -> Any:
            request = P.CreateRefundRequest(
                request_id=f"r-two-refund-{n}", payment_id=paid[0].id, amount=usd(700)
            )
            return await stubs[n % 2].CreateRefund(request, metadata=md(), timeout=30)

        refunds = await asyncio.gather(*(refund(n) for n in range(20)), return_exceptions=True)
        done = [r for r in refunds if not isinstance(r, BaseException)]
        assert len(done) == 7  # 7 x 700 = 4900 of 5000
        with psycopg.connect(url) as conn:
            calls = conn.execute(
                "SELECT calls FROM sandbox_processor_calls WHERE key = %s",
                ("mer_a/r-two-replicas",),
            ).fetchall()
            refunded = conn.execute(
                "SELECT refunded, refunding FROM payments WHERE id = %s", (paid[0].id,)
            ).fetchall()
        assert calls == [(1,)]
        assert refunded == [(4900, 0)]
    finally:
        for channel in channels:
            await channel.close()
        for runtime, server in replicas:
            await server.stop()
            await runtime.close()


# --- settling a payment this request added -------------------------------------------------


async def _taken_until_record(running: Running) -> tuple[handlers.TakePayment, Any, Any]:
    """A card payment's read and call, as the kit runs them; the record is the test's."""

    def new_uow() -> Any:
        return running.runtime.uow().bind("mer_a")

    charge = validate_charge(
        ChargeRequest(new_id("ord"), TenderType.CARD, 1500, USD, None, "tok_visa")
    )
    processors = bootstrap.processors_for(running.runtime.engine, running.settings)
    steps = handlers.TakePayment(charge, rid(), processors, new_uow, handlers.Policy())
    async with new_uow() as uow:
        pending = await steps.read(uow)
        await uow.commit()
    outcome = await steps.call(None, pending)
    return steps, new_uow, outcome


async def test_a_payment_this_request_added_is_settled_without_reading_it_back(
    running: Running,
) -> None:
    steps, new_uow, outcome = await _taken_until_record(running)
    async with new_uow() as uow:
        payment = await steps.record(uow, outcome)
        await uow.commit()
    assert (payment.status.value, payment.version) == ("captured", 2)
    (row,) = running.sql(
        f"SELECT status, version, captured FROM payments WHERE id = '{payment.id}'"  # noqa: S608
    )
    assert row == ("captured", 2, 1500)


async def test_a_payment_settled_meanwhile_keeps_the_first_settlement(running: Running) -> None:
    """Another hand (the reconciler) settled the row between the request's read and its
    record: the request's copy is stale, so the row is read locked, found settled, and left
    as the first settlement made it."""
    steps, new_uow, outcome = await _taken_until_record(running)
    assert steps.known is not None
    async with new_uow() as uow:
        first = await uow.payments.get(steps.known.id, lock=True)
        assert first is not None
        first.settle_authorization(Outcome(True, "ref-first", "visa", "1111"))
        await uow.payments.save(first)
        await uow.commit()
    async with new_uow() as uow:
        payment = await steps.record(uow, outcome)
        await uow.commit()
    assert (payment.version, payment.processor_reference) == (2, "ref-first")
    (row,) = running.sql(
        f"SELECT status, version, processor_reference FROM payments WHERE id = '{payment.id}'"  # noqa: S608
    )
    assert row == ("captured", 2, "ref-first")


async def test_a_rerun_that_cannot_reach_the_processor_keeps_the_first_runs_payment(
    running: Running, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A request whose first run crashed after the processor authorised it (the payment
    pending, the answer never recorded) is run again while the processor cannot be reached.
    The first run's authorisation may stand at the processor: the payment stays pending and
    the answer says so, as for a lost answer, and the reconciler settles it from the
    processor's record. Before, the re-run forgot the payment and answered 503
    `processor_unavailable` (no payment made), so the order let another tender through and
    the customer could be charged twice."""
    first, _, _ = await _taken_until_record(running)  # the crash: no record
    assert first.known is not None
    key = first.known.request_key
    assert running.calls(key) == 1  # authorised at the processor
    request = card(first.request_id, first.charge.order_id, 1500)
    down = Script(False, "visa", "4242", unreachable=True)
    with monkeypatch.context() as processor_down:
        processor_down.setitem(CARD_TOKENS, "tok_visa", down)
        payment = await pay(running, request)
        assert (payment.id, payment.status) == (first.known.id, P.PAYMENT_STATUS_PENDING)
        assert await pay(running, request) == payment  # a retry replays it
    await running.sweep()
    (row,) = running.sql(
        f"SELECT status, captured FROM payments WHERE id = '{first.known.id}'"  # noqa: S608
    )
    assert row == ("captured", 1500)  # the processor's truth
    assert running.calls(key) == 1  # looked up, never charged again


class _CapturesOutOfReach(SandboxProcessor):
    """The sandbox card processor while captures cannot reach it."""

    async def capture(self, reference: str, amount: Money, key: str) -> Any:
        raise ProcessorUnavailable()


async def test_a_capture_rerun_that_cannot_reach_the_processor_keeps_the_first_runs_capture(
    running: Running,
) -> None:
    """A capture whose first run crashed after the processor captured (the capture pending,
    the amount set aside) is run again while the processor cannot be reached: the capture
    stays pending with its amount set aside, and the reconciler settles it from the
    processor's record. Before, the re-run gave the amount back and forgot the capture, so
    the captured money was capturable again under another request id."""
    payment = await pay(running, card(rid(), new_id("ord"), 2000, capture=False))
    assert payment.status == P.PAYMENT_STATUS_AUTHORIZED

    def new_uow() -> Any:
        return running.runtime.uow().bind("mer_a")

    request_id = rid()
    processors = bootstrap.processors_for(running.runtime.engine, running.settings)
    first = handlers.CapturePayment(
        payment.id, None, request_id, processors, new_uow, handlers.Policy()
    )
    async with new_uow() as uow:
        read = await first.read(uow)
        await uow.commit()
    await first.call(None, read)  # captured at the processor; the crash: no record
    key = read[1].request_key
    assert running.calls(key) == 1
    down = {**processors, TenderType.CARD: _CapturesOutOfReach(running.runtime.engine)}
    rerun = handlers.CapturePayment(payment.id, None, request_id, down, new_uow, handlers.Policy())
    after, op = await handlers.run_steps(new_uow, rerun)
    assert (op.id, op.status.value, after.capturing) == (read[1].id, "pending", 2000)
    await running.sweep()
    (row,) = running.sql(
        f"SELECT status, captured, capturing FROM payments WHERE id = '{payment.id}'"  # noqa: S608
    )
    assert row == ("captured", 2000, 0)  # the processor's truth
    assert running.calls(key) == 1  # looked up, never captured again


class _RefundsOutOfReach(SandboxProcessor):
    """The sandbox card processor while refunds cannot reach it."""

    async def refund(self, reference: str, amount: Money, key: str, *, payment_id: str = "") -> Any:
        raise ProcessorUnavailable()


async def test_a_refund_rerun_that_cannot_reach_the_processor_keeps_the_first_runs_refund(
    running: Running,
) -> None:
    """A refund whose first run crashed after the processor refunded (the refund pending, the
    amount set aside) is run again while the processor cannot be reached: the refund stays
    pending with its amount set aside, a retry answers it so, and the reconciler settles it
    from the processor's record. Before, the re-run marked it failed (processor_unavailable)
    and gave the amount back, so money the processor had refunded was refundable again
    under another request id: the customer refunded twice."""
    payment = await pay(running, card(rid(), new_id("ord"), 1500))
    assert payment.status == P.PAYMENT_STATUS_CAPTURED

    def new_uow() -> Any:
        return running.runtime.uow().bind("mer_a")

    ask = handlers.RefundAsk(payment.id, "", (1500, USD), (), "requested", ())
    request_id = rid()
    processors = bootstrap.processors_for(running.runtime.engine, running.settings)
    first = handlers.RefundPayments(ask, request_id, processors, handlers.Policy())
    async with new_uow() as uow:
        read = await first.read(uow)
        await uow.commit()
    await first.call(None, read)  # refunded at the processor; the crash: no record
    [(_, made)] = read
    assert running.calls(made.request_key) == 1
    down = {**processors, TenderType.CARD: _RefundsOutOfReach(running.runtime.engine)}
    for _ in range(2):  # the re-run, and a retry of it
        rerun = handlers.RefundPayments(ask, request_id, down, handlers.Policy())
        done = await handlers.run_steps(new_uow, rerun)
        [refund] = done.refunds
        [after] = done.payments
        assert (refund.id, refund.status.value) == (made.id, "pending")
        assert (after.refunding, after.refunded) == (1500, 0)
    # Nothing is left to refund under another request id while it is pending.
    again = P.CreateRefundRequest(request_id=rid(), payment_id=payment.id, amount=usd(1))
    assert (await code_of(running.stub.CreateRefund(again, metadata=md(), timeout=10)))[1] == (
        "amount_exceeds_refundable"
    )
    await running.sweep()
    (row,) = running.sql(
        f"SELECT status FROM refunds WHERE id = '{made.id}'"  # noqa: S608
    )
    assert row == ("succeeded",)  # the processor's truth
    (row,) = running.sql(
        f"SELECT refunded, refunding FROM payments WHERE id = '{payment.id}'"  # noqa: S608
    )
    assert row == (1500, 0)
    assert running.calls(made.request_key) == 1  # looked up, never refunded again
