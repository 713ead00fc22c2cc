"""In-memory fakes of the order service's own repositories and of the services it calls,
faithful to what the handlers rely on: transactions (a unit of work's writes land only on
commit), request-id idempotency at the other services, payments that authorise, capture in
parts, void and refund, reservations held all-or-none. For unit tests and the state machine;
the server tests use the real services."""

from __future__ import annotations

import asyncio
import copy
import itertools
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from types import TracebackType
from typing import Any, Self

from pos_kit.context import register_var
from pos_kit.errors import (
    Conflict,
    FieldViolation,
    InvalidArgument,
    NotFound,
    RequestIdReused,
    Unavailable,
)
from pos_kit.ids import new_nonce
from pos_kit.money import Money
from pos_kit.paging import PageRequest
from pos_order.domain.model import (
    Allocation,
    Order,
    OrderLine,
    PricedItem,
    SellingLocation,
    Tender,
)
from pos_order.domain.pricing import MAX_MERGE_HOPS, Buyer, KnownCustomer
from pos_order.domain.returns import UnitsRefund
from pos_order.service import saga
from pos_order.service.ports import (
    CartContext,
    CustomerFound,
    DiscountQuote,
    OrderFilters,
    OrderSettings,
    PaymentResult,
    Start,
    TenderAsk,
)

USD = "USD"


@dataclass
class Store:
    """What the order database holds, for every merchant."""

    orders: dict[tuple[str, str], Order] = field(default_factory=dict)
    customers: dict[tuple[str, str], int] = field(default_factory=dict)
    starts: dict[tuple[str, str], tuple[datetime, bytes, str]] = field(default_factory=dict)
    # What stamps a request's start (`now()` in the database's transaction).
    clock: Callable[[], datetime] = field(default=lambda: datetime.now(UTC))
    settings: dict[str, OrderSettings] = field(default_factory=dict)
    settings_leases: dict[str, str] = field(default_factory=dict)
    prices: dict[tuple[str, str], PricedItem] = field(default_factory=dict)
    locations: dict[tuple[str, str], SellingLocation] = field(default_factory=dict)
    published: list[object] = field(default_factory=list)
    buyers: dict[tuple[str, str], Buyer] = field(default_factory=dict)
    # (merchant, duplicate) -> the customer it was merged into.
    merges: dict[tuple[str, str], str] = field(default_factory=dict)
    # (merchant, customer) erased: never known again.
    erased: set[tuple[str, str]] = field(default_factory=set)
    # The last touch of each order: how much of the resumer's window it counted as spent.
    touched: dict[tuple[str, str], timedelta] = field(default_factory=dict)


class FakeOrders:
    def __init__(self, uow: FakeUow) -> None:
        self._uow = uow

    @property
    def _key(self) -> str:
        return self._uow.merchant_id

    async def add(self, order: Order) -> bool:
        key = (self._key, order.id)
        if key in self._uow.view_orders():
            return False
        order.created_at = order.created_at or datetime.now(UTC)
        order.updated_at = order.updated_at or order.created_at
        self._uow.staged[key] = _stored(order)
        return True

    async def save(self, order: Order) -> None:
        self._uow.staged[(self._key, order.id)] = _stored(order)

    async def save_if_version(self, order: Order, version: int) -> bool:
        found = self._uow.view_orders().get((self._key, order.id))
        if found is None or found.version != version:
            return False
        await self.save(order)
        return True

    async def get(self, order_id: str, *, lock: bool = False) -> Order | None:
        found = self._uow.view_orders().get((self._key, order_id))
        return copy.deepcopy(found) if found is not None else None

    async def list(self, page: PageRequest, filters: OrderFilters | None = None) -> list[Order]:
        f = filters or OrderFilters()
        mine = sorted(
            (o for (m, _), o in self._uow.view_orders().items() if m == self._key),
            key=lambda o: o.id,
        )
        found = [
            o
            for o in mine
            if (page.after is None or o.id > page.after)
            and (f.status is None or o.status is f.status)
            and (not f.channel or o.channel == f.channel)
        ]
        return copy.deepcopy(found[: page.fetch])

    async def touch(self, order_id: str, idle_for: timedelta = timedelta(0)) -> None:
        self._uow.store.touched[(self._key, order_id)] = idle_for

    async def discard(self, order_id: str) -> None:
        self._uow.store.orders.pop((self._key, order_id), None)

    async def erase_customer(self, customer_id: str) -> None:
        for (m, _), o in self._uow.view_orders().items():
            if m == self._key and o.customer_id == customer_id:
                o.notes, o.metadata = "", {}
                for f in o.fulfillments:
                    f.ship_to, f.destination = "", None


