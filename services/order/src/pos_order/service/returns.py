"""Itemized returns against an order, in the kit's three steps.

1. `read`, in the claiming transaction: the order row locked, every earlier return of it read,
   the new return planned (units left, window, refund per line and per tender) and saved
   `pending`. Concurrent returns of the same lines queue on the order's row lock, and each sees
   the units the ones before it took: their sum can never pass what was sold, nor their refunds
   what was paid.
2. `call`, holding no connection: the refund to the tenders (one request per return,
   `<return id>/refund`, the amounts per tender planned in step 1) and the restock
   (`<return id>/restock/<line>` at the returning location), each idempotent on its side.
3. `record`: the return completed with its refunds, the order's tenders updated, and
   `order_returned` published with the return and the order, in one transaction (a return
   without a receipt: with no order).

A failure in step 2 leaves the return `pending` with its plan: a retry with the same request id
finds it (its id derives from the request and the time it was first claimed) and asks again
under the same ids. A refund the payment service refuses for good is not asked again: a plain
return that refunded nothing is dropped; any other is marked with the refusal and waits for a
person, who settles it (`SettleReturn`: paid another way, or refused).
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from typing import Generic, Protocol, TypeVar

from pos_kit.context import register_var, staff_var
from pos_kit.errors import (
    Conflict,
    DomainError,
    ErrorKind,
    FieldViolation,
    NotFound,
    Unavailable,
    raise_if,
    require,
)
from pos_kit.idempotency import Claim
from pos_kit.money import Money
from pos_kit.paging import PageRequest
from pos_order.domain.model import FulfillmentStatus as F
from pos_order.domain.model import Order, OrderStatus, SagaState
from pos_order.domain.returns import (
    RECEIPTLESS_LOOKBACK,
    OrderReturned,
    ReceiptlessRequest,
    Refunded,
    Return,
    ReturnRequest,
    ReturnStatus,
    Settlement,
    SettlementOutcome,
    SettleRequest,
    TenderRefund,
    UnitsRefund,
    at_most,
    attributed,
    cash_payments,
    credit_left,
    credit_refunded,
    exceeds_refundable,
    goods_returned,
    plan_receiptless,
    plan_return,
    refunded,
    refuse_cash_without_drawer,
    restocked_at_the_orders_store,
    settle,
    settleable,
    split_for_credit,
    spread_backwards,
    still_pending,
    tenders_left,
    the_last,
    units_refund_at_most,
    unpaid_by_payment,
    validate_receiptless,
    validate_request,
    validate_settlement,
    went_through,
    within_receiptless_limit,
)
from pos_order.service.ports import (
    GiftCards,
    NewUow,
    OrderSettings,
    OrderUnitOfWork,
    PaymentResult,
    ReturnFilters,
)
from pos_order.service.saga import Policy, now

R = TypeVar("R")
log = logging.getLogger(__name__)


class ReturnRepository(Protocol):
    async def lowest_prices(
        self, skus: list[str], currency: str, since: datetime
    ) -> dict[str, int]: ...
    async def lock_receiptless(self, customer_id: str) -> None:
        """Serialise, until the transaction ends, the returns without a receipt of one
        customer."""
        ...

    async def receiptless_credited(self, customer_id: str, currency: str, since: datetime) -> int:
        """The store credit of the customer's returns without a receipt (and of duplicates
        merged into them) since `since` in `currency`, pending ones included."""
        ...

    async def add(self, r: Return) -> None: ...
    async def save(self, r: Return) -> None: ...
    async def get(self, return_id: str) -> Return | None: ...
    async def discard(self, return_id: str) -> None: ...
    async def touch(self, return_id: str) -> None: ...
    async def of_order(self, order_id: str) -> list[Return]: ...
    async def page(self, f: ReturnFilters, page: PageRequest) -> list[Return]:
        """A page of the returns `f` lets through, by id (one more than the page, see
        `PageRequest`)."""
        ...

    async def refund_hold(self, order_id: str) -> tuple[bool, int]:
        """Whether a refund naming units holds the order now, and how many holds it had."""
        ...

    async def hold_for_refund(self, order_id: str, request_id: str, seconds: int) -> bool:
        """Held for `request_id` (again, for its retry) unless another holds it now."""
        ...

    async def release_refund_hold(self, order_id: str, request_id: str) -> None: ...


class ReturnsUnitOfWork(OrderUnitOfWork, Protocol):
    @property
    def returns(self) -> ReturnRepository: ...


@dataclass(frozen=True)
class RefundAsk:
    payment_id: str
    amount: Money


class RefundPayments(Protocol):
    async def refund_order(
        self,
        request_id: str,
        order_id: str,
        amounts: list[RefundAsk],
        reason: str,
        lines: list[tuple[str, int]],
        exchange_order_id: str = "",
    ) -> list[Refunded]:
        """One refund per tender, each to the tender it was taken on. `exchange_order_id`:
        drawn on the credit set aside for that exchange's new order."""
        ...

    async def credit_exchange(
        self, request_id: str, order_id: str, exchange_order_id: str, amounts: list[RefundAsk]
    ) -> None:
        """Set the money of an exchange's credit aside on the original order's payments: no
        refund of them gives it back any more, but one naming the new order."""
        ...

    async def release_exchange_credit(self, request_id: str, exchange_order_id: str) -> None:
        """The exchange was not made: the money is refundable again (a credit never set aside
        can no longer be)."""
        ...

    async def refund_status(self, refund_id: str) -> str:
        """A refund's status as the payment service has it now: pending, succeeded, failed."""
        ...

    async def open_shift_at(self, register_id: str) -> str:
        """The id of the shift open at the register now, or "" when none is."""
        ...

    async def refunds_of(self, order_id: str) -> list[UnitsRefund]:
        """Every refund of the order's payments, with the units each named."""
        ...

    async def of_order(self, order_id: str) -> list[PaymentResult]:
        """The order's payments as the payment service has them now ([] for none)."""
        ...

    async def record_out_of_band(
        self,
        request_id: str,
        order_id: str,
        return_id: str,
        amounts: list[RefundAsk],
        tender: str,
        reference: str,
        whole: bool = False,
    ) -> None:
        """A return's refund the processor refused was paid another way (`tender`: cash or
        external): set aside on the order's payments, so no refund gives it back again; cash
        at a register with an open shift is that drawer's pay-out. Once per return. `whole`:
        refused (409 `amount_exceeds_refundable`, nothing written) when a payment has less
        left than asked."""
        ...


