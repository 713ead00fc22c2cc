"""The checkout saga's steps, each persisted, each idempotent by a request id derived from the
order (`<order id>/<step>/<n>`), never from anything that changes between attempts.

Every step is: call another service holding no database connection, then record what it
answered in one short transaction (the order row locked, changed, written with its events).
Whoever drives the saga (a caller's request, a retry of it, or the resumer after a crash) runs
the same steps from what is recorded; the other services replay what they already did.
"""

from __future__ import annotations

import asyncio
import copy
import functools
import logging
import re
from collections.abc import Awaitable, Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta
from typing import TypeVar

from pos_kit.context import register_var, staff_var
from pos_kit.errors import Conflict, DomainError, ErrorKind, FieldViolation, NotFound, Unavailable
from pos_kit.money import Money
from pos_order.domain.coupons import CouponStep
from pos_order.domain.model import (
    Allocation,
    Capture,
    Fulfillment,
    FulfillmentStatus,
    FulfillmentType,
    HoldState,
    Order,
    OrderCreated,
    OrderFulfillmentUpdated,
    OrderLine,
    OrderStatus,
    PointsState,
    SagaState,
    Tender,
    TenderRecord,
    TenderState,
)
from pos_order.domain.returns import adjusted_in_fulfillment, goods_returned
from pos_order.domain.tax import TaxTable
from pos_order.service.ports import (
    PROCESSOR_UNREACHED,
    CartContext,
    CheckoutPorts,
    IssuedCard,
    NewUow,
    OrderSettings,
    OrderUnitOfWork,
    PaymentResult,
)

log = logging.getLogger(__name__)

T = TypeVar("T")

# The step boundaries a test may stop a process at (see `Policy.pause_at`).
BOUNDARIES = (
    "order_saved",
    "after_hold",
    "after_authorization",
    "holds_committed",
    "after_capture",
    "before_confirm_commit",
    "after_confirm_commit",
    "compensating",
    # An exchange (service/exchanges.py): its return and new order saved; its refund and
    # restock done, the return not completed yet.
    "exchange_saved",
    "exchange_refunded",
    # One fulfilment's cancel: its refunds and restock asked, the fulfilment not recorded
    # cancelled yet; then recorded cancelled, nothing after it run yet.
    "fulfillment_given_back",
    "fulfillment_cancelled",
)


@dataclass(frozen=True)
class Policy:
    defaults: OrderSettings = field(default_factory=OrderSettings)
    # An unfinished saga left idle this long is the resumer's: its driver is gone.
    abandon_after: timedelta = timedelta(seconds=30)
    # Tests only: the step boundaries where this process stops as if it had died there.
    pause_at: frozenset[str] = frozenset()


# How soon the resumer looks again at an order whose card's answer is awaited.
PENDING_REVISIT = timedelta(seconds=5)


def now() -> datetime:
    return datetime.now(UTC)


# The boundaries this process stopped at (test hook; see `boundary`).
PAUSED: list[str] = []


async def boundary(policy: Policy, name: str) -> None:
    """A test hook: the process "dies" here: it waits until it is stopped, so nothing after
    this boundary runs and nothing it held in memory survives."""
    if name in policy.pause_at:
        log.warning("stopping at the saga boundary %s (test hook)", name)
        PAUSED.append(name)
        await asyncio.Event().wait()


TRANSIENT = {ErrorKind.UNAVAILABLE, ErrorKind.TIMEOUT, ErrorKind.RETRY}


async def load(new_uow: NewUow, order_id: str) -> Order:
    async with new_uow().reading() as uow:
        order = await uow.orders.get(order_id)
    if order is None:
        raise NotFound("order", order_id)
    return order


async def change(new_uow: NewUow, order_id: str, apply: Callable[[Order], T]) -> tuple[Order, T]:
    """One short transaction: the order read locked, changed by `apply`, written with its
    events. `apply` may raise, and then nothing is written."""
    async with new_uow() as uow:
        changed = await change_in(uow, order_id, apply)
        await uow.commit()
    return changed


async def change_in(
    uow: OrderUnitOfWork, order_id: str, apply: Callable[[Order], T], known: Order | None = None
) -> tuple[Order, T]:
    """`change` in the caller's transaction, which commits it.

    `known`: the order as this caller last wrote or read it (it is changed in place). It is
    written back only if the row is still at its version, without reading the row first; if
    another change came in between, the row is read locked and changed as usual."""
    if known is not None:
        seen = known.version
        known.touched(now())
        result = apply(known)
        if await uow.orders.save_if_version(known, seen):
            await _publish(uow, known)
            return known, result
    order = await uow.orders.get(order_id, lock=True)
    if order is None:
        raise NotFound("order", order_id)
    order.touched(now())  # first: the events `apply` raises carry the new version
    result = apply(order)
    await uow.orders.save(order)
    await _publish(uow, order)
    return order, result


async def _publish(uow: OrderUnitOfWork, order: Order) -> None:
    given_back: int | None = None
    for event in order.events:
        if isinstance(event, OrderFulfillmentUpdated) and event.gives_back:
            # Read under the order row's lock, which a return's completion takes too: the
            # figure counts every return completed before this change, none twice.
            if given_back is None:
                returns = await uow.returns.of_order(order.id)
                given_back = goods_returned(returns) + order.cancelled_goods
            event = replace(event, goods_given_back=given_back)
        uow.publish(event)
    order.events.clear()


async def settings_of(new_uow: NewUow, policy: Policy) -> OrderSettings:
    async with new_uow().reading() as uow:
        found = await uow.settings.get()
    return found or policy.defaults


# --- coupons: reserved before any payment, redeemed on confirmation, released on cancel ----


async def reserve_coupons(
    new_uow: NewUow, ports: CheckoutPorts, order: Order, cart: CartContext, announce: bool = False
) -> Order:
    """Reserve a use of each coupon the order names (all or none), keyed by the order: a
    retry asks the same and gets the same reservations. A code that cannot apply raises the
    promotion service's Conflict (`coupon_exhausted`, ...): the caller drops the order, which
    nothing else was taken for yet. `announce`: the order's `created` event waits for this."""
    if order.saga.coupons.step is not CouponStep.SENT:
        return order
    if ports.coupons is None:
        raise Unavailable("coupons cannot be reserved now", "promotion_unavailable")
    # The goods alone, as the quote priced them (pricing.py): a gift card sold beside them is
    # never discounted and spends nothing towards an offer, and judged with it the promotion
    # service could find the coupon beaten by an automatic offer the quote never applied.
    goods = [ln for ln in order.lines if not ln.gift_card]
    uses = await ports.coupons.reserve(
        f"{order.id}/coupons/reserve", order.id, goods, order.currency, cart
    )

    def reserved(o: Order) -> None:
        o.coupons_reserved(uses)
        if announce:
            o.events.append(OrderCreated(o))

    order, _ = await change(new_uow, order.id, reserved)
    return order


async def settle_coupons(new_uow: NewUow, ports: CheckoutPorts, order: Order) -> Order:
    """A confirmed order redeems its coupons; a cancelled one releases them. While the
    promotion service cannot answer, the order stays due and the resumer asks again."""
    if not order.coupons_due or ports.coupons is None:
        return order
    try:
        if order.status is OrderStatus.CANCELLED:
            await ports.coupons.release(f"{order.id}/coupons/release", order.id)
        else:
            await ports.coupons.redeem(f"{order.id}/coupons/redeem", order.id)
    except DomainError as exc:
        if exc.kind in TRANSIENT:
            log.warning("coupons of order %s not settled yet (%s)", order.id, exc.code)
            return order
        # Nothing reserved (NotFound), or already final: nothing more to ask.
        log.info("coupons of order %s: %s", order.id, exc.code)
    # A change of its own after the confirmation (or cancellation) was announced: announced.
    order, _ = await change(new_uow, order.id, lambda o: o.coupons_settled(announce=True))
    return order


# --- holding stock ---------------------------------------------------------------------------


