"""Checkout use case on in-memory fakes: totals, tax, discounts, declines, degraded promotion,
the customer id checked against the read model."""

from __future__ import annotations

import pytest

from pos_kit.errors import InvalidArgument, NotFound, Unavailable
from pos_kit.money import Money
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
from pos_order.service.ports import CheckoutCommand, DiscountQuote, PaymentResult

USD = "USD"


class FakeOrders:
    def __init__(self) -> None:
        self.saved: dict[tuple[str, str], Order] = {}

    async def add(self, order: Order) -> None:
        self.saved[("mer_a", order.id)] = order

    async def get(self, merchant_id: str, order_id: str) -> Order | None:
        return self.saved.get((merchant_id, order_id))

    async def list(self, merchant_id: str, limit: int, after_id: str | None) -> list[Order]:
        return [o for (m, _), o in self.saved.items() if m == merchant_id][:limit]


class FakeKnownCustomers:
    def __init__(self, *known: str) -> None:
        self.versions = dict.fromkeys(known, 1)

    async def contains(self, customer_id: str) -> bool:
        return customer_id in self.versions

    async def remember(self, customer_id: str, version: int) -> None:
        self.versions[customer_id] = max(version, self.versions.get(customer_id, 0))


class FakeUow:
    merchant_id = "mer_a"

    def __init__(self, *known_customers: str) -> None:
        self.orders = FakeOrders()
        self.customers = FakeKnownCustomers("cus_1", *known_customers)
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
    def __init__(self, approve: bool = True) -> None:
        self.approve = approve
        self.charges: list[tuple[str, Money]] = []

    async def charge(
        self,
        request_id: str,
        order_id: str,
        tender: Tender,
        amount: Money,
        cash_tendered: Money | None,
        card_token: str,
    ) -> PaymentResult:
        self.charges.append((request_id, amount))
        return PaymentResult(f"pay_{len(self.charges)}", self.approve, None)


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


async def checkout(
    uow: FakeUow,
    catalog: FakeCatalog,
    discounts: FixedDiscount,
    payments: FakePayments,
    customers: FakeCustomerService,
    cmd: CheckoutCommand,
) -> tuple[Order, PaymentResult]:
    """The checkout's three steps as the kit runs them: read, calls, record."""
    known = await handlers.is_known_customer(uow, cmd.customer_id)
    sale = await handlers.sell(
        f"ord_{cmd.request_id}", known, catalog, discounts, payments, customers, cmd
    )
    return await handlers.record_sale(uow, sale), sale.payment


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
    assert payments.charges == [] and uow.orders.saved == {}


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
