"""Payments, captures, voids and refunds. Plain Python: no storage or transport here.

A card arrives only as a token from the tokenizer, a gift card by its code; what we keep of
either is a brand and the last four characters. A card number (the kit's one rule,
`pos_kit.text`) is refused before it goes anywhere, and no error message repeats what was sent.

Amounts are integer minor units in the payment's currency. The invariants every rule here
keeps, whatever the order of requests:
  captured + capturing (in flight) + voided <= authorized
  refunded + refunding (in flight) + credited + paid_out_of_band <= captured
where `credited` is captured money that pays for an exchange's new order (the returned goods'
credit, `ExchangeCredit`): it is not refundable from here, except by a refund that names that
new order (a return of its goods gives the credit back); and `paid_out_of_band` is captured
money a return's refund gave back another way (cash from a drawer, a transfer: an
`OutOfBandRefund`, when the processor refused the refund): never refundable from here again,
or the customer would be paid twice. And a payment in a final state
(voided, failed, or captured with nothing left to capture and everything refunded) never moves
again.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from datetime import datetime
from enum import Enum

from pos_kit.errors import (
    Conflict,
    FieldViolation,
    InvalidArgument,
    raise_if,
    require,
)
from pos_kit.money import Money, MoneyError
from pos_kit.text import CARD_NUMBER_NOT_ALLOWED, holds_card_number
from pos_payment.domain.processor import INSUFFICIENT_FUNDS

# Tokens are short opaque ASCII words; refusing anything else keeps stray personal data (names,
# track data, CVCs typed into the wrong box) out of the processor call.
_TOKEN = re.compile(r"tok_[A-Za-z0-9_]{1,60}")
_GIFT_CARD = re.compile(r"[A-Za-z0-9_-]{4,64}")
MAX_ID = 64
MAX_REFERENCE = 128
MAX_REASON = 500
MAX_REFUND_LINES = 200
# The most any amount of the API may be, in minor units (a sum of an amount and its tip too).
MAX_AMOUNT = 10**12

CARD_NUMBER_REFUSED = (
    "card numbers are never accepted: send the token the tokenizer returned (tok_...)"
)


class TenderType(Enum):
    CASH = "cash"
    CARD = "card"
    GIFT_CARD = "gift_card"
    EXTERNAL = "external"


# Tenders whose money moves through a processor port; the others are recorded as taken.
PROCESSED = (TenderType.CARD, TenderType.GIFT_CARD)


class PaymentStatus(Enum):
    PENDING = "pending"
    AUTHORIZED = "authorized"
    CAPTURED = "captured"
    VOIDED = "voided"
    FAILED = "failed"


class OperationStatus(Enum):
    PENDING = "pending"
    SUCCEEDED = "succeeded"
    FAILED = "failed"


class OperationKind(Enum):
    CAPTURE = "capture"
    VOID = "void"


RefundStatus = OperationStatus


@dataclass
class Operation:
    """A capture or a void sent to the processor under its own idempotency key."""

    id: str
    payment_id: str
    kind: OperationKind
    amount: int
    request_key: str
    status: OperationStatus = OperationStatus.PENDING
    reason: str = ""


@dataclass
class Payment:
    id: str
    order_id: str
    reference: str
    location_id: str
    tender_type: TenderType
    currency: str
    amount: int
    tip: int = 0
    status: PaymentStatus = PaymentStatus.PENDING
    capture_at_once: bool = True
    authorized: int = 0
    captured: int = 0
    voided: int = 0
    refunded: int = 0
    # In flight at the processor: reserved so that concurrent requests cannot overrun.
    capturing: int = 0
    refunding: int = 0
    voiding: bool = False
    # Set aside as exchange credits (see the module's invariants).
    credited: int = 0
    # Given back outside the processor (see the module's invariants).
    paid_out_of_band: int = 0
    change_due: int | None = None
    cash_tendered: int | None = None
    card_brand: str = ""
    card_last4: str = ""
    external_reference: str = ""
    decline_code: str = ""
    decline_reason: str = ""
    processor_reference: str = ""
    # The processor's idempotency key of the authorisation, kept to look it up.
    request_key: str = ""
    expires_at: datetime | None = None
    version: int = 1
    created_at: datetime | None = None
    updated_at: datetime | None = None

    @property
    def total(self) -> int:
        return self.amount + self.tip

    def money(self, amount: int) -> Money:
        return Money(amount, self.currency)

    @property
    def capturable(self) -> int:
        if self.status not in (PaymentStatus.AUTHORIZED, PaymentStatus.CAPTURED) or self.voiding:
            return 0
        return max(0, self.authorized - self.captured - self.capturing - self.voided)

    @property
    def refundable(self) -> int:
        return max(
            0,
            self.captured - self.refunded - self.refunding - self.credited - self.paid_out_of_band,
        )

    def not_refundable(self, field: str, wanted: int) -> Conflict:
        """The refusal of a refund of `wanted` from this payment, naming the field that asked
        it and, when money set aside for an exchange is why, saying so."""
        left = self.refundable
        reason = f"must be at most {left}, what payment {self.id} has left to refund"
        if self.credited:
            reason += (
                f" ({self.credited} of what it captured pays for an exchange's new order: a "
                "return of that order's goods gives it back)"
            )
        if self.paid_out_of_band:
            reason += (
                f" ({self.paid_out_of_band} of what it captured was refunded another way: a "
                "return's refund paid out of band)"
            )
        return exceeds_refundable(
            f"the refund asks for {wanted} of payment {self.id} but {left} is left to refund",
            left,
            [FieldViolation(field, reason)],
        )

    # --- the processor's answers -----------------------------------------------------------

    def settle_authorization(self, outcome: Outcome) -> list[object]:
        """Apply the processor's answer to a pending payment; the events it raises."""
        if self.status is not PaymentStatus.PENDING or outcome.unknown:
            return []
        self.card_brand = outcome.brand or self.card_brand
        self.card_last4 = outcome.last4 or self.card_last4
        self.processor_reference = outcome.reference
        if not outcome.approved:
            self.status = PaymentStatus.FAILED
            self.decline_code = outcome.decline_code or "declined"
            self.decline_reason = DECLINE_REASONS.get(self.decline_code, "the tender was declined")
            return [PaymentFailed(self)]
        self.authorized = self.total
        if self.capture_at_once:
            self.status = PaymentStatus.CAPTURED
            self.captured = self.total
            return [PaymentAuthorized(self), PaymentCaptured(self, self.total)]
        self.status = PaymentStatus.AUTHORIZED
        return [PaymentAuthorized(self)]

    def reserve_capture(self, amount: int | None, now: datetime) -> int:
        """Set `amount` (None: all that is left) aside for a capture in flight."""
        self._capture_allowed(now)
        if self.captured and self.captured >= self.authorized:
            # Nothing of it is left to capture whatever the amount: the payment's state refuses
            # it, as its void is refused (`amount_exceeds_authorization` asks for less, which
            # no amount would satisfy here).
            raise Conflict("the payment is captured in full: refund it instead", "payment_captured")
        left = self.capturable
        wanted = left if amount is None else amount
        if wanted <= 0 or wanted > left:
            # The amount asked (absent: all that is left) is at fault, named as a refund's is.
            refused = Conflict(
                f"the capture asks for {wanted} but {left} is left of the authorisation",
                "amount_exceeds_authorization",
                {"capturable": str(left)},
            )
            refused.violations = [
                FieldViolation("amount", f"must be at most {left}, what is left of the "
                               "authorisation")
            ]  # fmt: skip
            raise refused
        self.capturing += wanted
        return wanted

    def _capture_allowed(self, now: datetime) -> None:
        if self.tender_type not in PROCESSED:
            raise Conflict("a cash or external payment is captured when it is taken", "captured")
        if self.status is PaymentStatus.PENDING:
            raise Conflict("the payment's authorisation is not settled yet", "payment_pending")
        if self.status in (PaymentStatus.VOIDED, PaymentStatus.FAILED) or self.voided:
            raise Conflict(
                f"a {self.status.value} payment cannot be captured", f"payment_{self.status.value}"
            )
        if self.voiding:
            raise Conflict("the payment is being voided", "void_in_progress")
        if self.expires_at is not None and now >= self.expires_at:
            raise Conflict(
                "the authorisation expired: take the payment again", "authorization_expired"
            )

    def settle_capture(self, amount: int, outcome: Outcome) -> list[object]:
        self.capturing = max(0, self.capturing - amount)
        if not outcome.approved:
            return []
        self.captured += amount
        self.status = PaymentStatus.CAPTURED
        return [PaymentCaptured(self, amount)]

    def reserve_void(self, uncaptured_rest: bool = False) -> int:
        """What a void releases: everything not captured. A payment with anything captured is
        refused (`payment_captured`: refund it instead) unless `uncaptured_rest`: the rest of
        a payment captured in part, released on purpose (an order ending, the expiry sweep).
        Checked on the payment as read under its lock, so a capture that landed just before
        is seen."""
        if self.captured and not uncaptured_rest:
            raise Conflict(
                "the payment is captured: refund it instead (what its order never captures "
                "is voided when the order ends)",
                "payment_captured",
            )
        if self.status is PaymentStatus.PENDING:
            raise Conflict("the payment's authorisation is not settled yet", "payment_pending")
        if self.status in (PaymentStatus.VOIDED, PaymentStatus.FAILED) or self.voided:
            raise Conflict(f"the payment is already {self.status.value}", "payment_final")
        if self.voiding:
            raise Conflict("the payment is being voided", "void_in_progress")
        if self.capturing:
            raise Conflict("a capture of this payment is in progress", "capture_in_progress")
        left = self.authorized - self.captured
        if left <= 0:
            raise Conflict("the payment is captured in full: refund it instead", "payment_captured")
        self.voiding = True
        return left

    def settle_void(self, amount: int, outcome: Outcome, reason: str) -> list[object]:
        self.voiding = False
        if not outcome.approved:
            return []
        self.voided = amount
        if not self.captured:
            self.status = PaymentStatus.VOIDED
        return [PaymentVoided(self, reason)]


