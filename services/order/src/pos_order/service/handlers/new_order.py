"""What every new order runs before it is saved: the request's start, pricing, the saved order."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from pos_kit.context import register_var, staff_var
from pos_kit.errors import Conflict, DomainError, ErrorKind, FieldViolation, Unavailable, raise_if
from pos_kit.money import Money
from pos_order.domain.coupons import CouponStep
from pos_order.domain.model import (
    FulfillmentRequest,
    LineRequest,
    Order,
    PointsState,
    SellingLocation,
    Tender,
    TenderRecord,
    below_cost,
    below_cost_refused,
    build_fulfillments,
    price_points,
    validate_total,
)
from pos_order.domain.pricing import Buyer, Manual
from pos_order.service import pricing, saga
from pos_order.service.handlers.customers import refuse_if_erased, resolve_customer
from pos_order.service.ports import (
    CartContext,
    CheckoutPorts,
    DiscountQuote,
    NewUow,
    OrderSettings,
    OrderUnitOfWork,
)
from pos_order.service.saga import Policy, now

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


async def start_request(
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


@dataclass(frozen=True)
class Priced:
    order: Order
    learnt: int | None  # the version of a customer id asked about, kept with the order
    location: SellingLocation | None  # priced live: kept in the read model with the order


async def priced_order(
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
            redeem_points, await ports.loyalty.point_value(), points_may_discount(cart)
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


async def coupon_cart(
    new_uow: NewUow, order: Order, coupon_codes: tuple[str, ...], order_manual: Manual | None
) -> CartContext:
    """What the order's coupons are reserved with: the cart as its pricing judged the offers
    (`pricing.price_cart`), which the promotion service prices again before it reserves a use.
    The customer's groups and the selling store's time zone (an offer's window or hours naming
    no zone are its wall-clock time) as the read model keeps them, which is where pricing read
    them from or wrote them to; the manual discount on the whole order as asked. Without them
    an offer for some groups, or one whose window holds in the store's zone but not in UTC,
    would be refused (`coupon_not_applicable`) for the cart it was just priced for."""
    async with new_uow().reading() as uow:
        who = await uow.customers.resolve(order.customer_id) if order.customer_id else None
        store, _ = await uow.prices.snapshot(order.location_id, [])
    return CartContext(
        order.location_id,
        order.channel,
        order.customer_id,
        coupon_codes,
        store.time_zone if store is not None else "",
        order_manual,
        who.buyer.groups if who is not None else (),
    )


async def reserve_or_drop(
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
        await discard(new_uow, order.id, request_id)
        raise


async def save_new(new_uow: NewUow, priced: Priced, announce: bool = True) -> Order:
    """The order and its saga, saved before any hold or payment."""
    order, learnt = priced.order, priced.learnt
    async with new_uow() as uow:
        if learnt is not None:
            await uow.customers.remember(order.customer_id, learnt)
        # Erased since the request read the customer as known: refused, never saved with
        # what the erasure would have blanked.
        await refuse_if_erased(uow, order.customer_id)
        if priced.location is not None:
            await uow.prices.remember_location(priced.location)
        order.created_at = order.updated_at = now()
        order.created(order.created_at, announce)
        if not await uow.orders.add(order):
            order.events.clear()
            found = await uow.orders.get(order.id)
            assert found is not None
            return found
        announce_change(uow, order)
        await uow.commit()
    return order


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
        if exc.kind is ErrorKind.INVALID and exc.violations:
            # The payment service checks a pre-printed code's form; its `code` is this line's.
            field = f"lines[{i}].gift_card.code"
            raise DomainError(
                exc.message,
                exc.code,
                [
                    FieldViolation(field if v.field == "code" else v.field, v.description)
                    for v in exc.violations
                ],
                exc.metadata,
                exc.kind,
            ) from None
        raise
    return True


def gift_card_codes(lines: list[LineRequest]) -> dict[str, str]:
    return {
        f"L{i + 1}": ln.gift_card.code
        for i, ln in enumerate(lines)
        if ln.gift_card is not None and ln.gift_card.code
    }


@asynccontextmanager
async def nothing_kept_if_refused(new_uow: NewUow, request_id: str) -> AsyncIterator[None]:
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


async def discard(new_uow: NewUow, order_id: str, request_id: str = "") -> None:
    """`request_id`: the request's first moment is forgotten with its order, so a retry of it
    makes an order of a new id, never one whose step ids the other services would answer
    with what they did for this one (holds since released)."""
    async with new_uow() as uow:
        await uow.orders.discard(order_id)
        if request_id:
            await uow.checkouts.forget(request_id)
        await uow.commit()


def tender_record(order: Order, tender: Tender, amount: int, asked_by: str) -> TenderRecord:
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


def announce_change(uow: OrderUnitOfWork, order: Order) -> None:
    """The order's events, written to the outbox with the unit of work, and forgotten."""
    for event in order.events:
        uow.publish(event)
    order.events.clear()


def points_may_discount(cart: pricing.PricedCart) -> Money:
    """What redeemed points may take off a cart, the sale's and its preview's alike: what the
    goods still cost after the promotions. A gift card sold as a line is stored value, never
    discounted (the preview once took it in, and priced points worth more than the goods
    beside a card that the sale refused)."""
    cards = sum(ln.line_total.amount for ln in cart.lines if ln.gift_card)
    return cart.totals.subtotal - cart.totals.discount - Money(cards, cart.location.currency)


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