# Removes an order undone before it was announced (handlers: its row and its request's start).
Withdraw = Callable[[Order], Awaitable[None]]


async def hold_stock(
    new_uow: NewUow,
    ports: CheckoutPorts,
    order: Order,
    policy: Policy,
    withdraw: Withdraw | None = None,
) -> Order:
    """Hold every pickup and shipment fulfilment's lines: all of them or none. Short stock
    cancels the order (each hold taken is released) and answers with the short lines; with
    `withdraw`, an order not announced yet is undone the same way and then withdrawn instead
    (`_short`). The hold recorded last announces an order that waits for it."""
    assert ports.stock is not None
    for f in order.fulfillments:
        if f.hold is not HoldState.SENT:
            continue
        if f.sourced:
            order = await _source(new_uow, ports, order, f, policy, withdraw)
            continue
        try:
            reservation = await _ask_hold(ports, order, f)
        except DomainError as exc:
            if exc.kind in TRANSIENT:
                raise  # inventory down: the order stays; the client retries or it expires
            await _short(new_uow, ports, order, policy, withdraw)
            exc.violations = _as_order_lines(exc.violations, order, f)
            raise exc from None
        await boundary(policy, "after_hold")

        def held(o: Order, fid: str = f.id, rid: str = reservation) -> None:
            found = o.fulfillment(fid)
            assert found is not None
            found.reservation_id, found.hold = rid, HoldState.HELD
            o.announce_if_held()

        order, _ = await change(new_uow, order.id, held)
    return order


def _as_order_lines(
    violations: list[FieldViolation], order: Order, f: Fulfillment
) -> list[FieldViolation]:
    """The inventory service names a short line by its place in the fulfilment's hold
    (`lines[0].quantity`); the caller sent it as the order's line (`lines[2].quantity`).
    Anything else the hold's request named is no field of the caller's: left out."""
    held = order.lines_of(f)
    out: list[FieldViolation] = []
    for v in violations:
        found = re.fullmatch(r"lines\[(\d+)\]\.quantity", v.field)
        if found is None or int(found.group(1)) >= len(held):
            continue
        line = held[int(found.group(1))]
        index = next(i for i, ln in enumerate(order.lines) if ln is line)
        out.append(FieldViolation(f"lines[{index}].quantity", v.description))
    return out


async def _short(
    new_uow: NewUow, ports: CheckoutPorts, order: Order, policy: Policy, withdraw: Withdraw | None
) -> None:
    """Short stock. An order partners were told of is cancelled; one not announced yet (it
    waits for its holds), or a draft being submitted (put back to draft), is given back and
    then `withdraw` ends it (`refused`)."""
    undone = (order.saga.announce_when_held or order.saga.draft is not None) and not (
        order.saga.tenders
    )
    await refused(new_uow, ports, order, policy, "insufficient_stock", withdraw if undone else None)


async def refused(
    new_uow: NewUow,
    ports: CheckoutPorts,
    order: Order,
    policy: Policy,
    reason: str,
    withdraw: Withdraw | None,
) -> None:
    """A step refused for good before anything was sold (short stock, points the customer
    has not got, a card token the processor never issued). Without `withdraw` (partners were
    told of the order) it is cancelled. With it (the caller's word that nobody was: the
    register's sale, an order waiting for its holds) it is compensated as a cancellation is,
    recorded `compensating` first (a crash leaves it to the resumer, which cancels it), and
    then withdrawn: no hold, coupon or points hold outlives it, nobody hears of an order that
    never was, and a retry of its request starts anew."""
    if withdraw is None:
        await cancel(new_uow, ports, order.id, policy, reason)
        return
    order, _ = await change(new_uow, order.id, lambda o: o.begin_cancel(reason))
    if order.status is not OrderStatus.CANCELLED:
        await compensate(new_uow, ports, order, policy, finish=withdraw)


def back_to_draft(new_uow: NewUow) -> Withdraw:
    """What ends a draft's submit refused once all it took is given back (`refused`): the
    order is a draft again, its timeline saying why (the reason it was refused for)."""

    async def back(order: Order) -> None:
        await change(new_uow, order.id, lambda o: o.back_to_draft(now(), o.saga.cancel_reason))

    return back


async def _ask_sourcing(ports: CheckoutPorts, order: Order, f: Fulfillment) -> list[Allocation]:
    assert ports.stock is not None and f.destination is not None
    lines = [(ln.sku, ln.quantity) for ln in order.lines_of(f)]
    return await ports.stock.source(
        f"{order.id}/source/{order.hold_key(f)}",
        lines,
        f.destination,
        order.saga.hold_ttl,
        order.id,
        order.currency,
    )


async def _source(
    new_uow: NewUow,
    ports: CheckoutPorts,
    order: Order,
    f: Fulfillment,
    policy: Policy,
    withdraw: Withdraw | None = None,
) -> Order:
    """Ship from store: inventory's sourcing holds the lines at the nearest store that has them
    all, or splits them over several; each store becomes a fulfilment of its own, its lines
    taxed where they leave from (as a shipment naming its store), in the same write, before
    the order takes any tender or is announced."""
    try:
        allocations = await _ask_sourcing(ports, order, f)
    except DomainError as exc:
        if exc.kind in TRANSIENT:
            raise
        await _short(new_uow, ports, order, policy, withdraw)
        raise exc from None
    # Inventory away now: the order stays with its shipment unsourced (a 503); its retry asks
    # sourcing again under the same request id and hears the same stores.
    taxed_at = await tax_rules(ports, order, allocations)
    await boundary(policy, "after_hold")

    def sourced(o: Order) -> None:
        o.source(f.id, allocations, taxed_at)
        o.announce_if_held()

    order, _ = await change(new_uow, order.id, sourced)
    return order


async def tax_rules(
    ports: CheckoutPorts, order: Order, allocations: list[Allocation]
) -> dict[str, TaxTable]:
    """The tax rules of each store sourcing picked other than the selling one (whose rules
    priced the lines), where it states prices the order's way: what a shipment naming that
    store is taxed by (pricing.py). None for an order priced before its way was kept (its
    lines keep the selling store's tax)."""
    if order.saga.tax_inclusive is None:
        return {}
    rules = {}
    for store in sorted({a.location_id for a in allocations} - {order.location_id}):
        skus = sorted({sku for a in allocations if a.location_id == store for sku, _ in a.lines})
        location, _ = await ports.catalog.price_snapshot(store, skus)
        if location.tax_inclusive == order.saga.tax_inclusive:
            rules[store] = location.tax_table
    return rules


async def _ask_hold(ports: CheckoutPorts, order: Order, f: Fulfillment) -> str:
    assert ports.stock is not None
    lines = [(ln.sku, ln.quantity) for ln in order.lines_of(f)]
    return await ports.stock.hold(
        f"{order.id}/hold/{order.hold_key(f)}", f.location_id, lines, order.saga.hold_ttl, order.id
    )


# --- loyalty points: held before any payment, redeemed with the confirmation -----------------


async def hold_points(
    new_uow: NewUow,
    ports: CheckoutPorts,
    order: Order,
    policy: Policy,
    withdraw: Withdraw | None = None,
) -> Order:
    """Hold the points the order redeems (`<order>/points/hold`) before anything is charged.
    Refused (not that many points, or the program's value changed since the order was priced):
    nothing was charged and the refusal is the answer; the order is cancelled, or, with
    `withdraw` (nobody was told of it yet), withdrawn (`refused`). The customer service down:
    a 503, the order stays pending (a retry goes on, or the resumer gives it up)."""
    if order.saga.points_state is not PointsState.SENT:
        return order
    assert ports.loyalty is not None
    try:
        discount = await ports.loyalty.hold(
            f"{order.id}/points/hold", order.id, order.customer_id, order.saga.points,
            order.currency,
        )  # fmt: skip
        if discount != order.saga.points_discount:
            raise Conflict(
                "the loyalty program's point value changed since the order was priced; "
                "price it again",
                "points_value_changed",
            )
    except DomainError as exc:
        if exc.kind in TRANSIENT:
            raise
        reason = "insufficient_points" if exc.code == "insufficient_points" else "points_refused"
        if exc.code == "points_value_changed" and order.saga.draft is not None:
            # The hold was made: released, the customer service would refuse the draft's next
            # submit (`hold_released`), so the draft is cancelled rather than put back.
            withdraw = None
        await refused(new_uow, ports, order, policy, reason, withdraw)
        raise exc from None

    def held(o: Order) -> None:
        o.saga.points_state = PointsState.HELD

    order, _ = await change(new_uow, order.id, held)
    return order


