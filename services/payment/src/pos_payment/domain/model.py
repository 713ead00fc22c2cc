"""Payments and tenders. Plain Python: no storage or transport here.

A card arrives only as a token from the tokenizer; what we keep of it is its brand and last
four digits. Anything that looks like a card number is refused before it goes anywhere.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import datetime
from enum import Enum

from pos_kit.errors import FieldViolation, raise_if, require
from pos_kit.money import Money

_CARD_NUMBER = re.compile(r"^[\d\s-]{12,23}$")


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
    payment: Payment


@dataclass(frozen=True)
class CardResult:
    approved: bool
    brand: str = ""
    last4: str = ""
    decline_reason: str = ""


def looks_like_card_number(value: str) -> bool:
    digits = re.sub(r"[\s-]", "", value)
    return bool(_CARD_NUMBER.match(value)) and 12 <= len(digits) <= 19 and digits.isdigit()


def validate_charge(
    order_id: str,
    tender: TenderType | None,
    amount: Money,
    cash_tendered: Money | None,
    card_token: str,
) -> None:
    violations: list[FieldViolation] = []
    violations += require(bool(order_id), "order_id", "is required")
    violations += require(amount.amount > 0, "amount.amount", "must be greater than zero")
    violations += require(tender is not None, "tender_type", "must be CASH or CARD")
    if tender is TenderType.CASH:
        violations += require(cash_tendered is not None, "cash_tendered", "is required for cash")
        if cash_tendered is not None:
            violations += require(
                cash_tendered.currency == amount.currency,
                "cash_tendered.currency",
                "must be the currency of the amount",
            )
            violations += require(
                cash_tendered.currency != amount.currency or cash_tendered.amount >= amount.amount,
                "cash_tendered.amount",
                "must cover the amount",
            )
    if tender is TenderType.CARD:
        if looks_like_card_number(card_token):
            violations.append(
                FieldViolation(
                    "card_token",
                    "card numbers are never accepted: send a token from the tokenizer",
                )
            )
        else:
            violations += require(
                card_token.startswith("tok_") and len(card_token) <= 64,
                "card_token",
                "must be a token from the tokenizer (tok_...)",
            )
    raise_if(violations)


def change_due(amount: Money, tendered: Money) -> Money:
    return tendered - amount
