"""Payments and tenders. Plain Python: no storage or transport here.

A card arrives only as a token from the tokenizer; what we keep of it is its brand and last
four digits. A card number (the kit's one rule, `pos_kit.text`) is refused before it goes
anywhere, and no error message ever repeats what was sent.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import datetime
from enum import Enum

from pos_kit.errors import FieldViolation, InvalidArgument, raise_if, require
from pos_kit.money import Money, MoneyError
from pos_kit.text import CARD_NUMBER_NOT_ALLOWED, holds_card_number

# Tokens are short opaque ASCII words; refusing anything else keeps stray personal data (names,
# track data, CVCs typed into the wrong box) out of the processor call.
_TOKEN = re.compile(r"tok_[A-Za-z0-9_]{1,60}")
MAX_ORDER_ID = 64

CARD_NUMBER_REFUSED = (
    "card numbers are never accepted: send the token the tokenizer returned (tok_...)"
)


class TenderType(Enum):
    CASH = "cash"
    CARD = "card"


class PaymentStatus(Enum):
    CAPTURED = "captured"
    DECLINED = "declined"


@dataclass
class Payment:
    id: str
    order_id: str
    tender_type: TenderType
    amount: Money
    status: PaymentStatus
    change_due: Money | None = None
    card_summary: str = ""
    decline_reason: str = ""
    created_at: datetime | None = None


@dataclass(frozen=True)
class PaymentCaptured:
    """Raised for captured payments only: a decline moved no money, so nobody needs to hear."""

    payment: Payment


@dataclass(frozen=True)
class ChargeRequest:
    """A charge as it arrived, before validation: plain values, nothing trusted yet."""

    order_id: str
    tender: TenderType | None
    amount: int
    currency: str
    cash_tendered: tuple[int, str] | None
    card_token: str


@dataclass(frozen=True)
class Charge:
    """A charge that passed every rule; only this reaches a processor or the database."""

    order_id: str
    tender: TenderType
    amount: Money
    cash_tendered: Money | None
    card_token: str


def card_summary(brand: str, last4: str) -> str:
    return f"{brand} •••• {last4}" if brand and last4 else ""


def _money(field: str, amount: int, currency: str) -> tuple[Money | None, list[FieldViolation]]:
    try:
        return Money(amount, currency), []
    except MoneyError as exc:
        return None, [FieldViolation(f"{field}.currency", str(exc))]


def _card_token_violations(tender: TenderType | None, token: str) -> list[FieldViolation]:
    # Checked first and whatever the tender: a card number is refused even on a cash sale.
    # "tok_4111111111111111" carries one too: the kit's rule finds it anywhere in the value.
    if holds_card_number(token):
        return [FieldViolation("card_token", CARD_NUMBER_REFUSED)]
    if tender is TenderType.CARD:
        return require(
            _TOKEN.fullmatch(token) is not None,
            "card_token",
            "must be a token from the tokenizer (tok_ followed by letters, digits or _)",
        )
    if tender is TenderType.CASH:
        return require(not token, "card_token", "must be empty for a cash tender")
    return []


def validate_charge(req: ChargeRequest) -> Charge:
    """Every rule at once, so a client fixes all its field errors in one round trip."""
    violations: list[FieldViolation] = []
    violations += require(bool(req.order_id.strip()), "order_id", "is required")
    violations += require(
        len(req.order_id) <= MAX_ORDER_ID, "order_id", f"is at most {MAX_ORDER_ID} characters"
    )
    violations += require(req.tender is not None, "tender_type", "must be CASH or CARD")
    amount, bad = _money("amount", req.amount, req.currency)
    violations += bad
    violations += require(req.amount > 0, "amount.amount", "must be greater than zero")
    cash: Money | None = None
    if req.tender is TenderType.CASH:
        if req.cash_tendered is None:
            violations.append(FieldViolation("cash_tendered", "is required for a cash tender"))
        else:
            cash, bad = _money("cash_tendered", *req.cash_tendered)
            violations += bad
            if cash is not None and amount is not None:
                violations += require(
                    cash.currency == amount.currency,
                    "cash_tendered.currency",
                    "must be the currency of the amount",
                )
                violations += require(
                    cash.currency != amount.currency or cash.amount >= amount.amount,
                    "cash_tendered.amount",
                    "must cover the amount",
                )
    elif req.tender is TenderType.CARD:
        violations += require(
            req.cash_tendered is None, "cash_tendered", "is only for a cash tender"
        )
    violations += _card_token_violations(req.tender, req.card_token)
    if any(v.description == CARD_NUMBER_REFUSED for v in violations):
        raise InvalidArgument(
            "card numbers are never accepted", violations, code=CARD_NUMBER_NOT_ALLOWED
        )
    raise_if(violations)
    assert req.tender is not None and amount is not None  # guaranteed by the checks above
    return Charge(req.order_id, req.tender, amount, cash, req.card_token)


def change_due(amount: Money, tendered: Money) -> Money:
    return tendered - amount