async def give_back_points(ports: CheckoutPorts, order: Order) -> PointsState | None:
    """Compensation: points held are released; points redeemed (the order was confirmed, or
    its finalisation went through before a crash) are given back. Answers the new state."""
    state = order.saga.points_state
    if ports.loyalty is None or state in (None, PointsState.RELEASED, PointsState.REVERSED):
        return state
    if state is not PointsState.FINALIZED:
        try:
            await ports.loyalty.release(f"{order.id}/points/release", order.id)
            return PointsState.RELEASED
        except DomainError as exc:
            if exc.kind is ErrorKind.NOT_FOUND:
                return PointsState.RELEASED  # the hold was never made
            if exc.kind is not ErrorKind.CONFLICT:
                raise
            if exc.code != "hold_finalized":
                log.info("points release already final: %s", exc.code)
                return PointsState.RELEASED
    try:
        await ports.loyalty.reverse(f"{order.id}/points/reverse", order.id, "order cancelled")
    except DomainError as exc:
        if exc.kind is not ErrorKind.NOT_FOUND:
            raise
    return PointsState.REVERSED


# --- money: what the payment service knows is the truth --------------------------------------


def tender_state(p: PaymentResult) -> TenderState:
    if p.status == "captured":
        return TenderState.CAPTURED if p.captured_amount >= p.amount else TenderState.AUTHORIZED
    return {
        "pending": TenderState.PENDING,
        "authorized": TenderState.AUTHORIZED,
        "failed": TenderState.FAILED,
        "voided": TenderState.VOIDED,
    }.get(p.status, TenderState.PENDING)


def tenders_in_line(order: Order, payments: list[PaymentResult], give_up_sent: bool = True) -> bool:
    """Whether `sync_tenders` (by default giving up on tenders never sent) would change
    nothing."""
    probe = copy.deepcopy(order)
    sync_tenders(probe, payments, give_up_sent)
    return probe.saga.tenders == order.saga.tenders


async def touch(new_uow: NewUow, order_id: str, idle_for: timedelta = timedelta(0)) -> None:
    async with new_uow() as uow:
        await uow.orders.touch(order_id, idle_for)
        await uow.commit()


def taken_beside(order: Order, payments: list[PaymentResult]) -> dict[str, TenderRecord]:
    """The order's tenders still being taken (their answer not recorded), by the payment each
    made: the one its driver named, or, as `sync_tenders` matches them, the next payment no
    tender names."""
    known = {t.payment_id for t in order.saga.tenders if t.payment_id}
    unmatched = [p.payment_id for p in payments if p.payment_id not in known]
    found: dict[str, TenderRecord] = {}
    for t in order.saga.tenders:
        if not t.payment_id and t.to_record and unmatched:
            unmatched.pop(0)
        elif t.state is TenderState.SENT and (t.payment_id or unmatched):
            found[t.payment_id or unmatched.pop(0)] = t
        elif not t.payment_id and t.state is TenderState.PENDING and unmatched:
            unmatched.pop(0)
    return found


def sync_tenders(order: Order, payments: list[PaymentResult], give_up_sent: bool) -> None:
    """Bring the recorded tenders in line with the payments the payment service has for the
    order. A tender whose answer was lost finds its payment among those not yet matched (they
    are taken in order). With `give_up_sent`, a tender that never reached the payment service
    (no payment for it, and its driver long gone) counts as failed."""
    by_id = {p.payment_id: p for p in payments}
    known = {t.payment_id for t in order.saga.tenders if t.payment_id}
    unmatched = [p for p in payments if p.payment_id not in known]
    for t in order.saga.tenders:
        # Cash taken while the payment service was away is matched as an unanswered tender
        # (it may have been taken there, its answer lost), but never given up: it is in hand.
        if not t.payment_id and t.to_record and unmatched:
            t.payment_id, t.to_record = unmatched.pop(0).payment_id, False
        elif not t.payment_id and t.state in (TenderState.SENT, TenderState.PENDING):
            if unmatched:
                t.payment_id = unmatched.pop(0).payment_id
            elif give_up_sent:
                t.state = TenderState.FAILED
                continue
        p = by_id.get(t.payment_id)
        if p is None:
            continue
        t.state = tender_state(p)
        t.captured = max(t.captured, p.captured_amount)
        t.refunded_seen = max(t.refunded_seen, p.refunded_amount)  # refunds only grow
        t.voided = max(t.voided, p.voided_amount if t.captured else 0)
    for p in unmatched:  # taken for the order, yet no tender of ours: keep it, to compensate
        n = len(order.saga.tenders) + 1
        order.saga.tenders.append(
            TenderRecord(
                n,
                order.saga.tenders[0].tender if order.saga.tenders else Tender.CARD,
                p.amount,
                f"{order.id}/payment/{n}",
                payment_id=p.payment_id,
                state=tender_state(p),
                captured=p.captured_amount,
                refunded=p.refunded_amount,
            )
        )


@contextmanager
def at_register_of(order: Order) -> Iterator[None]:
    """Calls made for the order as from the register it was sold at (its metadata, which the
    kit forwards), whoever drives them: the payment service keeps the register and member on
    the payment and counts its money towards that register's open shift."""
    register = register_var.set(order.register_id or None)
    staff = staff_var.set(order.staff_id or None)
    try:
        yield
    finally:
        staff_var.reset(staff)
        register_var.reset(register)


@contextmanager
def giving_back_at(
    order: Order, key: str = "", tender: TenderRecord | None = None
) -> Iterator[None]:
    """A cancel's refunds (`key`: the fulfilment cancelled, "" for the whole order) asked as
    from the register the cancel was asked at (`Saga.cancelled_at`, none from the back office),
    whoever drives them: the request, its retry, or the resumer after a crash. A cancel the
    service made itself (a pickup's or a pending sale's expiry, an abandoned sale, a failed
    saga's compensation) was asked at no register: it gives back at the register the sale was
    made at, so the cash it owes counts in the shift open there when the refund is paid (the
    rule for cash recorded late, a late cash sale's too), or in none when none is open or the
    sale was made from the back office. Never refused for it: the money is owed back.
    `tender`: a tender the cancel met still being taken (`taken_beside`), taken at a register:
    its payment is given back as from that register, whose till is told the order was
    cancelled and hands the money back (given back as from the back office, its cash counted
    in that register's shift and its refund in none)."""
    register, staff = order.saga.cancelled_at.get(key, (order.register_id, order.staff_id))
    if tender is not None and tender.register_id:
        register, staff = tender.register_id, tender.staff_id
    registered = register_var.set(register or None)
    member = staff_var.set(staff or None if register else None)
    try:
        yield
    finally:
        staff_var.reset(member)
        register_var.reset(registered)


# The payment service's refusals of cash recorded late that no retry of the resumer changes:
# the register's open shift counts another currency than the sale's (a shift opened since in
# another currency). The tender is held for a person (`TenderRecord.record_refused`).
RECORD_REFUSED_FOR_GOOD = frozenset({"shift_currency_mismatch"})


