"""A hypothesis state machine of the order and fulfilment lifecycle against a model, on
in-memory fakes of the other services (tests/fakes.py): create (pickup, shipment in parts,
in store), pay, decline, another tender, confirm, ready, pick up, ship, deliver, cancel, expire,
and the resumer passing by. After every step, money and stock are checked:
- what the customer keeps paying (captured - refunded) is the captured share of every
  fulfilment still live; a cancelled order keeps nothing and holds no authorisation;
- a confirmed order's tenders cover what its live fulfilments are worth;
- reserved units are exactly what waiting orders hold; on-hand units went down by exactly what
  live confirmed pickups and shipments committed.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from typing import Any, TypeVar

from fakes import FakeCatalog, FakeCustomerService, FakePayments, FakeStock, FixedDiscount, Store
from fakes import uow_factory as fake_uows
from hypothesis import settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, precondition, rule

from pos_kit.context import register_var, staff_var
from pos_kit.errors import DomainError
from pos_kit.idempotency import Claim
from pos_kit.money import Money
from pos_order.domain.model import (
    ENDED,
    FulfillmentRequest,
    FulfillmentStatus,
    FulfillmentType,
    HoldState,
    LineRequest,
    Order,
    OrderCreated,
    OrderStatus,
    Tender,
)
from pos_order.service import saga
from pos_order.service.handlers import confirmation, drafts, fulfillment, tenders
from pos_order.service.ports import CheckoutPorts, CreateOrderCommand, OrderSettings
from pos_order.service.saga import Policy

UNITS = 6
T = TypeVar("T")
F = FulfillmentStatus
# One step at a time, as commerce-states.md draws the machines: none is skipped.
NEXT = {
    FulfillmentType.PICKUP: {F.RESERVED: [F.READY_FOR_PICKUP],
                             F.READY_FOR_PICKUP: [F.PICKED_UP]},
    FulfillmentType.SHIPMENT: {F.RESERVED: [F.PICKED], F.PICKED: [F.SHIPPED],
                               F.SHIPPED: [F.DELIVERED]},
}  # fmt: skip


@contextmanager
def at_till(payments: FakePayments) -> Iterator[None]:
    """Calls made at a register whose shift is open (its metadata, as the gateway sends it)."""
    payments.open_shifts["reg_till"] = "shf_till"
    register, staff = register_var.set("reg_till"), staff_var.set("stf_cashier")
    try:
        yield
    finally:
        staff_var.reset(staff)
        register_var.reset(register)


def run(coro: Awaitable[T]) -> T:
    return asyncio.run(coro)  # type: ignore[arg-type]


class OrderLifecycle(RuleBasedStateMachine):
    def __init__(self) -> None:
        super().__init__()
        self.store = Store()
        self.payments = FakePayments()
        self.stock = FakeStock(TEE=UNITS)
        self.ports = CheckoutPorts(
            FakeCatalog(tax_bps=1000),
            FixedDiscount(0),
            self.payments,
            FakeCustomerService(),
            self.stock,
        )
        # Pickups captured at hand-over: the interesting path for money.
        self.policy = Policy(
            defaults=OrderSettings(capture_pickup_at_order=False, hold_seconds=600)
        )
        self.new_uow = fake_uows(self.store)
        self.order_ids: list[str] = []
        self.requests = 0

    # --- driving the use cases as the kit does: read, call, record ---------------------------

    def _request_id(self) -> str:
        self.requests += 1
        return f"req-{self.requests}"

    async def _steps(self, steps: Any) -> Any:
        prepare = getattr(steps, "prepare", None)
        if prepare is not None:  # before the claim, as the kit runs it
            await prepare()
        async with self.new_uow() as uow:
            read = await steps.read(uow)
            await uow.commit()
        # The claim names the command's own request id, as the kit's does: an order id derives
        # from it, and one shared id made two orders created in the same millisecond one.
        command = getattr(steps, "cmd", None)
        request_id = getattr(command, "request_id", "") or "x"
        outcome = await steps.call(Claim("mer_a", request_id, datetime.now(UTC)), read)
        async with self.new_uow() as uow:
            answer = await steps.record(uow, outcome)
            await uow.commit()
        return answer

    def _attempt(self, make: Callable[[], Any]) -> Any:
        try:
            return run(self._steps(make()))
        except DomainError as exc:
            return exc

    def order(self, order_id: str) -> Order:
        return self.store.orders[("mer_a", order_id)]

    def _orders(self) -> list[Order]:
        return [self.order(i) for i in self.order_ids]

    # --- rules ------------------------------------------------------------------------------

    @rule(
        kind=st.sampled_from(["pickup", "shipment", "split", "in_store"]),
        quantity=st.integers(1, 3),
    )
    def create(self, kind: str, quantity: int) -> None:
        if kind == "split":
            fulfillments = [
                FulfillmentRequest(FulfillmentType.SHIPMENT, "loc_1", "1 Main St"),
                FulfillmentRequest(FulfillmentType.SHIPMENT, "loc_1", "1 Main St"),
            ]
            lines = [LineRequest("TEE", quantity, 0), LineRequest("MUG", 1, 1)]
            self.stock.on_hand.setdefault("MUG", 1000)
        else:
            ftype = {"pickup": FulfillmentType.PICKUP, "shipment": FulfillmentType.SHIPMENT,
                     "in_store": FulfillmentType.IN_STORE}[kind]  # fmt: skip
            address = "1 Main St" if ftype is FulfillmentType.SHIPMENT else ""
            fulfillments = [FulfillmentRequest(ftype, "loc_1", address)]
            lines = [LineRequest("TEE", quantity)]
        cmd = CreateOrderCommand(self._request_id(), "web", "loc_1", "", lines, fulfillments)
        before, announced = self.stock.available("TEE"), self._announced()
        answer = self._attempt(
            lambda: drafts.CreateOrder(cmd, self.ports, self.new_uow, self.policy, lambda o: o)
        )
        if isinstance(answer, DomainError):
            assert answer.code == "insufficient_stock"
            assert before < quantity and kind != "in_store"
            assert self.stock.available("TEE") == before  # nothing stays held
            # Nor is the order kept or announced: nobody was told of it.
            assert [i for (_, i) in self.store.orders if i not in self.order_ids] == []
            assert announced == self._announced()
            return
        assert answer.status is OrderStatus.PENDING_PAYMENT
        assert self._announced() == [*announced, answer.id]  # once held
        self.order_ids.append(answer.id)

    def _announced(self) -> list[str]:
        return [e.order.id for e in self.store.published if isinstance(e, OrderCreated)]

    def _pending(self) -> list[Order]:
        return [o for o in self._orders() if o.status is OrderStatus.PENDING_PAYMENT]

    @precondition(lambda self: self._pending())
    @rule(data=st.data(), token=st.sampled_from(["tok_visa", "tok_visa", "tok_declined"]),
          part=st.booleans())  # fmt: skip
    def tender(self, data: st.DataObject, token: str, part: bool) -> None:
        order = data.draw(st.sampled_from(self._pending()))
        due = order.balance_due
        if due == 0:
            return
        amount = Money(max(1, due // 2) if part else due, order.currency)
        cmd = tenders.TenderCommand(
            self._request_id(), order.id, None, Tender.CARD, amount, card_token=token
        )
        answer = self._attempt(
            lambda: tenders.AddTender(
                cmd, self.ports, self.new_uow, self.policy, lambda o, p: (o, p)
            )
        )
        if isinstance(answer, DomainError):
            raise AssertionError(f"a tender for a pending order failed: {answer}")
        after, payment = answer
        assert after.status is OrderStatus.PENDING_PAYMENT  # a decline keeps the order
        expected = due - amount.amount if token == "tok_visa" else due
        assert after.balance_due == expected
        assert payment.status == ("authorized" if token == "tok_visa" else "failed")

    @precondition(lambda self: self._pending())
    @rule(data=st.data())
    def confirm(self, data: st.DataObject) -> None:
        order = data.draw(st.sampled_from(self._pending()))
        answer = self._attempt(
            lambda: confirmation.ConfirmOrder(
                order.id, self.ports, self.new_uow, self.policy, lambda o: o
            )
        )
        if order.balance_due > 0:
            assert isinstance(answer, DomainError) and answer.code == "balance_due"
            assert self.order(order.id).status is OrderStatus.PENDING_PAYMENT
            return
        assert not isinstance(answer, DomainError), answer
        assert answer.status in (OrderStatus.CONFIRMED, OrderStatus.COMPLETED)
        for f in answer.fulfillments:
            if f.type is FulfillmentType.IN_STORE:
                assert f.status is F.FULFILLED and f.captured == f.amount

    def _steppable(self) -> list[tuple[str, str, FulfillmentStatus]]:
        out = []
        for o in self._orders():
            if o.status is not OrderStatus.CONFIRMED:
                continue
            for f in o.fulfillments:
                for to in NEXT.get(f.type, {}).get(f.status, []):
                    out.append((o.id, f.id, to))
        return out

    @precondition(lambda self: self._steppable())
    @rule(data=st.data())
    def step(self, data: st.DataObject) -> None:
        order_id, fid, to = data.draw(st.sampled_from(self._steppable()))
        shipping = ("UPS", "1Z999") if to is F.SHIPPED else ("", "")
        step = fulfillment.FulfillmentStep(order_id, fid, to, *shipping)
        answer = self._attempt(
            lambda: fulfillment.UpdateFulfillment(
                step, self.ports, self.new_uow, self.policy, lambda o: o
            )
        )
        assert not isinstance(answer, DomainError), answer
        f = answer.fulfillment(fid)
        assert f is not None and f.status is to
        if to in (F.PICKED_UP, F.SHIPPED):
            # Its share, captured at hand-over or shipment (or at confirmation already).
            assert f.captured == f.amount

    def _cancellable(self) -> list[Order]:
        return [
            o
            for o in self._orders()
            if o.status in (OrderStatus.PENDING_PAYMENT, OrderStatus.CONFIRMED)
        ]

    @precondition(lambda self: self._cancellable())
    @rule(data=st.data())
    def cancel(self, data: st.DataObject) -> None:
        order = data.draw(st.sampled_from(self._cancellable()))
        left = any(
            f.status in (F.FULFILLED, F.PICKED_UP, F.SHIPPED, F.DELIVERED)
            for f in order.fulfillments
        )
        # Asked at a register with a shift open: a cancel giving cash back needs a drawer.
        with at_till(self.payments):
            answer = self._attempt(
                lambda: confirmation.CancelOrder(
                    order.id, self.ports, self.new_uow, self.policy, lambda o, _: o
                )
            )
        if left:
            assert isinstance(answer, DomainError) and answer.code == "order_fulfilled"
            return
        assert not isinstance(answer, DomainError), answer
        assert answer.status is OrderStatus.CANCELLED

    def _waiting_pickups(self) -> list[Order]:
        return [
            o
            for o in self._orders()
            if o.status is OrderStatus.CONFIRMED
            and any(
                f.type is FulfillmentType.PICKUP and f.status not in ENDED for f in o.fulfillments
            )
        ]

    @precondition(lambda self: self._waiting_pickups())
    @rule(data=st.data())
    def expire(self, data: st.DataObject) -> None:
        """The pickup's wait is over: the resumer expires it."""
        order = data.draw(st.sampled_from(self._waiting_pickups()))
        past = datetime.now(UTC) - timedelta(seconds=1)

        def overdue(o: Order) -> None:
            for f in o.fulfillments:
                if f.type is FulfillmentType.PICKUP:
                    f.expires_at = past

        run(saga.change(self.new_uow, order.id, overdue))
        after = run(saga.resume(self.new_uow, self.ports, order.id, self.policy))
        pickups = [f for f in after.fulfillments if f.type is FulfillmentType.PICKUP]
        assert all(f.status in (F.EXPIRED, F.CANCELLED) for f in pickups)

    @rule(at_order=st.booleans())
    def merchant_settings(self, at_order: bool) -> None:
        """Pickups captured at confirmation, or at hand-over, from now on."""
        self.store.settings["mer_a"] = OrderSettings(
            capture_pickup_at_order=at_order, hold_seconds=600
        )

    @precondition(lambda self: self.order_ids)
    @rule(data=st.data())
    def resumer_passes(self, data: st.DataObject) -> None:
        """The resumer looks at an order nobody drives: a waiting order stays as it is."""
        order_id = data.draw(st.sampled_from(self.order_ids))
        before = self.order(order_id)
        after = run(saga.resume(self.new_uow, self.ports, order_id, self.policy))
        assert after.status is before.status

    # --- invariants -------------------------------------------------------------------------

    @invariant()
    def money_is_what_the_customer_keeps_paying_for(self) -> None:
        for o in self._orders():
            kept, held = self.payments.kept(o.id), self.payments.held(o.id)
            live = [f for f in o.fulfillments if f.status not in (F.CANCELLED, F.EXPIRED)]
            assert kept == sum(f.captured for f in live), o.id
            # What the order shows kept: each fulfilment's capture less what went back of it.
            assert kept == sum(f.captured - f.refunded for f in o.fulfillments), o.id
            if o.status is OrderStatus.CANCELLED:
                assert kept == 0 and held == 0, o.id
            if o.status in (OrderStatus.CONFIRMED, OrderStatus.COMPLETED):
                assert kept + held >= sum(f.amount for f in live), o.id
            if o.status is OrderStatus.COMPLETED:
                assert kept == sum(f.amount for f in live), o.id

    @invariant()
    def stock_is_held_sold_or_released(self) -> None:
        waiting = sum(
            ln.quantity
            for o in self._orders()
            if o.status is OrderStatus.PENDING_PAYMENT
            for f in o.fulfillments
            if f.hold is HoldState.HELD
            for ln in o.lines_of(f)
            if ln.sku == "TEE"
        )
        assert self.stock.reserved.get("TEE", 0) == waiting
        sold = sum(
            ln.quantity
            for o in self._orders()
            for f in o.fulfillments
            if f.hold is HoldState.COMMITTED
            for ln in o.lines_of(f)
            if ln.sku == "TEE"
        )
        assert self.stock.on_hand["TEE"] == UNITS - sold


TestOrderLifecycle = OrderLifecycle.TestCase
TestOrderLifecycle.settings = settings(max_examples=60, stateful_step_count=25, deadline=None)