def _stored(order: Order) -> Order:
    """What a row holds: the order, not the events raised in memory."""
    kept = copy.deepcopy(order)
    kept.events = []
    return kept


class FakeKnownCustomers:
    def __init__(self, uow: FakeUow) -> None:
        self._uow = uow

    async def contains(self, customer_id: str) -> bool:
        return (self._uow.merchant_id, customer_id) in self._uow.store.customers

    async def remember(self, customer_id: str, version: int, buyer: Buyer | None = None) -> None:
        key = (self._uow.merchant_id, customer_id)
        if key in self._uow.store.erased:
            return
        self._uow.store.customers[key] = max(version, self._uow.store.customers.get(key, 0))
        if buyer is not None:
            self._uow.store.buyers[key] = buyer

    async def resolve(self, customer_id: str) -> KnownCustomer | None:
        store, merchant = self._uow.store, self._uow.merchant_id
        for _ in range(MAX_MERGE_HOPS):
            key = (merchant, customer_id)
            if key not in store.customers:
                return None
            if key not in store.merges:
                return KnownCustomer(customer_id, store.buyers.get(key, Buyer()))
            customer_id = store.merges[key]
        return None

    async def merged(self, loser_id: str, winner_id: str) -> None:
        key = (self._uow.merchant_id, loser_id)
        self._uow.store.customers.setdefault(key, 0)
        self._uow.store.merges[key] = winner_id

    async def forget(self, customer_id: str) -> None:
        self._uow.store.customers.pop((self._uow.merchant_id, customer_id), None)
        self._uow.store.erased.add((self._uow.merchant_id, customer_id))

    async def erased(self, customer_id: str) -> bool | None:
        key = (self._uow.merchant_id, customer_id)
        if key in self._uow.store.erased:
            return True
        return False if key in self._uow.store.customers else None


class FakeCheckoutStarts:
    def __init__(self, uow: FakeUow) -> None:
        self._uow = uow

    async def start(self, request_id: str, fingerprint: bytes) -> Start:
        key = (self._uow.merchant_id, request_id)
        fresh = key not in self._uow.store.starts
        made = (self._uow.store.clock(), fingerprint, new_nonce())
        at, first, nonce = self._uow.store.starts.setdefault(key, made)
        if first != fingerprint:
            raise RequestIdReused()
        return Start(at, nonce, fresh)

    async def forget(self, request_id: str) -> None:
        self._uow.store.starts.pop((self._uow.merchant_id, request_id), None)

    async def earlier(self, request_id: str) -> Start | None:
        found = self._uow.store.starts.get((self._uow.merchant_id, request_id))
        return Start(found[0], found[2]) if found is not None else None


class FakeSettings:
    def __init__(self, uow: FakeUow) -> None:
        self._uow = uow

    async def get(self, *, lock: bool = False) -> OrderSettings | None:
        return self._uow.store.settings.get(self._uow.merchant_id)

    async def put(self, settings: OrderSettings) -> bool:
        stored = self._uow.store.settings.get(self._uow.merchant_id)
        if (stored.version if stored else 1) != settings.version - 1:
            return False
        self._uow.store.settings[self._uow.merchant_id] = settings
        return True

    # The lease as the table keeps it, without its lapse (no fake test waits one out).
    async def lease(self, holder: str, seconds: float) -> bool:
        held = self._uow.store.settings_leases.setdefault(self._uow.merchant_id, holder)
        return held == holder

    async def holds_lease(self, holder: str) -> bool:
        return self._uow.store.settings_leases.get(self._uow.merchant_id) == holder

    async def release(self, holder: str) -> None:
        if self._uow.store.settings_leases.get(self._uow.merchant_id) == holder:
            del self._uow.store.settings_leases[self._uow.merchant_id]