class ReturnStock(Protocol):
    async def return_to_stock(
        self,
        request_id: str,
        location_id: str,
        sku: str,
        quantity: int,
        reference: str,
        note: str,
    ) -> None:
        """Returned units back on the shelf; `reference` (the return's id) is the ledger
        entry's reference, `note` the words beside it."""
        ...


@dataclass(frozen=True)
class ReturnPorts:
    payments: RefundPayments
    stock: ReturnStock
    gift_cards: GiftCards | None = None


class CreateReturn(Generic[R]):
    def __init__(
        self,
        req: ReturnRequest,
        ports: ReturnPorts,
        new_uow: Callable[[], ReturnsUnitOfWork],
        policy: Policy,
        answer: Callable[[Return, object], R],
    ) -> None:
        validate_request(req)  # bad input is refused before anything is claimed
        self.req = req
        # The balances of the gift cards returned, read before the claim (see `balances`).
        self.gift_card_balances: dict[str, int] = {}
        # The order's refunds that named units, and its payments' refunds in all, read before
        # the claim too.
        self.refunds: list[UnitsRefund] = []
        self.refunded: dict[str, int] = {}
        # How many holds of refunds naming units the order had when those were read.
        self.holds = 0
        # The shift open at the asking register, read before the claim when the order took
        # cash or was paid by an exchange credit (see `refuse_cash_without_drawer`).
        self.shift_id = ""
        # The order's store and the fields of the lines restocked there (naming no store of
        # their own), read before the claim: the caller refuses a closed one (see `balances`).
        self.order_store = ""
        self.restocked_at_order_store: list[str] = []
        self.ports = ports
        self.new_uow = new_uow
        self.policy = policy
        self.answer = answer

    async def balances(self) -> None:
        """Before the claim, no connection held: the balance of each gift card line asked to be
        returned. A card spent between this read and its deactivation is the one race left
        (milliseconds); the deactivation's own answer is logged."""
        async with self.new_uow().reading() as uow:
            order = await uow.orders.get(self.req.order_id)
            self.holds = await refunds_settled(uow, self.req.order_id)
        if order is None:
            return  # the claim's read answers the 404
        self.order_store = order.location_id
        self.restocked_at_order_store = restocked_at_the_orders_store(order, self.req.lines)
        self.gift_card_balances = await gift_card_balances(
            self.ports, order, {ln.line_id for ln in self.req.lines}
        )
        self.refunds = await refunds_naming_units(self.ports, order)
        if self.req.register_id and (cash_payments(order) or order.saga.exchange_of):
            self.shift_id = await self.ports.payments.open_shift_at(self.req.register_id)
        if order.payment_ids:
            # What its payments refunded so far, as the payment service says now: a refund
            # made through the payments API may not have reached the order by its event yet.
            self.refunded = {
                p.payment_id: p.refunded_amount
                for p in await self.ports.payments.of_order(order.id)
            }

    async def read(self, uow: ReturnsUnitOfWork) -> Return:
        req = self.req
        order = await uow.orders.get(req.order_id, lock=True)
        if order is None:
            raise NotFound("order", req.order_id)
        start = await uow.checkouts.start(req.request_id, req.fingerprint)
        return_id = start.claim(uow.merchant_id, req.request_id).derived_id("ret")
        found = await uow.returns.get(return_id)
        if found is not None:  # a retry of a return whose refund or restock did not finish
            return found
        # Nothing is refunded of a payment not recorded yet (cash taken while the payment
        # service was away): a 409 to retry once the resumer has recorded it.
        order.refuse_while_unrecorded("nothing can be returned yet")
        await no_refund_since(uow, order.id, self.holds)
        earlier = await uow.returns.of_order(order.id)
        for payment_id, in_all in self.refunded.items():
            order.refunded_in_all(payment_id, in_all)
        settings: OrderSettings = await uow.settings.get() or self.policy.defaults
        own = tenders_left(order, earlier)
        credit = order.saga.exchange_of and not req.tender_amounts
        ret = plan_return(
            order,
            earlier,
            req,
            return_id,
            now(),
            settings.return_window_days,
            own,
            self.gift_card_balances,
            spread=not credit,
            adjusted=attributed(order, self.refunds, earlier),
        )
        if credit:
            await _plan_with_credit(uow, order, earlier, own, ret)
        to_cash = refuse_cash_without_drawer(
            ret, req, await cash_behind(uow, order), req.register_id, self.shift_id
        )
        ret.register_id, ret.staff_id = req.register_id, req.staff_id
        ret.shift_id = self.shift_id if to_cash else ""
        await uow.returns.add(ret)
        return ret

    async def call(self, claim: Claim, ret: Return) -> Return:
        try:
            return await move_money_and_stock(self.ports, ret)
        except RefundRefused as exc:
            raise await give_up(self.new_uow, ret, exc) from None

    async def record(self, uow: ReturnsUnitOfWork, done: Return) -> R:
        ret, order = await complete(uow, done)
        return self.answer(ret, order)


