"""Tenders of an order made in steps: added, recorded when held, and what the payments say."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Generic, Protocol, TypeVar

from pos_kit.errors import (
    Conflict,
    DomainError,
    ErrorKind,
    FieldViolation,
    NotFound,
    RequestIdReused,
    Unavailable,
    raise_if,
)
from pos_kit.idempotency import Claim
from pos_kit.money import Money
from pos_order.domain.model import Order, OrderStatus, SagaState, Tender, TenderRecord, TenderState
from pos_order.service import saga
from pos_order.service.handlers.customers import as_answered
from pos_order.service.handlers.drawer import CASH_NEEDS_SHIFT, drawer_open_for_cash
from pos_order.service.handlers.new_order import announce_change, at_register
from pos_order.service.ports import (
    PROCESSOR_UNREACHED,
    CheckoutPorts,
    NewUow,
    OrderUnitOfWork,
    PaymentResult,
    TenderAsk,
)
from pos_order.service.saga import Policy, boundary, change, now

R = TypeVar("R")

# The payment service's refusals of a gift card that cannot pay (docs/problems.md): nothing
# taken, as for a redemption of it.
GIFT_CARD_REFUSED = ("gift_card_inactive", "insufficient_funds")


class GivenTender(Protocol):
    """What a caller gave with a tender, kept in memory only (a token, a code)."""

    @property
    def card_token(self) -> str: ...
    @property
    def cash_tendered(self) -> Money | None: ...
    @property
    def gift_card_code(self) -> str: ...
    @property
    def external_reference(self) -> str: ...


def tender_ask(record: TenderRecord, currency: str, capture: bool, given: GivenTender) -> TenderAsk:
    """The payment service's ask for a planned tender, with what the caller gave for it."""
    return TenderAsk(
        record.tender,
        Money(record.amount, currency),
        capture=capture,
        card_token=given.card_token,
        cash_tendered=given.cash_tendered,
        gift_card_code=given.gift_card_code,
        external_reference=given.external_reference,
    )


@dataclass(frozen=True)
class TenderCommand:
    request_id: str
    order_id: str
    ask: TenderAsk | None  # None: amount unset, the balance due (filled in `read`)
    tender: object
    amount: Money | None
    card_token: str = ""
    cash_tendered: Money | None = None
    gift_card_code: str = ""
    external_reference: str = ""
    # The request's fingerprint, kept on its tender step (see TenderRecord.fingerprint).
    fingerprint: bytes = b""


