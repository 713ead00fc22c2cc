"""The register's one-call sale (`Checkout`): priced, saved, paid and confirmed in one request."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Generic, TypeVar

from pos_kit.errors import Conflict, DomainError, ErrorKind, Unavailable, raise_if
from pos_kit.idempotency import Claim
from pos_kit.money import Money
from pos_order.domain.coupons import CouponStep, validate_codes
from pos_order.domain.model import (
    TAKEN_IN_HAND,
    FulfillmentRequest,
    FulfillmentType,
    Order,
    OrderStatus,
    SagaState,
    TenderRecord,
    TenderState,
    validate_checkout,
    validate_redemption,
    validate_register_tender,
)
from pos_order.domain.pricing import ORDER_KINDS, validate_manual
from pos_order.service import saga
from pos_order.service.handlers.customers import as_answered
from pos_order.service.handlers.drawer import CASH_NEEDS_SHIFT, drawer_open_for_cash
from pos_order.service.handlers.new_order import (
    Started,
    check_gift_card_lines,
    coupon_cart,
    discard,
    gift_card_codes,
    nothing_kept_if_refused,
    points_named,
    priced_order,
    reserve_or_drop,
    save_new,
    start_request,
    tender_record,
)
from pos_order.service.ports import (
    PROCESSOR_UNREACHED,
    CheckoutCommand,
    CheckoutPorts,
    NewUow,
    OrderUnitOfWork,
    PaymentResult,
)
from pos_order.service.saga import Policy, boundary, change, now

R = TypeVar("R")


@dataclass(frozen=True)
class Sale:
    order: Order
    payment: PaymentResult | None
    # In store and captured in full: the payment's answer and the confirmation are written in
    # the transaction that stores the request's answer (`Checkout.record`), one commit fewer.
    settle: Callable[[Order], None] | None = None


class Checkout(Generic[R]):
    """The register's one-call sale: the saga in one request, confirmed at once.

    The order is saved (`pending_payment`, its one tender's step `<order>/payment/1`) before
    the card is charged. The order id derives from the request and its stored start (the moment
    it was *first* claimed and the start's nonce), so a retry (after a crash, a failed call, a
    lost answer) finds the same order and
    takes it from where it stopped; the payment service replays the same payment request.
    """

    def __init__(
        self,
        cmd: CheckoutCommand,
        ports: CheckoutPorts,
        new_uow: NewUow,
        policy: Policy,
        answer: Callable[[Order, PaymentResult | None], R],
    ) -> None:
        # Bad input is refused before a request id is claimed: nothing to undo.
        raise_if(validate_redemption(cmd.redeem_points, cmd.customer_id))
        validate_checkout(cmd.location_id, cmd.lines, cmd.tender, cmd.cash_tendered, cmd.card_token)
        raise_if(
            validate_codes(cmd.coupon_codes)
            + validate_manual(cmd.order_manual, "order_manual", ORDER_KINDS)
        )
        self.cmd = cmd
        self.ports = ports
        self.new_uow = new_uow
        self.policy = policy
        self.answer = answer
        # Pre-printed gift cards' codes, by line id (`L<n>`): kept in memory for this run only.
        self.codes = gift_card_codes(cmd.lines)
        # The codes of the gift cards this run issued, by line id: answered once, never stored.
        self.shown: dict[str, str] = {}
        # The sale was confirmed in the transaction that stored its answer (`record`).
        self.confirmed_in_record = False

    async def read(self, uow: OrderUnitOfWork) -> Started:
        cmd = self.cmd
        return await start_request(
            uow, cmd.request_id, cmd.fingerprint, cmd.customer_id, self.policy, need_settings=False
        )

    async def call(self, claim: Claim, started: Started) -> Sale:
        cmd, ports = self.cmd, self.ports
        assert cmd.tender is not None  # validated when the checkout was built
        order = started.existing
        if order is None:
            order_id = started.order_id  # derived from the request's stored start
            async with nothing_kept_if_refused(self.new_uow, cmd.request_id):
                priced = await priced_order(
                    ports,
                    self.new_uow,
                    started,
                    order_id,
                    cmd.location_id,
                    cmd.customer_id,
                    cmd.lines,
                    [FulfillmentRequest(FulfillmentType.IN_STORE, cmd.location_id)],
                    "register",
                    cmd.coupon_codes,
                    cmd.order_manual,
                    cmd.redeem_points,
                    cmd.below_cost_permitted,
                )
                order = priced.order
                validate_register_tender(cmd.tender, order.totals.total, cmd.cash_tendered)
                if order.totals.total.amount > 0:
                    await drawer_open_for_cash(ports, cmd.tender)
                await check_gift_card_lines(ports, cmd.lines, order, started.settings.hold_seconds)
            order.saga.confirm_requested = True
            order.saga.one_call_sale = True  # announced at its end only
            if order.totals.total.amount > 0:
                order.saga.tenders.append(
                    tender_record(order, cmd.tender, order.totals.total.amount, cmd.request_id)
                )
            order = await save_new(self.new_uow, priced, announce=False)
            await boundary(self.policy, "order_saved")
        return await self._drive(order)

    async def _drive(self, order: Order) -> Sale:
        cmd, policy = self.cmd, self.policy
        if order.saga.state is SagaState.COMPENSATING:
            order = await saga.compensate(self.new_uow, self.ports, order, policy)
        if order.saga.state is SagaState.DONE:
            order = await saga.settle_coupons(self.new_uow, self.ports, order)
            _not_a_sale(order)
            # Cash taken while the payment service was away: recorded now if it is back (the
            # resumer's request, answered once), else left to the resumer.
            order = await saga.record_taken(self.new_uow, self.ports, order, quietly=True)
            return Sale(order, await _last_payment(self.ports, order))
        if order.saga.coupons.step is CouponStep.SENT:
            cart = await coupon_cart(self.new_uow, order, cmd.coupon_codes, cmd.order_manual)
            order = await reserve_or_drop(
                self.new_uow, self.ports, order, cart, False, cmd.request_id
            )
        # Not announced before its end: points refused withdraw the sale.
        try:
            order = await saga.hold_points(self.new_uow, self.ports, order, policy, self._withdraw)
        except DomainError as exc:
            raise points_named(exc) from None
        if not order.saga.tenders:  # nothing to pay: a zero total
            order = await saga.finish_confirmation(
                self.new_uow, self.ports, order, policy, codes=self.codes, shown=self.shown
            )
            return Sale(order, None)
        tender = order.saga.tenders[0]
        assert cmd.tender is not None
        try:
            payment = await self.ports.payments.charge(
                tender.request_id,
                order.id,
                order.location_id,
                cmd.tender,
                order.totals.total,
                cmd.cash_tendered,
                cmd.card_token,
                needs_shift=True,
            )
        except DomainError as exc:
            if _payment_service_away(tender, exc):
                # Cash in the drawer is taken whether or not the payment service hears of it
                # now: the sale goes on, and its payment is recorded later (`saga.record_taken`).
                taken = _taken_in_hand(tender, cmd.cash_tendered)
                return await self._settled(order, taken, TenderState.CAPTURED)
            # By kind, not class: the payment service's refusal arrives as a plain DomainError.
            # A reused request id refuses this request, not the sale: the order is the one an
            # earlier request with another body made (and perhaps paid for), and stays for it.
            # So is cash whose shift closed after `drawer_open_for_cash` read it open: the
            # payment service refused it, nothing taken.
            refused = exc.kind is ErrorKind.INVALID or exc.code == CASH_NEEDS_SHIFT
            if not refused or exc.code == "idempotency_key_reused":
                raise
            # Refused before anything was taken (a token the processor never issued): the sale
            # never happened, so nothing of it stays. Its points and coupons are given back and
            # it is withdrawn with its request's start, so a retry is a new sale under a new
            # order id (under this one, the points hold released here would answer as held).
            await saga.refused(
                self.new_uow, self.ports, order, policy, "payment_declined", self._withdraw
            )
            raise
        await boundary(policy, "after_authorization")
        pending = saga.tender_state(payment) is TenderState.PENDING
        if pending and tender.payment_id:
            # The payment service replays its first answer (pending) to the same request: ask
            # it what the payment is now. Settled since (its reconciler asked the processor),
            # the retry finishes the sale; a till retrying all along would otherwise hear
            # "pending" for ever while the card was captured. So does a retry after the
            # resumer recorded the capture (a sale whose gift cards wait for this retry):
            # the replayed "pending" must not be written over the capture it knows of.
            now_ = [p for p in await self.ports.payments.of_order(order.id)
                    if p.payment_id == tender.payment_id]  # fmt: skip
            if not now_ or saga.tender_state(now_[0]) is TenderState.PENDING:
                # Still unknown: nothing new to write (a new version would show the order
                # again to every change feed).
                raise _payment_pending()
            payment = now_[0]
        settle = _settle(tender, payment)
        return await self._settled(order, settle, saga.tender_state(payment), payment)

    async def _settled(
        self,
        order: Order,
        settle: Callable[[Order], None],
        state: TenderState,
        payment: PaymentResult | None = None,
    ) -> Sale:
        """The tender's answer (`state`, written on the order by `settle`), and the sale
        finished."""
        policy = self.policy
        if _confirms_at_once(order, state):
            self.confirmed_in_record = True
            return Sale(order, payment, settle)
        order, _ = await change(self.new_uow, order.id, settle)
        await boundary(policy, "after_confirm_commit")
        if order.saga.state is SagaState.COMPENSATING:
            order = await saga.compensate(self.new_uow, self.ports, order, policy)
        if order.saga.state is SagaState.DONE:
            # Confirmed: the coupons are redeemed; declined: given back.
            order = await saga.settle_coupons(self.new_uow, self.ports, order)
            _not_a_sale(order)
            return Sale(order, payment)
        if order.saga.tenders[0].state is TenderState.PENDING:
            raise _payment_pending()
        # In store: captured at once, so confirming captures nothing more (gift card lines
        # are activated first).
        order = await saga.finish_confirmation(
            self.new_uow, self.ports, order, policy, codes=self.codes, shown=self.shown
        )
        return Sale(order, payment)

    async def _withdraw(self, order: Order) -> None:
        await discard(self.new_uow, order.id, self.cmd.request_id)

    async def record(self, uow: OrderUnitOfWork, sale: Sale) -> R:
        if sale.settle is None:
            return self.answer(await as_answered(uow, sale.order), sale.payment)
        # The order as this request saved it: written back unless something changed it since.
        order, _ = await saga.change_in(uow, sale.order.id, sale.settle, known=sale.order)
        if order.saga.state is not SagaState.DONE or order.coupons_due:
            # Changed by another hand while the card was charged (the resumer): nothing of
            # this transaction is kept, and the saga, persisted, is finished by whoever runs
            # it next.
            raise Unavailable(
                "the sale is being finished; retry with the same request id", "sale_in_progress"
            )
        return self.answer(order, sale.payment)


# The payment service's decline code for a processor that was never reached.


def _not_a_sale(order: Order) -> None:
    """A retry that finds its sale cancelled for another reason than a declined card (the
    resumer ended it as abandoned while the till's retries waited): a refusal, never the
    cancelled order as if sold (a till would hand the goods over). A decline keeps its own
    answer (the gateway's 402 carries the order)."""
    if order.status is OrderStatus.CANCELLED and order.cancel_reason != "payment_declined":
        raise Conflict(
            f"this sale was cancelled ({order.cancel_reason}): nothing of it was kept and "
            "nothing is charged; ring it up again under a new Idempotency-Key",
            "sale_cancelled",
            {"order_id": order.id, "cancel_reason": order.cancel_reason},
        )


def _payment_pending() -> Unavailable:
    return Unavailable(
        "the card's answer is not known yet; retry with the same request id: the sale "
        "is confirmed once the payment is, or cancelled",
        "payment_pending",
    )


def _payment_service_away(tender: TenderRecord, exc: DomainError) -> bool:
    """The payment service could not be reached for a tender taken in hand (cash): no word of
    it, so it may not have heard of the payment at all (or it did and the answer was lost: the
    later record under the same request id is answered with that payment)."""
    return tender.tender in TAKEN_IN_HAND and exc.code == "payment_unavailable"


def _taken_in_hand(tender: TenderRecord, cash_tendered: Money | None) -> Callable[[Order], None]:
    """The tender taken while the payment service was away, written on the order as captured
    (to be recorded there later), and the sale confirmed as any cash sale is."""

    def settle(o: Order) -> None:
        o.tender_taken_in_hand(tender.n, None if cash_tendered is None else cash_tendered.amount)
        _confirm_if_paid(o)

    return settle


def _settle(tender: TenderRecord, payment: PaymentResult) -> Callable[[Order], None]:
    """The payment's answer written on the order: confirmed when that ends the sale (in store,
    captured in full, nothing else to do), cancelled when declined."""

    def settle(o: Order) -> None:
        o.tender_answered(
            tender.n, payment.payment_id, saga.tender_state(payment), payment.captured_amount
        )
        _confirm_if_paid(o, payment)

    return settle


def _confirm_if_paid(o: Order, payment: PaymentResult | None = None) -> None:
    """After the one tender's answer: cancelled when it failed, confirmed when it ends the sale
    (in store, captured in full, nothing else to do)."""
    state = o.saga.tenders[0].state
    # Points held, or pre-printed gift card codes reserved: given back by the compensation.
    held = o.saga.points_state is not None or any(ln.code_supplied for ln in o.lines)
    if state is TenderState.FAILED:
        # The processor never reached (a payment-service crash mid-charge, settled by its
        # reconciler) declined nothing: the sale ends as not taken, not as a decline, and
        # the till hears `sale_cancelled`, not "declined".
        unreached = payment is not None and payment.decline_code == PROCESSOR_UNREACHED
        o.begin_cancel("payment_unavailable" if unreached else "payment_declined")
        if not held:  # what is held is given back by the compensation below
            o.cancelled(now())
    elif (
        state is TenderState.CAPTURED
        and o.balance_due == 0
        and not held
        and not saga.gift_cards_due(o)
    ):
        # In store, captured at once: nothing held, nothing more to capture, so the
        # payment's answer and the confirmation commit together (one transaction).
        o.attribute_taken()
        o.confirm(now())


def _confirms_at_once(order: Order, state: TenderState) -> bool:
    """Whether the tender's answer (`state`) confirms the sale with nothing left to ask
    another service (no points, gift cards or coupons to settle): then it is written with the
    stored answer of the request."""
    return (
        len(order.saga.tenders) == 1
        and state is TenderState.CAPTURED
        and order.saga.tenders[0].amount >= order.totals.total.amount
        and order.saga.state is SagaState.RUNNING
        and order.saga.points_state is None
        and order.saga.coupons.step not in (CouponStep.SENT, CouponStep.RESERVED)
        and not saga.gift_cards_due(order)
    )


async def _last_payment(ports: CheckoutPorts, order: Order) -> PaymentResult | None:
    if not order.saga.tenders:
        return None
    try:
        found = await ports.payments.of_order(order.id)
    except Unavailable:
        return None
    return found[-1] if found else None
