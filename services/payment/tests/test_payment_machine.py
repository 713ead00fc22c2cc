"""A hypothesis state machine: authorise, capture (in parts), void, refund, expiry, lost
processor answers and the reconciler, card readers answering or cancelled from the register,
in any order, against a simple model, on PostgreSQL.

After every step each payment and terminal checkout in the database equals the model, and:
captured + capturing + voided <= authorized, refunded + refunding <= captured, a voided or
failed payment and a settled checkout never move again, and the processor was asked at most
once under any idempotency key.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Awaitable
from dataclasses import dataclass
from datetime import timedelta
from typing import Any, TypeVar

from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import Bundle, RuleBasedStateMachine, invariant, multiple, rule
from sqlalchemy import func, select, update

from pos_devstack.testing import Infra
from pos_kit.db import make_engine
from pos_kit.errors import Conflict
from pos_kit.money import Money
from pos_payment.adapters.repository import PaymentUow, open_work
from pos_payment.adapters.sandbox import READERS, RecordedTender, SandboxProcessor, SandboxReader
from pos_payment.adapters.tables import kit, payments, sandbox_calls, terminal_checkouts
from pos_payment.domain.model import ChargeRequest, TenderType, validate_charge
from pos_payment.domain.processor import ProcessorAnswer, ProcessorTimeout
from pos_payment.service import handlers
from pos_payment.service.handlers import Policy, RefundAsk

T = TypeVar("T")
MERCHANT = "mer_machine"
FINAL = ("voided", "failed")


class LosesAnswers:
    """The sandbox, but the next capture, void or refund acts and its answer is lost."""

    def __init__(self, inner: SandboxProcessor) -> None:
        self.inner = inner
        self.lose_next = False

    async def _maybe_lose(self, answer: Awaitable[ProcessorAnswer]) -> ProcessorAnswer:
        result = await answer
        if self.lose_next:
            self.lose_next = False
            raise ProcessorTimeout()
        return result

    async def authorize(
        self, source: str, amount: Money, capture: bool, key: str, *, payment_id: str = ""
    ) -> Any:
        return await self.inner.authorize(source, amount, capture, key, payment_id=payment_id)

    async def capture(self, reference: str, amount: Money, key: str) -> Any:
        return await self._maybe_lose(self.inner.capture(reference, amount, key))

    async def void(self, reference: str, key: str, *, payment_id: str = "") -> Any:
        return await self._maybe_lose(self.inner.void(reference, key, payment_id=payment_id))

    async def refund(self, reference: str, amount: Money, key: str, *, payment_id: str = "") -> Any:
        return await self._maybe_lose(
            self.inner.refund(reference, amount, key, payment_id=payment_id)
        )

    async def lookup(self, key: str) -> Any:
        return await self.inner.lookup(key)


@dataclass
class Model:
    id: str
    capture_at_once: bool
    status: str
    total: int
    authorized: int = 0
    captured: int = 0
    voided: int = 0
    refunded: int = 0
    capturing: int = 0
    refunding: int = 0
    voiding: bool = False
    expired: bool = False
    # Operations whose answer was lost: (kind, amount), settled by the reconciler.
    lost: tuple[tuple[str, int], ...] = ()

    def settle_authorization(self) -> None:
        # Its window starts when the processor's answer is known.
        self.authorized, self.expired = self.total, False
        if self.capture_at_once:
            self.status, self.captured = "captured", self.total
        else:
            self.status = "authorized"

    def can_capture(self, amount: int) -> bool:
        return (
            self.status in ("authorized", "captured")
            and not self.voided
            and not self.voiding
            and not self.expired
            and 0 < amount <= self.authorized - self.captured - self.capturing
        )

    def can_void(self, rest: bool) -> bool:
        return (
            (rest or not self.captured)
            and self.status in ("authorized", "captured")
            and not self.voided
            and not self.voiding
            and not self.capturing
            and self.authorized > self.captured
        )

    def apply(self, kind: str, amount: int) -> None:
        if kind == "capture":
            self.captured += amount
            self.status = "captured"
        elif kind == "void":
            self.voided = amount
            if not self.captured:
                self.status = "voided"
        else:
            self.refunded += amount


# What each sandbox reader's customer does; the timeout reader never answers.
READER_ENDS = {
    "sandbox_reader_approve": "completed",
    "sandbox_reader_decline": "declined",
    "sandbox_reader_cancel": "cancelled",
    "sandbox_reader_timeout": "pending",
}


class PaymentMachine(RuleBasedStateMachine):
    url = ""
    paid = Bundle("paid")
    sent = Bundle("sent")

    def __init__(self) -> None:
        super().__init__()
        self.loop = asyncio.new_event_loop()
        self.engine = make_engine(self.url, pool_size=2)
        self.card = LosesAnswers(SandboxProcessor(self.engine))
        self.processors = {
            TenderType.CARD: self.card,
            TenderType.GIFT_CARD: self.card,
            TenderType.CASH: RecordedTender(),
            TenderType.EXTERNAL: RecordedTender(),
        }
        self.policy = Policy(processor_timeout=5.0, authorization_window=timedelta(days=7))
        self.reader = SandboxReader(self.engine, delay_seconds=0)
        self.models: dict[str, Model] = {}
        self.terminals: dict[str, str] = {}  # checkout id -> its status in the model
        self.devices: dict[str, str] = {}
        self.counter = 0
        # Unique per machine: `id(self)` is not (a machine collected, the next one may get its
        # address, and its request ids, hence its processor keys, would repeat the earlier's).
        self.name = uuid.uuid4().hex

    def run(self, work: Awaitable[T]) -> T:
        return self.loop.run_until_complete(work)

    def new_uow(self) -> PaymentUow:
        return PaymentUow(self.engine, kit).bind(MERCHANT)

    def order_id(self) -> str:
        return f"ord_{self.name}_{self.counter}"

    def rid(self) -> str:
        self.counter += 1
        return f"machine-{self.name}-{self.counter}"

    def steps(self, steps: Any) -> Any:
        return self.run(handlers.run_steps(self.new_uow, steps))

    def refused(self, steps: Any) -> str:
        try:
            self.steps(steps)
        except Conflict as exc:
            return exc.code
        raise AssertionError("the operation was not refused")

    # --- rules ---------------------------------------------------------------------------

    @rule(
        target=paid,
        amount=st.integers(1, 1000),
        capture=st.booleans(),
        lost=st.booleans(),
    )
    def take(self, amount: int, capture: bool, lost: bool) -> str:
        token = "tok_timeout" if lost else "tok_visa"
        charge = validate_charge(
            ChargeRequest(self.order_id(), TenderType.CARD, amount, "USD", None, token,
                          capture=capture)
        )  # fmt: skip
        payment = self.steps(
            handlers.TakePayment(charge, self.rid(), self.processors, self.new_uow, self.policy)  # type: ignore[arg-type]
        )
        model = Model(payment.id, capture, "pending", amount)
        if not lost:
            model.settle_authorization()
        self.models[payment.id] = model
        return str(payment.id)

    @rule(payment=paid, amount=st.integers(1, 600) | st.none(), lost=st.booleans())
    def capture(self, payment: str, amount: int | None, lost: bool) -> None:
        model = self.models[payment]
        wanted = (
            amount if amount is not None else model.authorized - model.captured - model.capturing
        )
        usd = None if amount is None else (amount, "USD")
        steps = handlers.CapturePayment(
            payment, usd, self.rid(), self.processors, self.new_uow, self.policy
        )
        if not model.can_capture(wanted):
            self.refused(steps)
            return
        self.card.lose_next = lost
        self.steps(steps)
        if lost:
            model.capturing += wanted
            model.lost += (("capture", wanted),)
        else:
            model.apply("capture", wanted)

    @rule(payment=paid, lost=st.booleans(), rest=st.booleans())
    def void(self, payment: str, lost: bool, rest: bool) -> None:
        model = self.models[payment]
        steps = handlers.VoidPayment(
            payment, self.rid(), self.processors, self.new_uow, self.policy, uncaptured_rest=rest
        )
        if not model.can_void(rest):
            self.refused(steps)
            return
        self.card.lose_next = lost
        self.steps(steps)
        left = model.authorized - model.captured
        if lost:
            model.voiding = True
            model.lost += (("void", left),)
        else:
            model.apply("void", left)

    @rule(payment=paid, amount=st.integers(1, 600), lost=st.booleans())
    def refund(self, payment: str, amount: int, lost: bool) -> None:
        model = self.models[payment]
        ask = RefundAsk(payment, "", (amount, "USD"), (), "", ())
        steps = handlers.RefundPayments(ask, self.rid(), self.processors, self.policy)  # type: ignore[arg-type]
        if not model.captured or amount > model.captured - model.refunded - model.refunding:
            self.refused(steps)
            return
        self.card.lose_next = lost
        self.steps(steps)
        if lost:
            model.refunding += amount
            model.lost += (("refund", amount),)
        else:
            model.apply("refund", amount)

    @rule(payment=paid)
    def expire(self, payment: str) -> None:
        """The authorisation's window passes, and the expiry sweep runs."""
        model = self.models[payment]

        async def past() -> None:
            async with self.engine.begin() as conn:
                await conn.execute(
                    update(payments)
                    .where(payments.c.id == payment)
                    .values(expires_at=func.now() - timedelta(seconds=1))
                )

        self.run(past())
        model.expired = True
        self.run(
            handlers.expire_authorization(self.new_uow, self.processors, payment, self.policy)  # type: ignore[arg-type]
        )
        if model.can_void(rest=True):  # the sweep voids the rest of a partial capture too
            model.apply("void", model.authorized - model.captured)

    @rule()
    def reconcile(self) -> None:
        async def settle_all() -> None:
            async with self.engine.connect() as conn:
                work = await open_work(conn, timedelta(0))
            for item in work:
                if item.kind in ("expired", "terminal"):
                    continue  # the expire and reader rules run those sweeps themselves
                settle = {
                    "payment": handlers.reconcile_payment,
                    "operation": handlers.reconcile_operation,
                    "refund": handlers.reconcile_refund,
                }[item.kind]
                await settle(self.new_uow, self.processors, item.id, self.policy)  # type: ignore[arg-type]

        self.run(settle_all())
        for model in self.models.values():
            if model.status == "pending":
                model.settle_authorization()
            for kind, amount in model.lost:
                if kind == "capture":
                    model.capturing -= amount
                elif kind == "refund":
                    model.refunding -= amount
                else:
                    model.voiding = False
                model.apply(kind, amount)
            model.lost = ()

    @rule(target=sent, device=st.sampled_from(sorted(READERS)), amount=st.integers(1, 1000))
    def send_to_reader(self, device: str, amount: int) -> str:
        async def create() -> str:
            async with self.new_uow() as uow:
                checkout = await handlers.create_terminal_checkout(
                    uow, self.reader, self.policy, self.rid(),
                    (self.order_id(), "", "loc_1", device), (amount, "USD"), None,
                )  # fmt: skip
                await uow.commit()
                return checkout.id

        checkout_id = self.run(create())
        self.terminals[checkout_id], self.devices[checkout_id] = "pending", device
        return checkout_id

    def _took(self, checkout_id: str) -> Any:
        """The payment the reader took, as the model's, if it took one."""

        async def find() -> Any:
            async with self.new_uow() as uow:
                checkout = await uow.terminals.get(checkout_id)
                assert checkout is not None
                found = await uow.payments.get(checkout.payment_id)
                return checkout, found

        checkout, payment = self.run(find())
        if payment is None or payment.id in self.models:
            return multiple()
        model = Model(payment.id, True, "pending", checkout.amount + checkout.tip)
        if self.terminals[checkout_id] == "completed":
            model.settle_authorization()
        else:
            model.status = "failed"
        self.models[payment.id] = model
        return payment.id

    @rule(target=paid, checkout=sent)
    def reader_answers(self, checkout: str) -> Any:
        """The reader's customer acts (or not); the poll records it."""
        self.run(handlers.settle_terminal(self.new_uow, self.reader, checkout, self.policy))
        if self.terminals[checkout] == "pending":
            self.terminals[checkout] = READER_ENDS[self.devices[checkout]]
        return self._took(checkout)

    @rule(target=paid, checkout=sent)
    def register_cancels(self, checkout: str) -> Any:
        steps = handlers.CancelTerminalCheckout(checkout, self.reader)
        if self.terminals[checkout] == "cancelled":
            # Cancelled already: answered so again, nothing asked of the reader.
            assert self.steps(steps).status.value == "cancelled"
            return multiple()
        if self.terminals[checkout] != "pending":
            assert self.refused(steps) == "terminal_checkout_final"
            return multiple()
        self.steps(steps)
        self.terminals[checkout] = "cancelled"
        return self._took(checkout)

    # --- invariants ----------------------------------------------------------------------

    @invariant()
    def the_database_is_the_model(self) -> None:
        async def rows() -> tuple[list[Any], int]:
            async with self.engine.connect() as conn:
                found = (await conn.execute(select(payments))).all()
                calls = (await conn.execute(select(func.max(sandbox_calls.c.calls)))).scalar()
            return list(found), int(calls or 0)

        found, most_calls = self.run(rows())
        assert most_calls <= 1  # no key was ever sent to the processor twice
        mine = [row for row in found if row.id in self.models]  # earlier examples' aside
        assert len(mine) == len(self.models)
        for row in mine:
            m, p = self.models[row.id], row._mapping
            seen = (p["status"], p["authorized"], p["captured"], p["voided"], p["refunded"],
                    p["capturing"], p["refunding"], p["voiding"])  # fmt: skip
            assert seen == (m.status, m.authorized, m.captured, m.voided, m.refunded,
                            m.capturing, m.refunding, m.voiding)  # fmt: skip
            assert p["captured"] + p["capturing"] + p["voided"] <= p["authorized"]
            assert p["refunded"] + p["refunding"] <= p["captured"]
            if m.status in FINAL:
                assert (p["captured"], p["refunded"]) == (0, 0)

    @invariant()
    def every_checkout_is_the_model(self) -> None:
        async def rows() -> list[Any]:
            async with self.engine.connect() as conn:
                return list((await conn.execute(select(terminal_checkouts))).all())

        mine = {r.id: r for r in self.run(rows()) if r.id in self.terminals}
        assert {i: r.status for i, r in mine.items()} == self.terminals
        for row in mine.values():
            # A card was read exactly when the reader approved or declined it.
            assert bool(row.payment_id) == (row.status in ("completed", "declined"))

    def teardown(self) -> None:
        self.run(self.engine.dispose())
        self.loop.close()


def test_payment_state_machine(infra: Infra) -> None:
    PaymentMachine.url = infra.service_database("payment")
    machine = PaymentMachine.TestCase
    machine.settings = settings(
        max_examples=25,
        stateful_step_count=30,
        deadline=None,
        suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
    )
    machine().runTest()
