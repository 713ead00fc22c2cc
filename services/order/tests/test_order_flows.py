"""Order flows on in-memory fakes, each one path the state machine may take only rarely: a
pickup captured at confirmation then cancelled (refunded, back in stock), a pickup expiring
after its capture, a split shipment capturing each share, short stock holding nothing.
The machine's rules and invariants drive and check them (test_lifecycle_machine.py)."""

from __future__ import annotations

import asyncio
from dataclasses import replace
from datetime import UTC, datetime
from typing import Any

import pytest
from fakes import FakePayments, stopped_at
from test_coupons_saga import CouponDiscount, FakeCoupons
from test_lifecycle_machine import UNITS, OrderLifecycle, at_till

from pos_kit.errors import Conflict, DomainError, ErrorKind, InvalidArgument, Unavailable
from pos_kit.idempotency import Claim
from pos_kit.money import Money
from pos_order.domain.model import (
    Allocation,
    FulfillmentRequest,
    FulfillmentStatus,
    FulfillmentType,
    HoldState,
    LineRequest,
    Order,
    OrderCreated,
    OrderLine,
    OrderStatus,
    SagaState,
    Tender,
    TenderState,
    Totals,
    build_fulfillments,
)
from pos_order.service import saga
from pos_order.service.handlers import confirmation, drafts, fulfillment, payment_changes, tenders
from pos_order.service.ports import CreateOrderCommand, PaymentResult, TenderAsk


class Pick:
    """Stands for hypothesis' `data`: draws the value it was given."""

    def __init__(self, value: Any) -> None:
        self.value = value

    def draw(self, _: object) -> Any:
        return self.value


def _check(m: OrderLifecycle) -> None:
    m.money_is_what_the_customer_keeps_paying_for()
    m.stock_is_held_sold_or_released()


def _paid_pickup(m: OrderLifecycle, quantity: int = 2) -> str:
    m.create("pickup", quantity)
    order_id = m.order_ids[-1]
    m.tender(Pick(m.order(order_id)), "tok_visa", False)
    _check(m)
    return order_id


def test_a_pickup_captured_at_confirmation_then_cancelled_is_refunded_and_restocked() -> None:
    m = OrderLifecycle()
    m.merchant_settings(True)
    order_id = _paid_pickup(m)
    m.confirm(Pick(m.order(order_id)))
    assert m.payments.kept(order_id) == m.order(order_id).totals.total.amount
    assert m.stock.on_hand["TEE"] == UNITS - 2
    _check(m)
    m.cancel(Pick(m.order(order_id)))
    assert m.order(order_id).status is OrderStatus.CANCELLED
    assert m.payments.kept(order_id) == 0 and m.payments.held(order_id) == 0
    # Refunded in full: the order says it is paid nothing, and owes nothing.
    assert (m.order(order_id).paid, m.order(order_id).balance_due) == (0, 0)
    assert m.stock.on_hand["TEE"] == UNITS and m.stock.available("TEE") == UNITS
    _check(m)


def test_a_pickup_expiring_after_its_capture_is_refunded_and_restocked() -> None:
    m = OrderLifecycle()
    m.merchant_settings(True)
    order_id = _paid_pickup(m)
    m.confirm(Pick(m.order(order_id)))
    m.expire(Pick(m.order(order_id)))
    order = m.order(order_id)
    assert order.status is OrderStatus.CANCELLED and order.cancel_reason == "expired"
    assert m.payments.kept(order_id) == 0
    assert m.stock.on_hand["TEE"] == UNITS
    _check(m)


def test_a_pickup_captured_at_hand_over_expires_with_its_authorisation_voided() -> None:
    m = OrderLifecycle()
    order_id = _paid_pickup(m)
    m.confirm(Pick(m.order(order_id)))
    assert m.payments.kept(order_id) == 0 and m.payments.held(order_id) > 0
    m.expire(Pick(m.order(order_id)))
    assert m.payments.held(order_id) == 0
    _check(m)


def test_a_split_shipment_captures_each_share_at_shipment() -> None:
    m = OrderLifecycle()
    m.create("split", 2)
    order_id = m.order_ids[-1]
    m.tender(Pick(m.order(order_id)), "tok_visa", True)  # part of it
    m.tender(Pick(m.order(order_id)), "tok_declined", False)  # declined: still pending
    assert m.order(order_id).status is OrderStatus.PENDING_PAYMENT
    m.tender(Pick(m.order(order_id)), "tok_visa", False)  # the rest
    m.confirm(Pick(m.order(order_id)))
    first, second = m.order(order_id).fulfillments
    m.step(Pick((order_id, first.id, FulfillmentStatus.PICKED)))
    m.step(Pick((order_id, first.id, FulfillmentStatus.SHIPPED)))
    assert m.payments.kept(order_id) == first.amount
    _check(m)
    # Shipped again as shipped: a retry; with another tracking number: refused, never ignored.
    shipped = m.order(order_id)
    f = shipped.fulfillments[0]
    assert shipped.step_fulfillment(f.id, FulfillmentStatus.SHIPPED, f.carrier, f.tracking_number)
    with pytest.raises(Conflict) as err:
        shipped.step_fulfillment(f.id, FulfillmentStatus.SHIPPED, f.carrier, "ANOTHER")
    assert err.value.code == "fulfillment_already_shipped"
    # A carrier or tracking number given at another step is refused, never dropped.
    for to in (FulfillmentStatus.PICKED, FulfillmentStatus.DELIVERED):
        with pytest.raises(InvalidArgument) as bad:
            shipped.step_fulfillment(second.id, to, tracking_number="1Z")
        assert [v.field for v in bad.value.violations] == ["tracking_number"]
    m.step(Pick((order_id, second.id, FulfillmentStatus.PICKED)))
    m.step(Pick((order_id, second.id, FulfillmentStatus.SHIPPED)))
    for f in (first, second):
        m.step(Pick((order_id, f.id, FulfillmentStatus.DELIVERED)))
    order = m.order(order_id)
    assert order.status is OrderStatus.COMPLETED
    assert m.payments.kept(order_id) == order.totals.total.amount
    _check(m)


def test_short_stock_refuses_the_order_holds_nothing_and_keeps_no_order() -> None:
    m = OrderLifecycle()
    _paid_pickup(m, quantity=3)
    m.create("pickup", 3)
    kept, told = list(m.store.orders), list(m.store.published)
    m.create("shipment", 1)  # refused: the three left are held
    assert list(m.store.orders) == kept and m.store.published == told
    assert m.stock.available("TEE") == 0
    _check(m)


def _order_request(
    request_id: str, lines: list[LineRequest], fulfillments: list[FulfillmentRequest]
) -> CreateOrderCommand:
    return CreateOrderCommand(request_id, "web", "loc_1", "", lines, fulfillments)


SOURCED = FulfillmentRequest(FulfillmentType.SHIPMENT, "", "1 Main St", (39.7, -89.6))


def _create(m: OrderLifecycle, cmd: CreateOrderCommand) -> Any:
    return m._attempt(lambda: drafts.CreateOrder(cmd, m.ports, m.new_uow, m.policy, lambda o: o))


def _created(m: OrderLifecycle) -> list[Order]:
    return [e.order for e in m.store.published if isinstance(e, OrderCreated)]


def test_a_sourced_shipment_is_announced_once_held_with_the_store_sourcing_picked() -> None:
    """`order.created` waits for the holds: a ship-from-store order is announced with its
    store, never with the empty one it had before sourcing (which the public model refused)."""
    m = OrderLifecycle()
    order = _create(m, _order_request("req-src", [LineRequest("TEE", 2)], [SOURCED]))
    assert isinstance(order, Order), order
    (told,) = _created(m)
    assert told.id == order.id and told.version == order.version
    ((f),) = told.fulfillments
    assert (f.location_id, f.reservation_id, f.hold) == ("loc_1", "res_1", HoldState.HELD)
    assert not m.order(order.id).saga.announce_when_held
    # Announced once: a retry of the request, or any later step, says nothing new of it.
    again = _create(m, _order_request("req-src", [LineRequest("TEE", 2)], [SOURCED]))
    assert again.id == order.id and len(_created(m)) == 1


