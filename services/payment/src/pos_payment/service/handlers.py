"""Use cases of the payment service; the gRPC API and the background sweeps call these.

Every operation that asks a processor runs in three steps, so no transaction is open while the
processor answers (`pos_kit.servicer.across_calls`):

  read    one short transaction: check the rules, write the intent (a pending payment, a
          capture or refund with the amount set aside) under the processor idempotency key
  call    no connection held: ask the processor, with that key
  record  one short transaction: apply the answer, publish the events

A crash or a lost answer between the steps leaves the intent pending; the reconciler settles it
by looking the key up at the processor, never by asking for the money again. Amounts set aside
in `read` are what keeps concurrent captures and refunds from overrunning the payment.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
from collections.abc import Awaitable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, TypeVar

from pos_kit.errors import (
    Conflict,
    DomainError,
    FieldViolation,
    InvalidArgument,
    NotFound,
    Unavailable,
    named_by,
    raise_if,
    require,
)
from pos_kit.ids import new_id
from pos_kit.money import Money, MoneyError
from pos_kit.paging import PageRequest
from pos_payment.domain.model import (
    UNKNOWN,
    Charge,
    CreatedWindow,
    CreditStatus,
    ExchangeCredit,
    Operation,
    OperationKind,
    OperationStatus,
    OrderPayments,
    Outcome,
    OutOfBandRefund,
    Payment,
    PaymentSettings,
    PaymentStatus,
    PaymentUpdated,
    Refund,
    RefundCreated,
    RefundLine,
    RefundPlan,
    TenderType,
    TerminalCheckout,
    TerminalCheckoutUpdated,
    TerminalStatus,
    cash_needs_open_shift,
    cash_refund_needs_open_shift,
    pay_out_of_band,
    plan_refund,
    release,
    set_aside,
    shift_currency_mismatch,
    source_currency_mismatch,
    source_refused,
    validate_amount,
    validate_credit_request,
    validate_out_of_band,
    validate_refund_request,
    validate_terminal_checkout,
    validate_window,
)
from pos_payment.domain.processor import (
    ProcessorAnswer,
    ProcessorTimeout,
    ProcessorUnavailable,
    SourceCurrencyMismatch,
    SourceRefused,
    UnknownSource,
)
from pos_payment.domain.shifts import Movement, MovementKind
from pos_payment.service.gift_cards import unknown_code
from pos_payment.service.ports import NewUow, PaymentUnitOfWork, Processors, TerminalReader

# What a reader answers when the checkout was cancelled (at the reader or from the register).
CANCELLED_AT_READER = "cancelled"

log = logging.getLogger(__name__)
T = TypeVar("T")

# A tender amount as it arrived: minor units and currency, checked against the payment's.
Amount = tuple[int, str]


@dataclass(frozen=True)
class Policy:
    # How long a processor may take before its answer counts as lost (the payment: pending).
    processor_timeout: float = 10.0
    # An authorisation not captured within this is voided by the expiry sweep.
    authorization_window: timedelta = timedelta(days=7)
    # A reader that has not answered within this is cancelled: the checkout times out.
    terminal_timeout: timedelta = timedelta(minutes=5)


def request_key(merchant_id: str, request_id: str) -> str:
    """The processor idempotency key of a request: the same on every retry of it."""
    return f"{merchant_id}/{request_id}"


def refund_keys(merchant_id: str, request_id: str) -> str:
    """Where the processor keys of a refund request's refunds begin: each is this and its
    place, `<merchant>/refund:<digest>/<n:03d>`. The request id is digested (fixed length, no
    '/'), so these keys begin with no other request's prefix, and none is a request's own key
    (`<merchant>/<request id>`: a payment's, a capture's, a void's, a reader's), whose id,
    when it holds a '/', begins with the gateway's `key:` or a resource's id. Until 2026-12-05
    they were `<merchant>/<request id>/<n:03d>`: the keys of the request `<request id>/000`
    (an Idempotency-Key `k/000` after a refund under `k`, the gateway's `key:k/000` and
    `key:k`) and of every request whose id begins `<request id>/`, so a reader's checkout
    was answered with a refund's approval, and a refund request with another's refunds."""
    digest = hashlib.sha256(request_id.encode()).hexdigest()[:40]
    return f"{merchant_id}/refund:{digest}/"


def now() -> datetime:
    return datetime.now(UTC)


def _outcome(answer: ProcessorAnswer) -> Outcome:
    return Outcome(
        answer.approved, answer.reference, answer.brand, answer.last4, answer.decline_code
    )


async def ask(call: Awaitable[ProcessorAnswer], limit: float) -> Outcome:
    """The processor's answer; one that does not come in time is UNKNOWN (left pending).
    ProcessorUnavailable (never reached) and UnknownSource propagate to the caller."""
    try:
        return _outcome(await asyncio.wait_for(call, limit))
    except (TimeoutError, ProcessorTimeout):
        return UNKNOWN


def _found(found: T | None, resource: str, given: str) -> T:
    """What a get found; nothing (another merchant's id included) is a NotFound."""
    if found is None:
        raise NotFound(resource, given)
    return found


async def _payment(uow: PaymentUnitOfWork, payment_id: str, *, lock: bool = False) -> Payment:
    raise_if(require(bool(payment_id), "payment_id", "is required"))
    return _found(await uow.payments.get(payment_id, lock=lock), "payment", payment_id)


# --- taking a payment ----------------------------------------------------------------------


class TakePayment:
    """Authorise a tender, and capture it at once when the charge says so."""

    def __init__(
        self,
        charge: Charge,
        request_id: str,
        processors: Processors,
        new_uow: NewUow,
        policy: Policy,
        register_id: str = "",
    ) -> None:
        self.charge = charge
        self.request_id = request_id
        self.processors = processors
        self.new_uow = new_uow
        self.policy = policy
        # The register taking it (the call's; empty from the back office).
        self.register_id = register_id
        # The payment this request added, as it wrote it (`settle_payment`'s `known`).
        self.known: Payment | None = None

    async def read(self, uow: PaymentUnitOfWork) -> Payment:
        key = request_key(uow.merchant_id, self.request_id)
        # A re-run of a request whose first run crashed finds its pending payment again.
        existing = await uow.payments.by_request_key(key)
        if existing is not None:
            return existing
        shift = None
        if self.charge.tender is TenderType.CASH and self.register_id:
            # Cash goes in the drawer of the register's open shift (read with its share
            # lock, which a close waits for): only in that shift's currency.
            shift = await uow.out_of_band.open_shift_at(self.register_id)
            currency = self.charge.amount.currency
            if shift is not None and shift[1] != currency:
                raise shift_currency_mismatch(
                    self.register_id, shift[1], currency, ["amount.currency"]
                )
            if shift is None and self.charge.cash_needs_open_shift:
                # Read open by the caller, closed since: refused, nothing taken.
                raise cash_needs_open_shift(self.register_id)
        payment = self.charge.new_payment(new_id("pay"), key)
        events: list[object] = []
        if shift is not None:
            # Taken in this transaction, under the shift's share lock, so it joins that shift
            # before the lock is let go: a close either waits for it or comes first (and the
            # cash is refused above, or, not asked to need a shift, counts in none, as cash
            # taken at a register with no shift open does). Taken in `record` instead, a close
            # between the two counted it in no shift. Cash reaches no processor: its answer
            # is the recorded tender's, always taken.
            outcome = await ask(
                self.processors[TenderType.CASH].authorize(
                    self.charge.source,
                    payment.money(payment.total),
                    self.charge.capture,
                    payment.request_key,
                    payment_id=payment.id,
                ),
                self.policy.processor_timeout,
            )
            events = payment.settle_authorization(outcome)
        await uow.payments.add(payment)
        for event in events:
            uow.publish(event)
        self.known = payment
        return payment

    async def call(self, claim: object, payment: Payment) -> tuple[str, Outcome | None]:
        if payment.status is not PaymentStatus.PENDING:
            return payment.id, None
        processor = self.processors[payment.tender_type]
        try:
            outcome = await ask(
                processor.authorize(
                    self.charge.source,
                    payment.money(payment.total),
                    self.charge.capture,
                    payment.request_key,
                    payment_id=payment.id,
                ),
                self.policy.processor_timeout,
            )
        except UnknownSource:
            await self._forget(payment)
            if payment.tender_type is TenderType.GIFT_CARD:
                # A code no card has is the one answer a code look-up gets, the same for a
                # typo and another merchant's card (docs/problems.md, `resource_missing`),
                # naming the field that gave it; never the code itself.
                raise named_by(unknown_code(), ["gift_card_code"]) from None
            raise InvalidArgument(
                "the card token is not valid",
                [FieldViolation("card_token", "is not one the processor issued")],
            ) from None
        except SourceRefused as exc:
            # A gift card deactivated or holding less than the amount: nothing was taken, and
            # the same request id may be sent again for what the card can pay.
            await self._forget(payment)
            raise source_refused(exc.code, exc.balance) from None
        except SourceCurrencyMismatch as exc:
            # A gift card in another currency: nothing was taken, and the same request id may
            # be sent again with a card in the payment's currency.
            await self._forget(payment)
            raise source_currency_mismatch(exc.currency, payment.currency) from None
        except ProcessorUnavailable:
            if self.known is None:
                # A re-run: its first run crashed after adding the payment, maybe after the
                # processor authorised it. Never forgotten on this run's word: it stays
                # pending, as when an answer is lost, until the reconciler looks its key up.
                return payment.id, UNKNOWN
            # This run added it and this call did not reach the processor: nothing happened
            # there, the request may simply be sent again.
            await self._forget(payment)
            raise Unavailable(
                "the processor could not be reached; retry with the same request id",
                "processor_unavailable",
            ) from None
        return payment.id, outcome

    async def _forget(self, payment: Payment) -> None:
        async with self.new_uow() as uow:
            await uow.payments.forget(payment.id)
            await uow.commit()

    async def record(self, uow: PaymentUnitOfWork, outcome: tuple[str, Outcome | None]) -> Payment:
        payment_id, answer = outcome
        return await settle_payment(uow, payment_id, answer, self.policy, self.known)


async def settle_payment(
    uow: PaymentUnitOfWork,
    payment_id: str,
    answer: Outcome | None,
    policy: Policy,
    known: Payment | None = None,
) -> Payment:
    """Apply a processor's answer to a pending payment. Whoever settles it first (the request
    or the reconciler) wins; the other finds it settled and changes nothing.

    `known`: the payment as the caller added it. Settled and written back at once when its row
    is unchanged since (no locked read of it first); otherwise read locked, as for anyone."""
    if known is not None and answer is not None and known.id == payment_id:
        seen = known.version
        events = known.settle_authorization(answer)
        if events:
            if known.status is PaymentStatus.AUTHORIZED:
                known.expires_at = now() + await authorization_window(uow, policy)
            if await uow.payments.save_if_version(known, seen):
                for event in events:
                    uow.publish(event)
                return known
    payment = await _payment(uow, payment_id, lock=True)
    if answer is None:
        return payment
    events = payment.settle_authorization(answer)
    if events:
        if payment.status is PaymentStatus.AUTHORIZED:
            payment.expires_at = now() + await authorization_window(uow, policy)
        await uow.payments.save(payment)
        for event in events:
            uow.publish(event)
    return payment


async def authorization_window(uow: PaymentUnitOfWork, policy: Policy) -> timedelta:
    """The merchant's own window, or the service's."""
    chosen = await uow.settings.get()
    if chosen is None:
        return policy.authorization_window
    return timedelta(seconds=chosen.authorization_window_seconds)


async def get_settings(
    uow: PaymentUnitOfWork, policy: Policy, *, lock: bool = False
) -> PaymentSettings:
    chosen = await uow.settings.get(lock=lock)
    default = int(policy.authorization_window.total_seconds())
    return chosen or PaymentSettings(default)


def settings_changed_meanwhile(current_version: int) -> Conflict:
    return Conflict(
        "the settings changed since the version you sent",
        "version_mismatch",
        {"current_version": str(current_version)},
    )


async def update_settings(
    uow: PaymentUnitOfWork,
    policy: Policy,
    authorization_window_seconds: int,
    expected_version: int = 0,
) -> tuple[PaymentSettings, PaymentSettings]:
    """The settings before and after the change. With `expected_version`, a stale version
    changes nothing (`version_mismatch`); the same window again is no change (no new
    version)."""
    window = validate_window(authorization_window_seconds)
    # Twice at most: a merchant's first change can lose the race to create the row to another
    # first change; without If-Match it is then applied on top of the winner's, as any later.
    for attempt in (1, 2):
        current = await get_settings(uow, policy, lock=True)
        if expected_version and expected_version != current.version:
            raise settings_changed_meanwhile(current.version)
        if window == current.authorization_window_seconds:
            return current, current
        settings = PaymentSettings(window, version=current.version + 1)
        if await uow.settings.save(settings):
            return current, settings
        if expected_version or attempt == 2:
            found = await uow.settings.get()
            raise settings_changed_meanwhile(found.version if found else current.version)
    raise AssertionError("unreachable")


# --- captures and voids --------------------------------------------------------------------


class _PaymentOperation:
    """A capture or a void: the amount is set aside in `read`, settled in `record`."""

    kind: OperationKind
    reason = ""

    def __init__(
        self,
        payment_id: str,
        request_id: str,
        processors: Processors,
        new_uow: NewUow,
        policy: Policy,
    ) -> None:
        self.payment_id = payment_id
        self.request_id = request_id
        self.processors = processors
        self.new_uow = new_uow
        self.policy = policy
        # Whether this run added the operation (not a re-run finding its first run's).
        self.added = False

    def reserve(self, payment: Payment) -> int:
        raise NotImplementedError

    def ask_processor(self, payment: Payment, op: Operation) -> Awaitable[ProcessorAnswer]:
        raise NotImplementedError

    async def read(self, uow: PaymentUnitOfWork) -> tuple[Payment, Operation]:
        key = request_key(uow.merchant_id, self.request_id)
        payment = await _payment(uow, self.payment_id, lock=True)
        op = await uow.operations.by_request_key(key)
        if op is not None:  # a re-run of a request whose first run crashed
            return payment, op
        amount = self.reserve(payment)
        op = Operation(new_id(self.kind.value[:3]), payment.id, self.kind, amount, key)
        op.reason = self.reason
        await uow.operations.add(op)
        await uow.payments.save(payment)
        self.added = True
        return payment, op

    async def call(
        self, claim: object, read: tuple[Payment, Operation]
    ) -> tuple[str, str, Outcome | None]:
        payment, op = read
        if op.status is not OperationStatus.PENDING:
            return payment.id, op.request_key, None
        try:
            outcome = await ask(self.ask_processor(payment, op), self.policy.processor_timeout)
        except ProcessorUnavailable:
            if not self.added:
                # A re-run: its first run may have reached the processor. The operation stays
                # pending, its amount set aside, until the reconciler looks its key up.
                return payment.id, op.request_key, UNKNOWN
            await release_operation(self.new_uow, payment.id, op.request_key)
            raise Unavailable(
                "the processor could not be reached; retry with the same request id",
                "processor_unavailable",
            ) from None
        return payment.id, op.request_key, outcome

    async def record(
        self, uow: PaymentUnitOfWork, outcome: tuple[str, str, Outcome | None]
    ) -> tuple[Payment, Operation]:
        payment_id, key, answer = outcome
        return await settle_operation(uow, payment_id, key, answer)


class CapturePayment(_PaymentOperation):
    kind = OperationKind.CAPTURE

    def __init__(self, payment_id: str, amount: Amount | None, *args: Any) -> None:
        super().__init__(payment_id, *args)
        self.amount = amount

    def reserve(self, payment: Payment) -> int:
        wanted = None
        if self.amount is not None:
            wanted = validate_amount("amount", *self.amount, payment.currency, mismatch=True)
        return payment.reserve_capture(wanted, now())

    def ask_processor(self, payment: Payment, op: Operation) -> Awaitable[ProcessorAnswer]:
        processor = self.processors[payment.tender_type]
        return processor.capture(
            payment.processor_reference, payment.money(op.amount), op.request_key
        )


class VoidPayment(_PaymentOperation):
    kind = OperationKind.VOID

    def __init__(
        self,
        payment_id: str,
        *args: Any,
        reason: str = "requested",
        uncaptured_rest: bool = False,
    ) -> None:
        super().__init__(payment_id, *args)
        self.reason = reason
        # The rest of a payment captured in part may be voided (see `Payment.reserve_void`).
        self.uncaptured_rest = uncaptured_rest

    def reserve(self, payment: Payment) -> int:
        # Under the payment's row lock, in the transaction that writes the void (`read`).
        return payment.reserve_void(self.uncaptured_rest)

    def ask_processor(self, payment: Payment, op: Operation) -> Awaitable[ProcessorAnswer]:
        return self.processors[payment.tender_type].void(
            payment.processor_reference, op.request_key, payment_id=payment.id
        )


async def settle_operation(
    uow: PaymentUnitOfWork, payment_id: str, key: str, answer: Outcome | None
) -> tuple[Payment, Operation]:
    # The payment first, then its operation: every writer locks in this order.
    payment = await _payment(uow, payment_id, lock=True)
    op = await uow.operations.by_request_key(key, lock=True)
    assert op is not None  # written by read, in a committed transaction
    if answer is None or answer.unknown or op.status is not OperationStatus.PENDING:
        return payment, op
    if op.kind is OperationKind.CAPTURE:
        events = payment.settle_capture(op.amount, answer)
    else:
        events = payment.settle_void(op.amount, answer, op.reason)
    op.status = OperationStatus.SUCCEEDED if answer.approved else OperationStatus.FAILED
    await uow.operations.save(op)
    await uow.payments.save(payment)
    for event in events:
        uow.publish(event)
    return payment, op


async def release_operation(new_uow: NewUow, payment_id: str, key: str) -> None:
    """An operation the processor never received: give back what it set aside, forget it."""
    async with new_uow() as uow:
        payment = await _payment(uow, payment_id, lock=True)
        op = await uow.operations.by_request_key(key, lock=True)
        if op is None or op.status is not OperationStatus.PENDING:
            return
        if op.kind is OperationKind.CAPTURE:
            payment.settle_capture(op.amount, Outcome(False))
        else:
            payment.settle_void(op.amount, Outcome(False), op.reason)
        await uow.operations.forget(op)
        await uow.payments.save(payment)
        await uow.commit()


# --- refunds -------------------------------------------------------------------------------


@dataclass(frozen=True)
class RefundAsk:
    payment_id: str
    order_id: str
    amount: Amount | None
    named: Sequence[tuple[str, Amount]]
    reason: str
    lines: Sequence[RefundLine]
    # A return of this exchange's new order: drawn on the credit set aside for it.
    exchange_order_id: str = ""
    # Cash given back only from a register with a shift open (the payments API's refunds),
    # and the register asking (empty from the back office).
    cash_needs_open_shift: bool = False
    register_id: str = ""


LINES_NEED_AN_AMOUNT = (
    "is required with lines: what to give back for those units (to give back what they were "
    "paid, return them: POST /v1/orders/{id}/returns, restock false for goods kept)"
)


def validate_refund(req: RefundAsk) -> RefundAsk:
    validate_refund_request(
        req.payment_id, req.order_id, req.reason, list(req.lines), len(req.named)
    )
    seen: set[str] = set()
    violations: list[FieldViolation] = []
    if req.exchange_order_id:
        violations += require(
            bool(req.order_id), "order_id", "is required with exchange_order_id (the original)"
        )
        violations += require(bool(req.named), "amounts", "is required with exchange_order_id")
    for i, (payment_id, _) in enumerate(req.named):
        violations += require(bool(payment_id), f"amounts[{i}].payment_id", "is required")
        violations += require(payment_id not in seen, f"amounts[{i}].payment_id", "is named twice")
        seen.add(payment_id)
    violations += require(
        not (req.named and req.amount is not None), "amount", "send amount or amounts, not both"
    )
    # Absent, the amount is all that is left to refund: with `lines` (a price adjustment, a
    # gesture on an item) that gave the whole sale back for one unit. What units are worth
    # is a return's to say (per line, by what each line paid); here the caller says it.
    violations += require(
        not req.lines or req.amount is not None or bool(req.named),
        "amount",
        LINES_NEED_AN_AMOUNT,
    )
    raise_if(violations)
    return req


RefundRun = tuple[str, str, Outcome | None]  # payment id, refund id, the processor's answer


class RefundPayments:
    """Refund to the original tenders: one refund per tender, each its own processor call."""

    def __init__(
        self, ask: RefundAsk, request_id: str, processors: Processors, policy: Policy
    ) -> None:
        self.ask = ask
        self.request_id = request_id
        self.processors = processors
        self.policy = policy
        # Whether this run added the refunds (not a re-run finding its first run's).
        self.added = False

    async def read(self, uow: PaymentUnitOfWork) -> list[tuple[Payment, Refund]]:
        keys = refund_keys(uow.merchant_id, self.request_id)
        # Refunds written before 2026-12-05 are `<request key>/<n>`.
        legacy = request_key(uow.merchant_id, self.request_id)
        earlier = await uow.refunds.of_request(keys, legacy)
        if earlier:  # a re-run of a request whose first run crashed
            return [(await _payment(uow, r.payment_id), r) for r in earlier]
        payments = await self._payments(uow)
        currency = payments[0].currency
        named: dict[str, int] = {}
        for i, (payment_id, amount) in enumerate(self.ask.named):
            named[payment_id] = validate_amount(
                f"amounts[{i}].amount", *amount, currency, mismatch=True
            )
        wanted = None
        if self.ask.amount is not None:
            wanted = validate_amount("amount", *self.ask.amount, currency, mismatch=True)
        credit = None
        if self.ask.exchange_order_id:
            credit = await uow.credits.get(self.ask.exchange_order_id, lock=True)
            if (
                credit is None
                or credit.order_id != self.ask.order_id
                or credit.status is not CreditStatus.APPLIED
            ):
                raise NotFound("exchange credit", self.ask.exchange_order_id)
        plans = plan_refund(payments, wanted, named, credit)
        await self._drawer_for_cash(uow, plans, currency)
        pairs = []
        for n, plan in enumerate(plans):
            payment = plan.payment
            refund = Refund(
                new_id("rfd"),
                payment.id,
                payment.order_id,
                payment.tender_type,
                currency,
                plan.amount,
                reason=self.ask.reason,
                lines=tuple(self.ask.lines),
                request_key=f"{keys}{n:03d}",
                exchange_order_id=self.ask.exchange_order_id,
            )
            if credit is not None:
                # Back to backing it if the refund fails. The credit's own figure goes down
                # too: another credit may share the payment's `credited` (one carried on).
                payment.credited -= plan.amount
                credit.amounts[payment.id] = credit.amounts.get(payment.id, 0) - plan.amount
            payment.refunding += plan.amount
            await uow.refunds.add(refund)
            await uow.payments.save(payment)
            uow.publish(RefundCreated(refund))
            pairs.append((payment, refund))
        if credit is not None:
            await uow.credits.save(credit)
        self.added = True
        return pairs

    async def _drawer_for_cash(
        self, uow: PaymentUnitOfWork, plans: list[RefundPlan], currency: str
    ) -> None:
        """Cash given back comes out of the asking register's drawer. Through the payments
        API (`cash_needs_open_shift`) with no register, or none open there, it would count in
        no shift; at a register whose open shift counts another currency (whoever asks) it
        would be in no report either. Both are refused before anything is written. The shift
        read here is held until the claim commits."""
        cash = [p.payment.id for p in plans if p.payment.tender_type is TenderType.CASH]
        if not cash:
            return
        register = self.ask.register_id
        named = [payment_id for payment_id, _ in self.ask.named]
        shift = await uow.out_of_band.open_shift_at(register) if register else None
        if shift is not None and shift[1] != currency:
            fields = [
                f"amounts[{i}].amount.currency"
                for i, payment_id in enumerate(named)
                if payment_id in cash
            ] or ["amount.currency" if self.ask.amount is not None else "amount"]
            raise shift_currency_mismatch(register, shift[1], currency, fields)
        if self.ask.cash_needs_open_shift and shift is None:
            raise cash_refund_needs_open_shift(cash, register, named)

    async def _payments(self, uow: PaymentUnitOfWork) -> list[Payment]:
        if self.ask.payment_id:
            return [await _payment(uow, self.ask.payment_id, lock=True)]
        carried: set[str] = set()
        if self.ask.exchange_order_id:
            # The credit may hold money it carried from the credit its original order was
            # paid with, on that order's origin's payments: locked too (all in id order),
            # before the credit.
            seen = await uow.credits.get(self.ask.exchange_order_id)
            if seen is not None and seen.order_id == self.ask.order_id:
                carried = set(seen.amounts)
        if carried:
            own = {p.id for p in await uow.payments.for_order(self.ask.order_id)}
            found = await _payments_of(uow, own | carried)
        else:
            found = await uow.payments.for_order(self.ask.order_id, lock=True)
        if not found:  # another merchant's order too: the same answer as a made-up id
            raise NotFound("order", self.ask.order_id)
        return found

    async def call(self, claim: object, pairs: list[tuple[Payment, Refund]]) -> list[RefundRun]:
        runs = await asyncio.gather(*(self._refund(p, r) for p, r in pairs))
        return list(runs)

    async def _refund(self, payment: Payment, refund: Refund) -> RefundRun:
        if refund.status is not OperationStatus.PENDING:
            return payment.id, refund.id, None
        processor = self.processors[payment.tender_type]
        try:
            call = processor.refund(
                payment.processor_reference,
                payment.money(refund.amount),
                refund.request_key,
                payment_id=payment.id,
            )
            outcome = await ask(call, self.policy.processor_timeout)
        except ProcessorUnavailable:
            if not self.added:
                # A re-run: its first run may have reached the processor. The refund stays
                # pending, its amount set aside, until the reconciler looks its key up.
                return payment.id, refund.id, UNKNOWN
            # This run added it and this call did not reach the processor: this refund
            # fails, and the caller may ask again with a new id.
            outcome = Outcome(False, decline_code="processor_unavailable")
        return payment.id, refund.id, outcome

    async def record(self, uow: PaymentUnitOfWork, runs: list[RefundRun]) -> RefundsDone:
        return await settle_refunds(uow, runs)


@dataclass(frozen=True)
class RefundsDone:
    """The refunds in the order asked, and the payments they refunded as they stand after
    them (in the order taken)."""

    refunds: list[Refund]
    payments: list[Payment]


async def settle_refunds(uow: PaymentUnitOfWork, runs: Sequence[RefundRun]) -> RefundsDone:
    done = []
    payments: dict[str, Payment] = {}
    # Payments are locked in id order (the order they were taken), as every writer locks them.
    for payment_id, refund_id, answer in sorted(runs, key=lambda run: run[0]):
        payment = await _payment(uow, payment_id, lock=True)
        refund = await uow.refunds.get(refund_id, lock=True)
        assert refund is not None  # written by read, in a committed transaction
        events = refund.settle(payment, answer) if answer is not None else []
        if events and refund.exchange_order_id and refund.status is OperationStatus.FAILED:
            # The draw on an exchange's credit did not happen: the credit holds it again (its
            # row locked after the payment's, as every writer locks them).
            credit = await uow.credits.get(refund.exchange_order_id, lock=True)
            if credit is not None:
                credit.amounts[payment.id] = credit.amounts.get(payment.id, 0) + refund.amount
                await uow.credits.save(credit)
        if events:
            await uow.refunds.save(refund)
            await uow.payments.save(payment)
            for event in events:
                uow.publish(event)
        done.append(refund)
        payments[payment.id] = payment
    order = {refund_id: n for n, (_, refund_id, _) in enumerate(runs)}
    return RefundsDone(sorted(done, key=lambda r: order[r.id]), list(payments.values()))


# --- exchange credits ------------------------------------------------------------------------


async def credit_exchange(
    uow: PaymentUnitOfWork,
    order_id: str,
    exchange_order_id: str,
    named: list[tuple[str, int, str]],
) -> tuple[ExchangeCredit, list[Payment]]:
    """Set the money of an exchange's credit aside on the original order's payments (their
    rows locked, as every refund of them locks them): from then on no refund of them gives it
    back, but one naming the new order. Asked again for the same new order: the credit as it
    stands (released, it is refused: the exchange was undone)."""
    validate_credit_request(order_id, exchange_order_id, named)
    # Named payments of another order: carried from the credit that paid for `order_id`
    # (an exchange's new order in turn exchanged), which is read and then locked after the
    # payments, as every writer locks them (payments in id order, the order's and those).
    own = {p.id for p in await uow.payments.for_order(order_id)}
    others = {payment_id for payment_id, _, _ in named} - own
    source = await uow.credits.get(order_id) if others else None
    carried = set()
    if source is not None and source.status is CreditStatus.APPLIED:
        carried = others & set(source.amounts)
    payments = await _payments_of(uow, own | carried)
    if not payments and source is None:
        raise NotFound("order", order_id)
    found = await uow.credits.get(exchange_order_id, lock=True)
    if found is None:
        if source is not None:
            source = await uow.credits.get(order_id, lock=True)
        credit = set_aside(
            payments,
            order_id,
            exchange_order_id,
            named,
            source if source is not None and source.status is CreditStatus.APPLIED else None,
        )
        if await uow.credits.add(credit):
            for p in payments:
                if p.id in credit.amounts and p.order_id == order_id:
                    await uow.payments.save(p)
                    uow.publish(PaymentUpdated(p))
            if source is not None and others:
                await uow.credits.save(source)
            return credit, payments
        # Another request made it (or released it) a moment ago: that one stands.
        found = await uow.credits.get(exchange_order_id, lock=True)
        assert found is not None
        payments = await uow.payments.for_order(order_id)
    if found.status is CreditStatus.RELEASED:
        raise Conflict(
            f"the exchange credit of order {exchange_order_id} was released: the exchange was "
            "not made",
            "exchange_credit_released",
        )
    if found.order_id != order_id:
        raise NotFound("order", order_id)
    return found, payments


async def release_exchange_credit(uow: PaymentUnitOfWork, exchange_order_id: str) -> ExchangeCredit:
    """The exchange was not made: what its credit set aside is refundable again. A credit
    never set aside is recorded released, so a late request cannot set it aside any more."""
    raise_if(require(bool(exchange_order_id), "exchange_order_id", "is required"))
    seen = await uow.credits.get(exchange_order_id)
    if seen is None:
        tombstone = ExchangeCredit(exchange_order_id, "", "", {}, CreditStatus.RELEASED)
        if await uow.credits.add(tombstone):
            return tombstone
        seen = await uow.credits.get(exchange_order_id)
        assert seen is not None
    # The payments first (in id order, the order's and those carried from another's credit),
    # then the credit: every writer locks in this order.
    own = {p.id for p in await uow.payments.for_order(seen.order_id)} if seen.order_id else set()
    carried = set(seen.amounts) - own
    payments = await _payments_of(uow, own | carried)
    credit = await uow.credits.get(exchange_order_id, lock=True)
    assert credit is not None
    # What it carried from the credit that paid for its order goes back there.
    source = await uow.credits.get(seen.order_id, lock=True) if carried else None
    if credit.status is CreditStatus.APPLIED:
        release(credit, payments, source)
        for p in payments:
            if p.id in credit.amounts and p.order_id == credit.order_id:
                await uow.payments.save(p)
                uow.publish(PaymentUpdated(p))
        await uow.credits.save(credit)
        if source is not None:
            await uow.credits.save(source)
    return credit


async def _payments_of(uow: PaymentUnitOfWork, ids: set[str]) -> list[Payment]:
    """Payments by id, locked in id order (as `for_order` locks an order's)."""
    return [await _payment(uow, payment_id, lock=True) for payment_id in sorted(ids)]


# --- refunds paid out of band ---------------------------------------------------------------


async def record_out_of_band_refund(
    uow: PaymentUnitOfWork,
    order_id: str,
    return_id: str,
    named: list[tuple[str, int, str]],
    tender: TenderType | None,
    reference: str,
    register_id: str = "",
    staff_id: str = "",
    whole: bool = False,
) -> tuple[OutOfBandRefund, list[Payment]]:
    """A return's refund the processor refused was paid another way: set aside on the order's
    payments (their rows locked, as every refund of them locks them), so no refund gives it
    back again; cash at a register with an open shift is that drawer's pay-out, in the same
    transaction. One record per return: asked again (the payments' lock orders the askers),
    the record as it stands, nothing set aside or paid out twice. `whole`: refused, writing
    nothing, when a payment has less left than asked (see `pay_out_of_band`)."""
    tender = validate_out_of_band(order_id, return_id, named, tender, reference)
    payments = await uow.payments.for_order(order_id, lock=True)
    if not payments:
        raise NotFound("order", order_id)
    found = await uow.out_of_band.get(return_id)
    if found is not None:
        if found.order_id != order_id:
            raise NotFound("return", return_id)
        return found, payments
    record = pay_out_of_band(payments, return_id, named, tender, reference, whole)
    if tender is TenderType.CASH and register_id:
        shift = await uow.out_of_band.open_shift_at(register_id)
        if shift is not None:
            shift_id, currency = shift
            raise_if(
                require(
                    currency == record.currency,
                    "tender_type",
                    f"cash from this register's drawer is {currency}, the refund {record.currency}",
                )
            )
            why = f"refund of return {return_id} (order {order_id}) paid in cash"
            movement = Movement(
                new_id("drw"),
                shift_id,
                MovementKind.PAY_OUT,
                record.total,
                currency,
                f"{why}: {reference}" if reference else why,
                staff_id,
                register_id,
            )
            await uow.out_of_band.pay_out(movement)
            record.shift_id, record.movement_id = shift_id, movement.id
    added = await uow.out_of_band.add(record)
    assert added  # the payments' locks admit one asker at a time, and it found none
    for p in payments:
        if p.id in record.set_aside:
            await uow.payments.save(p)
            uow.publish(PaymentUpdated(p))
    return record, payments


# --- reads ---------------------------------------------------------------------------------


async def get_payment(uow: PaymentUnitOfWork, payment_id: str) -> Payment:
    raise_if(require(bool(payment_id), "id", "is required"))
    return _found(await uow.payments.get(payment_id), "payment", payment_id)


async def list_payments(
    uow: PaymentUnitOfWork,
    page: PageRequest,
    order_id: str,
    location_id: str,
    status: PaymentStatus | None,
    created: CreatedWindow,
) -> list[Payment]:
    _check_window(created)
    if order_id:
        await _known_order(uow, order_id)
    return await uow.payments.list(page, order_id, location_id, status, created)


def _check_window(created: CreatedWindow) -> None:
    if created.since is not None and created.before is not None:
        # An empty window is a mistake (the two swapped), never a silent empty list.
        raise_if(
            require(created.before > created.since, "created_before", "must be after created_since")
        )


async def _known_order(uow: PaymentUnitOfWork, order_id: str) -> list[Payment]:
    """An order this merchant has paid something for; any other (another merchant's too) is
    not found, exactly like one that never existed."""
    found = await uow.payments.for_order(order_id)
    if not found:
        raise NotFound("order", order_id)
    return found


async def order_payments(
    uow: PaymentUnitOfWork, order_id: str, total: Amount | None
) -> tuple[OrderPayments, int | None]:
    raise_if(require(bool(order_id), "order_id", "is required"))
    found = await _known_order(uow, order_id)
    summary = OrderPayments(order_id, found[0].currency, found)
    if total is None:
        return summary, None
    violations = require(total[0] >= 0, "order_total.amount", "must not be negative")
    violations += require(
        total[1] == summary.currency, "order_total.currency", f"must be {summary.currency}"
    )
    raise_if(violations)
    return summary, total[0]


async def get_refund(uow: PaymentUnitOfWork, refund_id: str) -> Refund:
    raise_if(require(bool(refund_id), "id", "is required"))
    return _found(await uow.refunds.get(refund_id), "refund", refund_id)


async def list_refunds(
    uow: PaymentUnitOfWork,
    page: PageRequest,
    payment_id: str,
    order_id: str,
    location_id: str,
    created: CreatedWindow,
) -> list[Refund]:
    _check_window(created)
    if payment_id:
        await _payment(uow, payment_id)
    if order_id:
        await _known_order(uow, order_id)
    return await uow.refunds.list(page, payment_id, order_id, location_id, created)


# --- card-present terminal checkouts ------------------------------------------------------


async def create_terminal_checkout(
    uow: PaymentUnitOfWork,
    reader: TerminalReader,
    policy: Policy,
    request_id: str,
    target: tuple[str, str, str, str],
    amount: Amount,
    tip: Amount | None,
) -> TerminalCheckout:
    """Send a card-present payment to a reader; it stays pending until the reader answers.
    `target` is (order_id, reference, location_id, device_id)."""
    order_id, reference, location_id, device_id = target
    money, violations = None, []
    try:
        money = Money(*amount)
    except MoneyError as exc:
        violations.append(FieldViolation("amount.currency", str(exc)))
    if tip is not None and money is not None:
        violations += require(tip[1] == money.currency, "tip.currency", "must be the amount's")
    raise_if(violations)
    assert money is not None
    tip_amount = 0 if tip is None else tip[0]
    validate_terminal_checkout(order_id, reference, location_id, device_id, money, tip_amount)
    if not reader.knows(device_id):
        raise InvalidArgument(
            "no such reader", [FieldViolation("device_id", "is not a reader of this merchant")]
        )
    checkout = TerminalCheckout(
        id=new_id("tmc"),
        order_id=order_id,
        reference=reference,
        location_id=location_id,
        device_id=device_id,
        currency=money.currency,
        amount=money.amount,
        tip=tip_amount,
        deadline=now() + policy.terminal_timeout,
        request_key=request_key(uow.merchant_id, request_id),
    )
    await uow.terminals.add(checkout)
    uow.publish(TerminalCheckoutUpdated(checkout))
    return checkout


async def get_terminal_checkout(uow: PaymentUnitOfWork, checkout_id: str) -> TerminalCheckout:
    raise_if(require(bool(checkout_id), "id", "is required"))
    return _found(await uow.terminals.get(checkout_id), "terminal checkout", checkout_id)


async def record_reader_answer(
    uow: PaymentUnitOfWork, checkout_id: str, answer: ProcessorAnswer, ended: TerminalStatus
) -> TerminalCheckout:
    """The reader's final word on a checkout, once: a payment if it read a card (captured or
    failed), or the checkout `ended` (cancelled or timed out) if it never did."""
    checkout = await uow.terminals.get(checkout_id, lock=True)
    assert checkout is not None  # written by its creation, committed
    if checkout.status is not TerminalStatus.PENDING:
        return checkout
    payment = None
    if answer.approved or answer.decline_code != CANCELLED_AT_READER:
        payment = checkout.payment(new_id("pay"))
    events = checkout.settle(_outcome(answer), payment, ended)
    if payment is not None:
        # The register that sent the checkout took it, whoever records the reader's answer.
        await uow.payments.add(payment, (checkout.register_id, checkout.staff_id))
    await uow.terminals.save(checkout)
    for event in events:
        uow.publish(event)
    return checkout


class CancelTerminalCheckout:
    """Cancel from the register while the checkout is pending; the reader has the last word
    (a customer who paid a moment earlier has paid).

    A checkout cancelled already (by an earlier or a concurrent cancel, or at the reader)
    answers cancelled again, with nothing asked or written: a cancel answers by the state it
    leaves, not by whether it was the one that wrote it, so concurrent cancels and a repeat
    answer alike. One that ended otherwise (completed, declined, timed out) is a
    `terminal_checkout_final` conflict."""

    def __init__(self, checkout_id: str, reader: TerminalReader) -> None:
        self.checkout_id = checkout_id
        self.reader = reader

    async def read(self, uow: PaymentUnitOfWork) -> TerminalCheckout:
        checkout = (
            await uow.terminals.get(self.checkout_id, lock=True) if self.checkout_id else None
        )
        if checkout is None:
            raise NotFound("terminal checkout", self.checkout_id)
        if checkout.status not in (TerminalStatus.PENDING, TerminalStatus.CANCELLED):
            raise Conflict(
                f"the terminal checkout is already {checkout.status.value}",
                "terminal_checkout_final",
            )
        return checkout

    async def call(self, claim: object, checkout: TerminalCheckout) -> ProcessorAnswer | None:
        if checkout.status is TerminalStatus.CANCELLED:
            return None  # nothing left to ask the reader
        return await self.reader.cancel(checkout.request_key)

    async def record(
        self, uow: PaymentUnitOfWork, answer: ProcessorAnswer | None
    ) -> TerminalCheckout:
        if answer is None:
            return await get_terminal_checkout(uow, self.checkout_id)
        # A cancel beside this one may have recorded the reader's answer first: then this
        # finds the checkout final and answers it as it is (cancelled, or paid at the reader).
        return await record_reader_answer(uow, self.checkout_id, answer, TerminalStatus.CANCELLED)


async def settle_terminal(
    new_uow: NewUow, reader: TerminalReader, checkout_id: str, policy: Policy
) -> None:
    """Ask the reader; past the deadline with no answer, cancel it there: timed out."""
    async with new_uow().reading() as uow:
        checkout = await uow.terminals.get(checkout_id)
    if checkout is None or checkout.status is not TerminalStatus.PENDING:
        return
    assert checkout.created_at is not None
    money = Money(checkout.amount + checkout.tip, checkout.currency)
    answer = await reader.answer(
        checkout.device_id, checkout.request_key, money, checkout.created_at
    )
    ended = TerminalStatus.CANCELLED  # at the reader
    if answer is None:
        if now() < checkout.deadline:
            return
        answer = await reader.cancel(checkout.request_key)
        ended = TerminalStatus.TIMED_OUT
    async with new_uow() as uow:
        await record_reader_answer(uow, checkout_id, answer, ended)
        await uow.commit()


# --- the reconciler and the expiry sweep ---------------------------------------------------


async def run_steps(new_uow: NewUow, steps: Any) -> Any:
    """An operation's three steps run outside any request (by the expiry sweep): there is no
    request id to claim, the operation's own key makes a second run find the first's work."""
    async with new_uow() as uow:
        read = await steps.read(uow)
        await uow.commit()
    outcome = await steps.call(None, read)
    async with new_uow() as uow:
        result = await steps.record(uow, outcome)
        await uow.commit()
    return result


async def _look_up(processor: Any, key: str, limit: float) -> Outcome | None:
    """The processor's record of `key`: None when it cannot say now (try again later); a
    decline when it never received the call."""
    try:
        answer = await asyncio.wait_for(processor.lookup(key), limit)
    except (TimeoutError, ProcessorTimeout, ProcessorUnavailable):
        return None
    if answer is None:
        return Outcome(False, decline_code="processor_unavailable")
    return _outcome(answer)


async def reconcile_payment(
    new_uow: NewUow, processors: Processors, payment_id: str, policy: Policy
) -> None:
    async with new_uow().reading() as uow:
        payment = await uow.payments.get(payment_id)
    if payment is None or payment.status is not PaymentStatus.PENDING:
        return
    processor = processors[payment.tender_type]
    answer = await _look_up(processor, payment.request_key, policy.processor_timeout)
    if answer is None:
        return
    async with new_uow() as uow:
        await settle_payment(uow, payment_id, answer, policy)
        await uow.commit()


async def reconcile_operation(
    new_uow: NewUow, processors: Processors, op_id: str, policy: Policy
) -> None:
    async with new_uow().reading() as uow:
        op = await uow.operations.get(op_id)
        payment = None if op is None else await uow.payments.get(op.payment_id)
    if op is None or payment is None or op.status is not OperationStatus.PENDING:
        return
    answer = await _look_up(
        processors[payment.tender_type], op.request_key, policy.processor_timeout
    )
    if answer is None:
        return
    async with new_uow() as uow:
        await settle_operation(uow, payment.id, op.request_key, answer)
        await uow.commit()


async def reconcile_refund(
    new_uow: NewUow, processors: Processors, refund_id: str, policy: Policy
) -> None:
    async with new_uow().reading() as uow:
        refund = await uow.refunds.get(refund_id)
    if refund is None or refund.status is not OperationStatus.PENDING:
        return
    answer = await _look_up(
        processors[refund.tender_type], refund.request_key, policy.processor_timeout
    )
    if answer is None:
        return
    async with new_uow() as uow:
        await settle_refunds(uow, [(refund.payment_id, refund.id, answer)])
        await uow.commit()


async def expire_authorization(
    new_uow: NewUow, processors: Processors, payment_id: str, policy: Policy
) -> None:
    """Void what is left of an authorisation past its window (PaymentVoided, reason expired),
    the uncaptured rest of one captured in part included."""
    steps = VoidPayment(
        payment_id,
        f"~expiry/{payment_id}",
        processors,
        new_uow,
        policy,
        reason="expired",
        uncaptured_rest=True,
    )
    try:
        await run_steps(new_uow, steps)
    except DomainError as exc:
        # Captured or voided meanwhile: nothing is left to expire.
        log.info("authorization %s not expired: %s", payment_id, exc.code)
