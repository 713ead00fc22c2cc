"""The payment domain's rules, without storage or transport."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from pos_kit.errors import Conflict, InvalidArgument
from pos_payment.domain.model import (
    APPROVED,
    UNKNOWN,
    ChargeRequest,
    Outcome,
    Payment,
    PaymentAuthorized,
    PaymentCaptured,
    PaymentFailed,
    PaymentStatus,
    PaymentVoided,
    Refund,
    TenderType,
    plan_refund,
    validate_amount,
    validate_charge,
)

USD = "USD"
NOW = datetime(2026, 1, 1, tzinfo=UTC)


def card(amount: int = 1000, capture: bool = True, tip: int = 0) -> Payment:
    charge = validate_charge(
        ChargeRequest("ord_1", TenderType.CARD, amount, USD, None, "tok_visa", capture=capture,
                      tip=(tip, USD) if tip else None)
    )  # fmt: skip
    return charge.new_payment(f"pay_{amount}_{capture}", "mer_a/r")


def authorized(amount: int = 1000) -> Payment:
    payment = card(amount, capture=False)
    payment.settle_authorization(APPROVED)
    return payment


def captured(amount: int, payment_id: str) -> Payment:
    payment = card(amount)
    payment.id = payment_id
    payment.settle_authorization(APPROVED)
    return payment


# --- charges -------------------------------------------------------------------------------


def test_cash_gives_change_on_the_total_with_the_tip() -> None:
    charge = validate_charge(
        ChargeRequest("ord_1", TenderType.CASH, 1840, USD, (2000, USD), "", tip=(100, USD))
    )
    payment = charge.new_payment("pay_1", "k")
    assert (payment.total, payment.change_due) == (1940, 60)
    assert charge.capture


@pytest.mark.parametrize(
    ("tender", "amount", "cash", "token", "field"),
    [
        (TenderType.CASH, 1000, 500, "", "cash_tendered.amount"),
        (TenderType.CASH, 1000, None, "", "cash_tendered"),
        (TenderType.CARD, 0, None, "tok_visa", "amount.amount"),
        (TenderType.CARD, 100, None, "not-a-token", "card_token"),
        (None, 100, None, "tok_visa", "tender_type"),
        (TenderType.CARD, 100, 100, "tok_visa", "cash_tendered"),
        (TenderType.CASH, 100, 100, "tok_visa", "card_token"),
        (TenderType.GIFT_CARD, 100, None, "", "gift_card_code"),
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


@pytest.mark.parametrize(
    ("amount", "tip", "field"),
    [(10**12 + 1, None, "amount.amount"), (10**12, (1, USD), "tip.amount"),
     (6 * 10**11, (5 * 10**11, USD), "tip.amount")],
)  # fmt: skip
def test_a_charge_past_the_money_ceiling_is_a_field_error(
    amount: int, tip: tuple[int, str] | None, field: str
) -> None:
    """The amount, and the amount with its tip (what the card is charged), are at most 10^12
    minor units, as a terminal checkout's are."""
    with pytest.raises(InvalidArgument) as err:
        validate_charge(ChargeRequest("ord_1", TenderType.CARD, amount, USD, None, "tok_visa",
                                      tip=tip))  # fmt: skip
    assert [v.field for v in err.value.violations] == [field]
    charge = validate_charge(
        ChargeRequest("ord_1", TenderType.CARD, 10**12 - 5, USD, None, "tok_visa", tip=(5, USD))
    )
    assert (charge.amount.amount, charge.tip) == (10**12 - 5, 5)


def test_every_violation_is_reported_at_once() -> None:
    with pytest.raises(InvalidArgument) as err:
        validate_charge(ChargeRequest("", None, -5, "usd", None, ""))
    fields = {v.field for v in err.value.violations}
    assert {"order_id", "tender_type", "amount.amount", "amount.currency"} <= fields


def test_a_standalone_payment_names_a_reference_instead_of_an_order() -> None:
    charge = validate_charge(
        ChargeRequest("", TenderType.EXTERNAL, 500, USD, None, "", reference="INV-7",
                      external_reference="cheque 001245")
    )  # fmt: skip
    assert (charge.order_id, charge.reference, charge.capture) == ("", "INV-7", True)
    with pytest.raises(InvalidArgument) as err:
        validate_charge(ChargeRequest("", TenderType.EXTERNAL, 500, USD, None, "", capture=False))
    assert {v.field for v in err.value.violations} == {"order_id", "capture"}