async def record_taken(
    new_uow: NewUow, ports: CheckoutPorts, order: Order, quietly: bool = False
) -> Order:
    """Cash taken while the payment service was away (the sale confirmed at once): its payment
    recorded there now, under the request id the sale used (`<order>/payment/<n>`) and as the
    till asked it, so a sale that reached it after all, a retry and the resumer all find the
    one payment. `quietly`: a record that fails (the payment service still away) is left for
    the resumer's next pass instead of failing the caller. A refusal for good
    (`RECORD_REFUSED_FOR_GOOD`) holds the tender for a person, shown on the order with the
    refusal: it is no longer asked (the resumer asked it on every pass, for ever)."""
    for t in order.tenders_to_record_now:
        try:
            with at_register_of(order):
                payment = await _record_taken(ports, order, t)
        except DomainError as exc:
            if exc.code in RECORD_REFUSED_FOR_GOOD:
                log.warning("cash of order %s held for a person: %s", order.id, exc.code)

                def held(o: Order, n: int = t.n, code: str = exc.code) -> None:
                    o.tender_record_refused(n, code)

                order, _ = await change(new_uow, order.id, held)
                continue
            if quietly:  # the sale is made: what the record met is the resumer's to retry
                log.info("cash of order %s left to the resumer: %s", order.id, exc.code)
                return order
            raise

        def recorded(o: Order, n: int = t.n, p: PaymentResult = payment) -> None:
            o.tender_recorded(n, p.payment_id, p.refunded_amount)

        order, _ = await change(new_uow, order.id, recorded)
    return order


async def _record_taken(ports: CheckoutPorts, order: Order, t: TenderRecord) -> PaymentResult:
    """The payment service told of a tender taken in hand, under the sale's own request id (a
    record made before is answered again, never doubled)."""
    cash = None if t.cash_tendered is None else Money(t.cash_tendered, order.currency)
    return await ports.payments.charge(
        t.request_id, order.id, order.location_id, t.tender, Money(t.amount, order.currency),
        cash, "",
    )  # fmt: skip


async def record_held(new_uow: NewUow, ports: CheckoutPorts, order: Order) -> Order:
    """A person settles the tenders held for a person (`record_refused`): each recorded now as
    taken from the back office (no register: the payment counts in no shift, the shift it was
    taken in having counted it when it closed; the day's settlement has it), under the sale's
    own request id, so one recorded meanwhile is answered again, never doubled. A refusal
    passes through and writes nothing."""
    for t in [t for t in order.tenders_to_record if t.record_refused]:
        registered, member = register_var.set(None), staff_var.set(None)
        try:
            payment = await _record_taken(ports, order, t)
        finally:
            staff_var.reset(member)
            register_var.reset(registered)

        def recorded(o: Order, n: int = t.n, p: PaymentResult = payment) -> None:
            o.tender_recorded(n, p.payment_id, p.refunded_amount)

        order, _ = await change(new_uow, order.id, recorded)
    return order


# --- confirming ------------------------------------------------------------------------------


def captures_now(
    order: Order, settings: OrderSettings, auth_expires: datetime | None
) -> list[Fulfillment]:
    """Which fulfilments capture at confirmation: in store always; a pickup when the merchant
    says so, or when it could outlive its authorisation (no payment is lost to an expiry)."""
    out: list[Fulfillment] = []
    pickup_ends = now() + timedelta(seconds=settings.pickup_expiry_seconds)
    for f in order.fulfillments:
        if f.type is FulfillmentType.IN_STORE or (
            f.type is FulfillmentType.PICKUP
            and (
                settings.capture_pickup_at_order
                or (auth_expires is not None and pickup_ends >= auth_expires)
            )
        ):
            out.append(f)
    return out


async def run_captures(
    new_uow: NewUow, ports: CheckoutPorts, order: Order, policy: Policy
) -> Order:
    """Ask for every planned capture not recorded done; record them in one transaction."""
    done: list[str] = []

    def record(o: Order) -> None:
        for c in o.saga.captures:
            if c.request_id in done and not c.done:
                o.captured(c)

    for c in order.saga.captures:
        # A fulfilment being cancelled captures only what its cancel takes back of a price
        # adjustment, which the cancel asks itself (a refusal drops it there).
        if c.done or c.fulfillment_id in order.saga.cancelling:
            continue
        try:
            await ports.payments.capture(
                c.request_id, c.payment_id, Money(c.amount, order.currency)
            )
        except DomainError as exc:
            # By kind, not class: the payment service's refusal arrives as a plain DomainError.
            if exc.kind is not ErrorKind.CONFLICT:
                raise
            # A fulfilment's step refused for good (voided, past its window, not enough left):
            # what was captured is recorded, the rest of the step is dropped (not left for the
            # resumer to ask for ever), and the caller hears the refusal. (A confirmation's
            # capture keeps its own way: the confirmation fails and is compensated.)
            if c.fulfillment_id in order.saga.stepping:
                await change(new_uow, order.id, _refused_after(record, c.fulfillment_id))
            raise
        done.append(c.request_id)
        await boundary(policy, "after_capture")
    if not done:
        return order

    order, _ = await change(new_uow, order.id, record)
    return order


def _refused_after(record: Callable[[Order], None], fulfillment_id: str) -> Callable[[Order], None]:
    def drop(o: Order) -> None:
        record(o)
        o.step_refused(fulfillment_id)

    return drop


GIFT_CARDS_ASKED = "gift_cards_asked"


def gift_cards_due(order: Order) -> list[OrderLine]:
    return [ln for ln in order.lines if ln.gift_card and not ln.gift_card_id]


async def issue_gift_cards(
    new_uow: NewUow,
    ports: CheckoutPorts,
    order: Order,
    codes: dict[str, str],
    shown: dict[str, str],
) -> Order:
    """Activate the order's gift card lines (`<order>/gift_card/<line>`), once it is paid and
    before it is confirmed. Only the run that issues a card learns its code (`shown`, by line
    id): it is answered once and never stored here. A pre-printed card's code comes with the
    caller's request; a driver without it (the resumer) cannot activate that card, and the
    order is compensated instead."""
    due = gift_cards_due(order)
    if not due:
        return order
    if ports.gift_cards is None:
        raise Unavailable("gift cards cannot be issued now", "payment_unavailable")
    missing = [ln.id for ln in due if ln.code_supplied and ln.id not in codes]
    if missing:
        raise Conflict(
            "a pre-printed gift card's code is needed to activate it: retry the checkout with "
            "the same key",
            "gift_card_code_required",
            {"lines": ",".join(missing)},
        )
    if GIFT_CARDS_ASKED not in order.saga.done_steps:
        # Recorded before asking: compensation then knows a card may exist for each line.
        order, _ = await change(
            new_uow, order.id, lambda o: o.saga.done_steps.append(GIFT_CARDS_ASKED)
        )
    issued: dict[str, IssuedCard] = {}

    def record(o: Order) -> None:
        for line in o.lines:
            card = issued.get(line.id)
            if card is not None and not line.gift_card_id:
                line.gift_card_id, line.gift_card_last4 = card.gift_card_id, card.last4

    try:
        for ln in due:
            card = await ports.gift_cards.issue(
                f"{order.id}/gift_card/{ln.id}",
                ln.unit_price,
                codes.get(ln.id, ""),
                order.id,
                ln.id,
                order.customer_id,
                order.location_id,
            )
            issued[ln.id] = card
            if card.code:
                shown[ln.id] = card.code
    except DomainError:
        # A card refused (over the merchant's maximum, say): the ones made before it are
        # recorded, so the compensation that follows deactivates them by id.
        if issued:
            await change(new_uow, order.id, record)
        raise
    order, _ = await change(new_uow, order.id, record)
    return order


# How long past the sale's own expiry (when the resumer cancels a sale nobody came back for) a
# pre-printed code stays reserved for it: the compensation releases it before; the rest bounds
# what a sale that vanished before it was saved keeps, or one whose card's answer is awaited.
CODE_HELD_PAST_EXPIRY = timedelta(minutes=15)