@dataclass(frozen=True)
class Outcome:
    """A processor's answer, in the domain's words. `unknown`: no answer came (a timeout)."""

    approved: bool
    reference: str = ""
    brand: str = ""
    last4: str = ""
    decline_code: str = ""
    unknown: bool = False


UNKNOWN = Outcome(False, unknown=True)
APPROVED = Outcome(True)

DECLINE_REASONS = {
    "card_declined": "the card was declined",
    "insufficient_funds": "the card has insufficient funds",
    "expired_card": "the card has expired",
    "processor_unavailable": "the processor could not be reached",
    "not_found": "the processor has no record of the payment",
}


@dataclass(frozen=True)
class RefundLine:
    sku: str
    quantity: int


@dataclass
class Refund:
    id: str
    payment_id: str
    order_id: str
    tender_type: TenderType
    currency: str
    amount: int
    status: OperationStatus = OperationStatus.PENDING
    reason: str = ""
    lines: tuple[RefundLine, ...] = ()
    failure_code: str = ""
    request_key: str = ""
    created_at: datetime | None = None
    updated_at: datetime | None = None
    # Drawn on the credit set aside for this exchange's new order (not on what is refundable).
    exchange_order_id: str = ""

    def settle(self, payment: Payment, outcome: Outcome) -> list[object]:
        """Apply the processor's answer; the payment's reservation becomes a refund or lapses
        (money drawn on an exchange's credit goes back to backing it)."""
        if self.status is not OperationStatus.PENDING or outcome.unknown:
            return []
        payment.refunding = max(0, payment.refunding - self.amount)
        if outcome.approved:
            payment.refunded += self.amount
            self.status = OperationStatus.SUCCEEDED
            return [RefundSucceeded(self, payment)]
        if self.exchange_order_id:
            payment.credited += self.amount
        self.status = OperationStatus.FAILED
        self.failure_code = outcome.decline_code or "refund_failed"
        # The payment changed too (what it set aside is released, or back on the exchange's
        # credit): announced as it now stands, as a refund that succeeds announces it.
        return [RefundFailed(self), PaymentUpdated(payment)]


