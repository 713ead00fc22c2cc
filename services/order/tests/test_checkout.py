"""Checkout use case on in-memory fakes: totals, tax, discounts, declines, degraded promotion,
the customer id checked against the read model, the same order id on every retry."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import pytest

from pos_kit.errors import InvalidArgument, NotFound, Unavailable
from pos_kit.idempotency import Claim
from pos_kit.money import Money
from pos_kit.paging import PageRequest
from pos_order.domain.model import (
    LineRequest,
    Order,
    OrderConfirmed,
    OrderLine,
    OrderStatus,
    PricedItem,
    SellingLocation,
    Tender,
    compute_totals,
)
from pos_order.service import handlers
from pos_order.service.ports import CheckoutCommand, CheckoutPorts, DiscountQuote, PaymentResult

USD = "USD"


class FakeOrders:
    """Bound to one merchant, like the real repository; `saved` may be shared by several."""

    def __init__(self, merchant: str, saved: dict[tuple[str, str], Order]) -> None:
        self.merchant = merchant
        self.saved = saved

    async def add(self, order: Order) -> None:
        self.saved[(self.merchant, order.id)] = order

    async def get(self, order_id: str) -> Order | None:
        return self.saved.get((self.merchant, order_id))

    async def list(self, page: PageRequest) -> list[Order]:
        mine = sorted((o for (m, _), o in self.saved.items() if m == self.merchant), key=by_id)
        return [o for o in mine if page.after is None or o.id > page.after][: page.fetch]


def by_id(order: Order) -> str:
    return order.id


class FakeKnownCustomers:
    def __init__(self, *known: str) -> None:
        self.versions = dict.fromkeys(known, 1)

    async def contains(self, customer_id: str) -> bool:
        return customer_id in self.versions

    async def remember(self, customer_id: str, version: int) -> None:
        self.versions[customer_id] = max(version, self.versions.get(customer_id, 0))


class FakeCheckoutStarts:
    """Keeps the first claim's time per request, as the table does."""

    def __init__(self) -> None:
        self.first: dict[str, datetime] = {}

    async def started_at(self, request_id: str) -> datetime:
        return self.first.setdefault(request_id, datetime.now(UTC))


class FakeUow:
    def __init__(
        self, *known_customers: str, merchant: str = "mer_a", saved: dict | None = None
    ) -> None:
        self.orders = FakeOrders(merchant, {} if saved is None else saved)
        self.customers = FakeKnownCustomers("cus_1", *known_customers)
        self.checkouts = FakeCheckoutStarts()
        self.published: list[object] = []

    def publish(self, event: object) -> None:
        self.published.append(event)


class FakeCatalog:
    def __init__(self, tax_bps: int = 825) -> None:
        self.location = SellingLocation("loc_1", USD, tax_bps)
        self.items = {
            "TEE": PricedItem("TEE", "T-shirt", Money(2500, USD)),
            "MUG": PricedItem("MUG", "Mug", Money(1200, USD)),
        }

    async def price_snapshot(
        self, location_id: str, skus: list[str]
    ) -> tuple[SellingLocation, dict[str, PricedItem]]:
        return self.location, {s: self.items[s] for s in skus}


class FixedDiscount:
    def __init__(self, amount: int, applied: bool = True) -> None:
        self.amount = amount
        self.applied = applied

    async def quote(self, lines: list[OrderLine], currency: str) -> DiscountQuote:
        return DiscountQuote(Money(self.amount, currency), self.applied)


class FakePayments:
    """Idempotent by request id like the payment service: the same request replays its charge,
    the same request id for another order is refused. `lose_next` charges and then fails, as
    when the answer is lost on its way back."""

    def __init__(self, approve: bool = True) -> None:
        self.approve = approve
        self.charges: list[tuple[str, Money]] = []
        self.locations: list[str] = []
        self.by_request: dict[str, tuple[str, PaymentResult]] = {}
        self.lose_next = False

    async def charge(
        self,
        request_id: str,
        order_id: str,
        location_id: str,
        tender: Tender,
        amount: Money,
        cash_tendered: Money | None,
        card_token: str,
    ) -> PaymentResult:
        self.locations.append(location_id)
        earlier = self.by_request.get(request_id)
        if earlier is not None:
            if earlier[0] != order_id:
                raise InvalidArgument("this request_id was already used for a different request")
            return earlier[1]
        self.charges.append((request_id, amount))
        result = PaymentResult(f"pay_{len(self.charges)}", self.approve, None)
        self.by_request[request_id] = (order_id, result)
        if self.lose_next:
            self.lose_next = False
            raise Unavailable("the payment service is unavailable", "payment_unavailable")
        return result