def test_an_in_store_order_is_announced_when_saved_as_before() -> None:
    m = OrderLifecycle()
    in_store = FulfillmentRequest(FulfillmentType.IN_STORE, "loc_1")
    order = _create(m, _order_request("req-here", [LineRequest("TEE", 1)], [in_store]))
    assert [o.id for o in _created(m)] == [order.id]
    assert _created(m)[0].version == 1


def test_a_refused_sourced_shipment_is_neither_kept_nor_announced() -> None:
    """No store has the units: the 409 stands, and no order is kept (cancelled, with no
    store, it once made every list of the merchant's orders a 500) or announced."""
    m = OrderLifecycle()
    cmd = _order_request("req-short", [LineRequest("TEE", UNITS + 1)], [SOURCED])
    refused = _create(m, cmd)
    assert isinstance(refused, DomainError) and refused.code == "insufficient_stock"
    assert m.store.orders == {} and m.store.published == []
    assert m.stock.available("TEE") == UNITS


def test_a_refusal_after_another_fulfilment_was_held_releases_it_and_a_retry_is_new() -> None:
    """The pickup is held, the shipment's mugs are short: the pickup's hold is released and
    the order withdrawn. The request's retry, once mugs came in, is an order of another id:
    under the first one's, inventory would answer the pickup's hold with the released one."""
    m = OrderLifecycle()
    pickup = FulfillmentRequest(FulfillmentType.PICKUP, "loc_1")
    shipment = FulfillmentRequest(FulfillmentType.SHIPMENT, "loc_1", "1 Main St")
    cmd = _order_request(
        "req-two", [LineRequest("TEE", 2, 0), LineRequest("MUG", 1, 1)], [pickup, shipment]
    )
    # Both starts stamped the same moment, as a retry within the first one's millisecond (or
    # microsecond) is: the retry's id differs all the same (the start's own nonce).
    m.store.clock = lambda: datetime(2026, 12, 4, 12, 0, 0, 123456, tzinfo=UTC)
    refused = _create(m, cmd)  # no mugs at all
    assert isinstance(refused, DomainError) and refused.code == "insufficient_stock"
    # Named as the order's line (the shipment's hold asked for it as its first line).
    assert [v.field for v in refused.violations] == ["lines[1].quantity"]
    assert m.store.orders == {} and m.store.published == []
    (tee,) = m.stock.reservations.values()
    assert tee.status == "released" and m.stock.available("TEE") == UNITS
    (refused_id,) = {key.split("/")[0] for key in m.stock.requests}

    m.stock.on_hand["MUG"] = 1
    order = _create(m, cmd)  # at once
    assert isinstance(order, Order), order
    assert order.id != refused_id
    assert order.status is OrderStatus.PENDING_PAYMENT
    holds = [m.stock.reservations[f.reservation_id] for f in order.fulfillments]
    assert [r.status for r in holds] == ["active", "active"]
    assert (m.stock.available("TEE"), m.stock.available("MUG")) == (UNITS - 2, 0)
    assert [o.id for o in _created(m)] == [order.id]


def test_a_refused_order_gives_its_coupon_back_before_it_is_withdrawn() -> None:
    m = OrderLifecycle()
    coupons = FakeCoupons()
    m.ports = replace(m.ports, discounts=CouponDiscount(), coupons=coupons)
    cmd = replace(
        _order_request("req-coupon", [LineRequest("TEE", UNITS + 1)], [SOURCED]),
        coupon_codes=("SAVE10",),
    )
    refused = _create(m, cmd)
    assert isinstance(refused, DomainError) and refused.code == "insufficient_stock"
    assert m.store.orders == {} and m.store.published == []
    ((order_id, state),) = coupons.reserved.items()
    assert state == "released" and f"{order_id}/coupons/release" in coupons.requests


def test_a_crash_while_a_refused_order_is_withdrawn_leaves_it_to_the_resumer() -> None:
    """Never a hold without a live order: the order is recorded compensating before anything
    is given back, and a driver gone before its row is removed leaves it to the resumer,
    which releases the hold and cancels it."""
    m = OrderLifecycle()
    pickup = FulfillmentRequest(FulfillmentType.PICKUP, "loc_1")
    shipment = FulfillmentRequest(FulfillmentType.SHIPMENT, "loc_1", "1 Main St")
    cmd = _order_request(
        "req-crash", [LineRequest("TEE", 2, 0), LineRequest("MUG", 1, 1)], [pickup, shipment]
    )
    stopping = replace(m.policy, pause_at=frozenset({"compensating"}))
    steps = drafts.CreateOrder(cmd, m.ports, m.new_uow, stopping, lambda o: o)

    async def dies() -> None:
        async with m.new_uow() as uow:
            read = await steps.read(uow)
            await uow.commit()
        claim = Claim("mer_a", cmd.request_id, datetime.now(UTC))
        await stopped_at("compensating", steps.call(claim, read))

    asyncio.run(dies())
    (order,) = m.store.orders.values()
    assert order.saga.state is SagaState.COMPENSATING
    assert m.stock.available("TEE") == UNITS - 2  # its hold, on a live order
    healed = asyncio.run(saga.resume(m.new_uow, m.ports, order.id, m.policy))
    assert healed.status is OrderStatus.CANCELLED
    assert m.stock.available("TEE") == UNITS


def test_a_shipment_without_a_store_is_sourced_and_split_by_what_each_store_holds() -> None:
    """The domain side of a split: the lines re-cut per store, each its own fulfilment with its
    share of the amount, the shares adding up to the fulfilment's."""
    usd = "USD"
    lines = [OrderLine("TEE", "T-shirt", 5, Money(1000, usd))]
    total = Money(5500, usd)
    order = Order("ord_1", "loc_1", "", lines, Totals(total, Money(0, usd), total, total), True)
    wanted = [FulfillmentRequest(FulfillmentType.SHIPMENT, "", "1 Main St", (39.7, -89.6))]
    order.fulfillments = build_fulfillments("ord_1", wanted, lines, [LineRequest("TEE", 5)], 5500)
    (f,) = order.fulfillments
    assert f.sourced and f.hold is HoldState.SENT
    order.source(f.id, [Allocation("loc_a", [("TEE", 3)], "res_a"),
                        Allocation("loc_b", [("TEE", 2)], "res_b")])  # fmt: skip
    a, b = order.fulfillments
    assert (a.location_id, a.reservation_id, b.location_id, b.reservation_id) == (
        "loc_a", "res_a", "loc_b", "res_b")  # fmt: skip
    assert [ln.quantity for ln in order.lines_of(a)] == [3]
    assert [ln.quantity for ln in order.lines_of(b)] == [2]
    assert (a.amount, b.amount) == (3300, 2200)
    assert a.hold is HoldState.HELD and b.hold is HoldState.HELD


