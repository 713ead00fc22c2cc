"""Exchanges: units of an order returned and new lines sold in one operation, only the
difference charged or refunded.

An exchange is a Return of the original order (`exchange_order_id`) and a new order for the
new lines (`exchange_of`, priced by the checkout's pricing step at the exchange's store). The
returned units' value (their paid share, as any return) pays for the new order first
(`credited`, carried by the new order as `exchange_credit`, no payment behind it):

- difference = new total - returned value > 0: the difference is taken with the caller's
  tenders (payments of the new order, captured at once); nothing is refunded;
- < 0: the difference is refunded to the original order's tenders (from the last one taken
  backwards, like a return);
- = 0: no money moves.

The credit's money stays with the original order's payments (no payment carries it to the new
order), so it is set aside on them at the payment service (`credit_from`, the payment service's
exchange credit): no refund of the original order gives it back a second time, and the
original order's returns count it as gone (`tenders_left`). Only a return of the new order's
goods draws on it.

Saga (each step idempotent by a request id derived from the new order or the return):
1. claim, one transaction: the original order locked, the return planned and saved `pending`
   (its units spoken for, the payments backing its credit named), the new order saved
   `pending_payment` with its in-store lines to hold, its tenders checked. Both or neither: a
   refused request writes nothing.
2. hold the new lines' stock (`<new order>/hold/<fulfilment>`): held, the new order is
   announced (`order.created`) and its tenders recorded; short, it was never announced, so it
   is withdrawn as a refused checkout's order is and the return dropped (409
   `insufficient_stock`, nothing charged or refunded). Then the credit set aside
   (`<return>/credit`): refunded meanwhile, the new order is cancelled and the return dropped
   (409 `amount_exceeds_refundable`).
3. take the difference due (`<new order>/payment/<n>`): declined, the same undoing (409
   `payment_declined`).
4. confirm the new order: its hold committed (the sale), `order.confirmed`/`completed`.
5. only then the refund owed (`<return>/refund`) and the restock of the returned units
   (`<return>/restock/<line>`); the return completed and `order.returned` published.

So a refund never happens without the new sale: before step 4 every crash is undone (the
resumer cancels the abandoned new order, releasing its hold and refunding a captured
difference, and the return is dropped, its credit released: `<return>/credit/release`); after
it, every crash is finished (the resumer asks the refund and the restock again under the same
ids and completes the return).
"""

from __future__ import annotations

import logging
import re
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from datetime import timedelta
from typing import Generic, TypeVar

from pos_kit.errors import (
    Conflict,
    DomainError,
    ErrorKind,
    FieldViolation,
    InvalidArgument,
    NotFound,
    RequestIdReused,
    Unavailable,
    named_by,
    raise_if,
    require,
)
from pos_kit.idempotency import Claim
from pos_kit.money import Money
from pos_order.domain.model import (
    FulfillmentRequest,
    FulfillmentType,
    HoldState,
    LineRequest,
    Order,
    OrderStatus,
    SagaState,
    Tender,
    TenderRecord,
    TenderState,
    below_cost,
    below_cost_refused,
    build_fulfillments,
    tender_shape,
    validate_lines,
)
from pos_order.domain.pricing import Buyer
from pos_order.domain.returns import (
    Return,
    ReturnLineRequest,
    ReturnRequest,
    ReturnStatus,
    UnitsRefund,
    attributed,
    cash_payments,
    credit_refunded,
    exceeds_refundable,
    less,
    plan_return,
    refuse_cash_without_drawer,
    spread_backwards,
    tenders_left,
    validate_request,
)
from pos_order.service import pricing, saga
from pos_order.service.handlers.drawer import drawer_open_for_cash
from pos_order.service.handlers.new_order import at_register, discard
from pos_order.service.handlers.tenders import tender_ask
from pos_order.service.ports import CheckoutPorts, OrderSettings, PaymentResult, Start
from pos_order.service.returns import (
    RefundRefused,
    ReturnPorts,
    ReturnsUnitOfWork,
    cash_behind,
    complete,
    credit_backing,
    gift_card_balances,
    give_up,
    move_money_and_stock,
    no_refund_since,
    refunds_naming_units,
    refunds_settled,
    release_credit,
    set_credit_aside,
)
from pos_order.service.saga import Policy, boundary, change, now