async def reserve_gift_card_code(
    ports: CheckoutPorts, order: Order, line_id: str, code: str, hold_seconds: int
) -> None:
    """Reserve a pre-printed card's code for the order's line at the payment service
    (`<order>/gift_card_reserve/<line>`) before anything is charged for the order: of
    concurrent sales of one physical card, one holds its code and the others are refused
    (`gift_card_code_taken`) before they are charged. The activation consumes it;
    `release_gift_card_codes` gives it back; `hold_seconds` (the sale's life) and
    `CODE_HELD_PAST_EXPIRY` bound it."""
    assert ports.gift_cards is not None
    seconds = hold_seconds + int(CODE_HELD_PAST_EXPIRY.total_seconds())
    await ports.gift_cards.reserve_code(
        f"{order.id}/gift_card_reserve/{line_id}", code, order.id, line_id, seconds
    )


async def release_gift_card_codes(ports: CheckoutPorts, order: Order) -> None:
    """The order's pre-printed codes not activated for it can be sold again
    (`<order>/gift_card_release`; one the order's card was activated with stays that card's).
    The payment service down: raised, so the compensation stops here and is run again."""
    if ports.gift_cards is None or not any(ln.code_supplied for ln in order.lines):
        return
    await _quietly(ports.gift_cards.release_codes(f"{order.id}/gift_card_release", order.id))


# The payment service's refusals of a line's issue that say the line has a card.
LINE_HAS_A_CARD = frozenset({"idempotency_key_reused", "gift_card_line_issued"})


async def deactivate_gift_cards(ports: CheckoutPorts, order: Order) -> None:
    """A cancelled order's gift cards end (`<order>/gift_card_deactivate/<line>`), and the
    pre-printed codes it reserved and did not activate are released. A card whose issue was
    asked but whose answer was never recorded is asked again under the same id: the payment
    service answers the card it made, if it made one."""
    await release_gift_card_codes(ports, order)
    if GIFT_CARDS_ASKED not in order.saga.done_steps or ports.gift_cards is None:
        return
    for ln in order.lines:
        if not ln.gift_card:
            continue
        card_id = ln.gift_card_id
        if not card_id:
            try:
                card = await ports.gift_cards.issue(
                    f"{order.id}/gift_card/{ln.id}",
                    ln.unit_price,
                    "",
                    order.id,
                    ln.id,
                    order.customer_id,
                    order.location_id,
                )
            except DomainError as exc:
                if exc.kind in TRANSIENT:
                    raise
                # A pre-printed card's request cannot be repeated without its code: asked
                # with it first, this one is another body to the payment service, which says
                # so (a card was made, its answer lost). A line has one card there: one it
                # has already, issued for another amount or reason (under another request
                # id), refuses the ask `gift_card_line_issued`. Refused otherwise, none was
                # made. Found by its order line, it is deactivated: it must not stay live
                # holding what the cancel refunds.
                found = None
                if exc.code in LINE_HAS_A_CARD:
                    found = await ports.gift_cards.card_of_line(order.id, ln.id)
                if found is None:
                    log.info("gift card line %s: nothing to deactivate (%s)", ln.id, exc.code)
                    continue
                card = IssuedCard(found, "", "")
            card_id = card.gift_card_id
        await _quietly(
            ports.gift_cards.deactivate(
                f"{order.id}/gift_card_deactivate/{ln.id}", card_id, "order_cancelled"
            )
        )


async def finish_confirmation(
    new_uow: NewUow,
    ports: CheckoutPorts,
    order: Order,
    policy: Policy,
    settings: OrderSettings | None = None,
    codes: dict[str, str] | None = None,
    shown: dict[str, str] | None = None,
) -> Order:
    """Confirm a paid order: commit its holds, capture what is captured now, mark it
    confirmed. Any step that cannot be done (a hold expired) compensates the whole order.
    A register sale (in store, captured at once) asks nothing more here: no hop is added."""
    pickups = any(f.type is FulfillmentType.PICKUP for f in order.fulfillments)
    # Points whose hold never answered (the customer service was down when the order was
    # made) are held before the order is confirmed with their discount.
    order = await hold_points(new_uow, ports, order, policy)
    try:
        if not order.saga.captures and any(
            t.state in (TenderState.AUTHORIZED, TenderState.CAPTURED) for t in order.saga.tenders
        ):
            settings = settings or await settings_of(new_uow, policy)
            first_expiry = None
            if pickups and not settings.capture_pickup_at_order:
                expiries = [e for e in map(_expiry, await ports.payments.of_order(order.id)) if e]
                first_expiry = min(expiries) if expiries else None
            chosen = settings

            def plan(o: Order) -> None:
                if not o.saga.captures:
                    o.attribute_taken()  # first: what was captured when taken is theirs
                    o.plan_captures(captures_now(o, chosen, first_expiry))

            order, _ = await change(new_uow, order.id, plan)
        for f in order.fulfillments:
            if f.hold is HoldState.HELD and ports.stock is not None:
                await ports.stock.commit(f"{order.id}/commit/{f.id}", f.reservation_id)
        await boundary(policy, "holds_committed")
        order = await run_captures(new_uow, ports, order, policy)
        order = await issue_gift_cards(
            new_uow, ports, order, codes or {}, shown if shown is not None else {}
        )
        if order.saga.points_state is PointsState.HELD and ports.loyalty is not None:
            # Redeemed before the confirmation commits: a crash between leaves the order for
            # the resumer, whose finalisation is answered as already done.
            await ports.loyalty.finalize(f"{order.id}/points/finalize", order.id)
    except DomainError as exc:
        if exc.kind in TRANSIENT:
            raise
        log.warning("order %s cannot be confirmed (%s): compensating", order.id, exc)
        # Its hold ran out before the confirmation came: the order expired, as the resumer
        # would have said a moment later (one cause, one reason).
        expired = exc.code == "reservation_expired"
        await cancel(
            new_uow, ports, order.id, policy, "expired" if expired else "confirmation_failed"
        )
        raise
    await boundary(policy, "before_confirm_commit")
    if pickups:
        settings = settings or await settings_of(new_uow, policy)
    expiry = timedelta(seconds=(settings or policy.defaults).pickup_expiry_seconds)

    def confirm(o: Order) -> None:
        at = now()
        if o.saga.points_state is PointsState.HELD:
            o.saga.points_state = PointsState.FINALIZED
        o.confirm(at)
        for f in o.fulfillments:
            if f.type is FulfillmentType.PICKUP and f.expires_at is None:
                f.expires_at = at + expiry

    order, _ = await change(new_uow, order.id, confirm)
    await boundary(policy, "after_confirm_commit")
    return await settle_coupons(new_uow, ports, order)


def _expiry(p: PaymentResult) -> datetime | None:
    raw = p.raw
    stamp = getattr(raw, "expires_at", None)
    if stamp is None or not raw.HasField("expires_at"):  # type: ignore[attr-defined]
        return None
    found: datetime = stamp.ToDatetime(tzinfo=UTC)
    return found


# --- compensating ----------------------------------------------------------------------------


async def cancel(
    new_uow: NewUow,
    ports: CheckoutPorts,
    order_id: str,
    policy: Policy,
    reason: str,
    driver_gone: bool = False,
    refusal: DomainError | None = None,
) -> Order:
    """Mark the order compensating (recorded first), then undo: void what is authorised,
    refund what is captured, release or restock what is held. A payment whose answer is not
    known yet stops here: the resumer comes back once the payment service has settled it.
    `driver_gone`: see `compensate`. `refusal`: what the caller is answered (an exchange's),
    recorded with the cancel for a retry of the request to answer (`Saga.refusal`)."""

    def begin(o: Order) -> None:
        o.begin_cancel(reason)
        if refusal is not None and o.saga.refusal is None:
            o.saga.refusal = DomainError(
                refusal.message,
                refusal.code,
                list(refusal.violations),
                dict(refusal.metadata),
                refusal.kind,
            )

    order, _ = await change(new_uow, order_id, begin)
    if order.status is OrderStatus.CANCELLED:
        return order
    return await compensate(new_uow, ports, order, policy, driver_gone=driver_gone)


