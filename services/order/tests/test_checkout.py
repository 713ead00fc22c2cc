"""Checkout use case on in-memory fakes: totals, tax, discounts, declines, degraded promotion,
the customer id checked against the read model, the same order id on every retry, and the
saga's order saved before any payment."""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta

import pytest
from fakes import (
    FakeCatalog,
    FakeCustomerService,
    FakePayments,
    FixedDiscount,
    Store,
    uow_factory,
)

from pos_kit.errors import Conflict, InvalidArgument, NotFound, Unavailable
from pos_kit.idempotency import Claim
from pos_kit.money import Money
from pos_kit.paging import PageRequest
from pos_order.adapters.messages import order_to_proto
from pos_order.domain.model import (
    FulfillmentRequest,
    FulfillmentType,
    LineRequest,
    Order,
    OrderCancelled,
    OrderCompleted,
    OrderConfirmed,
    OrderLine,
    OrderStatus,
    PricedItem,
    SagaState,
    Tender,
    TenderRecord,
    TenderState,
    Totals,
    compute_totals,
    validate_order,
)
from pos_order.domain.pricing import Buyer
from pos_order.service import saga
from pos_order.service.handlers.carts import CartCommand, calculate_cart
from pos_order.service.handlers.checkout import Checkout
from pos_order.service.handlers.queries import get_order, list_orders
from pos_order.service.ports import (
    CartContext,
    CheckoutCommand,
    CheckoutPorts,
    DiscountQuote,
    PaymentResult,
)
from pos_order.service.saga import Policy

USD = "USD"


@dataclass
class Shop:
    """The order service's store and the services it calls, all in memory."""

    store: Store = field(default_factory=Store)
    catalog: FakeCatalog = field(default_factory=FakeCatalog)
    discounts: FixedDiscount = field(default_factory=lambda: FixedDiscount(0))
    payments: FakePayments = field(default_factory=FakePayments)
    customers: FakeCustomerService = field(default_factory=FakeCustomerService)

    def __post_init__(self) -> None:
        self.store.customers[("mer_a", "cus_1")] = 1

    @property
    def ports(self) -> CheckoutPorts:
        return CheckoutPorts(self.catalog, self.discounts, self.payments, self.customers)

    @property
    def saved(self) -> dict[tuple[str, str], Order]:
        return self.store.orders


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
    payment: PaymentResult | None


async def checkout(
    shop: Shop, cmd: CheckoutCommand, claimed_at: datetime | None = None, merchant: str = "mer_a"
) -> tuple[Order, PaymentResult | None]:
    """The checkout's three steps as the kit runs them: read, calls, record. Each run is a new
    claim, as after a failed run's claim was dropped: its time is not the first run's."""
    new_uow = uow_factory(shop.store, merchant)
    steps = Checkout(cmd, shop.ports, new_uow, Policy(), Answer)
    async with new_uow() as uow:
        started = await steps.read(uow)
        await uow.commit()
    claim = Claim(merchant, cmd.request_id, claimed_at or datetime.now(UTC))
    sale = await steps.call(claim, started)
    async with new_uow() as uow:
        answer = await steps.record(uow, sale)
        await uow.commit()  # the kit commits what `record` wrote with the stored answer
    return answer.order, answer.payment


async def test_checkout_prices_discounts_taxes_and_confirms() -> None:
    shop = Shop(discounts=FixedDiscount(620))
    order, _ = await checkout(shop, _cmd())
    # 2 x 25.00 + 12.00 = 62.00; minus 6.20; tax 8.25 % of 55.80 = 4.6035 -> 4.60
    assert order.totals.subtotal == Money(6200, USD)
    assert order.totals.discount == Money(620, USD)
    assert order.totals.tax == Money(460, USD)
    assert order.totals.total == Money(6040, USD)
    # Sold and handed over at once: confirmed, and completed with it.
    assert order.status is OrderStatus.COMPLETED
    assert order.saga.state is SagaState.DONE
    # The payment's request id derives from the order, never from the caller's key.
    (request_id,) = shop.payments.requests
    assert request_id == f"{order.id}/payment/1"
    assert shop.payments.charges[0][1] == Money(6040, USD)
    assert shop.payments.locations == ["loc_1"]  # the payment is listed under the sale's location
    published = shop.store.published
    # A register sale is announced once paid (no order.created before its payment).
    assert [type(e) for e in published] == [OrderConfirmed, OrderCompleted]
    # Both carry the order as its transaction committed it: the version GET answers.
    assert {e.order.version for e in published} == {order.version}  # type: ignore[attr-defined]
    assert [c.status for c in order.timeline] == [
        "pending_payment",
        f"{order.fulfillments[0].id}:reserved",
        "confirmed",
        f"{order.fulfillments[0].id}:fulfilled",
        "completed",
    ]
    assert ("mer_a", order.id) in shop.saved