def test_a_split_shipments_lines_keep_the_order_the_buyer_gave() -> None:
    """Sourced over two stores, each line's parts stand where the line stood (a partner that
    shows or matches lines in the order it sent them still can), not grouped by store."""
    usd = "USD"
    lines = [
        OrderLine("MUG", "Mug", 1, Money(800, usd), id="ln_1"),
        OrderLine("TEE", "T-shirt", 3, Money(1000, usd), id="ln_2"),
        OrderLine("CAP", "Cap", 1, Money(1200, usd), id="ln_3"),
    ]
    total = Money(5000, usd)
    order = Order("ord_1", "loc_1", "", lines, Totals(total, Money(0, usd), total, total), True)
    wanted = [FulfillmentRequest(FulfillmentType.SHIPMENT, "", "1 Main St", (39.7, -89.6))]
    asked = [LineRequest("MUG", 1), LineRequest("TEE", 3), LineRequest("CAP", 1)]
    order.fulfillments = build_fulfillments("ord_1", wanted, lines, asked, 5000)
    (f,) = order.fulfillments
    order.source(f.id, [Allocation("loc_a", [("TEE", 1), ("CAP", 1)], "res_a"),
                        Allocation("loc_b", [("MUG", 1), ("TEE", 2)], "res_b")])  # fmt: skip
    a, b = order.fulfillments
    assert [(ln.id, ln.sku, ln.quantity, ln.fulfillment_id) for ln in order.lines] == [
        ("ln_1", "MUG", 1, b.id),
        ("ln_2", "TEE", 1, a.id),
        ("ln_2.2", "TEE", 2, b.id),
        ("ln_3", "CAP", 1, a.id),
    ]
    assert sum(ln.line_total.amount for ln in order.lines) == 5000


def _cash_tender(m: OrderLifecycle, order_id: str, amount: int | None = None) -> Any:
    order = m.order(order_id)
    given = None if amount is None else Money(amount, order.currency)
    cmd = tenders.TenderCommand(
        m._request_id(), order_id, Money(10_000, order.currency), Tender.CASH, given
    )
    return m._attempt(
        lambda: tenders.AddTender(cmd, m.ports, m.new_uow, m.policy, lambda o, p: (o, p))
    )


def test_a_pickup_paid_in_cash_is_captured_when_taken_and_each_fulfilment_shows_it() -> None:
    """Cash is taken, not authorised: the tender is captured at once, confirmation assigns it
    to the fulfilment, and an expired pickup gives it back."""
    m = OrderLifecycle()
    m.create("pickup", 2)
    order_id = m.order_ids[-1]
    answer = _cash_tender(m, order_id)
    assert not isinstance(answer, Exception), answer
    after, payment = answer
    assert payment.status == "captured"
    assert after.balance_due == 0 and after.saga.tenders[0].state is TenderState.CAPTURED
    m.confirm(Pick(m.order(order_id)))
    (f,) = m.order(order_id).fulfillments
    assert f.captured == f.amount == m.order(order_id).totals.total.amount
    _check(m)
    m.expire(Pick(m.order(order_id)))
    assert m.order(order_id).status is OrderStatus.CANCELLED
    assert m.payments.kept(order_id) == 0  # the cash went back
    _check(m)


def test_a_cancel_finished_by_the_resumer_gives_cash_back_at_the_register_it_was_asked_at() -> None:
    """A pickup paid in cash, its cancel asked at a register with a shift open and stopped
    once marked (its driver gone): the resumer, at no register of its own, asks the refund as
    from that register, so the cash counts in its shift. The same cancel from the back office
    is refused before it is marked (`cash_refund_needs_open_shift`)."""
    m = OrderLifecycle()
    m.create("pickup", 2)
    order_id = m.order_ids[-1]
    _cash_tender(m, order_id)
    m.confirm(Pick(m.order(order_id)))
    (f,) = m.order(order_id).fulfillments

    def cancel() -> Any:
        return fulfillment.CancelFulfillment(
            order_id, f.id, m.ports, m.new_uow, m.policy, lambda o, _: o
        )

    refused = m._attempt(cancel)
    assert isinstance(refused, Conflict) and refused.code == "cash_refund_needs_open_shift"
    assert [v.field for v in refused.violations] == ["fulfillment_id"]
    assert f.id not in m.order(order_id).saga.cancelling

    async def marked_only() -> None:
        steps = cancel()
        await steps.prepare()
        async with m.new_uow() as uow:
            await steps.read(uow)
            await uow.commit()

    with at_till(m.payments):
        asyncio.run(marked_only())
    assert m.order(order_id).saga.cancelled_at == {f.id: ("reg_till", "stf_cashier")}
    after = asyncio.run(saga.resume(m.new_uow, m.ports, order_id, m.policy))

    assert after.status is OrderStatus.CANCELLED
    assert m.payments.kept(order_id) == 0
    assert set(m.payments.refunded_at.values()) == {"reg_till"}
    _check(m)


def test_cash_for_part_and_a_card_for_the_rest_capture_the_whole_total() -> None:
    """The cash is captured when taken and assigned first; the card captures only the rest,
    and together they are the total (the card once captured the rest less the cash again)."""
    for kind in ("in_store", "pickup"):
        m = OrderLifecycle()
        m.merchant_settings(True)  # a pickup captures at confirmation too
        m.create(kind, 2)
        order_id = m.order_ids[-1]
        answer = _cash_tender(m, order_id, 1000)
        assert not isinstance(answer, Exception), answer
        m.tender(Pick(m.order(order_id)), "tok_visa", False)  # the rest
        m.confirm(Pick(m.order(order_id)))
        order = m.order(order_id)
        (f,) = order.fulfillments
        assert f.captured == f.amount == order.totals.total.amount, kind
        assert m.payments.kept(order_id) == order.totals.total.amount, kind
        _check(m)


def test_a_cancel_while_the_order_is_being_confirmed_is_refused_and_changes_nothing() -> None:
    """Confirm and cancel at once: the cancel finds the confirmation under way and is a 409
    `order_confirming`; the confirmation finishes whole, and the order can be cancelled after
    (refunded and restocked), never half confirmed and half cancelled."""
    m = OrderLifecycle()
    m.merchant_settings(True)
    order_id = _paid_pickup(m)
    confirm = confirmation.ConfirmOrder(order_id, m.ports, m.new_uow, m.policy, lambda o: o)
    claim = Claim("mer_a", "confirm-1", datetime.now(UTC))

    async def race() -> Any:
        async with m.new_uow() as uow:  # the confirmation's intent, recorded first
            read = await confirm.read(uow)
            await uow.commit()
        cancel = confirmation.CancelOrder(order_id, m.ports, m.new_uow, m.policy, lambda o, _: o)
        with pytest.raises(Conflict) as err:
            async with m.new_uow() as uow:
                await cancel.read(uow)
        assert err.value.code == "order_confirming"
        return await confirm.call(claim, read)

    confirmed = asyncio.run(race())
    assert confirmed.status is OrderStatus.CONFIRMED
    assert m.payments.kept(order_id) == confirmed.totals.total.amount
    _check(m)
    m.cancel(Pick(m.order(order_id)))
    assert m.order(order_id).status is OrderStatus.CANCELLED
    assert m.payments.kept(order_id) == 0 and m.stock.on_hand["TEE"] == UNITS
    _check(m)


class PaymentAtTheProcessor(FakePayments):
    """The payment service while it asks the processor: a payment `take` makes is `pending`
    until `answered` is set (`at_processor` says it is there), then it is what the processor
    said and the answer goes back."""

    def __init__(self) -> None:
        super().__init__()
        self.at_processor = asyncio.Event()
        self.answered = asyncio.Event()

    async def take(
        self, request_id: str, order_id: str, location_id: str, ask: TenderAsk
    ) -> PaymentResult:
        made = self.payments[
            (await super().take(request_id, order_id, location_id, ask)).payment_id
        ]
        said, made.status = made.status, "pending"
        self.at_processor.set()
        await self.answered.wait()
        made.status = said
        return self._result(made)


def _card_for_the_balance(m: OrderLifecycle, order_id: str, token: str, policy: Any) -> Any:
    cmd = tenders.TenderCommand(
        m._request_id(), order_id, None, Tender.CARD, None, card_token=token
    )
    return tenders.AddTender(cmd, m.ports, m.new_uow, policy, lambda o, p: (o, p))


def _cancel(m: OrderLifecycle, order_id: str) -> Any:
    return confirmation.CancelOrder(order_id, m.ports, m.new_uow, m.policy, lambda o, _: o)