class FakePriceBook:
    def __init__(self, uow: FakeUow) -> None:
        self._uow = uow

    async def remember_prices(self, items: list[tuple[PricedItem, int]]) -> None:
        for item, _ in items:
            self._uow.store.prices[(self._uow.merchant_id, item.sku)] = item

    async def forget_prices(self, skus: list[str]) -> None:
        for sku in skus:
            self._uow.store.prices.pop((self._uow.merchant_id, sku), None)

    async def remember_location(self, location: SellingLocation) -> None:
        self._uow.store.locations[(self._uow.merchant_id, location.id)] = location

    async def snapshot(
        self, location_id: str, skus: list[str]
    ) -> tuple[SellingLocation | None, dict[str, PricedItem]]:
        m = self._uow.merchant_id
        found = {
            s: self._uow.store.prices[(m, s)] for s in skus if (m, s) in self._uow.store.prices
        }
        return self._uow.store.locations.get((m, location_id)), found


class NoReturns:
    """The sagas these fakes drive never see a return."""

    async def of_order(self, order_id: str) -> list[Any]:
        return []

    async def refund_hold(self, order_id: str) -> tuple[bool, int]:
        return False, 0  # nor a refund hold: their payments change only through them


class FakeUow:
    """One transaction: orders written are staged and land on commit."""

    def __init__(self, store: Store, merchant: str = "mer_a") -> None:
        self.store = store
        self.merchant_id = merchant
        self.staged: dict[tuple[str, str], Order] = {}
        self.events: list[object] = []

    def view_orders(self) -> dict[tuple[str, str], Order]:
        return {**self.store.orders, **self.staged}

    @property
    def orders(self) -> FakeOrders:
        return FakeOrders(self)

    @property
    def customers(self) -> FakeKnownCustomers:
        return FakeKnownCustomers(self)

    @property
    def checkouts(self) -> FakeCheckoutStarts:
        return FakeCheckoutStarts(self)

    @property
    def settings(self) -> FakeSettings:
        return FakeSettings(self)

    @property
    def prices(self) -> FakePriceBook:
        return FakePriceBook(self)

    @property
    def returns(self) -> NoReturns:
        return NoReturns()

    def publish(self, event: object) -> None:
        self.events.append(event)

    async def commit(self) -> None:
        self.store.orders.update(self.staged)
        self.store.published.extend(self.events)
        self.staged, self.events = {}, []

    def reading(self) -> Self:
        return self

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.staged, self.events = {}, []


def uow_factory(store: Store, merchant: str = "mer_a") -> Any:
    return lambda: FakeUow(store, merchant)


class FakeCatalog:
    """Prices at loc_1; `down` answers nothing, as an inventory service that is away."""

    down = False

    def __init__(self, tax_bps: int = 825) -> None:
        self.location = SellingLocation(
            "loc_1", USD, tax_bps, pickup_enabled=True, ship_enabled=True
        )
        self.items = {
            "TEE": PricedItem("TEE", "T-shirt", Money(2500, USD)),
            "MUG": PricedItem("MUG", "Mug", Money(1200, USD)),
        }

    async def price_snapshot(
        self, location_id: str, skus: list[str]
    ) -> tuple[SellingLocation, dict[str, PricedItem]]:
        if self.down:
            raise Unavailable("the inventory service is unavailable", "inventory_unavailable")
        return self.location, {s: self.items[s] for s in skus}


class FixedDiscount:
    def __init__(self, amount: int, applied: bool = True) -> None:
        self.amount = amount
        self.applied = applied

    async def quote(
        self, lines: list[OrderLine], currency: str, cart: CartContext | None = None
    ) -> DiscountQuote:
        return DiscountQuote(Money(self.amount, currency), self.applied)


class FakeCustomerService:
    def __init__(self, *existing: str, down: bool = False) -> None:
        self.existing = set(existing)
        self.down = down
        self.merged: dict[str, str] = {}  # duplicate -> the customer it was merged into
        self.asked: list[str] = []

    async def find(self, customer_id: str) -> CustomerFound | None:
        self.asked.append(customer_id)
        if self.down:
            raise Unavailable("the customer service is unavailable", "customer_unavailable")
        if customer_id in self.merged:
            return CustomerFound(4, self.merged[customer_id])
        return CustomerFound(3) if customer_id in self.existing else None