class FakeCustomerService:
    """The customer service's answer for ids the read model has not seen; counts the asks."""

    def __init__(self, *existing: str, down: bool = False) -> None:
        self.existing = set(existing)
        self.down = down
        self.asked: list[str] = []

    async def version_of(self, customer_id: str) -> int | None:
        self.asked.append(customer_id)
        if self.down:
            raise Unavailable("the customer service is unavailable", "customer_unavailable")
        return 3 if customer_id in self.existing else None


def _cmd(**over: object) -> CheckoutCommand:
    base: dict[str, object] = {
        "request_id": "req-1",
        "location_id": "loc_1",
        "customer_id": "cus_1",
        "lines": [LineRequest("TEE", 2), LineRequest("MUG", 1)],
        "tender": Tender.CARD,
        "cash_tendered": None,
        "card_token": "tok_visa",
    }
    base.update(over)
    return CheckoutCommand(**base)  # type: ignore[arg-type]


@dataclass(frozen=True)
class Answer:
    order: Order
    payment: PaymentResult


async def checkout(
    uow: FakeUow,
    catalog: FakeCatalog,
    discounts: FixedDiscount,
    payments: FakePayments,
    customers: FakeCustomerService,
    cmd: CheckoutCommand,
    claimed_at: datetime | None = None,
) -> tuple[Order, PaymentResult]:
    """The checkout's three steps as the kit runs them: read, calls, record. Each run is a new
    claim, as after a failed run's claim was dropped: its time is not the first run's."""
    steps = handlers.Checkout(cmd, CheckoutPorts(catalog, discounts, payments, customers), Answer)
    started = await steps.read(uow)
    claim = Claim("mer_a", cmd.request_id, claimed_at or datetime.now(UTC))
    answer = await steps.record(uow, await steps.call(claim, started))
    return answer.order, answer.payment


async def test_checkout_prices_discounts_taxes_and_confirms() -> None:
    uow, payments = FakeUow(), FakePayments()
    order, _ = await checkout(
        uow, FakeCatalog(), FixedDiscount(620), payments, FakeCustomerService(), _cmd()
    )
    # 2 x 25.00 + 12.00 = 62.00; minus 6.20; tax 8.25 % of 55.80 = 4.6035 -> 4.60
    assert order.totals.subtotal == Money(6200, USD)
    assert order.totals.discount == Money(620, USD)
    assert order.totals.tax == Money(460, USD)
    assert order.totals.total == Money(6040, USD)
    assert order.status is OrderStatus.CONFIRMED
    assert payments.charges == [("req-1/payment", Money(6040, USD))]
    assert payments.locations == ["loc_1"]  # the payment is listed under the sale's location
    assert [type(e) for e in uow.published] == [OrderConfirmed]
    assert ("mer_a", order.id) in uow.orders.saved


async def test_a_declined_payment_saves_the_order_but_confirms_nothing() -> None:
    uow = FakeUow()
    order, payment = await checkout(
        uow,
        FakeCatalog(),
        FixedDiscount(0),
        FakePayments(approve=False),
        FakeCustomerService(),
        _cmd(),
    )
    assert order.status is OrderStatus.PAYMENT_DECLINED
    assert not payment.captured
    assert uow.published == []


async def test_promotion_unavailable_sells_at_list_price_and_says_so() -> None:
    order, _ = await checkout(
        FakeUow(),
        FakeCatalog(),
        FixedDiscount(0, applied=False),
        FakePayments(),
        FakeCustomerService(),
        _cmd(),
    )
    assert order.discounts_applied is False
    assert order.totals.discount == Money(0, USD)


@pytest.mark.parametrize(
    ("override", "field"),
    [
        ({"lines": []}, "lines"),
        ({"lines": [LineRequest("TEE", 0)]}, "lines[0].quantity"),
        ({"lines": [LineRequest("", 1)]}, "lines[0].sku"),
        ({"lines": [LineRequest("TEE", 1), LineRequest("TEE", 2)]}, "lines"),
        ({"location_id": ""}, "location_id"),
        ({"tender": None}, "tender_type"),
    ],
)
async def test_bad_checkouts_are_refused_before_any_call(
    override: dict[str, object], field: str
) -> None:
    payments = FakePayments()
    uow = FakeUow()
    with pytest.raises(InvalidArgument) as err:
        await checkout(
            uow, FakeCatalog(), FixedDiscount(0), payments, FakeCustomerService(), _cmd(**override)
        )
    assert field in [v.field for v in err.value.violations]
    assert payments.charges == [] and uow.orders.saved == {} and uow.checkouts.first == {}


async def test_a_known_customer_needs_no_customer_call() -> None:
    customers = FakeCustomerService(down=True)
    order, _ = await checkout(
        FakeUow(), FakeCatalog(), FixedDiscount(0), FakePayments(), customers, _cmd()
    )
    assert order.customer_id == "cus_1" and customers.asked == []