def test_a_cancel_beside_a_tender_at_the_processor_is_done_and_answered_done() -> None:
    """The tender's payment is made, `pending` while the processor is asked, when the cancel
    comes: the cancel goes on and answers the order cancelled (it was a 503 `payment_pending`
    for a cancel carried out all the same). The tender, answered then, finds the order
    cancelled, voids its payment and is a 409 `order_not_pending`."""
    m = OrderLifecycle()
    m.payments = processor = PaymentAtTheProcessor()
    m.ports = replace(m.ports, payments=processor)
    m.create("pickup", 2)
    order_id = m.order_ids[-1]

    async def race() -> tuple[Any, Any]:
        tender = _card_for_the_balance(m, order_id, "tok_visa", m.policy)
        tendering = asyncio.ensure_future(m._steps(tender))
        there = asyncio.ensure_future(processor.at_processor.wait())
        await asyncio.wait([tendering, there], return_when=asyncio.FIRST_COMPLETED)
        assert processor.at_processor.is_set(), tendering.exception()
        try:
            cancelled = await m._steps(_cancel(m, order_id))
        except DomainError as exc:
            cancelled = exc
        finally:
            processor.answered.set()
        try:
            return cancelled, await tendering
        except DomainError as exc:
            return cancelled, exc

    cancelled, tendered = asyncio.run(race())

    assert isinstance(cancelled, Order), cancelled
    assert cancelled.status is OrderStatus.CANCELLED
    assert isinstance(tendered, Conflict) and tendered.code == "order_not_pending", tendered
    after = m.order(order_id)
    assert (after.status, after.saga.state) == (OrderStatus.CANCELLED, SagaState.DONE)
    (payment,) = processor.payments.values()
    assert payment.status == "voided" and after.saga.tenders[0].state is TenderState.VOIDED
    assert m.stock.available("TEE") == UNITS
    _check(m)


def test_a_cancel_beside_a_tender_whose_driver_died_is_done_and_the_resumer_voids_it() -> None:
    """The tender's driver dies once its payment is made (`pending`: the processor's answer
    lost) and before the order heard of it: the cancel answers the order cancelled, which stays
    compensating until the payment is settled; then the resumer voids it."""
    m = OrderLifecycle()
    m.create("pickup", 2)
    order_id = m.order_ids[-1]
    dying = replace(m.policy, pause_at=frozenset({"after_authorization"}))

    async def dies() -> None:
        tender = _card_for_the_balance(m, order_id, "tok_timeout", dying)
        await stopped_at("after_authorization", m._steps(tender))

    asyncio.run(dies())
    assert m.order(order_id).saga.tenders[0].state is TenderState.SENT

    cancelled = m._attempt(lambda: _cancel(m, order_id))

    assert isinstance(cancelled, Order), cancelled
    assert cancelled.status is OrderStatus.CANCELLED
    assert m.order(order_id).saga.state is SagaState.COMPENSATING
    assert m.stock.available("TEE") == UNITS
    m.payments.settle_pending()  # the reconciler: the card was authorised
    assert m.payments.held(order_id) > 0
    healed = asyncio.run(saga.resume(m.new_uow, m.ports, order_id, m.policy))
    assert (healed.status, healed.saga.state) == (OrderStatus.CANCELLED, SagaState.DONE)
    assert m.payments.held(order_id) == 0 and m.payments.kept(order_id) == 0
    _check(m)


class PaymentOnItsWay(FakePayments):
    """The tender's call on its way to the payment service: `take` waits at `gate` (`waiting`
    says it is there) before it makes anything, so a cancel can ask for the order's payments
    and find none; once `gate` opens the payment is made as usual."""

    def __init__(self) -> None:
        super().__init__()
        self.waiting = asyncio.Event()
        self.gate = asyncio.Event()

    async def take(
        self, request_id: str, order_id: str, location_id: str, ask: TenderAsk
    ) -> PaymentResult:
        self.waiting.set()
        await self.gate.wait()
        return await super().take(request_id, order_id, location_id, ask)


def test_a_cancel_before_a_tenders_payment_exists_voids_it_though_its_driver_dies() -> None:
    """The cancel finds no payment yet (the tender's call is still on its way), so it ends
    cancelled; then the payment is made, authorised, and the tender's driver dies before it
    could give it back. The cancelled order stays compensating while that tender is
    unanswered, and the resumer voids the authorisation (it stayed held until its window
    ended, before: money held on a cancelled order)."""
    m = OrderLifecycle()
    m.payments = slow = PaymentOnItsWay()
    m.ports = replace(m.ports, payments=slow)
    m.create("pickup", 2)
    order_id = m.order_ids[-1]
    dying = replace(m.policy, pause_at=frozenset({"after_authorization"}))

    async def race() -> Any:
        tender = _card_for_the_balance(m, order_id, "tok_visa", dying)
        tendering = asyncio.ensure_future(m._steps(tender))
        there = asyncio.ensure_future(slow.waiting.wait())
        await asyncio.wait([tendering, there], return_when=asyncio.FIRST_COMPLETED)
        assert slow.waiting.is_set(), tendering.exception()
        try:
            cancelled = await m._steps(_cancel(m, order_id))
        finally:
            slow.gate.set()
        # The payment is made; the driver stops at the boundary after it, as if killed.
        await stopped_at("after_authorization", tendering)
        return cancelled

    saga.PAUSED.clear()
    cancelled = asyncio.run(race())

    assert isinstance(cancelled, Order), cancelled
    assert cancelled.status is OrderStatus.CANCELLED
    assert m.payments.held(order_id) > 0  # authorised after the cancel looked
    assert m.order(order_id).saga.state is SagaState.COMPENSATING
    healed = asyncio.run(saga.resume(m.new_uow, m.ports, order_id, m.policy))
    assert (healed.status, healed.saga.state) == (OrderStatus.CANCELLED, SagaState.DONE)
    assert m.payments.held(order_id) == 0 and m.payments.kept(order_id) == 0
    assert m.stock.available("TEE") == UNITS
    _check(m)


def test_a_cancel_beside_a_tender_that_never_reached_the_payment_service_ends() -> None:
    """The tender's driver died before its call left (nothing made): the cancelled order waits
    for that tender only until the resumer, which finds no payment and gives the tender up."""
    m = OrderLifecycle()
    m.payments = slow = PaymentOnItsWay()
    m.ports = replace(m.ports, payments=slow)
    m.create("pickup", 2)
    order_id = m.order_ids[-1]

    async def dies() -> None:
        # Killed once its call is on its way (not after a fixed 0.2 s, which a loaded machine
        # could spend before the call left, or before the tender was even saved).
        tendering = asyncio.ensure_future(
            m._steps(_card_for_the_balance(m, order_id, "tok_visa", m.policy))
        )
        await asyncio.wait_for(slow.waiting.wait(), 20)
        assert not tendering.done()
        tendering.cancel()
        await asyncio.gather(tendering, return_exceptions=True)

    asyncio.run(dies())
    cancelled = m._attempt(lambda: _cancel(m, order_id))

    assert isinstance(cancelled, Order) and cancelled.status is OrderStatus.CANCELLED
    assert m.order(order_id).saga.state is SagaState.COMPENSATING
    healed = asyncio.run(saga.resume(m.new_uow, m.ports, order_id, m.policy))
    assert (healed.status, healed.saga.state) == (OrderStatus.CANCELLED, SagaState.DONE)
    assert healed.saga.tenders[0].state is TenderState.FAILED
    assert slow.payments == {}
    _check(m)