R = TypeVar("R")
log = logging.getLogger(__name__)

MAX_TENDERS = 5


@dataclass(frozen=True)
class NewLine:
    sku: str
    quantity: int
    # The store the unit leaves from; empty: the exchange's store.
    location_id: str = ""
    # An open-price product's price, entered at the exchange as at any sale.
    unit_price: Money | None = None


@dataclass(frozen=True)
class ExchangeTender:
    """A tender for the difference due, as a checkout takes one. Its card token or gift card
    code is kept in memory for this request only, never stored."""

    tender: Tender | None
    amount: Money | None = None  # None: what is left of the difference (the last one only)
    card_token: str = ""
    cash_tendered: Money | None = None
    gift_card_code: str = ""
    external_reference: str = ""


@dataclass(frozen=True)
class ExchangeRequest:
    request_id: str
    order_id: str
    lines: list[ReturnLineRequest]
    new_lines: list[NewLine]
    reason: str
    override_reason: str = ""
    tenders: list[ExchangeTender] = field(default_factory=list)
    # Where the exchange is made (the new lines are sold there, the returned units come back
    # to stock there); empty: the original order's.
    location_id: str = ""
    # The caller may not give money back: an exchange owing a refund is refused.
    refund_not_permitted: bool = False
    # The caller may not sell a new line below its unit cost by hand (an entered price): such
    # an exchange is refused, as a checkout is.
    below_cost_permitted: bool = True
    # The request's fingerprint, kept with its start (ports.CheckoutStarts.start).
    fingerprint: bytes = b""

    @property
    def as_return(self) -> ReturnRequest:
        # The returned units are handed in where the exchange is made: back to stock there,
        # unless a line names its own store.
        lines = [replace(ln, location_id=ln.location_id or self.location_id) for ln in self.lines]
        return ReturnRequest(
            self.request_id, self.order_id, lines, self.reason, self.override_reason
        )


def _renamed(violations: list[FieldViolation], old: str, new: str) -> list[FieldViolation]:
    return [
        FieldViolation(new + v.field[len(old) :] if v.field.startswith(old) else v.field,
                       v.description)
        for v in violations
    ]  # fmt: skip


def validate_exchange(req: ExchangeRequest) -> None:
    """What can be told without the order: refused before anything is claimed."""
    violations: list[FieldViolation] = []
    try:
        validate_request(req.as_return)
    except InvalidArgument as exc:  # all the violations together, the return's and the rest
        violations = list(exc.violations)
    violations += _renamed(
        validate_lines([LineRequest(ln.sku, ln.quantity) for ln in req.new_lines]),
        "lines",
        "new_lines",
    )
    violations += require(
        len(req.tenders) <= MAX_TENDERS, "tenders", f"must have at most {MAX_TENDERS}"
    )
    for i, t in enumerate(req.tenders[:MAX_TENDERS]):
        where = f"tenders[{i}]"
        violations += require(
            t.tender is not None,
            f"{where}.tender_type",
            "must be cash, card, gift_card or external",
        )
        violations += _renamed(
            tender_shape(t.tender, t.cash_tendered, t.card_token), "", f"{where}."
        )
        if t.tender is Tender.GIFT_CARD:
            violations += require(
                bool(t.gift_card_code), f"{where}.gift_card_code", "is required for a gift card"
            )
        if t.amount is None:
            violations += require(
                i == len(req.tenders) - 1,
                f"{where}.amount",
                "is required on every tender but the last (which takes what is left)",
            )
        else:
            violations += require(t.amount.amount > 0, f"{where}.amount", "must be more than 0")
    raise_if(violations)


@dataclass(frozen=True)
class Priced:
    cart: pricing.PricedCart
    lines: list[LineRequest]
    fulfillments: list[FulfillmentRequest]
    # The new order's customer: the original's, or the survivor it was merged into since.
    customer_id: str
    # The new lines a price given by hand sells below their unit cost (`below_cost`).
    below: list[int] = field(default_factory=list)


@dataclass(frozen=True)
class Exchanged:
    ret: Return
    order: Order  # the new order