class SavedFirst(FakePayments):
    """Looks at the order store the moment it is asked to charge."""

    def __init__(self, store: Store) -> None:
        super().__init__()
        self.store = store
        self.seen: list[Order] = []

    async def charge(
        self, request_id: str, order_id: str, *args: object, **kwargs: bool
    ) -> PaymentResult:
        self.seen.append(self.store.orders[("mer_a", order_id)])
        return await super().charge(request_id, order_id, *args, **kwargs)  # type: ignore[arg-type]


async def test_the_order_and_its_saga_are_saved_before_the_card_is_charged() -> None:
    shop = Shop()
    shop.payments = SavedFirst(shop.store)
    await checkout(shop, _cmd())
    (seen,) = shop.payments.seen
    assert seen.status is OrderStatus.PENDING_PAYMENT
    assert seen.saga.tenders[0].state is TenderState.SENT
    assert seen.saga.tenders[0].request_id == f"{seen.id}/payment/1"


async def test_a_declined_payment_cancels_the_sale_and_confirms_nothing() -> None:
    shop = Shop(payments=FakePayments(approve=False))
    order, payment = await checkout(shop, _cmd())
    assert order.status is OrderStatus.CANCELLED
    assert order.cancel_reason == "payment_declined"
    assert payment is not None and payment.status == "failed"
    assert [type(e) for e in shop.store.published] == [OrderCancelled]


async def test_a_lost_card_answer_never_records_a_decline_and_confirms_once_settled() -> None:
    """The known defect: the answer lost (`tok_timeout`) left the order declined while the
    payment stayed pending, to be captured later: a charge for a declined order."""
    shop = Shop()
    with pytest.raises(Unavailable) as err:
        await checkout(shop, _cmd(card_token="tok_timeout"))
    assert err.value.code == "payment_pending"
    (order,) = shop.saved.values()
    assert order.status is OrderStatus.PENDING_PAYMENT
    assert order.saga.tenders[0].state is TenderState.PENDING
    # Retried while the answer is still unknown: the same answer, and no new version.
    with pytest.raises(Unavailable) as err:
        await checkout(shop, _cmd(card_token="tok_timeout"))
    assert err.value.code == "payment_pending"
    (again,) = shop.saved.values()
    assert again.version == order.version

    shop.payments.settle_pending()  # the payment reconciler captures it
    retried, _ = await checkout(shop, _cmd(card_token="tok_timeout"))
    assert retried.id == order.id and retried.status is OrderStatus.COMPLETED
    assert len(shop.payments.payments) == 1


async def test_a_till_retrying_all_along_finishes_the_sale_once_the_card_is_settled() -> None:
    """The payment service replays its first answer (pending) to the same request: the retry
    asks what the payment is now, so a till retrying every few seconds learns of the capture
    (it heard "pending" for as long as it kept retrying, the card captured)."""
    shop = Shop()
    shop.payments.replay_first_answer = True
    with pytest.raises(Unavailable):
        await checkout(shop, _cmd(card_token="tok_timeout"))
    with pytest.raises(Unavailable) as err:
        await checkout(shop, _cmd(card_token="tok_timeout"))
    assert err.value.code == "payment_pending"
    shop.payments.settle_pending()  # the payment reconciler captures it
    retried, _ = await checkout(shop, _cmd(card_token="tok_timeout"))
    assert retried.status is OrderStatus.COMPLETED
    assert len(shop.payments.payments) == 1