@pytest.mark.parametrize(
    "token",
    ["4242424242424242", "4242-4242-4242-4242", "4242 4242 4242 4242", "tok_4242424242424242"],
)
def test_a_card_number_anywhere_is_refused_by_the_kit_rule(token: str) -> None:
    for tender, cash in ((TenderType.CARD, None), (TenderType.CASH, (100, USD))):
        with pytest.raises(InvalidArgument) as err:
            validate_charge(ChargeRequest("ord_1", tender, 100, USD, cash, token))
        assert err.value.code == "card_number_not_allowed"
        assert "card_token" in [v.field for v in err.value.violations]
        assert token not in str(err.value) + repr(err.value.violations)
    with pytest.raises(InvalidArgument) as err:
        validate_charge(ChargeRequest("ord_1", TenderType.GIFT_CARD, 100, USD, None, "",
                                      gift_card_code=token))  # fmt: skip
    assert err.value.code == "card_number_not_allowed"


def test_tokens_that_only_look_numeric_are_not_card_numbers() -> None:
    for token in ("tok_visa", "tok_visa_12345", "tok_4242424242424241"):  # last: fails Luhn
        charge = validate_charge(ChargeRequest("ord_1", TenderType.CARD, 100, USD, None, token))
        assert charge.card_token == token


# --- the processor's answers -----------------------------------------------------------------


def test_an_in_store_sale_is_authorised_and_captured_in_one_answer() -> None:
    payment = card(1000, tip=150)
    events = payment.settle_authorization(Outcome(True, "sbx_1", "visa", "4242"))
    assert [type(e) for e in events] == [PaymentAuthorized, PaymentCaptured]
    assert (payment.status, payment.authorized, payment.captured) == (
        PaymentStatus.CAPTURED,
        1150,
        1150,
    )


def test_a_decline_fails_with_its_code_and_an_unknown_answer_changes_nothing() -> None:
    payment = card()
    assert payment.settle_authorization(UNKNOWN) == []
    assert payment.status is PaymentStatus.PENDING
    events = payment.settle_authorization(Outcome(False, decline_code="card_declined"))
    assert [type(e) for e in events] == [PaymentFailed]
    assert (payment.status, payment.decline_code) == (PaymentStatus.FAILED, "card_declined")
    assert payment.settle_authorization(APPROVED) == []  # final: nothing moves it again


def test_captures_in_flight_count_against_what_is_left() -> None:
    payment = authorized(1000)
    assert payment.reserve_capture(600, NOW) == 600
    with pytest.raises(Conflict) as err:
        payment.reserve_capture(401, NOW)
    assert (err.value.code, err.value.metadata) == (
        "amount_exceeds_authorization",
        {"capturable": "400"},
    )
    assert payment.reserve_capture(None, NOW) == 400
    with pytest.raises(Conflict) as err:
        payment.reserve_void()
    assert err.value.code == "capture_in_progress"


def test_a_capture_beyond_what_is_left_names_the_amount() -> None:
    payment = authorized(1000)
    with pytest.raises(Conflict) as err:
        payment.reserve_capture(1001, NOW)
    assert [(v.field, v.description) for v in err.value.violations] == [
        ("amount", "must be at most 1000, what is left of the authorisation")
    ]
    payment.settle_capture(payment.reserve_capture(None, NOW), APPROVED)
    # Captured in full: nothing is left, whatever the amount (refund it instead).
    for amount in (None, 1):
        with pytest.raises(Conflict) as err:
            payment.reserve_capture(amount, NOW)
        assert (err.value.code, err.value.violations) == ("payment_captured", [])


def test_a_capture_past_the_window_is_refused() -> None:
    payment = authorized()
    payment.expires_at = NOW
    with pytest.raises(Conflict) as err:
        payment.reserve_capture(10, NOW + timedelta(seconds=1))
    assert err.value.code == "authorization_expired"