async def compensate(
    new_uow: NewUow,
    ports: CheckoutPorts,
    order: Order,
    policy: Policy,
    finish: Withdraw | None = None,
    refunded: dict[str, int] | None = None,
    leave_pending: bool = False,
    driver_gone: bool = False,
) -> Order:
    """`finish`: what ends an order never announced, once all is given back, instead of its
    cancellation (see `_short`). `refunded`: filled with what this run refunded of each
    payment, for the caller's answer. `leave_pending`: a payment whose answer is not known yet
    (a tender being taken beside a cancel) does not stop this; the order is cancelled, and
    stays compensating until that payment is given back (by its tender's driver, which finds
    the order cancelled, or by the resumer once the payment is settled). `driver_gone`: run by
    the resumer, after the order was idle longer than any payment call may take: a tender with
    no payment never reached the payment service and is given up. Run by anyone else, such a
    tender's call may still be on its way (the payment made after this looked): the order is
    cancelled and stays compensating, for that tender's driver or the resumer to give the
    payment back."""
    await boundary(policy, "compensating")
    payments = await ports.payments.of_order(order.id) if order.saga.tenders else []
    if not leave_pending and any(p.status == "pending" for p in payments):
        raise Unavailable(
            "a payment's answer is not known yet; the order is cancelled once it is",
            "payment_pending",
        )
    beside = taken_beside(order, payments)
    for p in payments:
        if p.status == "authorized" or (p.status == "captured" and p.captured_amount < p.amount):
            await _quietly(ports.payments.void(f"{order.id}/void/{p.payment_id}", p.payment_id))
        left = p.captured_amount - p.refunded_amount
        if left > 0:
            with giving_back_at(order, tender=beside.get(p.payment_id)):
                left = await _refund_the_rest(ports, order, p.payment_id, left)
            if refunded is not None and left > 0:
                refunded[p.payment_id] = refunded.get(p.payment_id, 0) + left
    await deactivate_gift_cards(ports, order)
    restocked: set[str] = set()  # held here, yet committed by the confirmation: restocked
    if ports.stock is not None:
        for f in order.fulfillments:
            if f.hold is HoldState.SENT and order.saga.hold_ttl and order.stock_asked:
                # Asked, its answer never recorded: the same request again tells whether a
                # hold was made (its id, to release it) or not (the stock was short). Never
                # asked (the order stopped before its holds): asking would make one.
                try:
                    if f.sourced:
                        for a in await _ask_sourcing(ports, order, f):
                            await _quietly(
                                ports.stock.release(
                                    f"{order.id}/release/{order.hold_key(f)}/{a.reservation_id}",
                                    a.reservation_id,
                                )
                            )
                    else:
                        f.reservation_id = await _ask_hold(ports, order, f)
                        f.hold = HoldState.HELD
                except DomainError as exc:
                    if exc.kind in TRANSIENT:
                        raise
            if f.hold is HoldState.HELD:
                if await _release_hold(ports, order, f):
                    restocked.add(f.id)
            elif f.hold is HoldState.COMMITTED and f.status not in (
                FulfillmentStatus.PICKED_UP,
                FulfillmentStatus.SHIPPED,
                FulfillmentStatus.DELIVERED,
            ):
                await _restock(ports, order, f)
    if order.saga.coupons.to_release and ports.coupons is not None:
        # A promotion service that cannot answer stops the compensation here (it is retried):
        # a use is never kept for an order that was not sold, whether it was only reserved or
        # already redeemed at the confirmation (the same request id: an order is cancelled once).
        await _quietly(ports.coupons.release(f"{order.id}/coupons/release", order.id))
    points = await give_back_points(ports, order)
    if finish is not None and not payments:
        await finish(order)
        return order
    # A payment found after all (a charge whose answer was lost, then a refusal): the order
    # stays, cancelled, so the payment given back belongs to an order.
    after = await ports.payments.of_order(order.id) if order.saga.tenders else []

    def done(o: Order) -> None:
        o.saga.points_state = points
        sync_tenders(o, after, give_up_sent=driver_gone)
        for f in o.fulfillments:
            if f.hold is HoldState.COMMITTED or f.id in restocked:
                f.hold = HoldState.RESTOCKED
            elif f.hold in (HoldState.HELD, HoldState.SENT):
                f.hold = HoldState.RELEASED
            # Every capture of the order was refunded above, and an order is cancelled only
            # before any of its goods left: what each fulfilment captured went back.
            f.refunded = f.captured
        on_its_way = any(t.state is TenderState.SENT and not t.payment_id for t in o.saga.tenders)
        o.cancelled(
            now(),
            awaiting=on_its_way or any(p.status == "pending" for p in (*payments, *after)),
        )
        if ports.coupons is not None:
            o.coupons_settled()

    order, _ = await change(new_uow, order.id, done)
    return order


async def _refund_the_rest(ports: CheckoutPorts, order: Order, payment_id: str, left: int) -> int:
    """A cancel's refund of what a payment has left (`<order>/refund/<payment>`); what it gave
    back. Read before it is asked, it may meet a refund made outside the cancel since (through
    the refunds routes): the payment service refuses it (409 `amount_exceeds_refundable`, with
    what is `refundable`) and writes nothing under its id, so what is left is asked instead
    (nothing, when that refund took it all). The refusal was the cancel's answer, the order
    left being cancelled, and the resumer cancelled it all the same later."""
    for attempt in range(REPLANS):
        try:
            await ports.payments.refund(
                f"{order.id}/refund/{payment_id}", payment_id, Money(left, order.currency)
            )
            return left
        except DomainError as exc:
            refundable = exc.metadata.get("refundable", "")
            if exc.code != "amount_exceeds_refundable" or not refundable.isdigit():
                raise
            if attempt == REPLANS - 1:
                raise  # still taken meanwhile: the cancel's retry (or the resumer) goes on
            left = int(refundable)
            if left == 0:
                return 0
    return 0


async def _release_hold(ports: CheckoutPorts, order: Order, f: Fulfillment) -> bool:
    """Release a fulfilment's hold; True when it was committed instead, and its units were
    restocked. The order records its holds committed only with the confirmation, so one that
    failed after committing them (a capture, a gift card or the points refused) still reads
    them as held: inventory's `reservation_committed` tells, and the units sold come back
    (`<order>/restock/<fulfilment>`: asked again by a compensation resumed, never twice)."""
    assert ports.stock is not None
    try:
        await ports.stock.release(f"{order.id}/release/{order.hold_key(f)}", f.reservation_id)
    except DomainError as exc:
        if exc.code == "reservation_committed":
            await _restock(ports, order, f)
            return True
        if not _already_final(exc):
            raise
    return False


async def _restock(ports: CheckoutPorts, order: Order, f: Fulfillment) -> None:
    assert ports.stock is not None
    await ports.stock.restock(
        f"{order.id}/restock/{f.id}",
        f.location_id,
        [(ln.sku, ln.quantity) for ln in order.lines_of(f)],
        order.id,
    )


async def _quietly(call: object) -> None:
    """A void or release of something already final is done, not an error."""
    try:
        await call  # type: ignore[misc]
    except DomainError as exc:
        if not _already_final(exc):
            raise


def _already_final(exc: DomainError) -> bool:
    # By kind, not class: another service's refusal arrives as a plain DomainError
    # (pos_kit.grpc_client.RemoteError.to_domain keeps the kind and the code).
    if exc.kind is ErrorKind.CONFLICT:
        log.info("compensation step already final: %s", exc.code)
        return True
    if exc.kind is ErrorKind.NOT_FOUND:
        log.info("compensation step: nothing to undo")
        return True
    return False


# --- the resumer's pass over one order -------------------------------------------------------