# The payment service's refusals of a return's refund that no retry changes: the tenders have
# less left than planned (refunded outside a return, say), or the processor refused it, or
# cash would come out of a register's drawer whose shift counts another currency. It refuses
# before any refund is made.
REFUSED_FOR_GOOD = frozenset(
    {
        "amount_exceeds_refundable",
        "not_captured",
        "refund_failed",
        "refund_partly_failed",
        "exchange_credit_released",
        "shift_currency_mismatch",
    }
)


# How long a refund naming units holds its order at most (its caller may die holding it).
REFUND_HOLD_SECONDS = 60


def _refund_in_progress(order_id: str) -> Conflict:
    return Conflict(
        "a refund naming units of this order is being made: retry in a moment",
        "refund_in_progress",
        {"order_id": order_id},
    )


async def refunds_settled(uow: ReturnsUnitOfWork, order_id: str) -> int:
    """Before a return reads the order's refunds: none naming units is being made (a 409
    `refund_in_progress`, retryable), and how many holds the order has had so far."""
    live, generation = await uow.returns.refund_hold(order_id)
    if live:
        raise _refund_in_progress(order_id)
    return generation


async def no_refund_since(uow: ReturnsUnitOfWork, order_id: str, generation: int) -> None:
    """At the claim, under the order's lock: no refund naming units was made or begun since the
    refunds were read, or the return would count units that refund paid for."""
    live, now_at = await uow.returns.refund_hold(order_id)
    if live or now_at != generation:
        raise _refund_in_progress(order_id)


async def hold_for_refund(
    uow: ReturnsUnitOfWork, order_id: str, request_id: str, before_confirmation: bool = False
) -> bool:
    """A refund naming units holds the order while it checks them and is made: no return is
    claimed meanwhile, and no other such refund (each is then a 409 `refund_in_progress`).
    `before_confirmation`: a refund or void of one of its payments, held only while the order
    is not confirmed, so its confirmation (which reads the payments and the holds' count
    first, `ConfirmOrder`) never counts money given back meanwhile. An order whose
    confirmation is under way is not held (409 `confirmation_in_progress`), for a refund
    naming units too: held then, it was made, and the confirmation, which had read the
    payments before it, recorded the order paid in full. False: not held."""
    order = await uow.orders.get(order_id, lock=True)
    if order is None:
        raise NotFound("order", order_id)
    unconfirmed = order.status in (OrderStatus.DRAFT, OrderStatus.PENDING_PAYMENT)
    if unconfirmed and order.saga.confirm_requested and order.saga.state is SagaState.RUNNING:
        raise Conflict(
            "the order's confirmation is under way: retry in a moment",
            "confirmation_in_progress",
            {"order_id": order_id},
        )
    if not unconfirmed and order.saga.stepping:
        raise Conflict(
            "a fulfilment of this order is being handed over or shipped: retry in a moment",
            "fulfillment_in_progress",
            {"order_id": order_id},
        )
    if before_confirmation and not unconfirmed and not _goods_to_leave(order):
        return False
    if not await uow.returns.hold_for_refund(order_id, request_id, REFUND_HOLD_SECONDS):
        raise _refund_in_progress(order_id)
    return True


async def check_refund_units(
    new_uow: Callable[[], ReturnsUnitOfWork],
    ports: ReturnPorts,
    order_id: str,
    named: list[tuple[str, int]],
    amount: int,
) -> int:
    """A refund naming units (a price adjustment) gives back at most what they were paid
    (`units_refund_at_most`): more is refused, an INVALID_ARGUMENT naming `amount`, before
    anything is refunded. Asked while the order is held for the refund (`hold_for_refund`), so
    no return or other such refund of it is made between this and the refund. The order and
    its returns are read in short transactions, the refunds with no connection held. Before,
    a refund naming one unit took any amount the payments had left: the whole sale back for a
    unit, its goods kept. What the units may take at most is answered."""
    async with new_uow().reading() as uow:
        order = await uow.orders.get(order_id)
    if order is None:
        raise NotFound("order", order_id)
    refunds = await refunds_naming_units(ports, order)
    async with new_uow().reading() as uow:
        earlier = await uow.returns.of_order(order_id)
    most = units_refund_at_most(order, earlier, refunds, named)
    raise_if(
        require(
            amount <= most,
            "amount",
            f"must be at most {most}: what the units named were paid (after their discounts, "
            "with their tax) less what their returns and earlier refunds naming them gave "
            "back; to give back more, refund without lines",
        )
    )
    return most


def _goods_to_leave(order: Order) -> bool:
    """A confirmed order with a pickup or shipment not handed over or shipped yet: a refund
    or void of its payments holds it too, so that the hand-over, which reads the payments
    before it marks the fulfilment, sees it (`UpdateFulfillment`) and no goods leave with
    their money given back."""
    return order.status is OrderStatus.CONFIRMED and any(
        f.status in (F.RESERVED, F.READY_FOR_PICKUP, F.PICKED) for f in order.fulfillments
    )


