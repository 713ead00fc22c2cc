"""Fulfilment steps (ready, picked up, shipped, ...) and a fulfilment's cancellation."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Generic, TypeVar

from pos_kit.errors import Conflict, FieldViolation, NotFound, Unavailable, raise_if
from pos_kit.idempotency import Claim
from pos_order.domain.model import CAPTURES_AT, FulfillmentStatus, Order, SagaState, Tender
from pos_order.domain.returns import UnitsRefund, adjusted_in_fulfillment, price_given_back
from pos_order.service import saga
from pos_order.service.handlers.customers import as_answered
from pos_order.service.handlers.drawer import cancelled_at_drawer, shift_for_cash
from pos_order.service.handlers.new_order import announce_change
from pos_order.service.handlers.tenders import learn_payments
from pos_order.service.ports import CheckoutPorts, NewUow, OrderUnitOfWork, PaymentResult
from pos_order.service.saga import Policy, now

R = TypeVar("R")


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
            announce_change(uow, order)
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
        self.units_refunds: list[UnitsRefund] = []

    async def prepare(self) -> None:
        """Before the claim, with no connection held: for an order that took cash (see
        `cancelled_at_drawer`), the shift open at the asking register; for one that took cash
        or a caller who may not give money back, the order's refunds naming units (price
        adjustments), which the cancel does not give back again, so the drawer is asked for,
        and the `refund` permission needed, only if what it does give back reaches the cash,
        or is anything at all."""
        async with self.new_uow().reading() as uow:
            seen = await uow.orders.get(self.order_id)
        if seen is None:
            return
        self.shift_id = await shift_for_cash(self.ports, seen)
        took_cash = any(t.tender is Tender.CASH for t in seen.saga.tenders)
        if seen.payment_ids and (took_cash or self.refund_not_permitted):
            try:
                payments = await self.ports.payments.of_order(seen.id)
                if any(p.refunded_amount for p in payments):
                    refunds = await self.ports.payments.refunds_of(seen.id)
                    self.units_refunds = [r for r in refunds if r.lines]
            except Unavailable:
                # Unknown: planned as if nothing had been adjusted, which asks for the drawer
                # whenever the cancel might reach the cash, and for the permission whenever
                # anything was captured for the fulfilment (the cancel itself then waits for
                # the payment service).
                self.units_refunds = []

    async def read(self, uow: OrderUnitOfWork) -> Order:
        order = await uow.orders.get(self.order_id, lock=True)
        if order is None:
            raise NotFound("order", self.order_id)
        if order.begin_fulfillment_cancel(self.fulfillment_id):
            fid = self.fulfillment_id
            given_back = 0
            if self.units_refunds:
                # As the cancel plans its refunds (`saga._plan_cancel_refunds`): what price
                # adjustments of its units gave back is not given back again, so the checks
                # judge the refunds the cancel makes. Planned without it, the cancel seemed to
                # owe that part from the order's other payments, cash among them, and was
                # refused from the back office for cash it never paid out; and a share
                # adjusted in full, giving nothing back, was refused for want of the `refund`
                # permission.
                earlier = await uow.returns.of_order(order.id)
                adjusted = adjusted_in_fulfillment(order, fid, self.units_refunds, earlier)
                given_back = sum(amount for _, amount in adjusted.values())
            if self.refund_not_permitted:
                # Refused before the mark is saved: the transaction ends with nothing written.
                order.fulfillment_refund_needs_permission(fid, given_back)
            to_cash = order.cash_a_cancel_gives_back(fid, given_back=given_back)
            cancelled_at_drawer(order, fid, to_cash, self.shift_id)
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
        order = await as_answered(uow, order)
        refunded = dict(self.refunded)
        for r in order.saga.refunds:
            if r.fulfillment_id == self.fulfillment_id and r.done:
                refunded[r.payment_id] = refunded.get(r.payment_id, 0) + r.amount
        return self.answer(order, refunded)