def test_a_tender_voided_through_the_payments_api_is_replaced_at_once() -> None:
    """Replacing a tender: its payment voided at the payment service (the order not told yet:
    its event still on its way), a new tender for the balance is taken at once (it was a 409
    `balance_covered` until the event came), and the order is confirmed on the new one."""
    m = OrderLifecycle()
    m.create("pickup", 2)
    order_id = m.order_ids[-1]
    m.tender(Pick(m.order(order_id)), "tok_visa", False)
    (first,) = m.order(order_id).payment_ids
    asyncio.run(m.payments.void("payments-api-void", first))
    assert m.order(order_id).balance_due == 0  # the order has not heard of the void

    tender = _card_for_the_balance(m, order_id, "tok_visa", m.policy)
    asyncio.run(tender.prepare())
    order, payment = m._attempt(lambda: tender)

    assert payment.status == "authorized" and payment.payment_id != first
    assert order.balance_due == 0
    assert [t.state for t in order.saga.tenders] == [TenderState.VOIDED, TenderState.AUTHORIZED]
    m.confirm(Pick(m.order(order_id)))
    assert m.order(order_id).status is OrderStatus.CONFIRMED
    assert m.payments.held(order_id) == m.order(order_id).totals.total.amount
    _check(m)


def test_a_tender_is_still_refused_when_the_payments_leave_nothing_due() -> None:
    """Asking the payment service changes nothing when nothing was voided: the new tender is
    the 409 `balance_covered` it always was, and the order is not written."""
    m = OrderLifecycle()
    m.create("pickup", 2)
    order_id = m.order_ids[-1]
    m.tender(Pick(m.order(order_id)), "tok_visa", False)
    version = m.order(order_id).version

    tender = _card_for_the_balance(m, order_id, "tok_visa", m.policy)
    asyncio.run(tender.prepare())
    refused = m._attempt(lambda: tender)

    assert isinstance(refused, Conflict) and refused.code == "balance_covered", refused
    assert m.order(order_id).version == version
    _check(m)


def test_a_cancel_while_the_payment_service_is_away_records_nothing() -> None:
    """The order's payments cannot be asked about: the cancel is a 503 and the order is as it
    was (it was recorded, answered 503, and carried out by the resumer later while the order
    read `pending_payment` and refused every tender). Once the service is back, the cancel
    is made."""
    m = OrderLifecycle()
    m.create("pickup", 2)
    order_id = m.order_ids[-1]
    m.tender(Pick(m.order(order_id)), "tok_visa", False)
    before = m.order(order_id)
    m.payments.down = True
    cancel = _cancel(m, order_id)

    with pytest.raises(Unavailable):
        asyncio.run(cancel.prepare())

    after = m.order(order_id)
    assert (after.version, after.saga.state, after.cancel_reason) == (
        before.version,
        SagaState.RUNNING,
        before.cancel_reason,
    )
    m.payments.down = False
    cancel = _cancel(m, order_id)
    asyncio.run(cancel.prepare())
    cancelled = m._attempt(lambda: cancel)
    assert isinstance(cancelled, Order) and cancelled.status is OrderStatus.CANCELLED
    assert m.payments.held(order_id) == 0
    _check(m)


def test_an_order_being_cancelled_says_so_when_it_refuses_a_tender() -> None:
    """Its cancel recorded and not finished (a service away midway): a tender is refused as
    for an order being cancelled, not as for a pending order."""
    m = OrderLifecycle()
    m.create("pickup", 2)
    order_id = m.order_ids[-1]
    m.tender(Pick(m.order(order_id)), "tok_visa", False)
    asyncio.run(saga.change(m.new_uow, order_id, lambda o: o.begin_cancel("requested")))

    refused = m._attempt(lambda: _card_for_the_balance(m, order_id, "tok_visa", m.policy))

    assert isinstance(refused, Conflict) and refused.code == "order_not_pending", refused
    assert "being cancelled" in str(refused)


def test_a_confirmation_after_the_hold_ran_out_cancels_the_order_as_expired() -> None:
    """The hold's time passed (the inventory service ended it) just before the confirmation:
    refused `reservation_expired`, and the order is cancelled `expired`, as the resumer would
    have cancelled it a moment later (it read `confirmation_failed`: one cause, two reasons)."""
    m = OrderLifecycle()
    m.create("pickup", 2)
    order_id = m.order_ids[-1]
    m.tender(Pick(m.order(order_id)), "tok_visa", False)
    (hold,) = m.stock.reservations.values()
    hold.status = "expired"  # the inventory service's sweep
    for sku, quantity in hold.lines:
        m.stock.reserved[sku] -= quantity
    confirm = confirmation.ConfirmOrder(order_id, m.ports, m.new_uow, m.policy, lambda o: o)

    refused = m._attempt(lambda: confirm)

    assert isinstance(refused, DomainError) and refused.code == "reservation_expired", refused
    after = m.order(order_id)
    assert (after.status, after.cancel_reason) == (OrderStatus.CANCELLED, "expired")
    assert m.payments.held(order_id) == 0 and m.stock.available("TEE") == UNITS


def _confirmed_shipment(m: OrderLifecycle, picked: bool = False) -> tuple[str, str]:
    """A confirmed shipment of one unit paid by card; `picked`: moved on to `picked`, the
    step before `shipped`."""
    m.create("shipment", 1)
    order_id = m.order_ids[-1]
    m.tender(Pick(m.order(order_id)), "tok_visa", False)
    m.confirm(Pick(m.order(order_id)))
    (f,) = m.order(order_id).fulfillments
    if picked:
        m.step(Pick((order_id, f.id, FulfillmentStatus.PICKED)))
    return order_id, f.id


def _step(m: OrderLifecycle, order_id: str, fid: str, to: FulfillmentStatus) -> Any:
    shipping = ("UPS", "1Z999") if to is FulfillmentStatus.SHIPPED else ("", "")
    step = fulfillment.FulfillmentStep(order_id, fid, to, *shipping)
    return fulfillment.UpdateFulfillment(step, m.ports, m.new_uow, m.policy, lambda o: o)


async def _read(m: OrderLifecycle, steps: Any) -> Any:
    async with m.new_uow() as uow:
        read = await steps.read(uow)
        await uow.commit()
    return read


def test_a_step_read_before_a_cancel_and_recorded_after_it_is_refused() -> None:
    """`picked` captures nothing, so its read writes nothing and a cancel may run whole between
    its read and its record: the record asks again under the lock and is a 409, and the
    cancelled shipment stays cancelled (never `picked` on a cancelled order)."""
    m = OrderLifecycle()
    order_id, fid = _confirmed_shipment(m)
    step = _step(m, order_id, fid, FulfillmentStatus.PICKED)
    read = asyncio.run(_read(m, step))
    m.cancel(Pick(m.order(order_id)))

    async def record() -> Any:
        outcome = await step.call(Claim("mer_a", "step-1", datetime.now(UTC)), read)
        async with m.new_uow() as uow:
            return await step.record(uow, outcome)

    with pytest.raises(Conflict) as err:
        asyncio.run(record())
    assert err.value.code == "order_not_confirmed"
    order = m.order(order_id)
    assert order.status is OrderStatus.CANCELLED
    assert order.fulfillments[0].status is FulfillmentStatus.CANCELLED
    _check(m)


def test_a_shipment_step_whose_driver_is_gone_stops_blocking_the_cancel() -> None:
    """A `shipped` step planned its capture, then its driver died: a cancel is a 409
    `fulfillment_in_progress` while it may still finish; the resumer makes the capture and gives
    the step up, and the order can be cancelled again (the capture refunded, the unit back)."""
    m = OrderLifecycle()
    order_id, fid = _confirmed_shipment(m, picked=True)
    asyncio.run(_read(m, _step(m, order_id, fid, FulfillmentStatus.SHIPPED)))
    cancel = confirmation.CancelOrder(order_id, m.ports, m.new_uow, m.policy, lambda o, _: o)
    refused = m._attempt(lambda: cancel)
    assert isinstance(refused, Conflict) and refused.code == "fulfillment_in_progress"

    after = asyncio.run(saga.resume(m.new_uow, m.ports, order_id, m.policy))

    assert after.saga.state is SagaState.DONE and after.status is OrderStatus.CONFIRMED
    assert after.fulfillments[0].status is FulfillmentStatus.PICKED
    assert m.payments.kept(order_id) == after.fulfillments[0].captured == after.totals.total.amount
    _check(m)
    m.cancel(Pick(m.order(order_id)))
    assert m.order(order_id).status is OrderStatus.CANCELLED
    assert m.payments.kept(order_id) == 0 and m.payments.held(order_id) == 0
    assert m.stock.on_hand["TEE"] == UNITS
    _check(m)


