"""Use cases of the order service; every entrypoint (gRPC, consumers, the resumer) calls these.

Each operation that calls other services runs in the kit's three steps (`read` in the claiming
transaction, `call` holding no connection, `record` in one short transaction); inside `call`
the saga (service/saga.py) records each step it takes in a short transaction of its own, so
the order and its saga state are saved before any payment is taken.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta
from typing import Generic, Protocol, TypeVar

from pos_kit.context import register_var, staff_var
from pos_kit.errors import (
    Conflict,
    DomainError,
    ErrorKind,
    FieldViolation,
    NotFound,
    RequestIdReused,
    Unavailable,
    raise_if,
    require,
)
from pos_kit.idempotency import Claim
from pos_kit.money import Money
from pos_kit.paging import PageRequest
from pos_order.domain.coupons import CouponStep, validate_codes
from pos_order.domain.model import (
    CAPTURES_AT,
    TAKEN_IN_HAND,
    DraftAsk,
    FulfillmentRequest,
    FulfillmentStatus,
    FulfillmentType,
    HoldState,
    LineRequest,
    Order,
    OrderStatus,
    PointsState,
    SagaState,
    SellingLocation,
    Tender,
    TenderRecord,
    TenderState,
    below_cost,
    below_cost_refused,
    build_fulfillments,
    metadata_violations,
    price_points,
    validate_checkout,
    validate_order,
    validate_redemption,
    validate_register_tender,
    validate_total,
)
from pos_order.domain.pricing import (
    MAX_MERGE_HOPS,
    ORDER_KINDS,
    Buyer,
    Manual,
    manual_off_bps,
    validate_manual,
)
from pos_order.domain.returns import (
    ReceiptlessLimit,
    UnitsRefund,
    price_given_back,
    receiptless_limit_violations,
    refuse_cancel_cash_without_drawer,
)
from pos_order.service import pricing, saga
from pos_order.service.ports import (
    PROCESSOR_UNREACHED,
    AppliedDiscount,
    CartContext,
    CheckoutCommand,
    CheckoutPorts,
    CreateOrderCommand,
    CustomerLookup,
    DiscountQuote,
    DraftChange,
    NewUow,
    OrderFilters,
    OrderSettings,
    OrderUnitOfWork,
    PaymentResult,
    TenderAsk,
)
from pos_order.service.saga import Policy, boundary, change, now

R = TypeVar("R")
log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Started:
    """What a new order's request reads in its claiming transaction."""

    at: datetime  # when the request was first claimed (with a nonce, its order id's seed)
    known_customer: bool  # no customer, or one the read model has: no call needed
    order_id: str
    existing: Order | None  # a re-run finds the order its first run saved
    settings: OrderSettings
    # The customer's groups and tax exemption, from the read model.
    buyer: Buyer = field(default_factory=Buyer)
    # The customer the sale is for, as the read model knows them: the id named, or the
    # survivor it was merged into (a sale is never the merged-away duplicate's).
    customer_id: str = ""


@dataclass(frozen=True)
class Sale:
    order: Order
    payment: PaymentResult | None
    # In store and captured in full: the payment's answer and the confirmation are written in
    # the transaction that stores the request's answer (`Checkout.record`), one commit fewer.
    settle: Callable[[Order], None] | None = None


async def _start(
    uow: OrderUnitOfWork,
    request_id: str,
    fingerprint: bytes,
    customer_id: str,
    policy: Policy,
    need_settings: bool = True,
) -> Started:
    # Another body under a request id whose start is kept is refused here, before its order is
    # read: it would go on with the first body's order (charge this body's card for that cart).
    start = await uow.checkouts.start(request_id, fingerprint)
    order_id = start.claim(uow.merchant_id, request_id).derived_id("ord")
    # A start made just now names an order id no run has used: nothing to look for.
    existing = None if start.fresh else await uow.orders.get(order_id)
    if existing is not None:
        await uow.orders.touch(order_id)
    # One read tells whether the customer is known here, who they are now (a duplicate merged
    # away is its survivor) and what pricing needs of them.
    who = await uow.customers.resolve(customer_id) if customer_id and existing is None else None
    known = existing is not None or not customer_id or who is not None
    # A register sale holds nothing: the merchant's hold settings do not concern it.
    found = await uow.settings.get() if need_settings else None
    settings = found or policy.defaults
    buyer, resolved = (who.buyer, who.id) if who is not None else (Buyer(), customer_id)
    return Started(start.at, known, order_id, existing, settings, buyer, resolved)


def at_register() -> tuple[str, str]:
    """The register and staff member a sale is made at, from the call's metadata (the gateway
    sets both from a register's credential): kept on the order, which every later step of the
    saga and every return reads, whoever drives it then (the resumer has no register)."""
    register = register_var.get() or ""
    return (register, staff_var.get() or "") if register else ("", "")


# How long a cash sale at a register waits to learn whether a shift is open there.
SHIFT_READ_SECONDS = 1.0


async def drawer_open_for_cash(
    ports: CheckoutPorts, tender: object, fields: Sequence[str] = ("tender_type",)
) -> None:
    """Cash taken at a register goes in its drawer, which the shift open there counts: with
    none open it would count in no shift (a gift card sold for cash there, or cash given
    back, is refused the same way). A cash tender at a register with no shift open is a 409
    `cash_needs_open_shift` naming `tender_type`, before anything is saved or charged. From
    the back office (no register) cash is taken as before; cards need no shift. While the
    payment service is away the shift cannot be read: the cash sale goes on, as one does then
    (recorded later, in the shift open at the register when it is). `fields`: the request's
    fields naming the cash tender (an exchange's `tenders[i].tender_type`)."""
    register_id, _ = at_register()
    if tender is not Tender.CASH or not register_id:
        return
    try:
        # A deadline of its own: a payment service that takes the call and never answers
        # must leave the sale its own call's time (the till hears of it before the gateway's
        # deadline), not spend it here.
        shift = await asyncio.wait_for(
            ports.payments.open_shift_at(register_id), SHIFT_READ_SECONDS
        )
    except TimeoutError:
        return
    except DomainError as exc:
        if exc.kind is ErrorKind.UNAVAILABLE:
            return
        raise
    if shift:
        return
    refused = Conflict(
        f"cash goes in the drawer of register {register_id}, which has no shift open: open one "
        "first, or take another tender",
        "cash_needs_open_shift",
        {"register_id": register_id},
    )
    refused.violations = [
        FieldViolation(f, "cash needs a shift open at the register") for f in fields
    ]
    raise refused


@dataclass(frozen=True)
class Priced:
    order: Order
    learnt: int | None  # the version of a customer id asked about, kept with the order
    location: SellingLocation | None  # priced live: kept in the read model with the order


async def _priced_order(
    ports: CheckoutPorts,
    new_uow: NewUow,
    started: Started,
    order_id: str,
    location_id: str,
    customer_id: str,
    lines: list[LineRequest],
    fulfillments: list[FulfillmentRequest],
    channel: str,
    coupon_codes: tuple[str, ...] = (),
    order_manual: Manual | None = None,
    redeem_points: int = 0,
    below_cost_permitted: bool = True,
) -> Priced:
    # Before anything is priced or charged: another merchant's customer is no customer, and a
    # duplicate merged away is the survivor (the sale, its points and its history are theirs).
    learnt = None
    if started.known_customer:
        customer_id = started.customer_id
    elif customer_id:
        customer_id, learnt = await resolve_customer(ports.customers, customer_id)
    cart = await pricing.price_cart(
        ports,
        new_uow,
        location_id,
        customer_id,
        lines,
        fulfillments,
        channel,
        coupon_codes,
        order_manual,
        started.buyer,
    )
    refuse_rejected(cart.quote)
    raise_if(validate_total(cart.totals))
    location, priced, quote, totals = cart.location, cart.lines, cart.quote, cart.totals
    live = cart.live
    points_discount = None
    if redeem_points:
        # Priced now, before anything is saved: the customer service down is a 503 that
        # leaves nothing behind; the hold itself comes once the order is saved.
        if ports.loyalty is None:
            raise Unavailable("loyalty points cannot be redeemed now", "customer_unavailable")
        points_discount = price_points(
            redeem_points, await ports.loyalty.point_value(), _points_may_discount(cart)
        )
        # An order-level discount after the promotions', before tax (the pricing step's).
        totals = pricing.apply_points(cart, points_discount.amount)
    below = below_cost(priced, cart.items, location.tax_inclusive)
    if below and not below_cost_permitted:
        raise below_cost_refused(below)
    for i in below:
        priced[i].below_cost = True
    register_id, staff_id = at_register()
    order = Order(
        id=order_id,
        location_id=location.id,
        customer_id=customer_id,
        lines=priced,
        totals=totals,
        discounts_applied=quote.applied,
        channel=channel,
        register_id=register_id,
        staff_id=staff_id,
    )
    if points_discount is not None:
        order.saga.points, order.saga.points_discount = redeem_points, points_discount.amount
        order.saga.points_state = PointsState.SENT
    # What taxes a sourced shipment's lines where they leave from once sourcing picks the stores.
    order.saga.tax_inclusive, order.saga.tax_exempt = location.tax_inclusive, cart.tax_exempt
    order.fulfillments = build_fulfillments(
        order_id, fulfillments, priced, lines, totals.total.amount, location.tax_inclusive
    )
    order.expires_at = now() + timedelta(seconds=started.settings.hold_seconds)
    if coupon_codes:
        order.saga.coupons.step = CouponStep.SENT
    return Priced(order, learnt, location if live else None)