# The payment service's refusal to deactivate a card holding other than the line's value.
CARD_CHANGED = "gift_card_balance_changed"


class RefundRefused(Conflict):
    """A return's refund refused for good, with the refunds made before the refusal (some may
    have gone through: those are the payment service's record)."""

    def __init__(
        self,
        message: str,
        code: str,
        metadata: dict[str, str],
        made: list[Refunded],
        invalid: DomainError | None = None,
        untouched: bool = False,
    ) -> None:
        super().__init__(message, code, dict(metadata))
        self.made = made
        # Refused before anything was done (no card deactivated, nothing refunded).
        self.untouched = untouched
        # The payment service found the refund request itself invalid: answered as it is
        # (a 400 naming the field) when the return is dropped.
        self.invalid = invalid


def awaiting_person(ret: Return) -> Conflict:
    """What a request about a return marked refused answers: the refusal again, and the return
    a person settles."""
    return Conflict(
        f"the refund of return {ret.id} was refused for good ({ret.refusal}); the return waits "
        "for a person to settle it (paid another way, or refused)",
        ret.refusal,
        {"return_id": ret.id},
    )


async def give_up(
    new_uow: Callable[[], ReturnsUnitOfWork], ret: Return, exc: RefundRefused
) -> DomainError:
    """A return whose refund was refused for good is not asked again. A plain return that
    refunded nothing is dropped: nothing was refunded or restocked, and left pending it would
    hold its units (no later return could take them). Any other (an exchange's, whose new
    order is sold; one that deactivated a gift card line first; one some of whose refunds went
    through) is marked with the refusal and the refunds made: it waits for a person
    (`SettleReturn`), and neither a retry nor the resumer asks the refund again. The error to
    answer with."""
    went = any(r.status != "failed" for r in exc.made)
    cards = any(ln.gift_card_id for ln in ret.lines) and not exc.untouched
    if not ret.exchange_order_id and not went and not cards:
        async with new_uow() as uow:
            await uow.returns.discard(ret.id)
            await uow.commit()
        log.warning("return %s dropped: its refund was refused (%s)", ret.id, exc.code)
        if exc.code == "amount_exceeds_refundable" and exc.metadata.get("refundable", "").isdigit():
            # As the order answers when it noticed first: naming the returned lines.
            return exceeds_refundable(ret.amount, int(exc.metadata["refundable"]))
        return exc.invalid or exc
    async with new_uow() as uow:
        found = await uow.returns.get(ret.id)
        if found is not None and found.status is ReturnStatus.PENDING and not found.refusal:
            found.refusal, found.refunds = exc.code, exc.made
            await uow.returns.save(found)
            await uow.commit()
    log.warning("return %s waits for a person: its refund was refused (%s)", ret.id, exc.code)
    return Conflict(
        exc.message + "; the return waits for a person to settle it",
        exc.code,
        {**exc.metadata, "return_id": ret.id},
    )


async def refunds_naming_units(ports: ReturnPorts, order: Order) -> list[UnitsRefund]:
    """The order's refunds that named units (read with no connection held, before the claim):
    what they gave back is taken off a return of those units (`attributed`)."""
    if not order.payment_ids:
        return []
    return [f for f in await ports.payments.refunds_of(order.id) if f.lines]


async def gift_card_balances(ports: ReturnPorts, order: Order, asked: set[str]) -> dict[str, int]:
    """The balance of each gift card line of `order` among the lines `asked`, read with no
    connection held, before the claim."""
    out: dict[str, int] = {}
    if ports.gift_cards is None:
        return out
    for line in order.lines:
        if line.gift_card and line.gift_card_id and line.id in asked:
            found = await ports.gift_cards.balance(line.gift_card_id)
            if found is not None:
                out[line.gift_card_id] = found
    return out


async def _plan_with_credit(
    uow: ReturnsUnitOfWork,
    order: Order,
    earlier: list[Return],
    own: list[tuple[str, int]],
    ret: Return,
) -> None:
    """A return of an exchange's new order: refunded from its own payments, then from the
    original order's (the exchange credit, locked after the new order: always in that order):
    drawn on what the credit set aside on them, which no other refund of them can take."""
    credit = order.saga.credit - credit_refunded(earlier)
    if the_last(order, earlier, ret.lines):
        # The last units back get what the payments and the credit still hold (see
        # plan_return): a refund outside the returns gave the rest back already.
        ret.amount = at_most(ret.lines, max(0, sum(x for _, x in own)) + max(0, credit))
    from_own, rest = split_for_credit(ret.amount, own, credit)
    ret.tender_amounts = spread_backwards(from_own, own) if from_own else []
    if rest <= 0:
        return
    source = await uow.orders.get(order.saga.exchange_of, lock=True)
    if source is None:
        raise NotFound("order", order.saga.exchange_of)
    ret.credit_order_id = source.id
    backing = await credit_backing(uow, order, earlier)
    if backing is not None:
        ret.credit_amounts = spread_backwards(rest, backing)
        ret.credit_set_aside = True
        return
    # An exchange made before its credit was set aside: from what the payments have left.
    # What the original order's payments have left, less what pending returns of either
    # order plan to take back from them.
    planned = [
        replace(r, tender_amounts=r.credit_amounts)
        for r in earlier
        if r.status is ReturnStatus.PENDING and r.credit_amounts
    ]
    ret.credit_amounts = spread_backwards(
        rest, tenders_left(source, await uow.returns.of_order(source.id) + planned)
    )