class TerminalStatus(Enum):
    PENDING = "pending"
    COMPLETED = "completed"
    DECLINED = "declined"
    CANCELLED = "cancelled"
    TIMED_OUT = "timed_out"


@dataclass
class TerminalCheckout:
    """A card-present payment sent to a reader: pending until the reader answers."""

    id: str
    order_id: str
    reference: str
    location_id: str
    device_id: str
    currency: str
    amount: int
    tip: int
    deadline: datetime
    request_key: str
    status: TerminalStatus = TerminalStatus.PENDING
    payment_id: str = ""
    decline_code: str = ""
    created_at: datetime | None = None
    updated_at: datetime | None = None
    # The register and member that sent it (empty from the back office): the payment the
    # reader takes is theirs, and joins the shift open at that register when it is captured.
    register_id: str = ""
    staff_id: str = ""

    def payment(self, payment_id: str) -> Payment:
        """The payment the reader took (or was declined), pending its answer."""
        return Payment(
            id=payment_id,
            order_id=self.order_id,
            reference=self.reference,
            location_id=self.location_id,
            tender_type=TenderType.CARD,
            currency=self.currency,
            amount=self.amount,
            tip=self.tip,
            request_key=self.request_key,
        )

    def settle(
        self, answer: Outcome, payment: Payment | None, ended: TerminalStatus
    ) -> list[object]:
        """The reader's final word. With no `payment` it never took a card: the checkout
        `ended` so (cancelled at the reader or the register, or timed out)."""
        if self.status is not TerminalStatus.PENDING:
            return []
        events: list[object] = []
        if payment is None:
            self.status = ended
        else:
            events = payment.settle_authorization(answer)
            self.payment_id = payment.id
            self.decline_code = payment.decline_code
            approved = payment.status is PaymentStatus.CAPTURED
            self.status = TerminalStatus.COMPLETED if approved else TerminalStatus.DECLINED
        return [*events, TerminalCheckoutUpdated(self)]


# An authorisation window a merchant may choose: card networks hold an authorisation for days,
# not months, and less than a minute would void it before anyone could capture.
MIN_WINDOW_SECONDS = 60
MAX_WINDOW_SECONDS = 31 * 24 * 3600


@dataclass
class PaymentSettings:
    authorization_window_seconds: int
    updated_at: datetime | None = None
    # Bumped by every change; 1 while the service's defaults apply.
    version: int = 1


def validate_window(seconds: int) -> int:
    raise_if(
        require(
            MIN_WINDOW_SECONDS <= seconds <= MAX_WINDOW_SECONDS,
            "authorization_window_seconds",
            f"must be between {MIN_WINDOW_SECONDS} and {MAX_WINDOW_SECONDS} (31 days)",
        )
    )
    return seconds


# --- events --------------------------------------------------------------------------------


@dataclass(frozen=True)
class PaymentAuthorized:
    payment: Payment


@dataclass(frozen=True)
class PaymentCaptured:
    payment: Payment
    amount: int


@dataclass(frozen=True)
class PaymentVoided:
    payment: Payment
    reason: str


@dataclass(frozen=True)
class PaymentFailed:
    payment: Payment


@dataclass(frozen=True)
class PaymentUpdated:
    """A change no other event of the payment announces: its `credited` (an exchange's credit
    set aside or given back), its `paid_out_of_band`, or a failed refund's release of what it
    had set aside."""

    payment: Payment


@dataclass(frozen=True)
class RefundCreated:
    refund: Refund


@dataclass(frozen=True)
class RefundSucceeded:
    refund: Refund
    payment: Payment  # as it stands after the refund: its `refunded` counts it


@dataclass(frozen=True)
class RefundFailed:
    refund: Refund


@dataclass(frozen=True)
class TerminalCheckoutUpdated:
    checkout: TerminalCheckout


# Every domain event this service raises; each has an integration event (adapters/events.py).
EVENTS = (
    TerminalCheckoutUpdated,
    PaymentAuthorized,
    PaymentCaptured,
    PaymentVoided,
    PaymentFailed,
    PaymentUpdated,
    RefundCreated,
    RefundSucceeded,
    RefundFailed,
)


# --- requests and their rules ----------------------------------------------------------------


@dataclass(frozen=True)
class ChargeRequest:
    """A payment as it arrived, before validation: plain values, nothing trusted yet."""

    order_id: str
    tender: TenderType | None
    amount: int
    currency: str
    cash_tendered: tuple[int, str] | None
    card_token: str
    reference: str = ""
    location_id: str = ""
    tip: tuple[int, str] | None = None
    capture: bool = True
    gift_card_code: str = ""
    external_reference: str = ""
    cash_needs_open_shift: bool = False


