"""Payments: rules on fakes, and the running service against real PostgreSQL and NATS."""

from __future__ import annotations

import grpc
import psycopg
import pytest

from pos.common.v1 import money_pb2
from pos.payment.v1 import payment_pb2, payment_pb2_grpc
from pos_devstack.testing import Infra, serve_in_process
from pos_kit.errors import InvalidArgument
from pos_kit.grpc_client import read_error
from pos_kit.money import Money
from pos_payment.adapters.sandbox import SandboxProcessor
from pos_payment.domain.model import (
    ChargeRequest,
    Payment,
    PaymentCaptured,
    PaymentStatus,
    TenderType,
    validate_charge,
)
from pos_payment.service import handlers

USD = "USD"


class FakePayments:
    def __init__(self) -> None:
        self.rows: list[Payment] = []

    async def add(self, payment: Payment) -> None:
        self.rows.append(payment)

    async def get(self, merchant_id: str, payment_id: str) -> Payment | None:
        return next((p for p in self.rows if p.id == payment_id), None)


class FakeUow:
    merchant_id = "mer_a"

    def __init__(self) -> None:
        self.payments = FakePayments()
        self.published: list[object] = []

    def publish(self, event: object) -> None:
        self.published.append(event)


async def test_cash_gives_change_and_is_captured() -> None:
    uow = FakeUow()
    charge = validate_charge(
        ChargeRequest("ord_1", TenderType.CASH, 1840, USD, (2000, USD), card_token="")
    )
    payment = await handlers.authorize_and_capture(uow, SandboxProcessor(), charge, "k1")
    assert payment.status is PaymentStatus.CAPTURED
    assert payment.change_due == Money(160, USD)
    assert [type(e) for e in uow.published] == [PaymentCaptured]


async def test_a_declined_card_is_stored_but_announces_nothing() -> None:
    uow = FakeUow()
    charge = validate_charge(
        ChargeRequest("ord_1", TenderType.CARD, 500, USD, None, "tok_declined")
    )
    payment = await handlers.authorize_and_capture(uow, SandboxProcessor(), charge, "k1")
    assert payment.status is PaymentStatus.DECLINED
    assert payment.decline_reason == "card_declined"
    assert uow.payments.rows == [payment]
    assert uow.published == []


@pytest.mark.parametrize(
    ("tender", "amount", "cash", "token", "field"),
    [
        (TenderType.CASH, 1000, 500, "", "cash_tendered.amount"),
        (TenderType.CASH, 1000, None, "", "cash_tendered"),
        (TenderType.CARD, 0, None, "tok_visa", "amount.amount"),
        (TenderType.CARD, 100, None, "4242 4242 4242 4242", "card_token"),
        (TenderType.CARD, 100, None, "not-a-token", "card_token"),
        (None, 100, None, "tok_visa", "tender_type"),
        (TenderType.CASH, 100, 100, "tok_4111111111111111", "card_token"),
        (TenderType.CARD, 100, 100, "tok_visa", "cash_tendered"),
    ],
)
def test_bad_charges_are_field_errors(
    tender: TenderType | None, amount: int, cash: int | None, token: str, field: str
) -> None:
    request = ChargeRequest(
        "ord_1", tender, amount, USD, None if cash is None else (cash, USD), token
    )
    with pytest.raises(InvalidArgument) as err:
        validate_charge(request)
    assert field in [v.field for v in err.value.violations]


def test_every_violation_is_reported_at_once() -> None:
    with pytest.raises(InvalidArgument) as err:
        validate_charge(ChargeRequest("", None, -5, "usd", None, ""))
    fields = {v.field for v in err.value.violations}
    assert {"order_id", "tender_type", "amount.amount", "amount.currency"} <= fields


async def test_an_unknown_token_is_a_field_error_and_stores_nothing() -> None:
    uow = FakeUow()
    charge = validate_charge(ChargeRequest("ord_1", TenderType.CARD, 100, USD, None, "tok_nope"))
    with pytest.raises(InvalidArgument) as err:
        await handlers.authorize_and_capture(uow, SandboxProcessor(), charge, "k1")
    assert [v.field for v in err.value.violations] == ["card_token"]
    assert uow.payments.rows == []
    assert uow.published == []


@pytest.mark.parametrize(
    "token",
    ["4242424242424242", "4242-4242-4242-4242", "4242 4242 4242 4242", "tok_4242424242424242"],
)
def test_a_card_number_as_token_is_refused_by_the_kit_rule(token: str) -> None:
    for tender, cash in ((TenderType.CARD, None), (TenderType.CASH, (100, USD))):
        with pytest.raises(InvalidArgument) as err:
            validate_charge(ChargeRequest("ord_1", tender, 100, USD, cash, token))
        assert err.value.code == "card_number_not_allowed"
        assert "card_token" in [v.field for v in err.value.violations]
        assert token not in str(err.value) + repr(err.value.violations)


def test_tokens_that_only_look_numeric_are_not_card_numbers() -> None:
    for token in ("tok_visa", "tok_visa_12345", "tok_4242424242424241"):  # last: fails Luhn
        charge = validate_charge(ChargeRequest("ord_1", TenderType.CARD, 100, USD, None, token))
        assert charge.card_token == token


async def test_capture_is_idempotent_and_keeps_no_card_data(infra: Infra) -> None:
    async with serve_in_process("payment", infra) as svc:
        stub = payment_pb2_grpc.PaymentServiceStub(svc.channel)
        request = payment_pb2.AuthorizeAndCaptureRequest(
            request_id="ord_1/payment",
            order_id="ord_1",
            tender_type=payment_pb2.TENDER_TYPE_CARD,
            amount=money_pb2.Money(amount=6040, currency=USD),
            card_token="tok_mastercard",
        )
        md = (("x-merchant-id", "mer_a"),)
        first = await stub.AuthorizeAndCapture(request, metadata=md, timeout=5)
        again = await stub.AuthorizeAndCapture(request, metadata=md, timeout=5)
        assert again == first
        assert first.payment.card_summary == "mastercard •••• 4444"
        assert first.payment.status == payment_pb2.PAYMENT_STATUS_CAPTURED

        with pytest.raises(grpc.aio.AioRpcError) as err:
            await stub.GetPayment(
                payment_pb2.GetPaymentRequest(id=first.payment.id),
                metadata=(("x-merchant-id", "mer_b"),),
                timeout=5,
            )
        assert err.value.code() == grpc.StatusCode.NOT_FOUND

        with pytest.raises(grpc.aio.AioRpcError) as err:
            await stub.AuthorizeAndCapture(
                payment_pb2.AuthorizeAndCaptureRequest(
                    request_id="r-card-number",
                    order_id="ord_2",
                    tender_type=payment_pb2.TENDER_TYPE_CARD,
                    amount=money_pb2.Money(amount=100, currency=USD),
                    card_token="4111111111111111",
                ),
                metadata=md,
                timeout=5,
            )
        assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT
        assert read_error(err.value).reason == "card_number_not_allowed"
        assert [v.field for v in read_error(err.value).violations] == ["card_token"]

        with psycopg.connect(svc.database_url) as conn:
            dump = " ".join(
                str(row)
                for table in ("payments", "outbox", "processed_requests")
                for row in conn.execute(f"SELECT * FROM {table}").fetchall()  # noqa: S608
            )
        assert "tok_mastercard" not in dump
        assert "4111111111111111" not in dump
        assert dump.count(first.payment.id) >= 1