async def cash_behind(uow: ReturnsUnitOfWork, order: Order) -> set[str]:
    """The cash payments a refund of the order may reach: its own, and, for an exchange's new
    order, those of the orders its credit came from (its original, and that one's original
    when it was itself an exchange's new order), which the credit's part goes back to."""
    cash = cash_payments(order)
    seen = {order.id}
    origin = order.saga.exchange_of
    while origin and origin not in seen:
        seen.add(origin)
        found = await uow.orders.get(origin)
        if found is None:
            break
        cash |= cash_payments(found)
        origin = found.saga.exchange_of
    return cash


async def credit_backing(
    uow: ReturnsUnitOfWork, order: Order, earlier: list[Return]
) -> list[tuple[str, int]] | None:
    """An exchange's new order: what its credit has left on each payment backing it, after
    what its returns (`earlier`, pending ones too) took back or carried on to exchanges of
    their own. The payments are the original order's, or, for the part the exchange carried
    from the original's own credit, those of the order that credit came from. None when the
    exchange was made before its credit was set aside."""
    if not order.saga.exchange_of:
        return None
    exchanged = await uow.returns.get(order.saga.exchange_return_id)
    if exchanged is None or not (exchanged.credit_from or exchanged.credit_carried):
        return None
    return credit_left([*exchanged.credit_from, *exchanged.credit_carried], earlier)


@dataclass(frozen=True)
class Credited:
    ret: Return
    code: str  # shown once: empty when the payment service replays the card


class CreateReceiptlessReturn(Generic[R]):
    """Units back with no receipt: store credit on a gift card issued to the customer
    (`<return>/store_credit`, reason `store_credit`), never a card refund, at the lowest price
    each SKU sold for in the last 30 days in this service's own orders; restocked as asked
    (`<return>/restock/<sku>`). The store's currency is the caller's to give (its location,
    checked before anything is claimed). Under the merchant's `receiptless_limit`, a return
    that would take the customer past it is refused in the claim, before anything is done."""

    def __init__(
        self,
        req: ReceiptlessRequest,
        currency: str,
        ports: ReturnPorts,
        new_uow: Callable[[], ReturnsUnitOfWork],
        policy: Policy,
        answer: Callable[[Return, str], R],
    ) -> None:
        validate_receiptless(req)
        self.req = req
        self.currency = currency
        self.ports = ports
        self.policy = policy
        self.new_uow = new_uow
        self.answer = answer
        self.shown = ""  # the card's code, when this run issued it: never stored

    async def read(self, uow: ReturnsUnitOfWork) -> Return:
        req = self.req
        start = await uow.checkouts.start(req.request_id, req.fingerprint)
        return_id = start.claim(uow.merchant_id, req.request_id).derived_id("ret")
        found = await uow.returns.get(return_id)
        if found is not None:
            return found
        when = now()
        lowest = await uow.returns.lowest_prices(
            sorted({ln.sku for ln in req.lines}), self.currency, when - RECEIPTLESS_LOOKBACK
        )
        ret = plan_receiptless(req, return_id, self.currency, lowest, when)
        settings: OrderSettings = await uow.settings.get() or self.policy.defaults
        limit = settings.receiptless_limit
        if limit is not None:
            # Under the customer's lock until this claim commits with the return saved: a
            # concurrent one for the same customer waits here and then counts this one.
            await uow.returns.lock_receiptless(req.customer_id)
            credited = await uow.returns.receiptless_credited(
                req.customer_id, self.currency, when - timedelta(days=limit.days)
            )
            within_receiptless_limit(limit, credited, ret)
        await uow.returns.add(ret)
        return ret

    async def call(self, claim: Claim, ret: Return) -> Credited:
        credited = await credit_or_drop(self.new_uow, self.ports, ret)
        self.shown = credited.code
        return credited

    async def record(self, uow: ReturnsUnitOfWork, done: Credited) -> R:
        ret = await complete_credit(uow, done)
        return self.answer(ret, ret.store_credit_gift_card_id)


# The steps after the plan, shared by the requests and the resumer: each call idempotent by a
# request id derived from the return, each record a no-op once the return is completed.


def _asks(amounts: list[TenderRefund], currency: str) -> list[RefundAsk]:
    return [RefundAsk(t.payment_id, Money(t.amount, currency)) for t in amounts]


async def set_credit_aside(ports: ReturnPorts, ret: Return) -> None:
    """An exchange's return: the money of its credit set aside on the original order's
    payments (`<return>/credit`), before the new order is sold and again (replayed) before
    the return completes, so no refund of the original gives it back a second time."""
    if ret.credit_from or ret.credit_carried:
        await ports.payments.credit_exchange(
            f"{ret.id}/credit",
            ret.order_id,
            ret.exchange_order_id,
            _asks([*ret.credit_from, *ret.credit_carried], ret.currency),
        )


async def release_credit(ports: ReturnPorts, ret: Return) -> None:
    """An exchange not made (its new order cancelled): its credit's money is refundable again
    (`<return>/credit/release`; one never set aside cannot be any more)."""
    if ret.credit_from or ret.credit_carried:
        await ports.payments.release_exchange_credit(
            f"{ret.id}/credit/release", ret.exchange_order_id
        )