async def test_a_card_the_processor_never_saw_is_no_decline() -> None:
    """The payment service crashed mid-charge and its reconciler found the processor never had
    the request: the payment failed `processor_unavailable`. The till's retry hears the sale
    was not taken (409 `sale_cancelled`, reason `payment_unavailable`), not "declined"."""
    shop = Shop()
    shop.payments.replay_first_answer = True
    with pytest.raises(Unavailable):
        await checkout(shop, _cmd(card_token="tok_timeout"))
    shop.payments.settle_pending(unreached=True)
    with pytest.raises(Conflict) as err:
        await checkout(shop, _cmd(card_token="tok_timeout"))
    assert err.value.code == "sale_cancelled"
    assert err.value.metadata["cancel_reason"] == "payment_unavailable"
    (order,) = shop.saved.values()
    assert order.status is OrderStatus.CANCELLED and shop.payments.kept(order.id) == 0


async def test_the_resumer_names_a_card_the_processor_never_saw_unavailable() -> None:
    """The same crash, with no till retrying: the resumer finds the payment failed
    `processor_unavailable` and ends the sale as not taken, never as a declined card."""
    shop = Shop()
    with pytest.raises(Unavailable):
        await checkout(shop, _cmd(card_token="tok_timeout"))
    shop.payments.settle_pending(unreached=True)
    (order,) = shop.saved.values()
    resumed = await saga.resume(uow_factory(shop.store), shop.ports, order.id, Policy())
    assert resumed.status is OrderStatus.CANCELLED
    assert resumed.cancel_reason == "payment_unavailable"
    assert shop.payments.kept(order.id) == 0


async def test_the_resumer_confirms_a_sale_whose_lost_answer_settles_captured() -> None:
    shop = Shop()
    with pytest.raises(Unavailable):
        await checkout(shop, _cmd(card_token="tok_timeout"))
    (order,) = shop.saved.values()
    new_uow = uow_factory(shop.store)
    # Still pending at the payment service: the resumer waits, it never cancels a charge it
    # cannot see the end of.
    waited = await saga.resume(new_uow, shop.ports, order.id, Policy())
    assert waited.status is OrderStatus.PENDING_PAYMENT
    # ... and looks again soon, not after a whole window: the sale finishes a few seconds
    # after the payment service has settled the card.
    (idle_for,) = shop.store.touched.values()
    assert idle_for == Policy().abandon_after - saga.PENDING_REVISIT
    # Nothing learnt, nothing changed: no new version (a change feed would show it again).
    again = await saga.resume(new_uow, shop.ports, order.id, Policy())
    async with new_uow() as uow:
        stored = await uow.orders.get(order.id)
    assert stored is not None
    assert waited.version == again.version == stored.version == order.version
    shop.payments.settle_pending()
    resumed = await saga.resume(new_uow, shop.ports, order.id, Policy())
    assert resumed.status is OrderStatus.COMPLETED
    assert shop.payments.kept(order.id) == order.totals.total.amount


async def test_cash_taken_while_its_answer_was_lost_is_recorded_once() -> None:
    """The payment service took the cash but its answer never came back (as if it were away):
    the sale is confirmed with the cash to record, and the resumer's record, under the sale's
    own request id, is answered with that payment: one payment, never two."""
    shop = Shop()
    shop.payments.lose_next = True
    cash = _cmd(tender=Tender.CASH, card_token="", cash_tendered=Money(10_000, USD))
    order, payment = await checkout(shop, cash)
    assert order.status is OrderStatus.COMPLETED and payment is None
    assert [t.to_record for t in order.saga.tenders] == [True] and order.payment_ids == []
    (taken,) = order_to_proto(order).tenders_to_record
    assert taken.change_due.amount == 10_000 - order.totals.total.amount
    resumed = await saga.resume(uow_factory(shop.store), shop.ports, order.id, Policy())
    assert resumed.payment_ids == list(shop.payments.payments) == ["pay_1"]
    assert resumed.tenders_to_record == [] and resumed.balance_due == 0
    assert resumed.fulfillments[0].captured == order.totals.total.amount


def test_cash_to_record_is_matched_to_the_payment_found_for_it() -> None:
    """An order whose cash is to be recorded, found with a payment it does not know of (taken,
    its answer lost): that payment is the cash's, not another tender to compensate."""
    usd = Money(2500, USD)
    order = Order("ord_1", "loc_1", "", [], Totals(usd, Money(0, USD), Money(0, USD), usd), True)
    order.saga.tenders.append(TenderRecord(1, Tender.CASH, 2500, "ord_1/payment/1"))
    order.tender_taken_in_hand(1, 3000)
    found = PaymentResult("pay_9", "captured", None, captured_amount=2500, amount=2500)
    saga.sync_tenders(order, [found], give_up_sent=True)
    assert [(t.payment_id, t.to_record) for t in order.saga.tenders] == [("pay_9", False)]
    assert order.paid == 2500