@dataclass
class FakePayment:
    id: str
    order_id: str
    tender: Tender
    amount: int
    status: str  # pending | authorized | captured | failed | voided
    captured: int = 0
    refunded: int = 0
    outcome: str = ""  # what a pending payment settles to
    decline_code: str = ""
    voided: int = 0  # the rest released after captures (a void of a captured payment)


class FakePayments:
    """The payment service: idempotent by request id (the same id with another body is
    refused), `tok_declined` declines, `tok_timeout` stays pending until `settle_pending`;
    `down` answers nothing, `lose_next` acts and then loses its answer."""

    def __init__(self, approve: bool = True) -> None:
        self.approve = approve
        self.payments: dict[str, FakePayment] = {}
        self.requests: dict[str, tuple[tuple[Any, ...], Any]] = {}
        self.charges: list[tuple[str, Money]] = []
        self.locations: list[str] = []
        self.down = False
        self.lose_next = False
        # As the payment service does: a request's replay is its first answer, not the
        # payment as it is now (the default here answers the latter).
        self.replay_first_answer = False
        self._first: dict[str, PaymentResult] = {}
        self._ids = itertools.count(1)
        # The shift open at each register, and the register each refund was asked from.
        self.open_shifts: dict[str, str] = {}
        self.refunded_at: dict[str, str] = {}

    def _result(self, p: FakePayment) -> PaymentResult:
        return PaymentResult(
            p.id,
            p.status,
            None,
            captured_amount=p.captured,
            refunded_amount=p.refunded,
            amount=p.amount,
            decline_code=p.decline_code,
            voided_amount=p.voided,
        )

    def _replay(self, request_id: str, body: tuple[Any, ...]) -> Any:
        if self.down:
            raise Unavailable("the payment service is unavailable", "payment_unavailable")
        earlier = self.requests.get(request_id)
        if earlier is None:
            return None
        if earlier[0] != body:
            raise InvalidArgument("this request_id was already used for a different request")
        return earlier[1]

    def _answer(self, request_id: str, body: tuple[Any, ...], answer: Any) -> Any:
        self.requests[request_id] = (body, answer)
        if self.lose_next:
            self.lose_next = False
            raise Unavailable("the payment service is unavailable", "payment_unavailable")
        return answer

    def _new(self, order_id: str, tender: Tender, amount: Money, token: str, capture: bool) -> str:
        pid = f"pay_{next(self._ids)}"
        if not self.approve or token == "tok_declined":
            status = "failed"
        elif token == "tok_timeout":
            status = "pending"
        else:
            status = "captured" if capture or tender is Tender.CASH else "authorized"
        p = FakePayment(pid, order_id, tender, amount.amount, status)
        if status == "captured":
            p.captured = p.amount
        if status == "pending":
            p.outcome = "captured" if capture else "authorized"
        self.payments[pid] = p
        self.charges.append((pid, amount))
        return pid

    async def charge(
        self,
        request_id: str,
        order_id: str,
        location_id: str,
        tender: Tender,
        amount: Money,
        cash_tendered: Money | None,
        card_token: str,
        needs_shift: bool = False,
    ) -> PaymentResult:
        body = ("charge", order_id, tender, amount, card_token)
        pid = self._replay(request_id, body)
        if pid is not None and self.replay_first_answer and request_id in self._first:
            return self._first[request_id]
        if pid is None:
            self.locations.append(location_id)
            pid = self._answer(
                request_id, body, self._new(order_id, tender, amount, card_token, True)
            )
            self._first[request_id] = self._result(self.payments[pid])
        return self._result(self.payments[pid])

    async def take(
        self, request_id: str, order_id: str, location_id: str, ask: TenderAsk
    ) -> PaymentResult:
        if ask.tender in (Tender.CASH, Tender.EXTERNAL) and not ask.capture:
            # As the payment service answers: these are taken, never only authorised.
            raise InvalidArgument(
                "bad payment", [FieldViolation("capture", "a cash tender is captured when taken")]
            )
        body = ("take", order_id, ask.tender, ask.amount, ask.card_token, ask.capture)
        pid = self._replay(request_id, body)
        if pid is None:
            made = self._new(order_id, ask.tender, ask.amount, ask.card_token, ask.capture)
            pid = self._answer(request_id, body, made)
        return self._result(self.payments[pid])

    async def capture(self, request_id: str, payment_id: str, amount: Money) -> PaymentResult:
        body = ("capture", payment_id, amount)
        done = self._replay(request_id, body)
        p = self.payments[payment_id]
        if done is None:
            left = p.amount - p.voided
            if p.status not in ("authorized", "captured") or p.captured + amount.amount > left:
                raise Conflict("nothing left to capture", "capture_exceeds_authorization")
            p.captured += amount.amount
            p.status = "captured"
            self._answer(request_id, body, True)
        return self._result(p)

    async def void(self, request_id: str, payment_id: str) -> PaymentResult:
        body = ("void", payment_id)
        done = self._replay(request_id, body)
        p = self.payments[payment_id]
        if done is None:
            if p.status == "authorized":
                p.status = "voided"
            elif p.status == "captured" and p.captured + p.voided < p.amount:
                p.voided = p.amount - p.captured  # the rest released, as the service does
            else:
                raise Conflict(f"the payment is already {p.status}", "payment_final")
            self._answer(request_id, body, True)
        return self._result(p)

    async def refund(self, request_id: str, payment_id: str, amount: Money) -> None:
        body = ("refund", payment_id, amount)
        if self._replay(request_id, body) is None:
            p = self.payments[payment_id]
            if p.refunded + amount.amount > p.captured:
                raise Conflict("more than was captured", "amount_exceeds_refundable")
            p.refunded += amount.amount
            self.refunded_at[request_id] = register_var.get() or ""
            self._answer(request_id, body, True)

    async def open_shift_at(self, register_id: str) -> str:
        return self.open_shifts.get(register_id, "")

    async def refunds_of(self, order_id: str) -> list[UnitsRefund]:
        """No refund naming units is made here."""
        return []

    async def of_order(self, order_id: str) -> list[PaymentResult]:
        if self.down:
            raise Unavailable("the payment service is unavailable", "payment_unavailable")
        return [self._result(p) for p in self.payments.values() if p.order_id == order_id]

    def settle_pending(self, unreached: bool = False) -> None:
        """The payment reconciler: a lost answer settles to the processor's truth (with
        `unreached`, the processor never had the request: failed, `processor_unavailable`)."""
        for p in self.payments.values():
            if p.status == "pending":
                p.status = "failed" if unreached else p.outcome
                p.decline_code = "processor_unavailable" if unreached else ""
                if p.status == "captured":
                    p.captured = p.amount

    # What the invariants read.
    def kept(self, order_id: str) -> int:
        """What the customer is out of pocket for the order: captured minus refunded."""
        return sum(
            p.captured - p.refunded for p in self.payments.values() if p.order_id == order_id
        )

    def held(self, order_id: str) -> int:
        """Authorised and neither captured nor released."""
        return sum(
            p.amount - p.captured - p.voided
            for p in self.payments.values()
            if p.order_id == order_id and p.status in ("authorized", "captured")
        )