async def move_money_and_stock(ports: ReturnPorts, ret: Return) -> Return:
    """A return against an order: its gift cards deactivated, then the refund to the tenders
    as planned, then the restock at the returning store. A refusal for good is a
    `RefundRefused` with the refunds made before it; a return marked refused asks nothing."""
    if ret.status is ReturnStatus.COMPLETED:
        return ret
    if ret.refusal:
        raise awaiting_person(ret)
    deactivated = False
    for ln in ret.lines:
        if ln.gift_card_id:
            # Before any money goes back: a card deactivated holds nothing to spend. Only
            # while it holds what the line refunds, checked under the card's lock: one spent
            # (or loaded) since the return was planned is not refunded and wiped out as well.
            if ports.gift_cards is None:
                raise Unavailable("gift cards cannot be deactivated now", "payment_unavailable")
            try:
                await ports.gift_cards.deactivate(
                    f"{ret.id}/deactivate/{ln.line_id}",
                    ln.gift_card_id,
                    "line_returned",
                    expected_balance=ln.amount,
                )
            except DomainError as exc:
                if exc.code == CARD_CHANGED:
                    # Nothing refunded yet: dropped, unless an earlier card was deactivated.
                    raise RefundRefused(
                        f"the gift card of line {ln.line_id} was spent or loaded since: it "
                        "cannot be returned",
                        CARD_CHANGED,
                        {**exc.metadata, "line_id": ln.line_id},
                        [],
                        untouched=not deactivated,
                    ) from None
                if exc.kind is not ErrorKind.CONFLICT:
                    raise
                log.info("gift card of line %s already deactivated (%s)", ln.line_id, exc.code)
            deactivated = True
    made: list[Refunded] = []
    try:
        await set_credit_aside(ports, ret)
        # What goes back to the tenders: the whole refund, or an exchange's difference owed.
        with taken_at_register(ret):
            if sum(t.amount for t in ret.tender_amounts) > 0:
                made = await ports.payments.refund_order(
                    f"{ret.id}/refund",
                    ret.order_id,
                    _asks(ret.tender_amounts, ret.currency),
                    ret.reason,
                    [(ln.sku, ln.quantity) for ln in ret.lines],
                )
            if ret.credit_amounts:
                # The exchange credit's part, to the original order's payments.
                made += await ports.payments.refund_order(
                    f"{ret.id}/refund/credit",
                    ret.credit_order_id,
                    _asks(ret.credit_amounts, ret.currency),
                    ret.reason,
                    [],
                    ret.order_id if ret.credit_set_aside else "",
                )
    except DomainError as exc:  # by code: the payment service's refusal is a DomainError
        if exc.code in REFUSED_FOR_GOOD:
            raise RefundRefused(exc.message, exc.code, exc.metadata, made) from None
        if exc.kind is ErrorKind.INVALID:
            # Asked again it is refused again: left pending, the return would hold its units
            # for good and the resumer would ask for ever.
            raise RefundRefused(exc.message, exc.code, exc.metadata, made, exc) from None
        raise
    _refunds_went_through(made)
    await restock(ports, ret)
    return replace(ret, refunds=made)


@contextmanager
def taken_at_register(ret: Return) -> Iterator[None]:
    """The refund asked as from the register the return was taken at (its metadata, which the
    kit forwards), whoever asks it: the request, its retry, or the resumer after a crash,
    which has no register of its own. The payment service keeps the register and member on
    each refund and counts its cash in the shift open at that register when it is paid: the
    return's own shift, or, closed meanwhile, the register's next one (a closed shift's count
    is never reopened). A return taken from the back office, or kept before returns recorded
    their register, leaves the call's own metadata as it is."""
    if not ret.register_id:
        yield
        return
    register = register_var.set(ret.register_id)
    staff = staff_var.set(ret.staff_id or None)
    try:
        yield
    finally:
        staff_var.reset(staff)
        register_var.reset(register)


async def restock(ports: ReturnPorts, ret: Return) -> None:
    """The returned units back to stock at the returning store, each line once
    (`<return>/restock/<line>`)."""
    for ln in ret.lines:
        if ln.restock and ln.quantity > 0:
            await ports.stock.return_to_stock(
                f"{ret.id}/restock/{ln.line_id}",
                ln.location_id,
                ln.sku,
                ln.quantity,
                ret.id,
                f"return {ret.id} of order {ret.order_id}",
            )


def _refunds_went_through(made: list[Refunded]) -> None:
    """A refund the processor refused (a gift card deactivated since, a card closed): the
    return is not done, and nothing is restocked. None went through: `refund_failed`; some
    did: `refund_partly_failed`. Either is for good (the payment service answers the same
    again)."""
    failed = [r for r in made if r.status == "failed"]
    if not failed:
        return
    payments = {"payment_ids": ",".join(r.payment_id for r in failed)}
    if len(failed) == len(made):
        raise RefundRefused(
            "the refund was refused by the payment processor; nothing was refunded or restocked",
            "refund_failed",
            payments,
            made,
        )
    raise RefundRefused(
        "part of the refund was refused by the payment processor; nothing was restocked",
        "refund_partly_failed",
        payments,
        made,
    )