async def test_the_resumer_cancels_a_sale_whose_card_never_reached_the_payment_service() -> None:
    shop = Shop()
    shop.payments.down = True
    with pytest.raises(Unavailable):
        await checkout(shop, _cmd())
    shop.payments.down = False
    (order,) = shop.saved.values()
    resumed = await saga.resume(uow_factory(shop.store), shop.ports, order.id, Policy())
    assert resumed.status is OrderStatus.CANCELLED and resumed.cancel_reason == "abandoned"
    assert shop.payments.payments == {}
    # The till's retry after that is refused, naming why: never the cancelled order answered
    # as a sale (a till would hand the goods over, unpaid).
    with pytest.raises(Conflict) as err:
        await checkout(shop, _cmd())
    assert err.value.code == "sale_cancelled"
    assert err.value.metadata == {"order_id": order.id, "cancel_reason": "abandoned"}
    assert shop.payments.payments == {}


async def test_a_zero_total_sale_confirms_without_a_payment() -> None:
    shop = Shop(discounts=FixedDiscount(10_000_000), catalog=FakeCatalog(tax_bps=0))
    order, payment = await checkout(shop, _cmd())
    assert order.totals.total == Money(0, USD)
    assert order.status is OrderStatus.COMPLETED and payment is None
    assert shop.payments.requests == {}


async def test_promotion_unavailable_sells_at_list_price_and_says_so() -> None:
    order, _ = await checkout(Shop(discounts=FixedDiscount(0, applied=False)), _cmd())
    assert order.discounts_applied is False
    assert order.totals.discount == Money(0, USD)
    # Said in the order itself, as every answer and event carries it: a code and words.
    (warning,) = order_to_proto(order).warnings
    assert warning.code == "discounts_unavailable" and "list price" in warning.message


async def test_an_order_priced_with_its_discounts_has_no_warning() -> None:
    order, _ = await checkout(Shop(discounts=FixedDiscount(620)), _cmd())
    assert order.discounts_applied is True
    assert list(order_to_proto(order).warnings) == []


@pytest.mark.parametrize(
    ("override", "field"),
    [
        ({"lines": []}, "lines"),
        ({"lines": [LineRequest("TEE", 0)]}, "lines[0].quantity"),
        ({"lines": [LineRequest("", 1)]}, "lines[0].sku"),
        ({"lines": [LineRequest("TEE", 1), LineRequest("TEE", 2)]}, "lines[1].sku"),
        ({"location_id": ""}, "location_id"),
        ({"tender": None}, "tender_type"),
        ({"card_token": ""}, "card_token"),
        ({"card_token": "4242"}, "card_token"),
        ({"tender": Tender.CASH, "card_token": ""}, "cash_tendered"),
    ],
)
async def test_bad_checkouts_are_refused_before_any_call(
    override: dict[str, object], field: str
) -> None:
    shop = Shop()
    with pytest.raises(InvalidArgument) as err:
        await checkout(shop, _cmd(**override))
    assert field in [v.field for v in err.value.violations]
    assert shop.payments.charges == [] and shop.saved == {} and shop.store.starts == {}


async def test_a_known_customer_needs_no_customer_call() -> None:
    shop = Shop(customers=FakeCustomerService(down=True))
    order, _ = await checkout(shop, _cmd())
    assert order.customer_id == "cus_1" and shop.customers.asked == []


async def test_a_sale_without_a_customer_asks_nobody() -> None:
    shop = Shop(customers=FakeCustomerService(down=True))
    order, _ = await checkout(shop, _cmd(customer_id=""))
    assert order.customer_id == "" and shop.customers.asked == []


async def test_an_unseen_customer_is_asked_about_once_then_known() -> None:
    shop = Shop(customers=FakeCustomerService("cus_new"))
    for request_id in ("req-1", "req-2"):
        await checkout(shop, _cmd(request_id=request_id, customer_id="cus_new"))
    assert shop.customers.asked == ["cus_new"]
    assert shop.store.customers[("mer_a", "cus_new")] == 3