def test_a_shipment_whose_authorisation_was_voided_after_a_partial_capture_is_refused() -> None:
    """Two shipments on one card: the first shipped (captured its share), then the rest of the
    authorisation voided through the payments API (the order not told yet). Shipping the
    second is refused up front as unpaid, 409 `payment_required` with what is due, and
    nothing is written (it was sent to a capture the payment service refused,
    `payment_captured`, an answer that pointed nowhere). Told by the void's event, the order
    holds the same."""
    m = OrderLifecycle()
    m.create("split", 2)
    order_id = m.order_ids[-1]
    m.tender(Pick(m.order(order_id)), "tok_visa", False)
    m.confirm(Pick(m.order(order_id)))
    first, second = m.order(order_id).fulfillments
    for f, to in ((first, FulfillmentStatus.PICKED), (first, FulfillmentStatus.SHIPPED),
                  (second, FulfillmentStatus.PICKED)):  # fmt: skip
        m.step(Pick((order_id, f.id, to)))
    (payment,) = m.payments.payments.values()
    assert payment.captured == first.amount
    asyncio.run(m.payments.void("payments-api-void", payment.id))  # behind the order's back
    version = m.order(order_id).version
    step = _step(m, order_id, second.id, FulfillmentStatus.SHIPPED)
    asyncio.run(step.prepare())

    with pytest.raises(Conflict) as err:
        asyncio.run(_read(m, step))

    assert err.value.code == "payment_required"
    assert err.value.metadata["amount_due"] == str(second.amount)
    assert m.order(order_id).version == version
    assert payment.captured == first.amount
    # The void's event: the order keeps what was captured and holds nothing more.
    asyncio.run(_told_voided(m, order_id, payment.id, payment.voided))
    told = m.order(order_id)
    (tender,) = told.saga.tenders
    assert (tender.captured, tender.voided) == (first.amount, second.amount)
    assert told.share_not_covered(told.fulfillments[1]) == second.amount


async def _told_voided(m: OrderLifecycle, order_id: str, payment_id: str, voided: int) -> None:
    async with m.new_uow() as uow:
        await payment_changes.payment_voided(uow, order_id, payment_id, voided)
        await uow.commit()


def test_a_step_whose_capture_is_refused_for_good_leaves_nothing_half_done() -> None:
    """The authorisation was voided after the order planned the shipment's capture (the order
    not told yet): the capture is refused, the step is a 409 and is dropped (not left for the
    resumer to ask for ever, nor blocking a cancel); once the order knows, the step is refused
    before anything is planned (`payment_required`, with what is due)."""
    m = OrderLifecycle()
    order_id, fid = _confirmed_shipment(m, picked=True)
    (payment,) = m.payments.payments.values()
    payment.status = "voided"  # behind the order's back
    refuse = m.payments.capture

    async def as_the_service_refuses(request_id: str, payment_id: str, amount: Money) -> Any:
        # As the real client raises it: a plain DomainError of kind CONFLICT, not a Conflict.
        try:
            return await refuse(request_id, payment_id, amount)
        except Conflict as exc:
            raise DomainError(exc.message, exc.code, [], {}, ErrorKind.CONFLICT) from None

    m.payments.capture = as_the_service_refuses  # type: ignore[method-assign]
    step = _step(m, order_id, fid, FulfillmentStatus.SHIPPED)

    async def run() -> Any:
        read = await _read(m, step)
        return await step.call(Claim("mer_a", "step-2", datetime.now(UTC)), read)

    with pytest.raises(DomainError) as refused:
        asyncio.run(run())
    assert refused.value.kind is ErrorKind.CONFLICT
    order = m.order(order_id)
    assert not order.saga.stepping and not [c for c in order.saga.captures if not c.done]
    assert order.saga.state is SagaState.DONE
    assert order.fulfillments[0].status is FulfillmentStatus.PICKED

    # The order learns of the void: the step is refused up front, writing nothing.
    async def learn_the_void() -> None:
        async with m.new_uow() as uow:
            known = await uow.orders.get(order_id, lock=True)
            assert known is not None
            for t in known.saga.tenders:
                t.state, t.voided = TenderState.VOIDED, t.amount
            await uow.orders.save(known)
            await uow.commit()

    asyncio.run(learn_the_void())
    version = m.order(order_id).version
    with pytest.raises(Conflict) as err:
        asyncio.run(_read(m, _step(m, order_id, fid, FulfillmentStatus.SHIPPED)))
    assert err.value.code == "payment_required"
    assert err.value.metadata["amount_due"] == str(order.fulfillments[0].amount)
    assert m.order(order_id).version == version and not m.order(order_id).saga.captures
    m.cancel(Pick(m.order(order_id)))
    assert m.order(order_id).status is OrderStatus.CANCELLED
    assert m.stock.on_hand["TEE"] == UNITS


def test_a_cancel_or_confirm_beside_one_under_way_makes_no_new_version() -> None:
    """A second cancel (or confirmation) read while the first is under way only drives it on:
    the order is written once, so a poller of `updated_since` sees one change, not ten."""
    m = OrderLifecycle()
    m.create("shipment", 1)
    order_id = m.order_ids[-1]
    m.tender(Pick(m.order(order_id)), "tok_visa", False)

    def confirm() -> Any:
        return confirmation.ConfirmOrder(order_id, m.ports, m.new_uow, m.policy, lambda o: o)

    def cancel() -> Any:
        return confirmation.CancelOrder(order_id, m.ports, m.new_uow, m.policy, lambda o, _: o)

    asyncio.run(_read(m, confirm()))
    asked = m.order(order_id).version
    asyncio.run(_read(m, confirm()))
    assert m.order(order_id).version == asked
    m.confirm(Pick(m.order(order_id)))
    assert m.order(order_id).status is OrderStatus.CONFIRMED

    asyncio.run(_read(m, cancel()))
    begun = m.order(order_id)
    assert begun.saga.state is SagaState.COMPENSATING
    for _ in range(3):
        asyncio.run(_read(m, cancel()))
    assert m.order(order_id).version == begun.version
    m.cancel(Pick(m.order(order_id)))
    assert m.order(order_id).status is OrderStatus.CANCELLED
    _check(m)


def test_each_fulfilment_s_share_is_what_its_lines_cost_with_their_own_tax() -> None:
    """A pickup taxed at 8.25 % and a shipment from a store at 7 %: each share is its lines
    after discount plus their own tax, so a fulfilment captures (or refunds) its own goods."""
    usd = "USD"
    tee = OrderLine("TEE", "T-shirt", 2, Money(1000, usd), discount=100, tax=149)
    mug = OrderLine("MUG", "Mug", 2, Money(1000, usd), tax=140)
    total = 2000 - 100 + 149 + 2000 + 140
    wanted = [
        FulfillmentRequest(FulfillmentType.PICKUP, "loc_1"),
        FulfillmentRequest(FulfillmentType.SHIPMENT, "loc_2", "1 Main St"),
    ]
    asked = [LineRequest("TEE", 2, 0), LineRequest("MUG", 2, 1)]
    pickup, shipment = build_fulfillments("ord_t", wanted, [tee, mug], asked, total)
    assert (pickup.amount, shipment.amount) == (2049, 2140)
    # Prices that hold their tax already: the tax is not added again.
    inside = build_fulfillments("ord_i", wanted, [tee, mug], asked, 3900, tax_inclusive=True)
    assert [f.amount for f in inside] == [1900, 2000]