async def resume(new_uow: NewUow, ports: CheckoutPorts, order_id: str, policy: Policy) -> Order:
    """Take an order whose driver is gone (or which has something due) one step further: finish
    what can be finished, compensate what was abandoned."""
    order = await load(new_uow, order_id)
    if order.saga.state is SagaState.COMPENSATING:
        # A draft's submit refused for stock, given back half way: finished, a draft again.
        unsubmit = order.may_be_draft_again and order.saga.cancel_reason == "insufficient_stock"
        finish = back_to_draft(new_uow) if unsubmit else None
        return await compensate(new_uow, ports, order, policy, finish, driver_gone=True)
    if order.status is OrderStatus.PENDING_PAYMENT and order.may_be_draft_again:
        # A draft's submit whose driver is gone before its stock was held (its caller heard a
        # 5xx, or nothing): what it took is given back, and it is a draft again. Gone later,
        # coupons or points asked for, it is abandoned as any order (below).
        order, _ = await change(new_uow, order.id, lambda o: o.begin_cancel("abandoned"))
        return await compensate(new_uow, ports, order, policy, back_to_draft(new_uow))
    if order.saga.state is SagaState.DONE:
        order = await settle_coupons(new_uow, ports, order)
        order = await record_taken(new_uow, ports, order)
        if order.status is OrderStatus.CONFIRMED:
            return await expire_pickups(new_uow, ports, order, policy)
        return order
    if order.status is OrderStatus.PENDING_PAYMENT:
        payments = await ports.payments.of_order(order.id) if order.saga.tenders else []
        if tenders_in_line(order, payments):
            # Nothing learnt: the order is not changed (no new version, nothing for a change
            # feed), only marked as looked at, so the resumer comes back after its window;
            # soon, while a card's answer is awaited (the payment service's reconciler settles
            # it on its own schedule, and the sale should finish as soon as it has).
            waiting = any(t.state is TenderState.PENDING for t in order.saga.tenders)
            await touch(
                new_uow,
                order.id,
                max(policy.abandon_after - PENDING_REVISIT, timedelta(0))
                if waiting
                else timedelta(0),
            )
        else:
            order, _ = await change(new_uow, order.id, lambda o: _tenders_learnt(o, payments))
        if any(t.state is TenderState.PENDING for t in order.saga.tenders):
            return order  # the payment reconciler settles it first
        if any(f.hold is HoldState.SENT for f in order.fulfillments):
            return await cancel(new_uow, ports, order.id, policy, "abandoned", True)
        if order.saga.confirm_requested:
            if order.balance_due == 0 and gift_cards_due(order):
                # Paid, its gift cards not activated yet: only the run that activates a card
                # learns its code, and it shows it to whoever it answers. This one answers
                # nobody: activated here, a card would be paid for and its code seen by no one.
                # The till's retry (the same request) activates them and shows the codes; a
                # sale nobody comes back for by its expiry is cancelled and refunded. (It was
                # touched above: the resumer looks again after its window.)
                if order.expires_at is not None and order.expires_at <= now():
                    return await cancel(new_uow, ports, order.id, policy, "abandoned", True)
                return order
            if order.balance_due == 0:
                return await finish_confirmation(new_uow, ports, order, policy)
            # A tender failed with a payment was declined, unless the processor never had it
            # (the payment service's crash mid-charge); one without never reached the payment
            # service.
            unreached = {p.payment_id for p in payments if p.decline_code == PROCESSOR_UNREACHED}
            failed = [
                t for t in order.saga.tenders if t.state is TenderState.FAILED and t.payment_id
            ]
            if any(t.payment_id not in unreached for t in failed):
                reason = "payment_declined"
            else:
                reason = "payment_unavailable" if failed else "abandoned"
            return await cancel(new_uow, ports, order.id, policy, reason, True)
        if order.expires_at is not None and order.expires_at <= now():
            return await cancel(new_uow, ports, order.id, policy, "expired", True)
        return order
    if order.status is OrderStatus.CONFIRMED:  # a fulfilment's capture or cancel under way
        order = await run_captures(new_uow, ports, order, policy)
        for fulfillment_id in list(order.saga.cancelling):
            order = await cancel_fulfillment(new_uow, ports, order, fulfillment_id, policy)
        if order.status is not OrderStatus.CONFIRMED:
            return order  # its last live fulfilment took it with it
        order = await void_the_rest(new_uow, ports, order)
        if order.saga.state is SagaState.RUNNING and not planned(order):
            # Its driver is gone: what it captured stays the fulfilment's (the step asked again
            # captures nothing more), and the order may be cancelled again (refunded then).
            order, _ = await change(new_uow, order.id, _step_abandoned)
    return order


def _tenders_learnt(o: Order, payments: list[PaymentResult]) -> None:
    sync_tenders(o, payments, give_up_sent=True)
    o.tenders_learnt()


def _step_abandoned(o: Order) -> None:
    if o.status is OrderStatus.CONFIRMED and o.saga.state is SagaState.RUNNING and not planned(o):
        o.saga.stepping.clear()
        o.steps_settled()


async def expire_pickups(
    new_uow: NewUow, ports: CheckoutPorts, order: Order, policy: Policy
) -> Order:
    """A pickup not collected in time expires: it is ended exactly as a fulfilment cancelled on
    its own (`cancel_fulfillment`: its units back in stock, its captured share refunded per
    payment, its uncaptured share voided once nothing else of the order will capture, the same
    request ids, resumable after a crash), with the state `expired`. The order is cancelled
    whole only if nothing of it was handed over; otherwise it completes once the rest is done.
    (Sent to the whole-order cancel instead, an order with goods handed over was refused there
    for ever, and the pickup never expired.)"""
    at = now()
    probe = copy.deepcopy(order)  # nothing due: no write, no new version for a change feed
    if not any(probe.begin_pickup_expiry(f.id, at) for f in probe.fulfillments):
        return order

    def mark(o: Order) -> list[str]:
        return [f.id for f in o.fulfillments if o.begin_pickup_expiry(f.id, at)]

    order, marked = await change(new_uow, order.id, mark)
    for fulfillment_id in marked:
        if order.status is not OrderStatus.CONFIRMED:
            break  # its last live fulfilment took the order with it
        order = await cancel_fulfillment(new_uow, ports, order, fulfillment_id, policy)
    return order


def planned(order: Order) -> list[Capture]:
    return [c for c in order.saga.captures if not c.done]


# --- one fulfilment cancelled ------------------------------------------------------------------


async def cancel_fulfillment(
    new_uow: NewUow,
    ports: CheckoutPorts,
    order: Order,
    fulfillment_id: str,
    policy: Policy,
    compensated: dict[str, int] | None = None,
) -> Order:
    """Give back what a fulfilment marked `cancelling` took: its captured share refunded
    (`<order>/refund/<fulfilment>/<payment>`, planned first), its units back in stock (its hold
    released, `<order>/release/<fulfilment>`, or, committed at confirmation, restocked:
    `<order>/restock/<fulfilment>`; the ids a whole-order cancel and a pickup's expiry use, so
    the stock comes back once whichever ends it), and, once no live fulfilment will capture
    more, what is left of the authorisations voided (`void_the_rest`). Then, in one short
    transaction, the fulfilment `cancelled`. A share never captured is simply never captured.
    Driven by the request, its retry, or the resumer: each step is asked again under its id.
    `compensated`: filled with what a whole-order compensation that follows refunded."""
    f = order.fulfillment(fulfillment_id)
    if f is None or fulfillment_id not in order.saga.cancelling:
        if order.saga.state is SagaState.COMPENSATING:
            return await compensate(new_uow, ports, order, policy, refunded=compensated)
        return order
    if (
        # A share only authorised is planned too: a price adjustment of its units may have
        # given back money captured for other goods, which its cancel takes back.
        (f.captured > 0 or order.payment_ids)
        and fulfillment_id not in order.saga.cancel_adjusted
        and fulfillment_id not in order.saga.capture_cut
        and not any(r.fulfillment_id == f.id for r in order.saga.refunds)
    ):
        order = await _plan_cancel_refunds(new_uow, ports, order, fulfillment_id)
    order = await _take_back_adjusted(new_uow, ports, order, f.id)
    refunded: list[str] = []
    for request_id in [r.request_id for r in order.saga.refunds if r.fulfillment_id == f.id]:
        order, asked = await _refund_planned(new_uow, ports, order, f.id, request_id)
        if asked:
            refunded.append(request_id)
    if ports.stock is not None:
        if f.hold is HoldState.HELD:
            await _quietly(
                ports.stock.release(f"{order.id}/release/{order.hold_key(f)}", f.reservation_id)
            )
        elif f.hold is HoldState.COMMITTED:
            await _restock(ports, order, f)
    await boundary(policy, "fulfillment_given_back")
    # What nothing of the order will capture any more once this fulfilment is cancelled is
    # released before the cancel is recorded: recorded first, the saga was done, and a crash
    # before the void left the money authorised until its window ran out (the resumer does not
    # take a done saga further). Asked again under its id if this dies before the record.
    probe = copy.deepcopy(order)
    probe.fulfillment_cancelled(fulfillment_id, refunded, now())
    if probe.saga.state is not SagaState.COMPENSATING:
        await _void(ports, order, rest_to_void(probe))
    after = await ports.payments.of_order(order.id) if order.saga.tenders else []

    def cancelled(o: Order) -> None:
        sync_tenders(o, after, give_up_sent=False)
        o.fulfillment_cancelled(fulfillment_id, refunded, now())

    order, _ = await change(new_uow, order.id, cancelled)
    await boundary(policy, "fulfillment_cancelled")
    if order.saga.state is SagaState.COMPENSATING:
        # Its last live fulfilment, and nothing of the order was handed over: the order is
        # cancelled whole (what is left authorised voided, coupons and points given back).
        return await compensate(new_uow, ports, order, policy, refunded=compensated)
    return await void_the_rest(new_uow, ports, order)