async def test_a_sale_without_a_customer_asks_nobody() -> None:
    customers = FakeCustomerService(down=True)
    order, _ = await checkout(
        FakeUow(), FakeCatalog(), FixedDiscount(0), FakePayments(), customers, _cmd(customer_id="")
    )
    assert order.customer_id == "" and customers.asked == []


async def test_an_unseen_customer_is_asked_about_once_then_known() -> None:
    uow, customers = FakeUow(), FakeCustomerService("cus_new")
    for request_id in ("req-1", "req-2"):
        await checkout(
            uow,
            FakeCatalog(),
            FixedDiscount(0),
            FakePayments(),
            customers,
            _cmd(request_id=request_id, customer_id="cus_new"),
        )
    assert customers.asked == ["cus_new"]
    assert uow.customers.versions["cus_new"] == 3


async def test_a_customer_the_merchant_does_not_have_is_not_found_and_nothing_is_charged() -> None:
    uow, payments = FakeUow(), FakePayments()
    with pytest.raises(NotFound) as err:
        await checkout(
            uow,
            FakeCatalog(),
            FixedDiscount(0),
            payments,
            FakeCustomerService(),
            _cmd(customer_id="cus_elsewhere"),
        )
    assert err.value.code == "resource_missing"
    assert str(err.value) == "customer 'cus_elsewhere' was not found"
    assert payments.charges == [] and uow.orders.saved == {} and uow.published == []
    assert "cus_elsewhere" not in uow.customers.versions


async def test_an_unseen_customer_while_the_customer_service_is_down_is_refused() -> None:
    uow, payments = FakeUow(), FakePayments()
    with pytest.raises(Unavailable) as err:
        await checkout(
            uow,
            FakeCatalog(),
            FixedDiscount(0),
            payments,
            FakeCustomerService(down=True),
            _cmd(customer_id="cus_unseen"),
        )
    assert err.value.code == "customer_unavailable"
    assert payments.charges == [] and uow.orders.saved == {}


def test_a_discount_never_exceeds_the_subtotal() -> None:
    lines = [OrderLine("MUG", "Mug", 1, Money(1200, USD))]
    totals = compute_totals(lines, Money(5000, USD), 1000)
    assert totals.discount == Money(1200, USD)
    assert totals.total == Money(0, USD)


async def test_a_retry_after_a_failed_call_sells_under_the_first_runs_order_id() -> None:
    """The payment charged but its answer was lost: the run fails and its claim is dropped, so
    the retry is a new claim at a later time. It must still name the same order, or the payment
    service refuses the reused payment request id and the charge has no order."""
    uow, payments = FakeUow(), FakePayments()
    payments.lose_next = True
    first_claim = datetime.now(UTC)
    with pytest.raises(Unavailable):
        await checkout(
            uow,
            FakeCatalog(),
            FixedDiscount(0),
            payments,
            FakeCustomerService(),
            _cmd(),
            claimed_at=first_claim,
        )
    (charged_for, first_payment) = payments.by_request["req-1/payment"]

    order, payment = await checkout(
        uow,
        FakeCatalog(),
        FixedDiscount(0),
        payments,
        FakeCustomerService(),
        _cmd(),
        claimed_at=first_claim + timedelta(seconds=3),
    )

    assert order.id == charged_for
    assert payment == first_payment and len(payments.charges) == 1
    assert order.status is OrderStatus.CONFIRMED
    assert list(uow.orders.saved) == [("mer_a", charged_for)]


async def test_different_requests_get_different_order_ids() -> None:
    uow = FakeUow()
    at = datetime.now(UTC)
    ids = set()
    for request_id in ("req-1", "req-2"):
        order, _ = await checkout(
            uow,
            FakeCatalog(),
            FixedDiscount(0),
            FakePayments(),
            FakeCustomerService(),
            _cmd(request_id=request_id),
            claimed_at=at,
        )
        ids.add(order.id)
    assert len(ids) == 2


async def test_orders_are_read_and_listed_for_their_merchant_only() -> None:
    saved: dict[tuple[str, str], Order] = {}
    uow = FakeUow(saved=saved)
    order, _ = await checkout(
        uow, FakeCatalog(), FixedDiscount(0), FakePayments(), FakeCustomerService(), _cmd()
    )
    other = FakeUow(merchant="mer_b", saved=saved)
    assert await handlers.get_order(uow, order.id) is order
    with pytest.raises(NotFound):
        await handlers.get_order(other, order.id)
    assert await handlers.list_orders(uow, PageRequest(limit=10)) == [order]
    assert await handlers.list_orders(other, PageRequest(limit=10)) == []