def test_a_cancel_of_a_pickup_whose_expiry_began_is_refused_and_the_expiry_ends_it() -> None:
    """The expiry marked the pickup first (under the order row's lock): a cancel asked then is
    a 409 `fulfillment_expired`, never a second giving back beside it, and the pickup ends
    `expired` once its expiry is driven on (here by the resumer, as after a crash)."""
    m = OrderLifecycle()
    order_id = _paid_pickup(m)
    m.confirm(Pick(m.order(order_id)))
    (f,) = m.order(order_id).fulfillments
    past = datetime.now(UTC)

    def expiring(o: Order) -> bool:
        f_ = o.fulfillment(f.id)
        assert f_ is not None
        f_.expires_at = past
        return o.begin_pickup_expiry(f.id, past)

    _, began = asyncio.run(saga.change(m.new_uow, order_id, expiring))
    assert began
    answer = m._attempt(
        lambda: fulfillment.CancelFulfillment(
            order_id, f.id, m.ports, m.new_uow, m.policy, lambda o: o
        )
    )
    assert isinstance(answer, Conflict) and answer.code == "fulfillment_expired"
    after = asyncio.run(saga.resume(m.new_uow, m.ports, order_id, m.policy))
    assert after.status is OrderStatus.CANCELLED and after.cancel_reason == "expired"
    assert after.fulfillments[0].status is FulfillmentStatus.EXPIRED
    assert m.payments.held(order_id) == 0
    _check(m)


def test_a_shipment_whose_cash_was_refunded_is_not_shipped() -> None:
    """Cash taken for a shipment, then part of it refunded outside any return (the order told
    by the refund's event): shipping is a 409 `payment_refunded` with what is no longer paid,
    written nowhere; once a price adjustment or a return would account for it, it would go."""
    m = OrderLifecycle()
    m.create("shipment", 1)
    order_id = m.order_ids[-1]
    due = m.order(order_id).balance_due
    cmd = tenders.TenderCommand(
        "cash-1", order_id, None, Tender.CASH, Money(due, "USD"), cash_tendered=Money(due, "USD")
    )
    m._attempt(lambda: tenders.AddTender(cmd, m.ports, m.new_uow, m.policy, lambda o, p: o))
    m.confirm(Pick(m.order(order_id)))
    order = m.order(order_id)
    (f,) = order.fulfillments
    assert order.status is OrderStatus.CONFIRMED and f.captured == f.amount
    m.step(Pick((order_id, f.id, FulfillmentStatus.PICKED)))

    async def refunded(amount: int) -> None:
        async with m.new_uow() as uow:
            await payment_changes.refund_made(uow, order_id, order.payment_id, amount)
            await uow.commit()

    asyncio.run(refunded(300))
    version = m.order(order_id).version
    with pytest.raises(Conflict) as err:
        asyncio.run(_read(m, _step(m, order_id, f.id, FulfillmentStatus.SHIPPED)))
    assert err.value.code == "payment_refunded"
    assert err.value.metadata == {"amount_due": "300", "fulfillment_id": f.id}
    after = m.order(order_id)
    assert after.version == version and not after.saga.stepping
    assert after.fulfillments[0].status is FulfillmentStatus.PICKED
    assert after.saga.state is SagaState.DONE


@pytest.mark.parametrize(
    ("kind", "to", "first"),
    [
        ("shipment", FulfillmentStatus.SHIPPED, FulfillmentStatus.PICKED),
        ("pickup", FulfillmentStatus.PICKED_UP, FulfillmentStatus.READY_FOR_PICKUP),
    ],
)
def test_a_step_that_skips_a_state_is_refused_and_writes_nothing(
    kind: str, to: FulfillmentStatus, first: FulfillmentStatus
) -> None:
    """commerce-states.md: a shipment is `reserved -> picked -> shipped`, a pickup `reserved
    -> ready_for_pickup -> picked_up`. Shipped straight from reserved (or picked up before it
    was ready) is a 409 `invalid_transition` naming the next step, with nothing planned,
    captured or written; taken one at a time, the same steps go through."""
    m = OrderLifecycle()
    m.create(kind, 1)
    order_id = m.order_ids[-1]
    m.tender(Pick(m.order(order_id)), "tok_visa", False)
    m.confirm(Pick(m.order(order_id)))
    (f,) = m.order(order_id).fulfillments
    version = m.order(order_id).version
    with pytest.raises(Conflict) as err:
        asyncio.run(_read(m, _step(m, order_id, f.id, to)))
    assert err.value.code == "invalid_transition"
    assert first.value in err.value.message
    # The step asked for is the field at fault (none was named until 2026-12-05).
    assert [(v.field, v.description) for v in err.value.violations] == [
        ("status", f"must be one of {first.value}")
    ]
    after = m.order(order_id)
    assert after.version == version and not after.saga.captures and not after.saga.stepping
    assert after.fulfillments[0].status is FulfillmentStatus.RESERVED
    assert m.payments.kept(order_id) == 0
    m.step(Pick((order_id, f.id, first)))
    m.step(Pick((order_id, f.id, to)))
    assert m.order(order_id).fulfillments[0].status is to
    _check(m)


def test_a_hand_over_reads_the_money_before_its_claim_and_needs_it_only_when_fresh() -> None:
    """What the payments refunded is read before the claim, with the payment service away
    answering nothing: that read no longer fails the request (a retry of a step already made
    replays its answer at the claim, without the payment service); a fresh hand-over still
    needs the figures, and is a 503 writing nothing."""
    m = OrderLifecycle()
    order_id, fid = _confirmed_shipment(m, picked=True)
    m.ports.payments.down = True  # type: ignore[union-attr]
    steps = _step(m, order_id, fid, FulfillmentStatus.SHIPPED)
    asyncio.run(steps.prepare())
    version = m.order(order_id).version
    with pytest.raises(Unavailable):
        asyncio.run(_read(m, steps))
    assert m.order(order_id).version == version
    assert m.order(order_id).fulfillments[0].status is FulfillmentStatus.PICKED


def _tender_for_what_is_due(
    m: OrderLifecycle, order_id: str, tender: Tender, amount: int | None, token: str = ""
) -> Any:
    """A tender asked of a confirmed order, its `prepare` run first (as the kit runs it):
    the answer, or the refusal."""
    order = m.order(order_id)
    cash = Money(10**6, order.currency) if tender is Tender.CASH else None
    cmd = tenders.TenderCommand(
        m._request_id(),
        order_id,
        None,
        tender,
        None if amount is None else Money(amount, order.currency),
        card_token=token,
        cash_tendered=cash,
    )
    steps = tenders.AddTender(cmd, m.ports, m.new_uow, m.policy, lambda o, p: (o, p))
    asyncio.run(steps.prepare())
    return m._attempt(lambda: steps)


def _prepared_step(m: OrderLifecycle, order_id: str, fid: str, to: FulfillmentStatus) -> Any:
    step = _step(m, order_id, fid, to)
    asyncio.run(step.prepare())
    return m._attempt(lambda: step)