class CreateExchange(Generic[R]):
    """`prepare` (no connection held, nothing written), then the kit's three steps."""

    def __init__(
        self,
        req: ExchangeRequest,
        ports: CheckoutPorts,
        return_ports: ReturnPorts,
        new_uow: Callable[[], ReturnsUnitOfWork],
        policy: Policy,
        answer: Callable[[Return, Order, Order], R],
    ) -> None:
        validate_exchange(req)  # bad input is refused before anything is claimed
        self.req = req
        self.ports = ports
        self.return_ports = return_ports
        self.new_uow = new_uow
        self.policy = policy
        self.answer = answer
        self.balances: dict[str, int] = {}
        # How many holds of refunds naming units the order had when its refunds were read.
        self.holds = 0
        self.refunded: dict[str, int] = {}  # the original's payments: refunded in all
        self.unit_refunds: list[UnitsRefund] = []  # its refunds that named units
        self.priced: Priced | None = None
        # The shift open at the asking register, read before the claim when the original
        # order took cash or was paid by an exchange credit (see `refuse_cash_without_drawer`).
        self.shift_id = ""
        # A cash tender at a register with no shift open: refused once a difference is due.
        self.cash_refused: Conflict | None = None

    async def prepare(self) -> None:
        """Before the claim: the original order must be the merchant's (404), the gift cards
        returned are read, and the new lines are priced as a checkout prices them (an unknown
        SKU is a 400 naming the line). Nothing is written."""
        req = self.req
        async with self.new_uow().reading() as uow:
            order = await uow.orders.get(req.order_id)
            # The original's customer as they are now: a duplicate merged away since is the
            # survivor, whom the new sale is for.
            who = await uow.customers.resolve(order.customer_id) if order else None
            self.holds = await refunds_settled(uow, req.order_id)
        if order is None:
            raise NotFound("order", req.order_id)
        self.balances = await gift_card_balances(
            self.return_ports, order, {ln.line_id for ln in req.lines}
        )
        self.unit_refunds = await refunds_naming_units(self.return_ports, order)
        register_id, _ = at_register()
        if register_id and (cash_payments(order) or order.saga.exchange_of):
            self.shift_id = await self.return_ports.payments.open_shift_at(register_id)
        cash = [f"tenders[{i}].tender_type" for i, t in enumerate(req.tenders)
                if t.tender is Tender.CASH]  # fmt: skip
        if cash:
            # Cash taken for the difference goes in the register's drawer, as a checkout's.
            try:
                await drawer_open_for_cash(self.ports, Tender.CASH, cash)
            except Conflict as exc:
                self.cash_refused = exc
        if order.payment_ids:
            # What its payments refunded so far, as the payment service says now: a refund
            # made through the payments API may not have reached the order yet, and the
            # credit must not count money already given back.
            self.refunded = {
                p.payment_id: p.refunded_amount
                for p in await self.ports.payments.of_order(order.id)
            }
        store = req.location_id or order.location_id
        places = list(dict.fromkeys(ln.location_id or store for ln in req.new_lines))
        fulfillments = [FulfillmentRequest(FulfillmentType.IN_STORE, p) for p in places]
        lines = [
            LineRequest(
                ln.sku, ln.quantity, places.index(ln.location_id or store), unit_price=ln.unit_price
            )
            for ln in req.new_lines
        ]
        try:
            cart = await pricing.price_cart(
                self.ports,
                self.new_uow,
                store,
                who.id if who else order.customer_id,
                lines,
                fulfillments,
                order.channel,
                buyer=who.buyer if who else Buyer(),
            )
        except DomainError as exc:
            raise _about_new_lines(exc, req, store) from None
        if cart.location.currency != order.currency:
            raise_if(
                [
                    FieldViolation(
                        "location_id",
                        f"sells in {cart.location.currency}; the order was paid in "
                        f"{order.currency}",
                    )
                ]
            )
        below = below_cost(cart.lines, cart.items, cart.location.tax_inclusive)
        self.priced = Priced(cart, lines, fulfillments, who.id if who else order.customer_id, below)

    async def read(self, uow: ReturnsUnitOfWork) -> Exchanged:
        req, priced = self.req, self.priced
        assert priced is not None, "prepare() first"
        source = await uow.orders.get(req.order_id, lock=True)
        if source is None:
            raise NotFound("order", req.order_id)
        # Another body under the request id of an exchange begun already is refused: it would
        # go on with the first body's return and new order, and pay with this body's tenders.
        # Unless that exchange was refused as it came (see `_anew`).
        try:
            start = await uow.checkouts.start(req.request_id, req.fingerprint)
        except RequestIdReused:
            start = await _anew(uow, req)
        claim = start.claim(uow.merchant_id, req.request_id)
        return_id, order_id = claim.derived_id("ret"), claim.derived_id("ord")
        found = await uow.returns.get(return_id)
        made = await uow.orders.get(order_id)
        if found is not None and made is not None:  # a retry: the saga goes on from there
            return Exchanged(found, made)
        if made is not None:
            # Refused earlier (its new order cancelled, its return dropped): the same answer.
            raise _not_made(made)
        if priced.below and not req.below_cost_permitted:
            # As a checkout's line: refused before anything is written.
            exc = below_cost_refused(priced.below)
            exc.violations = _renamed(exc.violations, "lines", "new_lines")
            raise exc
        source.refuse_while_unrecorded("nothing can be exchanged yet")
        await no_refund_since(uow, source.id, self.holds)
        earlier = await uow.returns.of_order(source.id)
        for payment_id, refunded in self.refunded.items():
            source.refunded_in_all(payment_id, refunded)
        settings: OrderSettings = await uow.settings.get() or self.policy.defaults
        ret = plan_return(
            source,
            earlier,
            req.as_return,
            return_id,
            now(),
            settings.return_window_days,
            [],
            self.balances,
            spread=False,
            adjusted=attributed(source, self.unit_refunds, earlier),
        )
        _backed(source, earlier, ret.amount)
        new_total = priced.cart.totals.total.amount
        difference = new_total - ret.amount
        ret.exchange_order_id = order_id
        ret.credited = min(ret.amount, new_total)
        left = tenders_left(source, earlier)
        # The original order an exchange's new order itself: what its own credit has left,
        # on the payments of the order that credit came from.
        inherited = await credit_backing(uow, source, earlier) or []
        if difference < 0:
            if req.refund_not_permitted:
                raise DomainError(
                    f"this exchange gives {-difference} back: the signed-in member may not "
                    "refund alone, a manager's override is needed for this action",
                    "permission_required",
                    metadata={"permission": "refund"},
                    kind=ErrorKind.FORBIDDEN,
                )
            # From the original order's own payments first, the rest drawn on its credit (as
            # a plain return of the goods would be).
            own = min(-difference, sum(max(0, x) for _, x in left))
            ret.tender_amounts = spread_backwards(own, left) if own > 0 else []
            left = less(left, ret.tender_amounts)
            if own < -difference:
                ret.credit_amounts = spread_backwards(-difference - own, inherited)
                ret.credit_order_id, ret.credit_set_aside = source.saga.exchange_of, True
                inherited = less(inherited, ret.credit_amounts)
        # The payments whose money backs the credit: the original order's own, then what is
        # left of the credit it was itself paid with (carried on: set aside where it is).
        backed = min(ret.credited, sum(max(0, x) for _, x in left))
        ret.credit_from = spread_backwards(backed, left) if backed > 0 else []
        carried = min(ret.credited - backed, sum(max(0, x) for _, x in inherited))
        ret.credit_carried = spread_backwards(carried, inherited) if carried > 0 else []
        # A difference given back to cash leaves a drawer: refused as a return's would be,
        # before anything is written.
        register_id, staff_id = at_register()
        to_cash = refuse_cash_without_drawer(
            ret,
            req.as_return,
            await cash_behind(uow, source),
            register_id,
            self.shift_id,
            exchange=True,
        )
        # Kept with the return, so its refund, finished later, is still the register's (and
        # its cash counts in the shift open there then).
        ret.register_id, ret.staff_id = register_id, staff_id
        ret.shift_id = self.shift_id if to_cash else ""
        order = self._new_order(order_id, source, ret, settings)
        # Checked now (a bad split is a 400 before anything is written), recorded once the
        # stock is held: an order with tenders recorded is no longer withdrawn when short.
        _plan_tenders(order, req.tenders, max(0, difference))
        if difference > 0 and self.cash_refused is not None:
            # The difference would be taken in cash at a register with no shift open (409
            # `cash_needs_open_shift`), before anything is written, held or charged.
            raise self.cash_refused
        await uow.orders.add(order)
        await uow.returns.add(ret)
        return Exchanged(ret, order)

    def _new_order(
        self, order_id: str, source: Order, ret: Return, settings: OrderSettings
    ) -> Order:
        priced = self.priced
        assert priced is not None
        cart = priced.cart
        register_id, staff_id = at_register()
        for i in priced.below:
            cart.lines[i].below_cost = True
        order = Order(
            id=order_id,
            location_id=cart.location.id,
            customer_id=priced.customer_id,
            lines=cart.lines,
            totals=cart.totals,
            discounts_applied=cart.quote.applied,
            channel=source.channel,
            register_id=register_id,
            staff_id=staff_id,
        )
        order.fulfillments = build_fulfillments(
            order_id,
            priced.fulfillments,
            cart.lines,
            priced.lines,
            cart.totals.total.amount,
            cart.location.tax_inclusive,
        )
        for f in order.fulfillments:
            # Held like a pickup's lines, so nothing is refunded for units the store lacks.
            f.hold = HoldState.SENT
        order.saga.hold_ttl = settings.hold_seconds
        order.saga.confirm_requested = True
        order.saga.exchange_of, order.saga.exchange_return_id = source.id, ret.id
        order.saga.credit = ret.credited
        at = now()
        order.expires_at = at + timedelta(seconds=settings.hold_seconds)
        order.created_at = order.updated_at = at
        # Announced once its stock is held (`order.created` before its `order.confirmed`, as
        # any order's); refused for short stock before that, it is withdrawn, never heard of.
        order.saga.announce_when_held = True
        order.created(at, announce=False)
        return order

    async def call(self, claim: Claim, read: Exchanged) -> Exchanged:
        await boundary(self.policy, "exchange_saved")
        return await self.drive(read)

    async def drive(self, read: Exchanged) -> Exchanged:
        ret = read.ret
        if ret.status is ReturnStatus.COMPLETED:
            return read
        order = await saga.load(self.new_uow, read.order.id)
        if order.saga.state is SagaState.COMPENSATING:
            order = await saga.compensate(self.new_uow, self.ports, order, self.policy)
        if order.status is OrderStatus.CANCELLED:
            await _drop(self.new_uow, self.return_ports, ret)
            raise _not_made(order)
        if order.status is OrderStatus.PENDING_PAYMENT:
            try:
                order = await saga.hold_stock(
                    self.new_uow, self.ports, order, self.policy, self._withdraw
                )
                order = await self._record_tenders(order, ret)
                await self._set_credit_aside(order, ret)
                order = await self._pay(order)
                order = await saga.finish_confirmation(self.new_uow, self.ports, order, self.policy)
            except DomainError as exc:
                if exc.kind not in saga.TRANSIENT:
                    # The saga cancelled the new order (releasing its hold, refunding a
                    # difference taken): the returned units are free again.
                    await _drop(self.new_uow, self.return_ports, ret)
                if exc.code == "insufficient_stock":
                    # The new order's lines are the exchange's `new_lines`, in their order.
                    exc.violations = _renamed(exc.violations, "lines", "new_lines")
                raise
        try:
            done = await move_money_and_stock(self.return_ports, ret)
        except RefundRefused as exc:
            # The new order is sold: the return waits for a person to settle its refund.
            raise await give_up(self.new_uow, ret, exc) from None
        await boundary(self.policy, "exchange_refunded")
        return Exchanged(done, order)

    async def _withdraw(self, order: Order) -> None:
        # Its request's start forgotten too: a retry makes a new order, whose hold is asked
        # anew rather than answered with this one's (released).
        await discard(self.new_uow, order.id, self.req.request_id)

    async def _record_tenders(self, order: Order, ret: Return) -> Order:
        due = order.totals.total.amount - ret.amount
        if order.saga.tenders or due <= 0:
            return order

        def planned(o: Order) -> None:
            o.saga.tenders = _plan_tenders(o, self.req.tenders, due)
            o.exchange_tenders_written()

        order, _ = await change(self.new_uow, order.id, planned)
        return order

    async def _set_credit_aside(self, order: Order, ret: Return) -> None:
        """The credit's money set aside on the original order's payments before anything is
        charged or sold: refunded meanwhile (a refund of the original order since the claim),
        the exchange is undone as for short stock."""
        try:
            await set_credit_aside(self.return_ports, ret)
        except DomainError as exc:
            if exc.kind in saga.TRANSIENT:
                raise
            await saga.cancel(
                self.new_uow, self.ports, order.id, self.policy, exc.code, refusal=exc
            )
            raise

    async def _pay(self, order: Order) -> Order:
        """Take each planned tender not answered yet, captured at once. A payment whose answer
        was pending is asked after first (a retry): the sale goes on only once the tenders
        cover the difference."""
        if any(t.state is TenderState.PENDING for t in order.saga.tenders):
            payments = await self.ports.payments.of_order(order.id)
            # Written (a new version, announced) only when the payments say something new: a
            # retry while the card is still pending changes nothing.
            if not saga.tenders_in_line(order, payments, give_up_sent=False):
                order, _ = await change(
                    self.new_uow, order.id, lambda o: _tenders_synced(o, payments)
                )
        for i, (record, asked) in enumerate(
            zip(order.saga.tenders, self.req.tenders, strict=False)
        ):
            if record.state is not TenderState.SENT:
                continue
            try:
                payment = await self.ports.payments.take(
                    record.request_id,
                    order.id,
                    order.location_id,
                    tender_ask(record, order.currency, True, asked),
                )
            except DomainError as exc:
                if exc.kind in saga.TRANSIENT:
                    raise
                # Refused before anything was taken (a bad token, a spent gift card).
                if (
                    exc.kind in (ErrorKind.INVALID, ErrorKind.NOT_FOUND)
                    and exc.code != "idempotency_key_reused"
                ):
                    # As a checkout's tender (`Order.tender_refused`): awaited no more, so the
                    # cancel ends with nothing left to give back (not compensating until the
                    # resumer gives it up), and the request may come again corrected (`_anew`).
                    def gone(o: Order, n: int = record.n) -> None:
                        o.tender_refused(n)

                    await change(self.new_uow, order.id, gone)
                refused = _about_tender(exc, i)
                await saga.cancel(self.new_uow, self.ports, order.id, self.policy,
                                  "payment_declined", refusal=refused)  # fmt: skip
                raise refused from None
            await boundary(self.policy, "after_authorization")

            def answered(o: Order, n: int = record.n, p: PaymentResult = payment) -> None:
                o.tender_answered(n, p.payment_id, saga.tender_state(p), p.captured_amount)
                o.exchange_tenders_written()

            order, _ = await change(self.new_uow, order.id, answered)
            state = order.saga.tenders[record.n - 1].state
            if state is TenderState.FAILED:
                declined = Conflict(
                    "the payment was declined: "
                    + (getattr(payment.raw, "decline_reason", "") or "declined"),
                    "payment_declined",
                    {"order_id": order.id, "payment_id": payment.payment_id},
                )
                await saga.cancel(self.new_uow, self.ports, order.id, self.policy,
                                  "payment_declined", refusal=declined)  # fmt: skip
                raise declined
            if state is TenderState.PENDING:
                break
        if any(t.state is TenderState.PENDING for t in order.saga.tenders):
            raise Unavailable(
                "the payment's answer is not known yet; retry with the same request id",
                "payment_pending",
            )
        if order.balance_due > 0:  # a tender failed on an earlier run
            declined = Conflict(
                "a payment of the difference was declined", "payment_declined", _declined(order)
            )
            await saga.cancel(self.new_uow, self.ports, order.id, self.policy,
                              "payment_declined", refusal=declined)  # fmt: skip
            raise declined
        return order

    async def record(self, uow: ReturnsUnitOfWork, done: Exchanged) -> R:
        ret, source = await complete(uow, done.ret)
        order = await uow.orders.get(done.order.id)
        assert order is not None
        return self.answer(ret, order, source)