@dataclass
class Reservation:
    id: str
    location_id: str
    lines: list[tuple[str, int]]
    status: str = "active"


class FakeStock:
    """Reservations all-or-none against on_hand - reserved; idempotent by request id."""

    def __init__(self, **on_hand: int) -> None:
        self.on_hand: dict[str, int] = dict(on_hand)
        self.reserved: dict[str, int] = {}
        self.reservations: dict[str, Reservation] = {}
        self.requests: dict[str, Any] = {}
        self.down = False

    def available(self, sku: str) -> int:
        return self.on_hand.get(sku, 0) - self.reserved.get(sku, 0)

    def _check(self) -> None:
        if self.down:
            raise Unavailable("the inventory service is unavailable", "inventory_unavailable")

    async def hold(
        self,
        request_id: str,
        location_id: str,
        lines: list[tuple[str, int]],
        ttl_seconds: int,
        reference: str,
    ) -> str:
        self._check()
        if request_id in self.requests:
            return str(self.requests[request_id])
        short = [(s, q) for s, q in lines if self.available(s) < q]
        if short:
            refused = Conflict(
                "not enough stock", "insufficient_stock", {"short": ",".join(s for s, _ in short)}
            )
            # As the inventory service names them: each short line of this hold's request.
            refused.violations = [
                FieldViolation(f"lines[{i}].quantity", f"must be at most {self.available(s)}")
                for i, (s, q) in enumerate(lines)
                if self.available(s) < q
            ]
            raise refused
        rid = f"res_{len(self.reservations) + 1}"
        self.reservations[rid] = Reservation(rid, location_id, list(lines))
        for s, q in lines:
            self.reserved[s] = self.reserved.get(s, 0) + q
        self.requests[request_id] = rid
        return rid

    async def source(
        self,
        request_id: str,
        lines: list[tuple[str, int]],
        destination: tuple[float, float],
        ttl_seconds: int,
        reference: str,
        currency: str,
    ) -> list[Allocation]:
        """One store here: sourcing holds everything at loc_1, or refuses."""
        rid = await self.hold(request_id, "loc_1", lines, ttl_seconds, reference)
        return [Allocation("loc_1", list(lines), rid)]

    async def propose(
        self, lines: list[tuple[str, int]], destination: tuple[float, float], currency: str
    ) -> list[Allocation]:
        """What `source` would choose, holding nothing."""
        self._check()
        short = [s for s, q in lines if self.available(s) < q]
        if short:
            raise Conflict("not enough stock", "insufficient_stock", {"short": ",".join(short)})
        return [Allocation("loc_1", list(lines), "")]

    async def commit(self, request_id: str, reservation_id: str) -> None:
        self._check()
        if request_id in self.requests:
            return
        r = self.reservations.get(reservation_id)
        if r is None:
            raise NotFound("reservation", reservation_id)
        if r.status == "expired":  # as the service answers a commit after the hold's end
            raise Conflict("the reservation expired before it was committed", "reservation_expired")
        if r.status != "active":
            raise Conflict(f"the reservation is {r.status}", "reservation_not_active")
        for s, q in r.lines:
            self.reserved[s] -= q
            self.on_hand[s] -= q
        r.status = "committed"
        self.requests[request_id] = True

    async def release(self, request_id: str, reservation_id: str) -> None:
        self._check()
        if request_id in self.requests:
            return
        r = self.reservations.get(reservation_id)
        if r is None:
            raise NotFound("reservation", reservation_id)
        if r.status == "committed":  # as inventory answers: its units are sold
            raise Conflict("the reservation was committed", "reservation_committed")
        if r.status != "active":
            raise Conflict(f"the reservation is {r.status}", "reservation_not_active")
        for s, q in r.lines:
            self.reserved[s] -= q
        r.status = "released"
        self.requests[request_id] = True

    async def restock(
        self, request_id: str, location_id: str, lines: list[tuple[str, int]], reference: str
    ) -> None:
        self._check()
        if request_id in self.requests:
            return
        for s, q in lines:
            self.on_hand[s] = self.on_hand.get(s, 0) + q
        self.requests[request_id] = True


async def stopped_at(boundary: str, work: Awaitable[Any], limit: float = 20.0) -> None:
    """`work` (a coroutine, or a task already running) until it stops at the saga boundary
    `boundary` (`Policy.pause_at`: it waits there for ever, as a process killed there), then
    cancelled. Fails if it ends first or is not there within `limit` seconds. A fixed time
    instead (`wait_for(work, 0.5)`) stopped it wherever it was when a loaded machine was slow
    to get it there."""
    seen = len(saga.PAUSED)  # before `work` can run: a boundary of an earlier test is not it
    task = asyncio.ensure_future(work)
    deadline = time.monotonic() + limit
    try:
        while boundary not in saga.PAUSED[seen:]:
            if task.done():
                raise AssertionError(f"ended before {boundary}: {task.exception()!r}")
            assert time.monotonic() < deadline, f"never stopped at {boundary}"
            await asyncio.sleep(0.01)
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