def refuse_rejected(quote: DiscountQuote) -> None:
    """A coupon the customer named that cannot apply stops the sale (409 with the reason), so
    the till can ask them: never a silent sale at full price."""
    if quote.rejected:
        first = min(quote.rejected, key=lambda r: r.index)
        refused = Conflict(
            f"coupon_codes[{first.index}]: {first.message}",
            first.reason,
            {"code_index": str(first.index)},
        )
        refused.violations = [FieldViolation(f"coupon_codes[{first.index}]", first.message)]
        raise refused


async def _reserve_or_drop(
    new_uow: NewUow,
    ports: CheckoutPorts,
    order: Order,
    cart: CartContext,
    announce: bool,
    request_id: str,
) -> Order:
    """The coupons reserved before anything else is taken for the order; refused, the order
    is dropped with its request's start (nothing was held or paid, and it was not announced:
    a retry starts anew) and the refusal stands. The pre-printed gift card codes it reserved
    are released first: dropped, the order is compensated by nobody (the payment service away,
    the order stays, for the retry or the resumer's compensation)."""
    try:
        return await saga.reserve_coupons(new_uow, ports, order, cart, announce)
    except DomainError as exc:
        if exc.kind in saga.TRANSIENT:
            raise
        await saga.release_gift_card_codes(ports, order)
        await _discard(new_uow, order.id, request_id)
        raise