def _tenders_synced(o: Order, payments: list[PaymentResult]) -> None:
    saga.sync_tenders(o, payments, False)
    o.exchange_tenders_written()


def _backed(source: Order, earlier: list[Return], amount: int) -> None:
    """The returned units' value is credited or refunded: never more than the original
    order's tenders have left to give back (and the credit it was itself paid with, for an
    exchange's new order), as a plain return of them would be refused."""
    left = max(0, sum(x for _, x in tenders_left(source, earlier)))
    if source.saga.exchange_of:
        left += max(0, source.saga.credit - credit_refunded(earlier))
    if amount > left:
        raise exceeds_refundable(amount, left)


def _plan_tenders(order: Order, asked: list[ExchangeTender], due: int) -> list[TenderRecord]:
    """The difference due over the caller's tenders (the last without an amount takes what is
    left); none is due: no tender is taken, whatever was sent."""
    if due <= 0:
        return []
    raise_if(
        require(
            bool(asked),
            "tenders",
            f"is required: the new lines cost {due} more than the returned units",
        )
    )
    amounts = [t.amount.amount if t.amount is not None else None for t in asked]
    named = sum(a for a in amounts if a is not None)
    if amounts[-1] is None:
        amounts[-1] = due - named
    violations = require(
        sum(a or 0 for a in amounts) == due and all((a or 0) > 0 for a in amounts),
        "tenders",
        f"must add up to the difference due ({due})",
    )
    for i, (t, a) in enumerate(zip(asked, amounts, strict=True)):
        if t.amount is not None and t.amount.currency != order.currency:
            violations.append(
                FieldViolation(f"tenders[{i}].amount.currency", f"must be in {order.currency}")
            )
        if t.tender is Tender.CASH and t.cash_tendered is not None and a is not None:
            if t.cash_tendered.currency != order.currency:
                violations.append(
                    FieldViolation(
                        f"tenders[{i}].cash_tendered.currency", f"must be in {order.currency}"
                    )
                )
            else:
                violations += require(
                    t.cash_tendered.amount >= a,
                    f"tenders[{i}].cash_tendered.amount",
                    f"must cover the tender's amount ({a} {order.currency})",
                )
    raise_if(violations)
    return [
        TenderRecord(n, t.tender, a or 0, f"{order.id}/payment/{n}", asked_by=f"exchange/{n}")
        for n, (t, a) in enumerate(zip(asked, amounts, strict=True), start=1)
        if t.tender is not None
    ]