class AddTender(Generic[R]):
    """Take one tender for a pending order (`<order>/payment/<n>`), authorised only: captures
    follow the fulfilments. A decline is an answer: the order stays pending, holds in place.
    A confirmed order takes one only for what its authorisations and captures no longer hold
    of its unfinished fulfilments' shares (`Order.amount_due`: an authorisation voided, or
    past its window): the refused step then captures from it. Declined, the order stays
    confirmed, and as much is due."""

    def __init__(
        self,
        cmd: TenderCommand,
        ports: CheckoutPorts,
        new_uow: NewUow,
        policy: Policy,
        answer: Callable[[Order, PaymentResult | None], R],
    ) -> None:
        raise_if(
            [FieldViolation("tender_type", "must be cash, card, gift_card or external")]
            if not isinstance(cmd.tender, Tender)
            else []
        )
        if cmd.amount is not None and cmd.amount.amount <= 0:
            raise_if([FieldViolation("amount", "must be more than zero")])
        self.cmd = cmd
        self.ports = ports
        self.new_uow = new_uow
        self.policy = policy
        self.answer = answer
        # The order's payments as the payment service says now (`prepare`), or none.
        self.payments_now: list[PaymentResult] = []

    async def prepare(self) -> None:
        """Before the claim, no connection held: when the order's tenders leave nothing for a
        new one, or the order is confirmed, what the payment service says of them now.
        Replacing a tender is voiding it (`POST /v1/payments/{id}/void`) and adding the new
        one; the order hears of the void by its event, which may not have arrived yet, and the
        new tender must not be refused as covered meanwhile (nor after a refund made there).
        A confirmed order's tender is for what such a void left due."""
        async with self.new_uow().reading() as uow:
            order = await uow.orders.get(self.cmd.order_id)
        if order is not None and order.tender_for(self.cmd.request_id) is None:
            # A new tender (a retry of one taken is answered as it was).
            await drawer_open_for_cash(self.ports, self.cmd.tender)
        if order is None or not order.payment_ids:
            return
        confirmed = order.status is OrderStatus.CONFIRMED
        if not confirmed and (
            order.status is not OrderStatus.PENDING_PAYMENT or order.unclaimed > 0
        ):
            return
        try:
            self.payments_now = await self.ports.payments.of_order(order.id)
        except Unavailable:
            return  # the order's own count stands: a tender it covers is refused as before

    async def read(self, uow: OrderUnitOfWork) -> tuple[Order, int]:
        cmd = self.cmd
        order = await uow.orders.get(cmd.order_id, lock=True)
        if order is None:
            raise NotFound("order", cmd.order_id)
        # Written (and announced) with the new tender; a retry writes nothing.
        learn_payments(order, self.payments_now)
        record = order.tender_for(cmd.request_id)
        if record is not None and record.fingerprint not in ("", cmd.fingerprint.hex()):
            # The same request id with another body after a failed attempt (whose claim was
            # dropped): its step is the first body's (its amount, its tender), which this
            # body's card or code must not pay. The step stays for the first body's retry.
            raise RequestIdReused()
        if record is None:
            if cmd.amount is not None and cmd.amount.currency != order.currency:
                raise_if([FieldViolation("amount.currency", f"must be in {order.currency}")])
            if any(f.hold is not None and f.hold.value == "sent" for f in order.fulfillments):
                raise Conflict("the order's stock is not held yet", "order_not_held")
            amount = cmd.amount.amount if cmd.amount is not None else order.unclaimed
            assert isinstance(cmd.tender, Tender)
            record = order.add_tender(cmd.tender, amount, cmd.request_id)
            record.fingerprint = cmd.fingerprint.hex()
            record.register_id, record.staff_id = at_register()
            order.tender_asked(now())
            await uow.orders.save(order)
            announce_change(uow, order)
        return order, record.n

    async def call(self, claim: Claim, read: tuple[Order, int]) -> PaymentResult:
        order, n = read
        record = order.saga.tenders[n - 1]
        # Cash and external tenders are taken, not authorised: captured when recorded (their
        # share of each fulfilment is assigned at confirmation); cards and gift cards are
        # authorised and captured as the fulfilments say.
        at_once = record.tender in (Tender.CASH, Tender.EXTERNAL)
        ask = tender_ask(record, order.currency, at_once, self.cmd)
        try:
            payment = await self.ports.payments.take(
                record.request_id, order.id, order.location_id, ask
            )
        except DomainError as exc:
            # Refused before anything was taken (by kind: the payment service's refusal
            # arrives as a plain DomainError), or the processor out of reach (the payment
            # service's own word: it made no payment, and forgot the request): awaited no
            # more, it holds up no other tender. A retry under the same request id is a new
            # tender, asking the processor again for what is still unclaimed then.
            # Cash whose shift closed after `drawer_open_for_cash` read it open is refused
            # the same way (409 `cash_needs_open_shift`), nothing taken; so is a gift card
            # code no card has (404) or a card that cannot pay (409 `gift_card_inactive`,
            # `insufficient_funds`).
            refused = (
                (exc.kind is ErrorKind.INVALID and exc.code != "idempotency_key_reused")
                or exc.kind is ErrorKind.NOT_FOUND
                or exc.code in (CASH_NEEDS_SHIFT, *GIFT_CARD_REFUSED)
            )
            if refused or exc.code == PROCESSOR_UNREACHED:
                await change(self.new_uow, order.id, lambda o: o.tender_refused(n))
            raise
        await boundary(self.policy, "after_authorization")
        await unless_cancelled(self.new_uow, self.ports, self.policy, order.id, n, payment)
        return payment

    async def record(self, uow: OrderUnitOfWork, payment: PaymentResult) -> R:
        order = await uow.orders.get(self.cmd.order_id, lock=True)
        assert order is not None
        record = order.tender_for(self.cmd.request_id)
        assert record is not None
        if record.state in (TenderState.SENT, TenderState.PENDING):
            order.tender_answered(
                record.n, payment.payment_id, saga.tender_state(payment), payment.captured_amount
            )
            if order.status is OrderStatus.CONFIRMED:
                # Cash, an external tender: captured already, for the steps still to come.
                order.taken_for_what_is_due(record.n)
            # `paid`, `payment_ids` moved: this version is announced (`order_updated`).
            order.tender_heard(now())
            await uow.orders.save(order)
            announce_change(uow, order)
        return self.answer(order, payment)