@dataclass(frozen=True)
class Charge:
    """A payment request that passed every rule; only this reaches a processor or a table."""

    order_id: str
    tender: TenderType
    amount: Money
    cash_tendered: Money | None
    card_token: str
    reference: str = ""
    location_id: str = ""
    tip: int = 0
    capture: bool = True
    gift_card_code: str = ""
    external_reference: str = ""
    # Cash at a register only with a shift open there (TakePayment).
    cash_needs_open_shift: bool = False

    @property
    def source(self) -> str:
        """What the processor charges: the card's token or the gift card's code."""
        return self.card_token if self.tender is TenderType.CARD else self.gift_card_code

    def new_payment(self, payment_id: str, request_key: str) -> Payment:
        payment = Payment(
            id=payment_id,
            order_id=self.order_id,
            reference=self.reference,
            location_id=self.location_id,
            tender_type=self.tender,
            currency=self.amount.currency,
            amount=self.amount.amount,
            tip=self.tip,
            capture_at_once=self.capture,
            external_reference=self.external_reference,
            request_key=request_key,
        )
        if self.cash_tendered is not None:
            payment.cash_tendered = self.cash_tendered.amount
            payment.change_due = self.cash_tendered.amount - payment.total
        if self.tender is TenderType.GIFT_CARD:
            payment.card_brand, payment.card_last4 = "gift_card", self.gift_card_code[-4:]
        return payment


def card_summary(brand: str, last4: str) -> str:
    return f"{brand} •••• {last4}" if brand and last4 else ""


def _money(field: str, amount: int, currency: str) -> tuple[Money | None, list[FieldViolation]]:
    try:
        return Money(amount, currency), []
    except MoneyError as exc:
        return None, [FieldViolation(f"{field}.currency", str(exc))]


def _card_data(req: ChargeRequest) -> list[FieldViolation]:
    # Checked first and whatever the tender: a card number is refused even on a cash sale.
    # "tok_4111111111111111" carries one too: the kit's rule finds it anywhere in the value.
    return [
        FieldViolation(name, CARD_NUMBER_REFUSED)
        for name, value in (
            ("card_token", req.card_token),
            ("gift_card_code", req.gift_card_code),
            ("reference", req.reference),
            ("external_reference", req.external_reference),
        )
        if holds_card_number(value)
    ]


def _tender_violations(req: ChargeRequest) -> list[FieldViolation]:
    """Each tender takes its own fields and none of the others'."""
    tender = req.tender
    out: list[FieldViolation] = []
    if tender is TenderType.CARD:
        out += require(
            _TOKEN.fullmatch(req.card_token) is not None,
            "card_token",
            "must be a token from the tokenizer (tok_ followed by letters, digits or _)",
        )
    elif req.card_token:
        out.append(FieldViolation("card_token", "is only for a card tender"))
    if tender is TenderType.GIFT_CARD:
        out += require(
            _GIFT_CARD.fullmatch(req.gift_card_code) is not None,
            "gift_card_code",
            "must be a gift card code: 4 to 64 letters, digits, '-' or '_'",
        )
    elif req.gift_card_code:
        out.append(FieldViolation("gift_card_code", "is only for a gift card tender"))
    if tender is not TenderType.EXTERNAL and req.external_reference:
        out.append(FieldViolation("external_reference", "is only for an external tender"))
    if tender in (TenderType.CASH, TenderType.EXTERNAL) and not req.capture:
        out.append(FieldViolation("capture", f"a {tender.value} tender is captured when taken"))
    if tender is TenderType.CASH and req.cash_tendered is None:
        out.append(FieldViolation("cash_tendered", "is required for a cash tender"))
    if tender is not TenderType.CASH and req.cash_tendered is not None:
        out.append(FieldViolation("cash_tendered", "is only for a cash tender"))
    return out


def validate_charge(req: ChargeRequest) -> Charge:
    """Every rule at once, so a client fixes all its field errors in one round trip."""
    card_data = _card_data(req)
    if card_data:
        raise InvalidArgument(
            "card numbers are never accepted", card_data, code=CARD_NUMBER_NOT_ALLOWED
        )
    violations: list[FieldViolation] = []
    if req.order_id or not req.reference:
        violations += require(
            bool(req.order_id.strip()), "order_id", "is required (or a reference without it)"
        )
    violations += require(
        len(req.order_id) <= MAX_ID, "order_id", f"is at most {MAX_ID} characters"
    )
    violations += require(
        len(req.reference) <= MAX_REFERENCE, "reference", f"is at most {MAX_REFERENCE} characters"
    )
    violations += require(
        len(req.external_reference) <= MAX_REFERENCE,
        "external_reference",
        f"is at most {MAX_REFERENCE} characters",
    )
    violations += require(
        len(req.location_id) <= MAX_ID, "location_id", f"is at most {MAX_ID} characters"
    )
    violations += require(
        req.tender is not None, "tender_type", "must be cash, card, gift_card or external"
    )
    amount, bad = _money("amount", req.amount, req.currency)
    violations += bad
    violations += require(req.amount > 0, "amount.amount", "must be greater than zero")
    violations += require(
        req.amount <= MAX_AMOUNT, "amount.amount", f"must be at most {MAX_AMOUNT}"
    )
    tip = 0
    if req.tip is not None:
        tip_money, bad = _money("tip", *req.tip)
        violations += bad
        violations += require(req.tip[0] >= 0, "tip.amount", "must not be negative")
        violations += require(
            req.tip[1] == req.currency, "tip.currency", "must be the currency of the amount"
        )
        tip = tip_money.amount if tip_money is not None else 0
        # What the tender is charged is the sum (`Payment.total`), held to the same ceiling.
        violations += require(
            req.amount > MAX_AMOUNT or req.amount + tip <= MAX_AMOUNT,
            "tip.amount",
            f"must be at most {MAX_AMOUNT - req.amount}: the amount and the tip together "
            f"are at most {MAX_AMOUNT}",
        )
    cash: Money | None = None
    if req.cash_tendered is not None and req.tender is TenderType.CASH:
        cash, bad = _money("cash_tendered", *req.cash_tendered)
        violations += bad
        if cash is not None and amount is not None:
            violations += require(
                cash.currency == amount.currency,
                "cash_tendered.currency",
                "must be the currency of the amount",
            )
            violations += require(
                cash.currency != amount.currency or cash.amount >= amount.amount + tip,
                "cash_tendered.amount",
                "must cover the amount and the tip",
            )
    violations += _tender_violations(req)
    raise_if(violations)
    assert req.tender is not None and amount is not None  # guaranteed by the checks above
    return Charge(
        req.order_id,
        req.tender,
        amount,
        cash,
        req.card_token,
        req.reference,
        req.location_id,
        tip,
        req.capture or req.tender not in PROCESSED,
        req.gift_card_code,
        req.external_reference,
        req.cash_needs_open_shift,
    )