def _declined(order: Order) -> dict[str, str]:
    """The new order and its declined payment, for the caller's answer to show them."""
    failed = [t.payment_id for t in order.saga.tenders
              if t.state is TenderState.FAILED and t.payment_id]  # fmt: skip
    return {"order_id": order.id, **({"payment_id": failed[-1]} if failed else {})}


# The refusals the gateway keeps nothing of under an Idempotency-Key (400, 403, 404: the
# request refused as it came), so the client may send the corrected request under the same key.
_REFUSED_AS_IT_CAME = (ErrorKind.INVALID, ErrorKind.FORBIDDEN, ErrorKind.NOT_FOUND)


async def _anew(uow: ReturnsUnitOfWork, req: ExchangeRequest) -> Start:
    """Another body under the request id of an exchange begun already. Its first attempt
    refused as it came once its new order was made (a gift card code no card has: a 404), the
    gateway kept nothing of the answer and the client may send a corrected body under the same
    key (gateway/README.md): it runs as a new attempt, its start made anew (a new nonce, so its
    return, new order and their step ids are its own, never the refused attempt's). Only once
    that attempt is wholly undone: its new order cancelled with everything given back
    (`SagaState.DONE`: holds released, any difference taken refunded) and its return dropped
    (its credit released). Otherwise, or for any other refusal (kept by the gateway and
    replayed), the request id reused, as before."""
    earlier = await uow.checkouts.earlier(req.request_id)
    if earlier is None:
        raise RequestIdReused()
    claim = earlier.claim(uow.merchant_id, req.request_id)
    made = await uow.orders.get(claim.derived_id("ord"))
    refusal = made.saga.refusal if made is not None else None
    if (
        made is None
        or refusal is None
        or refusal.kind not in _REFUSED_AS_IT_CAME
        or made.status is not OrderStatus.CANCELLED
        or made.saga.state is not SagaState.DONE
        or await uow.returns.get(claim.derived_id("ret")) is not None
    ):
        raise RequestIdReused()
    await uow.checkouts.forget(req.request_id)
    return await uow.checkouts.start(req.request_id, req.fingerprint)