def test_a_void_after_partial_captures_releases_the_rest_and_keeps_the_captures() -> None:
    payment = authorized(1000)
    payment.settle_capture(payment.reserve_capture(300, NOW), APPROVED)
    with pytest.raises(Conflict) as err:
        payment.reserve_void()  # not unless the rest is asked for: refunded instead
    assert err.value.code == "payment_captured" and not payment.voiding
    left = payment.reserve_void(uncaptured_rest=True)
    events = payment.settle_void(left, APPROVED, "requested")
    assert [type(e) for e in events] == [PaymentVoided]
    assert (payment.status, payment.captured, payment.voided) == (PaymentStatus.CAPTURED, 300, 700)
    with pytest.raises(Conflict):
        payment.reserve_capture(None, NOW)


# --- refunds -------------------------------------------------------------------------------


def test_a_refund_spreads_from_the_last_tender_taken_backwards() -> None:
    first, second, third = captured(2000, "pay_1"), captured(1500, "pay_2"), captured(3000, "pay_3")
    plans = plan_refund([first, second, third], 4000, {})
    assert [(p.payment.id, p.amount) for p in plans] == [("pay_3", 3000), ("pay_2", 1000)]
    everything = plan_refund([first, second, third], None, {})
    assert sum(p.amount for p in everything) == 6500


def test_refunds_in_flight_count_against_what_is_left_to_refund() -> None:
    payment = captured(1000, "pay_1")
    payment.refunding = 700
    with pytest.raises(Conflict) as err:
        plan_refund([payment], 301, {})
    assert (err.value.code, err.value.metadata) == (
        "amount_exceeds_refundable",
        {"refundable": "300"},
    )


def test_named_amounts_go_to_their_tender_each_up_to_what_it_has() -> None:
    cash, visa = captured(1500, "pay_cash"), captured(3000, "pay_visa")
    plans = plan_refund([cash, visa], None, {"pay_cash": 1500})
    assert [(p.payment.id, p.amount) for p in plans] == [("pay_cash", 1500)]
    with pytest.raises(Conflict):
        plan_refund([cash, visa], None, {"pay_cash": 1501})
    with pytest.raises(InvalidArgument) as err:
        plan_refund([cash, visa], None, {"pay_cash": 1, "pay_other": 1})
    assert [v.field for v in err.value.violations] == ["amounts[1].payment_id"]


def test_a_voided_payment_has_nothing_to_refund() -> None:
    payment = authorized()
    payment.settle_void(payment.reserve_void(), APPROVED, "requested")
    with pytest.raises(Conflict) as err:
        plan_refund([payment], None, {})
    assert err.value.code == "not_captured"


def test_a_settled_refund_releases_its_reservation_either_way() -> None:
    payment = captured(1000, "pay_1")
    ok = Refund("rfd_1", "pay_1", "ord_1", TenderType.CARD, USD, 400)
    failed = Refund("rfd_2", "pay_1", "ord_1", TenderType.CARD, USD, 300)
    payment.refunding = 700
    ok.settle(payment, APPROVED)
    failed.settle(payment, Outcome(False, decline_code="processor_unavailable"))
    assert (payment.refunded, payment.refunding, failed.failure_code) == (
        400,
        0,
        "processor_unavailable",
    )
    assert ok.settle(payment, APPROVED) == []  # settled once, never again


def test_an_amount_in_another_currency_alone_is_the_code_asked_for() -> None:
    """A refund's amount in another currency than the payment's is `currency_mismatch`
    naming its currency; wrong in other ways too it is a plain invalid request naming every
    field, and a capture's (which asks for no code) stays one."""
    with pytest.raises(InvalidArgument) as err:
        validate_amount("amount", 10, "EUR", USD, mismatch=True)
    assert (err.value.code, [v.field for v in err.value.violations]) == (
        "currency_mismatch",
        ["amount.currency"],
    )
    with pytest.raises(InvalidArgument) as err:
        validate_amount("amount", 0, "EUR", USD, mismatch=True)
    assert (err.value.code, [v.field for v in err.value.violations]) == (
        "invalid_argument",
        ["amount.amount", "amount.currency"],
    )
    with pytest.raises(InvalidArgument) as err:
        validate_amount("amount", 10, "EUR", USD)
    assert err.value.code == "invalid_argument"
    assert validate_amount("amount", 10, USD, USD, mismatch=True) == 10