class RecordHeldTenders(Generic[R]):
    """A person settles a register sale whose cash the payment service refused for good to
    record late (`TenderRecord.record_refused`: the register's open shift counting another
    currency by then): recorded now from the back office (`saga.record_held`). Nothing held:
    the order as it is."""

    def __init__(
        self, order_id: str, ports: CheckoutPorts, new_uow: NewUow, answer: Callable[[Order], R]
    ) -> None:
        self.order_id = order_id
        self.ports = ports
        self.new_uow = new_uow
        self.answer = answer

    async def read(self, uow: OrderUnitOfWork) -> Order:
        order = await uow.orders.get(self.order_id)
        if order is None:
            raise NotFound("order", self.order_id)
        return order

    async def call(self, claim: Claim, order: Order) -> Order:
        return await saga.record_held(self.new_uow, self.ports, order)

    async def record(self, uow: OrderUnitOfWork, order: Order) -> R:
        return self.answer(await as_answered(uow, order))


def learn_payments(order: Order, payments: list[PaymentResult]) -> None:
    """What the payment service said of the order's payments (read before the claim): voids
    (the payments API, what a partial capture left, an authorisation's window), refunds in
    all, and the answers of tenders recorded `pending` (its reconciler settles them: a
    confirmed order's resumer does not ask, and such a tender would hold up every tender,
    step and cancel of it for ever)."""
    for p in payments:
        if p.status == "voided" or p.voided_amount > 0:
            order.payment_voided(p.payment_id, p.voided_amount)
        order.refunded_in_all(p.payment_id, p.refunded_amount)
        state = saga.tender_state(p)
        if state is TenderState.PENDING:
            continue
        for t in order.saga.tenders:
            if t.payment_id == p.payment_id and t.state is TenderState.PENDING:
                order.tender_answered(t.n, p.payment_id, state, p.captured_amount)


async def unless_cancelled(
    new_uow: NewUow, ports: CheckoutPorts, policy: Policy, order_id: str, n: int, p: PaymentResult
) -> None:
    """A cancel that began while tender `n` was taken may have asked for the order's payments
    before this one existed, and left it authorised or captured on a cancelled order. Read
    after the payment was made: a cancel begun later sees it; one begun earlier is done again
    here with this payment named (the same request ids: what it gave back is not given twice),
    and the tender loses."""
    found = await saga.load(new_uow, order_id)
    if found.saga.state is not SagaState.COMPENSATING and found.status is not (
        OrderStatus.CANCELLED
    ):
        return

    def reopen(o: Order) -> None:
        record = o.saga.tenders[n - 1]
        record.payment_id = record.payment_id or p.payment_id
        if o.status is OrderStatus.CANCELLED:
            o.saga.state = SagaState.COMPENSATING

    order, _ = await change(new_uow, order_id, reopen)
    # A payment whose answer is awaited stops this (503): the resumer finishes it once settled.
    await saga.compensate(new_uow, ports, order, policy)
    raise Conflict(
        "the order was cancelled while the tender was taken: its payment was given back",
        "order_not_pending",
    )