def _not_made(order: Order) -> DomainError:
    """A retry of an exchange whose new order was cancelled: the same refusal, as the caller
    first heard it when it was recorded with the cancel (`Saga.refusal`)."""
    first = order.saga.refusal
    if first is not None:
        return DomainError(
            first.message, first.code, list(first.violations), dict(first.metadata), first.kind
        )
    return Conflict(
        f"this exchange was not made: {order.cancel_reason}",
        order.cancel_reason or "exchange_cancelled",
        _declined(order) if order.cancel_reason == "payment_declined" else {},
    )


async def _drop(new_uow: Callable[[], ReturnsUnitOfWork], ports: ReturnPorts, ret: Return) -> None:
    """The exchange was not made: its credit's money refundable again, then its return gone
    (its units free again). A credit that cannot be released now leaves the return pending:
    the resumer releases it and drops the return (`returns.exchange_sold`)."""
    try:
        await release_credit(ports, ret)
    except DomainError as exc:
        log.warning("exchange credit of return %s not released yet (%s)", ret.id, exc.code)
        return
    async with new_uow() as uow:
        await uow.returns.discard(ret.id)
        await uow.commit()


def _about_tender(exc: DomainError, i: int) -> DomainError:
    """The payment service's refusals of a tender name its own fields (`card_token`): here
    they are the exchange's `tenders[i]`."""
    exc.violations = [
        FieldViolation(f"tenders[{i}].{v.field}" if v.field else f"tenders[{i}]", v.description)
        for v in exc.violations
    ]
    return exc