def validate_terminal_checkout(
    order_id: str, reference: str, location_id: str, device_id: str, amount: Money | None, tip: int
) -> None:
    violations: list[FieldViolation] = []
    violations += require(
        bool(order_id or reference), "order_id", "is required (or a reference without it)"
    )
    violations += require(len(order_id) <= MAX_ID, "order_id", f"is at most {MAX_ID} characters")
    violations += require(
        len(reference) <= MAX_REFERENCE, "reference", f"is at most {MAX_REFERENCE} characters"
    )
    violations += require(bool(location_id), "location_id", "is required")
    violations += require(
        len(location_id) <= MAX_ID, "location_id", f"is at most {MAX_ID} characters"
    )
    violations += require(bool(device_id), "device_id", "is required")
    violations += require(len(device_id) <= MAX_ID, "device_id", f"is at most {MAX_ID} characters")
    violations += require(
        reference == "" or bool(reference.strip()), "reference", "must hold more than spaces"
    )
    violations += require(
        amount is not None and amount.amount > 0, "amount.amount", "must be greater than zero"
    )
    violations += require(
        amount is None or amount.amount <= MAX_AMOUNT,
        "amount.amount",
        f"must be at most {MAX_AMOUNT}",
    )
    violations += require(tip >= 0, "tip.amount", "must not be negative")
    if amount is not None and amount.amount <= MAX_AMOUNT:
        # What the reader charges is the sum: the amount alone is within the ceiling here.
        violations += require(
            amount.amount + tip <= MAX_AMOUNT,
            "tip.amount",
            f"must be at most {MAX_AMOUNT - amount.amount}: the amount and the tip together "
            f"are at most {MAX_AMOUNT}",
        )
    raise_if(violations)


# An amount in another currency than the one it must be in (docs/problems.md).
CURRENCY_MISMATCH = "currency_mismatch"


def validate_amount(
    field: str, amount: int, currency: str, expected: str, *, mismatch: bool = False
) -> int:
    """An amount a capture or refund names: positive, in the payment's currency.

    `mismatch`: the currency alone at fault is `currency_mismatch` (a capture's and a
    refund's: the catalogue's code for an amount in another currency than the one it must be
    in, a gift card's tender the card's); wrong in other ways too, or without it, a plain
    invalid request naming every field."""
    violations = require(amount > 0, f"{field}.amount", "must be greater than zero")
    other_currency = require(
        currency == expected, f"{field}.currency", f"must be the payment's currency ({expected})"
    )
    if mismatch and other_currency and not violations:
        raise InvalidArgument(
            f"the amount is in {currency}; the payment is in {expected}",
            other_currency,
            CURRENCY_MISMATCH,
        )
    raise_if(violations + other_currency)
    return amount


def validate_refund_request(
    payment_id: str, order_id: str, reason: str, lines: list[RefundLine], named: int
) -> None:
    violations: list[FieldViolation] = []
    violations += require(
        bool(payment_id) != bool(order_id),
        "payment_id",
        "name exactly one of payment_id and order_id",
    )
    violations += require(
        len(payment_id) <= MAX_ID, "payment_id", f"is at most {MAX_ID} characters"
    )
    violations += require(len(order_id) <= MAX_ID, "order_id", f"is at most {MAX_ID} characters")
    violations += require(
        len(reason) <= MAX_REASON, "reason", f"is at most {MAX_REASON} characters"
    )
    violations += require(len(lines) <= MAX_REFUND_LINES, "lines", "at most 200 lines")
    for i, line in enumerate(lines):
        violations += require(bool(line.sku), f"lines[{i}].sku", "is required")
        violations += require(line.quantity > 0, f"lines[{i}].quantity", "must be at least 1")
    violations += require(named <= MAX_REFUND_LINES, "amounts", "at most 200 tenders")
    raise_if(violations)


# --- refunds over several tenders -------------------------------------------------------------


@dataclass(frozen=True)
class RefundPlan:
    payment: Payment
    amount: int


def exceeds_refundable(message: str, refundable: int, violations: list[FieldViolation]) -> Conflict:
    """More than is left to refund: a conflict with the current state (409), with what is left
    (`refundable`) and the field that asked too much."""
    refused = Conflict(message, "amount_exceeds_refundable", {"refundable": str(refundable)})
    refused.violations = violations
    return refused


def cash_needs_open_shift(register_id: str) -> Conflict:
    """Cash taken at a register with no shift open there (a sale's or an order's tender that
    asked for one, `Charge.cash_needs_open_shift`): it would count in no drawer. The same
    refusal the order service gives when it reads the shift first (409 `cash_needs_open_shift`
    naming `tender_type`): here it is the shift's close that came between."""
    refused = Conflict(
        f"cash goes in the drawer of register {register_id}, which has no shift open: open one "
        "first, or take another tender",
        "cash_needs_open_shift",
        {"register_id": register_id},
    )
    refused.violations = [FieldViolation("tender_type", "cash needs a shift open at the register")]
    return refused