def test_a_shipment_whose_rest_was_voided_takes_a_card_for_what_is_due_and_ships() -> None:
    """Two shipments on one card, the first shipped, the rest voided through the payments API
    (the order not told): the second's `shipped` is a 409 `payment_required`. A confirmed
    order now takes a tender for what is due, and no more (a 400 on `amount` above it; a
    decline leaves it due); the step then captures the second share from the new card, and
    the order completes holding exactly its total. Before, a confirmed order took no tender
    (409 `order_not_pending`): cancelled and sold again."""
    m = OrderLifecycle()
    m.create("split", 2)
    order_id = m.order_ids[-1]
    m.tender(Pick(m.order(order_id)), "tok_visa", False)
    m.confirm(Pick(m.order(order_id)))
    first, second = m.order(order_id).fulfillments
    for f, to in ((first, FulfillmentStatus.PICKED), (first, FulfillmentStatus.SHIPPED),
                  (second, FulfillmentStatus.PICKED)):  # fmt: skip
        m.step(Pick((order_id, f.id, to)))
    (old,) = m.payments.payments.values()
    asyncio.run(m.payments.void("payments-api-void", old.id))  # behind the order's back
    refused = _prepared_step(m, order_id, second.id, FulfillmentStatus.SHIPPED)
    assert isinstance(refused, Conflict) and refused.code == "payment_required", refused
    assert refused.metadata["amount_due"] == str(second.amount)

    too_much = _tender_for_what_is_due(m, order_id, Tender.CARD, second.amount + 1, "tok_visa")
    assert isinstance(too_much, InvalidArgument), too_much
    assert [v.field for v in too_much.violations] == ["amount"]
    declined = _tender_for_what_is_due(m, order_id, Tender.CARD, None, "tok_declined")
    order, payment = declined
    assert payment.status == "failed" and order.status is OrderStatus.CONFIRMED
    assert order.amount_due == second.amount
    order, payment = _tender_for_what_is_due(m, order_id, Tender.CARD, None, "tok_visa")
    assert payment.status == "authorized" and payment.amount == second.amount
    assert order.status is OrderStatus.CONFIRMED and order.amount_due == 0

    shipped = _prepared_step(m, order_id, second.id, FulfillmentStatus.SHIPPED)

    assert not isinstance(shipped, DomainError), shipped
    assert shipped.fulfillment(second.id).captured == second.amount
    new = m.payments.payments[payment.payment_id]
    assert (new.captured, old.captured) == (second.amount, first.amount)
    nothing_due = _tender_for_what_is_due(m, order_id, Tender.CARD, None, "tok_visa")
    assert isinstance(nothing_due, Conflict), nothing_due
    assert nothing_due.code == "payment_not_required"
    for f in (first, second):
        m.step(Pick((order_id, f.id, FulfillmentStatus.DELIVERED)))
    assert m.order(order_id).status is OrderStatus.COMPLETED
    assert m.payments.kept(order_id) == m.order(order_id).totals.total.amount
    _check(m)


def test_a_confirmed_order_with_nothing_due_takes_no_tender() -> None:
    """Its authorisation holds every share still to capture: a tender is a 409
    `payment_not_required`, and nothing is written or taken."""
    m = OrderLifecycle()
    order_id, _ = _confirmed_shipment(m)
    version, charges = m.order(order_id).version, list(m.payments.charges)

    refused = _tender_for_what_is_due(m, order_id, Tender.CARD, None, "tok_visa")

    assert isinstance(refused, Conflict) and refused.code == "payment_not_required", refused
    assert m.order(order_id).version == version and m.payments.charges == charges


def test_cash_for_a_voided_pickup_is_its_capture_and_a_cancel_gives_it_back() -> None:
    """A pickup's authorisation voided: cash for what is due is captured when taken and
    assigned to the pickup at once, so the hand-over captures nothing more; cancelled
    instead, the order refunds the cash and holds nothing."""
    m = OrderLifecycle()
    order_id = _paid_pickup(m)
    m.confirm(Pick(m.order(order_id)))
    (pickup,) = m.order(order_id).fulfillments
    (old,) = m.payments.payments.values()
    asyncio.run(m.payments.void("payments-api-void", old.id))

    order, payment = _tender_for_what_is_due(m, order_id, Tender.CASH, None)

    assert payment.status == "captured" and payment.captured_amount == pickup.amount
    assert order.fulfillments[0].captured == pickup.amount and order.amount_due == 0
    _check(m)
    m.cancel(Pick(m.order(order_id)))
    after = m.order(order_id)
    assert after.status is OrderStatus.CANCELLED
    assert m.payments.payments[payment.payment_id].refunded == pickup.amount
    assert m.payments.kept(order_id) == 0 and m.payments.held(order_id) == 0
    _check(m)


def test_a_tender_for_what_is_due_answered_later_is_learnt_by_the_step() -> None:
    """The card's answer is not known when it is taken (`pending`): it speaks for what is
    due (another tender is a 409 `payment_pending`). Once the payment service settles it, the
    step learns it when it reads the payments and captures from it: no resumer looks at a
    confirmed order's tenders, and it held up every step and cancel for ever."""
    m = OrderLifecycle()
    order_id, fid = _confirmed_shipment(m, picked=True)
    (old,) = m.payments.payments.values()
    asyncio.run(m.payments.void("payments-api-void", old.id))
    order, payment = _tender_for_what_is_due(m, order_id, Tender.CARD, None, "tok_timeout")
    assert payment.status == "pending"
    waiting = _tender_for_what_is_due(m, order_id, Tender.CARD, None, "tok_visa")
    assert isinstance(waiting, Conflict) and waiting.code == "payment_pending", waiting
    m.payments.settle_pending()

    shipped = _prepared_step(m, order_id, fid, FulfillmentStatus.SHIPPED)

    assert not isinstance(shipped, DomainError), shipped
    assert m.payments.payments[payment.payment_id].captured == order.totals.total.amount
    assert shipped.fulfillments[0].status is FulfillmentStatus.SHIPPED


def test_a_tender_in_another_currency_names_its_currency_and_writes_nothing() -> None:
    """The amount is fine, its currency is not the order's: the 400 names
    `amount.currency`, as every other money field's currency is named, and nothing is
    taken."""
    m = OrderLifecycle()
    m.create("pickup", 2)
    order_id = m.order_ids[-1]
    version, charges = m.order(order_id).version, list(m.payments.charges)
    cmd = tenders.TenderCommand(
        m._request_id(), order_id, Money(10_000, "EUR"), Tender.CASH, Money(100, "EUR")
    )

    refused = m._attempt(
        lambda: tenders.AddTender(cmd, m.ports, m.new_uow, m.policy, lambda o, p: (o, p))
    )

    assert isinstance(refused, InvalidArgument), refused
    assert [(v.field, v.description) for v in refused.violations] == [
        ("amount.currency", f"must be in {m.order(order_id).currency}")
    ]
    assert m.order(order_id).version == version and m.payments.charges == charges


def test_a_confirmation_that_read_the_payments_while_a_void_held_the_order_is_refused(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The void of a tender only authorised, through the payments API, holds its pending order
    (`hold_for_refund`, before_confirmation) while it is made. A confirmation that read the
    holds and then the payments while such a hold was live may have read the payment before
    the void; the void made and its hold let go before the confirmation is marked, the count
    of holds is the same. Refused (409 `refund_in_progress`, to retry), never a confirmation
    counting the authorisation the void released. Until 2026-12-05 it confirmed the order
    (e2e `test_payments.py -k void_racing`)."""
    m = OrderLifecycle()
    m.create("shipment", 1)
    order_id = m.order_ids[-1]
    m.tender(Pick(m.order(order_id)), "tok_visa", False)
    payment_id = m.order(order_id).payment_id
    hold = {"live": True, "generation": 1}  # the void's hold, taken before the confirmation

    async def refund_hold(self: Any, order_id: str) -> tuple[bool, int]:
        return hold["live"], hold["generation"]

    monkeypatch.setattr("fakes.NoReturns.refund_hold", refund_hold)
    confirm = confirmation.ConfirmOrder(order_id, m.ports, m.new_uow, m.policy, lambda o: o)
    asyncio.run(confirm.prepare())  # the payment still authorised
    asyncio.run(m.payments.void("void-1", payment_id))
    hold["live"] = False  # the void made, its hold let go
    version = m.order(order_id).version
    with pytest.raises(Conflict) as err:
        asyncio.run(_read(m, confirm))
    assert err.value.code == "refund_in_progress"
    after = m.order(order_id)
    assert (after.status, after.version) == (OrderStatus.PENDING_PAYMENT, version)
    # Asked again, the confirmation reads the void: the balance is due.
    again = m._attempt(
        lambda: confirmation.ConfirmOrder(order_id, m.ports, m.new_uow, m.policy, lambda o: o)
    )
    assert isinstance(again, DomainError) and again.code == "balance_due"
    assert m.order(order_id).status is OrderStatus.PENDING_PAYMENT