def _about_new_lines(exc: DomainError, req: ExchangeRequest, store: str) -> DomainError:
    """Pricing's refusals name the checkout's fields (`lines[i]`, `location_id`,
    `fulfillments[j].location_id`, one fulfilment per store the new lines leave from): here
    they are the exchange's `new_lines[i]` and `location_id`. A SKU the catalog does not have
    is a 400 naming the line; a store the merchant does not have, a 404 naming the fields
    that name it."""
    if exc.kind is ErrorKind.NOT_FOUND:
        return _missing_for_exchange(exc, req, store)
    if not exc.violations:
        return exc
    places = list(dict.fromkeys(ln.location_id or store for ln in req.new_lines))
    violations = []
    for v in _renamed(exc.violations, "lines", "new_lines"):
        found = _FULFILLMENT_STORE.fullmatch(v.field)
        if found is None:
            violations.append(v)
            continue
        # The store a fulfilment leaves from: the new lines sent from it name it.
        place = places[int(found[1])]
        fields = [f"new_lines[{i}].location_id" for i, ln in enumerate(req.new_lines)
                  if ln.location_id == place] or ["location_id"]  # fmt: skip
        violations += [FieldViolation(f, v.description) for f in fields]
    if exc.kind is not ErrorKind.CONFLICT:
        return InvalidArgument(exc.message, violations)
    # A conflict of its own (a closed store's `location_inactive`) keeps its code and status.
    exc.violations = violations
    return exc


_FULFILLMENT_STORE = re.compile(r"fulfillments\[(\d+)\]\.location_id")


def _missing_for_exchange(exc: DomainError, req: ExchangeRequest, store: str) -> DomainError:
    missing = set(exc.metadata.get("skus", "").split(",")) - {""}
    unknown = [
        FieldViolation(f"new_lines[{i}].sku", "is not a product of the catalog")
        for i, ln in enumerate(req.new_lines)
        if ln.sku in missing
    ]
    if unknown:
        return InvalidArgument("the request is not valid", unknown)
    if exc.metadata.get("resource") != "location":
        return exc
    places = list(dict.fromkeys(ln.location_id or store for ln in req.new_lines))
    gone = set()
    for v in exc.violations:
        found = _FULFILLMENT_STORE.fullmatch(v.field)
        gone.add(places[int(found[1])] if found else store)
    fields = ["location_id"] if req.location_id in gone else []
    fields += [f"new_lines[{i}].location_id" for i, ln in enumerate(req.new_lines)
               if ln.location_id in gone]  # fmt: skip
    return named_by(exc, fields)


__all__ = ["CreateExchange", "ExchangeRequest", "ExchangeTender", "NewLine"]