CASH_NEEDS_SHIFT = "cash_refund_needs_open_shift"


def cash_refund_needs_open_shift(cash: list[str], register_id: str, named: list[str]) -> Conflict:
    """A refund giving cash back (to the payments `cash`) asked from the back office, or at a
    register with no shift open: the cash would leave a drawer and count in no shift, so the
    drawer would come up short with no record of why. The order service refuses a return the
    same way (409 `cash_refund_needs_open_shift`). The field at fault: the named tender's
    entry (`amounts[i].payment_id`), or `amount`, what the refund gives back."""
    why = (
        "a register with an open shift: it is made from the back office"
        if not register_id
        else f"a shift open at register {register_id}, which has none"
    )
    violations = [
        FieldViolation(
            f"amounts[{i}].payment_id",
            f"is a cash payment: cash given back leaves a drawer and needs {why}",
        )
        for i, payment_id in enumerate(named)
        if payment_id in cash
    ] or [
        FieldViolation(
            "amount",
            f"goes back to a cash payment ({cash[0]}), which needs {why}; refund it at a "
            "register with an open shift",
        )
    ]
    refused = Conflict(
        f"a cash refund is paid out of a register's drawer and needs {why}",
        CASH_NEEDS_SHIFT,
        {"register_id": register_id} if register_id else {},
    )
    refused.violations = violations
    return refused


def source_currency_mismatch(source_currency: str, currency: str) -> InvalidArgument:
    """A gift card tendered for a payment in another currency than its own: the request's
    mistake, answered as a redemption in another currency is (`currency_mismatch`), naming
    the card's field, before anything is taken. A decline (402) would say the card was
    refused, when a card in the payment's currency is all it takes."""
    refused = InvalidArgument(
        f"the gift card holds {source_currency}; the payment is in {currency}",
        [
            FieldViolation(
                "gift_card_code",
                f"is a {source_currency} gift card; the payment is in {currency}",
            )
        ],
        "currency_mismatch",
    )
    refused.metadata = {"gift_card_currency": source_currency, "currency": currency}
    return refused


def source_refused(code: str, balance: int) -> Conflict:
    """A gift card that cannot pay the tender (`processor.SourceRefused`): refused as its
    redemption is, naming the field at fault, before anything is taken. A decline (402)
    would say a processor refused a card; here the card's own ledger says why, and what to
    send instead: another tender (deactivated), or at most what it holds."""
    if code == INSUFFICIENT_FUNDS:
        refused = Conflict("the gift card's balance does not cover the amount", code)
        refused.violations = [
            FieldViolation("amount.amount", f"must be at most {balance}, what the gift card holds")
        ]
        return refused
    refused = Conflict("the gift card is deactivated: take another tender", code)
    refused.violations = [FieldViolation("gift_card_code", "is a deactivated gift card")]
    return refused


SHIFT_CURRENCY_MISMATCH = "shift_currency_mismatch"


def shift_currency_mismatch(
    register_id: str, shift_currency: str, currency: str, fields: list[str]
) -> Conflict:
    """Cash in `currency` taken or given back at a register whose open shift counts
    `shift_currency`: the drawer holds its shift's currency only, and its expected cash is
    counted in it, so that cash would be in no report. Refused before anything is written;
    `fields` are the request's fields that carry the currency."""
    refused = Conflict(
        f"the shift open at register {register_id} counts {shift_currency}; cash in "
        f"{currency} does not go in its drawer",
        SHIFT_CURRENCY_MISMATCH,
        {"register_id": register_id, "shift_currency": shift_currency, "currency": currency},
    )
    refused.violations = [
        FieldViolation(name, f"must be {shift_currency}, the currency of the register's open shift")
        for name in fields
    ]
    return refused


def plan_refund(
    payments: list[Payment],
    amount: int | None,
    named: dict[str, int],
    credit: ExchangeCredit | None = None,
) -> list[RefundPlan]:
    """Which tender gives back how much.

    `payments` are in the order they were taken. With `named` amounts each named tender gives
    back its own; otherwise `amount` (None: everything refundable) is spread from the last
    tender taken backwards, each up to what it has left to refund. Never beyond what was
    captured net of earlier refunds and of what is set aside as exchange credits: that is a
    conflict naming the field, and nothing is planned.

    `credit`: a return of an exchange's new order gives the credit back: each named amount is
    drawn on what that credit set aside on the payment, not on what is refundable.
    """
    by_id = {p.id: p for p in payments}
    if named:
        plans = []
        for i, (payment_id, wanted) in enumerate(named.items()):
            payment = by_id.get(payment_id)
            if payment is None:
                raise InvalidArgument(
                    "a named tender is not one of the refunded payments",
                    [FieldViolation(f"amounts[{i}].payment_id", "is not a payment of this order")],
                )
            if credit is None:
                _refundable_or_conflict(payment, wanted, f"amounts[{i}].amount")
            else:
                _drawable_or_conflict(payment, credit, wanted, f"amounts[{i}].amount")
            plans.append(RefundPlan(payment, wanted))
        return plans
    if credit is not None:
        raise InvalidArgument(
            "a refund of an exchange's credit names what each payment gives back",
            [FieldViolation("amounts", "is required with exchange_order_id")],
        )
    left = sum(p.refundable for p in payments)
    if not any(p.captured for p in payments):
        state = payments[0].status.value if len(payments) == 1 else "not captured"
        raise Conflict(f"nothing was captured to refund (the payment is {state})", "not_captured")
    wanted = left if amount is None else amount
    if wanted <= 0 or wanted > left:
        reason = f"must be at most {left}, what is left to refund"
        credited = sum(p.credited for p in payments)
        if credited:
            reason += (
                f" ({credited} of what was captured pays for an exchange's new order: a return "
                "of that order's goods gives it back)"
            )
        paid_out = sum(p.paid_out_of_band for p in payments)
        if paid_out:
            reason += (
                f" ({paid_out} of what was captured was refunded another way: a return's "
                "refund paid out of band)"
            )
        raise exceeds_refundable(
            f"the refund asks for {wanted} but {left} is left to refund",
            left,
            [FieldViolation("amount", reason)],
        )
    plans = []
    for payment in reversed(payments):
        share = min(wanted, payment.refundable)
        if share > 0:
            plans.append(RefundPlan(payment, share))
            wanted -= share
    return plans