async def _save_new(new_uow: NewUow, priced: Priced, announce: bool = True) -> Order:
    """The order and its saga, saved before any hold or payment."""
    order, learnt = priced.order, priced.learnt
    async with new_uow() as uow:
        if learnt is not None:
            await uow.customers.remember(order.customer_id, learnt)
        if priced.location is not None:
            await uow.prices.remember_location(priced.location)
        order.created_at = order.updated_at = now()
        order.created(order.created_at, announce)
        if not await uow.orders.add(order):
            order.events.clear()
            found = await uow.orders.get(order.id)
            assert found is not None
            return found
        _announce(uow, order)
        await uow.commit()
    return order


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
        return await _start(
            uow, cmd.request_id, cmd.fingerprint, cmd.customer_id, self.policy, need_settings=False
        )

    async def call(self, claim: Claim, started: Started) -> Sale:
        cmd, ports = self.cmd, self.ports
        assert cmd.tender is not None  # validated when the checkout was built
        order = started.existing
        if order is None:
            order_id = started.order_id  # derived from the request's stored start
            async with _nothing_kept_if_refused(self.new_uow, cmd.request_id):
                priced = await _priced_order(
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
            if order.totals.total.amount > 0:
                order.saga.tenders.append(
                    _tender_record(order, cmd.tender, order.totals.total.amount, cmd.request_id)
                )
            order = await _save_new(self.new_uow, priced, announce=False)
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
            cart = CartContext(order.location_id, order.channel, order.customer_id,
                               cmd.coupon_codes)  # fmt: skip
            order = await _reserve_or_drop(
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
            if exc.kind is not ErrorKind.INVALID or exc.code == "idempotency_key_reused":
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
        await _discard(self.new_uow, order.id, self.cmd.request_id)

    async def record(self, uow: OrderUnitOfWork, sale: Sale) -> R:
        if sale.settle is None:
            return self.answer(sale.order, sale.payment)
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


async def check_gift_card_lines(
    ports: CheckoutPorts, lines: list[LineRequest], order: Order, hold_seconds: int
) -> None:
    """Before a new order is saved and anything is charged: each gift card line can be
    activated once it is paid. Its value within the merchant's maximum balance, else a 409
    `gift_card_balance_limit` on `lines[i].gift_card.amount`. A pre-printed code is reserved
    for the order's line (`saga.reserve_gift_card_code`); one a card of the merchant has, one
    another sale holds, or one an earlier line of this sale names (the code written any way it
    is read) is a 409 `gift_card_code_taken` on `lines[i].gift_card.code`, the code never
    repeated, and what this sale reserved is released. Found only at the activation, such a
    line would undo the sale after its card was charged: refunded, its other cards activated
    and deactivated. The reservation is the check: of concurrent sales of one card, one is
    charged and sells it, the others are refused before anything is charged."""
    asked = [(i, ln.gift_card) for i, ln in enumerate(lines) if ln.gift_card is not None]
    if not asked:
        return
    if ports.gift_cards is None:
        raise Unavailable("gift cards cannot be sold now", "payment_unavailable")
    most = await ports.gift_cards.max_balance()
    over = [
        FieldViolation(
            f"lines[{i}].gift_card.amount",
            f"must be at most {most}: the most one of your gift cards may hold",
        )
        for i, card in asked
        if most and card.amount.amount > most
    ]
    if over:
        raise DomainError(
            f"a gift card may hold at most {most} minor units: nothing was charged",
            "gift_card_balance_limit",
            over,
            {"max_balance": str(most)},
            ErrorKind.CONFLICT,
        )
    taken: list[FieldViolation] = []
    seen: set[str] = set()
    try:
        for i, card in asked:
            if not card.code:
                continue
            normalised = card.code.replace("-", "").upper()
            if normalised in seen or not await _reserved(ports, order, i, card.code, hold_seconds):
                taken.append(
                    FieldViolation(
                        f"lines[{i}].gift_card.code",
                        "another gift card, another sale or another line of this sale has "
                        "this code",
                    )
                )
            seen.add(normalised)
        if taken:
            raise DomainError(
                "a pre-printed gift card's code is taken already: nothing was charged",
                "gift_card_code_taken",
                taken,
                {},
                ErrorKind.CONFLICT,
            )
    except Exception:
        # The order is not saved: nothing else would release what it reserved (the
        # reservations would only lapse). Not released (the payment service away), they do.
        try:
            await saga.release_gift_card_codes(ports, order)
        except DomainError as exc:
            log.warning("codes of order %s left to lapse: %s", order.id, exc.code)
        raise


async def _reserved(
    ports: CheckoutPorts, order: Order, i: int, code: str, hold_seconds: int
) -> bool:
    """Whether line `i`'s code is now reserved for the order (False: taken)."""
    try:
        await saga.reserve_gift_card_code(ports, order, f"L{i + 1}", code, hold_seconds)
    except DomainError as exc:
        # By its code: the payment service's refusal arrives as a plain DomainError.
        if exc.code == "gift_card_code_taken":
            return False
        raise
    return True


def gift_card_codes(lines: list[LineRequest]) -> dict[str, str]:
    return {
        f"L{i + 1}": ln.gift_card.code
        for i, ln in enumerate(lines)
        if ln.gift_card is not None and ln.gift_card.code
    }


@asynccontextmanager
async def _nothing_kept_if_refused(new_uow: NewUow, request_id: str) -> AsyncIterator[None]:
    """Pricing a new sale or order, before it is saved: refused there (an unknown SKU, location
    or customer, a gift card line that cannot be activated, a service away), nothing happened,
    so the request's first moment is forgotten too. The corrected request may then use the same
    key, as the gateway promises of a 4xx or 5xx (it keeps nothing of them either); before, the
    kept start answered it 422 `idempotency_key_reused`."""
    try:
        yield
    except Exception:
        try:
            async with new_uow() as uow:
                await uow.checkouts.forget(request_id)
                await uow.commit()
        except Exception as exc:
            # The start then stays, as before: the refusal itself is what to report.
            log.warning("could not forget a refused request's start: %s", type(exc).__name__)
        raise


async def _discard(new_uow: NewUow, order_id: str, request_id: str = "") -> None:
    """`request_id`: the request's first moment is forgotten with its order, so a retry of it
    makes an order of a new id, never one whose step ids the other services would answer
    with what they did for this one (holds since released)."""
    async with new_uow() as uow:
        await uow.orders.discard(order_id)
        if request_id:
            await uow.checkouts.forget(request_id)
        await uow.commit()


def _tender_record(order: Order, tender: Tender, amount: int, asked_by: str) -> TenderRecord:
    n = len(order.saga.tenders) + 1
    register_id, staff_id = at_register()
    return TenderRecord(
        n,
        tender,
        amount,
        f"{order.id}/payment/{n}",
        asked_by,
        register_id=register_id,
        staff_id=staff_id,
    )


async def _last_payment(ports: CheckoutPorts, order: Order) -> PaymentResult | None:
    if not order.saga.tenders:
        return None
    try:
        found = await ports.payments.of_order(order.id)
    except Unavailable:
        return None
    return found[-1] if found else None


class CreateOrder(Generic[R]):
    """An order from any channel: priced, saved `pending_payment`, then its pickup and
    shipment lines held (all or none), and announced (`order.created`) once they are: a
    sourced shipment's store is then known. Short stock: 409 naming the short lines, every
    hold, coupon and points hold it took given back, and the order withdrawn (nobody was told
    of it). `draft`: priced and saved `draft`, announced at once, nothing held (SubmitOrder)."""

    def __init__(
        self,
        cmd: CreateOrderCommand,
        ports: CheckoutPorts,
        new_uow: NewUow,
        policy: Policy,
        answer: Callable[[Order], R],
    ) -> None:
        fulfillments = cmd.fulfillments or [
            FulfillmentRequest(FulfillmentType.IN_STORE, cmd.location_id)
        ]
        raise_if(validate_redemption(cmd.redeem_points, cmd.customer_id))
        validate_order(cmd.channel, cmd.location_id, cmd.lines, fulfillments, cmd.metadata)
        raise_if(
            validate_codes(cmd.coupon_codes)
            + validate_manual(cmd.order_manual, "order_manual", ORDER_KINDS)
            + _no_printed_codes(cmd.lines)
            + (_no_draft_codes(cmd.coupon_codes) if cmd.draft else [])
        )
        self.cmd = replace(cmd, fulfillments=fulfillments)
        self.ports = ports
        self.new_uow = new_uow
        self.policy = policy
        self.answer = answer

    async def read(self, uow: OrderUnitOfWork) -> Started:
        cmd = self.cmd
        return await _start(uow, cmd.request_id, cmd.fingerprint, cmd.customer_id, self.policy)

    async def call(self, claim: Claim, started: Started) -> Order:
        cmd = self.cmd
        order = started.existing
        if order is None:
            order_id = started.order_id  # derived from the request's stored start
            async with _nothing_kept_if_refused(self.new_uow, cmd.request_id):
                priced = await _priced_order(
                    self.ports,
                    self.new_uow,
                    started,
                    order_id,
                    cmd.location_id,
                    cmd.customer_id,
                    cmd.lines,
                    cmd.fulfillments,
                    cmd.channel,
                    cmd.coupon_codes,
                    cmd.order_manual,
                    cmd.redeem_points,
                    cmd.below_cost_permitted,
                )
                order = priced.order
                await check_gift_card_lines(
                    self.ports, cmd.lines, order, started.settings.hold_seconds
                )
            order.notes, order.metadata = cmd.notes, dict(cmd.metadata)
            if cmd.draft:
                # Announced now, as a draft: nothing is held, reserved or set aside until
                # its submit (SubmitOrder), which prices it again.
                order.made_draft(_ask_of(cmd))
                return await _save_new(self.new_uow, priced)
            order.saga.hold_ttl = started.settings.hold_seconds
            # With stock to hold, the order is announced once it is held; else, with coupons,
            # once they are reserved (a refusal drops an order nobody was told of).
            order.saga.announce_when_held = any(f.held for f in order.fulfillments)
            announce = not cmd.coupon_codes and not order.saga.announce_when_held
            order = await _save_new(self.new_uow, priced, announce)
            await boundary(self.policy, "order_saved")
        if order.saga.coupons.step is CouponStep.SENT:
            cart = CartContext(order.location_id, order.channel, order.customer_id,
                               cmd.coupon_codes)  # fmt: skip
            announce = not order.saga.announce_when_held
            order = await _reserve_or_drop(
                self.new_uow, self.ports, order, cart, announce, cmd.request_id
            )
        if order.saga.state is SagaState.RUNNING and order.status is OrderStatus.PENDING_PAYMENT:
            if any(f.held for f in order.fulfillments) and self.ports.stock is None:
                raise Unavailable("stock cannot be held now", "inventory_unavailable")
            # Points refused: an order waiting for its holds was never announced, and is
            # withdrawn as for short stock; one announced already is cancelled.
            unannounced = self._withdraw if order.saga.announce_when_held else None
            try:
                order = await saga.hold_points(
                    self.new_uow, self.ports, order, self.policy, unannounced
                )
            except DomainError as exc:
                raise points_named(exc) from None
            order = await saga.hold_stock(
                self.new_uow, self.ports, order, self.policy, self._withdraw
            )
        return order

    async def _withdraw(self, order: Order) -> None:
        await _discard(self.new_uow, order.id, self.cmd.request_id)

    async def record(self, uow: OrderUnitOfWork, order: Order) -> R:
        return self.answer(order)


def _no_printed_codes(lines: list[LineRequest]) -> list[FieldViolation]:
    # The order is confirmed by a later request (or the resumer): a pre-printed card's code
    # would have to be kept until then, and codes are never stored. The register's one-call
    # checkout takes them.
    return [
        FieldViolation(
            f"lines[{i}].gift_card.code",
            "a pre-printed card's code is taken by the one-call checkout only",
        )
        for i, ln in enumerate(lines)
        if ln.gift_card is not None and ln.gift_card.code
    ]


def _ask_of(cmd: CreateOrderCommand) -> DraftAsk:
    return DraftAsk(
        list(cmd.lines),
        list(cmd.fulfillments),
        tuple(cmd.coupon_codes),
        cmd.order_manual,
        cmd.redeem_points,
    )


def _no_draft_codes(codes: Sequence[str]) -> list[FieldViolation]:
    """A coupon code is a bearer's claim on a discount, and the platform never stores one (the
    promotion service keeps a keyed hash, the order the coupon's id and last four): a draft,
    which waits, keeps none. They are given with its submit, which reserves them at once."""
    return require(
        not codes,
        "coupon_codes",
        "a draft keeps no coupon code: give the codes with its submit",
    )


def _validate_draft(
    order: Order, ask: DraftAsk, customer_id: str, metadata: dict[str, str]
) -> None:
    """A draft's cart as edited, checked as CreateOrder checks a new one: bad input is a 400
    naming each field, nothing written."""
    raise_if(validate_redemption(ask.redeem_points, customer_id))
    validate_order(order.channel, order.location_id, ask.lines, ask.fulfillments, metadata)
    raise_if(
        _no_draft_codes(ask.coupon_codes)
        + validate_manual(ask.order_manual, "order_manual", ORDER_KINDS)
        + _no_printed_codes(ask.lines)
    )


async def _draft_start(
    uow: OrderUnitOfWork, order: Order, customer_id: str, policy: Policy
) -> Started:
    """What pricing a draft again reads in the claiming transaction: the customer as the read
    model knows them (merged away: the survivor), and the merchant's settings."""
    who = await uow.customers.resolve(customer_id) if customer_id else None
    settings = await uow.settings.get() or policy.defaults
    buyer, resolved = (who.buyer, who.id) if who is not None else (Buyer(), customer_id)
    known = not customer_id or who is not None
    return Started(now(), known, order.id, order, settings, buyer, resolved)


async def _price_draft(
    ports: CheckoutPorts,
    new_uow: NewUow,
    started: Started,
    ask: DraftAsk,
    customer_id: str,
    below_cost_permitted: bool = True,
) -> Priced:
    """The draft priced from its cart as the catalog, the promotions, the tax and the loyalty
    program stand now (no write): what CreateOrder's pricing step gives a new order."""
    order = started.existing
    assert order is not None
    priced = await _priced_order(
        ports,
        new_uow,
        started,
        order.id,
        order.location_id,
        customer_id,
        ask.lines,
        ask.fulfillments,
        order.channel,
        ask.coupon_codes,
        ask.order_manual,
        ask.redeem_points,
        below_cost_permitted,
    )
    await check_gift_card_lines(ports, ask.lines, priced.order, started.settings.hold_seconds)
    return priced


def _draft_changed(current: int) -> Conflict:
    return Conflict(
        "the draft changed since the version you sent (or while this was priced)",
        "version_mismatch",
        {"current_version": str(current)},
    )


# How many times an edit or a submit naming no version prices a draft that other changes keep
# moving under it before it gives up (the 409 `version_mismatch`): each round one of the
# changes made at once is saved, so this many at once all apply.
DRAFT_ATTEMPTS = 10


def _priced_again(exc: Conflict, expected_version: int, attempt: int) -> bool:
    """Whether a change of a draft refused because another came in while it was priced is
    read and priced again: only one that named no version (one that did asked for exactly the
    version it saw), and a few times at most. A request naming no version was refused with a
    `version_mismatch` (a 412 at the gateway, for a request with no If-Match) for a change it
    never knew of; the draft as the other change left it is what it edits."""
    return exc.code == "version_mismatch" and not expected_version and attempt < DRAFT_ATTEMPTS - 1


def _announce(uow: OrderUnitOfWork, order: Order) -> None:
    """The order's events, written to the outbox with the unit of work, and forgotten."""
    for event in order.events:
        uow.publish(event)
    order.events.clear()


async def _change_draft(
    new_uow: NewUow, priced: Priced, seen: int, apply: Callable[[Order], None]
) -> Order:
    """One short transaction: the draft read locked, still at the version it was priced from
    (changed since, the pricing would undo the other change: a 409 `version_mismatch`, nothing
    written), changed by `apply`, saved as a new version with what pricing learnt."""
    async with new_uow() as uow:
        order = await uow.orders.get(priced.order.id, lock=True)
        if order is None:
            raise NotFound("order", priced.order.id)
        order.require_draft("only a draft is edited or submitted")
        if order.version != seen:
            raise _draft_changed(order.version)
        if priced.learnt is not None:
            await uow.customers.remember(priced.order.customer_id, priced.learnt)
        if priced.location is not None:
            await uow.prices.remember_location(priced.location)
        order.touched(now())
        apply(order)
        await uow.orders.save(order)
        _announce(uow, order)
        await uow.commit()
    return order


# What is kept on an order beside the sale: changed in any status, nothing priced again.
ANNOTATIONS = frozenset({"notes", "metadata"})
MAX_NOTES = 2000


class AnnotateOrder(Generic[R]):
    """An order's notes or metadata changed, whatever its status: a packing note, a partner's
    own ids kept on the order after it is placed (a draft's too, without pricing it again).
    Nothing is priced, held or paid: a new version, announced (`order_updated`).
    `expected_version` (0: any) not the order's is a 409 `version_mismatch` with
    `current_version`, nothing written."""

    def __init__(self, cmd: DraftChange, new_uow: NewUow, answer: Callable[[Order], R]) -> None:
        violations: list[FieldViolation] = []
        if cmd.notes is not None:
            violations += require(len(cmd.notes) <= MAX_NOTES, "notes", "at most 2,000 characters")
        if cmd.metadata is not None:
            violations += metadata_violations(dict(cmd.metadata))
        raise_if(violations)
        self.cmd = cmd
        self.new_uow = new_uow
        self.answer = answer

    def _check(self, order: Order | None) -> Order:
        if order is None:
            raise NotFound("order", self.cmd.order_id)
        if self.cmd.expected_version and self.cmd.expected_version != order.version:
            raise _order_changed(order.version)
        return order

    async def read(self, uow: OrderUnitOfWork) -> None:
        self._check(await uow.orders.get(self.cmd.order_id))

    async def call(self, claim: Claim, read: None) -> Order:
        async with self.new_uow() as uow:
            order = self._check(await uow.orders.get(self.cmd.order_id, lock=True))
            order.annotated(self.cmd.notes, self.cmd.metadata, now())
            await uow.orders.save(order)
            _announce(uow, order)
            await uow.commit()
        return order

    async def record(self, uow: OrderUnitOfWork, order: Order) -> R:
        return self.answer(order)


def _order_changed(current: int) -> Conflict:
    return Conflict(
        "the order changed since the version you sent", "version_mismatch",
        {"current_version": str(current)},
    )  # fmt: skip


class UpdateDraftOrder(Generic[R]):
    """A draft's cart edited: each field given replaces the draft's (lines, fulfilments,
    customer, coupons, manual discount, points, notes, metadata), and the draft is priced again
    from what it then asks, as the catalog, the promotions and the customer stand now: a new
    version. Nothing is held or reserved. `expected_version` (0: any) not the draft's is a 409
    `version_mismatch` with `current_version`, nothing written, and so is a change that came in
    while this one was priced; with no `expected_version`, the draft as that change left it is
    read and priced again instead (`DRAFT_ATTEMPTS`); an order that is no longer a draft is a
    409 `order_not_draft`.
    Each edit is announced (`order_updated`, the draft at its new version), so a partner
    following events sees every version of the cart. `clear_order_manual`: the draft's manual
    discount on the whole order is removed (`order_manual` None keeps it)."""

    def __init__(
        self,
        cmd: DraftChange,
        ports: CheckoutPorts,
        new_uow: NewUow,
        policy: Policy,
        answer: Callable[[Order], R],
    ) -> None:
        self.cmd = cmd
        self.ports = ports
        self.new_uow = new_uow
        self.policy = policy
        self.answer = answer

    def _ask(self, draft: DraftAsk) -> DraftAsk:
        cmd = self.cmd
        return DraftAsk(
            draft.lines if cmd.lines is None else cmd.lines,
            draft.fulfillments if cmd.fulfillments is None else cmd.fulfillments,
            draft.coupon_codes if cmd.coupon_codes is None else cmd.coupon_codes,
            self._order_manual(draft),
            draft.redeem_points if cmd.redeem_points is None else cmd.redeem_points,
        )

    def _order_manual(self, draft: DraftAsk) -> Manual | None:
        cmd = self.cmd
        if cmd.clear_order_manual:
            return None
        return draft.order_manual if cmd.order_manual is None else cmd.order_manual

    def _within_limit(self, ask: DraftAsk) -> None:
        """The caller's limit holds over the draft's manual discounts after the change (those
        it keeps and those given now, a line's and the order's together), as over one request
        giving them all: 10 % kept on a line and 10 % given on the order is 19 % off it."""
        limit = self.cmd.manual_limit_bps
        if limit is None:
            return
        off = manual_off_bps([ln.manual for ln in ask.lines], ask.order_manual)
        if off is not None and off <= limit:
            return
        raise DomainError(
            "the draft's manual discounts after this change are above the caller's limit",
            "discount_above_limit",
            [],
            {"limit_bps": str(limit)},
            ErrorKind.FORBIDDEN,
        )

    async def read(self, uow: OrderUnitOfWork) -> tuple[Started, DraftAsk]:
        cmd = self.cmd
        order = await uow.orders.get(cmd.order_id)
        if order is None:
            raise NotFound("order", cmd.order_id)
        order.require_draft("only a draft is edited")
        if cmd.expected_version and cmd.expected_version != order.version:
            raise _draft_changed(order.version)
        assert order.saga.draft is not None
        ask = self._ask(order.saga.draft)
        self._within_limit(ask)
        given = cmd.fulfillments if cmd.fulfillments is not None else ask.fulfillments
        fulfillments = given or [FulfillmentRequest(FulfillmentType.IN_STORE, order.location_id)]
        ask = replace(ask, fulfillments=fulfillments)
        customer_id = order.customer_id if cmd.customer_id is None else cmd.customer_id
        metadata = order.metadata if cmd.metadata is None else cmd.metadata
        _validate_draft(order, ask, customer_id, metadata)
        return await _draft_start(uow, order, customer_id, self.policy), ask

    async def call(self, claim: Claim, read: tuple[Started, DraftAsk]) -> Order:
        for attempt in range(DRAFT_ATTEMPTS):
            try:
                return await self._price_and_save(*read)
            except Conflict as exc:
                if not _priced_again(exc, self.cmd.expected_version, attempt):
                    raise
            async with self.new_uow().reading() as uow:
                read = await self.read(uow)
        raise AssertionError("unreachable: the last attempt raises")

    async def _price_and_save(self, started: Started, ask: DraftAsk) -> Order:
        cmd = self.cmd
        assert started.existing is not None
        customer_id = started.existing.customer_id if cmd.customer_id is None else cmd.customer_id
        priced = await _price_draft(
            self.ports, self.new_uow, started, ask, customer_id, cmd.below_cost_permitted
        )

        def revise(o: Order) -> None:
            o.edited(priced.order, ask)
            if cmd.notes is not None:
                o.notes = cmd.notes
            if cmd.metadata is not None:
                o.metadata = dict(cmd.metadata)

        return await _change_draft(self.new_uow, priced, started.existing.version, revise)

    async def record(self, uow: OrderUnitOfWork, order: Order) -> R:
        return self.answer(order)


class SubmitOrder(Generic[R]):
    """A draft submitted: priced again from its cart (a draft may be days old: the catalog,
    promotions, tax and point value as they stand now), saved `pending_payment`, then its
    pickup and shipment lines held exactly as CreateOrder holds a new order's (all or none),
    its coupons reserved and its points held, in that order. Short stock is the 409
    `insufficient_stock` CreateOrder answers, every hold taken released, and the order is a
    draft again (its timeline says why); so is a coupon refused at its reservation. Points
    refused once its coupons are reserved cancel it (the promotion service would answer a
    later submit with the released reservation). An order submitted already and waiting for
    payment is answered as it is (a submit under way is driven on); any other is a 409
    `order_not_draft`."""

    def __init__(
        self,
        request_id: str,
        order_id: str,
        coupon_codes: tuple[str, ...],
        ports: CheckoutPorts,
        new_uow: NewUow,
        policy: Policy,
        answer: Callable[[Order], R],
    ) -> None:
        # Refused before a request id is claimed: nothing to undo.
        raise_if(validate_codes(coupon_codes))
        self.request_id = request_id
        self.order_id = order_id
        # Kept in memory for this run only, as every code the order is given.
        self.coupon_codes = coupon_codes
        self.ports = ports
        self.new_uow = new_uow
        self.policy = policy
        self.answer = answer

    async def read(self, uow: OrderUnitOfWork) -> Started:
        order = await uow.orders.get(self.order_id)
        if order is None:
            raise NotFound("order", self.order_id)
        if order.status is OrderStatus.PENDING_PAYMENT and order.saga.submits:
            return Started(now(), True, order.id, order, self.policy.defaults)
        order.require_draft("only a draft is submitted")
        return await _draft_start(uow, order, order.customer_id, self.policy)

    async def call(self, claim: Claim, started: Started) -> Order:
        for attempt in range(DRAFT_ATTEMPTS):
            try:
                order = await self._price_and_submit(started)
                break
            except Conflict as exc:
                # A submit names no version: an edit that came in while it priced the draft is
                # priced with it again.
                if not _priced_again(exc, 0, attempt):
                    raise
            async with self.new_uow().reading() as uow:
                started = await self.read(uow)
        return await self._drive(order)

    async def _price_and_submit(self, started: Started) -> Order:
        order = started.existing
        assert order is not None
        if order.status is OrderStatus.DRAFT:
            assert order.saga.draft is not None
            ask = replace(order.saga.draft, coupon_codes=self.coupon_codes)
            priced = await _price_draft(self.ports, self.new_uow, started, ask, order.customer_id)
            hold_seconds = started.settings.hold_seconds
            order = await _change_draft(
                self.new_uow,
                priced,
                order.version,
                lambda o: o.submit(priced.order, hold_seconds, now(), len(self.coupon_codes)),
            )
        return order

    async def _drive(self, order: Order) -> Order:
        if order.saga.draft is None or order.saga.state is not SagaState.RUNNING:
            return order  # submitted in full already (or cancelled since)
        back = saga.back_to_draft(self.new_uow)
        if any(f.hold is HoldState.SENT for f in order.fulfillments) and self.ports.stock is None:
            raise Unavailable("stock cannot be held now", "inventory_unavailable")
        # Stock first: refused, nothing was asked of the promotion or customer service, which
        # keep one reservation or hold per order and would answer a later submit with it.
        order = await saga.hold_stock(self.new_uow, self.ports, order, self.policy, back)
        if order.asks_coupons_or_points:
            order, _ = await change(self.new_uow, order.id, lambda o: o.stock_held())
        if order.saga.coupons.step is CouponStep.SENT:
            cart = CartContext(
                order.location_id, order.channel, order.customer_id, self.coupon_codes
            )
            try:
                order = await saga.reserve_coupons(self.new_uow, self.ports, order, cart)
            except DomainError as exc:
                if exc.kind in saga.TRANSIENT:
                    raise
                # All or none: nothing was reserved, and a later submit may ask again.
                await saga.refused(self.new_uow, self.ports, order, self.policy, exc.code, back)
                raise
        # Refused by the customer service, its points hold was not made; refused here (their
        # value changed since the draft was priced) it was, and is released: either way, once
        # its coupons were reserved, a later submit would hear the reservation given back.
        unreserved = order.saga.coupons.step is CouponStep.NONE
        order = await saga.hold_points(
            self.new_uow, self.ports, order, self.policy, back if unreserved else None
        )
        order, _ = await change(self.new_uow, order.id, lambda o: o.submitted())
        return order

    async def record(self, uow: OrderUnitOfWork, order: Order) -> R:
        return self.answer(order)


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
        # Written with the new tender only: refused, the events still tell the order.
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
            order.touched(now())
            await uow.orders.save(order)
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
            # arrives as a plain DomainError): awaited no more, it holds up no other tender.
            if exc.kind is ErrorKind.INVALID and exc.code != "idempotency_key_reused":
                await change(self.new_uow, order.id, lambda o: o.tender_refused(n))
            raise
        await boundary(self.policy, "after_authorization")
        await _unless_cancelled(self.new_uow, self.ports, self.policy, order.id, n, payment)
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
            order.touched(now())
            await uow.orders.save(order)
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
        return self.answer(order)


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


async def _unless_cancelled(
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


class ConfirmOrder(Generic[R]):
    """Commit the holds and capture as each fulfilment says; the tenders must cover the total
    (a zero total needs none). The intent is recorded first: after a crash the resumer
    finishes it."""

    def __init__(
        self,
        order_id: str,
        ports: CheckoutPorts,
        new_uow: NewUow,
        policy: Policy,
        answer: Callable[[Order], R],
    ) -> None:
        self.order_id = order_id
        self.ports = ports
        self.new_uow = new_uow
        self.policy = policy
        self.answer = answer
        # The codes of the gift cards this run issued, by line id: answered once, never stored.
        self.shown: dict[str, str] = {}
        # The sale was confirmed in the transaction that stored its answer (`record`).
        self.confirmed_in_record = False
        self.refund_holds = 0  # see `prepare`
        self.held_when_read = False  # see `prepare`
        self.payments: list[PaymentResult] | None = None  # see `prepare`

    async def prepare(self) -> None:
        """Before the claim, with no connection held: how many refund holds the order has had,
        then the payment service's word on its payments. A refund or void of one of them
        through the payments API holds the order first (`hold_for_refund`,
        before_confirmation), so one made before this read is in it, one begun since shows as
        a hold when the confirmation is marked (`read`), and one under way at this read may
        be made after the payments are read, its hold gone by the mark: each a 409
        `refund_in_progress` then, to retry, never a confirmation counting money given back
        (the order hears of such a refund from its event, which may come later). Payment down:
        no refund can be made either; the order's own record stands."""
        async with self.new_uow().reading() as uow:
            self.held_when_read, self.refund_holds = await uow.returns.refund_hold(self.order_id)
        try:
            self.payments = await self.ports.payments.of_order(self.order_id)
        except Unavailable:
            self.payments = None

    def _paid_as_read(self, order: Order) -> None:
        for p in self.payments or []:
            if p.refunded_amount and order.refunded_in_all(p.payment_id, p.refunded_amount):
                order.touched(now())
            voided = p.status == "voided" or p.voided_amount > 0
            if voided and order.payment_voided(p.payment_id, p.voided_amount):
                order.touched(now())

    async def read(self, uow: OrderUnitOfWork) -> Order:
        order = await uow.orders.get(self.order_id, lock=True)
        if order is None:
            raise NotFound("order", self.order_id)
        if order.status in (OrderStatus.CONFIRMED, OrderStatus.COMPLETED):
            return order
        asked = order.saga.confirm_requested and order.saga.state is SagaState.RUNNING
        if not asked and order.status is OrderStatus.PENDING_PAYMENT:
            live, holds = await uow.returns.refund_hold(self.order_id)
            if live or self.held_when_read or holds != self.refund_holds:
                raise Conflict(
                    "a refund or void of this order's payments is being made: retry in a moment",
                    "refund_in_progress",
                    {"order_id": self.order_id},
                )
            self._paid_as_read(order)
        order.request_confirmation()
        if not asked:
            # A confirmation already asked (a retry, one beside it) is only driven on: no
            # new version for nothing changed.
            order.touched(now())
            await uow.orders.save(order)
        return order

    async def call(self, claim: Claim, order: Order) -> Order:
        if order.status is not OrderStatus.PENDING_PAYMENT:
            return order
        return await saga.finish_confirmation(
            self.new_uow, self.ports, order, self.policy, shown=self.shown
        )

    async def record(self, uow: OrderUnitOfWork, order: Order) -> R:
        return self.answer(order)


class CancelOrder(Generic[R]):
    """Before any fulfilment left the store: release holds, void authorisations, refund
    captures. Recorded as `compensating` first, so a crash midway is finished by the resumer.
    `refund_not_permitted`: the caller may not give money back, and a cancel that would is
    refused before it is marked. `answer` is given the order and what this request refunded
    of each payment."""

    def __init__(
        self,
        order_id: str,
        ports: CheckoutPorts,
        new_uow: NewUow,
        policy: Policy,
        answer: Callable[[Order, dict[str, int]], R],
        refund_not_permitted: bool = False,
    ) -> None:
        self.order_id = order_id
        self.ports = ports
        self.new_uow = new_uow
        self.policy = policy
        self.answer = answer
        self.refund_not_permitted = refund_not_permitted
        self.refunded: dict[str, int] = {}
        self.payments_held = 0  # see `prepare`
        self.payments_now: list[PaymentResult] = []  # see `prepare`
        self.shift_id = ""  # see `prepare`

    async def prepare(self) -> None:
        """Before the claim, with no connection held, for an order with tenders: the payment
        service's word on its payments. Away, the cancel is a 503 that records nothing (it was
        recorded, then answered 503 as the compensation could not ask it, and carried out by
        the resumer half a minute later while the order read `pending_payment` and refused
        every tender). For a caller who may not refund, what they hold captured: a capture
        made through the payments API is refunded by the compensation though this order never
        heard of it (asked inside the claiming transaction until 2026-12-04, which kept a
        pooled connection through the call)."""
        async with self.new_uow().reading() as uow:
            seen = await uow.orders.get(self.order_id)
        if seen is None or seen.status is OrderStatus.CANCELLED or not seen.saga.tenders:
            return
        if seen.status is OrderStatus.COMPLETED:
            return  # refused in `read` (`order_final`), the payment service away or not
        if seen.saga.state is SagaState.COMPENSATING:
            return  # recorded already: the cancel drives it on (or answers 503 again)
        payments = self.payments_now = await self.ports.payments.of_order(self.order_id)
        if self.refund_not_permitted:
            self.payments_held = sum(
                max(0, p.captured_amount - p.refunded_amount) for p in payments
            )
        self.shift_id = await shift_for_cash(self.ports, seen)

    async def read(self, uow: OrderUnitOfWork) -> Order:
        payments_held = self.payments_held
        order = await uow.orders.get(self.order_id, lock=True)
        if order is None:
            raise NotFound("order", self.order_id)
        if order.status is OrderStatus.CANCELLED:
            return order
        if order.status is OrderStatus.PENDING_PAYMENT and order.saga.confirm_requested:
            # Its confirmation is under way (committing holds, capturing): cancelling beside
            # it would leave both half done. Once confirmed, it may be cancelled before any
            # fulfilment leaves; the resumer finishes a confirmation whose driver is gone.
            raise Conflict(
                "the order is being confirmed; cancel it once it is confirmed",
                "order_confirming",
            )
        under_way = order.saga.state is SagaState.COMPENSATING
        if not under_way:
            # A tender answered `pending` and settled since (a confirmed order's tender for
            # what was due: no resumer asks for it) holds the cancel up no more.
            learn_payments(order, self.payments_now)
        if not under_way and any(t.state is TenderState.PENDING for t in order.saga.tenders):
            # Recorded now, the cancel could only finish once the payment service knows the
            # card's answer (its reconciler, within about a minute): the caller would be told
            # 503 for a cancel that then happens on its own. Refused instead, nothing written.
            raise Conflict(
                "a tender's answer is not known yet; cancel the order once it is",
                "payment_pending",
            )
        if under_way:
            # Begun by someone else (a cancel beside this one, the order's expiry): only driven
            # on, with no new version for nothing changed.
            return order
        order.begin_cancel("requested")
        if self.refund_not_permitted:
            # Asked under the lock, after the cancel's own refusals and before it is saved:
            # refused, nothing is written.
            order.refund_needs_permission(payments_held)
        held = {p.payment_id: p.captured_amount - p.refunded_amount for p in self.payments_now}
        cancelled_at_drawer(order, "", order.cash_a_cancel_gives_back("", held), self.shift_id)
        order.touched(now())
        await uow.orders.save(order)
        return order

    async def call(self, claim: Claim, order: Order) -> Order:
        if order.status is OrderStatus.CANCELLED:
            return order
        # A payment pending now is a tender being taken beside this cancel (one whose answer
        # was recorded pending refused the cancel in `read`): the cancel goes on and answers
        # cancelled, as it does when that payment does not exist yet; the tender's driver
        # gives it back (`_unless_cancelled`). Stopped by it, the cancel answered 503 for
        # work that was done all the same.
        return await saga.compensate(
            self.new_uow, self.ports, order, self.policy, refunded=self.refunded,
            leave_pending=True,
        )  # fmt: skip

    async def record(self, uow: OrderUnitOfWork, order: Order) -> R:
        return self.answer(order, self.refunded)


@dataclass(frozen=True)
class FulfillmentStep:
    order_id: str
    fulfillment_id: str
    to: FulfillmentStatus | None
    carrier: str = ""
    tracking_number: str = ""


class UpdateFulfillment(Generic[R]):
    """A fulfilment's next step. Picked up (pickup) and shipped (shipment) capture the
    fulfilment's share first (partial captures, planned and stored before they are asked)."""

    def __init__(
        self,
        step: FulfillmentStep,
        ports: CheckoutPorts,
        new_uow: NewUow,
        policy: Policy,
        answer: Callable[[Order], R],
        refunds_of: Callable[[str], Awaitable[list[UnitsRefund]]] | None = None,
    ) -> None:
        allowed = {
            FulfillmentStatus.READY_FOR_PICKUP,
            FulfillmentStatus.PICKED_UP,
            FulfillmentStatus.PICKED,
            FulfillmentStatus.SHIPPED,
            FulfillmentStatus.DELIVERED,
        }
        raise_if(
            [
                FieldViolation(
                    "status", "must be ready_for_pickup, picked_up, picked, shipped or delivered"
                )
            ]
            if step.to not in allowed
            else []
        )
        self.step = step
        self.ports = ports
        self.new_uow = new_uow
        self.policy = policy
        self.answer = answer
        self.refunds_of = refunds_of
        # Read before the claim (`prepare`), with no connection held.
        self.refund_holds = 0
        self.held_at_prepare = False
        self.refunded: dict[str, int] = {}
        self.refunds: list[UnitsRefund] = []
        self.payments: list[PaymentResult] = []
        # The payment service away when they were read: only a fresh step needs them (a
        # retry of one already made replays its answer at the claim).
        self.money_unknown: Unavailable | None = None

    async def prepare(self) -> None:
        """Before the claim, no connection held, for a step that hands goods over: what the
        order's payments refunded in all and its refunds, as the payment service says now. A
        refund made through the payments API a moment ago may not have reached the order by
        its event yet, and must still keep the goods in the store. How many refund holds the
        order has had is read first: a refund or void held since (`hold_for_refund`) may have
        been made after the payments were read, and the claim's read refuses then."""
        if self.step.to not in CAPTURES_AT:
            return
        async with self.new_uow().reading() as uow:
            held = await uow.returns.refund_hold(self.step.order_id)
            self.held_at_prepare, self.refund_holds = held
            order = await uow.orders.get(self.step.order_id)
        if order is None or not order.payment_ids:
            return  # the claim's read answers the 404; nothing to refund without payments
        try:
            payments = self.payments = await self.ports.payments.of_order(order.id)
            self.refunded = {p.payment_id: p.refunded_amount for p in payments}
            if self.refunds_of is not None and any(self.refunded.values()):
                self.refunds = await self.refunds_of(order.id)
        except Unavailable as exc:
            self.money_unknown = exc

    async def read(self, uow: OrderUnitOfWork) -> Order:
        step = self.step
        assert step.to is not None
        order = await uow.orders.get(step.order_id, lock=True)
        if order is None:
            raise NotFound("order", step.order_id)
        f = order.step_fulfillment(step.fulfillment_id, step.to, step.carrier, step.tracking_number)
        if step.to in CAPTURES_AT and f.status is not step.to:
            if self.money_unknown is not None:
                raise self.money_unknown
            # A void the order may not have heard of yet (the payments API), and a tender for
            # what is due answered `pending` and settled since (its authorisation is used).
            live, holds = await uow.returns.refund_hold(order.id)
            if live or self.held_at_prepare or holds != self.refund_holds:
                # A refund or void being made, or made since the payments were read (or while
                # they were): this step would not count it. Retried, it reads it (refused if
                # the money is gone).
                raise Conflict(
                    "a refund or void of this order's payments is being made: retry in a moment",
                    "refund_in_progress",
                    {"order_id": order.id, "fulfillment_id": f.id},
                )
            learn_payments(order, self.payments)
            order.plan_captures([f])
            short = order.share_not_covered(f)
            if short:
                # Refused before anything is written: the goods stay in the store.
                raise Conflict(
                    f"{short} of this fulfilment's share is held by no authorisation (voided, "
                    "or past its window): its goods cannot leave unpaid; add a tender for what "
                    "is due",
                    "payment_required",
                    {"amount_due": str(short), "fulfillment_id": f.id},
                )
            earlier = await uow.returns.of_order(order.id)
            unpaid = order.unpaid_after_refunds(*price_given_back(order, earlier, self.refunds))
            if unpaid:
                # Money went back that no return, cancel or price adjustment accounts for: the
                # order no longer holds what its goods are sold for. Refused before anything
                # is written (a confirmed order takes no new tender for money refunded, only
                # for an authorisation voided: cancel it, or this fulfilment, and sell again).
                raise Conflict(
                    f"{unpaid} of what this order is sold for was refunded: its goods cannot "
                    "leave unpaid",
                    "payment_refunded",
                    {"amount_due": str(unpaid), "fulfillment_id": f.id},
                )
            order.saga.state = SagaState.RUNNING
            # Marked even when nothing is left to capture: a cancel of this fulfilment from
            # now until the step records is a 409 (the step wrote the row first).
            if f.id not in order.saga.stepping:
                order.saga.stepping.append(f.id)
            order.touched(now())
            await uow.orders.save(order)
        return order

    async def call(self, claim: Claim, order: Order) -> Order:
        order = await saga.run_captures(self.new_uow, self.ports, order, self.policy)
        # The last share captured after another fulfilment was cancelled: what that one left
        # authorised is released now.
        return await saga.void_the_rest(self.new_uow, self.ports, order)

    async def record(self, uow: OrderUnitOfWork, _: Order) -> R:
        step = self.step
        assert step.to is not None
        order = await uow.orders.get(step.order_id, lock=True)
        assert order is not None
        # Asked again under the lock: a cancel that began since `read` (a step that captures
        # nothing holds nothing off) or another step of the fulfilment wins, and this is a 409.
        f = order.step_fulfillment(step.fulfillment_id, step.to, step.carrier, step.tracking_number)
        if f.status is not step.to:
            order.touched(now())
            if f.id in order.saga.stepping:
                order.saga.stepping.remove(f.id)
            order.steps_settled()
            order.fulfillment_moved(f, step.to, now(), step.carrier, step.tracking_number)
            await uow.orders.save(order)
            _announce(uow, order)
        return self.answer(order)


class CancelFulfillment(Generic[R]):
    """One pickup or shipment of a confirmed order cancelled before it left the store: its
    units back to stock, its captured share refunded, the rest of the order kept. Marked
    `cancelling` under the order row's lock first (a step of the same fulfilment begun before
    is a 409 here; one asked after is a 409 there), then given back step by step
    (`saga.cancel_fulfillment`); a crash midway is finished by the resumer.
    `refund_not_permitted`: the caller may not give money back, and a cancel that would is
    refused before it is marked. `answer` is given the order and what was refunded of each
    payment for the fulfilment (and, its last live one, for the order cancelled with it)."""

    def __init__(
        self,
        order_id: str,
        fulfillment_id: str,
        ports: CheckoutPorts,
        new_uow: NewUow,
        policy: Policy,
        answer: Callable[[Order, dict[str, int]], R],
        refund_not_permitted: bool = False,
    ) -> None:
        self.order_id = order_id
        self.fulfillment_id = fulfillment_id
        self.ports = ports
        self.new_uow = new_uow
        self.policy = policy
        self.answer = answer
        self.refund_not_permitted = refund_not_permitted
        self.refunded: dict[str, int] = {}
        self.shift_id = ""  # see `prepare`

    async def prepare(self) -> None:
        """Before the claim, with no connection held: the shift open at the asking register,
        for an order that took cash (see `cancelled_at_drawer`)."""
        async with self.new_uow().reading() as uow:
            seen = await uow.orders.get(self.order_id)
        if seen is not None:
            self.shift_id = await shift_for_cash(self.ports, seen)

    async def read(self, uow: OrderUnitOfWork) -> Order:
        order = await uow.orders.get(self.order_id, lock=True)
        if order is None:
            raise NotFound("order", self.order_id)
        if order.begin_fulfillment_cancel(self.fulfillment_id):
            if self.refund_not_permitted:
                # Refused before the mark is saved: the transaction ends with nothing written.
                order.fulfillment_refund_needs_permission(self.fulfillment_id)
            fid = self.fulfillment_id
            cancelled_at_drawer(order, fid, order.cash_a_cancel_gives_back(fid), self.shift_id)
            order.touched(now())
            await uow.orders.save(order)
        return order

    async def call(self, claim: Claim, order: Order) -> Order:
        return await saga.cancel_fulfillment(
            self.new_uow,
            self.ports,
            order,
            self.fulfillment_id,
            self.policy,
            compensated=self.refunded,
        )

    async def record(self, uow: OrderUnitOfWork, order: Order) -> R:
        # The fulfilment's refunds are planned and stored: read from the order, so a re-run
        # after a failure still names what an earlier run gave back.
        refunded = dict(self.refunded)
        for r in order.saga.refunds:
            if r.fulfillment_id == self.fulfillment_id and r.done:
                refunded[r.payment_id] = refunded.get(r.payment_id, 0) + r.amount
        return self.answer(order, refunded)


async def shift_for_cash(ports: CheckoutPorts, order: Order) -> str:
    """The shift open at the asking register, read before a cancel's claim with no connection
    held, when the order took cash (a cancel may give it back); "" otherwise."""
    register_id, _ = at_register()
    if not register_id or not any(t.tender is Tender.CASH for t in order.saga.tenders):
        return ""
    return await ports.payments.open_shift_at(register_id)


def cancelled_at_drawer(order: Order, key: str, to_cash: list[str], shift_id: str) -> None:
    """A cancel a caller asks, being marked (`key`: the fulfilment, "" for the whole order):
    cash it gives back leaves a drawer, so it follows the returns' rule (refused from the back
    office or at a register with no shift open, before anything is written), and the
    register and member it is asked at are kept with the order, so its refunds are asked as
    from there whoever finishes them (`saga.giving_back_at`): the cash counts in that
    register's open shift."""
    register_id, staff_id = at_register()
    refuse_cancel_cash_without_drawer(
        to_cash, "fulfillment_id" if key else "order_id", register_id, shift_id
    )
    order.saga.cancelled_at[key] = (register_id, staff_id)


def _points_may_discount(cart: pricing.PricedCart) -> Money:
    """What redeemed points may take off a cart, the sale's and its preview's alike: what the
    goods still cost after the promotions. A gift card sold as a line is stored value, never
    discounted (the preview once took it in, and priced points worth more than the goods
    beside a card that the sale refused)."""
    cards = sum(ln.line_total.amount for ln in cart.lines if ln.gift_card)
    return cart.totals.subtotal - cart.totals.discount - Money(cards, cart.location.currency)


async def resolve_customer(customers: CustomerLookup, customer_id: str) -> tuple[str, int]:
    """Refuse a customer id the merchant does not have, exactly as one that exists nowhere;
    a duplicate merged into another customer is that customer (followed through every merge):
    the id a sale is recorded under, and its version.

    Ids learnt from the customer service's events need no call (see `_start`), so a sale for a
    known customer goes on while that service is down. Only an id not seen yet is asked about;
    the survivor's version is returned for the caller to remember with its own writes, so the
    next sale needs no call. If the customer service cannot answer for such an id, the
    look-up's Unavailable (503) stands: letting it through would let any id through.
    """
    current, seen = customer_id, {customer_id}
    for _ in range(MAX_MERGE_HOPS):
        found = await customers.find(current)
        if found is None:
            break
        if not found.merged_into:
            return current, found.version
        if found.merged_into in seen:
            break
        current = found.merged_into
        seen.add(current)
    # Every request that names a customer names it as `customer_id`.
    raise NotFound("customer", customer_id, ["customer_id"])


async def current_customer(
    new_uow: NewUow, customers: CustomerLookup, customer_id: str
) -> tuple[str, Buyer]:
    """The customer `customer_id` is now, and what pricing needs of them: itself, or the
    survivor a duplicate was merged into. The read model answers for an id it knows; only one
    it does not is asked of the customer service (`resolve_customer`: an id the merchant does
    not have, an erased one included, is a 404)."""
    async with new_uow().reading() as uow:
        found = await uow.customers.resolve(customer_id)
    if found is not None:
        return found.id, found.buyer
    survivor, _ = await resolve_customer(customers, customer_id)
    return survivor, Buyer()


async def remember_customer(
    uow: OrderUnitOfWork, customer_id: str, version: int, buyer: Buyer | None = None
) -> None:
    """A customer created or changed at the customer service: its id is now known here, with
    what pricing needs of it (groups, tax exemption)."""
    await uow.customers.remember(customer_id, version, buyer)


async def customer_merged(
    uow: OrderUnitOfWork, loser_id: str, winner_id: str, version: int, buyer: Buyer
) -> None:
    """The customer service merged a duplicate into a customer: the survivor is known as the
    merge left it (a new version: its groups, points and history changed), and a sale naming
    the duplicate is the survivor's from now on."""
    await uow.customers.remember(winner_id, version, buyer)
    await uow.customers.merged(loser_id, winner_id)


async def erase_customer(uow: OrderUnitOfWork, customer_id: str) -> None:
    """The customer asked to be forgotten: their orders keep the customer id (a tombstone),
    lines and money, and lose what could be personal (shipment addresses and destinations,
    notes, the metadata a partner set); the stored answers and published events of this
    service that hold those go too, its events not sent yet go out without them, and the id
    is no customer any more (a sale naming it asks the customer service: 404).
    Idempotent: a redelivery finds nothing left to erase."""
    await uow.orders.erase_customer(customer_id)
    await uow.customers.forget(customer_id)


async def refund_made(
    uow: OrderUnitOfWork, order_id: str, payment_id: str, refunded_in_all: int
) -> None:
    """A refund of one of the order's payments succeeded at the payment service (a return's,
    or one made through the payments API): the order's `paid` and balance count it, a new
    version announced (`order_updated`). Nothing for a payment that is no tender of an order
    here, nor for a refund the order counted already (a return's, counted when the return
    recorded it)."""
    order = await uow.orders.get(order_id, lock=True)
    if order is not None and order.refunded_in_all(payment_id, refunded_in_all):
        order.payments_heard(now())
        await uow.orders.save(order)
        _announce(uow, order)


async def payment_voided(
    uow: OrderUnitOfWork, order_id: str, payment_id: str, voided: int = 0
) -> None:
    """A payment of the order voided at the payment service (`voided`: what it released): its
    tender no longer pays, or no more than it captured; a new version announced
    (`order_updated`). Nothing for a void the order counts already (one its saga made)."""
    order = await uow.orders.get(order_id, lock=True)
    if order is not None and order.payment_voided(payment_id, voided):
        order.payments_heard(now())
        await uow.orders.save(order)
        _announce(uow, order)


async def get_order(uow: OrderUnitOfWork, order_id: str) -> Order:
    order = await uow.orders.get(order_id)
    if order is None:
        raise NotFound("order", order_id)
    return order


async def list_orders(
    uow: OrderUnitOfWork, page: PageRequest, filters: OrderFilters | None = None
) -> list[Order]:
    f = filters or OrderFilters()
    if f.created_since is not None and f.created_before is not None:
        # An empty window is a mistake (the two swapped), never a silent empty list.
        raise_if(
            require(
                f.created_before > f.created_since,
                "created_before",
                "must be after created_since",
            )
        )
    return await uow.orders.list(page, f)


async def get_settings(uow: OrderUnitOfWork, policy: Policy) -> OrderSettings:
    return await uow.settings.get() or policy.defaults


@dataclass(frozen=True)
class SettingsChange:
    capture_pickup_at_order: bool | None = None
    pickup_expiry_seconds: int | None = None
    hold_seconds: int | None = None
    return_window_days: int | None = None
    return_policy_text: str | None = None
    # A new limit on returns without a receipt; `clear_receiptless_limit`: none any more.
    receiptless_limit: ReceiptlessLimit | None = None
    clear_receiptless_limit: bool = False


MAX_POLICY_TEXT = 1_000


def _settings_changed(current_version: int) -> Conflict:
    return Conflict(
        "the settings changed since the version you sent",
        "version_mismatch",
        {"current_version": str(current_version)},
    )


async def update_settings(
    uow: OrderUnitOfWork, policy: Policy, change_: SettingsChange, expected_version: int = 0
) -> tuple[OrderSettings, OrderSettings]:
    """The settings before and after the change. With `expected_version`, a stale version
    changes nothing (`version_mismatch`); a change to what they already are is none (no new
    version)."""
    violations: list[FieldViolation] = []
    if change_.pickup_expiry_seconds is not None and not (
        3600 <= change_.pickup_expiry_seconds <= 90 * 86400
    ):
        violations.append(
            FieldViolation("pickup_expiry_seconds", "must be between 3600 and 7776000 (90 days)")
        )
    if change_.hold_seconds is not None and not (60 <= change_.hold_seconds <= 7 * 86400):
        violations.append(FieldViolation("hold_seconds", "must be between 60 and 604800"))
    if change_.return_window_days is not None and not (0 <= change_.return_window_days <= 365):
        violations.append(FieldViolation("return_window_days", "must be between 0 and 365"))
    if change_.return_policy_text is not None and len(change_.return_policy_text) > (
        MAX_POLICY_TEXT
    ):
        violations.append(
            FieldViolation("return_policy_text", f"must be at most {MAX_POLICY_TEXT} characters")
        )
    if change_.receiptless_limit is not None:
        if change_.clear_receiptless_limit:
            violations.append(
                FieldViolation("receiptless_limit", "cannot be set and cleared at once")
            )
        violations += receiptless_limit_violations(change_.receiptless_limit, "receiptless_limit")
    raise_if(violations)
    # Twice at most: a merchant's first change can lose the race to create the row to another
    # first change; without If-Match it is then applied on top of the winner's, as any later.
    for attempt in (1, 2):
        current, updated = await _settings_after(uow, policy, change_)
        if expected_version and expected_version != current.version:
            raise _settings_changed(current.version)
        if updated == current:
            return current, current
        updated = replace(updated, version=current.version + 1)
        if await uow.settings.put(updated):
            return current, updated
        if expected_version or attempt == 2:
            found = await uow.settings.get()
            raise _settings_changed(found.version if found else current.version)
    raise AssertionError("unreachable")


async def _settings_after(
    uow: OrderUnitOfWork, policy: Policy, change_: SettingsChange
) -> tuple[OrderSettings, OrderSettings]:
    """The settings now (locked) and as the change would leave them, before its version."""
    current = await uow.settings.get(lock=True) or policy.defaults
    updated = OrderSettings(
        capture_pickup_at_order=_or(
            change_.capture_pickup_at_order, current.capture_pickup_at_order
        ),
        pickup_expiry_seconds=_or(change_.pickup_expiry_seconds, current.pickup_expiry_seconds),
        hold_seconds=_or(change_.hold_seconds, current.hold_seconds),
        return_window_days=_or(change_.return_window_days, current.return_window_days),
        return_policy_text=_or(change_.return_policy_text, current.return_policy_text),
        version=current.version,
        receiptless_limit=None
        if change_.clear_receiptless_limit
        else _or(change_.receiptless_limit, current.receiptless_limit),
    )
    return current, updated


T = TypeVar("T")


def _or(value: T | None, default: T) -> T:
    return default if value is None else value


@dataclass(frozen=True)
class CartCommand:
    location_id: str
    channel: str
    customer_id: str
    lines: list[LineRequest]
    fulfillments: list[FulfillmentRequest]
    coupon_codes: tuple[str, ...] = ()
    order_manual: Manual | None = None
    redeem_points: int = 0


async def calculate_cart(
    cmd: CartCommand, ports: CheckoutPorts, new_uow: NewUow
) -> pricing.PricedCart:
    """The cart preview: the pricing step a checkout and an order run, writing nothing. A
    coupon that cannot apply is in the answer's quote (`rejected`), not an error."""
    fulfillments = cmd.fulfillments or [
        FulfillmentRequest(FulfillmentType.IN_STORE, cmd.location_id)
    ]
    validate_order(cmd.channel or "register", cmd.location_id, cmd.lines, fulfillments, {})
    raise_if(
        validate_codes(cmd.coupon_codes)
        + validate_manual(cmd.order_manual, "order_manual", ORDER_KINDS)
        + validate_redemption(cmd.redeem_points, cmd.customer_id)
    )
    buyer, customer_id = Buyer(), cmd.customer_id
    if customer_id:
        # Priced for the customer a sale would be recorded under (a duplicate merged away is
        # its survivor: their groups, their coupons' limits, their points).
        customer_id, buyer = await current_customer(new_uow, ports.customers, customer_id)
    cart = await pricing.price_cart(
        ports,
        new_uow,
        cmd.location_id,
        customer_id,
        cmd.lines,
        fulfillments,
        cmd.channel or "register",
        cmd.coupon_codes,
        cmd.order_manual,
        buyer,
    )
    # What a sale of this cart would refuse, the preview refuses the same way (a 400 naming
    # the lines), rather than answer a total no order can have.
    raise_if(validate_total(cart.totals))
    if cmd.redeem_points:
        # Priced as a sale prices them (nothing is held: a preview writes nothing).
        if ports.loyalty is None:
            raise Unavailable("loyalty points cannot be priced now", "customer_unavailable")
        available = await ports.loyalty.available(customer_id)
        if available is not None and cmd.redeem_points > available:
            # As the sale's hold would refuse them: a preview shows no discount no sale gets.
            raise points_named(
                Conflict(
                    "the customer does not have that many points available",
                    "insufficient_points",
                    {"available": str(max(available, 0))},
                )
            )
        worth = price_points(
            cmd.redeem_points, await ports.loyalty.point_value(), _points_may_discount(cart)
        )
        # The answer's order discounts name it too, as they name every other one.
        redeemed = AppliedDiscount(
            pricing.POINTS,
            worth.amount,
            f"{cmd.redeem_points} loyalty points redeemed",
            "order",
        )
        quote = replace(cart.quote, discounts=(*cart.quote.discounts, redeemed))
        cart = replace(cart, totals=pricing.apply_points(cart, worth.amount), quote=quote)
    return cart


def points_named(exc: DomainError) -> DomainError:
    """More points than the customer has available is the request's `redeem_points` at
    fault: the 409 `insufficient_points` names it, with what is available, as its 400s do
    (the customer service, refusing the hold, names no field of the order's request)."""
    if exc.code == "insufficient_points" and not exc.violations:
        available = exc.metadata.get("available", "")
        exc.violations = [
            FieldViolation(
                "redeem_points", f"must be at most {available}, the points the customer has"
            )
        ]
    return exc
