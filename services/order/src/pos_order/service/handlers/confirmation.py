"""An order's confirmation and its cancellation."""

from __future__ import annotations

from collections.abc import Callable
from typing import Generic, TypeVar

from pos_kit.errors import Conflict, NotFound, Unavailable
from pos_kit.idempotency import Claim
from pos_order.domain.model import Order, OrderStatus, SagaState, TenderState
from pos_order.service import saga
from pos_order.service.handlers.customers import as_answered
from pos_order.service.handlers.drawer import cancelled_at_drawer, shift_for_cash
from pos_order.service.handlers.tenders import learn_payments
from pos_order.service.ports import CheckoutPorts, NewUow, OrderUnitOfWork, PaymentResult
from pos_order.service.saga import Policy, now

R = TypeVar("R")


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
        return self.answer(await as_answered(uow, order))


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
                "the order is being confirmed; cancel it once it is confirmed", "order_confirming"
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
                "a tender's answer is not known yet; cancel the order once it is", "payment_pending"
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
        # gives it back (`unless_cancelled`). Stopped by it, the cancel answered 503 for
        # work that was done all the same.
        return await saga.compensate(
            self.new_uow, self.ports, order, self.policy, refunded=self.refunded,
            leave_pending=True,
        )  # fmt: skip

    async def record(self, uow: OrderUnitOfWork, order: Order) -> R:
        return self.answer(await as_answered(uow, order), self.refunded)