async def complete(
    uow: ReturnsUnitOfWork, done: Return, settlement: Settlement | None = None
) -> tuple[Return, Order]:
    """The return completed (refunded and restocked, or `settlement`: settled by a person,
    its tenders counting only the refunds that went through), its tenders' refunded amounts
    updated, and `order_returned` published; a no-op once completed."""
    order = await uow.orders.get(done.order_id, lock=True)
    if order is None:
        raise NotFound("order", done.order_id)
    ret = await uow.returns.get(done.id)
    if ret is None:
        raise NotFound("return", done.id)
    if ret.status is ReturnStatus.PENDING:
        at = now()
        if settlement is None:
            ret.refunds = done.refunds
            own, credit = ret.tender_amounts, ret.credit_amounts
        else:  # what went back as the refunds say, as the settlement found them
            ret.refunds = done.refunds
            own = went_through(ret, ret.tender_amounts)
            credit = went_through(ret, ret.credit_amounts)
            ret.settlement = settlement
        ret.status, ret.completed_at = ReturnStatus.COMPLETED, at
        order.touched(at)
        refunded(order, ret, own)
        # What went back to the original order's tenders no longer pays for this order.
        order.saga.credit_returned += sum(t.amount for t in credit)
        await uow.orders.save(order)
        # Each payment's part on the order that took it: the credit's order, or (for a part
        # an exchange carried from that order's own credit) the one it came from, and so on.
        source_id = ret.credit_order_id
        while credit and source_id:
            source = await uow.orders.get(source_id, lock=True)
            if source is None:
                break
            mine = {t.payment_id for t in source.saga.tenders}
            here = [t for t in credit if t.payment_id in mine]
            if here or source_id == ret.credit_order_id:
                # A new version of that order, announced (`order_updated`): the return's own
                # event carries this one.
                source.credit_given_back(at)
                refunded(source, ret, here, credit=ret.credit_set_aside)
                await uow.orders.save(source)
                for event in source.events:
                    uow.publish(event)
                source.events.clear()
            credit = [t for t in credit if t.payment_id not in mine]
            source_id = source.saga.exchange_of
        await uow.returns.save(ret)
        earlier = [r for r in await uow.returns.of_order(order.id) if r.id != ret.id]
        # Goods its cancelled fulfilments took back count too: loyalty takes points back by one
        # figure that only grows (see OrderFulfillmentUpdated).
        given_back = goods_returned([*earlier, ret]) + order.cancelled_goods
        uow.publish(OrderReturned(order, ret, given_back))
    return ret, order


async def credit_and_restock(ports: ReturnPorts, ret: Return) -> Credited:
    """A return without a receipt: the store credit card issued to the customer, then the
    restock."""
    if ret.status is ReturnStatus.COMPLETED:
        return Credited(ret, "")
    if ports.gift_cards is None:
        raise Unavailable("store credit cannot be issued now", "payment_unavailable")
    card = await ports.gift_cards.issue(
        f"{ret.id}/store_credit",
        Money(ret.amount, ret.currency),
        "",
        "",
        "",
        ret.customer_id,
        ret.lines[0].location_id,
        reason="store_credit",
    )
    for ln in ret.lines:
        if ln.restock:
            await ports.stock.return_to_stock(
                f"{ret.id}/restock/{ln.sku}",
                ln.location_id,
                ln.sku,
                ln.quantity,
                ret.id,
                f"return {ret.id} without a receipt",
            )
    return Credited(replace(ret, store_credit_gift_card_id=card.gift_card_id), card.code)


async def credit_or_drop(
    new_uow: Callable[[], ReturnsUnitOfWork], ports: ReturnPorts, ret: Return
) -> Credited:
    """`credit_and_restock`, and a credit refused for good (more than a card may hold, say)
    drops the return: the card is its first step, so nothing was done, and left pending the
    resumer would complete what the caller was told was refused once the cause went away."""
    try:
        return await credit_and_restock(ports, ret)
    except DomainError as exc:
        if exc.kind not in (ErrorKind.INVALID, ErrorKind.CONFLICT):
            raise  # unavailable: left pending, the resumer (or a retry) finishes it
        async with new_uow() as uow:
            await uow.returns.discard(ret.id)
            await uow.commit()
        log.warning("return %s dropped: its store credit was refused (%s)", ret.id, exc.code)
        if exc.code == "gift_card_balance_limit":
            # The credit is what the lines are worth: they are what the caller can change.
            most = exc.metadata.get("max_balance", "")
            exc.violations = [
                FieldViolation(
                    "lines",
                    f"are worth {ret.amount}, more than a gift card may hold ({most})",
                )
            ]
        raise


async def complete_credit(uow: ReturnsUnitOfWork, done: Credited) -> Return:
    ret = await uow.returns.get(done.ret.id)
    if ret is None:
        raise NotFound("return", done.ret.id)
    if ret.status is ReturnStatus.PENDING:
        ret.status, ret.completed_at = ReturnStatus.COMPLETED, now()
        ret.store_credit_gift_card_id = done.ret.store_credit_gift_card_id
        await uow.returns.save(ret)
        # Partners hear of it as of any return: the same event, with no order.
        uow.publish(OrderReturned(None, ret))
    return ret


