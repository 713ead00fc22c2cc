"""Gift cards: stored value and its ledger. Plain Python: no storage or transport here.

The invariants every rule here keeps, whatever the order of requests:
  balance >= 0, and balance <= the merchant's maximum after any load
  balance == the sum of the card's activities (each signed: value in positive, out negative)
  a deactivated card gives no value out, ever again, and takes none in but a payment's
  refund or a void's release (the customer's money going back where it was taken from, on
  the card's ledger).
A code is a bearer secret: the domain sees it only long enough to normalise it; storage keeps a
keyed hash and the last four characters (`CodeHasher` in the adapters), and no message or error
here ever repeats it.
"""

from __future__ import annotations

import re
import secrets
from dataclasses import dataclass
from datetime import datetime
from enum import Enum

from pos_kit.errors import Conflict, FieldViolation, InvalidArgument, raise_if, require
from pos_kit.money import MoneyError, check_currency
from pos_kit.text import holds_card_number

# Generated codes: 16 characters from an alphabet without look-alikes (0/O, 1/I/L, U/V), about
# 78 bits, printed in groups of four. Far beyond guessing at any rate the gateway allows.
_ALPHABET = "ABCDEFGHJKMNPQRSTWXYZ23456789"
_CODE_LENGTH = 16
# A merchant's pre-printed codes: long enough that guessing stays hopeless, and within what the
# payment tender accepts (letters, digits, '-' and '_'). The length that counts is the code's
# as it is matched (`normalize_code`: without dashes or spaces), and only its letters and digits
# make it hard to guess: at least MIN_CODE_CHARS of them.
_SUPPLIED = re.compile(r"[A-Za-z0-9_-]{1,64}")
MIN_CODE_CHARS = 8
SUPPLIED_CODE_RULE = (
    "must be at most 64 letters, digits, '-' or '_', at least 8 of them letters or digits"
)
MAX_REASON = 200
MAX_REFERENCE = 128
MAX_ID = 64
# The service's default for a merchant that set none: 2,000.00 in a two-decimal currency.
DEFAULT_MAX_BALANCE = 200_000
# No card may hold more than this whatever a merchant asks (keeps every sum far from int64).
CEILING = 10**12


class GiftCardStatus(Enum):
    ACTIVE = "active"
    DEACTIVATED = "deactivated"


class ActivityKind(Enum):
    ACTIVATE = "activate"
    LOAD = "load"
    REDEEM = "redeem"
    REFUND = "refund"
    ADJUST = "adjust"
    DEACTIVATE = "deactivate"


class IssueReason(Enum):
    SALE = "sale"
    STORE_CREDIT = "store_credit"  # a return without a receipt
    PROMOTIONAL = "promotional"


def generate_code() -> str:
    body = "".join(secrets.choice(_ALPHABET) for _ in range(_CODE_LENGTH))
    return "-".join(body[i : i + 4] for i in range(0, _CODE_LENGTH, 4))


def normalize_code(code: str, field_name: str = "code") -> str:
    """The code as it is hashed: without dashes or spaces, upper case, so a code read aloud or
    typed in groups finds its card. A malformed code is refused without being repeated."""
    cleaned = code.replace("-", "").replace(" ", "").upper()
    raise_if(
        require(
            bool(cleaned)
            and len(cleaned) <= 64
            and cleaned.replace("_", "").isalnum()
            and cleaned.isascii(),
            field_name,
            "must be a gift card code: letters, digits, '-' or '_'",
        )
    )
    return cleaned


def hard_to_guess(normalised: str) -> bool:
    """Whether a normalised code has letters and digits enough to be a card's: one with fewer
    (a pre-printed code accepted before the rule) is answered as a code no card has."""
    return sum(c.isalnum() for c in normalised) >= MIN_CODE_CHARS


def validate_supplied_code(code: str) -> str:
    violations = require(
        _SUPPLIED.fullmatch(code) is not None and hard_to_guess(code),
        "code",
        SUPPLIED_CODE_RULE,
    )
    violations += require(not holds_card_number(code), "code", "must not be a card number")
    raise_if(violations)
    return normalize_code(code)