async def test_a_customer_the_merchant_does_not_have_is_not_found_and_nothing_is_charged() -> None:
    shop = Shop()
    with pytest.raises(NotFound) as err:
        await checkout(shop, _cmd(customer_id="cus_elsewhere"))
    assert err.value.code == "resource_missing"
    assert str(err.value) == "customer 'cus_elsewhere' was not found"
    assert shop.payments.charges == [] and shop.saved == {} and shop.store.published == []
    assert ("mer_a", "cus_elsewhere") not in shop.store.customers


async def test_an_unseen_customer_while_the_customer_service_is_down_is_refused() -> None:
    shop = Shop(customers=FakeCustomerService(down=True))
    with pytest.raises(Unavailable) as err:
        await checkout(shop, _cmd(customer_id="cus_unseen"))
    assert err.value.code == "customer_unavailable"
    assert shop.payments.charges == [] and shop.saved == {}


def test_a_discount_never_exceeds_the_subtotal() -> None:
    lines = [OrderLine("MUG", "Mug", 1, Money(1200, USD))]
    totals = compute_totals(lines, Money(5000, USD), 1000)
    assert totals.discount == Money(1200, USD)
    assert totals.total == Money(0, USD)


async def test_a_retry_after_a_failed_call_sells_under_the_first_runs_order_id() -> None:
    """The payment charged but its answer was lost: the run fails and its claim is dropped, so
    the retry is a new claim at a later time. It must still name the same order, or the payment
    service refuses the reused payment request id and the charge has no order."""
    shop = Shop()
    shop.payments.lose_next = True
    first_claim = datetime.now(UTC)
    with pytest.raises(Unavailable):
        await checkout(shop, _cmd(), claimed_at=first_claim)
    (charged_for,) = [p.order_id for p in shop.payments.payments.values()]

    order, payment = await checkout(shop, _cmd(), claimed_at=first_claim + timedelta(seconds=3))

    assert order.id == charged_for
    assert payment is not None and len(shop.payments.charges) == 1
    assert order.status is OrderStatus.COMPLETED
    assert list(shop.saved) == [("mer_a", charged_for)]


async def test_different_requests_get_different_order_ids() -> None:
    shop = Shop()
    at = datetime.now(UTC)
    ids = set()
    for request_id in ("req-1", "req-2"):
        order, _ = await checkout(shop, _cmd(request_id=request_id), claimed_at=at)
        ids.add(order.id)
    assert len(ids) == 2


async def test_orders_are_read_and_listed_for_their_merchant_only() -> None:
    shop = Shop()
    order, _ = await checkout(shop, _cmd())
    mine, other = uow_factory(shop.store)(), uow_factory(shop.store, "mer_b")()
    assert (await get_order(mine, order.id)).id == order.id
    with pytest.raises(NotFound):
        await get_order(other, order.id)
    assert [o.id for o in await list_orders(mine, PageRequest(limit=10))] == [order.id]
    assert await list_orders(other, PageRequest(limit=10)) == []


async def test_inventory_down_a_register_sale_is_priced_from_the_read_model() -> None:
    shop = Shop()
    first, _ = await checkout(shop, _cmd(request_id="req-1"))  # the location is remembered
    async with uow_factory(shop.store)() as uow:
        await uow.prices.remember_prices(
            [(shop.catalog.items["TEE"], 1), (shop.catalog.items["MUG"], 1)]
        )
    shop.catalog.down = True
    order, _ = await checkout(shop, _cmd(request_id="req-2"))
    assert order.status is OrderStatus.COMPLETED
    assert order.totals == first.totals  # the same prices and tax as when inventory answered


async def test_inventory_down_an_unknown_sku_or_a_new_store_is_a_503() -> None:
    shop = Shop()
    shop.catalog.down = True
    with pytest.raises(Unavailable) as err:
        await checkout(shop, _cmd())  # never sold there: no tax rate known
    assert err.value.code == "inventory_unavailable"
    assert shop.saved == {} and shop.payments.charges == []