async def resume(
    new_uow: Callable[[], ReturnsUnitOfWork], ports: ReturnPorts, return_id: str
) -> None:
    """A return left pending (its request failed after the plan, or its process died): the
    same steps again under the same ids, then completed. Its store credit's code, if one was
    issued, is not shown again (a code is answered once)."""
    async with new_uow().reading() as uow:
        ret = await uow.returns.get(return_id)
    if ret is None or ret.status is ReturnStatus.COMPLETED or ret.refusal:
        return  # a refusal waits for a person, not for another try
    if ret.exchange_order_id and not await exchange_sold(new_uow, ports, ret):
        return
    if ret.order_id:
        try:
            done = await move_money_and_stock(ports, ret)
        except RefundRefused as exc:
            await give_up(new_uow, ret, exc)
            return
        async with new_uow() as uow:
            await complete(uow, done)
            await uow.commit()
    else:
        try:
            credited = await credit_or_drop(new_uow, ports, ret)
        except DomainError as exc:
            if exc.kind in (ErrorKind.INVALID, ErrorKind.CONFLICT):
                return  # dropped
            raise
        async with new_uow() as uow:
            await complete_credit(uow, credited)
            await uow.commit()


async def exchange_sold(
    new_uow: Callable[[], ReturnsUnitOfWork], ports: ReturnPorts, ret: Return
) -> bool:
    """An exchange's return goes on (refund, restock) only once its new order is sold: while
    that order is pending, its own saga (or the resumer's pass over it) decides; once it is
    cancelled, the return is dropped (nothing was refunded or restocked for it) after its
    credit's money is made refundable again."""
    async with new_uow().reading() as uow:
        order = await uow.orders.get(ret.exchange_order_id)
    if order is None or order.status is OrderStatus.CANCELLED:
        await release_credit(ports, ret)
        async with new_uow() as uow:
            await uow.returns.discard(ret.id)
            await uow.commit()
        return False
    return order.status in (OrderStatus.CONFIRMED, OrderStatus.COMPLETED)


class SettleReturn(Generic[R]):
    """A person settles a return whose refund was refused for good (`refusal`): the part of
    the refund the processor did not pay was paid another way (cash from the till, a
    transfer), or is refused. Either way the return is completed with its `settlement` (who,
    why, how much, how), its units restocked as it asked (the same ids as its own steps: once),
    its tenders counting only the refunds that went through, and `order_returned` published.

    The refunds recorded pending at the refusal are asked of the payment service again: one
    still pending is a 409 `refund_pending` and nothing is settled (what is unpaid is not known
    yet). Paid out of band, what each of the order's payments did not refund is recorded there
    (`<return>/paid_out_of_band`, once per return), so no later refund of the order pays the
    customer a second time; cash at a register with an open shift is that drawer's pay-out."""

    def __init__(
        self,
        req: SettleRequest,
        ports: ReturnPorts,
        answer: Callable[[Return, Order], R],
    ) -> None:
        validate_settlement(req)  # bad input is refused before anything is claimed
        self.req = req
        self.ports = ports
        self.answer = answer
        self.settlement: Settlement | None = None

    async def read(self, uow: ReturnsUnitOfWork) -> Return:
        order = await uow.orders.get(self.req.order_id, lock=True)
        if order is None:
            raise NotFound("order", self.req.order_id)
        ret = await uow.returns.get(self.req.return_id)
        if ret is None or ret.order_id != order.id:
            raise NotFound("return", self.req.return_id)
        settleable(ret)
        return ret

    async def call(self, claim: Claim, ret: Return) -> Return:
        # A refund pending when the return was refused may have been answered since.
        waiting = {r.refund_id for r in still_pending(ret)}
        refunds = [
            replace(r, status=await self.ports.payments.refund_status(r.refund_id))
            if r.refund_id in waiting
            else r
            for r in ret.refunds
        ]
        ret = replace(ret, refunds=refunds)
        settlement = settle(ret, self.req, now())
        unpaid = unpaid_by_payment(ret)
        if settlement.outcome is SettlementOutcome.PAID_OUT_OF_BAND and unpaid:
            # Whole or not at all: money a refund outside the return (goodwill, through the
            # payments API) gave back meanwhile must not reach the customer a second time.
            await self.ports.payments.record_out_of_band(
                f"{ret.id}/paid_out_of_band",
                ret.order_id,
                ret.id,
                _asks(unpaid, ret.currency),
                settlement.tender,
                settlement.reference,
                whole=True,
            )
        await restock(self.ports, ret)
        self.settlement = settlement
        return ret

    async def record(self, uow: ReturnsUnitOfWork, ret: Return) -> R:
        assert self.settlement is not None
        done, order = await complete(uow, ret, self.settlement)
        return self.answer(done, order)


async def get_return(uow: ReturnsUnitOfWork, return_id: str) -> Return:
    """Any return of the merchant, one without a receipt included."""
    found = await uow.returns.get(return_id)
    if found is None:
        raise NotFound("return", return_id)
    return found


async def list_returns(uow: ReturnsUnitOfWork, f: ReturnFilters, page: PageRequest) -> list[Return]:
    """An order's returns, or with no order every return of the merchant, by id; with
    `updated_since` (`page.since`) by change, oldest first."""
    statuses = {s.value for s in ReturnStatus}
    raise_if(
        require(not f.status or f.status in statuses, "status", f"one of {sorted(statuses)}")
        + require(
            f.created_since is None
            or f.created_before is None
            or f.created_before > f.created_since,
            "created_before",
            "must be after created_since",
        )
    )
    if f.order_id and await uow.orders.get(f.order_id) is None:
        raise NotFound("order", f.order_id)
    return await uow.returns.page(f, page)


__all__ = [
    "CreateReturn",
    "NewUow",
    "ReturnPorts",
    "SettleReturn",
    "get_return",
    "list_returns",
]