def validate_money(field_name: str, amount: int, currency: str, *, signed: bool = False) -> None:
    violations: list[FieldViolation] = []
    try:
        check_currency(currency)
    except MoneyError:
        violations.append(FieldViolation(f"{field_name}.currency", "must be an ISO 4217 code"))
    if signed:
        violations += require(amount != 0, f"{field_name}.amount", "must not be zero")
    else:
        violations += require(amount > 0, f"{field_name}.amount", "must be positive")
    violations += require(abs(amount) <= CEILING, f"{field_name}.amount", "is too large")
    raise_if(violations)


def validate_text(field_name: str, value: str, limit: int) -> list[FieldViolation]:
    out = require(len(value) <= limit, field_name, f"must be at most {limit} characters")
    out += require(not holds_card_number(value), field_name, "must not hold a card number")
    return out


@dataclass
class Activity:
    id: str
    gift_card_id: str
    kind: ActivityKind
    amount: int  # signed
    balance_after: int
    currency: str
    reference: str = ""
    location_id: str = ""
    created_at: datetime | None = None


@dataclass
class GiftCard:
    id: str
    code_last4: str
    currency: str
    balance: int = 0
    status: GiftCardStatus = GiftCardStatus.ACTIVE
    customer_id: str = ""
    order_id: str = ""
    order_line_id: str = ""
    reason: IssueReason = IssueReason.SALE
    location_id: str = ""
    version: int = 1
    created_at: datetime | None = None
    updated_at: datetime | None = None

    def _open(self) -> None:
        if self.status is not GiftCardStatus.ACTIVE:
            raise Conflict("the gift card is deactivated", "gift_card_inactive")

    def in_its_currency(self, currency: str) -> None:
        """`currency` is the card's, or a 400 `currency_mismatch` naming amount.currency: asked
        first, so a refusal for the state of the card never hides the request's mistake."""
        self._same_currency(currency)

    def _same_currency(self, currency: str, field_name: str = "amount") -> None:
        if currency != self.currency:
            raise InvalidArgument(
                "the amount is not in the card's currency",
                [FieldViolation(f"{field_name}.currency", f"must be {self.currency}")],
                "currency_mismatch",
            )

    def _move(self, new_id: str, kind: ActivityKind, amount: int, ref: str, loc: str) -> Activity:
        self.balance += amount
        assert self.balance >= 0  # every caller checked first; a breach is a bug, not a refusal
        return Activity(new_id, self.id, kind, amount, self.balance, self.currency, ref, loc)

    def activate(self, new_id: str, amount: int, max_balance: int) -> Activity:
        if amount > max_balance:
            raise _above_maximum(max_balance, max_balance)
        return self._move(new_id, ActivityKind.ACTIVATE, amount, self.order_id, self.location_id)

    def load(
        self, new_id: str, amount: int, currency: str, max_balance: int, ref: str, loc: str
    ) -> Activity:
        self._same_currency(currency)
        self._open()
        if self.balance + amount > max_balance:
            raise _above_maximum(max_balance, max_balance - self.balance)
        return self._move(new_id, ActivityKind.LOAD, amount, ref, loc)

    def redeem(
        self, new_id: str, amount: int, currency: str, partial: bool, ref: str, loc: str
    ) -> Activity:
        """Take `amount`, or with `partial` as much of it as the balance covers."""
        self._same_currency(currency)
        self._open()
        taken = min(amount, self.balance) if partial else amount
        if taken > self.balance or taken == 0:
            refused = Conflict("the gift card's balance does not cover it", "insufficient_funds")
            refused.violations = [
                FieldViolation("amount.amount", f"must be at most {self.balance}")
            ]
            raise refused
        return self._move(new_id, ActivityKind.REDEEM, -taken, ref, loc)

    def refund(
        self,
        new_id: str,
        amount: int,
        currency: str,
        ref: str,
        loc: str,
        max_balance: int | None = None,
        *,
        of_a_payment: bool = False,
    ) -> Activity:
        """Value given back to the card it was taken from. A payment's refund is not held to
        the maximum (it only returns what the card held before, and never more than the
        payment took); one asked directly of the card (`max_balance` given) is, as a load is:
        nothing bounds what it returns but the maximum.

        A payment's refund (`of_a_payment`) goes back to a card deactivated since too: the
        card stays deactivated and its ledger records the refund, its balance then what it
        was given back (for the merchant to reissue), as a refund to a closed bank card is
        the issuer's to settle. Declining it lost the customer's refund: a return paid with
        the card could not complete. Nothing else moves value on a deactivated card."""
        self._same_currency(currency)
        if not of_a_payment:
            self._open()
        if max_balance is not None and self.balance + amount > max_balance:
            raise _above_maximum(max_balance, max_balance - self.balance)
        return self._move(new_id, ActivityKind.REFUND, amount, ref, loc)

    def adjust(
        self, new_id: str, amount: int, currency: str, max_balance: int, why: str
    ) -> Activity:
        self._same_currency(currency)
        self._open()
        if self.balance + amount < 0:
            refused = Conflict(
                "an adjustment may not take the balance below zero", "insufficient_funds"
            )
            refused.violations = [
                FieldViolation("amount.amount", f"must be at least {-self.balance}")
            ]
            raise refused
        if amount > 0 and self.balance + amount > max_balance:
            raise _above_maximum(max_balance, max_balance - self.balance)
        return self._move(new_id, ActivityKind.ADJUST, amount, why, "")

    def deactivate(self, new_id: str, why: str) -> Activity:
        self._open()
        self.status = GiftCardStatus.DEACTIVATED
        return self._move(new_id, ActivityKind.DEACTIVATE, -self.balance, why, "")