async def test_cash_short_of_the_total_is_refused_before_the_order_is_saved() -> None:
    shop = Shop()
    short = _cmd(tender=Tender.CASH, card_token="", cash_tendered=Money(100, USD))
    with pytest.raises(InvalidArgument) as err:
        await checkout(shop, short)
    assert "cash_tendered.amount" in [v.field for v in err.value.violations]
    assert shop.saved == {} and shop.payments.charges == [] and shop.store.published == []


async def test_a_sale_changed_while_its_card_was_charged_is_confirmed_on_the_changed_order() -> (
    None
):
    """The confirmation is written without reading the order back when nothing changed it
    since this request saved it; when something did (here a note of another hand), the row is
    read locked and confirmed as it now is, keeping that change."""
    shop = Shop()
    new_uow = uow_factory(shop.store, "mer_a")
    steps = Checkout(_cmd(), shop.ports, new_uow, Policy(), Answer)
    async with new_uow() as uow:
        started = await steps.read(uow)
        await uow.commit()
    sale = await steps.call(Claim("mer_a", "req-1", datetime.now(UTC)), started)
    assert sale.settle is not None and steps.confirmed_in_record
    saved = sale.order.version

    def annotate(o: Order) -> None:
        o.notes = "changed meanwhile"

    await saga.change(new_uow, sale.order.id, annotate)
    async with new_uow() as uow:
        answer = await steps.record(uow, sale)
        await uow.commit()
    order = answer.order
    assert order.status is OrderStatus.COMPLETED and order.saga.state is SagaState.DONE
    assert order.notes == "changed meanwhile"
    assert order.version == saved + 2
    async with new_uow() as uow:
        stored = await uow.orders.get(order.id)
    assert stored is not None
    assert (stored.status, stored.notes, stored.version) == (
        OrderStatus.COMPLETED,
        "changed meanwhile",
        saved + 2,
    )


async def test_an_unchanged_sale_is_confirmed_on_the_order_as_this_request_saved_it() -> None:
    shop = Shop()
    order, _ = await checkout(shop, _cmd())
    async with uow_factory(shop.store, "mer_a")() as uow:
        stored = await uow.orders.get(order.id)
    assert stored is not None
    assert (stored.status, stored.version) == (OrderStatus.COMPLETED, order.version)
    assert [type(e) for e in shop.store.published] == [OrderConfirmed, OrderCompleted]


def test_a_tender_awaiting_its_answer_is_spoken_for_until_declined() -> None:
    """Two tenders sent at once never both take the balance: the second finds the first's
    amount spoken for; once the first is declined, the balance is open again."""
    lines = [OrderLine("TEE", "Tee", 2, Money(2500, USD), "F1")]
    totals = compute_totals(lines, Money(0, USD), 0)
    order = Order("ord_t", "loc_1", "", lines, totals, discounts_applied=True)
    first = order.add_tender(Tender.CARD, order.unclaimed, "req-1")
    assert (first.amount, order.unclaimed, order.balance_due) == (5000, 0, 5000)
    with pytest.raises(Conflict) as err:
        order.add_tender(Tender.CARD, 5000, "req-2")
    assert err.value.code == "payment_pending"
    order.tender_answered(first.n, "pay_1", TenderState.FAILED)
    second = order.add_tender(Tender.CARD, order.unclaimed, "req-3")
    assert second.amount == 5000
    order.tender_answered(second.n, "pay_2", TenderState.AUTHORIZED)
    with pytest.raises(Conflict) as err:
        order.add_tender(Tender.CARD, 1, "req-4")
    assert err.value.code == "balance_covered"
    assert order.balance_due == 0


async def test_a_register_sale_shows_its_capture_on_its_fulfilment() -> None:
    """Captured at once in store: the in-store fulfilment shows what was captured for it, as
    a web order's does after its confirmation."""
    order, payment = await checkout(Shop(), _cmd())
    assert payment is not None and payment.captured_amount == order.totals.total.amount
    (f,) = order.fulfillments
    assert f.captured == f.amount == order.totals.total.amount