async def _plan_cancel_refunds(
    new_uow: NewUow, ports: CheckoutPorts, order: Order, fulfillment_id: str
) -> Order:
    """Plan what a cancelled fulfilment gives back (`Order.plan_refunds`): from what each
    payment has left to refund, less what refunds naming its units (price adjustments) gave
    back of them already (`adjusted_in_fulfillment`), read under the order row's lock with the
    order's returns (which take it too), so the adjustment is counted once. What no payment's
    captured money can give back (goodwill took it) is taken off the live fulfilments' later
    captures in the same write (`saga.capture_cut`), so it is taken once."""
    payments = await ports.payments.of_order(order.id)
    left = {p.payment_id: p.captured_amount - p.refunded_amount for p in payments}
    refunded = any(p.refunded_amount for p in payments)
    refunds = [r for r in await ports.payments.refunds_of(order.id) if r.lines] if refunded else []
    async with new_uow() as uow:
        await uow.orders.get(order.id, lock=True)
        earlier = await uow.returns.of_order(order.id)

        def plan(o: Order) -> None:
            o.plan_refunds(
                fulfillment_id,
                left,
                adjusted_in_fulfillment(o, fulfillment_id, refunds, earlier),
            )

        order, _ = await change_in(uow, order.id, plan)
        await uow.commit()
    return order


async def _take_back_adjusted(
    new_uow: NewUow, ports: CheckoutPorts, order: Order, fulfillment_id: str
) -> Order:
    """Ask a fulfilment cancel's planned captures of what a price adjustment of its units gave
    back beyond what was captured for it (`Order._take_back_adjusted`), before its share's
    rest is voided. One the payment service refuses for good (the authorisation voided or past
    its window since) is dropped: nothing holds that money any more, and the cancel goes on."""
    made: list[str] = []
    refused: list[str] = []
    for c in order.saga.captures:
        if c.fulfillment_id != fulfillment_id or c.done:
            continue
        try:
            await ports.payments.capture(
                c.request_id, c.payment_id, Money(c.amount, order.currency)
            )
        except DomainError as exc:
            if exc.kind is not ErrorKind.CONFLICT:
                raise
            log.info("adjustment not taken back on a cancel: %s", exc.code)
            refused.append(c.request_id)
            continue
        made.append(c.request_id)
    if not made and not refused:
        return order
    taken = functools.partial(Order.adjusted_taken_back, request_ids=made, refused=refused)
    order, _ = await change(new_uow, order.id, taken)
    return order


async def _refund_planned(
    new_uow: NewUow, ports: CheckoutPorts, order: Order, fulfillment_id: str, request_id: str
) -> tuple[Order, bool]:
    """Ask a fulfilment cancel's planned refund (not done yet); True when it was asked and
    made. Planned from what the payment had left when the cancel began, it may meet a refund
    made outside the cancel since (through the refunds routes): the payment service refuses
    it (409 `amount_exceeds_refundable`, with what is `refundable`) and writes nothing under
    its id, so it is planned again at what is left and asked again; nothing left, it is
    dropped. Refused for good, the cancel never ended: the fulfilment stayed `cancelling`,
    neither fulfilled nor cancelled, and the order with it."""
    for attempt in range(REPLANS):
        r = next((x for x in order.saga.refunds if x.request_id == request_id), None)
        if r is None or r.done:
            return order, False
        try:
            with giving_back_at(order, fulfillment_id):
                await ports.payments.refund(
                    r.request_id, r.payment_id, Money(r.amount, order.currency)
                )
            return order, True
        except DomainError as exc:
            left = exc.metadata.get("refundable", "")
            if exc.code != "amount_exceeds_refundable" or not left.isdigit():
                raise
            if attempt == REPLANS - 1:
                raise  # still taken meanwhile: the cancel's retry (or the resumer) goes on
        replan = functools.partial(Order.replan_refund, request_id=request_id, refundable=int(left))
        order, _ = await change(new_uow, order.id, replan)
    return order, False


# Refunds made outside a cancel may keep taking what it planned to give back: it plans again
# this many times, then the caller retries.
REPLANS = 3


async def void_the_rest(new_uow: NewUow, ports: CheckoutPorts, order: Order) -> Order:
    """A fulfilment cancelled (or expired) leaves its share authorised and never captured.
    Once the live fulfilments have nothing more to capture, what is left of each authorisation
    is voided (`<order>/void/<payment>`: a void releases everything not captured, the same
    effect as the whole-order cancel's, under the same id), so no money is held for goods the
    customer will not get. Before then a void would take the others' shares with it: the
    payment service voids a payment's whole rest or nothing.

    What the void released (`paid` down) is a new version, announced (`updated`), whoever
    drives it (a fulfilment's step, a cancel, the resumer after a crash). Nothing new to the
    order (the void not made, the payment service away; or counted already, by the void's
    own `payment_voided` event heard first), nothing is written: no version, no event."""
    due = rest_to_void(order)
    if not due:
        return order
    await _void(ports, order, due)
    after = await ports.payments.of_order(order.id)
    try:
        order, _ = await change(new_uow, order.id, lambda o: _rest_voided(o, after))
    except _NothingNew:
        return await load(new_uow, order.id)
    return order


class _NothingNew(Exception):
    """A change found nothing to write: its transaction ends with nothing written."""


def _rest_voided(o: Order, payments: list[PaymentResult]) -> None:
    # Compared under the row's lock: a version read before may be behind the row.
    if tenders_in_line(o, payments, give_up_sent=False):
        raise _NothingNew
    sync_tenders(o, payments, give_up_sent=False)
    o.rest_voided()


def rest_to_void(order: Order) -> list[TenderRecord]:
    """The tenders whose uncaptured rest is to be released: none while anything of the order
    may still capture (a live fulfilment's share, a capture planned, a cancel under way)."""
    if order.status is not OrderStatus.CONFIRMED and order.status is not OrderStatus.COMPLETED:
        return []
    if order.still_to_capture() > 0 or planned(order) or order.saga.cancelling:
        return []
    return [
        t
        for t in order.saga.tenders
        if t.payment_id
        and t.state is TenderState.AUTHORIZED
        and t.amount - t.voided - t.captured > 0
    ]


async def _void(ports: CheckoutPorts, order: Order, tenders: list[TenderRecord]) -> None:
    for t in tenders:
        await _quietly(ports.payments.void(f"{order.id}/void/{t.payment_id}", t.payment_id))