def _above_maximum(max_balance: int, room: int) -> Conflict:
    """The card would hold more than the merchant's maximum: the amount asked is at fault,
    named with what the card has room for (`room`), as a refund beyond what it spent is."""
    refused = Conflict(
        f"a gift card may hold at most {max_balance} minor units",
        "gift_card_balance_limit",
        {"max_balance": str(max_balance)},
    )
    refused.violations = [FieldViolation("amount.amount", f"must be at most {max(room, 0)}")]
    return refused


@dataclass(frozen=True)
class CodeReservation:
    """A pre-printed code held for an order's line until its card is activated (see
    `service.gift_cards.reserve_code`). `live`: not expired yet, as the database's clock
    reads it."""

    order_id: str
    order_line_id: str
    expires_at: datetime
    live: bool

    def holds_for(self, order_id: str, order_line_id: str) -> bool:
        return (self.order_id, self.order_line_id) == (order_id, order_line_id)


# How long a reservation lasts when the caller names no time, and the most it may ask.
DEFAULT_RESERVATION_SECONDS = 3600
MAX_RESERVATION_SECONDS = 7 * 86400


@dataclass(frozen=True)
class CardFilters:
    """What narrows a list of cards: each one set must hold ("" / None: any)."""

    customer_id: str = ""
    location_id: str = ""
    status: GiftCardStatus | None = None
    order_id: str = ""


@dataclass(frozen=True)
class GiftCardActivityCreated:
    """gift_card.activity_created: the whole card after the activity (never its code)."""

    card: GiftCard
    activity: Activity


@dataclass(frozen=True)
class GiftCardUpdated:
    """gift_card.updated: a new version of the card that wrote no activity (its customer
    merged away: the survivor's now), the whole card at it (never its code)."""

    card: GiftCard


@dataclass
class GiftCardSettings:
    max_balance: int = DEFAULT_MAX_BALANCE
    updated_at: datetime | None = None
    # Bumped by every change; 1 while the service's defaults apply.
    version: int = 1


def validate_max_balance(value: int) -> int:
    raise_if(require(0 < value <= CEILING, "max_balance", f"must be between 1 and {CEILING}"))
    return value


EVENTS = (GiftCardActivityCreated, GiftCardUpdated)