def test_a_cancelled_order_is_paid_what_was_captured_and_not_refunded() -> None:
    """Cancelled after one fulfilment's share was captured: that share refunded, the rest of
    the authorisation voided. Nothing is paid and nothing is due (the authorised 3000 less the
    refund is not money the customer pays)."""
    lines = [OrderLine("TEE", "Tee", 3, Money(1000, USD), "F1")]
    order = Order("ord_c", "loc_1", "", lines, compute_totals(lines, Money(0, USD), 0), True)
    tender = order.add_tender(Tender.CARD, 3000, "req-1")
    order.tender_answered(tender.n, "pay_1", TenderState.AUTHORIZED)
    tender.captured, tender.refunded = 1000, 1000
    assert (order.paid, order.balance_due) == (2000, 1000)  # still pending: 2000 held
    order.begin_cancel("customer")
    order.cancelled(datetime.now(UTC))
    assert (order.paid, order.balance_due) == (0, 0)
    tender.refunded = 400  # had the refund been partial, what stays captured is paid
    assert (order.paid, order.balance_due) == (600, 0)


async def test_a_sale_beyond_the_largest_total_is_refused_and_nothing_is_charged() -> None:
    shop = Shop()
    shop.catalog.items["GOLD"] = PricedItem("GOLD", "Gold bar", Money(10**12, USD))
    with pytest.raises(InvalidArgument) as err:
        await checkout(shop, _cmd(lines=[LineRequest("GOLD", 2)]))
    assert [v.field for v in err.value.violations] == ["lines"]
    assert shop.payments.charges == [] and shop.saved == {}
    # The largest total itself is a sale: at a store with no tax (8.25 % would take its total
    # past it, `test_a_sale_whose_tax_takes_it_past_the_largest_total_is_refused_as_its_preview`).
    shop.catalog.location = replace(shop.catalog.location, tax_rate_bps=0)
    order, _ = await checkout(shop, _cmd(request_id="req-2", lines=[LineRequest("GOLD", 1)]))
    assert order.totals.total == Money(10**12, USD)


def test_a_cancelled_order_refuses_confirmation_in_words_about_confirming() -> None:
    lines = [OrderLine("TEE", "Tee", 1, Money(1000, USD), "F1")]
    order = Order("ord_x", "loc_1", "", lines, compute_totals(lines, Money(0, USD), 0), True)
    order.begin_cancel("customer")
    order.cancelled(datetime.now(UTC))
    with pytest.raises(Conflict) as err:
        order.request_confirmation()
    assert err.value.code == "order_not_pending"
    assert "confirmed" in str(err.value) and "tenders" not in str(err.value)


def test_an_address_on_a_pickup_is_refused_as_a_mixed_up_fulfilment() -> None:
    lines = [LineRequest("TEE", 1)]
    pickup = FulfillmentRequest(FulfillmentType.PICKUP, "loc_1", "1 Main St")
    with pytest.raises(InvalidArgument) as err:
        validate_order("web", "loc_1", lines, [pickup], {})
    assert [v.field for v in err.value.violations] == ["fulfillments[0].ship_to"]
    shipment = FulfillmentRequest(FulfillmentType.SHIPMENT, "loc_1", "1 Main St")
    validate_order("web", "loc_1", lines, [shipment], {})  # refuses nothing


def test_an_in_store_fulfilment_at_another_store_is_refused() -> None:
    """In store is where the sale is made (goods in hand, never refused for stock); at another
    store nobody hands them over and nothing is held, so a web order sold units that store did
    not have and its on hand went negative. A pickup or a shipment from there is the way."""
    lines = [LineRequest("TEE", 5)]
    elsewhere = FulfillmentRequest(FulfillmentType.IN_STORE, "loc_2")
    with pytest.raises(InvalidArgument) as err:
        validate_order("web", "loc_1", lines, [elsewhere], {})
    assert [v.field for v in err.value.violations] == ["fulfillments[0].location_id"]
    for fine in (FulfillmentRequest(FulfillmentType.IN_STORE, "loc_1"),
                 FulfillmentRequest(FulfillmentType.PICKUP, "loc_2")):  # fmt: skip
        validate_order("web", "loc_1", lines, [fine], {})  # refuses nothing


class SeenCarts(FixedDiscount):
    """Records the cart each quote was asked for: whose it is, and their groups."""

    def __init__(self) -> None:
        super().__init__(0)
        self.carts: list[CartContext | None] = []

    async def quote(
        self, lines: list[OrderLine], currency: str, cart: CartContext | None = None
    ) -> DiscountQuote:
        self.carts.append(cart)
        return await super().quote(lines, currency, cart)