def _refundable_or_conflict(payment: Payment, wanted: int, field: str = "amount") -> None:
    if not payment.captured:
        raise Conflict(
            f"nothing of payment {payment.id} was captured (it is {payment.status.value})",
            "not_captured",
        )
    if wanted > payment.refundable:
        raise payment.not_refundable(field, wanted)


def _drawable_or_conflict(
    payment: Payment, credit: ExchangeCredit, wanted: int, field: str
) -> None:
    """A refund giving an exchange's credit back: at most what that credit set aside on the
    payment (and what the payment still has set aside)."""
    left = min(credit.amounts.get(payment.id, 0), payment.credited)
    if wanted > left:
        raise exceeds_refundable(
            f"the refund asks for {wanted} of payment {payment.id} but {left} of the exchange "
            f"credit of order {credit.exchange_order_id} is set aside on it",
            left,
            [FieldViolation(field, f"must be at most {left}, what the credit set aside on it")],
        )


# --- exchange credits ---------------------------------------------------------------------------


class CreditStatus(Enum):
    APPLIED = "applied"
    RELEASED = "released"


@dataclass
class ExchangeCredit:
    """Money of an order's payments that pays for an exchange's new order, set aside on them
    (`Payment.credited`) so that no refund of the original order gives it back again. One per
    new order; `released` when the exchange was not made (or before it was ever set aside, so
    that a late request cannot set it aside after the exchange was undone)."""

    exchange_order_id: str
    order_id: str
    currency: str
    amounts: dict[str, int]  # payment id -> amount set aside, in the order asked
    status: CreditStatus = CreditStatus.APPLIED
    created_at: datetime | None = None
    updated_at: datetime | None = None


def validate_credit_request(
    order_id: str, exchange_order_id: str, named: list[tuple[str, int, str]]
) -> None:
    violations: list[FieldViolation] = []
    violations += require(bool(order_id), "order_id", "is required")
    violations += require(len(order_id) <= MAX_ID, "order_id", f"is at most {MAX_ID} characters")
    violations += require(bool(exchange_order_id), "exchange_order_id", "is required")
    violations += require(
        len(exchange_order_id) <= MAX_ID,
        "exchange_order_id",
        f"is at most {MAX_ID} characters",
    )
    violations += require(
        exchange_order_id != order_id, "exchange_order_id", "must be another order"
    )
    violations += require(bool(named), "amounts", "must name at least one payment")
    violations += require(len(named) <= MAX_REFUND_LINES, "amounts", "at most 200 payments")
    seen: set[str] = set()
    for i, (payment_id, amount, _) in enumerate(named):
        violations += require(bool(payment_id), f"amounts[{i}].payment_id", "is required")
        violations += require(payment_id not in seen, f"amounts[{i}].payment_id", "is named twice")
        seen.add(payment_id)
        violations += require(amount > 0, f"amounts[{i}].amount.amount", "must be more than 0")
    raise_if(violations)


def _named_payments(payments: list[Payment], named: list[tuple[str, int, str]]) -> None:
    """Each named payment one of the order's, its amount in the payment's currency (a 400
    naming the entry otherwise)."""
    by_id = {p.id: p for p in payments}
    for i, (payment_id, _, cur) in enumerate(named):
        payment = by_id.get(payment_id)
        if payment is None:
            raise InvalidArgument(
                "a named payment is not one of the order's",
                [FieldViolation(f"amounts[{i}].payment_id", "is not a payment of this order")],
            )
        raise_if(
            require(
                cur == payment.currency,
                f"amounts[{i}].amount.currency",
                f"must be the payment's currency ({payment.currency})",
            )
        )


def set_aside(
    payments: list[Payment],
    order_id: str,
    exchange_order_id: str,
    named: list[tuple[str, int, str]],
    source: ExchangeCredit | None = None,
) -> ExchangeCredit:
    """The credit, each named payment's amount set aside on it: all or nothing, each at most
    what the payment has left to refund.

    `order_id` may itself be an exchange's new order, paid (in part) by the credit `source`
    set aside for it: a named payment of another order is one of that credit's, and the amount
    is carried from it (at most what it has on the payment), staying set aside there."""
    _named_payments(payments, named)
    by_id = {p.id: p for p in payments}
    currency = payments[0].currency  # one at least: every named one is
    for i, (payment_id, amount, _) in enumerate(named):
        payment = by_id[payment_id]
        if payment.order_id == order_id:
            _refundable_or_conflict(payment, amount, f"amounts[{i}].amount")
        elif source is None or payment_id not in source.amounts:
            raise InvalidArgument(
                "a named payment is not one of the order's",
                [FieldViolation(f"amounts[{i}].payment_id", "is not a payment of this order")],
            )
        else:
            _drawable_or_conflict(payment, source, amount, f"amounts[{i}].amount")
    for payment_id, amount, _ in named:
        if by_id[payment_id].order_id == order_id:
            by_id[payment_id].credited += amount
        elif source is not None:
            source.amounts[payment_id] -= amount
    return ExchangeCredit(
        exchange_order_id,
        order_id,
        currency,
        {payment_id: amount for payment_id, amount, _ in named},
    )