def _merged_shop() -> tuple[Shop, SeenCarts]:
    """cus_dup was merged into cus_1 (a VIP), as the read model learnt from the merge event."""
    seen = SeenCarts()
    shop = Shop(discounts=seen)
    shop.store.buyers[("mer_a", "cus_1")] = Buyer(("grp_vip",))
    shop.store.customers[("mer_a", "cus_dup")] = 1
    shop.store.merges[("mer_a", "cus_dup")] = "cus_1"
    return shop, seen


async def test_a_sale_naming_a_merged_duplicate_is_recorded_under_the_survivor() -> None:
    shop, seen = _merged_shop()
    order, _ = await checkout(shop, _cmd(customer_id="cus_dup"))
    assert order.customer_id == "cus_1"
    assert shop.store.published[0].order.customer_id == "cus_1"  # type: ignore[attr-defined]
    # Priced as the survivor: their groups, their coupons; no call to the customer service.
    (cart,) = seen.carts
    assert cart is not None and cart.customer_id == "cus_1" and cart.customer_groups == ("grp_vip",)
    assert shop.customers.asked == []


async def test_a_merged_duplicate_the_read_model_has_not_seen_is_asked_to_its_survivor() -> None:
    shop = Shop(customers=FakeCustomerService("cus_9"))
    shop.customers.merged["cus_dup"] = "cus_9"
    order, _ = await checkout(shop, _cmd(customer_id="cus_dup"))
    assert order.customer_id == "cus_9"
    assert shop.customers.asked == ["cus_dup", "cus_9"]
    assert shop.store.customers[("mer_a", "cus_9")] == 3  # the survivor is known now


async def test_the_cart_preview_of_a_merged_duplicate_is_priced_for_the_survivor() -> None:
    shop, seen = _merged_shop()
    cmd = CartCommand("loc_1", "register", "cus_dup", [LineRequest("TEE", 1)], [])
    await calculate_cart(cmd, shop.ports, uow_factory(shop.store))
    (cart,) = seen.carts
    assert cart is not None and cart.customer_id == "cus_1" and cart.customer_groups == ("grp_vip",)


def test_a_sku_repeated_in_one_fulfilment_names_the_repeat() -> None:
    """The later line is the one to fix: `lines[2].sku`, with the line it repeats (an
    exchange names its `new_lines[i].sku` the same way); the same SKU in another fulfilment is
    a line of its own."""
    from pos_order.domain.model import validate_lines

    lines = [LineRequest("TEE", 1), LineRequest("MUG", 1), LineRequest("TEE", 2)]
    refused = validate_lines(lines)
    assert [v.field for v in refused] == ["lines[2].sku"]
    assert "line 0" in refused[0].description
    split = [LineRequest("TEE", 1), LineRequest("TEE", 2, fulfillment=1)]
    assert validate_lines(split, fulfillments=2) == []


async def test_a_sale_whose_tax_takes_it_past_the_largest_total_is_refused_as_its_preview() -> None:
    """A bar of gold at the largest order total (10^12 minor units), taxed at 8.25 %: its
    goods are within the limit, its total is not. The preview, the checkout and an order
    refuse it alike, a 400 naming `lines`, before anything is charged or saved. Before, the
    limit was on the goods alone: the preview answered the total, an order was made, and the
    checkout's payment was refused naming the payment's `amount.amount`, a field the request
    does not have."""
    shop = Shop()
    shop.catalog.items["GOLD"] = PricedItem("GOLD", "Gold bar", Money(10**12, USD))
    lines = [LineRequest("GOLD", 1)]
    with pytest.raises(InvalidArgument) as previewed:
        await calculate_cart(
            CartCommand("loc_1", "register", "", lines, []), shop.ports, uow_factory(shop.store)
        )
    with pytest.raises(InvalidArgument) as sold:
        await checkout(shop, _cmd(lines=lines, customer_id=""))
    assert [v.field for v in previewed.value.violations] == ["lines"]
    assert [v.field for v in sold.value.violations] == ["lines"]
    assert shop.payments.charges == [] and shop.saved == {}
    # Just within it, tax and all: sold.
    shop.catalog.items["GOLD"] = PricedItem("GOLD", "Gold bar", Money(923_787_528_868, USD))
    order, _ = await checkout(shop, _cmd(request_id="req-2", lines=lines, customer_id=""))
    assert order.totals.total.amount <= 10**12