def release(
    credit: ExchangeCredit, payments: list[Payment], source: ExchangeCredit | None = None
) -> None:
    """The exchange was not made: what the credit set aside is refundable again, and what it
    carried from the credit its order was paid with (`source`) goes back to that credit."""
    if credit.status is CreditStatus.APPLIED:
        for p in payments:
            amount = credit.amounts.get(p.id, 0)
            if p.order_id == credit.order_id:
                p.credited = max(0, p.credited - amount)
            elif source is not None and amount:
                source.amounts[p.id] = source.amounts.get(p.id, 0) + amount
    credit.status = CreditStatus.RELEASED


# --- refunds paid out of band ------------------------------------------------------------------

# How a refund the processor refused may be paid instead.
OUT_OF_BAND_TENDERS = (TenderType.CASH, TenderType.EXTERNAL)


@dataclass
class OutOfBandRefund:
    """A return's refund the processor refused, paid to the customer another way and settled
    so by a person: what was paid for each payment (`amounts`) and what of it each payment
    still had left to refund, set aside there (`Payment.paid_out_of_band`) so that no refund
    gives it back again. One per return. Cash at a register with an open shift is that shift's
    pay-out (`shift_id`, `movement_id`)."""

    return_id: str
    order_id: str
    currency: str
    tender: TenderType
    reference: str
    amounts: dict[str, int]  # payment id -> paid, in the order asked
    set_aside: dict[str, int]  # payment id -> set aside on it (at most what it had left)
    shift_id: str = ""
    movement_id: str = ""
    created_at: datetime | None = None

    @property
    def total(self) -> int:
        return sum(self.amounts.values())


def validate_out_of_band(
    order_id: str,
    return_id: str,
    named: list[tuple[str, int, str]],
    tender: TenderType | None,
    reference: str,
) -> TenderType:
    violations: list[FieldViolation] = []
    violations += require(bool(order_id), "order_id", "is required")
    violations += require(len(order_id) <= MAX_ID, "order_id", f"is at most {MAX_ID} characters")
    violations += require(bool(return_id), "return_id", "is required")
    violations += require(len(return_id) <= MAX_ID, "return_id", f"is at most {MAX_ID} characters")
    violations += require(
        tender in OUT_OF_BAND_TENDERS, "tender_type", "must be cash or external: how it was paid"
    )
    violations += require(
        len(reference) <= MAX_REFERENCE, "reference", f"is at most {MAX_REFERENCE} characters"
    )
    violations += require(bool(named), "amounts", "must name at least one payment")
    violations += require(len(named) <= MAX_REFUND_LINES, "amounts", "at most 200 payments")
    seen: set[str] = set()
    for i, (payment_id, amount, _) in enumerate(named):
        violations += require(bool(payment_id), f"amounts[{i}].payment_id", "is required")
        violations += require(payment_id not in seen, f"amounts[{i}].payment_id", "is named twice")
        seen.add(payment_id)
        violations += require(amount > 0, f"amounts[{i}].amount.amount", "must be more than 0")
    raise_if(violations)
    assert tender is not None
    return tender


def pay_out_of_band(
    payments: list[Payment],
    return_id: str,
    named: list[tuple[str, int, str]],
    tender: TenderType,
    reference: str,
    whole: bool = False,
) -> OutOfBandRefund:
    """The record, each named payment's amount set aside on it up to what it has left to
    refund. Not refused past that: the customer has the money already, and a payment refunded
    another way meanwhile (or with a refund in flight) has nothing more to give back of it.

    `whole` (the customer is not paid yet): a payment with less left than asked is refused,
    nothing written, naming what is left: that money went back to the customer another way,
    and paying it out too would pay them twice."""
    _named_payments(payments, named)
    by_id = {p.id: p for p in payments}
    if whole:
        short = [
            FieldViolation(
                f"amounts[{i}].amount",
                f"must be at most {max(0, by_id[payment_id].refundable)}, what payment "
                f"{payment_id} has left to refund (the rest went back another way)",
            )
            for i, (payment_id, amount, _) in enumerate(named)
            if amount > by_id[payment_id].refundable
        ]
        if short:
            left = sum(max(0, min(a, by_id[pid].refundable)) for pid, a, _ in named)
            raise exceeds_refundable(
                "the order's payments have less left to refund than the refund paid out of band "
                "would give back",
                left,
                short,
            )
    currency = payments[0].currency
    set_aside: dict[str, int] = {}
    for payment_id, amount, _ in named:
        payment = by_id[payment_id]
        kept = min(amount, payment.refundable)
        payment.paid_out_of_band += kept
        set_aside[payment_id] = kept
    return OutOfBandRefund(
        return_id,
        payments[0].order_id,
        currency,
        tender,
        reference,
        {payment_id: amount for payment_id, amount, _ in named},
        set_aside,
    )


@dataclass
class OrderPayments:
    order_id: str
    currency: str
    payments: list[Payment] = field(default_factory=list)

    @property
    def authorized(self) -> int:
        return sum(p.authorized - p.voided for p in self.payments)

    @property
    def captured(self) -> int:
        return sum(p.captured for p in self.payments)

    @property
    def refunded(self) -> int:
        return sum(p.refunded for p in self.payments)

    def balance_due(self, total: int) -> int:
        """What the tenders do not cover yet: authorised (net of voids) counts as covered."""
        return max(0, total - self.authorized)


@dataclass(frozen=True)
class CreatedWindow:
    """Created in [since, before): a day's or a shift's payments or refunds (each optional)."""

    since: datetime | None = None
    before: datetime | None = None
